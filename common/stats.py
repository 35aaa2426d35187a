"""Probe statistics: one Summary for every latency series (one-way, round trip, ping).

Pure functions, no I/O. Definitions (the docs/probes.md "Measurement" section repeats them):

- Percentiles: linear interpolation between closest ranks (Hyndman & Fan type 7, numpy's
  default; every percentile in the project is this one): for n sorted samples x[0..n-1] the p-th
  percentile sits at position (n - 1) * p / 100 and interpolates between its neighbours.
  Ties are harmless: equal neighbours interpolate to themselves.
- Jitter: RFC 3550 section 6.4.1 interarrival jitter over transit times in ARRIVAL order:
  J = 0, then for each packet after the first D = transit_i - transit_(i-1) and
  J += (|D| - J) / 16. With one sample J = 0; with none, None.
- Reordering (RFC 4737's "reordered" singleton, simplified): in arrival order, a first copy
  whose sequence number is lower than the highest already received. Duplicates: every copy
  of a sequence number after its first. Neither counts towards `received`.
- Loss: lost = sent - received, loss_pct = 100 * lost / sent (0.0 when nothing was sent).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field


def percentile(values: Sequence[float], p: float) -> float | None:
    """Type-7 (linear interpolation) percentile of `values`, p in [0, 100]; None if empty."""
    if not 0 <= p <= 100:
        raise ValueError(f"percentile {p} is outside [0, 100]")
    xs = sorted(values)
    if not xs:
        return None
    pos = (len(xs) - 1) * p / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def rfc3550_jitter(transits_ms: Iterable[float]) -> float | None:
    """Interarrival jitter (RFC 3550 6.4.1) of transit times given in arrival order."""
    j = 0.0
    prev = None
    for t in transits_ms:
        if prev is not None:
            j += (abs(t - prev) - j) / 16.0
        prev = t
    return None if prev is None else j


@dataclass(frozen=True)
class SequenceStats:
    first_copies: tuple[int, ...]  # sequence numbers in arrival order, first copy of each
    reordered: int
    duplicates: int


def sequence_stats(arrival_seqs: Iterable[int]) -> SequenceStats:
    """Reordering and duplicates of sequence numbers given in arrival order."""
    seen: set[int] = set()
    firsts: list[int] = []
    top = -1
    reordered = duplicates = 0
    for s in arrival_seqs:
        if s in seen:
            duplicates += 1
            continue
        seen.add(s)
        firsts.append(s)
        if s < top:
            reordered += 1
        else:
            top = s
    return SequenceStats(tuple(firsts), reordered, duplicates)


@dataclass(frozen=True)
class Summary:
    sent: int
    received: int
    lost: int
    loss_pct: float
    min: float | None
    p50: float | None
    p95: float | None
    p99: float | None
    max: float | None
    mean: float | None
    jitter: float | None  # ms; all latency fields None when there are no samples
    reordered: int = 0
    duplicates: int = 0
    samples: tuple[float, ...] = field(default=(), repr=False, compare=False)

    @property
    def n_samples(self) -> int:
        return len(self.samples)

    def percentile(self, p: float) -> float | None:
        return percentile(self.samples, p)

    def to_dict(self) -> dict:
        return {"sent": self.sent, "received": self.received, "lost": self.lost,
                "loss_pct": self.loss_pct, "min": self.min, "p50": self.p50, "p95": self.p95,
                "p99": self.p99, "max": self.max, "mean": self.mean, "jitter": self.jitter,
                "reordered": self.reordered, "duplicates": self.duplicates,
                "samples": len(self.samples)}


def summarize(samples_ms: Iterable[float], sent: int, reordered: int = 0, duplicates: int = 0,
              arrival_transits_ms: Iterable[float] | None = None, *,
              received: int | None = None) -> Summary:
    """Summary of one latency series.

    samples_ms: one value per received packet (no duplicates), in arrival order unless
    `arrival_transits_ms` gives the arrival-order series for the jitter separately.
    received: packets that arrived, when more arrived than have a latency sample (a one-way
    forward series only has samples for packets whose reply came back); default
    len(samples_ms).
    """
    xs = tuple(float(x) for x in samples_ms)
    for x in xs:
        if not math.isfinite(x):
            raise ValueError(f"latency sample {x!r} is not a finite number")
    if isinstance(sent, bool) or not isinstance(sent, int) or sent < 0:
        raise ValueError(f"sent = {sent!r}: give a non-negative packet count")
    rec = len(xs) if received is None else received
    if isinstance(rec, bool) or not isinstance(rec, int) or rec < len(xs):
        raise ValueError(f"received = {rec!r} is below the {len(xs)} samples given")
    if rec > sent:
        raise ValueError(f"received {rec} > sent {sent}: pass duplicates separately "
                         "(duplicates=...), not as extra samples")
    for name, v in (("reordered", reordered), ("duplicates", duplicates)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise ValueError(f"{name} = {v!r}: give a non-negative count")
    lost = sent - rec
    transits = xs if arrival_transits_ms is None else tuple(arrival_transits_ms)
    if not xs:
        return Summary(sent, rec, lost, 100.0 * lost / sent if sent else 0.0, None, None,
                       None, None, None, None, None, reordered, duplicates, ())
    return Summary(sent=sent, received=rec, lost=lost,
                   loss_pct=100.0 * lost / sent if sent else 0.0,
                   min=min(xs), p50=percentile(xs, 50), p95=percentile(xs, 95),
                   p99=percentile(xs, 99), max=max(xs), mean=statistics.fmean(xs),
                   jitter=rfc3550_jitter(transits), reordered=reordered,
                   duplicates=duplicates, samples=xs)
