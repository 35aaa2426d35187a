"""The os-ken-facing layer: thin event handlers that delegate to :class:`ControllerCore`.

Each handler takes the lock, calls the core with the current time, and sends what it
returns through :meth:`EdwcController.send` (the one seam). A handler that raises logs the
traceback loudly and the app carries on. ``controller.__main__`` parses the configuration
once, loads the plan and the policy, and hands them to the app as one :class:`Runtime`
(the ``edwc_runtime`` keyword of its constructor).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass

from os_ken.base import app_manager
from os_ken.controller import ofp_event
from os_ken.controller.handler import (
    CONFIG_DISPATCHER,
    DEAD_DISPATCHER,
    MAIN_DISPATCHER,
    set_ev_cls,
)
from os_ken.lib import hub
from os_ken.ofproto import ofproto_v1_3

from . import ofmsg
from .config import ControllerConfig
from .core import ControllerCore, PortInfo
from .plan import Plan
from .policy import Policy, PolicyError
from .status import StatusWriter

LOG = logging.getLogger("edwc.controller")
TICK_SECONDS = 0.05


@dataclass(frozen=True)
class Runtime:
    """What the app runs with, made once by ``controller.__main__``."""

    config: ControllerConfig
    plan: Plan
    policy: Policy  # already dampened (policy.make_policy)
    adv_key: bytes | None = None

    @property
    def meter_rates(self) -> dict:
        return {**ofmsg.DEFAULT_METER_RATES, ofmsg.METER_NEWFLOW: self.config.newflow_rate}


def describe_error(msg) -> str:
    o = ofproto_v1_3
    types = {v: k for k, v in vars(o).items() if k.startswith("OFPET_") and isinstance(v, int)}
    tname = types.get(msg.type, str(msg.type))
    data = msg.data
    try:
        from os_ken.ofproto import ofproto_parser
        (version, mtype, mlen, xid) = ofproto_parser.header(data)
        offending = f"offending msg type={mtype} xid={xid} len={mlen}"
    except Exception:
        offending = f"data={bytes(data[:32]).hex()}"
    return f"type={tname}({msg.type}) code={msg.code} xid={msg.xid} {offending}"


def set_fields(instructions) -> list[tuple[str, object]]:
    """(field, value) of every set-field action, ("output", port) and ("group", id), in
    order."""
    out = []
    for inst in instructions or []:
        for a in getattr(inst, "actions", None) or []:
            if hasattr(a, "key") and hasattr(a, "value"):
                out.append((a.key, a.value))
            elif hasattr(a, "port"):
                out.append(("output", a.port))
            elif hasattr(a, "group_id"):
                out.append(("group", a.group_id))
    return out


class EdwcController(app_manager.OSKenApp):
    OFP_VERSIONS = [ofproto_v1_3.OFP_VERSION]

    def __init__(self, *args, edwc_runtime: Runtime | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        if edwc_runtime is None:
            raise RuntimeError("the EDWC app needs its Runtime (edwc_runtime=...); run it "
                               "with `python -m controller`")
        rt = self.runtime = edwc_runtime
        cfg = rt.config
        self.core = ControllerCore(
            rt.plan, cfg.probe_interval, now=time.monotonic(), policy=rt.policy,
            adv_key=rt.adv_key, require_auth=cfg.require_auth,
            allow_unregistered=cfg.allow_unregistered_gateways,
            idle_timeout=cfg.flow_idle_timeout, meter_rates=rt.meter_rates,
            delay_source=cfg.delay_source)
        self.api = None
        # per handler, recent (waited for the lock, core, sending, status write) seconds
        self.timing: dict[str, deque] = {}
        self.api_address: tuple[str, int] | None = None
        self.status = StatusWriter(cfg.status) if cfg.status else None
        self.lock = threading.RLock()
        self._stopping = threading.Event()
        self._status_failed = False

    # ---- the seam ----------------------------------------------------------------------
    def send(self, msgs: list) -> None:
        for msg in msgs:
            try:
                msg.datapath.send_msg(msg)
            except Exception:
                LOG.exception("sending %s to dpid=%s failed", type(msg).__name__,
                              getattr(msg.datapath, "id", None))

    def _run(self, what: str, fn, *args, arrived: float | None = None) -> None:
        """``arrived``: when the event reached the app (taken before the lock, so that lock
        waits do not inflate timing samples such as probe and echo round trips)."""
        try:
            t0 = time.monotonic()
            with self.lock:
                now = t0 if arrived is None else arrived
                msgs = fn(*args, now)
                t1 = time.monotonic()
                self.send(msgs)
                t2 = time.monotonic()
                self._write_status(now)
            self.timing.setdefault(what, deque(maxlen=1000)).append(
                (t0 - now, t1 - t0, t2 - t1, time.monotonic() - t2))
        except Exception:
            LOG.exception("handler %s FAILED (the controller keeps running)", what)

    def _write_status(self, now: float, force: bool = False) -> None:
        if self.status is None:
            return
        try:
            self.status.maybe_write(self.core.serial, now, self._status_doc, force=force)
        except OSError as e:  # a full disk or a removed directory must not stop routing
            if not self._status_failed:
                LOG.error("cannot write the status file %s: %s (will keep trying)",
                          self.runtime.config.status, e)
            self._status_failed = True
        else:
            self._status_failed = False

    def _status_doc(self) -> dict:
        """The core's status, stamped with the configuration this process runs with."""
        return {**self.core.status(), "config": self.runtime.config.to_dict()}

    # ---- lifecycle ---------------------------------------------------------------------
    def start(self):
        thread = super().start()
        self.threads.append(hub.spawn(self._ticker))
        api = self.runtime.config.api
        if api is not None:
            from .api import ApiServer
            self.api = ApiServer(self, host=api[0], port=api[1])
            self.api_address = self.api.start()
            LOG.info("state API on http://%s:%d/api/v1", *self.api_address)
        with self.lock:
            self._write_status(time.monotonic(), force=True)
        return thread

    def stop(self):
        self._stopping.set()
        if self.api is not None:
            self.api.stop()
        super().stop()

    # ---- the state API's provider (called from the API thread) -------------------------
    def api_get(self, resource: str, query: dict) -> object:
        with self.lock:
            view = self.core.api_view(resource, query, time.monotonic())
            if resource == "counters":
                view["handler_ms"] = self.timing_summary()
            return view

    def timing_summary(self) -> dict:
        """Median and p99 of each handler's phases over its recent events, in ms."""
        out = {}
        for what, samples in self.timing.items():
            cols = list(zip(*samples))
            row = {"n": len(samples)}
            for name, col in zip(("lock_wait", "core", "send", "status"), cols):
                v = sorted(col)
                row[name] = [round(v[len(v) // 2] * 1000, 3),
                             round(v[min(len(v) - 1, int(len(v) * 0.99))] * 1000, 3)]
            out[what] = row
        return out

    def api_set_policy(self, spec: str, params: dict) -> dict:
        with self.lock:
            try:
                name = self.core.set_policy(spec, params)
            except PolicyError as e:
                raise ValueError(str(e)) from None
            self._write_status(time.monotonic(), force=True)
        return {"policy": name}

    def write_final_status(self) -> None:
        with self.lock:
            self._write_status(time.monotonic(), force=True)

    def _ticker(self) -> None:
        while not self._stopping.wait(TICK_SECONDS):
            self._run("tick", self.core.tick)

    # ---- OpenFlow events ---------------------------------------------------------------
    @set_ev_cls(ofp_event.EventOFPSwitchFeatures, CONFIG_DISPATCHER)
    def on_features(self, ev):
        self._run("switch_features", self.core.switch_up, ev.msg.datapath)

    @set_ev_cls(ofp_event.EventOFPStateChange, DEAD_DISPATCHER)
    def on_dead(self, ev):
        dp = ev.datapath
        if dp.id is None:
            return

        def down(now):
            if self.core.dps.get(dp.id) is not dp:  # an old connection of a reconnected switch
                return []
            return self.core.switch_down(dp.id, now)
        self._run("switch_dead", down)

    @set_ev_cls(ofp_event.EventOFPPortDescStatsReply, [CONFIG_DISPATCHER, MAIN_DISPATCHER])
    def on_port_desc(self, ev):
        ports = [PortInfo(p.port_no, p.state, p.config) for p in ev.msg.body]
        self._run("port_desc", self.core.port_desc, ev.msg.datapath.id, ports)

    @set_ev_cls(ofp_event.EventOFPPortStatus, [CONFIG_DISPATCHER, MAIN_DISPATCHER])
    def on_port_status(self, ev):
        d = ev.msg.desc
        self._run("port_status", self.core.port_status, ev.msg.datapath.id, ev.msg.reason,
                  PortInfo(d.port_no, d.state, d.config))

    @set_ev_cls(ofp_event.EventOFPPacketIn, MAIN_DISPATCHER)
    def on_packet_in(self, ev):
        arrived = time.monotonic()
        msg = ev.msg
        self._run("packet_in", self.core.packet_in, msg.datapath.id, msg.match["in_port"],
                  bytes(msg.data), arrived=arrived)

    @set_ev_cls(ofp_event.EventOFPBarrierReply, [CONFIG_DISPATCHER, MAIN_DISPATCHER])
    def on_barrier(self, ev):
        self._run("barrier", self.core.barrier_reply, ev.msg.datapath.id, ev.msg.xid)

    @set_ev_cls(ofp_event.EventOFPFlowStatsReply, MAIN_DISPATCHER)
    def on_flow_stats(self, ev):
        msg = ev.msg
        entries = [(f.priority, f.cookie, dict(f.match.items()), set_fields(f.instructions))
                   for f in msg.body]
        more = bool(msg.flags & msg.datapath.ofproto.OFPMPF_REPLY_MORE)
        self._run("flow_stats", self.core.flow_stats, msg.datapath.id, entries, more)

    @set_ev_cls(ofp_event.EventOFPFlowRemoved, MAIN_DISPATCHER)
    def on_flow_removed(self, ev):
        msg = ev.msg
        reason = msg.reason

        def removed(now):
            return self.core.flow_removed(msg.datapath.id, msg.cookie, dict(msg.match.items()),
                                          now, reason=reason)
        self._run("flow_removed", removed)

    @set_ev_cls(ofp_event.EventOFPEchoReply, [CONFIG_DISPATCHER, MAIN_DISPATCHER])
    def on_echo_reply(self, ev):
        self._run("echo_reply", self.core.echo_reply, ev.msg.datapath.id, ev.msg.xid,
                  arrived=time.monotonic())

    @set_ev_cls(ofp_event.EventOFPErrorMsg, [CONFIG_DISPATCHER, MAIN_DISPATCHER])
    def on_error(self, ev):
        self._run("error", self.core.of_error, ev.msg.datapath.id, describe_error(ev.msg))
