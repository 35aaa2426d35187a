"""Substrate calibration: how much latency the switches themselves add, and what to subtract.

On the userspace path every switch traversal costs real time (OVS's userspace datapath,
the veths), on top of the delay the delay line adds. With the relays at zero compensation we
ping host pairs whose paths cross different numbers of switches k, and fit

    measured one-way - configured one-way = a + c * k

c is the cost of one switch traversal; a is what the end hosts add. A path of k switches has
k - 1 delayed links, so giving every delay-line hop a compensation of c leaves a constant
residual of a + c on every path, whatever its length. The fit, the pairs and the residual
are recorded with the run.
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass

import networkx as nx

MAX_COMPENSATION_US = 2000.0


@dataclass(frozen=True)
class Calibration:
    per_switch_us: float  # c
    intercept_us: float  # a
    compensation_us: float  # what each delay-line hop subtracts
    residual_us: float  # expected remaining excess per path: a + c
    points: tuple[tuple[int, float], ...]  # (switches on path, one-way excess in us)
    note: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def fit(points: list[tuple[int, float]]) -> tuple[float, float]:
    """Least-squares line through (k, excess_us); returns (intercept, slope)."""
    ks = {k for k, _ in points}
    if len(ks) < 2:
        # one path length only: attribute everything to the switches (no intercept)
        k = next(iter(ks))
        return 0.0, statistics.median(e for _, e in points) / k
    n = len(points)
    mk = sum(k for k, _ in points) / n
    me = sum(e for _, e in points) / n
    sxx = sum((k - mk) ** 2 for k, _ in points)
    sxy = sum((k - mk) * (e - me) for k, e in points)
    slope = sxy / sxx
    return me - slope * mk, slope


def from_points(points: list[tuple[int, float]]) -> Calibration:
    a, c = fit(points)
    note = ""
    if c < 0:
        note = f"negative slope {c:.1f} us per switch (noise); compensation 0"
        c = 0.0
    comp = min(c, MAX_COMPENSATION_US)
    return Calibration(per_switch_us=c, intercept_us=a, compensation_us=comp,
                       residual_us=a + c, points=tuple(points), note=note)


def choose_pairs(plan, graph: nx.DiGraph, max_pairs: int = 8) -> list[tuple[str, str, int]]:
    """Host pairs spread over path lengths: (src host, dst host, switches on the path)."""
    hosts = list(plan.hosts)
    by_len: dict[int, list[tuple[str, str]]] = {}
    for i, h1 in enumerate(hosts):
        for h2 in hosts[i + 1:]:
            path = nx.dijkstra_path(graph, h1.site, h2.site, weight="delay_ms")
            by_len.setdefault(len(path), []).append((h1.name, h2.name))
    lengths = sorted(by_len)
    picked: list[tuple[str, str, int]] = []
    # round-robin over path lengths, shortest and longest first, for leverage
    order = sorted(lengths, key=lambda k: (k not in (lengths[0], lengths[-1]), k))
    while len(picked) < max_pairs and any(by_len[k] for k in order):
        for k in order:
            if by_len[k] and len(picked) < max_pairs:
                a, b = by_len[k].pop(0)
                picked.append((a, b, k))
    return picked


SUSPICIOUS_US = 1000.0  # a switch traversal this slow means the machine was busy


def calibrate(emu, pings: int = 20, interval_s: float = 0.01) -> Calibration:
    """Measure on a running Emulation whose delay lines have compensation 0.

    Each path's excess is taken at the 25th percentile of its RTTs, after one uncounted
    warm-up ping (ARP, flow setup): queueing on a busy machine only ever adds delay, and the
    median let stalls from other work on the host into the fit (seen: 5 ms per switch)."""
    from common.stats import percentile
    from probes.ping import ping_many
    from topology.paths import round_trip_ms

    net, plan = emu.network, emu.plan
    g = net.graph()
    pairs = choose_pairs(plan, g)
    # One pair at a time: concurrent probes load the substrate and inflate its cost
    # (8 pairs at once measured ~105 us per switch here, one at a time ~20-60 us).
    results = [ping_many([(emu.net[a], plan.host(b).ip)], pings, interval_s, warmup=1)[0]
               for a, b, _ in pairs]
    points = []
    for (a, b, k), r in zip(pairs, results):
        if not r.rtts_ms:
            continue
        sa, sb = plan.host(a).site, plan.host(b).site
        conf = round_trip_ms(net, sa, sb, g)
        points.append((k, (percentile(list(r.rtts_ms), 25) - conf) / 2 * 1000.0))
    if not points:
        return Calibration(0.0, 0.0, 0.0, 0.0, (), note="no replies: not calibrated")
    cal = from_points(points)
    if cal.per_switch_us > SUSPICIOUS_US:
        cal = Calibration(cal.per_switch_us, cal.intercept_us, cal.compensation_us,
                          cal.residual_us, cal.points,
                          note=(cal.note + "; " if cal.note else "") + (
                              f"{cal.per_switch_us:.0f} us per switch is implausible: the "
                              "host was probably busy; delays may be off by milliseconds"))
    return cal
