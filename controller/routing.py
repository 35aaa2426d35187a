"""Latency-shortest, destination-based routing on the discovered directed graph (pure).

Weights are the plan's one-way delay in the direction of travel, in integer nanoseconds so
that ties are exact. For each destination switch, Dijkstra runs on the reversed graph; a
switch's next hop is the lexicographic minimum of (delay, hops, next dpid, out port), so the
result does not depend on dict or discovery order.

Every (switch s, destination switch d) pair also gets a precomputed backup next hop when one
exists: a loop-free alternate (RFC 5286), a neighbour n over another live link with
D(n,d) < D(n,s) + D(s,d), so n's own shortest path to d never comes back through s. The
controller installs primary and backup as the two buckets of an OpenFlow fast-failover group
per (s, d), so a fibre cut moves traffic in the switch before the controller hears of it.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .plan import Plan

DirectedLink = tuple[int, int, int, int]  # (from_dpid, from_port, to_dpid, to_port)
UNKNOWN_LINK_DELAY_MS = 1000.0  # a discovered link the plan does not know: usable, last resort
FlowTable = dict[int, dict[str, int]]  # dpid -> {ipv4_dst: out_port}
RouteAction = tuple[str, int]  # ("output", port) on the host's switch, else ("group", id)
GROUP_ID_BASE = 0x100
Buckets = tuple[int, int | None]  # (primary out_port, backup out_port or None)


@dataclass
class Routes:
    flows: FlowTable = field(default_factory=dict)
    paths: dict[str, list[str]] = field(default_factory=dict)  # "src>dst" -> sites
    unknown_links: list[DirectedLink] = field(default_factory=list)
    # destination dpid -> {dpid: (out_port, next_dpid, delay_ns to the destination)}
    trees: dict[int, dict[int, tuple[int, int, int]]] = field(default_factory=dict)
    # destination dpid -> {dpid: (backup out_port, backup next dpid)}; pairs without one are
    # listed in no_backup as (dpid, destination dpid)
    backups: dict[int, dict[int, tuple[int, int]]] = field(default_factory=dict)
    no_backup: list[tuple[int, int]] = field(default_factory=list)
    # the pairs of no_backup whose primary link is a bridge: without it d is unreachable from
    # s, so no backup of any kind could exist (a single-homed site, for one)
    unprotectable: list[tuple[int, int]] = field(default_factory=list)

    def coverage(self) -> dict:
        """How many (switch, destination switch) pairs have a precomputed backup, of all and
        of those whose destination stays reachable without the primary link."""
        covered = sum(len(b) for b in self.backups.values())
        total = covered + len(self.no_backup)
        protectable = total - len(self.unprotectable)
        return {"covered": covered, "pairs": total,
                "fraction": round(covered / total, 4) if total else None,
                "protectable": protectable,
                "fraction_of_protectable": round(covered / protectable, 4)
                if protectable else None}

    def hops(self, src: int, dst: int) -> list[tuple[int, int]] | None:
        """[(dpid, out_port), ...] from switch src to switch dst (dst's out_port is 0), or
        None when dst has no tree or src cannot reach it."""
        tree = self.trees.get(dst)
        if tree is None or src not in tree:
            return None
        out = [(src, tree[src][0])]
        while out[-1][0] != dst:
            nxt = tree[out[-1][0]][1]
            out.append((nxt, tree[nxt][0]))
        return out

    def delay_ms(self, src: int, dst: int) -> float | None:
        tree = self.trees.get(dst)
        if tree is None or src not in tree:
            return None
        return tree[src][2] / 1_000_000


def delay_ns(ms: float) -> int:
    return int(round(ms * 1_000_000))


def weigh_links(plan_delays: Mapping[DirectedLink, float], links: Iterable[DirectedLink]
                ) -> tuple[dict[DirectedLink, int], list[DirectedLink]]:
    weights: dict[DirectedLink, int] = {}
    unknown: list[DirectedLink] = []
    for lk in links:
        ms = plan_delays.get(lk)
        if ms is None:
            unknown.append(lk)
            ms = UNKNOWN_LINK_DELAY_MS
        weights[lk] = delay_ns(ms)
    return weights, sorted(unknown)


def next_hops_to(dst: int, nodes: set[int], weights: Mapping[DirectedLink, int]
                 ) -> dict[int, tuple[int, int, int]]:
    """Every node that can reach ``dst`` -> (out_port, next_dpid, delay_ns); dst -> (0, dst, 0)."""
    incoming: dict[int, list[tuple[int, int, int]]] = {}
    for (a, ap, b, _bp), w in weights.items():
        if a in nodes and b in nodes and a != b:
            incoming.setdefault(b, []).append((a, ap, w))
    best: dict[int, tuple[int, int, int, int]] = {dst: (0, 0, dst, 0)}
    done: set[int] = set()
    heap = [(best[dst], dst)]
    while heap:
        key, u = heapq.heappop(heap)
        if u in done or key != best.get(u):
            continue
        done.add(u)
        dist, hops = key[0], key[1]
        for a, ap, w in incoming.get(u, ()):
            if a in done:
                continue
            cand = (dist + w, hops + 1, u, ap)
            if a not in best or cand < best[a]:
                best[a] = cand
                heapq.heappush(heap, (cand, a))
    return {u: (k[3], k[2], k[0]) for u, k in best.items()}


def compute_routes(plan: Plan, links: Iterable[DirectedLink], connected: Iterable[int],
                   delays: Mapping[DirectedLink, float] | None = None) -> Routes:
    """Desired IPv4 flows per switch and the site path of every routed ordered host pair.

    ``delays`` overrides the plan's one-way delay of some links (measured values)."""
    nodes = set(connected)
    table = dict(plan.directed_delays())
    if delays:
        table.update(delays)
    weights, unknown = weigh_links(table, links)
    site = {s.dpid: s.site for s in plan.switches}
    routes = Routes(unknown_links=unknown)
    hosts = sorted((h for h in plan.hosts if h.dpid in nodes), key=lambda h: h.name)
    trees = routes.trees
    for h in hosts:
        if h.dpid not in trees:
            trees[h.dpid] = next_hops_to(h.dpid, nodes, weights)
        tree = trees[h.dpid]
        for u, (port, _nxt, _d) in tree.items():
            routes.flows.setdefault(u, {})[h.ip] = h.port if u == h.dpid else port
    routes.backups, routes.no_backup = loop_free_alternates(trees, nodes, weights)
    routes.unprotectable = bridged_pairs(routes.no_backup, trees, nodes, weights)
    for src in hosts:
        for dst in hosts:
            if src is dst:
                continue
            tree = trees[dst.dpid]
            if src.dpid not in tree:
                continue
            path = [src.dpid]
            while path[-1] != dst.dpid:
                path.append(tree[path[-1]][1])
            routes.paths[f"{src.name}>{dst.name}"] = [site.get(d, f"dpid:{d}") for d in path]
    return routes


def loop_free_alternates(trees: Mapping[int, Mapping[int, tuple[int, int, int]]],
                         nodes: set[int], weights: Mapping[DirectedLink, int]
                         ) -> tuple[dict[int, dict[int, tuple[int, int]]],
                                    list[tuple[int, int]]]:
    """Backup next hops for every (s, d) in ``trees`` (d's shortest-path tree), s != d.

    A candidate is a live link (s, port, n) other than the primary one with
    D(n,d) < D(n,s) + D(s,d) (strict: with a tie n's path might run through s); the best is
    the minimum of (w(s->n) + D(n,d), hops, n, port). A parallel link to the primary
    neighbour qualifies. Returns ({d: {s: (port, n)}}, sorted [(s, d) without a backup])."""
    dist: dict[int, dict[int, int]] = {d: {u: t[2] for u, t in tree.items()}
                                       for d, tree in trees.items()}

    def d_to(x: int, y: int) -> int | None:  # D(x, y), Dijkstra towards y on first use
        if y not in dist:
            dist[y] = {u: t[2] for u, t in next_hops_to(y, nodes, weights).items()}
        return dist[y].get(x)

    out_links: dict[int, list[tuple[int, int, int]]] = {}
    for (a, ap, b, _bp), w in weights.items():
        if a in nodes and b in nodes and a != b:
            out_links.setdefault(a, []).append((ap, b, w))
    backups: dict[int, dict[int, tuple[int, int]]] = {}
    missing: list[tuple[int, int]] = []
    for d in sorted(trees):
        tree = trees[d]
        hops = _hop_counts(tree, d)
        for s in sorted(tree):
            if s == d:
                continue
            primary_port, _nxt, d_sd = tree[s]
            best: tuple[int, int, int, int] | None = None
            for port, n, w in out_links.get(s, ()):
                if port == primary_port or n not in tree:  # a port has one peer
                    continue
                d_nd, d_ns = tree[n][2], d_to(n, s)
                if d_ns is not None and not d_nd < d_ns + d_sd:
                    continue
                cand = (w + d_nd, hops[n] + 1, n, port)
                if best is None or cand < best:
                    best = cand
            if best is None:
                missing.append((s, d))
            else:
                backups.setdefault(d, {})[s] = (best[3], best[2])
    return backups, sorted(missing)


def bridged_pairs(pairs: Iterable[tuple[int, int]],
                  trees: Mapping[int, Mapping[int, tuple[int, int, int]]], nodes: set[int],
                  weights: Mapping[DirectedLink, int]) -> list[tuple[int, int]]:
    """The (s, d) of ``pairs`` for which d is unreachable from s once s's primary link
    towards d is gone (a bridge of the graph: no backup could protect it)."""
    out_links: dict[int, list[tuple[int, int]]] = {}
    for a, ap, b, _bp in weights:
        if a in nodes and b in nodes and a != b:
            out_links.setdefault(a, []).append((ap, b))
    reach: dict[tuple[int, int], set[int]] = {}  # (s, cut port) -> reachable from s
    out = []
    for s, d in pairs:
        cut = (s, trees[d][s][0])
        if cut not in reach:
            seen, stack = {s}, [s]
            while stack:
                u = stack.pop()
                for port, v in out_links.get(u, ()):
                    if (u, port) != cut and v not in seen:
                        seen.add(v)
                        stack.append(v)
            reach[cut] = seen
        if d not in reach[cut]:
            out.append((s, d))
    return sorted(out)


def _hop_counts(tree: Mapping[int, tuple[int, int, int]], d: int) -> dict[int, int]:
    """Hops from every node of d's shortest-path tree to d."""
    hops = {d: 0}
    for u in tree:
        chain = []
        while u not in hops:
            chain.append(u)
            u = tree[u][1]
        for v in reversed(chain):
            hops[v] = hops[tree[v][1]] + 1
    return hops


def group_ids(plan: Plan) -> dict[int, int]:
    """A fast-failover group id per destination switch (every switch with a plan host): the
    same for every controller process with the same plan, so a restart finds its groups."""
    return {dpid: GROUP_ID_BASE + i
            for i, dpid in enumerate(sorted({h.dpid for h in plan.hosts}))}


def route_actions(plan: Plan, routes: Routes, gids: Mapping[int, int]
                  ) -> dict[int, dict[str, RouteAction]]:
    """The desired route flow of every host address on every switch: the host port on the
    host's own switch, else the destination switch's fast-failover group."""
    host_at = {h.ip: h for h in plan.hosts}
    out: dict[int, dict[str, RouteAction]] = {}
    for dpid, table in routes.flows.items():
        acts = out.setdefault(dpid, {})
        for ip, port in table.items():
            h = host_at[ip]
            acts[ip] = ("output", port) if h.dpid == dpid else ("group", gids[h.dpid])
    return out


def desired_groups(routes: Routes, gids: Mapping[int, int]) -> dict[int, dict[int, Buckets]]:
    """dpid -> {group id: (primary port, backup port or None)} for every destination switch
    it reaches (other than itself)."""
    out: dict[int, dict[int, Buckets]] = {}
    for d, tree in routes.trees.items():
        backup = routes.backups.get(d, {})
        for s, (port, _nxt, _delay) in tree.items():
            if s != d:
                b = backup.get(s)
                out.setdefault(s, {})[gids[d]] = (port, None if b is None else b[0])
    return out


@dataclass(frozen=True)
class FlowChange:
    op: str  # "add" | "modify" | "delete"
    key: Any  # an ipv4_dst (route flows) or a group id (groups)
    want: Any  # the desired action or buckets; None for a delete


def diff_flows(installed: Mapping[Any, Any], desired: Mapping[Any, Any]) -> list[FlowChange]:
    """The minimal changes that turn one switch's installed routes (or groups) into the
    desired ones."""
    out: list[FlowChange] = []
    for key in sorted(set(installed) | set(desired)):
        have, want = installed.get(key), desired.get(key)
        if have == want:
            continue
        if have is None:
            out.append(FlowChange("add", key, want))
        elif want is None:
            out.append(FlowChange("delete", key, None))
        else:
            out.append(FlowChange("modify", key, want))
    return out
