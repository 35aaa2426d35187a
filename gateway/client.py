"""A job client for tests and workloads: one request, its start reply and its done reply.

    python -m gateway.client --addr 10.0.255.1 --service infer-rt --units 1 --duration 0.5

prints the JobReply as JSON and exits 0 when the job ran to its end, 1 otherwise (2 on bad
arguments). request_job never raises for network trouble: it returns ok=False with error
"connect", "timeout", "closed" or "bad-reply" (or the gateway's own error code).
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import time
from dataclasses import asdict, dataclass
from typing import Any

from topology.addressing import SERVICE_PORT

MAX_REPLY = 4096
KEEPALIVE_S = 1  # below the smallest flow idle timeout the experiments use (3 s)


@dataclass(frozen=True)
class JobReply:
    ok: bool                  # the job started
    gw: str | None            # gateway that answered
    kind: str | None          # accelerator kind it ran on
    error: str | None         # error code (gateway's, or connect/timeout/closed/bad-reply)
    connect_ms: float | None  # TCP connect time (about one network round trip)
    start_ms: float | None    # request sent -> start reply received (RTT + queueing)
    done: bool                # the done reply arrived
    total_ms: float | None    # connect start -> done reply (or -> failure)
    units: int | None = None
    queued_ms: float | None = None  # gateway-side time in the FIFO queue
    detail: str | None = None


class _Lines:
    def __init__(self, sock: socket.socket) -> None:
        self.sock, self.buf = sock, b""

    def read(self, deadline: float) -> dict[str, Any]:
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            self.sock.settimeout(left)
            chunk = self.sock.recv(MAX_REPLY)
            if not chunk:
                raise ConnectionError("closed")
            self.buf += chunk
            if len(self.buf) > MAX_REPLY:
                raise ValueError("reply line too long")
        raw, _, self.buf = self.buf.partition(b"\n")
        obj = json.loads(raw)
        if not isinstance(obj, dict):
            raise ValueError("reply is not a JSON object")
        return obj


def keep_alive(sock: socket.socket, idle_s: int = KEEPALIVE_S) -> None:
    """TCP keepalive every ``idle_s`` seconds while the job runs silently: a steered flow's
    rules idle out (the controller's --flow-idle-timeout, 3-10 s) and the done reply of a
    longer job would then miss the reverse rewrite and never reach the client."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for opt, val in (("TCP_KEEPIDLE", idle_s), ("TCP_KEEPINTVL", idle_s), ("TCP_KEEPCNT", 5)):
        if hasattr(socket, opt):
            sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, opt), val)


def request_job(addr: str, port: int, service: str, units: int, kinds: list[str] | None,
                duration_s: float, timeout_s: float = 5.0) -> JobReply:
    """Run one job. timeout_s bounds the connect, the wait for the start reply (including
    any queueing) and, beyond duration_s, the wait for the done reply. The connection sends
    a TCP keepalive every second (keep_alive), so it never looks idle to the network."""
    if timeout_s <= 0:
        raise ValueError("timeout_s must be > 0")
    req: dict[str, Any] = {"service": service, "units": units, "duration_s": duration_s}
    if kinds:
        req["kinds"] = list(kinds)
    t0 = time.perf_counter()
    ms = lambda t: round((t - t0) * 1000.0, 3)  # noqa: E731
    base: dict[str, Any] = {"ok": False, "gw": None, "kind": None, "connect_ms": None,
                            "start_ms": None, "done": False}
    try:
        sock = socket.create_connection((addr, port), timeout=timeout_s)
    except OSError as e:
        return JobReply(**base, error="connect", total_ms=ms(time.perf_counter()),
                        detail=str(e))
    base["connect_ms"] = ms(time.perf_counter())
    keep_alive(sock)
    stage = "start"
    try:
        with sock:
            sock.sendall(json.dumps(req, separators=(",", ":")).encode() + b"\n")
            t1 = time.perf_counter()
            lines = _Lines(sock)
            first = lines.read(time.monotonic() + timeout_s)
            base["gw"] = first.get("gw")
            if first.get("ok") is not True:
                return JobReply(**base, error=str(first.get("error", "bad-reply")),
                                total_ms=ms(time.perf_counter()), detail=first.get("detail"))
            base.update(ok=True, kind=first.get("kind"),
                        start_ms=round((time.perf_counter() - t1) * 1000.0, 3))
            extra = {"units": first.get("units"), "queued_ms": first.get("queued_ms")}
            stage = "done"
            last = lines.read(time.monotonic() + duration_s + timeout_s)
            base["done"] = last.get("done") is True
            return JobReply(**base, error=None if base["done"] else "bad-reply",
                            total_ms=ms(time.perf_counter()), **extra)
    except TimeoutError:
        err, detail = "timeout", f"no {stage} reply in time"
    except (ConnectionError, OSError) as e:
        err, detail = "closed", f"connection lost before the {stage} reply ({e})"
    except ValueError as e:
        err, detail = "bad-reply", str(e)[:120]
    return JobReply(**base, error=err, total_ms=ms(time.perf_counter()), detail=detail)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m gateway.client", description=__doc__.split(
        "\n")[0])
    p.add_argument("--addr", required=True, help="gateway or CS-ID address")
    p.add_argument("--port", type=int, default=SERVICE_PORT)
    p.add_argument("--service", required=True)
    p.add_argument("--units", type=int, default=1)
    p.add_argument("--kinds", default="", help="acceptable kinds, comma-separated (any)")
    p.add_argument("--duration", type=float, default=0.5, help="job duration, s")
    p.add_argument("--timeout", type=float, default=5.0, help="per-step timeout, s")
    args = p.parse_args(argv)
    if args.timeout <= 0 or not 0 < args.port < 65536:
        p.error("--timeout must be > 0 and --port in 1..65535")
    kinds = [k for k in args.kinds.split(",") if k]
    reply = request_job(args.addr, args.port, args.service, args.units, kinds, args.duration,
                        args.timeout)
    print(json.dumps(asdict(reply)))
    return 0 if reply.ok and reply.done else 1


if __name__ == "__main__":
    sys.exit(main())
