"""Discovery probes: encode/decode round trip, malformed input is rejected and counted."""

from __future__ import annotations

import random
import struct

import pytest
from os_ken.lib.packet import lldp, packet

from controller.core import ControllerCore
from controller.ofmsg import stub_datapath
from controller.plan import parse_plan
from controller.probe import ProbeError, decode_probe, encode_probe
from tests.fakeof import ring_plan_doc


def test_round_trip():
    frame = encode_probe(0x1234_5678_9ABC_DEF0, 42, 1234.5, "k3p9")
    p = decode_probe(frame)
    assert (p.dpid, p.port, p.sent_at, p.run_id) == (0x1234_5678_9ABC_DEF0, 42, 1234.5, "k3p9")


def test_is_valid_lldp_for_other_parsers():
    pkt = packet.Packet(encode_probe(5, 3, 0.0, "r1"))
    ll = pkt.get_protocol(lldp.lldp)
    assert ll is not None
    assert ll.tlvs[0].chassis_id == b"dpid:0000000000000005"
    assert ll.tlvs[1].port_id == b"3"


def _replace_tlv_value(frame: bytes, index: int, value: bytes) -> bytes:
    off, i = 14, 0
    while True:
        (hdr,) = struct.unpack_from("!H", frame, off)
        n = hdr & 0x1FF
        if i == index:
            return (frame[:off] + struct.pack("!H", (hdr >> 9) << 9 | len(value)) + value
                    + frame[off + 2 + n:])
        off += 2 + n
        i += 1


GOOD = encode_probe(7, 2, 1.0, "run")


@pytest.mark.parametrize("frame, why", [
    (b"", "shorter"),
    (GOOD[:12], "shorter"),
    (GOOD[:12] + b"\x08\x00" + GOOD[14:], "not LLDP"),
    (GOOD[:-2], "truncated"),
    (GOOD[:20], "runs past"),
    (_replace_tlv_value(GOOD, 0, b"\x04" + b"dpid:0000000000000007"), "chassis"),
    (_replace_tlv_value(GOOD, 0, b"\x07dpid:00000000000000zz"), "hex"),
    (_replace_tlv_value(GOOD, 1, b"\x07abc"), "port id"),
    (_replace_tlv_value(GOOD, 1, b"\x070"), "zero"),
    (_replace_tlv_value(GOOD, 3, b"\x00\x00\x00\x01"), "timestamp"),
])
def test_malformed_rejected(frame, why):
    with pytest.raises(ProbeError, match=why):
        decode_probe(frame)


def test_fuzz_only_probe_errors():
    rng = random.Random(7)
    for _ in range(3000):
        frame = bytearray(GOOD)
        for _ in range(rng.randint(1, 4)):
            frame[rng.randrange(12, len(frame))] = rng.randrange(256)
        frame = bytes(frame[: rng.randint(0, len(frame))])
        try:
            decode_probe(frame)
        except ProbeError:
            pass


def test_core_counts_malformed_and_foreign_probes():
    core = ControllerCore(parse_plan(ring_plan_doc("good")))
    core.switch_up(stub_datapath(1), 0.0)
    core.switch_up(stub_datapath(2), 0.0)
    assert core.packet_in(2, 3, GOOD[:-2], 0.0) == []
    assert core.packet_in(2, 3, encode_probe(1, 2, 0.0, "other-run"), 0.0) == []
    assert core.counters["probes_malformed"] == 1 and core.counters["probes_foreign"] == 1
    assert core.links == {}
    core.packet_in(2, 3, encode_probe(1, 2, 0.0, "good"), 0.0)
    assert list(core.links) == [(1, 2, 2, 3)]


def test_self_probes_calibrate_link_delay_and_never_become_links():
    from os_ken.ofproto import ofproto_v1_3 as ofp

    from tests.fakeof import FakeNetwork, ack_barriers, bring_up
    plan = parse_plan(ring_plan_doc())
    core = ControllerCore(plan, 1.0, now=0.0)
    net = FakeNetwork(plan)
    ack_barriers(core, bring_up(core, net, 0.0))
    links = dict(core.links)
    delays = plan.directed_delays()
    for rnd in range(4):
        t = 5.0 + rnd
        msgs = [m for m in core.tick(t) if type(m).__name__ == "OFPPacketOut"]
        selfp = [m for m in msgs if m.actions[0].port == ofp.OFPP_CONTROLLER]
        assert len(selfp) == 4
        for m in selfp:  # each comes back from its own switch after a 2 ms control trip
            core.packet_in(m.datapath.id, ofp.OFPP_CONTROLLER, bytes(m.data), t + 0.002)
        for m in msgs:  # link probes: the same control overhead plus the link's delay
            if m in selfp:
                continue
            peer = net._peer(m.datapath.id, m.actions[0].port)
            lk = (m.datapath.id, m.actions[0].port, *peer)
            core.packet_in(peer[0], peer[1], bytes(m.data), t + 0.002 + delays[lk] / 1000)
    assert set(core.links) == set(links)  # a self-probe never makes a link
    for lk, ms in delays.items():
        assert core.netmetric.delay_ms(lk) == pytest.approx(ms, abs=1e-6), lk


def test_measured_delays_reroute_with_hysteresis():
    """--delay-source measured: the ring's 10 ms beijing->shanghai link measures 0.5 ms, so
    the direct path wins; noise below 0.2 ms / 10 % does not re-route."""
    from os_ken.ofproto import ofproto_v1_3 as ofp

    from tests.fakeof import FakeNetwork, ack_barriers, bring_up
    plan = parse_plan(ring_plan_doc())
    core = ControllerCore(plan, 1.0, now=0.0, delay_source="measured")
    net = FakeNetwork(plan)
    ack_barriers(core, bring_up(core, net, 0.0))
    assert core.routes.paths["beijing>shanghai"] == ["beijing", "chengdu", "guangzhou",
                                                     "shanghai"]
    measured = dict(plan.directed_delays())
    measured[(1, 2, 2, 3)] = 0.5

    def round_(t: float, jitter: float = 0.0) -> list:
        out = core.tick(t)
        msgs = [m for m in out if type(m).__name__ == "OFPPacketOut"]
        for m in msgs:
            if m.actions[0].port == ofp.OFPP_CONTROLLER:
                out += core.packet_in(m.datapath.id, ofp.OFPP_CONTROLLER, bytes(m.data),
                                      t + 0.001)
        for m in msgs:
            if m.actions[0].port != ofp.OFPP_CONTROLLER:
                peer = net._peer(m.datapath.id, m.actions[0].port)
                lk = (m.datapath.id, m.actions[0].port, *peer)
                out += core.packet_in(peer[0], peer[1], bytes(m.data),
                                      t + 0.001 + (measured[lk] + jitter) / 1000)
        return out

    for i in range(4):
        net.apply(round_(5.0 + i))
    net.apply(round_(9.0))  # the tick after the estimates settle re-routes
    assert core.routes.paths["beijing>shanghai"] == ["beijing", "shanghai"]
    assert net.trace("beijing", "shanghai") == ["beijing", "shanghai"]
    version = core.routes_version
    for i in range(4):  # +0.1 ms everywhere: under the hysteresis, no re-route
        net.apply(round_(10.0 + i, jitter=0.1))
    assert core.routes_version == version
