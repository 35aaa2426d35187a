"""Fast-failover groups with loop-free alternates, checked against the fake flow tables.

The backup choice on small graphs worked out by hand, loop freedom under every single link
cut (traced through the groups with the cut ports dead and the controller not yet told),
backup coverage on the EDWC backbone, stable group ids, ADD_OR_MOD, group deletes,
flow-removed reasons, make-before-break re-pathing and adoption after a restart.
"""

from __future__ import annotations

import itertools
import json

import pytest
from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as parser

from controller import ofmsg
from controller.core import ControllerCore, PortInfo
from controller.plan import parse_plan
from controller.routing import (
    GROUP_ID_BASE,
    compute_routes,
    group_ids,
    loop_free_alternates,
    next_hops_to,
)
from controller.steering import COOKIE_STEER, PRIO_STEER, forward_match
from tests.fakeof import (
    FakeNetwork,
    TraceError,
    ack_barriers,
    bring_up,
    deliver_probes,
    ring_plan_doc,
    trace_packet,
)
from tests.test_controller_steering import (
    _fields,
    _setfields,
    advertise,
    open_flow,
    pkt_fields,
    setup,
    tcp_syn,
)


def lfa(edges: list[tuple[int, int, float, float]]):
    """Undirected edges (a, b, w a->b, w b->a); ports: the peer's dpid (10 + i for the i-th
    parallel link). Returns (backups, no_backup, trees) with every node a destination."""
    weights = {}
    used: dict[tuple[int, int], int] = {}
    for a, b, wab, wba in edges:
        n = used.get((a, b), 0)
        used[(a, b)] = n + 1
        pa, pb = (b, a) if n == 0 else (10 * n + b, 10 * n + a)
        weights[(a, pa, b, pb)] = int(wab * 1e6)
        weights[(b, pb, a, pa)] = int(wba * 1e6)
    nodes = {x for e in edges for x in e[:2]}
    trees = {d: next_hops_to(d, nodes, weights) for d in nodes}
    backups, missing = loop_free_alternates(trees, nodes, weights)
    return backups, missing, trees


def test_square_has_alternates_only_where_they_cannot_loop():
    # 1-2-3-4-1, all 1 ms. To 3: 1 goes via 2 (tie broken by the lower dpid) and can fall
    # back to 4 (D(4,3)=1 < D(4,1)+D(1,3)=3). 2 and 4 sit next to 3: their only other
    # neighbour, 1, is as far from 3 via them as any other way (2 == 1 + 1), so it might
    # send the packet straight back: no backup (the strict inequality).
    backups, missing, trees = lfa([(1, 2, 1, 1), (2, 3, 1, 1), (3, 4, 1, 1), (4, 1, 1, 1)])
    assert trees[3][1][:2] == (2, 2)
    assert backups[3] == {1: (4, 4)}
    assert (2, 3) in missing and (4, 3) in missing
    assert len(missing) + sum(len(b) for b in backups.values()) == 12


def test_triangle_is_fully_covered():
    backups, missing, _ = lfa([(1, 2, 1, 1), (2, 3, 1, 1), (1, 3, 1, 1)])
    assert missing == []
    assert backups[3] == {1: (2, 2), 2: (1, 1)}  # the other corner, one hop further


def test_line_has_no_alternate():
    backups, missing, _ = lfa([(1, 2, 1, 1), (2, 3, 1, 1)])
    assert backups == {} and missing == [(1, 2), (1, 3), (2, 1), (2, 3), (3, 1), (3, 2)]
    routes = compute_routes(parse_plan(line_plan_doc()), [(1, 2, 2, 2), (2, 2, 1, 2),
                                                          (2, 3, 3, 2), (3, 2, 2, 3)], [1, 2, 3])
    assert routes.coverage() == {"covered": 0, "pairs": 6, "fraction": 0.0, "protectable": 0,
                                 "fraction_of_protectable": None}


def test_asymmetric_delays_use_the_direction_of_travel():
    # 1->2 is 10 ms but 2->1 is 0.5 ms; the rest of the ring 1-4-3-2 is 1 ms each way.
    backups, missing, trees = lfa([(1, 2, 10, 0.5), (2, 3, 1, 1), (3, 4, 1, 1), (4, 1, 1, 1)])
    assert trees[2][1][1] == 4  # 1 -> 2 goes round (3 ms) ...
    assert backups[2][1] == (2, 2)  # ... and falls back on the direct 10 ms link
    # to 1: 3 goes via 2 (1 + 0.5 ms), so 3 is no alternate for 2 (D(3,1) = D(3,2) + D(2,1))
    assert trees[1][3][1] == 2 and (2, 1) in missing
    # but it is one for 4 (D(3,1) = 1.5 < D(3,4) + D(4,1) = 2), which it would not be with
    # symmetric 1 ms delays (2 = 2, see the square)
    assert backups[1][4] == (3, 3)
    assert backups[1][3] == (4, 4)  # 4 reaches 1 directly, not through 3


def test_parallel_link_to_the_same_neighbour_is_a_backup():
    backups, missing, trees = lfa([(1, 2, 1, 1), (1, 2, 2, 2)])
    assert trees[2][1][:2] == (2, 2)  # the 1 ms link, port 2
    assert backups[2][1] == (12, 2) and backups[1][2] == (11, 1)  # the 2 ms parallel link
    assert missing == []


def test_cheapest_valid_alternate_wins():
    # 1 reaches 5 directly (1 ms); alternates 2 (1.5 ms from 5) and 3 (1.2 ms), both 1 ms
    # from 1 and both loop-free (< 1 + 1 ms): the cheaper detour wins, not the lower dpid
    backups, _, _ = lfa([(1, 5, 1, 1), (1, 2, 1, 1), (2, 5, 1.5, 1.5), (1, 3, 1, 1),
                         (3, 5, 1.2, 1.2)])
    assert backups[5][1] == (3, 3)
    # 4 is 0.5 ms from 5 but its path to 5 runs through 1 (no direct link): never chosen
    backups, _, _ = lfa([(1, 5, 1, 1), (1, 4, 0.1, 0.1), (1, 3, 1, 1), (3, 5, 1.2, 1.2)])
    assert backups[5][1] == (3, 3)


def line_plan_doc() -> dict:
    doc = {"format": "edwc-plan/1", "run_id": "ln01", "topology": "line", "switches": [],
           "hosts": [], "links": []}
    for i, site in enumerate(["aa", "bb", "cc"], start=1):
        doc["switches"].append({"name": f"xln{i}", "site": site, "dpid": i})
        doc["hosts"].append({"name": site, "site": site, "ip": f"10.0.0.{i}", "prefixlen": 16,
                             "mac": f"02:00:00:00:00:{i:02x}", "dpid": i, "port": 1})
    for a, b in ((1, 2), (2, 3)):
        doc["links"].append({"id": f"l{a}{b}", "a": doc["hosts"][a - 1]["site"],
                             "b": doc["hosts"][b - 1]["site"], "a_dpid": a,
                             "a_port": 3 if a == 2 else 2, "b_dpid": b, "b_port": 2,
                             "delay_ms_ab": 1.0, "delay_ms_ba": 1.0, "bandwidth_mbps": 100.0})
    return doc


# ---- the controller's groups on the fake tables ------------------------------------------

def ring():
    plan = parse_plan(ring_plan_doc())
    core = ControllerCore(plan, probe_interval=1.0)
    net = FakeNetwork(plan)
    msgs = bring_up(core, net)
    ack_barriers(core, msgs)
    return plan, core, net, msgs


def edwc():
    tplan = pytest.importorskip("topology.plan")
    loader = pytest.importorskip("topology.loader")
    plan = parse_plan(json.loads(tplan.make_plan(loader.load_topology("edwc"), "abcd").to_json()))
    core = ControllerCore(plan)
    net = FakeNetwork(plan)
    ack_barriers(core, bring_up(core, net))
    return plan, core, net


def primary_hops(core, src_dpid: int, dst_dpid: int) -> list[tuple[int, int, int]]:
    """(dpid, out port, next dpid) along the current primary path."""
    tree = core.routes.trees[dst_dpid]
    out, u = [], src_dpid
    while u != dst_dpid:
        out.append((u, tree[u][0], tree[u][1]))
        u = tree[u][1]
    return out


def check_every_cut(plan, core, net) -> dict:
    """Cut each link in turn (carrier loss, the controller not yet told) and trace every host
    pair through the groups: a pair whose path crosses the cut arrives iff the switch before
    the cut has a backup, and never loops."""
    hosts = plan.hosts
    tally = {"unaffected": 0, "failed_over": 0, "dropped": 0}
    for ln in plan.links:
        net.down = {ln.id}
        ends = {(ln.a_dpid, ln.a_port), (ln.b_dpid, ln.b_port)}
        for src, dst in itertools.permutations(hosts, 2):
            pkt = {"eth_type": 0x0800, "ipv4_src": src.ip, "ipv4_dst": dst.ip}
            hops = primary_hops(core, src.dpid, dst.dpid)
            hit = next(((u, port) for u, port, _ in hops if (u, port) in ends), None)
            try:
                sites, _, to = trace_packet(net, pkt, src.dpid, src.port)
            except TraceError as e:
                assert "loop" not in str(e), (ln.id, src.name, dst.name, e)
                assert hit is not None and hit[0] not in core.routes.backups.get(dst.dpid, {}), \
                    (ln.id, src.name, dst.name, e)
                assert "dropped" in str(e)
                tally["dropped"] += 1
                continue
            assert to == dst.name
            if hit is None:
                assert sites == core.routes.paths[f"{src.name}>{dst.name}"]
                tally["unaffected"] += 1
            else:
                tally["failed_over"] += 1
    net.down = set()
    return tally


def test_ring_survives_every_single_cut_where_a_backup_exists():
    plan, core, net, _ = ring()
    tally = check_every_cut(plan, core, net)
    assert tally["failed_over"] > 0 and tally["unaffected"] > 0
    # without a word to the controller, nothing changed on its side
    assert len(core.links) == 8


def test_edwc_backbone_every_cut_is_loop_free_and_coverage_is_reported():
    plan, core, net = edwc()
    cov = core.status()["backup_coverage"]
    print(f"EDWC LFA coverage: {cov}")
    n_host_sw = len({h.dpid for h in plan.hosts})
    assert cov["pairs"] == (len(plan.switches) - 1) * n_host_sw  # every switch reaches all
    assert cov["covered"] == sum(len(g) for g in core.routes.backups.values())
    # single-homed sites cannot be protected by any scheme; of the rest nearly all are
    assert cov["fraction"] > 0.5 and cov["fraction_of_protectable"] > 0.95
    view = core.api_view("links", {}, 0.0)
    assert view["backup_coverage"] == cov and len(view["no_backup"]) == len(core.routes.no_backup)
    tally = check_every_cut(plan, core, net)
    print(f"EDWC single cuts x host pairs: {tally}")
    assert tally["failed_over"] > tally["dropped"]


def test_route_flows_name_groups_sent_first_with_add_or_mod():
    plan, core, net, msgs = ring()
    gms = [m for m in msgs if isinstance(m, parser.OFPGroupMod)]
    assert gms and all(m.command == ofmsg.OFPGC_ADD_OR_MOD and m.type == ofp.OFPGT_FF
                       for m in gms)
    for m in gms:
        m.serialize()  # os-ken encodes the OVS extension command as is
        assert int.from_bytes(m.buf[8:10], "big") == 0x8000
        assert all(b.watch_port == b.actions[0].port for b in m.buckets)
    # each group was sent before the first flow naming it (the fake table refuses otherwise)
    sent: set[tuple[int, int]] = set()
    for m in msgs:
        if isinstance(m, parser.OFPGroupMod):
            sent.add((m.datapath.id, m.group_id))
        elif isinstance(m, parser.OFPFlowMod):
            for inst in m.instructions:
                for a in getattr(inst, "actions", []):
                    if isinstance(a, parser.OFPActionGroup):
                        assert (m.datapath.id, a.group_id) in sent
    gids = group_ids(plan)
    assert gids == {1: GROUP_ID_BASE, 2: GROUP_ID_BASE + 1, 3: GROUP_ID_BASE + 2,
                    4: GROUP_ID_BASE + 3}
    for h in plan.hosts:
        for dpid in core.dps:
            want = ("output", h.port) if dpid == h.dpid else ("group", gids[h.dpid])
            assert core.installed[dpid][h.ip] == want
    # s1 towards s2 (3 ms round the ring): primary via chengdu (port 3), backup direct
    assert core.installed_groups[1][gids[2]] == (3, 2)
    assert [(watch, acts[0].port) for watch, acts in net.tables[1].groups[gids[2]].buckets] \
        == [(3, 3), (2, 2)]


def test_group_ids_are_the_same_in_every_process():
    plan = parse_plan(ring_plan_doc())
    a, b = ControllerCore(plan), ControllerCore(plan)
    assert a.group_ids == b.group_ids == group_ids(plan)
    net_a, net_b = FakeNetwork(plan), FakeNetwork(plan)
    bring_up(a, net_a)
    bring_up(b, net_b)
    for dpid in net_a.tables:
        assert {g: [(w, [x.port for x in acts]) for w, acts in grp.buckets]
                for g, grp in net_a.tables[dpid].groups.items()} == \
            {g: [(w, [x.port for x in acts]) for w, acts in grp.buckets]
             for g, grp in net_b.tables[dpid].groups.items()}


def test_cut_fails_over_in_the_switch_then_the_controller_moves_the_primary():
    plan, core, net, _ = ring()
    pkt = {"eth_type": 0x0800, "ipv4_src": "10.0.0.1", "ipv4_dst": "10.0.0.2"}
    assert trace_packet(net, pkt, 1, 1)[0] == ["beijing", "chengdu", "guangzhou", "shanghai"]
    net.down.add("chengdu-beijing")  # carrier loss; the controller has not heard yet
    sites, _, host = trace_packet(net, pkt, 1, 1)
    assert host == "shanghai" and sites == ["beijing", "shanghai"]  # s1's backup bucket
    msgs = core.port_status(1, ofp.OFPPR_MODIFY, PortInfo(3, ofp.OFPPS_LINK_DOWN, 0), 1.0)
    msgs += core.port_status(4, ofp.OFPPR_MODIFY, PortInfo(2, ofp.OFPPS_LINK_DOWN, 0), 1.0)
    net.apply(msgs)
    gid = core.group_ids[2]
    assert core.installed_groups[1][gid][0] == 2  # the direct link is now the primary
    assert not any(isinstance(m, parser.OFPFlowMod) for m in msgs)  # only groups changed
    assert trace_packet(net, pkt, 1, 1)[0] == ["beijing", "shanghai"]
    # the link comes back: rediscovered, and the old primary returns
    net.down.clear()
    up = core.port_status(1, ofp.OFPPR_MODIFY, PortInfo(3, 0, 0), 2.0)
    up += core.port_status(4, ofp.OFPPR_MODIFY, PortInfo(2, 0, 0), 2.0)
    deliver_probes(core, net, up, 2.0)
    assert core.installed_groups[1][gid] == (3, 2)
    assert trace_packet(net, pkt, 1, 1)[0] == ["beijing", "chengdu", "guangzhou", "shanghai"]


def test_unreachable_destination_deletes_its_groups_after_the_flows():
    plan, core, net, _ = ring()
    gid = core.group_ids[4]
    assert all(gid in net.tables[d].groups for d in (1, 2, 3))
    msgs = core.switch_down(4, 1.0)
    net.apply(msgs)
    dels = [m for m in msgs if isinstance(m, parser.OFPGroupMod)
            and m.command == ofp.OFPGC_DELETE]
    assert {(m.datapath.id, m.group_id) for m in dels} == {(1, gid), (2, gid), (3, gid)}
    for m in dels:  # after this switch's flow deletes
        i = msgs.index(m)
        assert not any(isinstance(x, parser.OFPFlowMod) and x.datapath.id == m.datapath.id
                       for x in msgs[i:])
    assert all(gid not in net.tables[d].groups and gid not in core.installed_groups[d]
               for d in (1, 2, 3))
    # other destinations keep their groups (modified, never deleted)
    assert all(core.group_ids[2] in net.tables[d].groups for d in (1, 3))


def test_flow_removed_by_our_own_delete_does_not_end_the_placement():
    plan, core, net, wall = setup()
    advertise(core, plan, 1.0, wall, 1, shanghai=8)
    msgs, frame = open_flow(core, net, plan, "beijing", 8100, 1.0)
    ingress = msgs[-2]
    fields = dict(ingress.match.items())
    for reason in (ofp.OFPRR_DELETE, ofp.OFPRR_GROUP_DELETE):
        assert core.flow_removed(1, COOKIE_STEER, fields, 2.0, reason=reason) == []
    assert len(core.steering.placements) == 1 and core.counters["flows_ended"] == 0
    out = core.flow_removed(1, COOKIE_STEER, fields, 12.0, reason=ofp.OFPRR_IDLE_TIMEOUT)
    assert out and not core.steering.placements and core.counters["flows_ended"] == 1


def test_repath_is_make_before_break():
    plan, core, net, wall = setup()
    advertise(core, plan, 1.0, wall, 1, shanghai=8)
    _, frame = open_flow(core, net, plan, "beijing", 9100, 1.0)
    pkt = pkt_fields(frame)
    reply = {"eth_type": 0x0800, "ipv4_src": "10.0.0.2", "ipv4_dst": "10.0.0.1",
             "ip_proto": 6, "tcp_src": 7000, "tcp_dst": 9100}
    assert trace_packet(net, pkt, 1, 1)[0] == ["beijing", "chengdu", "guangzhou", "shanghai"]
    net.down.add("chengdu-beijing")
    # the switch fails over before the controller knows: the steered flow still arrives
    sites, delivered, host = trace_packet(net, pkt, 1, 1)
    assert host == "shanghai" and sites == ["beijing", "shanghai"]
    assert delivered["ipv4_dst"] == "10.0.0.2"
    msgs = core.port_status(1, ofp.OFPPR_MODIFY, PortInfo(3, ofp.OFPPS_LINK_DOWN, 0), 2.0)
    msgs += core.port_status(4, ofp.OFPPR_MODIFY, PortInfo(2, ofp.OFPPS_LINK_DOWN, 0), 2.0)
    assert core.counters["flows_repathed"] == 1
    deletes = [m for m in msgs if isinstance(m, parser.OFPFlowMod)
               and m.command == ofp.OFPFC_DELETE_STRICT and m.cookie == COOKIE_STEER]
    adds = [m for m in msgs if isinstance(m, parser.OFPFlowMod)
            and m.command == ofp.OFPFC_ADD and m.cookie == COOKIE_STEER]
    assert adds and deletes and msgs.index(adds[-1]) < msgs.index(deletes[0])
    # only the rules on switches that left the path go; the client-switch rule is replaced
    assert {m.datapath.id for m in deletes} == {3, 4}  # guangzhou and chengdu
    svc_match = dict(forward_match(ofmsg.stub_datapath(1), core.steering.placements[
        next(iter(core.steering.placements))].key, "10.0.255.1").items())
    assert not any(m.datapath.id == 1 and dict(m.match.items()) == svc_match for m in deletes)
    # at every step of applying the messages, both directions still get through
    for m in msgs:
        net.apply([m])
        assert trace_packet(net, pkt, 1, 1)[2] == "shanghai"
        assert trace_packet(net, reply, 2, 1)[2] == "beijing"
    (p,) = core.steering.placements.values()
    assert [d for d, _ in p.forward] == [1, 2] and p.rtt_ms == pytest.approx(10.5)
    assert sum(t.flow_count(PRIO_STEER) for t in net.tables.values()) == 4
    # the link comes back: the groups move the packets back round the ring, and the
    # placement's recorded path (status, deletes) follows them
    net.down.clear()
    up = core.port_status(1, ofp.OFPPR_MODIFY, PortInfo(3, 0, 0), 3.0)
    up += core.port_status(4, ofp.OFPPR_MODIFY, PortInfo(2, 0, 0), 3.0)
    deliver_probes(core, net, up, 3.0)
    assert [d for d, _ in p.forward] == [1, 4, 3, 2] and core.counters["flows_repathed"] == 2
    assert trace_packet(net, pkt, 1, 1)[0] == ["beijing", "chengdu", "guangzhou", "shanghai"]
    assert sum(t.flow_count(PRIO_STEER) for t in net.tables.values()) == 6
    assert core.flow_removed(1, COOKIE_STEER, dict(adds[-1].match.items()), 9.0,
                             reason=ofp.OFPRR_DELETE) == []
    assert len(core.steering.placements) == 1


def test_restart_adopts_group_routes_and_rebuilds_nothing():
    plan, core, net, wall = setup()
    advertise(core, plan, 1.0, wall, 1, shanghai=8)
    open_flow(core, net, plan, "beijing", 9200, 1.0)
    tables_before = {d: sorted(repr(vars(f)) for f in t.flows) for d, t in net.tables.items()}
    groups_before = {d: repr(t.groups) for d, t in net.tables.items()}
    fresh = ControllerCore(plan, 1.0, now=0.0, wall=wall)
    msgs = bring_up(fresh, net, 0.0)
    out = []
    for dpid, table in net.tables.items():
        entries = [(f.priority, f.cookie, _fields(f), _setfields(f)) for f in table.flows]
        out += fresh.flow_stats(dpid, entries, False, 0.5)
    net.apply(out)
    assert fresh.counters["flows_adopted"] == 1 and fresh.counters["foreign_flows_deleted"] == 0
    assert fresh.installed == core.installed
    assert fresh.installed_groups == core.installed_groups
    # the groups were re-sent with ADD_OR_MOD (no GROUP_EXISTS) and came out the same
    assert all(m.command == ofmsg.OFPGC_ADD_OR_MOD for m in msgs
               if isinstance(m, parser.OFPGroupMod))
    assert {d: repr(t.groups) for d, t in net.tables.items()} == groups_before
    ack_barriers(fresh, msgs)
    for t in (1.0, 2.0, 3.5):  # probes keep the links; the settled re-route changes nothing
        deliver_probes(fresh, net, fresh.tick(t), t)
    tables_after = {d: sorted(repr(vars(f)) for f in t.flows) for d, t in net.tables.items()}
    assert tables_after == tables_before
    frame = tcp_syn(plan, "beijing", 9200)
    assert trace_packet(net, pkt_fields(frame), 1, 1)[2] == "shanghai"


def test_fake_table_refuses_what_ovs_refuses():
    plan = parse_plan(ring_plan_doc())
    net = FakeNetwork(plan)
    dp = ofmsg.stub_datapath(1)
    with pytest.raises(AssertionError, match="BAD_OUT_GROUP"):
        net.apply([ofmsg.flow_add(dp, 100, ofmsg.route_match(dp, "10.0.0.2"),
                                  [ofmsg.group(dp, 0x100)])])
    add = parser.OFPGroupMod(dp, command=ofp.OFPGC_ADD, type_=ofp.OFPGT_FF, group_id=0x100,
                             buckets=[parser.OFPBucket(watch_port=2, watch_group=ofp.OFPG_ANY,
                                                       actions=[ofmsg.output(dp, 2)])])
    net.apply([add])
    with pytest.raises(AssertionError, match="GROUP_EXISTS"):
        net.apply([add])
    net.apply([ofmsg.group_ff(dp, 0x100, [3, 2])])  # ADD_OR_MOD on an existing group
    net.apply([ofmsg.flow_add(dp, 100, ofmsg.route_match(dp, "10.0.0.2"),
                              [ofmsg.group(dp, 0x100)])])
    table = net.tables[1]
    acts = table.actions_for({"eth_type": 0x0800, "ipv4_dst": "10.0.0.2", "in_port": 1})
    assert [a.port for a in net.expand(1, acts)] == [3]
    table.set_port_live(3, False)
    assert [a.port for a in net.expand(1, acts)] == [2]
    table.set_port_live(2, False)
    assert net.expand(1, acts) == []  # no live bucket: dropped
    net.apply([ofmsg.group_delete(dp, 0x100)])
    assert table.flow_count(100) == 0 and not table.groups  # the flow went with its group
    with pytest.raises(AssertionError, match="UNKNOWN_GROUP"):
        net.apply([parser.OFPGroupMod(dp, command=ofp.OFPGC_MODIFY, type_=ofp.OFPGT_FF,
                                      group_id=0x101, buckets=[])])
