"""Constant-rate UDP stream between two hosts: traffic interruptions (fibre-cut failover) and
the one-way delay of every packet.

A sender in the source host's namespace sends `rate` packets per second on an absolute
schedule (packet k leaves at start + k / rate; sends that come late are recorded, never
accumulated); a receiver in the destination's namespace keeps (seq, tx_ns, rx_ns) of every
datagram, rx_ns being the kernel's receive stamp. Mininet hosts share one kernel clock, so
rx_ns - tx_ns is a true one-way delay. Programs, wire and file formats: probes.streamprog.

    python -m probes.stream recv --port P --out FILE [--lifetime S] [--session N]
    python -m probes.stream send --dst IP --port P --rate PPS --duration S [--size B]
        [--start-at UNIX_TS] [--warmup S] [--session N]

Warm-up: before the counted stream the sender sends `warmup_s` (default 0.2 s) of flagged
packets at the same rate; they prime ARP, the controller's flow rules and the delay line, and
the receiver only counts them. So the counted stream needs no "ignore the first 100 ms".

Analysis (analyze(), pure): t = 0 is the scheduled time of the first counted packet; packet k
is scheduled at k / rate. A packet is late when it arrives more than late_ms (200 ms) after
the stream's median one-way delay: as good as lost to an application. (The emulated link of a
cut holds the frames in flight, in the AF_XDP TX ring or a queue, and delivers them when the
link comes back, seconds late; a real fibre would lose them.) A gap is a run of consecutive
lost-or-late sequence numbers; its duration is count / rate, in send time: the time the
sender's traffic found no working path, independent of the new path's delay. rx_gap_ms keeps
the receiver's silence between the packets around it, for reference.
An event's interruption is the longest gap overlapping [t_cut - 0.5 s, end], end = (t_restore
or t_cut) + window_s, cut short 0.5 s before the next event; 0.0 means no packet was lost
("no loss"). Delay before = median one-way delay of the packets sent in the second before the
cut; after = over [t_cut + 0.5, t_cut + 1.5) s or, when no packet sent then arrived, the
second starting 0.5 s after the interruption ended (so the new path's delay is measured).

From Python (every program started with host.popen, stopped by pid in close()):
    with StreamRun(emu, "east", "west", rate_pps=500, duration_s=8, port=6620) as run:
        run.mark_cut(); emu.cut_link("east", "mid"); ...; run.mark_restore()
        result = run.wait()  # or run.stop() to end early; events: the marks, or events=[...]
    timeline(result) -> {"t", "one_way_ms", "lost_t", "cuts"} for the fiber-cut plot
"""

from __future__ import annotations

import argparse
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from statistics import median

from common import procs
from common.stats import Summary, sequence_stats, summarize
from probes.owd import ProbeError
from probes.streamprog import RecordFile, StreamFormatError, read_records

DEFAULT_PORT = 6600
PRE_S = 0.5  # a gap this long before an event still belongs to it
DELAY_WINDOW_S = 1.0
AFTER_OFFSET_S = 0.5
LATE_MS = 200.0  # later than the median delay by more than this counts as lost (see analyze)

__all__ = ["Gap", "EventResult", "StreamResult", "StreamRun", "StreamFormatError",
           "ProbeError", "analyze", "timeline", "start_stream", "DEFAULT_PORT"]


@dataclass(frozen=True)
class Gap:
    first_seq: int
    count: int
    start_s: float  # scheduled send time of the first lost packet
    duration_ms: float  # max(rx silence, count_ms) (see module docstring)
    count_ms: float  # count / rate
    open_start: bool = False  # nothing arrived before it: duration is count / rate
    open_end: bool = False  # nothing arrived after it (traffic never resumed)
    rx_gap_ms: float | None = None  # raw rx(after) - rx(before) - interval, None if open

    @property
    def end_s(self) -> float:
        return self.start_s + self.count_ms / 1e3

    def to_dict(self) -> dict:
        return {"first_seq": self.first_seq, "count": self.count, "start_s": self.start_s,
                "duration_ms": self.duration_ms, "count_ms": self.count_ms,
                "open_start": self.open_start, "open_end": self.open_end,
                "rx_gap_ms": self.rx_gap_ms}


@dataclass(frozen=True)
class EventResult:
    t_cut: float
    t_restore: float | None
    interruption_ms: float  # 0.0: no packet lost around the event
    lost: int  # packets lost in the event's window (all gaps)
    gap: Gap | None  # the longest gap in the window
    resumed: bool  # a packet arrived after that gap
    delay_before_ms: float | None
    delay_after_ms: float | None
    after_from_s: float | None  # where the "after" window started
    verdict: str  # "no loss" | "interrupted" | "not resumed"
    max_delay_ms: float | None = None  # highest one-way delay sent in the event's window

    def to_dict(self) -> dict:
        return {"t_cut": self.t_cut, "t_restore": self.t_restore,
                "interruption_ms": self.interruption_ms, "lost": self.lost,
                "gap": self.gap.to_dict() if self.gap else None, "resumed": self.resumed,
                "delay_before_ms": self.delay_before_ms, "delay_after_ms": self.delay_after_ms,
                "after_from_s": self.after_from_s, "verdict": self.verdict,
                "max_delay_ms": self.max_delay_ms}


@dataclass
class StreamResult:
    rate_pps: float
    sent: int
    received: int
    lost: int
    late: int  # arrived, but more than late_ms after the median delay (counted in gaps)
    duplicates: int
    reordered: int
    t0_ns: int  # scheduled send time of packet 0 (CLOCK_REALTIME)
    seq: tuple[int, ...]  # sequence number of each received packet, ascending
    t: tuple[float, ...]  # its send time (s, actual: scheduled + send lag)
    one_way_ms: tuple[float, ...]
    lost_t: tuple[float, ...]  # scheduled send time of each lost or late packet
    gaps: list[Gap]
    events: list[EventResult]
    delay: Summary
    sender: dict = field(default_factory=dict)
    receiver: dict = field(default_factory=dict)

    @property
    def loss_pct(self) -> float:
        return 100.0 * self.lost / self.sent if self.sent else 0.0

    def to_dict(self, series: bool = False) -> dict:
        d = {"rate_pps": self.rate_pps, "sent": self.sent, "received": self.received,
             "lost": self.lost, "late": self.late, "loss_pct": self.loss_pct,
             "duplicates": self.duplicates,
             "reordered": self.reordered, "t0_ns": self.t0_ns,
             "one_way_ms": self.delay.to_dict(), "gaps": [g.to_dict() for g in self.gaps],
             "events": [e.to_dict() for e in self.events], "sender": dict(self.sender),
             "receiver": dict(self.receiver)}
        if series:
            d["series"] = {"t": list(self.t), "one_way_ms": list(self.one_way_ms),
                           "lost_t": list(self.lost_t)}
        return d


# ------------------------------------------------------------------------------ analysis

def _records(records) -> list[tuple[int, int, int]]:
    if isinstance(records, RecordFile):
        return list(records.records())
    out = []
    for i, r in enumerate(records):
        if not (isinstance(r, (tuple, list)) and len(r) == 3
                and all(isinstance(x, int) and not isinstance(x, bool) for x in r)):
            raise StreamFormatError(f"record {i} is not (seq, tx_ns, rx_ns) integers: "
                                    f"{str(r)[:80]}")
        out.append(tuple(r))
    return out


def _events(events) -> list[tuple[float, float | None]]:
    out = []
    for ev in events:
        try:
            t_cut, t_restore = ev
            t_cut = float(t_cut)
            t_restore = None if t_restore is None else float(t_restore)
        except (TypeError, ValueError):
            raise ValueError(f"event {ev!r}: give (t_cut, t_restore or None) in seconds "
                             "from the stream's start") from None
        if t_restore is not None and t_restore < t_cut:
            raise ValueError(f"event {ev!r}: restored before it was cut")
        out.append((t_cut, t_restore))
    return sorted(out)


def _median_in(ts, ds, lo: float, hi: float) -> float | None:
    xs = [d for t, d in zip(ts, ds) if lo <= t < hi]
    return median(xs) if xs else None


def analyze(sent: int, records, rate_pps: float, events=(), *, t0_ns: int | None = None,
            window_s: float = 5.0, sender: dict | None = None,
            receiver: dict | None = None, late_ms: float = LATE_MS) -> StreamResult:
    """Loss, gaps, per-event interruption and the one-way delay series of one stream.

    records: (seq, tx_ns, rx_ns) in arrival order, or a RecordFile. events: (t_cut,
    t_restore or None) in seconds from the stream's start. t0_ns: the scheduled start
    (default: inferred from the records as min(tx_ns - seq / rate))."""
    if isinstance(sent, bool) or not isinstance(sent, int) or sent < 0:
        raise ValueError(f"sent = {sent!r}: give the number of packets the sender sent")
    if not (isinstance(rate_pps, (int, float)) and rate_pps > 0):
        raise ValueError(f"rate {rate_pps!r} pkt/s must be positive")
    if not window_s > 0:
        raise ValueError(f"window {window_s!r} s must be positive")
    recs = _records(records)
    evs = _events(events)
    interval_ns = 1e9 / rate_pps
    first: dict[int, tuple[int, int]] = {}
    for i, (seq, tx, rx) in enumerate(recs):
        if not 0 <= seq < sent:
            raise StreamFormatError(f"record {i}: sequence {seq} outside 0..{sent - 1}: the "
                                    "records belong to another (longer) stream, or the "
                                    "sender's count is wrong")
        if tx <= 0 or rx < tx:
            raise StreamFormatError(f"record {i} (seq {seq}): received at {rx} before it was "
                                    f"sent at {tx} ns: the clock was stepped or the file is "
                                    "corrupt")
        first.setdefault(seq, (tx, rx))
    order = sequence_stats(r[0] for r in recs)
    if t0_ns is None:
        t0_ns = (min(tx - round(seq * interval_ns) for seq, (tx, _rx) in first.items())
                 if first else 0)
    t0_ns = int(t0_ns)
    seqs = sorted(first)
    ts = tuple((first[q][0] - t0_ns) / 1e9 for q in seqs)
    ds = tuple((first[q][1] - first[q][0]) / 1e6 for q in seqs)
    arrival = [(first[q][1] - first[q][0]) / 1e6 for q in order.first_copies]
    delay = summarize(ds, sent, order.reordered, order.duplicates, arrival)

    # A packet that arrives more than late_ms after the stream's median delay is as good as
    # lost to an application; and the emulated link of a cut holds the frames that were in
    # flight (AF_XDP TX ring, qdisc) and delivers them when it comes back, seconds late, which
    # a real fibre cut would not. Gaps are runs of lost-or-late packets, timed in send time.
    late_cut = (median(ds) if ds else 0.0) + late_ms
    usable = [q for q, d in zip(seqs, ds) if d <= late_cut]
    late = len(seqs) - len(usable)
    gaps: list[Gap] = []
    prev = -1
    for q in [*usable, sent]:
        if q - prev > 1:
            n = q - prev - 1
            count_ms = n / rate_pps * 1e3
            open_start, open_end = prev < 0, q >= sent
            rx_gap = None if open_start or open_end else \
                (first[q][1] - first[prev][1] - interval_ns) / 1e6
            gaps.append(Gap(prev + 1, n, (prev + 1) / rate_pps, count_ms, count_ms,
                            open_start, open_end, rx_gap))
        prev = q
    lost_t = tuple(k / rate_pps for g in gaps for k in range(g.first_seq, g.first_seq + g.count))

    results = []
    for i, (t_cut, t_restore) in enumerate(evs):
        lo = t_cut - PRE_S
        hi = max(t_cut, t_restore or t_cut) + window_s
        if i + 1 < len(evs):
            hi = min(hi, evs[i + 1][0] - PRE_S)
        inside = [g for g in gaps if g.start_s <= hi and g.end_s >= lo]
        lost = sum(sum(1 for k in range(g.first_seq, g.first_seq + g.count)
                       if lo <= k / rate_pps <= hi) for g in inside)
        gap = max(inside, key=lambda g: g.duration_ms, default=None)
        before = _median_in(ts, ds, t_cut - DELAY_WINDOW_S, t_cut)
        frm = t_cut + AFTER_OFFSET_S
        after = _median_in(ts, ds, frm, frm + DELAY_WINDOW_S)
        if after is None and gap is not None and not gap.open_end:
            frm = (gap.first_seq + gap.count) / rate_pps + AFTER_OFFSET_S
            after = _median_in(ts, ds, frm, frm + DELAY_WINDOW_S)
        resumed = gap is None or not gap.open_end
        verdict = "no loss" if gap is None else "interrupted" if resumed else "not resumed"
        peak = max((d for t, d in zip(ts, ds) if lo <= t <= hi), default=None)
        results.append(EventResult(t_cut, t_restore, gap.duration_ms if gap else 0.0, lost,
                                   gap, resumed, before, after,
                                   frm if after is not None else None, verdict, peak))
    return StreamResult(rate_pps=float(rate_pps), sent=sent, received=len(first),
                        lost=sent - len(first), late=late, duplicates=order.duplicates,
                        reordered=order.reordered, t0_ns=t0_ns, seq=tuple(seqs), t=ts,
                        one_way_ms=ds,
                        lost_t=lost_t, gaps=gaps, events=results, delay=delay,
                        sender=dict(sender or {}), receiver=dict(receiver or {}))


def timeline(result: StreamResult, max_points: int = 5000) -> dict:
    """The delay series downsampled for plots: {"t", "one_way_ms", "lost_t", "cuts"}.

    Every lost mark is kept (not counted in max_points). Kept first: the received packets
    on either side of every gap that touches an event, then of other gaps; the rest of the
    budget goes to time buckets, each keeping its lowest and highest delay."""
    if max_points < 2:
        raise ValueError(f"max_points {max_points} must be at least 2")
    ts, ds = result.t, result.one_way_ms
    cuts = [[e.t_cut, e.t_restore] for e in result.events]
    out = {"t": list(ts), "one_way_ms": list(ds), "lost_t": list(result.lost_t),
           "cuts": cuts}
    n = len(ts)
    if n <= max_points:
        return out
    import bisect

    def edges(g: Gap) -> list[int]:
        j = bisect.bisect_left(result.seq, g.first_seq)  # first received after the gap
        return [k for k in (j - 1, j) if 0 <= k < n]

    near = {id(e.gap) for e in result.events if e.gap is not None}
    keep: set[int] = set()
    for g in sorted(result.gaps, key=lambda g: (id(g) not in near, -g.duration_ms)):
        extra = set(edges(g)) - keep
        if len(keep) + len(extra) > max_points // 2:
            break
        keep |= extra
    buckets = max(1, (max_points - len(keep)) // 2)
    span = (ts[-1] - ts[0]) or 1.0
    lo_hi: dict[int, list[int]] = {}
    for k, t in enumerate(ts):
        b = min(buckets - 1, int((t - ts[0]) / span * buckets))
        cur = lo_hi.get(b)
        if cur is None:
            lo_hi[b] = [k, k]
        else:
            if ds[k] < ds[cur[0]]:
                cur[0] = k
            if ds[k] > ds[cur[1]]:
                cur[1] = k
    for pair in lo_hi.values():
        keep.update(pair)
    idx = sorted(keep)
    out["t"] = [ts[k] for k in idx]
    out["one_way_ms"] = [ds[k] for k in idx]
    return out


# ---------------------------------------------------------------------------- orchestration

PROGRAM = "probes.stream"  # receiver and sender: this module's command line


def recv_args(port: int, out: str, lifetime_s: float, session: int = 0) -> list[str]:
    return ["recv", "--port", str(port), "--out", out,
            "--lifetime", f"{lifetime_s:g}", "--session", str(session)]


def send_args(dst_ip: str, port: int, rate_pps: float, duration_s: float, size: int = 64,
              warmup_s: float = 0.2, session: int = 0, start_at: float | None = None
              ) -> list[str]:
    cmd = ["send", "--dst", dst_ip, "--port", str(port),
           "--rate", f"{rate_pps:g}", "--duration", f"{duration_s:g}", "--size", str(size),
           "--warmup", f"{warmup_s:g}", "--session", str(session)]
    if start_at is not None:
        cmd += ["--start-at", f"{start_at:.6f}"]
    return cmd


def _host_map(hosts):
    """Mininet-host lookup from an Emulation (its .net), a Mininet net or a dict."""
    net = getattr(hosts, "net", None)
    if net is not None and hasattr(hosts, "plan"):
        return net
    return hosts


def _stderr_of(proc: subprocess.Popen) -> str:
    try:
        if proc.poll() is not None and proc.stderr is not None:
            return proc.stderr.read().decode(errors="replace").strip()[-300:]
    except (OSError, ValueError):
        pass
    return ""


class StreamRun:
    """One stream from `src` to `dst` (host names). start() launches the receiver, waits for
    its ready marker, launches the sender and waits for its ready line; wait() lets the
    stream finish, stop() ends it early; both return the StreamResult. Every process is
    stopped by pid (common.procs.stop_all) in close(), which a `with` block calls."""

    def __init__(self, hosts, src: str, dst: str, rate_pps: float, duration_s: float,
                 port: int = DEFAULT_PORT, *, size: int = 64, warmup_s: float = 0.2,
                 start_delay_s: float = 0.3, drain_s: float = 0.5, window_s: float = 5.0,
                 dst_ip: str | None = None, python: str | None = None,
                 ready_timeout_s: float = 15.0) -> None:
        from probes.streamprog import check_options

        if src == dst:
            raise ValueError(f"stream from {src} to itself: give two different hosts")
        if not 1 <= port <= 65535:
            raise ValueError(f"port {port} must be 1..65535")
        check_options(rate_pps, duration_s, size, warmup_s)
        net = _host_map(hosts)
        try:
            self._src, self._dst = net[src], net[dst]
        except KeyError as e:
            raise ValueError(f"unknown host {e.args[0]!r}: give Mininet host names") from None
        self.src, self.dst, self.port = src, dst, port
        self.rate_pps, self.duration_s, self.size = rate_pps, duration_s, size
        self.warmup_s, self.start_delay_s, self.drain_s = warmup_s, start_delay_s, drain_s
        self.window_s, self.python, self.ready_timeout_s = window_s, python, ready_timeout_s
        self.dst_ip = dst_ip or self._dst.IP()
        self.session = int.from_bytes(os.urandom(4), "big") or 1
        self.events: list[list] = []
        self.start_at: float | None = None
        self.result: StreamResult | None = None
        self._dir: str | None = None
        self._recv: subprocess.Popen | None = None
        self._send: subprocess.Popen | None = None
        self._send_out = b""

    # -- lifecycle -------------------------------------------------------------------------
    def __enter__(self) -> StreamRun:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def out(self) -> str:
        assert self._dir is not None
        return os.path.join(self._dir, "records.bin")

    def start(self) -> StreamRun:
        if self._recv is not None:
            raise ProbeError("this stream was already started")
        pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "python": self.python}
        self._dir = tempfile.mkdtemp(prefix=f"edwc-stream-{self.port}-")
        try:
            lifetime = (self.start_delay_s + self.warmup_s + self.duration_s
                        + self.ready_timeout_s * 2 + 60)
            self._recv = procs.start(PROGRAM, recv_args(self.port, self.out, lifetime,
                                                        self.session), host=self._dst, **pipes)
            self._wait_recv_ready(time.monotonic() + self.ready_timeout_s)
            self.start_at = time.time() + self.start_delay_s + self.warmup_s
            self._send = procs.start(PROGRAM, send_args(
                self.dst_ip, self.port, self.rate_pps, self.duration_s, self.size,
                self.warmup_s, self.session, self.start_at), host=self._src, **pipes)
            self._wait_send_ready(time.monotonic() + self.ready_timeout_s)
        except BaseException:
            self.close()
            raise
        return self

    def _wait_recv_ready(self, deadline: float) -> None:
        ready = self.out + ".ready"
        while not os.path.exists(ready):
            if self._recv.poll() is not None:
                raise ProbeError(f"the stream receiver on {self.dst} exited with status "
                                 f"{self._recv.returncode}: {_stderr_of(self._recv)}")
            if time.monotonic() > deadline:
                raise ProbeError(f"the stream receiver on {self.dst} did not become ready "
                                 f"within {self.ready_timeout_s:g} s")
            time.sleep(0.02)

    def _wait_send_ready(self, deadline: float) -> None:
        proc = self._send
        fd = proc.stdout.fileno()
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise ProbeError(f"the stream sender on {self.src} did not start within "
                                 f"{self.ready_timeout_s:g} s")
            chunk = None
            if select.select([fd], [], [], min(left, 0.2))[0]:
                # os.read, not readline: communicate() later reads the same pipe by fd
                chunk = os.read(fd, 65536)
                self._send_out += chunk
                line = self._send_out.split(b"\n", 1)[0]
                if b"\n" in self._send_out and line.startswith(b"{") and b'"ready"' in line:
                    self.start_at = json.loads(line)["start_at_ns"] / 1e9
                    return
            if chunk == b"" or (chunk is None and proc.poll() is not None):
                proc.wait(timeout=5)
                raise ProbeError(f"the stream sender on {self.src} exited with status "
                                 f"{proc.returncode} before starting: {_stderr_of(proc)}")

    def now(self) -> float:
        """Seconds since the stream's scheduled start (negative during the warm-up)."""
        if self.start_at is None:
            raise ProbeError("the stream has not started")
        return time.time() - self.start_at

    def mark_cut(self) -> float:
        t = self.now()
        self.events.append([t, None])
        return t

    def mark_restore(self) -> float:
        if not self.events or self.events[-1][1] is not None:
            raise ProbeError("mark_restore() without a preceding mark_cut()")
        self.events[-1][1] = t = self.now()
        return t

    def wait(self, timeout: float | None = None, events=None) -> StreamResult:
        """Let the sender finish (default timeout: the remaining duration + 30 s), then
        analyse. `events` default: those marked with mark_cut()/mark_restore()."""
        if self._send is None:
            raise ProbeError("the stream has not started")
        if timeout is None:
            timeout = max(0.0, -self.now()) + self.duration_s + 30.0
        try:
            out, err = self._send.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.close()
            raise ProbeError(f"the stream sender on {self.src} did not finish within "
                             f"{timeout:.0f} s") from None
        return self._finish(out, err, events)

    def stop(self, events=None) -> StreamResult:
        """End the stream now (SIGTERM to the sender, by pid) and analyse what was sent."""
        if self._send is None:
            raise ProbeError("the stream has not started")
        if self._send.poll() is None:
            self._send.terminate()
        try:
            out, err = self._send.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self.close()
            raise ProbeError(f"the stream sender on {self.src} ignored SIGTERM") from None
        return self._finish(out, err, events)

    def _finish(self, out: bytes, err: bytes, events) -> StreamResult:
        try:
            summary = None
            out = self._send_out + (out or b"")
            for line in reversed(out.decode(errors="replace").splitlines()):
                if line.startswith("{") and '"edwc-stream-send/1"' in line:
                    summary = json.loads(line)
                    break
            if summary is None:
                raise ProbeError(f"the stream sender on {self.src} failed (exit "
                                 f"{self._send.returncode}): "
                                 f"{(err or b'').decode(errors='replace').strip()[-300:]}")
            time.sleep(self.drain_s)  # packets still in flight on the path
            self._recv.terminate()
            try:
                self._recv.communicate(timeout=15)
            except subprocess.TimeoutExpired:
                raise ProbeError(f"the stream receiver on {self.dst} did not write its "
                                 "records within 15 s of SIGTERM") from None
            rec = read_records(self.out)
            evs = self.events if events is None else events
            self.result = analyze(summary["sent"], rec, self.rate_pps, evs,
                                  t0_ns=summary["start_at_ns"], window_s=self.window_s,
                                  sender=summary, receiver=rec.counters())
            return self.result
        finally:
            self.close()

    def close(self) -> None:
        """Stop both programs by pid (terminate, wait, kill) and remove the work files."""
        procs.stop_all([p for p in (self._send, self._recv) if p is not None], grace_s=2.0)
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None


def start_stream(hosts, src: str, dst: str, rate_pps: float, duration_s: float,
                 port: int = DEFAULT_PORT, **kw) -> StreamRun:
    """Start a stream (see StreamRun for the keyword options); call .wait() or .stop()."""
    return StreamRun(hosts, src, dst, rate_pps, duration_s, port, **kw).start()


# --------------------------------------------------------------------------------- CLI

def main(argv: list[str] | None = None) -> int:
    from probes import streamprog

    ap = argparse.ArgumentParser(prog="python -m probes.stream", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("recv", help="record a stream, write the record file on exit")
    r.add_argument("--port", type=int, default=DEFAULT_PORT)
    r.add_argument("--out", required=True, help="record file (and FILE.ready marker)")
    r.add_argument("--lifetime", type=float, default=None, help="exit after S seconds")
    r.add_argument("--session", type=int, default=0, help="record only this session")
    s = sub.add_parser("send", help="send a constant-rate stream, print a JSON summary")
    s.add_argument("--dst", required=True)
    s.add_argument("--port", type=int, default=DEFAULT_PORT)
    s.add_argument("--rate", type=float, required=True, help="packets per second")
    s.add_argument("--duration", type=float, required=True, help="seconds")
    s.add_argument("--size", type=int, default=64, help="UDP payload bytes (24..1472)")
    s.add_argument("--start-at", type=float, default=None, help="Unix time of packet 0")
    s.add_argument("--warmup", type=float, default=0.2, help="uncounted packets first, s")
    s.add_argument("--session", type=int, default=0, help="session id (0: random)")
    a = ap.parse_args(argv)
    try:
        if not 0 <= a.port <= 65535:
            raise ValueError(f"port {a.port} must be 0..65535")
        if not 0 <= a.session < 2**32:
            raise ValueError(f"session {a.session} must be 0..2^32-1")
        if a.cmd == "recv":
            if a.lifetime is not None and a.lifetime <= 0:
                raise ValueError(f"lifetime {a.lifetime} s must be positive")
            streamprog.receive(a.port, a.out, a.lifetime, a.session)
        else:
            streamprog.send(a.dst, a.port, a.rate, a.duration, a.size, a.start_at, a.warmup,
                            a.session)
    except (ValueError, OSError) as e:
        print(f"probes.stream {a.cmd}: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
