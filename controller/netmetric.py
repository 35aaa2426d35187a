"""The network-metric agent (C-NMA): per-link one-way delay measured from the controller.

Pure and clock-free: every entry point takes ``now`` (seconds, the controller's monotonic
clock); nothing here sends or sleeps. Not thread-safe: the app calls it under its lock.

Method. A discovery probe (controller/probe.py) carries its packet-out time ``t_tx``. When it
comes back as a packet-in from the neighbour at ``t_rx``::

    raw = t_rx - t_tx = c(ctl->A) + p_out(A) + d(A->B) + p_in(B) + c(B->ctl) + q

where c is the control-channel latency, p_out/p_in the switches' packet-out and upcall work,
d the link delay we want and q >= 0 any queueing on the way (controller threads, send queue,
OVS). Each switch's channel round trip is measured with OpenFlow ECHO_REQUEST/REPLY, and::

    corrected = raw - (rtt_A / 2 + rtt_B / 2) - bias

Noise handling (trade-offs):

* Queueing only ever adds delay, so the channel RTT used is the MINIMUM over the last
  ``echo_window`` echoes of each switch: a busy controller inflates some echoes, not the floor.
  The cost: a channel that really got slower is tracked only after the window rolls over.
* Each link keeps its last ``window`` raw samples; they are corrected at read time with the
  current channel minimum (so samples taken before the first echo still count).
* ``estimate`` is the MEDIAN of the corrected samples by default: it ignores up to half of the
  samples being hit by queueing and, unlike the minimum, is not pulled down by a link's own
  jitter (a jittery link's minimum underestimates its mean). ``statistic="min"`` is offered
  for quiet links with no jitter, where it is the tighter estimate. Both are reported.
* Estimates are clamped at 0 (routing weights must not be negative).

Bias. The echo RTT measures only the controller<->switch channel (OVS answers echoes in
ovs-vswitchd's main loop); the probe also passes the packet-out execution on A and the
datapath upcall and packet-in generation on B, which echoes never see. That makes the
estimate too high by a roughly constant amount (tens to hundreds of microseconds on the
userspace datapath, more when the controller is busy). ``bias_ms`` subtracts a constant
calibrated once on a known link (see :func:`compare`). The split rtt/2 assumes a symmetric
channel; a lopsided one shifts each estimate by half the asymmetry.
"""

from __future__ import annotations

import math
from collections import OrderedDict, deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from statistics import median
from typing import Any

from common.stats import percentile

Link = tuple[int, int, int, int]  # (from_dpid, from_port, to_dpid, to_port)
STATISTICS = ("median", "min")


def link_key(link: Link) -> str:
    """The JSON key of a directed link: ``"1:2->3:4"`` (as the controller logs it)."""
    return "%d:%d->%d:%d" % tuple(link)


def parse_link_key(key: str) -> Link:
    try:
        src, dst = key.split("->")
        a, pa = src.split(":")
        b, pb = dst.split(":")
        return (int(a), int(pa), int(b), int(pb))
    except ValueError:
        raise ValueError(f"link key {key!r} is not 'DPID:PORT->DPID:PORT'") from None


def _check_link(link: Any) -> Link:
    if (not isinstance(link, tuple) or len(link) != 4
            or not all(isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in link)):
        raise ValueError(f"link must be a tuple of 4 non-negative ints "
                         f"(from_dpid, from_port, to_dpid, to_port), got {link!r}")
    return link


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000.0, 4)


@dataclass
class _Switch:
    outstanding: OrderedDict[int, float] = field(default_factory=OrderedDict)  # xid -> sent
    rtts: deque[float] = field(default_factory=deque)  # seconds, newest last
    sent: int = 0
    received: int = 0
    lost: int = 0  # timed out, pushed out by the outstanding cap, or answered too late
    unmatched: int = 0  # replies with an xid we were not waiting for


@dataclass
class _LinkSamples:
    raws: deque[float]  # seconds
    last_at: float
    total: int = 0


class LinkDelayEstimator:
    """Windowed, echo-corrected one-way delay per directed link."""

    def __init__(self, window: int = 16, echo_window: int = 16, min_samples: int = 3, *,
                 statistic: str = "median", bias_ms: float = 0.0, max_outstanding: int = 8,
                 echo_timeout: float = 5.0, max_raw: float = 5.0, max_links: int = 4096,
                 max_switches: int = 1024) -> None:
        for name, v in (("window", window), ("echo_window", echo_window),
                        ("min_samples", min_samples), ("max_outstanding", max_outstanding),
                        ("max_links", max_links), ("max_switches", max_switches)):
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name} must be an int >= 1, got {v!r}")
        if min_samples > window:
            raise ValueError(f"min_samples ({min_samples}) must be <= window ({window})")
        if statistic not in STATISTICS:
            raise ValueError(f"statistic must be one of {STATISTICS}, got {statistic!r}")
        for name, v in (("echo_timeout", echo_timeout), ("max_raw", max_raw)):
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ValueError(f"{name} must be a number of seconds > 0, got {v!r}")
        if not (isinstance(bias_ms, (int, float)) and math.isfinite(bias_ms)):
            raise ValueError(f"bias_ms must be a finite number, got {bias_ms!r}")
        self.window = window
        self.echo_window = echo_window
        self.min_samples = min_samples
        self.statistic = statistic
        self.bias_ms = float(bias_ms)
        self.max_outstanding = max_outstanding
        self.echo_timeout = float(echo_timeout)
        self.max_raw = float(max_raw)
        self.max_links = max_links
        self.max_switches = max_switches
        self._switches: dict[int, _Switch] = {}
        self._links: dict[Link, _LinkSamples] = {}
        self.rejected_samples = 0  # probe samples with a negative, huge or non-finite delay
        self.evicted_links = 0

    # ---- echoes ------------------------------------------------------------------------
    def echo_sent(self, dpid: int, xid: int, now: float) -> None:
        """Record an ECHO_REQUEST with this xid sent to ``dpid`` at ``now``."""
        sw = self._switch(dpid, create=True)
        if sw is None:
            return
        self._expire(sw, now)
        sw.outstanding.pop(xid, None)  # a reused xid restarts its clock
        while len(sw.outstanding) >= self.max_outstanding:
            sw.outstanding.popitem(last=False)
            sw.lost += 1
        sw.outstanding[xid] = now
        sw.sent += 1

    def echo_reply(self, dpid: int, xid: int, now: float) -> float | None:
        """Match an ECHO_REPLY; returns the round trip in ms, or None if it is not ours/late."""
        sw = self._switches.get(dpid)
        if sw is None:
            return None
        sent = sw.outstanding.pop(xid, None)
        self._expire(sw, now)
        if sent is None:
            sw.unmatched += 1
            return None
        rtt = now - sent
        if not math.isfinite(rtt) or rtt < 0 or rtt > self.echo_timeout:
            sw.lost += 1
            return None
        sw.received += 1
        sw.rtts.append(rtt)
        while len(sw.rtts) > self.echo_window:
            sw.rtts.popleft()
        return rtt * 1000.0

    def expire(self, now: float) -> None:
        """Count echoes unanswered for longer than ``echo_timeout`` as lost and drop them."""
        for sw in self._switches.values():
            self._expire(sw, now)

    def _expire(self, sw: _Switch, now: float) -> None:
        while sw.outstanding:
            xid, sent = next(iter(sw.outstanding.items()))
            if now - sent <= self.echo_timeout:
                break
            del sw.outstanding[xid]
            sw.lost += 1

    def _switch(self, dpid: int, create: bool = False) -> _Switch | None:
        sw = self._switches.get(dpid)
        if sw is None and create:
            if len(self._switches) >= self.max_switches:
                return None
            sw = self._switches[dpid] = _Switch()
        return sw

    def channel_rtt(self, dpid: int) -> float | None:
        """The channel RTT used for corrections: minimum over the echo window, seconds."""
        sw = self._switches.get(dpid)
        return min(sw.rtts) if sw is not None and sw.rtts else None

    # ---- probes ------------------------------------------------------------------------
    def probe_seen(self, link: Link, sent_at: float, now: float) -> None:
        """A probe sent at ``sent_at`` (from its payload) showed ``link`` at ``now``."""
        link = _check_link(link)
        raw = now - sent_at
        if not math.isfinite(raw) or raw < 0 or raw > self.max_raw:
            self.rejected_samples += 1
            return
        s = self._links.get(link)
        if s is None:
            if len(self._links) >= self.max_links:
                oldest = min(self._links, key=lambda lk: self._links[lk].last_at)
                del self._links[oldest]
                self.evicted_links += 1
            s = self._links[link] = _LinkSamples(raws=deque(maxlen=self.window), last_at=now)
        s.raws.append(raw)
        s.last_at = now
        s.total += 1

    def _corrected(self, link: Link) -> list[float] | None:
        s = self._links.get(link)
        ra, rb = self.channel_rtt(link[0]), self.channel_rtt(link[2])
        if s is None or ra is None or rb is None:
            return None
        off = (ra + rb) / 2.0 + self.bias_ms / 1000.0
        return [r - off for r in s.raws]

    def delay_ms(self, link: Link) -> float | None:
        """The one-way delay routing may use, ms; None until ``min_samples`` and both echoes."""
        c = self._corrected(_check_link(link))
        if c is None or len(c) < self.min_samples:
            return None
        v = median(c) if self.statistic == "median" else min(c)
        return max(0.0, v) * 1000.0

    # ---- forgetting ----------------------------------------------------------------------
    def forget_switch(self, dpid: int) -> None:
        """A switch went away or reconnected: drop its echoes and every link touching it."""
        self._switches.pop(dpid, None)
        for lk in [lk for lk in self._links if dpid in (lk[0], lk[2])]:
            del self._links[lk]

    def forget_link(self, link: Link) -> None:
        self._links.pop(link, None)

    def links(self) -> list[Link]:
        return sorted(self._links)

    # ---- reporting -----------------------------------------------------------------------
    def snapshot(self) -> dict:
        """Everything measured, JSON-able; times in ms, links keyed by :func:`link_key`."""
        links = {}
        for lk in sorted(self._links):
            s = self._links[lk]
            c = self._corrected(lk)
            ra, rb = self.channel_rtt(lk[0]), self.channel_rtt(lk[2])
            links[link_key(lk)] = {
                "link": list(lk),
                "estimate_ms": None if (d := self.delay_ms(lk)) is None else round(d, 4),
                "min_ms": _ms(min(c)) if c else None,
                "median_ms": _ms(median(c)) if c else None,
                "samples": len(s.raws),
                "total_samples": s.total,
                "last_raw_ms": _ms(s.raws[-1]),
                "raw_min_ms": _ms(min(s.raws)),
                "echo_rtt_ms": [_ms(ra), _ms(rb)],
            }
        switches = {}
        for dpid in sorted(self._switches):
            sw = self._switches[dpid]
            switches[str(dpid)] = {
                "rtt_min_ms": _ms(min(sw.rtts)) if sw.rtts else None,
                "rtt_last_ms": _ms(sw.rtts[-1]) if sw.rtts else None,
                "rtt_samples": len(sw.rtts),
                "sent": sw.sent, "received": sw.received, "lost": sw.lost,
                "unmatched": sw.unmatched, "outstanding": len(sw.outstanding),
            }
        return {
            "params": {"window": self.window, "echo_window": self.echo_window,
                       "min_samples": self.min_samples, "statistic": self.statistic,
                       "bias_ms": self.bias_ms},
            "links": links,
            "switches": switches,
            "rejected_samples": self.rejected_samples,
            "evicted_links": self.evicted_links,
        }


# ---- comparison with the configured delays ------------------------------------------------
def compare(snapshot: Mapping[str, Any], configured: Mapping[Any, float],
            field_name: str = "estimate_ms") -> dict:
    """Measured (``snapshot["links"][*][field_name]``) against configured one-way delays.

    ``configured`` maps links (tuples, e.g. ``plan.directed_delays()``, or link keys) to ms.
    Returns per-link error (measured - configured), the links configured but not (yet)
    measured, those measured but not configured, and a summary of the absolute errors.
    """
    conf = {link_key(k) if isinstance(k, tuple) else link_key(parse_link_key(k)): float(v)
            for k, v in configured.items()}
    measured = {k: v.get(field_name) for k, v in snapshot.get("links", {}).items()}
    per_link: dict[str, dict] = {}
    missing = []
    for key in sorted(conf):
        m = measured.get(key)
        if m is None:
            missing.append(key)
            continue
        err = m - conf[key]
        per_link[key] = {"configured_ms": conf[key], "measured_ms": m,
                         "error_ms": round(err, 4), "abs_error_ms": round(abs(err), 4)}
    errs = [d["error_ms"] for d in per_link.values()]
    abs_errs = [abs(e) for e in errs]
    return {
        "field": field_name,
        "links": per_link,
        "missing": missing,
        "unexpected": sorted(k for k, v in measured.items() if k not in conf and v is not None),
        "summary": {
            "n": len(errs),
            "mean_error_ms": round(sum(errs) / len(errs), 4) if errs else None,
            "median_abs_error_ms": percentile(abs_errs, 50),
            "p95_abs_error_ms": percentile(abs_errs, 95),
            "max_abs_error_ms": max(abs_errs) if abs_errs else None,
        },
    }
