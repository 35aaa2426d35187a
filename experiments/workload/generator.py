"""Workloads for the experiments: compute jobs arising in the eastern metros (pure, no root).

A workload is a list of `Request`s sorted by submission time ``t`` (seconds from the start
of the workload). Each names the metro it comes from, a service (topology/services.py), the
compute units it holds and for how long. Two sources:

- ``generate(cfg, services, network)``: Poisson arrivals (seeded ``random.Random``, never
  the global generator), optionally NON-homogeneous with a diurnal profile, by thinning:
  candidate arrivals at the profile's peak rate, each kept with probability
  rate(t) / peak rate. Deterministic for a seed.
- a recorded workload (CSV or JSON lines): `experiments.workload.replay` reads
  (``load_replay``) and writes (``save_replay``) those files.

Definitions (all ILLUSTRATIVE; the numbers are a model, not measurements):

- Mix: service -> (share of requests, mean duration in s). Durations are exponential,
  clipped to [0.01 s, 4 x mean] so that a short emulated run does not wait on a rare
  very long job. DEFAULT_MIX COMPRESSES time: real jobs last seconds (inference) to hours
  (training); an emulated run lasts minutes and real jobs hold real units in real time, so
  durations are scaled down (and compute capacity with `scale_compute`). ANALYTIC_MIX is
  the uncompressed mix of the analytic benchmark (benchmarks/decision_quality.py).
- Rate: ``rate_per_s`` is the MEAN offered rate over the run. With ``load`` instead, the
  rate is ``load x capacity units / E[units x duration]`` (`rate_for_load`): the mean
  offered work is that fraction of all units.
- Diurnal profile: hourly factors (INTERACTIVE_PROFILE, hour 0..23, piecewise constant);
  eastern interactive demand bottoms out at 0.25 at night and peaks at 1.0 late morning,
  afternoon and evening. Batch services (service_class "batch") follow BATCH_PROFILE =
  0.75 + 0.25 x interactive (a quarter of the swing). Simulated time runs ``day_s``
  seconds of the run per 24 h starting at ``start_hour``. Each class's profile is
  normalized to mean 1 over the run, so the configured rate and mix shares hold exactly
  in expectation whatever the window.
- Deferral (``defer_batch``): a deferrable request (default: services of class "batch")
  arising outside the off-peak window (``offpeak_hours``, default 22:00-06:00, when western
  power is cheapest) waits for the window's next opening if that comes within
  ``max_defer_s`` (default 8 simulated hours) and before the run ends; otherwise it is
  submitted at once. Released requests are spread uniformly over the first
  ``release_spread_h`` simulated hours of the window (default 4; never beyond max_defer_s),
  so that eight hours of deferred batch work do not arrive as one burst at 22:00. The
  spread uses its own seeded generator: switching deferral on moves batch requests only;
  every arrival time stays the same.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from experiments.framework.result import Workload

# service -> (share of requests, mean duration s); compressed for minutes-long emulated runs
DEFAULT_MIX: dict[str, tuple[float, float]] = {
    "infer-rt": (0.45, 1.0), "infer": (0.30, 2.0), "render": (0.15, 4.0),
    "train-batch": (0.10, 8.0)}
# the analytic benchmark's mix (simulated time, not compressed)
ANALYTIC_MIX: dict[str, tuple[float, float]] = {
    "infer-rt": (0.40, 2.0), "infer": (0.30, 10.0), "train-batch": (0.10, 300.0),
    "render": (0.20, 60.0)}
INTERACTIVE_PROFILE: tuple[float, ...] = (
    0.35, 0.28, 0.25, 0.25, 0.25, 0.28, 0.35, 0.50, 0.70, 0.85, 0.95, 1.00,  # 00-11
    0.90, 0.90, 0.95, 1.00, 1.00, 0.95, 0.90, 0.95, 1.00, 1.00, 0.80, 0.55)  # 12-23
BATCH_PROFILE: tuple[float, ...] = tuple(round(0.75 + 0.25 * f, 4) for f in INTERACTIVE_PROFILE)
BATCH_CLASS = "batch"
MIN_DURATION_S = 0.01
DURATION_CAP = 4.0  # durations are clipped at this many times the mean
MAX_DEFER_H = 8.0  # default max_defer_s, in simulated hours


class WorkloadError(ValueError):
    """A workload that cannot be used; the message names the file/line or field and the fix."""


@dataclass(frozen=True)
class Request:
    idx: int
    t: float  # s from workload start: when the client submits
    arrival_t: float  # when it arose (< t only for a deferred request)
    metro: str  # site id of the client
    service: str
    units: int  # compute units it holds
    duration_s: float
    deferrable: bool = False


@dataclass(frozen=True)
class WorkloadConfig:
    duration_s: float = 60.0
    rate_per_s: float | None = None  # mean offered requests/s; None: from load
    load: float = 0.5  # target mean utilization of all units (when rate_per_s is None)
    mix: dict[str, tuple[float, float]] = field(default_factory=lambda: dict(DEFAULT_MIX))
    metros: tuple[str, ...] | None = ()  # empty or None: every metro site of the network
    metro_weights: dict[str, float] | None = None  # None: equal (or site.population)
    diurnal: bool = False
    day_s: float | None = None  # run seconds per simulated 24 h; None: duration_s
    start_hour: float = 0.0
    defer_batch: bool = False
    deferrable: tuple[str, ...] | None = None  # None: services of class "batch"
    offpeak_hours: tuple[int, int] = (22, 6)
    max_defer_s: float | None = None  # None: MAX_DEFER_H simulated hours
    release_spread_h: float = 4.0  # deferred requests spread over this much of the window
    seed: int = 1


# -- configuration ----------------------------------------------------------------------

def _finite(v: Any, what: str, lo: float, hi: float, fix: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) \
            or not lo <= v <= hi:
        raise WorkloadError(f"{what} = {v!r} is not a number in [{lo:g}, {hi:g}]; {fix}")
    return float(v)


def capacity_units(network) -> int:
    """All compute units of a topology.model.Network (every kind of every site)."""
    return sum(sum(s.compute.units.values()) for s in network.sites if s.compute)


def _capacity(capacity) -> float:
    """A number of units, or the plan's gateways (GatewayPlan: their units are summed)."""
    if isinstance(capacity, (int, float)) and not isinstance(capacity, bool):
        return float(capacity)
    try:
        return float(sum(sum(g.units.values()) for g in capacity))
    except (TypeError, AttributeError):
        raise WorkloadError(f"capacity {capacity!r}: give a number of compute units or the "
                            "plan's gateways") from None


def mean_duration(mean_s: float) -> float:
    """Expected clipped duration: E[min(max(X, a), b)] = a + m (e^-a/m - e^-b/m)."""
    a, b = MIN_DURATION_S, DURATION_CAP * mean_s
    return a + mean_s * (math.exp(-a / mean_s) - math.exp(-b / mean_s))


def _svc_map(services: Iterable) -> dict[str, Any]:
    return {s.name: s for s in services}


def unit_s_per_request(mix: dict[str, tuple[float, float]], services: Iterable) -> float:
    """Expected units x seconds of one request drawn from `mix`."""
    svc = _svc_map(services)
    total = sum(share for share, _ in mix.values())
    return sum(share * svc[n].units * mean_duration(d) for n, (share, d) in mix.items()) / total


def rate_for_load(cfg: WorkloadConfig, services: Iterable, capacity: float) -> float:
    """Requests/s whose mean offered work is cfg.load x `capacity` units."""
    if capacity <= 0:
        raise WorkloadError("no compute capacity: the topology has no units; give "
                            "rate_per_s or sites with compute units")
    return cfg.load * capacity / unit_s_per_request(cfg.mix, services)


def _check_mix(cfg: WorkloadConfig, svc: dict[str, Any]) -> None:
    if not cfg.mix:
        raise WorkloadError("the mix is empty; give at least one service: (share, mean s)")
    for name, value in cfg.mix.items():
        if name not in svc:
            raise WorkloadError(f"mix names service {name!r}, which the plan does not have "
                                f"(services: {sorted(svc)}); remove it or add the service")
        if not isinstance(value, (tuple, list)) or len(value) != 2:
            raise WorkloadError(f"mix[{name!r}] must be (share, mean duration s)")
        _finite(value[0], f"mix[{name!r}] share", 1e-9, 1e9, "give a positive share")
        _finite(value[1], f"mix[{name!r}] mean duration", 1e-3, 3600,
                "give a positive mean duration in seconds (the gateway allows <= 3600)")


def resolve(cfg: WorkloadConfig, services: Iterable, network=None,
            capacity: float | Iterable | None = None) -> WorkloadConfig:
    """Validate `cfg` and fill in what it left to defaults: metros (and their weights) from
    the network, rate_per_s from load and capacity (a number of units or the plan's
    gateways; default: every unit of the network), day_s, max_defer_s, deferrable."""
    svc = _svc_map(services)
    _finite(cfg.duration_s, "duration_s", 1e-3, 1e9, "give the run length in seconds")
    _check_mix(cfg, svc)
    day_s = cfg.duration_s if cfg.day_s is None else _finite(
        cfg.day_s, "day_s", 1e-3, 1e12, "give run seconds per simulated day")
    _finite(cfg.start_hour, "start_hour", 0, 23.999999, "give an hour of day in [0, 24)")
    lo, hi = cfg.offpeak_hours
    for h in (lo, hi):
        if isinstance(h, bool) or not isinstance(h, int) or not 0 <= h <= 23 or lo == hi:
            raise WorkloadError(f"offpeak_hours {cfg.offpeak_hours!r}: give two different "
                                "whole hours 0..23, e.g. (22, 6)")
    _finite(cfg.release_spread_h, "release_spread_h", 0, 24, "give simulated hours")
    max_defer = (day_s * MAX_DEFER_H / 24.0 if cfg.max_defer_s is None else
                 _finite(cfg.max_defer_s, "max_defer_s", 0, 1e12, "give seconds >= 0"))
    deferrable = cfg.deferrable
    if deferrable is None:
        deferrable = tuple(n for n, s in svc.items() if s.service_class == BATCH_CLASS)
    metros = tuple(cfg.metros or ())
    known = None if network is None else {s.id: s for s in network.sites}
    if not metros:
        if network is None:
            raise WorkloadError("no metros: give WorkloadConfig.metros or pass the network")
        metros = tuple(s.id for s in network.sites if s.kind == "metro")
        if not metros:
            raise WorkloadError(f"the topology {network.name!r} has no metro sites; give "
                                "WorkloadConfig.metros (site ids that send requests)")
    for m in metros:
        if known is not None and m not in known:
            raise WorkloadError(f"metro {m!r} is not a site of {network.name!r}; check the "
                                "spelling (site ids)")
    weights = cfg.metro_weights
    if weights is None and known is not None:
        pops = [getattr(known[m], "population", None) for m in metros]
        if all(isinstance(p, (int, float)) and p > 0 for p in pops):
            weights = dict(zip(metros, map(float, pops)))
    if weights is not None:
        extra = sorted(set(weights) - set(metros))
        if extra:
            raise WorkloadError(f"metro_weights names {extra}, not among the metros {metros}")
        weights = {m: _finite(weights.get(m, 0.0), f"metro_weights[{m!r}]", 0, 1e12,
                              "give a weight >= 0") for m in metros}
        if sum(weights.values()) <= 0:
            raise WorkloadError("metro_weights are all zero; give at least one positive")
    rate = cfg.rate_per_s
    if rate is None:
        _finite(cfg.load, "load", 1e-6, 5, "give the target mean utilization, e.g. 0.5")
        if capacity is None:
            if network is None:
                raise WorkloadError("rate_per_s is None and no network/capacity given to "
                                    "derive it from load; give one of them")
            capacity = capacity_units(network)
        rate = rate_for_load(cfg, svc.values(), _capacity(capacity))
    _finite(rate, "rate_per_s", 1e-9, 1e6, "give requests per second > 0")
    return replace(cfg, metros=metros, metro_weights=weights, rate_per_s=float(rate),
                   day_s=float(day_s), max_defer_s=float(max_defer), deferrable=deferrable)


# -- time of day --------------------------------------------------------------------------

def hour_of(t: float, start_hour: float, day_s: float) -> float:
    """Simulated hour of day (0 <= h < 24) at run time t."""
    return (start_hour + 24.0 * t / day_s) % 24.0


def _profile(cls: str, diurnal: bool) -> tuple[float, ...]:
    if not diurnal:
        return (1.0,) * 24
    return BATCH_PROFILE if cls == BATCH_CLASS else INTERACTIVE_PROFILE


def profile_mean(profile: Sequence[float], start_hour: float, day_s: float,
                 t0: float, t1: float) -> float:
    """Time average of an hourly (piecewise-constant) profile over run times [t0, t1]."""
    if t1 <= t0:
        return profile[int(hour_of(t0, start_hour, day_s))]
    to_t = lambda hours: (hours - start_hour) * day_s / 24.0  # noqa: E731
    acc, t = 0.0, t0
    k = math.floor(start_hour + 24.0 * t0 / day_s)
    while t < t1:
        end = to_t(k + 1)
        if end <= t:
            k += 1
            continue
        end = min(end, t1)
        acc += profile[k % 24] * (end - t)
        t, k = end, k + 1
    return acc / (t1 - t0)


def in_window(h: float, window: tuple[int, int]) -> bool:
    lo, hi = window
    return lo <= h < hi if lo < hi else (h >= lo or h < hi)


# -- generation -------------------------------------------------------------------------

def generate(cfg: WorkloadConfig, services: Iterable, network=None,
             capacity: float | Iterable | None = None) -> list[Request]:
    """The requests of a seeded (non-homogeneous) Poisson workload, sorted by t; see
    `resolve` for network and capacity. Describe the RESOLVED config in reports."""
    services = list(services)
    cfg = resolve(cfg, services, network, capacity)
    svc = _svc_map(services)
    day_s, rate = float(cfg.day_s or cfg.duration_s), float(cfg.rate_per_s or 0.0)
    names = list(cfg.mix)
    share_sum = sum(cfg.mix[n][0] for n in names)
    # per service: hourly rate factor, normalized so each class averages 1 over the run
    norm: dict[str, tuple[float, ...]] = {}
    for n in names:
        prof = _profile(svc[n].service_class, cfg.diurnal)
        mean = profile_mean(prof, cfg.start_hour, day_s, 0.0, cfg.duration_s)
        norm[n] = tuple(rate * cfg.mix[n][0] / share_sum * f / mean for f in prof)
    per_hour = [sum(norm[n][h] for n in names) for h in range(24)]
    peak = max(per_hour)
    metros = list(cfg.metros)
    weights = [cfg.metro_weights[m] for m in metros] if cfg.metro_weights else None
    rng = random.Random(cfg.seed)
    defer_rng = random.Random(f"{cfg.seed}/defer")
    deferrable = set(cfg.deferrable or ())
    raw: list[tuple[float, float, str, str, float]] = []
    t = 0.0
    while True:
        t += rng.expovariate(peak)
        if t >= cfg.duration_s:
            break
        h = int(hour_of(t, cfg.start_hour, day_s))
        if rng.random() * peak >= per_hour[h]:
            continue  # thinned
        name = rng.choices(names, [norm[n][h] for n in names])[0]
        metro = rng.choices(metros, weights)[0] if weights else rng.choice(metros)
        mean = cfg.mix[name][1]
        dur = min(max(rng.expovariate(1.0 / mean), MIN_DURATION_S), DURATION_CAP * mean)
        arrival = round(t, 6)
        submit = arrival
        if cfg.defer_batch and name in deferrable:
            submit = _deferred(arrival, cfg, day_s, defer_rng)
        raw.append((submit, arrival, metro, name, round(dur, 3)))
    raw.sort(key=lambda r: (r[0], r[1]))
    return [Request(i, s, a, m, n, svc[n].units, d, n in deferrable)
            for i, (s, a, m, n, d) in enumerate(raw)]


def _deferred(t: float, cfg: WorkloadConfig, day_s: float, rng: random.Random) -> float:
    """Submission time of a deferrable request that arose at t (see the module docstring)."""
    h = hour_of(t, cfg.start_hour, day_s)
    if in_window(h, cfg.offpeak_hours):
        return t
    opens = t + ((cfg.offpeak_hours[0] - h) % 24.0) * day_s / 24.0
    max_defer = float(cfg.max_defer_s or 0.0)
    if opens - t > max_defer or opens >= cfg.duration_s:
        return t
    lo, hi = cfg.offpeak_hours
    window_s = ((hi - lo) % 24) * day_s / 24.0
    spread = min(cfg.release_spread_h * day_s / 24.0, t + max_defer - opens, window_s,
                 cfg.duration_s - opens)
    return round(opens + rng.uniform(0.0, max(0.0, spread) * 0.999), 6)


def describe(cfg: WorkloadConfig | None, requests: Sequence[Request],
             source: str | None = None) -> Workload:
    """The run result's Workload: generator parameters (``cfg``, resolved; None for a
    replay, named by ``source``), counts and the offered rate."""
    if cfg is not None:
        conf: dict[str, Any] = asdict(cfg)
        conf["mix"] = {k: list(v) for k, v in cfg.mix.items()}
        for k in ("metros", "offpeak_hours", "deferrable"):
            if conf.get(k) is not None:
                conf[k] = list(conf[k])
        conf["source"] = source or "generated"
        span = cfg.duration_s
    else:
        conf = {"source": source or "replay"}
        span = max((r.t for r in requests), default=0.0)
    per_service: dict[str, int] = {}
    per_metro: dict[str, int] = {}
    for r in requests:
        per_service[r.service] = per_service.get(r.service, 0) + 1
        per_metro[r.metro] = per_metro.get(r.metro, 0) + 1
    deferred = [r.t - r.arrival_t for r in requests if r.t > r.arrival_t]
    return Workload(config=conf, requests=len(requests),
                    offered_rate_per_s=len(requests) / span if span > 0 else None,
                    per_service=dict(sorted(per_service.items())),
                    per_metro=dict(sorted(per_metro.items())),
                    offered_unit_s=round(sum(r.units * r.duration_s for r in requests), 3),
                    deferred=len(deferred),
                    deferred_mean_s=sum(deferred) / len(deferred) if deferred else None,
                    last_t=max((r.t for r in requests), default=None))


def scale_compute(network, factor: float):
    """A copy of `network` (topology.model.Network) with every site's compute units scaled
    by `factor`, rounded up: a kind that had units keeps at least 1; kinds with 0 stay 0."""
    _finite(factor, "compute scale factor", 1e-9, 1e6, "give a factor > 0, e.g. 0.05")
    sites = []
    for s in network.sites:
        if s.compute is not None and s.compute.units:
            units = {k: (max(1, math.ceil(v * factor - 1e-9)) if v > 0 else 0)
                     for k, v in s.compute.units.items()}
            s = replace(s, compute=replace(s.compute, units=units))
        sites.append(s)
    return replace(network, sites=tuple(sites))
