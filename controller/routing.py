"""Latency-shortest, destination-based routing on the discovered directed graph (pure).

Weights are the plan's one-way delay in the direction of travel, in integer nanoseconds so
that ties are exact. For each destination switch, Dijkstra runs on the reversed graph; a
switch's next hop is the lexicographic minimum of (delay, hops, next dpid, out port), so the
result does not depend on dict or discovery order.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from .plan import Plan

DirectedLink = tuple[int, int, int, int]  # (from_dpid, from_port, to_dpid, to_port)
UNKNOWN_LINK_DELAY_MS = 1000.0  # a discovered link the plan does not know: usable, last resort
FlowTable = dict[int, dict[str, int]]  # dpid -> {ipv4_dst: out_port}


@dataclass
class Routes:
    flows: FlowTable = field(default_factory=dict)
    paths: dict[str, list[str]] = field(default_factory=dict)  # "src>dst" -> sites
    unknown_links: list[DirectedLink] = field(default_factory=list)
    # destination dpid -> {dpid: (out_port, next_dpid, delay_ns to the destination)}
    trees: dict[int, dict[int, tuple[int, int, int]]] = field(default_factory=dict)

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


@dataclass(frozen=True)
class FlowChange:
    op: str  # "add" | "modify" | "delete"
    ip: str
    port: int | None


def diff_flows(installed: Mapping[str, int], desired: Mapping[str, int]) -> list[FlowChange]:
    """The minimal changes that turn one switch's installed routes into the desired ones."""
    out: list[FlowChange] = []
    for ip in sorted(set(installed) | set(desired)):
        have, want = installed.get(ip), desired.get(ip)
        if have == want:
            continue
        if have is None:
            out.append(FlowChange("add", ip, want))
        elif want is None:
            out.append(FlowChange("delete", ip, None))
        else:
            out.append(FlowChange("modify", ip, want))
    return out
