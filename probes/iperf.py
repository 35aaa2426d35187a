"""Throughput with iperf3: a pure parser of its -J JSON output and a runner for Mininet hosts.

The parser reads the CLIENT's JSON. TCP: end.sum_sent (bits/s, retransmits) and
end.sum_received; UDP: end.sum_sent / end.sum_received where iperf3 >= 3.10 writes them and
end.sum (the server's jitter, lost and total packets, reported back to the client) for loss
and jitter. Where a sum is missing the per-stream figures are added up. An "error" field
(server unreachable, busy, bad option) becomes IperfError with iperf3's message.

The runner starts `iperf3 -s -1 -J` (one test, then exit) on the server host, waits until it
listens (read from /proc/<pid>/net/tcp{,6}, i.e. the server's own namespace, no fixed sleep),
runs the client, and ends both by pid (terminate -> wait -> kill) whatever happens.
"""

from __future__ import annotations

import json
import subprocess
import time
from dataclasses import asdict, dataclass

from common import checks, procs

MAX_INPUT = 16 * 1024 * 1024
DEFAULT_PORT = 5201


class IperfError(ValueError):
    """iperf3 failed, or its output is not usable (the message says which and why)."""


class IperfParseError(IperfError):
    """The text is not complete iperf3 -J output."""


@dataclass(frozen=True)
class IperfResult:
    proto: str  # "tcp" | "udp"
    seconds: float  # measured duration (sender side)
    streams: int
    sent_bps: float
    received_bps: float
    bytes_sent: int
    bytes_received: int
    retransmits: int | None = None  # TCP sender retransmissions (None: UDP / not reported)
    jitter_ms: float | None = None  # UDP, RFC 3550 style, measured by the server
    lost_packets: int | None = None  # UDP
    packets: int | None = None  # UDP datagrams sent
    lost_pct: float | None = None  # UDP
    version: str = ""

    @property
    def received_mbps(self) -> float:
        return self.received_bps / 1e6

    def to_dict(self) -> dict:
        return asdict(self)


def _num(d: dict, key: str, where: str, integer: bool = False, optional: bool = False):
    v = d.get(key) if isinstance(d, dict) else None
    if v is None and optional:
        return None
    return checks.number(v, f"iperf3 output: {where}.{key}", 0, integer=integer,
                         error=IperfParseError)


def _sum_streams(streams: list, side: str) -> dict:
    """end.sum_* rebuilt from end.streams[*][side] (older iperf3 versions)."""
    parts = [s.get(side) for s in streams if isinstance(s, dict)]
    parts = [p for p in parts if isinstance(p, dict)]
    if not parts:
        raise IperfParseError(f"iperf3 output has neither end.sum nor end.streams[*].{side}: "
                              "truncated or not a client's output")
    out = {"bytes": sum(_num(p, "bytes", f"streams.{side}", True) for p in parts),
           "bits_per_second": sum(_num(p, "bits_per_second", f"streams.{side}")
                                  for p in parts),
           "seconds": max(_num(p, "seconds", f"streams.{side}") for p in parts)}
    rtx = [p.get("retransmits") for p in parts]
    if all(isinstance(r, int) for r in rtx):
        out["retransmits"] = sum(rtx)
    return out


def parse_iperf(text: str | bytes) -> IperfResult:
    """Parse an iperf3 client's -J output. Raises IperfError / IperfParseError."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    if not isinstance(text, str):
        raise IperfParseError(f"iperf3 output must be text, not {type(text).__name__}")
    if len(text) > MAX_INPUT:
        raise IperfParseError(f"iperf3 output of {len(text)} characters exceeds {MAX_INPUT}: "
                              "not a single test's -J output")
    if not text.strip():
        raise IperfParseError("iperf3 output is empty: did iperf3 run (with -J)?")
    try:
        obj = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as e:
        raise IperfParseError(f"iperf3 output is not JSON ({e}); starts with {text[:60]!r}: "
                              "truncated, or iperf3 was run without -J") from None
    if not isinstance(obj, dict):
        raise IperfParseError(f"iperf3 output is a JSON {type(obj).__name__}, not an object")
    if obj.get("error"):
        raise IperfError(f"iperf3 failed: {str(obj['error'])[:300]}")
    start, end = obj.get("start"), obj.get("end")
    if not isinstance(start, dict) or not isinstance(end, dict) or not end:
        raise IperfParseError("iperf3 output lacks 'start' or 'end': the test did not "
                              "complete (truncated output?)")
    ts = start.get("test_start")
    proto = str(ts.get("protocol", "")).lower() if isinstance(ts, dict) else ""
    if proto not in ("tcp", "udp"):
        raise IperfParseError(f"iperf3 output: protocol {proto!r} is neither TCP nor UDP")
    streams = end.get("streams") if isinstance(end.get("streams"), list) else []
    version = str(start.get("version", ""))
    n_streams = (ts.get("num_streams") if isinstance(ts.get("num_streams"), int)
                 else len(streams))
    if proto == "tcp":
        sent = end.get("sum_sent") or _sum_streams(streams, "sender")
        recv = end.get("sum_received") or _sum_streams(streams, "receiver")
        return IperfResult(
            proto="tcp", seconds=_num(sent, "seconds", "end.sum_sent"), streams=n_streams,
            sent_bps=_num(sent, "bits_per_second", "end.sum_sent"),
            received_bps=_num(recv, "bits_per_second", "end.sum_received"),
            bytes_sent=_num(sent, "bytes", "end.sum_sent", True),
            bytes_received=_num(recv, "bytes", "end.sum_received", True),
            retransmits=_num(sent, "retransmits", "end.sum_sent", True, optional=True),
            version=version)
    total = end.get("sum") or _sum_streams(streams, "udp")
    sent = end.get("sum_sent") or total
    recv = end.get("sum_received")
    lost_pct = _num(total, "lost_percent", "end.sum")
    if lost_pct > 100:
        raise IperfParseError(f"iperf3 output: lost_percent {lost_pct} > 100")
    received_bps = (_num(recv, "bits_per_second", "end.sum_received") if recv
                    else _num(sent, "bits_per_second", "end.sum") * (1 - lost_pct / 100))
    bytes_sent = _num(sent, "bytes", "end.sum_sent", True)
    return IperfResult(
        proto="udp", seconds=_num(sent, "seconds", "end.sum_sent"), streams=n_streams,
        sent_bps=_num(sent, "bits_per_second", "end.sum_sent"), received_bps=received_bps,
        bytes_sent=bytes_sent,
        bytes_received=(_num(recv, "bytes", "end.sum_received", True) if recv
                        else round(bytes_sent * (1 - lost_pct / 100))),
        jitter_ms=_num(total, "jitter_ms", "end.sum"),
        lost_packets=_num(total, "lost_packets", "end.sum", True),
        packets=_num(total, "packets", "end.sum", True), lost_pct=lost_pct, version=version)


# ------------------------------------------------------------------------------ runner

def server_command(port: int) -> list[str]:
    return ["iperf3", "-s", "-1", "-J", "-p", str(port)]


def client_command(ip: str, port: int, proto: str = "tcp", seconds: float = 2.0,
                   bandwidth_mbps: float | None = None, streams: int = 1) -> list[str]:
    if proto not in ("tcp", "udp"):
        raise ValueError(f"proto {proto!r}: give 'tcp' or 'udp'")
    if not 0 < seconds <= 3600:
        raise ValueError(f"seconds {seconds} must be in (0, 3600]")
    if not 1 <= streams <= 128:
        raise ValueError(f"streams {streams} must be 1..128")
    cmd = ["iperf3", "-c", ip, "-p", str(port), "-t", f"{seconds:g}", "-J",
           "--connect-timeout", "5000", "-P", str(streams)]
    if proto == "udp":
        cmd.append("-u")
    if bandwidth_mbps is not None:
        if not 0 < bandwidth_mbps <= 100_000:
            raise ValueError(f"bandwidth {bandwidth_mbps} Mbit/s must be in (0, 100000]")
        cmd += ["-b", str(int(bandwidth_mbps * 1e6))]
    return cmd


def listening(pid: int, port: int) -> bool:
    """Whether a TCP socket listens on `port` in the network namespace of process `pid`."""
    want = f":{port:04X} "
    for table in ("tcp", "tcp6"):
        try:
            with open(f"/proc/{pid}/net/{table}") as f:
                next(f, None)
                for line in f:
                    cols = line.split()
                    if len(cols) > 3 and (cols[1] + " ").endswith(want) and cols[3] == "0A":
                        return True
        except (FileNotFoundError, ProcessLookupError):
            return False
    return False


def run_iperf(net, client: str, server: str, proto: str = "tcp", seconds: float = 2.0,
              bandwidth: float | None = None, port: int = DEFAULT_PORT, streams: int = 1
              ) -> IperfResult:
    """One iperf3 test from Mininet host `client` to `server` (bandwidth: Mbit/s, the UDP
    send rate or a TCP cap). Both processes are gone when this returns or raises."""
    cmd = client_command(net[server].IP(), port, proto, seconds, bandwidth, streams)
    started: list[subprocess.Popen] = []
    try:
        srv = net[server].popen(server_command(port))
        started.append(srv)
        deadline = time.monotonic() + 10
        while not listening(srv.pid, port):
            if srv.poll() is not None:
                raise IperfError(f"iperf3 server on {server} exited ({srv.returncode}): "
                                 f"{srv.stdout.read().decode(errors='replace')[-300:]}")
            if time.monotonic() > deadline:
                raise IperfError(f"iperf3 server on {server} not listening on port {port} "
                                 "after 10 s")
            time.sleep(0.02)
        cli = net[client].popen(cmd)
        started.append(cli)
        try:
            out, err = cli.communicate(timeout=seconds + 30)
        except subprocess.TimeoutExpired:
            raise IperfError(f"iperf3 client {client}->{server} did not finish in "
                             f"{seconds + 30:g} s") from None
        try:
            return parse_iperf(out)
        except IperfError as e:
            raise IperfError(f"{client}->{server} ({proto}): {e}"
                             + (f" [{err.decode(errors='replace').strip()[:200]}]"
                                if err.strip() else "")) from None
    finally:
        procs.stop_all(list(reversed(started)), grace_s=2.0)
