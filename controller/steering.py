"""Compute-aware steering (CATS): place a new flow to a service address on a gateway, pure.

A client sends to a service's anycast address (CS-ID). The first packet of a flow is punted;
:class:`Steering` builds the candidates (every live gateway serving the service, with the
round trip over the current latency-shortest paths plus its advertised processing delay and
its effective free units), keeps the feasible ones (within the budget, enough units), asks the
policy (C-PS) for one, and returns the OpenFlow messages that pin the flow both ways:

  forward, client switch  : match 5-tuple to CS-ID   -> set eth_dst, ipv4_dst := gateway; out
  forward, later hops     : match 5-tuple to gateway -> out
  reverse, gateway switch : match reply 5-tuple from gateway -> set ipv4_src := CS-ID,
                            eth_src := service MAC; out
  reverse, later hops     : match reply 5-tuple from CS-ID -> out

"out" is the host port on the last switch, and elsewhere the fast-failover group of the far
end's switch (the one its destination routes use), so a fibre cut on the path moves the flow
to the group's backup in the switch. A packet that detours through a switch without a rule of
this flow meets the destination route of the gateway (forward) or the client (reverse): the
rewrites happen at the ends, so it still arrives right.

All rules are per flow (instance affinity: every packet keeps its gateway; the path is the
current shortest one, re-pinned by the controller when it changes), carry ``COOKIE_STEER``
and an idle timeout; the client-switch rule asks for a flow-removed message, whose idle
timeout ends the placement. Messages go downstream first, the client-switch rule last, then the
first packet itself is sent on with the rewrite. When nothing fits, the caller refuses the flow
(TCP reset or ICMP unreachable) and the decision is logged with its reason.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from . import ofmsg
from .gateways import GatewayRegistry
from .policy import Candidate, Nearest, Policy, Request, safe_choose
from .routing import Routes

LOG = logging.getLogger("edwc.controller.steering")

PRIO_STEER = 200  # per-flow placements, above destination routes (100)
PRIO_SERVICE_PUNT = 150  # first packet to a CS-ID goes to the controller
COOKIE_STEER = 0xEDC0_0000_0000_0002
SERVICE_MAC = "02:ed:ff:00:00:01"  # answers ARP for every CS-ID and the advert collector
DEFAULT_IDLE_TIMEOUT = 10
MAX_PLACEMENTS = 200_000
MAX_DECISIONS = 1000
IP_TCP, IP_UDP, IP_ICMP = 6, 17, 1

Hop = tuple[int, int]  # (dpid, out_port)


@dataclass(frozen=True)
class FlowKey:
    client_ip: str
    service_ip: str
    proto: int
    sport: int = 0
    dport: int = 0

    def to_list(self) -> list:
        return [self.client_ip, self.service_ip, self.proto, self.sport, self.dport]


@dataclass
class Placement:
    key: FlowKey
    service: str
    client: str
    gateway: str
    gw_ip: str
    gw_mac: str
    forward: list[Hop]
    reverse: list[Hop]
    rtt_ms: float
    created: float
    policy: str
    adopted: bool = False  # rebuilt from a switch's flow table after a controller restart


@dataclass
class Decision:
    at: float  # wall clock
    client: str
    service: str
    flow: list
    gateway: str | None
    reason: str
    policy: str
    rtt_ms: float | None = None
    latency_ms: float | None = None
    candidates: int = 0
    feasible: int = 0
    path: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return dict(vars(self))


def _l4(dp: Any, proto: int, src: int | None, dst: int | None) -> dict:
    if proto == IP_TCP:
        return {"tcp_src": src, "tcp_dst": dst}
    if proto == IP_UDP:
        return {"udp_src": src, "udp_dst": dst}
    return {}


def forward_match(dp: Any, key: FlowKey, dst_ip: str) -> Any:
    return ofmsg.match(dp, eth_type=ofmsg.ETH_TYPE_IP, ip_proto=key.proto,
                       ipv4_src=key.client_ip, ipv4_dst=dst_ip,
                       **_l4(dp, key.proto, key.sport, key.dport))


def reverse_match(dp: Any, key: FlowKey, src_ip: str) -> Any:
    return ofmsg.match(dp, eth_type=ofmsg.ETH_TYPE_IP, ip_proto=key.proto,
                       ipv4_src=src_ip, ipv4_dst=key.client_ip,
                       **_l4(dp, key.proto, key.dport, key.sport))


def _set(dp: Any, **kw: Any) -> Any:
    return dp.ofproto_parser.OFPActionSetField(**kw)


def _steer_flow(dp: Any, m: Any, actions: list, idle: int, notify: bool = False) -> Any:
    return ofmsg.flowmod(dp, dp.ofproto.OFPFC_ADD, PRIO_STEER, m, actions,
                         cookie=COOKIE_STEER, idle_timeout=idle,
                         flags=dp.ofproto.OFPFF_SEND_FLOW_REM if notify else 0)


def _toward(dp: Any, dst_dpid: int, port: int, groups: Mapping[int, int] | None) -> Any:
    """Out towards switch ``dst_dpid``: the host port there, else its fast-failover group
    (``groups``: destination dpid -> group id; None = plain output ports)."""
    if groups is not None and dp.id != dst_dpid and dst_dpid in groups:
        return ofmsg.group(dp, groups[dst_dpid])
    return ofmsg.output(dp, port)


def ingress_actions(dp: Any, p: Placement, groups: Mapping[int, int] | None = None) -> list:
    return [_set(dp, eth_dst=p.gw_mac), _set(dp, ipv4_dst=p.gw_ip),
            _toward(dp, p.forward[-1][0], p.forward[0][1], groups)]


def placement_flows(dps: dict[int, Any], p: Placement, idle: int,
                    groups: Mapping[int, int] | None = None) -> list:
    """Flow-mods pinning ``p`` both ways, downstream first, the client-switch rule last
    (``groups``: destination dpid -> fast-failover group id, see _toward).
    Raises KeyError when a switch on the path is not connected."""
    msgs: list = []
    gw_dpid, client_dpid = p.forward[-1][0], p.reverse[-1][0]
    for dpid, port in reversed(p.forward[1:]):
        dp = dps[dpid]
        msgs.append(_steer_flow(dp, forward_match(dp, p.key, p.gw_ip),
                                [_toward(dp, gw_dpid, port, groups)], idle))
    for i, (dpid, port) in enumerate(p.reverse):
        dp = dps[dpid]
        out = _toward(dp, client_dpid, port, groups)
        if i == 0:
            msgs.append(_steer_flow(dp, reverse_match(dp, p.key, p.gw_ip),
                                    [_set(dp, eth_src=SERVICE_MAC),
                                     _set(dp, ipv4_src=p.key.service_ip), out], idle))
        else:
            msgs.append(_steer_flow(dp, reverse_match(dp, p.key, p.key.service_ip), [out],
                                    idle))
    dp = dps[p.forward[0][0]]
    msgs.append(_steer_flow(dp, forward_match(dp, p.key, p.key.service_ip),
                            ingress_actions(dp, p, groups), idle, notify=True))
    return msgs


def placement_stale_deletes(dps: dict[int, Any], p: Placement, old_forward: list[Hop],
                            old_reverse: list[Hop]) -> list:
    """After ``p`` moved to a new path (its new rules already sent): DELETE_STRICT for the
    rules on switches that were on the old path of a direction and are not on the new one.
    The end rules (client switch forward, gateway switch reverse) never move."""
    msgs = []
    for old, new, m_fn, ip in ((old_forward, p.forward, forward_match, p.gw_ip),
                               (old_reverse, p.reverse, reverse_match, p.key.service_ip)):
        keep = {dpid for dpid, _ in new[1:]}
        for dpid, _ in old[1:]:
            dp = dps.get(dpid)
            if dpid not in keep and dp is not None:
                msgs.append(ofmsg.flow_delete_strict(dp, PRIO_STEER, m_fn(dp, p.key, ip),
                                                     cookie=COOKIE_STEER))
    return msgs


def placement_deletes(dps: dict[int, Any], p: Placement) -> list:
    """DELETE_STRICT for every rule of ``p`` on connected switches (idempotent)."""
    msgs = []

    def delete(dpid: int, m_fn, ip: str) -> None:
        dp = dps.get(dpid)
        if dp is not None:
            msgs.append(ofmsg.flow_delete_strict(dp, PRIO_STEER, m_fn(dp, p.key, ip),
                                                 cookie=COOKIE_STEER))

    delete(p.forward[0][0], forward_match, p.key.service_ip)
    for dpid, _ in p.forward[1:]:
        delete(dpid, forward_match, p.gw_ip)
    delete(p.reverse[0][0], reverse_match, p.gw_ip)
    for dpid, _ in p.reverse[1:]:
        delete(dpid, reverse_match, p.key.service_ip)
    return msgs


def service_punt_flows(dp: Any, service_ips: list[str]) -> list:
    """First packets to a CS-ID go to the controller (below placements, above routes)."""
    ctl = [ofmsg.output(dp, dp.ofproto.OFPP_CONTROLLER)]
    return [ofmsg.flow_add(dp, PRIO_SERVICE_PUNT,
                           ofmsg.match(dp, eth_type=ofmsg.ETH_TYPE_IP, ipv4_dst=ip), ctl)
            for ip in service_ips]


class Steering:
    """Placements, decisions and the policy; the core hands it parsed first packets."""

    def __init__(self, plan: Any, registry: GatewayRegistry, policy: Policy,
                 idle_timeout: int = DEFAULT_IDLE_TIMEOUT,
                 wall: Callable[[], float] | None = None) -> None:
        import time
        self.plan = plan
        self.registry = registry
        self.policy = policy
        self.previous_policy: Policy | None = None
        self.policy_errors: deque[dict] = deque(maxlen=50)
        self.idle_timeout = idle_timeout
        self.wall = wall or time.time
        self.services = {s.address: s for s in plan.services}
        self.gateways = {g.id: g for g in plan.gateways}
        self.host_by_ip = {h.ip: h for h in plan.hosts}
        self.site_of = {s.dpid: s.site for s in plan.switches}
        self.placements: dict[FlowKey, Placement] = {}
        self.decisions: deque[Decision] = deque(maxlen=MAX_DECISIONS)
        self.per_policy: dict[str, dict[str, int]] = {}
        self.per_gateway: dict[str, int] = {}

    # ---- candidates and decisions -----------------------------------------------------
    def candidates(self, client_dpid: int, service: Any, routes: Routes, now: float
                   ) -> list[Candidate]:
        out = []
        alive = {st.gw: st for st in self.registry.alive(now)}
        for gid in sorted(alive):
            g = self.gateways.get(gid)
            st = alive[gid]
            adv = st.advert
            if g is None or service.name not in g.services or service.name not in adv.services:
                continue
            fwd, rev = routes.delay_ms(client_dpid, g.dpid), routes.delay_ms(g.dpid, client_dpid)
            if fwd is None or rev is None:
                continue
            per_kind = self.registry.kind_free(gid, service.kinds, now)
            if not per_kind or max(t for t, _f in per_kind.values()) <= 0:
                continue
            # A job holds units of ONE kind: the candidate offers its best kind (most
            # effective free units, then the larger pool).
            total, free = max(per_kind.values(), key=lambda tf: (tf[1], tf[0]))
            rtt = fwd + rev
            out.append(Candidate(
                gateway=gid, site=g.site, hub=g.hub, rtt_ms=round(rtt, 6),
                latency_ms=round(rtt + adv.delay_ms, 6),
                free_units=free, total_units=total,
                utilization=adv.util, queue=adv.queue, delay_ms=adv.delay_ms, price=adv.price,
                green=adv.green, pue=adv.pue, operator=adv.operator))
        return out

    def decide(self, client: Any, key: FlowKey, routes: Routes, now: float
               ) -> tuple[Placement | None, Decision]:
        """Choose a gateway for a new flow; returns (placement or None, the decision)."""
        service = self.services[key.service_ip]
        req = Request(client=client.name, service=service.name, budget_ms=service.budget_ms,
                      units=service.units, kinds=tuple(service.kinds),
                      flow=tuple(key.to_list()), service_class=service.service_class)
        cands = self.candidates(client.dpid, service, routes, now)
        feasible = [c for c in cands
                    if c.latency_ms <= service.budget_ms and c.free_units >= service.units]
        dec = Decision(at=self.wall(), client=client.name, service=service.name,
                       flow=key.to_list(), gateway=None, reason="", policy=self.policy.name,
                       candidates=len(cands), feasible=len(feasible))
        if not feasible:
            dec.reason = self._refusal_reason(service, cands)
            self._count("refused")
            return None, dec
        chosen, err = safe_choose(self.policy, req, feasible, now)
        if err is not None:
            self._count("policy_errors")
            failed = self.policy.name
            fallback = self.previous_policy or Nearest()
            LOG.error("policy %s failed: %s; back to the previous policy %s", failed, err,
                      fallback.name)
            self.policy, self.previous_policy = fallback, None
            self.policy_errors.append({"at": self.wall(), "policy": failed, "error": err[:300]})
            chosen, err2 = safe_choose(self.policy, req, feasible, now)
            if err2 is not None:
                chosen = min(feasible, key=lambda c: (c.latency_ms, c.gateway))
            dec.policy = self.policy.name
            dec.reason = f"policy {failed} failed ({err[:120]}); used {self.policy.name}"
        if chosen is None:
            dec.reason = f"policy {self.policy.name} declined all {len(feasible)} feasible"
            self._count("refused")
            return None, dec
        g = self.gateways[chosen.gateway]
        fwd, rev = routes.hops(client.dpid, g.dpid), routes.hops(g.dpid, client.dpid)
        if fwd is None or rev is None:  # candidates() saw a path: cannot happen
            dec.reason = "no path"
            return None, dec
        fwd[-1] = (fwd[-1][0], g.port)
        rev[-1] = (rev[-1][0], client.port)
        p = Placement(key=key, service=service.name, client=client.name, gateway=g.id,
                      gw_ip=g.ip, gw_mac=g.mac, forward=fwd, reverse=rev,
                      rtt_ms=chosen.rtt_ms, created=now, policy=self.policy.name)
        dec.gateway = g.id
        dec.rtt_ms, dec.latency_ms = chosen.rtt_ms, chosen.latency_ms
        dec.path = [self.site_of.get(d, str(d)) for d, _ in fwd]
        if not dec.reason:
            others = sorted((c for c in feasible if c is not chosen), key=lambda c: c.latency_ms)
            dec.reason = (f"{self.policy.name}: {chosen.gateway} latency {chosen.latency_ms:.2f}"
                          f"/{service.budget_ms:g} ms, free {chosen.free_units}/"
                          f"{chosen.total_units}, {len(feasible)} feasible of {len(cands)}"
                          + (f"; next {others[0].gateway} {others[0].latency_ms:.2f} ms"
                             if others else ""))
        self._count("placed")
        self.per_gateway[g.id] = self.per_gateway.get(g.id, 0) + 1
        return p, dec

    @staticmethod
    def _refusal_reason(service: Any, cands: list[Candidate]) -> str:
        if not cands:
            return f"no live gateway serves {service.name}"
        in_budget = [c for c in cands if c.latency_ms <= service.budget_ms]
        if not in_budget:
            best = min(cands, key=lambda c: c.latency_ms)
            return (f"no gateway within the {service.budget_ms:g} ms budget (nearest "
                    f"{best.gateway} at {best.latency_ms:.2f} ms)")
        return (f"{len(in_budget)} gateway(s) within budget, none with {service.units} free "
                f"units of {'/'.join(service.kinds)} ("
                + ", ".join(f"{c.gateway}:{c.free_units}" for c in in_budget[:5]) + ")")

    def _count(self, what: str) -> None:
        c = self.per_policy.setdefault(self.policy.name, {})
        c[what] = c.get(what, 0) + 1

    # ---- the placement table ------------------------------------------------------------
    def record(self, p: Placement, dec: Decision | None, now: float) -> None:
        if dec is not None:
            self.decisions.append(dec)
        if len(self.placements) >= MAX_PLACEMENTS and p.key not in self.placements:
            oldest = min(self.placements.values(), key=lambda q: q.created)
            self.placements.pop(oldest.key, None)
        self.placements[p.key] = p

    def ended(self, key: FlowKey) -> Placement | None:
        return self.placements.pop(key, None)

    def snapshot(self, limit: int = 100) -> dict:
        return {
            "policy": self.policy.name,
            "placements": len(self.placements),
            "per_gateway_active": _count_by(self.placements.values(), "gateway"),
            "per_gateway_total": dict(sorted(self.per_gateway.items())),
            "per_policy": {k: dict(v) for k, v in sorted(self.per_policy.items())},
            "policy_errors": list(self.policy_errors),
            "decisions": [d.to_dict() for d in list(self.decisions)[-limit:]],
        }


def _count_by(items, attr: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for it in items:
        k = getattr(it, attr)
        out[k] = out.get(k, 0) + 1
    return dict(sorted(out.items()))
