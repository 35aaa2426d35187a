"""ICMP RTT with iputils ping: a pure parser and a runner for Mininet hosts.

The parser reads ping's per-reply lines (not only the summary) so that medians and
percentiles come from every sample.
"""

from __future__ import annotations

import math
import re
import statistics
from dataclasses import dataclass, field

from common import stats

_REPLY = re.compile(r"icmp_seq=(\d+)\b.*?\btime[=<]([0-9.]+) ?ms")
_SUMMARY = re.compile(r"(\d+) packets transmitted, (\d+) (?:packets )?received")
MAX_INPUT = 4 * 1024 * 1024


class PingParseError(ValueError):
    pass


@dataclass(frozen=True)
class PingResult:
    sent: int
    received: int
    rtts_ms: tuple[float, ...] = field(default=())

    @property
    def loss(self) -> float:
        return 1.0 - self.received / self.sent if self.sent else 1.0

    def percentile(self, q: float) -> float:
        """common.stats.percentile of the RTTs; NaN when there are none."""
        v = stats.percentile(self.rtts_ms, q)
        return math.nan if v is None else v

    @property
    def median(self) -> float:
        return statistics.median(self.rtts_ms) if self.rtts_ms else math.nan

    @property
    def min(self) -> float:
        return min(self.rtts_ms) if self.rtts_ms else math.nan

    def summary(self) -> dict:
        return {"sent": self.sent, "received": self.received, "loss": round(self.loss, 4),
                "min_ms": self.min, "p50_ms": self.median, "p95_ms": self.percentile(95),
                "p99_ms": self.percentile(99),
                "max_ms": max(self.rtts_ms) if self.rtts_ms else math.nan}


def parse_ping(text: str) -> PingResult:
    """Parse iputils ping output. Raises PingParseError when it is not ping output."""
    if not isinstance(text, str):
        raise PingParseError("ping output must be text")
    if len(text) > MAX_INPUT:
        raise PingParseError(f"ping output too large ({len(text)} bytes)")
    rtts: dict[int, float] = {}
    for m in _REPLY.finditer(text):
        seq, rtt = int(m.group(1)), float(m.group(2))
        if not math.isfinite(rtt) or rtt < 0:
            raise PingParseError(f"impossible RTT {m.group(2)} ms")
        rtts.setdefault(seq, rtt)  # ignore duplicates (DUP!)
    s = _SUMMARY.search(text)
    if s is None:
        raise PingParseError("no 'packets transmitted' summary: not complete ping output "
                             f"(starts with {text[:60]!r})")
    sent, received = int(s.group(1)), int(s.group(2))
    if received > sent:
        raise PingParseError(f"received {received} > transmitted {sent}")
    ordered = tuple(rtts[k] for k in sorted(rtts))
    return PingResult(sent=sent, received=received, rtts_ms=ordered)


def ping_command(ip: str, count: int, interval_s: float = 0.2, size: int = 56,
                 reply_timeout_s: float = 3.0) -> list[str]:
    """Exactly `count` echo requests; each reply awaited up to `reply_timeout_s`.

    (Not -w: with a deadline ping keeps sending until `count` replies arrive, so when the
    interval is shorter than the RTT it sends extra requests and reports phantom loss.)
    """
    if count < 1:
        raise ValueError("count must be >= 1")
    return ["ping", "-n", "-c", str(count), "-i", f"{interval_s:g}", "-s", str(size),
            "-W", f"{reply_timeout_s:g}", ip]


def ping_from(host, ip: str, count: int = 10, interval_s: float = 0.2, size: int = 56
              ) -> PingResult:
    """Run ping inside a Mininet host's namespace."""
    out = host.cmd(" ".join(ping_command(ip, count, interval_s, size)))
    return parse_ping(out)


def ping_many(pairs: list[tuple[object, str]], count: int, interval_s: float = 0.05,
              warmup: int = 0) -> list[PingResult]:
    """Run pings from several Mininet hosts concurrently (host.popen), parse each.

    `warmup` echo requests per pair go first and are not counted: the first packet between
    two hosts waits for ARP (answered by the controller) and for OVS to set up its flow
    cache on every switch, ~6 ms on the userspace datapath, which is not path delay.
    """
    if warmup:
        ping_many(pairs, warmup, interval_s)
    procs = [h.popen(ping_command(ip, count, interval_s)) for h, ip in pairs]
    results = []
    for p in procs:
        out, _ = p.communicate(timeout=count * interval_s + 30)
        text = out.decode(errors="replace") if isinstance(out, bytes) else out
        results.append(parse_ping(text))
    return results
