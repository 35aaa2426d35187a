"""Analysis of a constant-rate UDP stream (probes.stream): gaps, interruptions per cut or
restore, and the one-way delay before and after. Pure functions over the receiver's
records; the definitions are in probes.stream's docstring ("Analysis").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from statistics import median

from common.stats import Summary, sequence_stats, summarize
from probes.streamprog import RecordFile, StreamFormatError

PRE_S = 0.5  # a gap this long before an event still belongs to it
DELAY_WINDOW_S = 1.0
AFTER_OFFSET_S = 0.5
LATE_MS = 200.0  # later than the median delay by more than this counts as lost (see analyze)


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
