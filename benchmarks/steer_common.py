"""Shared pieces of the steering benchmarks (issue 3): the pure controller core driven
in-process, and the small emulated steering topology with its measurement scripts.

In-process (no root): `PureController` wraps the real `ControllerCore` on a plan with stub
datapaths. It connects every switch, reports every port up, carries one discovery probe
over every directed plan link, acknowledges the barriers, and then takes gateway
advertisements and first packets as frames through `ControllerCore.packet_in`, exactly as
the os-ken app would hand them over. Time is injected (``now``) and the wall clock is a
`SimClock`, so a simulation runs as fast as the logic allows.

Emulated (root): `steering_topology` is a metro, a hub and two clusters; `RECEIVER` and
`SENDER` are small scripts the benchmarks run inside host namespaces (`host.popen`), and
`proc_cpu_s` reads a process's CPU time from /proc.
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Any

from controller import ofmsg
from controller.core import ControllerCore, PortInfo
from controller.packet import udp_frame
from controller.probe import encode_probe
from controller.steering import SERVICE_MAC
from gateway.protocol import Advert, encode_advert
from topology.addressing import ADV_ADDR, ADV_PORT

WALL0 = 1_800_000_000.0  # the simulated wall clock starts here (Unix seconds)
ADV_SPORT = 40000  # source port of simulated advertisements


class SimClock:
    """The wall clock the core and the registry read, driven by the simulation."""

    def __init__(self, t: float = WALL0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


class PureController:
    """The real ControllerCore on ``plan``, brought to 'ready' with stub datapaths."""

    def __init__(self, plan: Any, policy: Any = "nearest", idle_timeout: int = 10,
                 now: float = 0.0) -> None:
        self.plan = plan
        self.clock = SimClock(WALL0 + now)
        self.core = ControllerCore(plan, 1.0, now=now, policy=policy, wall=self.clock,
                                   idle_timeout=idle_timeout)
        self._bring_up(now)
        if not self.core.is_ready():
            raise RuntimeError("the in-process controller did not become ready: "
                               f"{self.core.status()}")
        self.gw = {g.id: g for g in plan.gateways}
        self.host = {h.name: h for h in plan.hosts}

    def _bring_up(self, now: float) -> None:
        core, plan = self.core, self.plan
        msgs: list = []
        for s in plan.switches:
            msgs += core.switch_up(ofmsg.stub_datapath(s.dpid), now)
        ports: dict[int, set[int]] = {s.dpid: set() for s in plan.switches}
        for h in plan.hosts:
            ports[h.dpid].add(h.port)
        for ln in plan.links:
            ports[ln.a_dpid].add(ln.a_port)
            ports[ln.b_dpid].add(ln.b_port)
        for dpid, nos in ports.items():
            msgs += core.port_desc(dpid, [PortInfo(p, 0, 0) for p in sorted(nos)], now)
        for ln in plan.links:  # one probe each way over every link
            for a, ap, b, bp in ((ln.a_dpid, ln.a_port, ln.b_dpid, ln.b_port),
                                 (ln.b_dpid, ln.b_port, ln.a_dpid, ln.a_port)):
                msgs += core.packet_in(b, bp, encode_probe(a, ap, now, plan.run_id), now)
        self.ack(msgs, now)

    def ack(self, msgs: list, now: float) -> None:
        for m in msgs:
            if isinstance(m, ofmsg.parser.OFPBarrierRequest):
                self.core.barrier_reply(m.datapath.id, m.xid, now)

    # ---- frames ------------------------------------------------------------------------
    def advert_in(self, adv: Advert, now: float) -> bool:
        """Deliver one advertisement from its gateway's host port; True if accepted."""
        g = self.gw[adv.gw]
        h = self.host[g.host]
        before = self.core.registry.counters["accepted"]
        frame = udp_frame(h.mac, SERVICE_MAC, h.ip, ADV_ADDR, ADV_SPORT, ADV_PORT,
                          encode_advert(adv))
        self.core.packet_in(h.dpid, h.port, frame, now)
        return self.core.registry.counters["accepted"] > before

    def first_packet(self, client: str, service_ip: str, sport: int, dport: int,
                     payload: bytes = b"") -> tuple[int, int, bytes]:
        """(dpid, in_port, frame) of a UDP first packet from ``client`` to a CS-ID."""
        h = self.host[client]
        return h.dpid, h.port, udp_frame(h.mac, SERVICE_MAC, h.ip, service_ip, sport, dport,
                                         payload)

    def flow_removed(self, client_ip: str, service_ip: str, sport: int, dport: int,
                     now: float) -> list:
        """The client-switch rule of a UDP placement idled out (as OVS would report)."""
        from controller.steering import COOKIE_STEER
        fields = {"eth_type": 0x0800, "ip_proto": 17, "ipv4_src": client_ip,
                  "ipv4_dst": service_ip, "udp_src": sport, "udp_dst": dport}
        return self.core.flow_removed(0, COOKIE_STEER, fields, now)


def make_advert(g: Any, seq: int, ts: float, units: dict[str, tuple[int, int]],
                util: float = 0.0, queue: int = 0, delay_ms: float = 0.0,
                interval: float = 1.0, epoch: int = 1) -> Advert:
    """An advertisement as gateway/agent.py builds it, for plan gateway ``g``."""
    return Advert(gw=g.id, epoch=epoch, seq=seq, ts=ts, interval=interval, units=units,
                  util=round(util, 6), queue=queue, delay_ms=round(min(delay_ms, 600000.0), 3),
                  price=g.price if g.price is not None else 0.0,
                  green=g.green if g.green is not None else 0.0,
                  services=tuple(g.services), pue=g.pue,
                  operator=g.operator[:32] if g.operator else None)


# ---- emulated runs ---------------------------------------------------------------------

SERVICE_IP = "10.0.255.1"
PROBE_PORT = 9000  # UDP port of the benchmarks' receiver on the gateway host (not 7000)


def steering_topology(near_units: int = 500_000, far_units: int = 64, budget_ms: float = 40.0,
                      access_ms: float = 1.0, name: str = "steer-bench"):
    """metro --1 ms-- hubx --1 ms-- near (cluster) ; hubx --8 ms-- far (cluster).

    ``near`` has many units so reservations never fill it (every flow goes there under
    'nearest'); one service 'infer' at SERVICE_IP needing 1 unit."""
    from topology.model import build_network
    from topology.services import make_services
    sites = [
        {"id": "metro", "kind": "metro", "lat": 31.2, "lon": 121.5, "region": "east"},
        {"id": "hubx", "kind": "hub", "lat": 31.0, "lon": 120.0, "region": "east"},
        {"id": "near", "kind": "cluster", "lat": 31.5, "lon": 119.0, "region": "east",
         "hub": "hubx", "compute": {"units": {"cuda": near_units}, "energy_price": 0.7,
                                    "green_share": 0.2, "pue": 1.3}},
        {"id": "far", "kind": "cluster", "lat": 37.5, "lon": 105.2, "region": "west",
         "hub": "hubx", "compute": {"units": {"cuda": far_units}, "energy_price": 0.3,
                                    "green_share": 0.7, "pue": 1.15}},
    ]
    links = [{"a": "metro", "b": "hubx", "delay_ms": access_ms},
             {"a": "hubx", "b": "near", "delay_ms": access_ms},
             {"a": "hubx", "b": "far", "delay_ms": 8.0}]
    net = build_network(sites, links, name=name)
    services = make_services([{"name": "infer", "address": SERVICE_IP, "port": 7000,
                               "budget_ms": budget_ms, "units": 1, "kinds": ["cuda"],
                               "class": "interactive"}], name)
    return dataclasses.replace(net, services=services)


# Run inside the gateway host: receive UDP datagrams whose payload starts with
# (flow id u32, packet no u8, pad, tx time ns u64), take the kernel receive timestamp
# (SO_TIMESTAMPNS) and append "flow pkt tx_ns rx_ns" lines to OUT. Stops on SIGTERM or
# after IDLE seconds without a datagram (after the first one).
RECEIVER = r"""
import signal, socket, struct, sys, time
port, out, idle = int(sys.argv[1]), sys.argv[2], float(sys.argv[3])
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
s.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
s.bind(("0.0.0.0", port))
s.settimeout(0.2)
stop = []
signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
rows, last = [], None
with open(out + ".ready", "w") as f:
    f.write("ok")
while not stop:
    try:
        data, anc, _fl, _addr = s.recvmsg(64, 64)
    except socket.timeout:
        if last is not None and time.monotonic() - last > idle:
            break
        continue
    rx = None
    for lvl, typ, val in anc:
        if lvl == socket.SOL_SOCKET and typ == SO_TIMESTAMPNS:
            sec, ns = struct.unpack("qq", val[:16])
            rx = sec * 1_000_000_000 + ns
    if rx is None:
        rx = time.time_ns()
    if len(data) >= 16:
        fid, pno, tx = struct.unpack("!IB3xQ", data[:16])
        rows.append("%d %d %d %d" % (fid, pno, tx, rx))
    last = time.monotonic()
with open(out, "w") as f:
    f.write("\n".join(rows) + "\n")
"""


def parse_receiver(path: str) -> list[tuple[int, int, int, int]]:
    rows = []
    try:
        with open(path) as f:
            for line in f:
                parts = line.split()
                if len(parts) == 4:
                    rows.append(tuple(int(p) for p in parts))
    except FileNotFoundError:
        pass
    return rows


def wait_file(path: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if os.path.exists(path):
            return True
        time.sleep(0.02)
    return False


def proc_cpu_s(pid: int) -> float | None:
    """utime + stime of a process (all its threads), seconds; None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def ovs_vswitchd_pid() -> int | None:
    for path in ("/var/run/openvswitch/ovs-vswitchd.pid", "/run/openvswitch/ovs-vswitchd.pid"):
        try:
            with open(path) as f:
                return int(f.read().strip())
        except (OSError, ValueError):
            continue
    return None


def stop_proc(p: Any, timeout: float = 5.0) -> None:
    """terminate -> wait -> kill one process we started (by its handle)."""
    if p is None or p.poll() is not None:
        return
    p.terminate()
    try:
        p.wait(timeout=timeout)
    except Exception:
        p.kill()
        p.wait(timeout=timeout)
