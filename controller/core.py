"""The controller's state machine, free of os-ken's event loop (cf. Faucet's Valve).

Every entry point takes the current time (``now``, seconds on one monotonic clock) and
returns the OpenFlow messages to send, in order; it never sends. Messages are built against
the datapath object they belong to (``msg.datapath``), so one seam in the app sends them and
tests apply them to a fake flow table instead.

Routes to a host on another switch go through a fast-failover group per (switch,
destination switch) whose buckets are the primary next hop and a precomputed loop-free
alternate (see routing.py): a fibre cut moves traffic in the switch within milliseconds, and
the re-route that follows only rewrites group buckets. Groups are sent with Open vSwitch's
ADD_OR_MOD command before any flow that uses them, and deleted only when the destination
becomes unreachable.

Not thread-safe: the app serialises calls with a lock.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from gateway.protocol import ADV_ADDR, ADV_PORT, AdvertError, decode_advert

from . import ofmsg
from .arp import handle_arp
from .gateways import GatewayRegistry
from .netmetric import LinkDelayEstimator
from .packet import IPv4Packet, PacketError, icmp_unreachable_for, parse_ipv4_frame, tcp_reset_for
from .plan import Plan
from .policy import BUILTINS, Policy, dampen, load_policy
from .probe import ETH_TYPE_LLDP, ProbeError, decode_probe, encode_probe
from .routing import (
    Buckets,
    DirectedLink,
    RouteAction,
    Routes,
    compute_routes,
    desired_groups,
    diff_flows,
    group_ids,
    route_actions,
)
from .steering import (
    COOKIE_STEER,
    IP_ICMP,
    IP_TCP,
    IP_UDP,
    PRIO_STEER,
    SERVICE_MAC,
    FlowKey,
    Placement,
    Steering,
    ingress_actions,
    placement_deletes,
    placement_flows,
    placement_stale_deletes,
    service_punt_flows,
)

LOG = logging.getLogger("edwc.controller")

COUNTERS = ("packet_in", "arp_replies", "arp_dropped", "probes_malformed", "probes_foreign",
            "probes_rejected",
            "probes_sent", "links_expired", "of_errors",
            "ip_malformed", "ip_unexpected", "adverts", "adverts_malformed", "adverts_rejected",
            "new_flows", "flows_placed", "flows_refused", "flows_spoofed", "flows_ended",
            "flows_repathed", "flows_adopted", "refusals_sent", "foreign_flows_deleted",
            "echo_requests")  # echo_requests counts the self-probes that calibrate C-NMA
MAX_WARNED = 100  # distinct unknown links warned about (hostile probes must not grow memory)
LINK_EXPIRY_INTERVALS = 3  # a link not refreshed for this many probe intervals is gone
FAST_PROBE_DIVISOR = 4  # probe this much faster until every plan link is discovered
MEASURED_REROUTE_MS = 0.2  # with --delay-source measured, re-route when a link's estimate
MEASURED_REROUTE_FRACTION = 0.1  # moves by more than both of these
SELF_PROBE_BASE = 0xFF00_0000  # probe "port" numbers from here on tag self-probes
SELF_PROBE_SPAN = 0x00F0_0000


@dataclass(frozen=True)
class PortInfo:
    port_no: int
    state: int
    config: int


class ControllerCore:
    def __init__(self, plan: Plan, probe_interval: float = 1.0, now: float = 0.0, *,
                 policy: Policy | str = "nearest", adv_key: bytes | None = None,
                 require_auth: bool = False, allow_unregistered: bool = False,
                 idle_timeout: int = 10, meter_rates: dict[int, int] | None = None,
                 delay_source: str = "model", wall=time.time) -> None:
        if probe_interval <= 0:
            raise ValueError("probe_interval must be > 0")
        if delay_source not in ("model", "measured"):
            raise ValueError("delay_source must be 'model' or 'measured'")
        self.plan = plan
        self.wall = wall
        self.adv_key = adv_key
        self.require_auth = require_auth
        self.meter_rates = dict(ofmsg.DEFAULT_METER_RATES if meter_rates is None
                                else meter_rates)
        self.delay_source = delay_source
        self.registry = GatewayRegistry(
            {g.id: (g.dpid, g.port, g.ip) for g in plan.gateways},
            allow_unregistered=allow_unregistered)
        self.steering = Steering(plan, self.registry,
                                 dampen(load_policy(policy)) if isinstance(policy, str)
                                 else policy, idle_timeout=idle_timeout, wall=wall)
        self.netmetric = LinkDelayEstimator(statistic="min")
        self._service_ips = {s.address for s in plan.services}
        self._host_at = {(h.dpid, h.port): h for h in plan.hosts}
        self._host_named = {h.name: h for h in plan.hosts}
        self._flow_parts: dict[int, list] = {}  # dpid -> flow stats received so far
        self._now_hint = now  # the latest `now` seen by tick (for status())
        self._self_probe_seq = 0
        self._delays_used: dict[DirectedLink, float] = {}
        # After a (re)start the topology is partly known for a moment: routes of an earlier
        # process are not deleted until every plan link is back, or this much time passed.
        self.hold_deletes_until = now + LINK_EXPIRY_INTERVALS * probe_interval
        self.probe_interval = probe_interval
        self.started_at = time.time()
        self.dps: dict[int, Any] = {}
        self.ever_connected: set[int] = set()
        self.live_ports: dict[int, set[int]] = {}
        self.links: dict[DirectedLink, float] = {}  # directed link -> last seen
        # dpid -> {ipv4_dst: ("output", port) | ("group", id)}: route flows on the switch
        self.installed: dict[int, dict[str, RouteAction]] = {}
        # dpid -> {group id: (primary port, backup port | None)}: groups this process sent
        self.installed_groups: dict[int, dict[int, Buckets]] = {}
        self.group_ids = group_ids(plan)  # destination dpid -> fast-failover group id
        self.pending_barriers: dict[int, set[int]] = {}
        self.routes = Routes()
        self.routes_version = 0
        self.counters = dict.fromkeys(COUNTERS, 0)
        self.serial = 0  # bumped on every change the status file shows
        self.errors_since_reroute = 0  # OpenFlow errors since flows were last sent
        self.next_probe_at = now
        self._warned_unknown: set[DirectedLink] = set()
        self._expected_links = plan.expected_directed_links()
        self._plan_dpids = {s.dpid for s in plan.switches}
        self._ip_to_mac = {h.ip: h.mac for h in plan.hosts}
        # Proxy ARP also answers for every CS-ID and the advertisement collector.
        self._ip_to_mac.update({s.address: SERVICE_MAC for s in plan.services})
        self._ip_to_mac[ADV_ADDR] = SERVICE_MAC
        # Host ports are edges, never links: not probed, and probes arriving there (a host
        # replaying or forging one) are rejected.
        self._host_ports = {(h.dpid, h.port) for h in plan.hosts}
        self._ports_known: set[int] = set()  # switches whose port description arrived

    # ---- switch lifecycle -------------------------------------------------------------
    def switch_up(self, dp: Any, now: float) -> list:
        dpid = dp.id
        if dpid not in self._plan_dpids:
            LOG.warning("switch dpid=%d is not in the plan; installing base flows only", dpid)
        first = dpid not in self.ever_connected
        self.ever_connected.add(dpid)
        self._forget_switch(dpid)
        self.dps[dpid] = dp
        self.live_ports[dpid] = set()
        self.installed[dpid] = {}
        self.installed_groups[dpid] = {}  # unknown: every group is re-sent (ADD_OR_MOD)
        self.pending_barriers[dpid] = set()
        LOG.info("switch dpid=%d connected (%s)", dpid, "first time" if first else "reconnect")
        # No blanket delete: flows already there (placements of established flows, after a
        # controller restart) keep working. The flow-stats reply shows what is installed:
        # ours is adopted, anything else is deleted (see flow_stats).
        self._flow_parts[dpid] = []
        msgs = [*ofmsg.meter_mods(dp, self.meter_rates), *ofmsg.base_flows(dp),
                *self._control_flows(dp), ofmsg.flow_stats_request(dp),
                ofmsg.port_desc_request(dp)]
        msgs += self._reroute(now, "switch up")
        msgs.append(self._barrier(dp))
        self._changed()
        return msgs

    def switch_down(self, dpid: int, now: float) -> list:
        if dpid not in self.dps:
            return []
        LOG.warning("switch dpid=%d disconnected", dpid)
        self._forget_switch(dpid)
        self._changed()
        return self._reroute(now, f"switch {dpid} down")

    def _forget_switch(self, dpid: int) -> None:
        self.dps.pop(dpid, None)
        self.netmetric.forget_switch(dpid)
        self._ports_known.discard(dpid)
        self.live_ports.pop(dpid, None)
        self.installed.pop(dpid, None)
        self.installed_groups.pop(dpid, None)
        self.pending_barriers.pop(dpid, None)
        self._drop_links(lk for lk in self.links if dpid in (lk[0], lk[2]))

    # ---- ports -------------------------------------------------------------------------
    def port_desc(self, dpid: int, ports: Iterable[PortInfo], now: float) -> list:
        dp = self.dps.get(dpid)
        if dp is None:
            return []
        live = {p.port_no for p in ports
                if ofmsg.is_physical_port(p.port_no) and ofmsg.port_is_up(dp, p.state, p.config)}
        self.live_ports[dpid] = live
        self._ports_known.add(dpid)
        LOG.info("switch dpid=%d live ports %s", dpid, sorted(live))
        dropped = self._drop_links(lk for lk in self.links
                                   if (lk[0] == dpid and lk[1] not in live)
                                   or (lk[2] == dpid and lk[3] not in live))
        msgs = [self._probe(dp, port, now) for port in self._probe_ports(dpid)]
        self.next_probe_at = min(self.next_probe_at, now)  # neighbours probe the newcomer too
        if dropped:
            msgs += self._reroute(now, "ports down at port description")
        self._changed()
        return msgs

    def port_status(self, dpid: int, reason: int, port: PortInfo, now: float) -> list:
        dp = self.dps.get(dpid)
        if dp is None or not ofmsg.is_physical_port(port.port_no):
            return []
        live = self.live_ports.setdefault(dpid, set())
        up = reason != dp.ofproto.OFPPR_DELETE and ofmsg.port_is_up(dp, port.state, port.config)
        if not up:
            was_live = port.port_no in live
            live.discard(port.port_no)
            dropped = self._drop_links(lk for lk in self.links
                                       if (lk[0], lk[1]) == (dpid, port.port_no)
                                       or (lk[2], lk[3]) == (dpid, port.port_no))
            if was_live or dropped:
                LOG.warning("port %d:%d down, %d link(s) removed", dpid, port.port_no,
                            len(dropped))
                self._changed()
            return self._reroute(now, f"port {dpid}:{port.port_no} down") if dropped else []
        if port.port_no in live:
            return []
        live.add(port.port_no)
        self._changed()
        if (dpid, port.port_no) in self._host_ports:
            LOG.info("host port %d:%d up", dpid, port.port_no)
            return []
        LOG.info("port %d:%d up, probing", dpid, port.port_no)
        return [self._probe(dp, port.port_no, now)]

    # ---- packet-in ---------------------------------------------------------------------
    def packet_in(self, dpid: int, in_port: int, data: bytes, now: float) -> list:
        self.counters["packet_in"] += 1
        self._changed()
        dp = self.dps.get(dpid)
        if dp is None or len(data) < 14:
            return []
        eth_type = int.from_bytes(data[12:14], "big")
        if eth_type == ETH_TYPE_LLDP:
            return self._probe_in(dpid, in_port, data, now)
        if eth_type == ofmsg.ETH_TYPE_ARP:
            decision = handle_arp(data, self._ip_to_mac)
            if decision.reply is None:
                self.counters["arp_dropped"] += 1
                LOG.debug("ARP on %d:%d dropped: %s", dpid, in_port, decision.reason)
                return []
            self.counters["arp_replies"] += 1
            return [ofmsg.packet_out(dp, in_port, decision.reply)]
        if eth_type in (ofmsg.ETH_TYPE_IP, 0x8100):
            return self._ipv4_in(dp, in_port, data, now)
        return []

    # ---- IPv4 punts: advertisements and first packets to service addresses ------------
    def _ipv4_in(self, dp: Any, in_port: int, data: bytes, now: float) -> list:
        try:
            pkt = parse_ipv4_frame(data)
        except PacketError as e:
            self.counters["ip_malformed"] += 1
            LOG.debug("malformed IPv4 on %d:%d: %s", dp.id, in_port, e)
            return []
        if pkt.ip_dst == ADV_ADDR:
            if pkt.proto == IP_UDP and pkt.dport == ADV_PORT and not pkt.fragment:
                self._advert_in(dp.id, in_port, pkt, now)
            else:
                self.counters["ip_unexpected"] += 1
            return []
        if pkt.ip_dst in self._service_ips and not pkt.fragment:
            return self._new_flow(dp, in_port, pkt, data, now)
        self.counters["ip_unexpected"] += 1
        return []

    def _advert_in(self, dpid: int, in_port: int, pkt: IPv4Packet, now: float) -> None:
        self.counters["adverts"] += 1
        if pkt.payload_truncated:
            self.counters["adverts_malformed"] += 1
            return
        try:
            adv = decode_advert(pkt.payload, self.adv_key, self.require_auth)
        except AdvertError as e:
            self.counters["adverts_malformed"] += 1
            self.registry.counters["invalid"] = self.registry.counters.get("invalid", 0) + 1
            LOG.info("advertisement from %s on %d:%d rejected: %s", pkt.ip_src, dpid, in_port,
                     str(e)[:200])
            return
        verdict = self.registry.accept(adv, dpid, in_port, pkt.ip_src, now, self.wall())
        if not verdict.ok:
            self.counters["adverts_rejected"] += 1
            LOG.info("advertisement gw=%.40r from %s on %d:%d rejected: %s", adv.gw,
                     pkt.ip_src, dpid, in_port, verdict.reason)
        self._changed()

    def _new_flow(self, dp: Any, in_port: int, pkt: IPv4Packet, data: bytes, now: float
                  ) -> list:
        self.counters["new_flows"] += 1
        client = self._host_at.get((dp.id, in_port))
        if client is None or client.ip != pkt.ip_src or client.mac != pkt.eth_src:
            # Only a plan host on its own port may open a flow (no spoofed 5-tuples).
            self.counters["flows_spoofed"] += 1
            return []
        if pkt.proto in (IP_TCP, IP_UDP):
            key = FlowKey(pkt.ip_src, pkt.ip_dst, pkt.proto, pkt.sport, pkt.dport)
        elif pkt.proto == IP_ICMP:
            key = FlowKey(pkt.ip_src, pkt.ip_dst, IP_ICMP)
        else:
            self.counters["ip_unexpected"] += 1
            return []
        placed = self.steering.placements.get(key)
        if placed is not None and self._path_ok(placed):
            # Instance affinity: a packet that raced its flow's rules keeps its placement.
            return [self._packet_out_actions(dp, in_port, data,
                                             ingress_actions(dp, placed, self.group_ids))]
        if placed is not None:
            self.steering.ended(key)
        placement, decision = self.steering.decide(client, key, self.routes, now)
        if placement is None:
            self.counters["flows_refused"] += 1
            self.steering.decisions.append(decision)
            LOG.info("refused %s -> %s (%s): %s", client.name, decision.service,
                     key.to_list(), decision.reason)
            return self._refuse(dp, in_port, pkt)
        try:
            msgs = placement_flows(self.dps, placement, self.steering.idle_timeout,
                                   self.group_ids)
        except KeyError:  # a switch on the path just went away
            self.counters["flows_refused"] += 1
            decision.gateway, decision.reason = None, "a switch on the path disconnected"
            self.steering.decisions.append(decision)
            return self._refuse(dp, in_port, pkt)
        svc = self.steering.services[key.service_ip]
        # The job starts about 1.5 round trips after this (handshake, request); an advert
        # sent after that already counts it.
        self.registry.reserve(placement.gateway,
                              self.registry.pick_kind(placement.gateway, svc.kinds, now),
                              svc.units, now, grace_s=2 * placement.rtt_ms / 1000 + 0.05)
        self.steering.record(placement, decision, now)
        self.counters["flows_placed"] += 1
        self._changed()
        LOG.debug("placed %s on %s: %s", key.to_list(), placement.gateway, decision.reason)
        return msgs + [self._packet_out_actions(dp, in_port, data,
                                                ingress_actions(dp, placement,
                                                                self.group_ids))]

    def _refuse(self, dp: Any, in_port: int, pkt: IPv4Packet) -> list:
        try:
            if pkt.proto == IP_TCP:
                if pkt.tcp_flags & 0x04:  # never answer a reset
                    return []
                frame = tcp_reset_for(pkt, SERVICE_MAC)
            else:
                frame = icmp_unreachable_for(pkt, SERVICE_MAC)
        except PacketError:
            return []
        self.counters["refusals_sent"] += 1
        return [ofmsg.packet_out(dp, in_port, frame)]

    @staticmethod
    def _packet_out_actions(dp: Any, in_port: int, data: bytes, actions: list) -> Any:
        o = dp.ofproto
        return dp.ofproto_parser.OFPPacketOut(datapath=dp, buffer_id=o.OFP_NO_BUFFER,
                                              in_port=in_port, actions=actions, data=data)

    def _control_flows(self, dp: Any) -> list:
        """Advertisements and first packets to CS-IDs go to the controller, metered."""
        ctl = [ofmsg.output(dp, dp.ofproto.OFPP_CONTROLLER)]
        adv = ofmsg.flow_add(dp, ofmsg.PRIO_PUNT, ofmsg.match(
            dp, eth_type=ofmsg.ETH_TYPE_IP, ip_proto=IP_UDP, ipv4_dst=ADV_ADDR,
            udp_dst=ADV_PORT), ctl, meter=ofmsg.METER_CONTROL)
        punts = service_punt_flows(dp, sorted(self._service_ips))
        for m in punts:
            m.instructions = ofmsg.apply_actions(dp, ctl, ofmsg.METER_NEWFLOW)
        return [adv, *punts]

    # ---- flow table reconciliation and flow expiry ------------------------------------
    def flow_stats(self, dpid: int, entries: list, more: bool, now: float) -> list:
        """Flow-stats reply parts (entries: (priority, cookie, match dict, actions)) ->
        after the last part, adopt our placements and delete foreign flows."""
        dp = self.dps.get(dpid)
        parts = self._flow_parts.get(dpid)
        if dp is None or parts is None:
            return []
        parts.extend(entries)
        if more:
            return []
        del self._flow_parts[dpid]
        msgs: list = []
        have = self.installed.setdefault(dpid, {})
        for prio, cookie, fields, actions in parts:
            if cookie == COOKIE_STEER and prio == PRIO_STEER:
                self._adopt(dpid, fields, actions, now)
                continue
            if cookie == ofmsg.COOKIE and prio == ofmsg.PRIO_ROUTE:
                # A route of an earlier controller process: adopt it, so the next diff keeps,
                # moves or deletes it (deletes wait until the topology is rediscovered). Its
                # group (same id in every process) is re-sent by the next re-route.
                ip = fields.get("ipv4_dst")
                act = next(((k, v) for k, v in actions if k in ("output", "group")), None)
                if isinstance(ip, str) and ip not in have and act is not None \
                        and isinstance(act[1], int):
                    have[ip] = act
                continue
            if cookie in (ofmsg.COOKIE, COOKIE_STEER):
                continue
            msgs.append(ofmsg.flow_delete_strict(dp, prio, ofmsg.match(dp, **fields),
                                                 cookie=cookie))
            self.counters["foreign_flows_deleted"] += 1
        if msgs:
            LOG.info("switch dpid=%d: deleted %d flow(s) not installed by this controller",
                     dpid, len(msgs))
            msgs.append(self._barrier(dp))
        return msgs

    def _adopt(self, dpid: int, fields: dict, actions: list, now: float) -> None:
        """Rebuild a placement from its client-switch rule (after a controller restart)."""
        svc_ip = fields.get("ipv4_dst")
        host = next((h for h in self.plan.hosts if h.dpid == dpid), None)
        if svc_ip not in self._service_ips or host is None or \
                fields.get("ipv4_src") != host.ip:
            return
        proto = fields.get("ip_proto", 0)
        sport = fields.get("tcp_src", fields.get("udp_src", 0))
        dport = fields.get("tcp_dst", fields.get("udp_dst", 0))
        key = FlowKey(host.ip, svc_ip, proto, sport, dport)
        gw_ip = next((v for k, v in actions if k == "ipv4_dst"), None)
        gw = next((g for g in self.plan.gateways if g.ip == gw_ip), None)
        if gw is None or key in self.steering.placements:
            return
        fwd = self.routes.hops(dpid, gw.dpid)
        rev = self.routes.hops(gw.dpid, dpid)
        if fwd is None or rev is None:
            fwd, rev = [(dpid, 0)], [(gw.dpid, 0)]
        fwd[-1] = (fwd[-1][0], gw.port)
        rev[-1] = (rev[-1][0], host.port)
        svc = self.steering.services[svc_ip]
        self.steering.record(Placement(
            key=key, service=svc.name, client=host.name, gateway=gw.id, gw_ip=gw.ip,
            gw_mac=gw.mac, forward=fwd, reverse=rev, rtt_ms=-1.0, created=now,
            policy="adopted", adopted=True), None, now)
        self.counters["flows_adopted"] += 1
        self._changed()

    def flow_removed(self, dpid: int, cookie: int, fields: dict, now: float,
                     reason: int | None = None) -> list:
        """A placement's client-switch rule idled out: forget it, remove the other rules.

        ``reason`` is the message's OFPRR_*; only an idle or hard timeout ends a placement
        (None: treated as a timeout). A delete (ours, e.g. a re-path replacing the rule) or a
        group delete does not: the re-path that caused it already decided the flow's fate."""
        if cookie != COOKIE_STEER:
            return []
        if reason is not None and reason not in (ofmsg.ofp.OFPRR_IDLE_TIMEOUT,
                                                 ofmsg.ofp.OFPRR_HARD_TIMEOUT):
            return []
        proto = fields.get("ip_proto", 0)
        key = FlowKey(fields.get("ipv4_src", ""), fields.get("ipv4_dst", ""), proto,
                      fields.get("tcp_src", fields.get("udp_src", 0)),
                      fields.get("tcp_dst", fields.get("udp_dst", 0)))
        p = self.steering.ended(key)
        if p is None:
            return []
        self.counters["flows_ended"] += 1
        self._changed()
        return placement_deletes(self.dps, p)

    def _link_index(self) -> set[tuple[int, int, int]]:
        return {(a, ap, b) for a, ap, b, _bp in self.links}

    def _path_ok(self, p: Placement, index: set[tuple[int, int, int]] | None = None) -> bool:
        index = self._link_index() if index is None else index
        for hops in (p.forward, p.reverse):
            for (dpid, port), nxt in zip(hops, hops[1:]):
                if dpid not in self.dps or (dpid, port, nxt[0]) not in index:
                    return False
            if hops[-1][0] not in self.dps:
                return False
        return True

    def _repath(self, now: float) -> list:
        """Placements whose path lost a link, or no longer is the current shortest path (the
        groups already carry their packets along it), move to the current path to the SAME
        gateway (instance affinity); flows whose gateway became unreachable are dropped.

        Make-before-break: the new rules go first (an ADD replaces a rule with the same
        match and priority, so the end rules are never missing), then the rules on switches
        that left the path of a direction are deleted."""
        if not self.steering.placements:
            return []
        index = self._link_index()
        current: dict[tuple[int, int], tuple[list, list] | None] = {}
        msgs: list = []
        for key, p in list(self.steering.placements.items()):
            gw = self.steering.gateways[p.gateway]
            client = self._host_named[p.client]
            pair = (client.dpid, gw.dpid)
            if pair not in current:
                fwd = self.routes.hops(client.dpid, gw.dpid)
                rev = self.routes.hops(gw.dpid, client.dpid)
                if fwd is None or rev is None:
                    current[pair] = None
                else:
                    fwd[-1] = (fwd[-1][0], gw.port)
                    rev[-1] = (rev[-1][0], client.port)
                    current[pair] = (fwd, rev)
            want = current[pair]
            ok = self._path_ok(p, index)
            if ok and (want is None or (p.forward, p.reverse) == want):
                continue  # intact (a route still being rediscovered leaves it alone)
            if want is None:
                msgs += placement_deletes(self.dps, p)
                self.steering.ended(key)
                continue
            old_fwd, old_rev = p.forward, p.reverse
            p.forward, p.reverse = list(want[0]), list(want[1])
            p.rtt_ms = round((self.routes.delay_ms(client.dpid, gw.dpid) or 0)
                             + (self.routes.delay_ms(gw.dpid, client.dpid) or 0), 6)
            try:
                new = placement_flows(self.dps, p, self.steering.idle_timeout, self.group_ids)
            except KeyError:
                p.forward, p.reverse = old_fwd, old_rev
                msgs += placement_deletes(self.dps, p)
                self.steering.ended(key)
                continue
            msgs += new + placement_stale_deletes(self.dps, p, old_fwd, old_rev)
            self.counters["flows_repathed"] += 1
        return msgs

    def _probe_in(self, dpid: int, in_port: int, data: bytes, now: float) -> list:
        try:
            probe = decode_probe(data)
        except ProbeError as e:
            self.counters["probes_malformed"] += 1
            LOG.debug("malformed probe on %d:%d: %s", dpid, in_port, e)
            return []
        if probe.run_id != self.plan.run_id:
            self.counters["probes_foreign"] += 1
            return []
        if probe.dpid == dpid and in_port == ofmsg.ofp.OFPP_CONTROLLER \
                and probe.port >= SELF_PROBE_BASE:
            # A self-probe came straight back: this switch's control round trip through the
            # same packet-out and packet-in paths a link probe takes (C-NMA calibration).
            self.netmetric.echo_reply(dpid, probe.port, now)
            return []
        if probe.dpid not in self.dps or probe.dpid == dpid:
            return []
        # A probe arriving from a host (replayed or forged), naming a host port, or naming
        # a port its switch reported down must never become a link. (Reserved port numbers
        # such as OFPP_FLOOD are refused by decode_probe.)
        if ((dpid, in_port) in self._host_ports or (probe.dpid, probe.port) in self._host_ports
                or not self._port_may_be_live(dpid, in_port)
                or not self._port_may_be_live(probe.dpid, probe.port)):
            self.counters["probes_rejected"] += 1
            return []
        link = (probe.dpid, probe.port, dpid, in_port)
        self.netmetric.probe_seen(link, probe.sent_at, now)
        is_new = link not in self.links
        self.links[link] = now
        if not is_new:
            return []
        # A port has one peer: a probe showing a new peer replaces the old link (rewiring).
        self._drop_links(lk for lk in self.links if lk != link and (
            lk[:2] == link[:2] or lk[2:] == link[2:]))
        LOG.info("link discovered %d:%d -> %d:%d", *link)
        return self._reroute(now, "link discovered")

    # ---- timers, replies, errors -------------------------------------------------------
    def tick(self, now: float) -> list:
        self._now_hint = now
        msgs: list = []
        max_age = LINK_EXPIRY_INTERVALS * self.probe_interval
        stale = self._drop_links(lk for lk, seen in self.links.items() if now - seen > max_age)
        if stale:
            self.counters["links_expired"] += len(stale)
            LOG.warning("links expired (not seen for %.1f s): %s", max_age, stale)
            msgs += self._reroute(now, "links expired")
        if self.hold_deletes_until is not None and not self._holding(now):
            msgs += self._reroute(now, "topology settled after start")
        gone = self.registry.expire(now)
        if gone:
            LOG.warning("gateways expired (silent for 3 advertisement intervals): %s", gone)
            self._changed()
        if now >= self.next_probe_at:
            for dpid in sorted(self.dps):
                dp = self.dps[dpid]
                msgs.append(self._self_probe(dp, now))
                msgs += [self._probe(dp, port, now) for port in self._probe_ports(dpid)]
            if self._measured_moved():
                msgs += self._reroute(now, "measured link delays changed")
            fast = not self._expected_links <= self.links.keys()
            step = self.probe_interval / FAST_PROBE_DIVISOR if fast else self.probe_interval
            self.next_probe_at = now + step
        return msgs

    def barrier_reply(self, dpid: int, xid: int, now: float) -> list:
        pending = self.pending_barriers.get(dpid)
        if pending is not None and xid in pending:
            pending.discard(xid)
            self._changed()
        return []

    def of_error(self, dpid: int, description: str, now: float) -> list:
        self.counters["of_errors"] += 1
        self.errors_since_reroute += 1
        LOG.error("OpenFlow error from dpid=%s: %s", dpid, description)
        self._changed()
        return []

    # ---- routing -----------------------------------------------------------------------
    def _reroute(self, now: float, why: str) -> list:
        routes = compute_routes(self.plan, self.links, self.dps, self._measured_delays())
        for lk in routes.unknown_links:
            if lk not in self._warned_unknown and len(self._warned_unknown) < MAX_WARNED:
                self._warned_unknown.add(lk)
                LOG.warning("discovered link %d:%d -> %d:%d is not in the plan; "
                            "weighting it as a last resort", *lk)
        want_flows = route_actions(self.plan, routes, self.group_ids)
        want_groups = desired_groups(routes, self.group_ids)
        holding = self._holding(now)
        msgs: list = []
        for dpid in sorted(self.dps):
            msgs += self._sync_switch(self.dps[dpid], want_flows.get(dpid, {}),
                                      want_groups.get(dpid, {}), holding)
        if msgs or routes.paths != self.routes.paths:
            self.routes_version += 1
            self._log_path_changes(self.routes.paths, routes.paths, why)
            self._changed()
        self.routes = routes
        msgs += self._repath(now)
        if msgs:
            self.errors_since_reroute = 0
        return msgs

    def _sync_switch(self, dp: Any, flows: dict[str, RouteAction],
                     groups: dict[int, Buckets], holding: bool) -> list:
        """One switch's route flows and failover groups -> desired, in a safe order: groups
        first (a flow may only name an existing group), then flows, then group deletes (a
        group delete also removes the flows using it). While holding, nothing is deleted."""
        have_groups = self.installed_groups.setdefault(dp.id, {})
        have = self.installed.setdefault(dp.id, {})
        group_changes = diff_flows(have_groups, groups)
        flow_changes = diff_flows(have, flows)
        if holding:
            group_changes = [c for c in group_changes if c.op != "delete"]
            flow_changes = [c for c in flow_changes if c.op != "delete"]
        msgs: list = []
        for c in group_changes:
            if c.op != "delete":
                primary, backup = c.want
                msgs.append(ofmsg.group_ff(dp, c.key,
                                           [primary] if backup is None else [primary, backup]))
                have_groups[c.key] = c.want
        for c in flow_changes:
            m = ofmsg.route_match(dp, c.key)
            if c.op == "delete":
                msgs.append(ofmsg.flow_delete_strict(dp, ofmsg.PRIO_ROUTE, m))
                del have[c.key]
            else:
                # ADD, not MODIFY_STRICT: it replaces the flow with this match and priority,
                # and still installs it if the switch lost it.
                msgs.append(ofmsg.flow_add(dp, ofmsg.PRIO_ROUTE, m,
                                           [ofmsg.route_action(dp, c.want)]))
                have[c.key] = c.want
        for c in group_changes:
            if c.op == "delete":
                msgs.append(ofmsg.group_delete(dp, c.key))
                del have_groups[c.key]
        if msgs:
            msgs.append(self._barrier(dp))
        return msgs

    def _holding(self, now: float) -> bool:
        if self.hold_deletes_until is None:
            return False
        if now >= self.hold_deletes_until or self._expected_links <= self.links.keys():
            self.hold_deletes_until = None
            return False
        return True

    def _measured_delays(self) -> dict[DirectedLink, float] | None:
        if self.delay_source != "measured":
            return None
        out = {}
        for lk in self.links:
            d = self.netmetric.delay_ms(lk)
            if d is not None:
                out[lk] = max(0.0, d)
        self._delays_used = dict(out)
        return out

    def _measured_moved(self) -> bool:
        """A measured link delay moved enough to re-route on (hysteresis: 0.2 ms and 10 %,
        so estimator noise does not flap paths)."""
        if self.delay_source != "measured":
            return False
        for lk in self.links:
            d = self.netmetric.delay_ms(lk)
            if d is None:
                continue
            old = self._delays_used.get(lk)
            if old is None or abs(d - old) > max(MEASURED_REROUTE_MS,
                                                 MEASURED_REROUTE_FRACTION * old):
                return True
        return False

    def _self_probe(self, dp: Any, now: float) -> Any:
        """A probe sent to OFPP_CONTROLLER: it comes back as a packet-in from the same
        switch, so its round trip is the control-path overhead a link probe also carries
        (packet-out execution, packet-in generation, the channel both ways), which an
        OpenFlow echo misses (measured here: echoes under-correct by about 2 ms on the
        userspace datapath)."""
        self._self_probe_seq = (self._self_probe_seq + 1) % SELF_PROBE_SPAN
        tag = SELF_PROBE_BASE + self._self_probe_seq
        self.netmetric.echo_sent(dp.id, tag, now)
        self.counters["echo_requests"] += 1
        return ofmsg.packet_out(dp, dp.ofproto.OFPP_CONTROLLER,
                                encode_probe(dp.id, tag, now, self.plan.run_id))

    def echo_reply(self, dpid: int, xid: int, now: float) -> list:
        return []  # link-delay correction uses self-probes (see _self_probe)

    def set_policy(self, spec: str, params: dict | None = None) -> str:
        """Switch the path selector at run time; raises PolicyError and keeps the old one."""
        policy = dampen(load_policy(spec, **(params or {})))
        old = self.steering.policy.name
        self.steering.previous_policy = self.steering.policy
        self.steering.policy = policy
        LOG.info("policy switched from %s to %s", old, policy.name)
        self._changed()
        return policy.name

    def _log_path_changes(self, old: dict, new: dict, why: str) -> None:
        changed = [k for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
        LOG.info("routes v%d (%s): %d path(s) changed", self.routes_version, why, len(changed))
        for k in changed[:20]:
            LOG.info("  %s: %s -> %s", k, old.get(k), new.get(k))

    # ---- helpers -----------------------------------------------------------------------
    def _drop_links(self, links: Iterable[DirectedLink]) -> list[DirectedLink]:
        gone = sorted(set(links))
        for lk in gone:
            self.links.pop(lk, None)
            self.netmetric.forget_link(lk)
        if gone:
            self._changed()
        return gone

    def _probe(self, dp: Any, port: int, now: float) -> Any:
        self.counters["probes_sent"] += 1
        return ofmsg.packet_out(dp, port, encode_probe(dp.id, port, now, self.plan.run_id))

    def _port_may_be_live(self, dpid: int, port: int) -> bool:
        """False only when the switch's port description is in and lacks this port."""
        return dpid not in self._ports_known or port in self.live_ports.get(dpid, ())

    def _probe_ports(self, dpid: int) -> list[int]:
        return sorted(p for p in self.live_ports.get(dpid, ())
                      if (dpid, p) not in self._host_ports)

    def _barrier(self, dp: Any) -> Any:
        msg = ofmsg.barrier(dp)
        self.pending_barriers.setdefault(dp.id, set()).add(msg.xid)
        return msg

    def _changed(self) -> None:
        self.serial += 1

    # ---- status ------------------------------------------------------------------------
    def is_ready(self) -> bool:
        return (self._plan_dpids <= self.dps.keys()
                and self._expected_links <= self.links.keys()
                and not any(self.pending_barriers.values())
                and self.errors_since_reroute == 0)

    def api_view(self, resource: str, query: dict, now: float) -> Any:
        """The state API's resources (JSON-able); KeyError for an unknown one."""
        if resource == "status":
            return self.status()
        if resource == "topology":
            return {"run_id": self.plan.run_id, "topology": self.plan.topology,
                    "switches": [{"dpid": s.dpid, "site": s.site, "name": s.name,
                                  "connected": s.dpid in self.dps} for s in self.plan.switches],
                    "hosts": [{"name": h.name, "ip": h.ip, "mac": h.mac, "dpid": h.dpid,
                               "port": h.port} for h in self.plan.hosts],
                    "links": self._links_view(),
                    "paths": dict(sorted(self.routes.paths.items()))}
        if resource == "links":
            return {"delay_source": self.delay_source, "links": self._links_view(),
                    "measurement": self.netmetric.snapshot(),
                    "backup_coverage": self.routes.coverage(),
                    "no_backup": [[self.steering.site_of.get(a, a), self.steering.site_of.get(b, b)]
                                  for a, b in self.routes.no_backup]}
        if resource == "gateways":
            return self.registry.snapshot(now)
        if resource == "services":
            alive = {st.gw: st for st in self.registry.alive(now)}
            return [{"name": s.name, "address": s.address, "port": s.port,
                     "class": s.service_class, "budget_ms": s.budget_ms, "units": s.units,
                     "kinds": list(s.kinds),
                     "gateways": [g.id for g in self.plan.gateways if s.name in g.services],
                     "alive": [g.id for g in self.plan.gateways
                               if s.name in g.services and g.id in alive],
                     "active_flows": sum(1 for p in self.steering.placements.values()
                                         if p.service == s.name)}
                    for s in self.plan.services]
        if resource == "decisions":
            limit = int(query.get("limit", 100))
            return self.steering.snapshot(limit)
        if resource == "counters":
            return {"controller": dict(self.counters), "gateways": dict(self.registry.counters),
                    "steering": self.steering.snapshot(0)["per_policy"]}
        if resource == "policy":
            return {"policy": self.steering.policy.name,
                    "previous": getattr(self.steering.previous_policy, "name", None),
                    "builtins": sorted(BUILTINS), "errors": list(self.steering.policy_errors)}
        raise KeyError(resource)

    def _links_view(self) -> list[dict]:
        plan_delays = self.plan.directed_delays()
        out = []
        for lk in sorted(self.links):
            out.append({"link": list(lk), "from": self.steering.site_of.get(lk[0]),
                        "to": self.steering.site_of.get(lk[2]),
                        "configured_ms": plan_delays.get(lk),
                        "measured_ms": self.netmetric.delay_ms(lk)})
        return out

    def status(self) -> dict:
        return {
            "pid": os.getpid(),
            "started_at": self.started_at,
            "run_id": self.plan.run_id,
            "switches": sorted(self.dps),
            "links": [list(lk) for lk in sorted(self.links)],
            "expected": {"switches": len(self._plan_dpids), "links": len(self._expected_links)},
            "routes_version": self.routes_version,
            "ready": self.is_ready(),
            "paths": dict(sorted(self.routes.paths.items())),
            "backup_coverage": self.routes.coverage(),
            "counters": dict(self.counters),
            "policy": self.steering.policy.name,
            "gateways_alive": sorted(st.gw for st in self.registry.alive(self._now_hint)),
            "placements": len(self.steering.placements),
        }
