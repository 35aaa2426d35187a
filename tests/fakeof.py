"""A fake OpenFlow 1.3 flow table (one table per switch) and a packet tracer over a plan.

Small cousin of Faucet's clib/fakeoftable.py: apply the OFPFlowMods and OFPGroupMods the
controller generates, then ask "which actions for this packet?" or "which sites does a packet
from host A to host B cross?". Supports add / modify / modify_strict / delete / delete_strict,
priorities, cookies with masks, exact and masked matches on in_port, eth_*, ipv4_*,
ip_proto and L4 ports, apply-actions with output, set_field and group, meter instructions
(ignored: they limit rates, not paths).

Groups: fast-failover and indirect, with ADD, MODIFY, DELETE (also removing the flows that
use the group, as OVS does) and Open vSwitch's ADD_OR_MOD (0x8000); ADD of an existing group,
MODIFY of a missing one, a flow naming a missing group and a fast-failover bucket without a
watch port fail as they would on OVS. A fast-failover group uses its first bucket whose watch
port is live: a port is dead when :meth:`FakeTable.set_port_live` said so or when its link is
cut (``FakeNetwork.down``); the tracers resolve groups this way. No multiple tables, no other
group types: a message using them raises NotImplementedError.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any

from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as parser

_ALL_ONES = {"in_port": 0xFFFFFFFF, "eth_type": 0xFFFF, "ip_proto": 0xFF, "vlan_vid": 0x1FFF,
             "tcp_src": 0xFFFF, "tcp_dst": 0xFFFF, "udp_src": 0xFFFF, "udp_dst": 0xFFFF,
             "eth_dst": (1 << 48) - 1, "eth_src": (1 << 48) - 1,
             "ipv4_dst": 0xFFFFFFFF, "ipv4_src": 0xFFFFFFFF, "arp_tpa": 0xFFFFFFFF,
             "arp_spa": 0xFFFFFFFF, "arp_op": 0xFFFF}


def _to_int(name: str, value: Any) -> int:
    if isinstance(value, int):
        return value
    if name.startswith("eth_"):
        return int(value.replace(":", ""), 16)
    if name.startswith(("ipv4_", "arp_tpa", "arp_spa")):
        return int(ipaddress.IPv4Address(value))
    raise TypeError(f"cannot interpret {name}={value!r}")


def normalize_match(match: Any) -> dict[str, tuple[int, int]]:
    """OFPMatch (or a dict of field -> value | (value, mask)) -> {field: (value, mask)}."""
    items = match.items() if hasattr(match, "items") else []
    out = {}
    for name, v in items:
        if name not in _ALL_ONES:
            raise NotImplementedError(f"match field {name}")
        if isinstance(v, tuple):
            val, mask = _to_int(name, v[0]), _to_int(name, v[1])
        else:
            val, mask = _to_int(name, v), _ALL_ONES[name]
        out[name] = (val & mask, mask)
    return out


@dataclass
class Flow:
    priority: int
    match: dict[str, tuple[int, int]]
    cookie: int
    actions: list[Any] = field(default_factory=list)

    def matches_packet(self, pkt: dict[str, int]) -> bool:
        for name, (val, mask) in self.match.items():
            if name not in pkt or (pkt[name] & mask) != val:
                return False
        return True

    def covered_by(self, other: dict[str, tuple[int, int]]) -> bool:
        """True when this flow's match is at least as specific as ``other`` (non-strict ops)."""
        for name, (val, mask) in other.items():
            mine = self.match.get(name)
            if mine is None or (mine[1] & mask) != mask or (mine[0] & mask) != val:
                return False
        return True

    def outputs(self) -> list[int]:
        return [a.port for a in self.actions if isinstance(a, parser.OFPActionOutput)]

    def groups(self) -> list[int]:
        return [a.group_id for a in self.actions if isinstance(a, parser.OFPActionGroup)]


@dataclass
class Group:
    type: int
    buckets: list[tuple[int, list[Any]]]  # (watch_port, actions)


OFPGC_ADD_OR_MOD = 0x8000  # Open vSwitch extension: create or modify


def _actions(instructions: list) -> list:
    acts: list = []
    for inst in instructions:
        if isinstance(inst, parser.OFPInstructionMeter):
            continue  # rate limits do not change where a packet goes
        if not isinstance(inst, parser.OFPInstructionActions):
            raise NotImplementedError(f"instruction {type(inst).__name__}")
        if inst.type != ofp.OFPIT_APPLY_ACTIONS:
            raise NotImplementedError("only apply-actions")
        for a in inst.actions:
            if not isinstance(a, (parser.OFPActionOutput, parser.OFPActionSetField,
                                  parser.OFPActionGroup)):
                raise NotImplementedError(f"action {type(a).__name__}")
            acts.append(a)
    return acts


# OpenFlow 1.3 match prerequisites (spec 7.2.3.6): OVS rejects a flow whose match field
# lacks its prerequisite with OFPBMC_BAD_PREREQ, so the fake table does too.
_PREREQ = {"ipv4_src": ("eth_type", 0x0800), "ipv4_dst": ("eth_type", 0x0800),
           "arp_op": ("eth_type", 0x0806), "arp_spa": ("eth_type", 0x0806),
           "arp_tpa": ("eth_type", 0x0806), "ip_proto": ("eth_type", 0x0800),
           "tcp_src": ("ip_proto", 6), "tcp_dst": ("ip_proto", 6),
           "udp_src": ("ip_proto", 17), "udp_dst": ("ip_proto", 17)}


def check_prerequisites(match: dict[str, tuple[int, int]]) -> None:
    for name in match:
        need = _PREREQ.get(name)
        if need and match.get(need[0], (None,))[0] != need[1]:
            raise AssertionError(f"match on {name} without {need[0]}={need[1]:#x} "
                                 "(OFPBMC_BAD_PREREQ on a real switch)")


class FakeTable:
    """One switch's table 0."""

    def __init__(self, dpid: int) -> None:
        self.dpid = dpid
        self.flows: list[Flow] = []
        self.groups: dict[int, Group] = {}
        self.dead_ports: set[int] = set()

    def set_port_live(self, port: int, live: bool) -> None:
        """Carrier on/off for fast-failover liveness (not for where links lead)."""
        (self.dead_ports.discard if live else self.dead_ports.add)(port)

    def _check_groups(self, acts: list) -> None:
        for a in acts:
            if isinstance(a, parser.OFPActionGroup) and a.group_id not in self.groups:
                raise AssertionError(f"dpid {self.dpid}: flow names group {a.group_id:#x}, "
                                     "which does not exist (OFPBAC_BAD_OUT_GROUP on OVS)")

    def apply_group(self, gm: Any) -> None:
        cmd, gid = gm.command, gm.group_id
        if cmd == ofp.OFPGC_DELETE:
            gone = set(self.groups) if gid == ofp.OFPG_ALL else {gid} & set(self.groups)
            for g in gone:
                del self.groups[g]
            self.flows = [f for f in self.flows if not set(f.groups()) & gone]
            return
        if cmd not in (ofp.OFPGC_ADD, ofp.OFPGC_MODIFY, OFPGC_ADD_OR_MOD):
            raise NotImplementedError(f"group-mod command {cmd:#x}")
        if cmd == ofp.OFPGC_ADD and gid in self.groups:
            raise AssertionError(f"dpid {self.dpid}: group {gid:#x} exists "
                                 "(OFPGMFC_GROUP_EXISTS on OVS)")
        if cmd == ofp.OFPGC_MODIFY and gid not in self.groups:
            raise AssertionError(f"dpid {self.dpid}: group {gid:#x} does not exist "
                                 "(OFPGMFC_UNKNOWN_GROUP on OVS)")
        if gm.type not in (ofp.OFPGT_FF, ofp.OFPGT_INDIRECT):
            raise NotImplementedError(f"group type {gm.type}")
        buckets = []
        for b in gm.buckets:
            acts = [a for a in b.actions]
            for a in acts:
                if not isinstance(a, (parser.OFPActionOutput, parser.OFPActionSetField,
                                      parser.OFPActionGroup)):
                    raise NotImplementedError(f"bucket action {type(a).__name__}")
            self._check_groups(acts)
            if gm.type == ofp.OFPGT_FF and b.watch_port in (ofp.OFPP_ANY, None):
                raise AssertionError(f"dpid {self.dpid}: fast-failover bucket of group "
                                     f"{gid:#x} watches no port (OFPGMFC_BAD_WATCH on OVS)")
            buckets.append((b.watch_port, acts))
        if gm.type == ofp.OFPGT_INDIRECT and len(buckets) != 1:
            raise AssertionError(f"indirect group {gid:#x} needs exactly one bucket")
        self.groups[gid] = Group(gm.type, buckets)

    def apply(self, fm: Any) -> None:
        if fm.table_id not in (0, ofp.OFPTT_ALL):
            raise NotImplementedError(f"table {fm.table_id}")
        m = normalize_match(fm.match)
        check_prerequisites(m)
        cmd = fm.command

        def cookie_ok(f: Flow) -> bool:
            return (f.cookie & fm.cookie_mask) == (fm.cookie & fm.cookie_mask)

        def out_ok(f: Flow) -> bool:
            return fm.out_port in (ofp.OFPP_ANY, None) or fm.out_port in f.outputs()

        if cmd == ofp.OFPFC_ADD:
            acts = _actions(fm.instructions)
            self._check_groups(acts)
            self.flows = [f for f in self.flows if not (f.priority == fm.priority and f.match == m)]
            self.flows.append(Flow(fm.priority, m, fm.cookie, acts))
        elif cmd in (ofp.OFPFC_MODIFY, ofp.OFPFC_MODIFY_STRICT):
            acts = _actions(fm.instructions)
            self._check_groups(acts)
            strict = cmd == ofp.OFPFC_MODIFY_STRICT
            for f in self.flows:
                hit = (f.priority == fm.priority and f.match == m) if strict else f.covered_by(m)
                if hit and cookie_ok(f):
                    f.actions = list(acts)
        elif cmd in (ofp.OFPFC_DELETE, ofp.OFPFC_DELETE_STRICT):
            strict = cmd == ofp.OFPFC_DELETE_STRICT
            keep = []
            for f in self.flows:
                hit = (f.priority == fm.priority and f.match == m) if strict else f.covered_by(m)
                if not (hit and cookie_ok(f) and out_ok(f)):
                    keep.append(f)
            self.flows = keep
        else:
            raise NotImplementedError(f"flow-mod command {cmd}")

    def lookup(self, pkt: dict[str, Any]) -> Flow | None:
        """The highest-priority flow matching ``pkt``; raises on an ambiguous tie."""
        p = {k: _to_int(k, v) for k, v in pkt.items()}
        hits = [f for f in self.flows if f.matches_packet(p)]
        if not hits:
            return None
        top = max(f.priority for f in hits)
        best = [f for f in hits if f.priority == top]
        if len(best) > 1:
            raise AssertionError(f"dpid {self.dpid}: {len(best)} overlapping flows "
                                 f"at priority {top}")
        return best[0]

    def actions_for(self, pkt: dict[str, Any]) -> list:
        flow = self.lookup(pkt)
        return [] if flow is None else list(flow.actions)

    def flow_count(self, priority: int | None = None) -> int:
        return sum(1 for f in self.flows if priority is None or f.priority == priority)


class FakeNetwork:
    """Fake tables for every plan switch, wired by the plan's links."""

    def __init__(self, plan: Any) -> None:
        self.plan = plan
        self.tables = {s.dpid: FakeTable(s.dpid) for s in plan.switches}
        self.site = {s.dpid: s.site for s in plan.switches}
        self.down: set[str] = set()  # link ids that are cut
        self.packet_outs: list[Any] = []
        self.meter_mods: list[Any] = []
        self.group_mods: list[Any] = []

    def apply(self, msgs: list) -> None:
        for m in msgs:
            if isinstance(m, parser.OFPFlowMod):
                self.tables[m.datapath.id].apply(m)
            elif isinstance(m, parser.OFPGroupMod):
                self.group_mods.append(m)
                self.tables[m.datapath.id].apply_group(m)
            elif isinstance(m, parser.OFPPacketOut):
                self.packet_outs.append(m)
            elif isinstance(m, parser.OFPMeterMod):
                self.meter_mods.append(m)
            # barriers, port-desc requests: nothing to model

    def port_live(self, dpid: int, port: int) -> bool:
        if port in self.tables[dpid].dead_ports:
            return False
        return not any(lk.id in self.down and (dpid, port) in ((lk.a_dpid, lk.a_port),
                                                                 (lk.b_dpid, lk.b_port))
                       for lk in self.plan.links)

    def expand(self, dpid: int, actions: list, depth: int = 0) -> list:
        """``actions`` with every group replaced by the actions of the bucket it uses now
        (fast-failover: the first bucket whose watch port is live; none live: nothing)."""
        if depth > 8:
            raise TraceError(f"group chain too deep at dpid {dpid}")
        out: list = []
        for a in actions:
            if not isinstance(a, parser.OFPActionGroup):
                out.append(a)
                continue
            g = self.tables[dpid].groups.get(a.group_id)
            if g is None:
                raise TraceError(f"dpid {dpid}: group {a.group_id:#x} missing")
            live = [acts for watch, acts in g.buckets
                    if g.type != ofp.OFPGT_FF or self.port_live(dpid, watch)]
            if live:
                out += self.expand(dpid, live[0], depth + 1)
        return out

    def _peer(self, dpid: int, port: int) -> tuple[int, int] | None:
        for lk in self.plan.links:
            if lk.id in self.down:
                continue
            if (lk.a_dpid, lk.a_port) == (dpid, port):
                return lk.b_dpid, lk.b_port
            if (lk.b_dpid, lk.b_port) == (dpid, port):
                return lk.a_dpid, lk.a_port
        return None

    def trace(self, src_name: str, dst_name: str, max_hops: int = 64) -> list[str]:
        """Sites crossed by an IPv4 packet from host src to host dst; raises on drop or loop."""
        hosts = {h.name: h for h in self.plan.hosts}
        src, dst = hosts[src_name], hosts[dst_name]
        pkt = {"eth_type": 0x0800, "eth_src": src.mac, "eth_dst": dst.mac,
               "ipv4_src": src.ip, "ipv4_dst": dst.ip}
        dpid, in_port = src.dpid, src.port
        sites: list[str] = []
        seen: set[tuple[int, int]] = set()
        while True:
            if (dpid, in_port) in seen or len(sites) >= max_hops:
                raise TraceError(f"loop: {' '.join(sites)} -> {self.site[dpid]}")
            seen.add((dpid, in_port))
            sites.append(self.site[dpid])
            acts = self.expand(dpid, self.tables[dpid].actions_for({**pkt, "in_port": in_port}))
            outs = [a.port for a in acts if isinstance(a, parser.OFPActionOutput)]
            if not outs:
                raise TraceError(f"dropped at {self.site[dpid]} (dpid {dpid}) after {sites}")
            if len(outs) > 1:
                raise TraceError(f"{len(outs)} outputs at dpid {dpid}: {outs}")
            if outs[0] == in_port:
                # OpenFlow: a plain output to the ingress port is not sent (OFPP_IN_PORT is)
                raise TraceError(f"output to the ingress port {dpid}:{in_port} is dropped")
            out = in_port if outs[0] == ofp.OFPP_IN_PORT else outs[0]
            if out > ofp.OFPP_MAX:
                raise TraceError(f"reserved output port {out:#x} at dpid {dpid}")
            host = next((h for h in self.plan.hosts if (h.dpid, h.port) == (dpid, out)), None)
            if host is not None:
                if host.name != dst.name:
                    raise TraceError(f"delivered to {host.name} instead of {dst.name}")
                return sites
            peer = self._peer(dpid, out)
            if peer is None:
                raise TraceError(f"output to unwired or cut port {dpid}:{out}")
            dpid, in_port = peer


class TraceError(AssertionError):
    pass


# ---- plan documents and a discovery driver shared by the controller tests -----------------

def ring_plan_doc(run_id: str = "t001") -> dict:
    """Four switches in a ring s1-s2-s3-s4-s1, one host each.

    s1->s2 direct is 10 ms but s1->s4->s3->s2 is 3 ms, so the latency-shortest path is not
    the fewest-hop one; the link is asymmetric (s2->s1 is 0.5 ms), so the reverse goes direct.
    """
    sites = ["beijing", "shanghai", "guangzhou", "chengdu"]
    doc: dict = {"format": "edwc-plan/1", "run_id": run_id, "topology": "test-ring",
                 "switches": [], "hosts": [], "links": []}
    for i, site in enumerate(sites, start=1):
        doc["switches"].append({"name": f"x{run_id}s{i}", "site": site, "dpid": i})
        doc["hosts"].append({"name": site, "site": site, "ip": f"10.0.0.{i}", "prefixlen": 8,
                             "mac": f"02:00:00:00:00:{i:02x}", "dpid": i, "port": 1})
    # (a, b, a_port, b_port, ab, ba): port 2 = clockwise, port 3 = counter-clockwise
    for a, b, ab, ba in [(1, 2, 10.0, 0.5), (2, 3, 1.0, 1.0), (3, 4, 1.0, 1.0), (4, 1, 1.0, 1.0)]:
        doc["links"].append({"id": f"{sites[a - 1]}-{sites[b - 1]}", "a": sites[a - 1],
                             "b": sites[b - 1], "a_dpid": a, "a_port": 2, "b_dpid": b,
                             "b_port": 3, "delay_ms_ab": ab, "delay_ms_ba": ba,
                             "bandwidth_mbps": 1000.0})
    return doc


def port_infos(plan: Any, dpid: int, down: tuple[int, ...] = ()) -> list:
    """PortInfo for every plan port of a switch (hosts and links), some of them down."""
    from controller.core import PortInfo
    ports = {h.port for h in plan.hosts if h.dpid == dpid}
    for lk in plan.links:
        if lk.a_dpid == dpid:
            ports.add(lk.a_port)
        if lk.b_dpid == dpid:
            ports.add(lk.b_port)
    return [PortInfo(p, ofp.OFPPS_LINK_DOWN if p in down else 0, 0) for p in sorted(ports)]


def deliver_probes(core: Any, net: FakeNetwork, msgs: list, now: float) -> list:
    """Carry every probe packet-out in ``msgs`` across the (fake) wire to the core.

    Returns every message the core produced in response (recursively), all applied to
    ``net``'s tables.
    """
    from controller.probe import ETH_TYPE_LLDP
    out: list = []
    queue = list(msgs)
    while queue:
        m = queue.pop(0)
        out.append(m)
        net.apply([m])
        if isinstance(m, parser.OFPPacketOut) and m.data[12:14] == ETH_TYPE_LLDP.to_bytes(2, "big"):
            peer = net._peer(m.datapath.id, m.actions[0].port)
            if peer is not None and peer[0] in core.dps:
                queue.extend(core.packet_in(peer[0], peer[1], bytes(m.data), now))
    return out


def bring_up(core: Any, net: FakeNetwork, now: float = 0.0) -> list:
    """Connect every plan switch, answer port descriptions, discover all links."""
    from controller.ofmsg import stub_datapath
    msgs: list = []
    for s in net.plan.switches:
        msgs += deliver_probes(core, net, core.switch_up(stub_datapath(s.dpid), now), now)
    for s in net.plan.switches:
        msgs += deliver_probes(core, net, core.port_desc(s.dpid, port_infos(net.plan, s.dpid), now),
                               now)
    return msgs


def ack_barriers(core: Any, msgs: list, now: float = 0.0) -> None:
    for m in msgs:
        if isinstance(m, parser.OFPBarrierRequest):
            core.barrier_reply(m.datapath.id, m.xid, now)


def trace_packet(net: FakeNetwork, pkt: dict[str, Any], dpid: int, in_port: int,
                 max_hops: int = 64) -> tuple[list[str], dict[str, Any], str]:
    """Follow ``pkt`` (match fields) from (dpid, in_port), applying set-field actions.

    Returns (sites crossed, the packet as delivered, the host it was delivered to);
    raises TraceError on a drop, a loop or a punt to the controller."""
    pkt = dict(pkt)
    hosts = {(h.dpid, h.port): h for h in net.plan.hosts}
    sites: list[str] = []
    seen: set[tuple[int, int]] = set()
    while True:
        if (dpid, in_port) in seen or len(sites) >= max_hops:
            raise TraceError(f"loop: {' '.join(sites)}")
        seen.add((dpid, in_port))
        sites.append(net.site[dpid])
        acts = net.expand(dpid, net.tables[dpid].actions_for({**pkt, "in_port": in_port}))
        out = None
        for a in acts:
            if isinstance(a, parser.OFPActionSetField):
                pkt[a.key] = a.value
            elif isinstance(a, parser.OFPActionOutput):
                if out is not None:
                    raise TraceError(f"two outputs at dpid {dpid}")
                out = a.port
        if out is None:
            raise TraceError(f"dropped at {net.site[dpid]} after {sites}")
        if out == ofp.OFPP_CONTROLLER:
            raise TraceError(f"punted to the controller at {net.site[dpid]}")
        if out == in_port or out > ofp.OFPP_MAX:
            raise TraceError(f"bad output {out:#x} at dpid {dpid}")
        if (dpid, out) in hosts:
            return sites, pkt, hosts[(dpid, out)].name
        peer = net._peer(dpid, out)
        if peer is None:
            raise TraceError(f"output to unwired or cut port {dpid}:{out}")
        dpid, in_port = peer
