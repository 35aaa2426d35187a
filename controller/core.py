"""The controller's state machine, free of os-ken's event loop (cf. Faucet's Valve).

Every entry point takes the current time (``now``, seconds on one monotonic clock) and
returns the OpenFlow messages to send, in order; it never sends. Messages are built against
the datapath object they belong to (``msg.datapath``), so one seam in the app sends them and
tests apply them to a fake flow table instead.

Not thread-safe: the app serialises calls with a lock.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from . import ofmsg
from .arp import handle_arp
from .plan import Plan
from .probe import ETH_TYPE_LLDP, ProbeError, decode_probe, encode_probe
from .routing import DirectedLink, Routes, compute_routes, diff_flows

LOG = logging.getLogger("edwc.controller")

COUNTERS = ("packet_in", "arp_replies", "arp_dropped", "probes_malformed", "probes_foreign",
            "probes_rejected",
            "probes_sent", "links_expired", "of_errors")
MAX_WARNED = 100  # distinct unknown links warned about (hostile probes must not grow memory)
LINK_EXPIRY_INTERVALS = 3  # a link not refreshed for this many probe intervals is gone
FAST_PROBE_DIVISOR = 4  # probe this much faster until every plan link is discovered


@dataclass(frozen=True)
class PortInfo:
    port_no: int
    state: int
    config: int


class ControllerCore:
    def __init__(self, plan: Plan, probe_interval: float = 1.0, now: float = 0.0) -> None:
        if probe_interval <= 0:
            raise ValueError("probe_interval must be > 0")
        self.plan = plan
        self.probe_interval = probe_interval
        self.started_at = time.time()
        self.dps: dict[int, Any] = {}
        self.ever_connected: set[int] = set()
        self.live_ports: dict[int, set[int]] = {}
        self.links: dict[DirectedLink, float] = {}  # directed link -> last seen
        self.installed: dict[int, dict[str, int]] = {}  # dpid -> {ipv4_dst: out_port}
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
        self.pending_barriers[dpid] = set()
        LOG.info("switch dpid=%d connected (%s)", dpid, "first time" if first else "reconnect")
        msgs = [ofmsg.delete_all_table0(dp) if first else ofmsg.delete_ours(dp),
                self._barrier(dp), *ofmsg.base_flows(dp), ofmsg.port_desc_request(dp)]
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
        self._ports_known.discard(dpid)
        self.live_ports.pop(dpid, None)
        self.installed.pop(dpid, None)
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
        return []

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
        msgs: list = []
        max_age = LINK_EXPIRY_INTERVALS * self.probe_interval
        stale = self._drop_links(lk for lk, seen in self.links.items() if now - seen > max_age)
        if stale:
            self.counters["links_expired"] += len(stale)
            LOG.warning("links expired (not seen for %.1f s): %s", max_age, stale)
            msgs += self._reroute(now, "links expired")
        if now >= self.next_probe_at:
            for dpid in sorted(self.dps):
                dp = self.dps[dpid]
                msgs += [self._probe(dp, port, now) for port in self._probe_ports(dpid)]
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
        routes = compute_routes(self.plan, self.links, self.dps)
        for lk in routes.unknown_links:
            if lk not in self._warned_unknown and len(self._warned_unknown) < MAX_WARNED:
                self._warned_unknown.add(lk)
                LOG.warning("discovered link %d:%d -> %d:%d is not in the plan; "
                            "weighting it as a last resort", *lk)
        msgs: list = []
        for dpid in sorted(self.dps):
            dp = self.dps[dpid]
            have = self.installed.setdefault(dpid, {})
            changes = diff_flows(have, routes.flows.get(dpid, {}))
            for ch in changes:
                m = ofmsg.route_match(dp, ch.ip)
                if ch.op == "add":
                    msgs.append(ofmsg.flow_add(dp, ofmsg.PRIO_ROUTE, m,
                                               [ofmsg.output(dp, ch.port)]))
                    have[ch.ip] = ch.port
                elif ch.op == "modify":
                    # ADD, not MODIFY_STRICT: it replaces the flow with this match and
                    # priority, and still installs it if the switch lost it.
                    msgs.append(ofmsg.flow_add(dp, ofmsg.PRIO_ROUTE, m,
                                               [ofmsg.output(dp, ch.port)]))
                    have[ch.ip] = ch.port
                else:
                    msgs.append(ofmsg.flow_delete_strict(dp, ofmsg.PRIO_ROUTE, m))
                    del have[ch.ip]
            if changes:
                msgs.append(self._barrier(dp))
        if msgs or routes.paths != self.routes.paths:
            self.routes_version += 1
            self._log_path_changes(self.routes.paths, routes.paths, why)
            self._changed()
        self.routes = routes
        if msgs:
            self.errors_since_reroute = 0
        return msgs

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
            "counters": dict(self.counters),
        }
