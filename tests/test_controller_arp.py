"""Proxy ARP: requests for plan hosts are answered on the in_port, others dropped."""

from __future__ import annotations

from os_ken.ofproto import ofproto_v1_3_parser as parser
from scapy.layers.l2 import ARP, Ether

from controller.arp import handle_arp
from controller.core import ControllerCore
from controller.ofmsg import stub_datapath
from controller.plan import parse_plan
from tests.fakeof import ring_plan_doc

IP_TO_MAC = {"10.0.0.2": "02:00:00:00:00:02"}


def request(target: str, op: str = "who-has") -> bytes:
    return bytes(Ether(src="02:00:00:00:00:01", dst="ff:ff:ff:ff:ff:ff")
                 / ARP(op=op, hwsrc="02:00:00:00:00:01", psrc="10.0.0.1", pdst=target))


def test_reply_fields():
    d = handle_arp(request("10.0.0.2"), IP_TO_MAC)
    assert d.reason == "reply"
    r = Ether(d.reply)
    assert r.dst == "02:00:00:00:00:01" and r.src == "02:00:00:00:00:02" and r.type == 0x0806
    a = r[ARP]
    assert a.op == 2
    assert (a.hwsrc, a.psrc) == ("02:00:00:00:00:02", "10.0.0.2")
    assert (a.hwdst, a.pdst) == ("02:00:00:00:00:01", "10.0.0.1")


def test_unknown_reply_and_garbage_dropped():
    assert handle_arp(request("10.0.0.77"), IP_TO_MAC).reason == "unknown-target"
    assert handle_arp(request("10.0.0.2", op="is-at"), IP_TO_MAC).reason == "not-request"
    assert handle_arp(request("10.0.0.2")[:20], IP_TO_MAC).reply is None


def test_core_answers_on_in_port_and_counts():
    core = ControllerCore(parse_plan(ring_plan_doc()))
    core.switch_up(stub_datapath(1), 0.0)
    (out,) = core.packet_in(1, 1, request("10.0.0.3"), 0.0)
    assert isinstance(out, parser.OFPPacketOut) and out.datapath.id == 1
    assert [a.port for a in out.actions] == [1]
    assert Ether(out.data)[ARP].psrc == "10.0.0.3"
    assert core.packet_in(1, 1, request("192.168.1.1"), 0.0) == []
    assert core.counters["arp_replies"] == 1 and core.counters["arp_dropped"] == 1
    assert core.counters["packet_in"] == 2
    out.serialize()
