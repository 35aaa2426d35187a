"""Routing on discovered links, checked by applying the generated flows to fake tables."""

from __future__ import annotations

import itertools

from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as parser

from controller import ofmsg
from controller.core import ControllerCore, PortInfo
from controller.plan import parse_plan
from controller.routing import compute_routes, diff_flows, next_hops_to
from tests.fakeof import FakeNetwork, TraceError, ack_barriers, bring_up, ring_plan_doc

ALL_RING_LINKS = [(1, 2, 2, 3), (2, 3, 1, 2), (2, 2, 3, 3), (3, 3, 2, 2),
                  (3, 2, 4, 3), (4, 3, 3, 2), (4, 2, 1, 3), (1, 3, 4, 2)]


def ring():
    plan = parse_plan(ring_plan_doc())
    core = ControllerCore(plan, probe_interval=1.0)
    net = FakeNetwork(plan)
    msgs = bring_up(core, net)
    return plan, core, net, msgs


def test_latency_beats_hop_count_on_ring():
    plan = parse_plan(ring_plan_doc())
    routes = compute_routes(plan, ALL_RING_LINKS, [1, 2, 3, 4])
    # s1 -> s2: direct is 10 ms, round the ring 3 ms
    assert routes.paths["beijing>shanghai"] == ["beijing", "chengdu", "guangzhou", "shanghai"]
    # asymmetric: s2 -> s1 is 0.5 ms direct
    assert routes.paths["shanghai>beijing"] == ["shanghai", "beijing"]
    assert routes.flows[1]["10.0.0.2"] == 3 and routes.flows[2]["10.0.0.1"] == 3
    assert routes.flows[1]["10.0.0.1"] == 1  # host port on the host's own switch


def test_tie_break_is_deterministic():
    # square 1-2-4, 1-3-4 with equal delays: lower next-hop dpid wins, in any link order
    w = {(1, 1, 2, 1): 5, (2, 2, 4, 1): 5, (1, 2, 3, 1): 5, (3, 2, 4, 2): 5}
    for order in itertools.permutations(w.items()):
        hops = next_hops_to(4, {1, 2, 3, 4}, dict(order))
        assert hops[1] == (1, 2, 10)


def test_unknown_link_is_last_resort():
    plan = parse_plan(ring_plan_doc())
    extra = (1, 9, 2, 9)  # discovered, not in the plan: 1000 ms
    routes = compute_routes(plan, ALL_RING_LINKS + [extra], [1, 2, 3, 4])
    assert routes.unknown_links == [extra]
    assert routes.flows[1]["10.0.0.2"] == 3
    only = compute_routes(plan, [extra, (2, 3, 1, 2)], [1, 2])
    assert only.flows[1]["10.0.0.2"] == 9


def test_diff_flows():
    ch = diff_flows({"a": 1, "b": 2, "c": 3}, {"b": 2, "c": 4, "d": 5})
    assert [(c.op, c.key, c.want) for c in ch] == [
        ("delete", "a", None), ("modify", "c", 4), ("add", "d", 5)]


def test_every_host_reaches_every_host_along_the_computed_path():
    plan, core, net, msgs = ring()
    assert set(core.links) == set(ALL_RING_LINKS)
    assert len(core.routes.paths) == 12
    for src, dst in itertools.permutations([h.name for h in plan.hosts], 2):
        assert net.trace(src, dst) == core.routes.paths[f"{src}>{dst}"]
    assert net.trace("beijing", "shanghai") == ["beijing", "chengdu", "guangzhou", "shanghai"]


def test_base_flows_never_flood_and_drop_unknown():
    plan, core, net, msgs = ring()
    for m in msgs:
        acts = getattr(m, "actions", None) or [
            a for i in getattr(m, "instructions", []) for a in getattr(i, "actions", [])]
        assert all(getattr(a, "port", None) not in (ofp.OFPP_FLOOD, ofp.OFPP_ALL)
                   for a in acts)
    for g in net.group_mods:
        assert all(a.port not in (ofp.OFPP_FLOOD, ofp.OFPP_ALL)
                   for b in g.buckets for a in b.actions)
    t = net.tables[1]
    assert t.actions_for({"in_port": 1, "eth_type": 0x0800, "ipv4_dst": "10.9.9.9"}) == []
    assert t.actions_for({"in_port": 2, "eth_type": 0x86DD}) == []
    for eth_type in (0x88CC, 0x0806):
        (a,) = t.actions_for({"in_port": 2, "eth_type": eth_type})
        assert a.port == ofp.OFPP_CONTROLLER


def test_all_messages_serialize():
    _, _, _, msgs = ring()
    for m in msgs:
        m.serialize()
        assert m.buf[0] == ofp.OFP_VERSION


def test_port_down_reroutes_and_touches_only_affected_switches():
    plan, core, net, _ = ring()
    before = {d: dict(f) for d, f in core.installed.items()}
    groups_before = {d: dict(g) for d, g in core.installed_groups.items()}
    version = core.routes_version
    # cut guangzhou(s3)-chengdu(s4): carrier loss on both ends
    net.down.add("guangzhou-chengdu")
    msgs = core.port_status(3, ofp.OFPPR_MODIFY, PortInfo(2, ofp.OFPPS_LINK_DOWN, 0), 1.0)
    msgs += core.port_status(4, ofp.OFPPR_MODIFY, PortInfo(3, ofp.OFPPS_LINK_DOWN, 0), 1.0)
    net.apply(msgs)
    assert (3, 2, 4, 3) not in core.links and (4, 3, 3, 2) not in core.links
    assert core.routes_version > version
    # route flows name each destination switch's failover group: a re-route only rewrites
    # the groups whose primary or backup changed
    assert not [m for m in msgs if isinstance(m, parser.OFPFlowMod)]
    assert core.installed == before
    groupmods = [m for m in msgs if isinstance(m, parser.OFPGroupMod)]
    touched = {m.datapath.id for m in groupmods}
    changed = {d for d in groups_before if groups_before[d] != core.installed_groups[d]}
    assert touched == changed and touched
    assert len(groupmods) == sum(len(diff_flows(groups_before[d], core.installed_groups[d]))
                                 for d in changed)
    assert all(m.command == ofmsg.OFPGC_ADD_OR_MOD for m in groupmods)  # still reachable
    # s2 (shanghai) still reaches every destination through the same first hop
    assert {g: b[0] for g, b in core.installed_groups[2].items()} == \
        {g: b[0] for g, b in groups_before[2].items()}
    barriers = {m.datapath.id for m in msgs if isinstance(m, parser.OFPBarrierRequest)}
    assert barriers == touched
    assert net.trace("beijing", "shanghai") == ["beijing", "shanghai"]
    assert net.trace("guangzhou", "chengdu") == ["guangzhou", "shanghai", "beijing", "chengdu"]
    for src, dst in itertools.permutations([h.name for h in plan.hosts], 2):
        assert net.trace(src, dst) == core.routes.paths[f"{src}>{dst}"]
    # port comes back: probed at once, link rediscovered, old path restored
    from tests.fakeof import deliver_probes
    net.down.discard("guangzhou-chengdu")
    up = core.port_status(3, ofp.OFPPR_MODIFY, PortInfo(2, 0, 0), 2.0)
    up += core.port_status(4, ofp.OFPPR_MODIFY, PortInfo(3, 0, 0), 2.0)
    assert len(up) == 2 and all(isinstance(m, parser.OFPPacketOut) for m in up)
    deliver_probes(core, net, up, 2.0)
    assert net.trace("beijing", "shanghai") == ["beijing", "chengdu", "guangzhou", "shanghai"]


def test_admin_down_config_counts_as_down():
    _, core, net, _ = ring()
    msgs = core.port_status(1, ofp.OFPPR_MODIFY, PortInfo(3, 0, ofp.OFPPC_PORT_DOWN), 1.0)
    assert (1, 3, 4, 2) not in core.links and (4, 2, 1, 3) not in core.links
    assert msgs


def test_switch_disconnect_and_reconnect():
    plan, core, net, _ = ring()
    msgs = core.switch_down(4, 1.0)
    net.apply(msgs)
    assert 4 not in core.dps and not any(4 in (lk[0], lk[2]) for lk in core.links)
    assert "beijing>chengdu" not in core.routes.paths
    assert net.trace("beijing", "shanghai") == ["beijing", "shanghai"]
    # old flows towards chengdu's host were removed from the others
    assert all("10.0.0.4" not in core.installed[d] for d in core.dps)
    again = core.switch_up(ofmsg.stub_datapath(4), 2.0)
    # No blanket delete on (re)connect: established flows survive; the flow-stats reply
    # decides what goes (see test_reconnect_reconciles_flow_table).
    assert not any(isinstance(m, parser.OFPFlowMod) and m.command == ofp.OFPFC_DELETE
                   for m in again)
    assert any(isinstance(m, parser.OFPFlowStatsRequest) for m in again)


def test_links_expire_without_probes_and_probing_speeds_up():
    _, core, _, _ = ring()
    core.next_probe_at = 10.0
    assert core.tick(2.9) == []  # 2.9 s old: still fresh (3 intervals = 3 s)
    msgs = core.tick(3.5)
    assert core.links == {} and core.counters["links_expired"] == 8
    assert "beijing>shanghai" not in core.routes.paths
    assert any(isinstance(m, parser.OFPFlowMod) for m in msgs)
    outs = [m for m in core.tick(10.0) if isinstance(m, parser.OFPPacketOut)]
    probes = [m for m in outs if m.actions[0].port != ofp.OFPP_CONTROLLER]
    assert len(probes) == 8  # 4 switches x 2 link ports (host ports are never probed)
    assert len(outs) - len(probes) == 4  # one self-probe per switch (C-NMA calibration)
    assert core.next_probe_at == 10.25  # fast: not all plan links are known


def test_ready_needs_switches_links_and_barrier_acks():
    plan, core, net, msgs = ring()
    assert not core.is_ready()
    ack_barriers(core, msgs)
    assert core.is_ready()
    msgs = core.port_status(1, ofp.OFPPR_MODIFY, PortInfo(2, ofp.OFPPS_LINK_DOWN, 0), 1.0)
    assert not core.is_ready()


def test_trace_detects_loops():
    plan, core, net, _ = ring()
    dp1, dp2 = ofmsg.stub_datapath(1), ofmsg.stub_datapath(2)
    def towards_h2(dp, port):
        return ofmsg.flow_modify_strict(dp, ofmsg.PRIO_ROUTE, ofmsg.route_match(dp, "10.0.0.2"),
                                        [ofmsg.output(dp, port)])
    net.apply([towards_h2(dp1, 2), towards_h2(dp2, 3)])
    try:
        net.trace("beijing", "shanghai")
    except TraceError as e:
        # s1 -> s2 -> back out s2's ingress port: OpenFlow drops a plain output to the
        # ingress port, so the trace refuses it either as a loop or as that drop
        assert "loop" in str(e) or "ingress port" in str(e)
    else:
        raise AssertionError("expected a loop")


def test_edwc_backbone_all_pairs_follow_shortest_paths():
    """The real backbone plan from the topology package, brought up on fake switches."""
    import json

    import networkx as nx
    import pytest
    tplan = pytest.importorskip("topology.plan")
    loader = pytest.importorskip("topology.loader")
    plan = parse_plan(json.loads(tplan.make_plan(loader.load_topology("edwc"), "t0p0").to_json()))
    core = ControllerCore(plan)
    net = FakeNetwork(plan)
    ack_barriers(core, bring_up(core, net))
    assert core.is_ready()
    g = nx.DiGraph()
    for (a, _ap, b, _bp), ms in plan.directed_delays().items():
        g.add_edge(a, b, weight=ms)
    names = [h.name for h in plan.hosts]
    site_of = {h.name: h.dpid for h in plan.hosts}
    for src, dst in itertools.permutations(names, 2):
        sites = net.trace(src, dst)
        assert sites == core.routes.paths[f"{src}>{dst}"]
        want = nx.shortest_path_length(g, site_of[src], site_of[dst], weight="weight")
        dpids = {s.site: s.dpid for s in plan.switches}
        got = sum(plan.directed_delays()[next(lk for lk in core.links
                                              if lk[0] == dpids[a] and lk[2] == dpids[b])]
                  for a, b in zip(sites, sites[1:]))
        assert abs(got - want) < 1e-6, (src, dst, sites)
