"""Proxy ARP (pure): answer requests for plan hosts from the plan, never flood.

The backbone has loops, so a broadcast ARP request is punted to the controller and
answered here with the target's MAC from the plan; requests for unknown targets are dropped.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from os_ken.lib.packet import arp, ethernet, packet
from os_ken.ofproto import ether


@dataclass(frozen=True)
class ArpDecision:
    reply: bytes | None  # frame to send back out of the in_port, or None
    reason: str  # "reply", "unknown-target", "not-request", "malformed"


def handle_arp(frame: bytes, ip_to_mac: Mapping[str, str]) -> ArpDecision:
    try:
        pkt = packet.Packet(frame)
    except Exception:  # os-ken's parsers raise many types on garbage
        return ArpDecision(None, "malformed")
    eth = pkt.get_protocol(ethernet.ethernet)
    req = pkt.get_protocol(arp.arp)
    if eth is None or req is None:
        return ArpDecision(None, "malformed")
    if req.opcode != arp.ARP_REQUEST:
        return ArpDecision(None, "not-request")
    if req.src_ip == "0.0.0.0" or req.src_ip == req.dst_ip:
        # duplicate-address probe or gratuitous ARP: answering would report a conflict
        return ArpDecision(None, "probe-or-gratuitous")
    mac = ip_to_mac.get(req.dst_ip)
    if mac is None:
        return ArpDecision(None, "unknown-target")
    return ArpDecision(build_arp_reply(mac, req.dst_ip, req.src_mac, req.src_ip), "reply")


def build_arp_reply(target_mac: str, target_ip: str, asker_mac: str, asker_ip: str) -> bytes:
    """An ARP reply telling ``asker`` that ``target_ip`` is at ``target_mac``."""
    pkt = packet.Packet()
    pkt.add_protocol(ethernet.ethernet(dst=asker_mac, src=target_mac,
                                       ethertype=ether.ETH_TYPE_ARP))
    pkt.add_protocol(arp.arp(opcode=arp.ARP_REPLY, src_mac=target_mac, src_ip=target_ip,
                             dst_mac=asker_mac, dst_ip=asker_ip))
    pkt.serialize()
    return bytes(pkt.data)
