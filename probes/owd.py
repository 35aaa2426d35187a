"""True one-way delay, each direction, with loss, reordering, duplicates and RFC 3550 jitter.

Every Mininet host is a network namespace on one kernel, so every host reads the same
CLOCK_REALTIME: a stamp taken by the sender and one taken by the reflector compare directly.
For each probe that comes back:

    forward OWD = t_rx_reflector - t_tx_sender      (src -> dst)
    reverse OWD = t_rx_sender   - t_tx_reflector    (dst -> src)
    RTT         = t_rx_sender   - t_tx_sender       (includes the reflector's turnaround)

Receive stamps are the kernel's (SO_TIMESTAMPNS); send stamps are taken just before send(),
so each one-way figure includes one send() system call (microseconds).

Loss: after its last probe (and `timeout_s` for late replies) the sender asks the reflector
for a report: the set of sequence numbers it received, with its duplicate and reordering
counts (retried up to 10 times). A probe missing from the report was lost forward; one in
the report whose reply never came back was lost in reverse. Without a report (every request
or answer lost, e.g. a cut path) the split is unknown: everything unanswered counts as
forward loss and the result says loss_split_known=False.

Arrival order: forward jitter runs over the returned probes ordered by the reflector's
receive stamp; reverse jitter and reordering over the replies in the order the sender got
them. A repeated reply with the same reflector stamp is a reverse duplicate; one with a new
stamp is a forward duplicate (already in the reflector's count).

Programs (inside a host's namespace; probes.owdprog; wire format probes.owdwire):

    python -m probes.owd reflect --port 6500 [--lifetime S]
    python -m probes.owd send --dst 10.0.0.2 --port 6500 --count 100 --interval 0.01 \
        --size 64 [--poisson --seed N] [--warmup 2] [--timeout 2] [--json]

From Python: measure_owd(emu.net, [("beijing", "guian")]) runs every pair at once.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import select
import subprocess
import sys
import time
from dataclasses import dataclass, field

from common import procs
from common.stats import Summary, sequence_stats, summarize
from probes.owdwire import MAX_COUNT, ProbeFormatError, bitmap_members

DEFAULT_PORT = 6500
MAX_OUTPUT = 64 * 1024 * 1024
START_GAP_S = 0.5  # concurrent pairs: common start this long after the last sender starts
STAGGER_S = 0.1  # ... allowing this much per sender for the interpreter to start
FORMAT = "edwc-owd/1"

__all__ = ["OwdResult", "ProbeFormatError", "measure_owd", "parse_output", "DEFAULT_PORT"]


class ProbeError(RuntimeError):
    """A probe program failed to start or finish (message says which host and why)."""


@dataclass
class OwdResult:
    src: str
    dst: str
    forward: Summary  # src -> dst one-way delay, ms
    reverse: Summary  # dst -> src one-way delay, ms
    rtt: Summary  # round trip of the same packets, ms
    size: int
    interval_s: float
    count: int
    loss_split_known: bool = True  # False: no reflector report, unanswered = forward loss
    schedule: str = "periodic"
    errors: dict = field(default_factory=dict)
    send_lag_ms: dict = field(default_factory=dict)  # sender's lateness against its schedule
    late_start_s: float | None = None  # concurrent pairs: how late this one began

    def to_dict(self) -> dict:
        return {"src": self.src, "dst": self.dst, "forward": self.forward.to_dict(),
                "reverse": self.reverse.to_dict(), "rtt": self.rtt.to_dict(),
                "size": self.size, "interval_s": self.interval_s, "count": self.count,
                "loss_split_known": self.loss_split_known, "schedule": self.schedule,
                "errors": dict(self.errors), "send_lag_ms": dict(self.send_lag_ms),
                "late_start_s": self.late_start_s}


def _int(obj: dict, key: str, lo: int, hi: int) -> int:
    v = obj.get(key)
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise ProbeFormatError(f"probe output field {key!r} = {v!r}: expected an integer "
                               f"{lo}..{hi}")
    return v


def _opt_float(v) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def parse_output(text: str | bytes, src: str = "", dst: str = "") -> OwdResult:
    """Statistics from the sender's --json output (pure). Raises ProbeFormatError."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    if not isinstance(text, str):
        raise ProbeFormatError(f"probe output must be text, not {type(text).__name__}")
    if len(text) > MAX_OUTPUT:
        raise ProbeFormatError(f"probe output of {len(text)} characters exceeds "
                               f"{MAX_OUTPUT}; lower --count")
    try:
        obj = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as e:
        raise ProbeFormatError(f"probe output is not JSON ({e}); starts with "
                               f"{text[:60]!r}: was the sender run with --json?") from None
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise ProbeFormatError(f"probe output is not {FORMAT} (format = "
                               f"{obj.get('format') if isinstance(obj, dict) else type(obj)})")
    count = _int(obj, "count", 1, MAX_COUNT)
    sent = _int(obj, "sent", 0, count)
    size = _int(obj, "size", 0, 65507)
    interval = obj.get("interval_s")
    if isinstance(interval, bool) or not isinstance(interval, (int, float)) or interval <= 0:
        raise ProbeFormatError(f"probe output field 'interval_s' = {interval!r}")
    raw = obj.get("replies")
    if not isinstance(raw, list) or len(raw) > 4 * count:
        raise ProbeFormatError(f"probe output field 'replies' must be a list of at most "
                               f"{4 * count} replies")
    replies = []
    for i, r in enumerate(raw):
        if not (isinstance(r, list) and len(r) == 5
                and all(isinstance(x, int) and not isinstance(x, bool) for x in r)):
            raise ProbeFormatError(f"reply {i} is not [seq, t_tx_sender, t_rx_reflector, "
                                   f"t_tx_reflector, t_rx_sender]: {str(r)[:80]}")
        seq, t0, t1, t2, t3 = r
        if not 0 <= seq < sent or min(t0, t1, t2, t3) <= 0:
            raise ProbeFormatError(f"reply {i}: sequence {seq} outside 0..{sent - 1} or a "
                                   "non-positive timestamp")
        if t3 < t0 or t2 < t1:
            raise ProbeFormatError(f"reply {i} (seq {seq}) has time running backwards "
                                   "(received before sent): the clock was stepped during "
                                   "the measurement, or the output is corrupted")
        replies.append(r)
    report, seen = obj.get("report"), None
    if report is not None:
        if not isinstance(report, dict) or report.get("count") != count:
            raise ProbeFormatError(f"report does not cover the {count} probes sent")
        try:
            bits = base64.b64decode(str(report.get("seen")), validate=True)
        except (binascii.Error, ValueError) as e:
            raise ProbeFormatError(f"report bitmap is not base64: {e}") from None
        seen = set(bitmap_members(bits, count))
        fdup = _int(report, "duplicates", 0, 2**32 - 1)
        freo = _int(report, "reordered", 0, 2**32 - 1)

    first: dict[int, list[int]] = {}
    rdup = 0
    for r in replies:
        f = first.get(r[0])
        if f is None:
            first[r[0]] = r
        elif f[2] == r[2]:
            rdup += 1  # the same reply twice: duplicated on the way back
    order = sequence_stats(r[0] for r in replies)
    returned = [first[q] for q in order.first_copies]  # sender arrival order
    ms = 1e-6
    rtt = summarize([(r[4] - r[1]) * ms for r in returned], sent, order.reordered, rdup)
    reverse_ms = [(r[4] - r[3]) * ms for r in returned]
    fwd_order = sorted(returned, key=lambda r: r[2])  # reflector arrival order
    forward_ms = [(r[2] - r[1]) * ms for r in fwd_order]
    if seen is not None:
        seen |= first.keys()
        fwd = summarize(forward_ms, sent, freo, fdup, received=len(seen))
        rev = summarize(reverse_ms, len(seen), order.reordered, rdup)
    else:
        fwd = summarize(forward_ms, sent,
                        sequence_stats(r[0] for r in fwd_order).reordered, 0)
        rev = summarize(reverse_ms, len(returned), order.reordered, rdup)
    errors = obj.get("errors") if isinstance(obj.get("errors"), dict) else {}
    lag = obj.get("send_lag_ms") if isinstance(obj.get("send_lag_ms"), dict) else {}
    return OwdResult(src=src, dst=dst or str(obj.get("dst", "")), forward=fwd, reverse=rev,
                     rtt=rtt, size=size, interval_s=float(interval), count=count,
                     loss_split_known=seen is not None,
                     schedule=str(obj.get("schedule", "periodic")), errors=dict(errors),
                     send_lag_ms=dict(lag), late_start_s=_opt_float(obj.get("late_start_s")))


# ------------------------------------------------------------------------------ runner

PROGRAM = "probes.owd"  # reflector and sender: this module's command line


def reflect_args(port: int, lifetime_s: float) -> list[str]:
    return ["reflect", "--port", str(port),
            "--lifetime", f"{lifetime_s:g}"]


def send_args(dst_ip: str, port: int, count: int, interval_s: float, size: int,
                 warmup: int, timeout_s: float, poisson: bool = False,
                 seed: int | None = None,
                 start_at: float | None = None) -> list[str]:
    cmd = ["send", "--dst", dst_ip, "--port", str(port),
           "--count", str(count), "--interval", f"{interval_s:g}", "--size", str(size),
           "--warmup", str(warmup), "--timeout", f"{timeout_s:g}", "--json"]
    if poisson:
        cmd += ["--poisson"] + (["--seed", str(seed)] if seed is not None else [])
    if start_at is not None:
        cmd += ["--start-at", f"{start_at:.6f}"]
    return cmd


def _wait_ready(proc: subprocess.Popen, host: str, deadline: float) -> None:
    """Wait for the reflector's {"ready": ...} line (it prints it once its socket is bound)."""
    while True:
        left = deadline - time.monotonic()
        if proc.poll() is not None:
            err = proc.stderr.read().decode(errors="replace").strip()
            raise ProbeError(f"the reflector on {host} exited with status {proc.returncode}: "
                             f"{err[-300:]}")
        if left <= 0:
            raise ProbeError(f"the reflector on {host} did not report ready within 15 s")
        if select.select([proc.stdout], [], [], min(left, 0.2))[0]:
            line = proc.stdout.readline()
            if line.startswith(b"{") and b'"ready"' in line:
                return


def measure_owd(net, pairs, count: int = 100, interval_s: float = 0.01, size: int = 64,
                warmup: int = 2, timeout_s: float = 2.0, *, port: int = DEFAULT_PORT,
                poisson: bool = False, seed: int | None = None, python: str | None = None
                ) -> dict[tuple[str, str], OwdResult]:
    """One-way delay both ways for each (src, dst) pair of Mininet host names, all pairs at
    once: a reflector on each destination, a sender on each source; every process is
    stopped by pid (terminate -> wait -> kill) before returning, also on errors."""
    from probes.owdprog import check_options

    pairs = [tuple(p) for p in pairs]
    if not pairs:
        return {}
    for p in pairs:
        if len(p) != 2 or p[0] == p[1]:
            raise ValueError(f"pair {p!r}: give (src, dst) host names, src != dst")
    if len(set(pairs)) != len(pairs):
        raise ValueError("a pair is listed twice; each (src, dst) runs once")
    check_options(count, interval_s, size, warmup, timeout_s)
    hosts = {n: net[n] for p in pairs for n in p}  # KeyError names an unknown host
    expect = warmup * interval_s + 2 * timeout_s + count * interval_s * (1.5 if poisson else 1)
    budget = (expect + 10 * min(timeout_s, 0.5) + 15.0 + START_GAP_S
              + STAGGER_S * len(pairs))
    pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "python": python}
    started: list[subprocess.Popen] = []
    try:
        deadline = time.monotonic() + 15.0
        reflectors = {}
        for d in sorted({d for _, d in pairs}):
            reflectors[d] = procs.start(PROGRAM, reflect_args(port, budget + 30),
                                        host=hosts[d], **pipes)
            started.append(reflectors[d])
        for d, proc in reflectors.items():
            _wait_ready(proc, d, deadline)
        # Senders start one after another (an interpreter each); with several pairs they
        # all begin counting at one agreed time, so the pairs really run concurrently.
        start_at = (time.time() + START_GAP_S + STAGGER_S * len(pairs) + warmup * interval_s
                    if len(pairs) > 1 else None)
        senders = {}
        for i, (s, d) in enumerate(pairs):
            senders[(s, d)] = procs.start(PROGRAM, send_args(
                hosts[d].IP(), port, count, interval_s, size, warmup, timeout_s, poisson,
                None if seed is None else seed + i, start_at), host=hosts[s], **pipes)
            started.append(senders[(s, d)])
        deadline = time.monotonic() + budget
        results = {}
        for (s, d), proc in senders.items():
            try:
                out, err = proc.communicate(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                raise ProbeError(f"probe {s}->{d} did not finish within {budget:.0f} s") \
                    from None
            if proc.returncode != 0:
                raise ProbeError(f"probe sender {s}->{d} failed (exit {proc.returncode}): "
                                 f"{err.decode(errors='replace').strip()[-300:]}")
            results[(s, d)] = parse_output(out, s, d)
        return results
    finally:
        procs.stop_all(started, grace_s=2.0)


# --------------------------------------------------------------------------------- CLI

def _print_text(res: OwdResult) -> None:
    print(f"{res.count} probes of {res.size} B every {res.interval_s * 1e3:g} ms "
          f"({res.schedule}) to {res.dst}")
    for name, s in (("forward", res.forward), ("reverse", res.reverse), ("rtt", res.rtt)):
        if s.p50 is None:
            print(f"  {name:8s} no samples, loss {s.loss_pct:.1f}% ({s.lost}/{s.sent})")
            continue
        print(f"  {name:8s} min {s.min:.3f} p50 {s.p50:.3f} p95 {s.p95:.3f} p99 {s.p99:.3f} "
              f"max {s.max:.3f} ms, jitter {s.jitter:.3f} ms, loss {s.loss_pct:.1f}% "
              f"({s.lost}/{s.sent}), reordered {s.reordered}, duplicates {s.duplicates}, "
              f"{s.n_samples} samples")
    if not res.loss_split_known:
        print("  no report from the reflector: forward/reverse loss split unknown")


def main(argv: list[str] | None = None) -> int:
    from probes import owdprog

    ap = argparse.ArgumentParser(prog="python -m probes.owd", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("reflect", help="echo probes with timestamps (until SIGTERM)")
    r.add_argument("--port", type=int, default=DEFAULT_PORT)
    r.add_argument("--lifetime", type=float, default=None, help="exit after S seconds")
    r.add_argument("--rt-priority", type=int, default=0,
                   help="SCHED_FIFO priority (default 0: normal; see docs/probes.md)")
    s = sub.add_parser("send", help="send probes to a reflector, print statistics")
    s.add_argument("--dst", required=True)
    s.add_argument("--port", type=int, default=DEFAULT_PORT)
    s.add_argument("--count", type=int, default=100)
    s.add_argument("--interval", type=float, default=0.01, help="seconds (mean if Poisson)")
    s.add_argument("--size", type=int, default=64, help="UDP payload bytes (40..1472)")
    s.add_argument("--warmup", type=int, default=2, help="uncounted probes sent first")
    s.add_argument("--timeout", type=float, default=2.0, help="wait for late replies, s")
    s.add_argument("--poisson", action="store_true", help="exponential gaps (RFC 2330)")
    s.add_argument("--seed", type=int, default=None)
    s.add_argument("--rt-priority", type=int, default=0)
    s.add_argument("--start-at", type=float, default=None,
                   help="Unix time to start the counted probes (after the warm-up)")
    s.add_argument("--json", action="store_true", help="raw output for parse_output()")
    a = ap.parse_args(argv)
    try:
        if a.cmd == "reflect":
            owdprog.reflect(a.port, a.lifetime, a.rt_priority)
            return 0
        out = owdprog.send(a.dst, a.port, a.count, a.interval, a.size, a.warmup, a.timeout,
                           a.poisson, a.seed, a.rt_priority, a.start_at)
    except (ValueError, OSError) as e:
        print(f"probes.owd {a.cmd}: {e}", file=sys.stderr)
        return 2
    if a.json:
        json.dump(out, sys.stdout, separators=(",", ":"))
        print()
    else:
        _print_text(parse_output(json.dumps(out), dst=a.dst))
    return 0


if __name__ == "__main__":
    sys.exit(main())
