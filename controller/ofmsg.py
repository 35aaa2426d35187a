"""Small builders for the OpenFlow 1.3 messages the controller sends (cf. Faucet's valve_of).

Every builder takes a datapath-like object (a real os-ken ``Datapath`` or a stub with
``.id``, ``.ofproto`` and ``.ofproto_parser``) and returns an unsent message, so the
routing logic can be checked offline against a fake flow table.
"""

from __future__ import annotations

import itertools
from types import SimpleNamespace
from typing import Any

from os_ken.ofproto import ether
from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as parser

COOKIE = 0xEDC0_0000_0000_0001  # every flow this controller installs carries it
COOKIE_MASK = 0xFFFF_FFFF_FFFF_FFFF
TABLE = 0
PRIO_MISS = 0
PRIO_ROUTE = 100
PRIO_PUNT = 1000  # LLDP probes and ARP go to the controller before any route
ETH_TYPE_LLDP = ether.ETH_TYPE_LLDP
ETH_TYPE_ARP = ether.ETH_TYPE_ARP
ETH_TYPE_IP = ether.ETH_TYPE_IP
PUNT_MAX_LEN = ofp.OFPCML_NO_BUFFER

# Barrier xids come from our own range so replies can be told from os-ken's own xids.
_barrier_xids = itertools.count(0x8000_0000)


def stub_datapath(dpid: int) -> Any:
    """A datapath stand-in for tests and offline message building."""
    return SimpleNamespace(id=dpid, ofproto=ofp, ofproto_parser=parser)


def match(dp: Any, **fields: Any) -> Any:
    return dp.ofproto_parser.OFPMatch(**fields)


def apply_actions(dp: Any, actions: list, meter: int | None = None) -> list:
    inst = [] if meter is None else [dp.ofproto_parser.OFPInstructionMeter(meter)]
    if actions:
        inst.append(dp.ofproto_parser.OFPInstructionActions(dp.ofproto.OFPIT_APPLY_ACTIONS,
                                                            actions))
    return inst


def output(dp: Any, port: int, max_len: int = 0) -> Any:
    if port == dp.ofproto.OFPP_CONTROLLER:
        return dp.ofproto_parser.OFPActionOutput(port, PUNT_MAX_LEN)
    return dp.ofproto_parser.OFPActionOutput(port, max_len)


def flowmod(dp: Any, command: int, priority: int, match_: Any, actions: list | None = None,
            strict: bool = False, meter: int | None = None, cookie: int = COOKIE,
            idle_timeout: int = 0, flags: int = 0) -> Any:
    """Modify and delete commands match ``cookie`` exactly (they only touch that owner's
    flows); an add stamps it."""
    o = dp.ofproto
    return dp.ofproto_parser.OFPFlowMod(
        datapath=dp, cookie=cookie, cookie_mask=COOKIE_MASK if command in (
            o.OFPFC_MODIFY, o.OFPFC_MODIFY_STRICT, o.OFPFC_DELETE, o.OFPFC_DELETE_STRICT) else 0,
        table_id=TABLE, command=command, idle_timeout=idle_timeout, hard_timeout=0,
        priority=priority, buffer_id=o.OFP_NO_BUFFER, out_port=o.OFPP_ANY, out_group=o.OFPG_ANY,
        flags=flags, match=match_, instructions=apply_actions(dp, actions or [], meter))


def flow_add(dp: Any, priority: int, match_: Any, actions: list, meter: int | None = None) -> Any:
    return flowmod(dp, dp.ofproto.OFPFC_ADD, priority, match_, actions, meter=meter)


def flow_modify_strict(dp: Any, priority: int, match_: Any, actions: list) -> Any:
    return flowmod(dp, dp.ofproto.OFPFC_MODIFY_STRICT, priority, match_, actions)


def flow_delete_strict(dp: Any, priority: int, match_: Any, cookie: int = COOKIE) -> Any:
    return flowmod(dp, dp.ofproto.OFPFC_DELETE_STRICT, priority, match_, cookie=cookie)


def delete_all_table0(dp: Any) -> Any:
    """Delete every flow in table 0, whoever installed it (first connect)."""
    o = dp.ofproto
    return dp.ofproto_parser.OFPFlowMod(
        datapath=dp, cookie=0, cookie_mask=0, table_id=TABLE, command=o.OFPFC_DELETE,
        priority=0, buffer_id=o.OFP_NO_BUFFER, out_port=o.OFPP_ANY, out_group=o.OFPG_ANY,
        match=dp.ofproto_parser.OFPMatch(), instructions=[])


def delete_ours(dp: Any) -> Any:
    """Delete every flow carrying our cookie (reconnect)."""
    return flowmod(dp, dp.ofproto.OFPFC_DELETE, 0, dp.ofproto_parser.OFPMatch())


# Packet-in rate limits (OpenFlow meters, packets/s per switch), one per kind of punt so a
# flood of one kind cannot starve the others (an ARP storm must not expire links).
METER_DISCOVERY, METER_CONTROL, METER_NEWFLOW = 1, 2, 3
# The new-flow cap sits below what the controller sustains (measured ~800-1100 decisions/s
# on the 2-core dev VM), so a flood is dropped in the switch (TCP retries its SYN) instead of
# queueing in the controller, where it would delay advertisements until gateways expire.
DEFAULT_METER_RATES = {METER_DISCOVERY: 500, METER_CONTROL: 1000, METER_NEWFLOW: 600}


def meter_mods(dp: Any, rates: dict[int, int]) -> list:
    """Delete then add our meters (delete also removes flows using them: the base flows are
    re-added right after, placements never use meters). Idempotent on reconnect."""
    o, p = dp.ofproto, dp.ofproto_parser
    msgs = []
    for mid, rate in sorted(rates.items()):
        msgs.append(p.OFPMeterMod(dp, command=o.OFPMC_DELETE, flags=0, meter_id=mid, bands=[]))
        msgs.append(p.OFPMeterMod(
            dp, command=o.OFPMC_ADD, flags=o.OFPMF_PKTPS | o.OFPMF_BURST, meter_id=mid,
            bands=[p.OFPMeterBandDrop(rate=rate, burst_size=max(10, rate // 5))]))
    return msgs


def base_flows(dp: Any, meters: bool = True) -> list:
    """Table-miss drop (never flood: the backbone has loops), LLDP and ARP to the controller."""
    ctl = [output(dp, dp.ofproto.OFPP_CONTROLLER)]
    return [
        flow_add(dp, PRIO_MISS, match(dp), []),
        flow_add(dp, PRIO_PUNT, match(dp, eth_type=ETH_TYPE_LLDP), ctl,
                 meter=METER_DISCOVERY if meters else None),
        flow_add(dp, PRIO_PUNT, match(dp, eth_type=ETH_TYPE_ARP), ctl,
                 meter=METER_CONTROL if meters else None),
    ]


def flow_stats_request(dp: Any) -> Any:
    """Every flow in table 0 (to adopt our flows and drop foreign ones after a reconnect)."""
    o = dp.ofproto
    return dp.ofproto_parser.OFPFlowStatsRequest(
        dp, 0, TABLE, o.OFPP_ANY, o.OFPG_ANY, 0, 0, dp.ofproto_parser.OFPMatch())


def echo_request(dp: Any, data: bytes = b"") -> Any:
    return dp.ofproto_parser.OFPEchoRequest(dp, data=data)


# Open vSwitch's "add or modify" group command (OFPGC11_ADD_OR_MOD, an extension accepted in
# OpenFlow 1.1-1.4): creates the group or replaces its buckets, so a reconnect, a restart or
# adoption never meets GROUP_EXISTS or UNKNOWN_GROUP. Checked on OVS 3.1 with OpenFlow 1.3.
OFPGC_ADD_OR_MOD = 0x8000


def group(dp: Any, group_id: int) -> Any:
    return dp.ofproto_parser.OFPActionGroup(group_id)


def group_ff(dp: Any, group_id: int, ports: list[int]) -> Any:
    """A fast-failover group: one bucket per port, each watching the port it outputs to; the
    switch uses the first bucket whose port is live."""
    o, p = dp.ofproto, dp.ofproto_parser
    buckets = [p.OFPBucket(watch_port=port, watch_group=o.OFPG_ANY, actions=[output(dp, port)])
               for port in ports]
    return p.OFPGroupMod(dp, command=OFPGC_ADD_OR_MOD, type_=o.OFPGT_FF, group_id=group_id,
                         buckets=buckets)


def group_delete(dp: Any, group_id: int) -> Any:
    """Delete a group (the switch also deletes every flow that uses it)."""
    return dp.ofproto_parser.OFPGroupMod(dp, command=dp.ofproto.OFPGC_DELETE, type_=0,
                                         group_id=group_id, buckets=[])


def route_action(dp: Any, action: tuple[str, int]) -> Any:
    """("output", port) or ("group", id) -> the OpenFlow action."""
    kind, value = action
    return output(dp, value) if kind == "output" else group(dp, value)


def route_match(dp: Any, ipv4_dst: str) -> Any:
    return match(dp, eth_type=ETH_TYPE_IP, ipv4_dst=ipv4_dst)


def barrier(dp: Any) -> Any:
    msg = dp.ofproto_parser.OFPBarrierRequest(dp)
    msg.set_xid(next(_barrier_xids) & 0xFFFF_FFFF)
    return msg


def port_desc_request(dp: Any) -> Any:
    return dp.ofproto_parser.OFPPortDescStatsRequest(dp, 0)


def packet_out(dp: Any, port: int, data: bytes, in_port: int | None = None) -> Any:
    o = dp.ofproto
    return dp.ofproto_parser.OFPPacketOut(
        datapath=dp, buffer_id=o.OFP_NO_BUFFER,
        in_port=o.OFPP_CONTROLLER if in_port is None else in_port,
        actions=[output(dp, port)], data=data)


def port_is_up(dp: Any, state: int, config: int) -> bool:
    o = dp.ofproto
    return not (state & o.OFPPS_LINK_DOWN) and not (config & o.OFPPC_PORT_DOWN)


def is_physical_port(port_no: int) -> bool:
    return 0 < port_no <= ofp.OFPP_MAX
