"""Probes and ARP from hosts, forged or replayed, must never become links or floods."""

from __future__ import annotations

import itertools

import pytest
from os_ken.ofproto import ofproto_v1_3 as ofp

from controller.arp import handle_arp
from controller.core import ControllerCore
from controller.plan import parse_plan
from controller.probe import ProbeError, decode_probe, encode_probe
from tests.fakeof import FakeNetwork, bring_up, ring_plan_doc


def ring():
    plan = parse_plan(ring_plan_doc())
    core = ControllerCore(plan, probe_interval=1.0)
    net = FakeNetwork(plan)
    bring_up(core, net)
    return plan, core, net


def physical_plan_ports(plan):
    ports = {(h.dpid, h.port) for h in plan.hosts}
    for lk in plan.links:
        ports |= {(lk.a_dpid, lk.a_port), (lk.b_dpid, lk.b_port)}
    return ports


def test_probe_naming_a_reserved_port_is_rejected():
    frame = encode_probe(1, ofp.OFPP_FLOOD, 0.0, "t001")
    with pytest.raises(ProbeError, match="reserved"):
        decode_probe(frame)


def test_no_probe_is_sent_out_of_host_ports():
    plan, core, net = ring()
    msgs = core.tick(now=100.0)
    outs = {(m.datapath.id, m.actions[0].port) for m in msgs if hasattr(m, "actions")}
    assert outs and not outs & {(h.dpid, h.port) for h in plan.hosts}


def test_replayed_or_forged_probes_from_a_host_change_nothing():
    plan, core, net = ring()
    links, paths = dict(core.links), dict(core.routes.paths)
    host = plan.hosts[1]  # on s2, port 1
    forged = [encode_probe(1, 2, 0.0, "t001"),  # a real s1 port: would rewire (1,2)->(2,1)
              encode_probe(1, 99, 0.0, "t001"),  # a port s1 does not have
              encode_probe(3, 0xFFFFFF00, 0.0, "t001"),
              encode_probe(4, 2, 0.0, "t001")]
    for i, frame in enumerate(itertools.chain(forged * 50)):
        assert core.packet_in(host.dpid, host.port, frame, now=1.0 + i * 1e-3) == []
    assert core.links.keys() == links.keys() and core.routes.paths == paths
    assert core.counters["probes_rejected"] + core.counters["probes_malformed"] == 200
    # every output port the routes use is a physical plan port
    for dpid, flows in core.routes.flows.items():
        assert all((dpid, port) in physical_plan_ports(plan) for port in flows.values())


def test_probe_on_a_dead_port_is_rejected():
    plan, core, net = ring()
    core.live_ports[2].discard(3)
    before = dict(core.links)
    core.packet_in(2, 3, encode_probe(1, 2, 0.0, "t001"), now=5.0)
    assert core.counters["probes_rejected"] == 1
    assert core.links.keys() == before.keys()


def arp_request(src_ip: str, dst_ip: str) -> bytes:
    from os_ken.lib.packet import arp, ethernet, packet
    pkt = packet.Packet()
    pkt.add_protocol(ethernet.ethernet(dst="ff:ff:ff:ff:ff:ff", src="02:00:00:00:00:01",
                                       ethertype=0x0806))
    pkt.add_protocol(arp.arp(opcode=arp.ARP_REQUEST, src_mac="02:00:00:00:00:01",
                             src_ip=src_ip, dst_mac="00:00:00:00:00:00", dst_ip=dst_ip))
    pkt.serialize()
    return bytes(pkt.data)


def test_duplicate_address_probes_and_gratuitous_arp_are_not_answered():
    table = {"10.0.0.2": "02:00:00:00:00:02", "10.0.0.1": "02:00:00:00:00:01"}
    assert handle_arp(arp_request("0.0.0.0", "10.0.0.2"), table).reply is None
    assert handle_arp(arp_request("10.0.0.1", "10.0.0.1"), table).reply is None
    assert handle_arp(arp_request("10.0.0.1", "10.0.0.2"), table).reply is not None


def test_an_openflow_error_clears_ready_until_the_next_reroute():
    plan, core, net = ring()
    for xids in core.pending_barriers.values():
        xids.clear()
    assert core.is_ready()
    core.of_error(1, "OFPET_BAD_MATCH", now=2.0)
    assert not core.is_ready()


def test_fake_table_rejects_a_match_without_its_prerequisite():
    from os_ken.ofproto import ofproto_v1_3_parser as parser

    from controller.ofmsg import stub_datapath
    from tests.fakeof import FakeTable
    dp = stub_datapath(1)
    bad = parser.OFPFlowMod(dp, priority=10, match=parser.OFPMatch(ipv4_dst="10.0.0.1"),
                            instructions=[])
    with pytest.raises(AssertionError, match="BAD_PREREQ"):
        FakeTable(1).apply(bad)
