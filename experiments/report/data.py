"""What the reports, the plots and `compare` derive from a run result
(experiments.framework.result.RunResult), so that they agree: formatting of numbers, the
scenario of a run, placements per hub, the metro x hub latency matrix, per-service
response latencies, scenario instants.

The result is typed: a section a run did not reach is None, a figure it could not measure
is None, and a value of the wrong type never gets here (RunResult.from_dict leaves it out
and names it in ``problems``). So the helpers here test for None, not for types.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable
from typing import Any

from common.stats import percentile as stats_percentile
from experiments.framework.result import (
    FORMAT,
    KINDS,
    Envelope,
    Metrics,
    PairVerdict,
    RunResult,
    SiteInfo,
)
from experiments.framework.scenario import CapacityShift, FiberCut, PolicyComparison, PolicyRun

__all__ = ["FORMAT", "KINDS", "MISSING"]

MISSING = "not measured"


def as_result(result: RunResult | dict) -> RunResult:
    """The public entry points take a RunResult or a result dict (report.json's content)."""
    return RunResult.coerce(result)


# --- formatting ----------------------------------------------------------------------------

def fmt(x: float | None, unit: str = "", nd: int = 1, signed: bool = False,
        missing: str = "-") -> str:
    """A number for people: fixed decimals, optional unit; `missing` for None."""
    if x is None:
        return missing
    s = f"{x:+.{nd}f}" if signed else f"{x:.{nd}f}"
    return f"{s} {unit}" if unit else s


def fmt_pct(x: float | None, nd: int = 1, missing: str = "-") -> str:
    """A 0..1 share as percent."""
    return missing if x is None else f"{100 * x:.{nd}f}%"


def text(x: Any, missing: str = "-") -> str:
    if x is None or x == "":
        return missing
    if isinstance(x, float):
        return f"{x:g}"
    return str(x)


def sanitize(obj: Any) -> Any:
    """JSON-safe copy: NaN/inf -> None, tuples/sets -> lists, keys -> str."""
    if isinstance(obj, dict):
        return {str(k): sanitize(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [sanitize(v) for v in obj]
    if isinstance(obj, (set, frozenset)):
        return sorted((sanitize(v) for v in obj), key=str)
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def percentile(values: Iterable[float | None], p: float) -> float | None:
    """common.stats.percentile (type 7) over the values that are not None."""
    return stats_percentile([v for v in values if v is not None], p)


def median(values: Iterable[float | None]) -> float | None:
    xs = [v for v in values if v is not None]
    return statistics.median(xs) if xs else None


# --- the scenario of a run -----------------------------------------------------------------

def fiber_cut(r: RunResult) -> FiberCut | None:
    return r.scenario if r.kind == "fiber-cut" and isinstance(r.scenario, FiberCut) else None


def capacity_shift(r: RunResult) -> CapacityShift | None:
    return r.scenario if r.kind == "capacity-shift" and isinstance(r.scenario, CapacityShift) \
        else None


def policies(r: RunResult) -> list[PolicyRun]:
    """The rounds of a policy comparison (those that name their policy)."""
    sc = r.scenario
    if r.kind != "policy-comparison" or not isinstance(sc, PolicyComparison):
        return []
    return [p for p in sc.policies if p.policy]


def per_policy(r: RunResult) -> bool:
    """A policy comparison keeps its figures per policy (no top-level metrics)."""
    return r.kind == "policy-comparison" and r.metrics is None and bool(policies(r))


# --- topology ------------------------------------------------------------------------------

def sites(r: RunResult) -> list[SiteInfo]:
    return [s for s in r.topology.sites if s.id] if r.topology else []


def site_counts(r: RunResult) -> dict[str, int]:
    out: dict[str, int] = {}
    for s in sites(r):
        out[str(s.kind)] = out.get(str(s.kind), 0) + 1
    return out


# --- envelope ------------------------------------------------------------------------------

def pair_measured(pair: PairVerdict, metric: str | None = None) -> float | None:
    rd = pair.reading(metric)
    return rd.measured_ms if rd else None


def pair_threshold(pair: PairVerdict, metric: str | None = None) -> float | None:
    rd = pair.reading(metric)
    return rd.threshold_ms if rd else None


def one_way_value(env: Envelope, pair: PairVerdict) -> float | None:
    """A pair's one-way delay at the envelope's percentile (worse direction): the judged
    reading when there is one, else the raw measurement's p95 of both directions."""
    v = pair_measured(pair, "one-way")
    if v is not None:
        return v
    m = env.measurement(pair.src, pair.dst)
    ds = [d.p95 for d in ((m.forward, m.reverse) if m else ()) if d and d.p95 is not None]
    return max(ds) if ds else None


def metro_hub_matrix(result: RunResult | dict, how: str = "best") -> dict | None:
    """Metro x hub one-way delay from the envelope pairs.

    For each (metro, hub) the pairs between the metro and the clusters of that hub
    (either direction) are collected; `how` = "best" takes the smallest value (the cluster
    a latency-aware policy would pick), "median" the median. Returns {"metros", "hubs",
    "value", "threshold", "ratio"} with None for cells without a measurement, or None when
    there is nothing to show.
    """
    r = as_result(result)
    smap = r.site_map()
    if not smap or r.envelope is None or not r.envelope.pairs:
        return None
    cells: dict[tuple[str, str], list[tuple[float | None, float | None]]] = {}
    for p in r.envelope.pairs:
        a, b = smap.get(p.src or ""), smap.get(p.dst or "")
        if not a or not b:
            continue
        if a.kind == "cluster" and b.kind == "metro":
            a, b = b, a
        hub = b.hub_id
        if a.kind != "metro" or b.kind != "cluster" or not hub:
            continue
        cells.setdefault((str(a.id), hub), []).append(
            (one_way_value(r.envelope, p), pair_threshold(p, "one-way")))
    if not cells:
        return None
    order = list(smap)
    metros = [s.id for s in sites(r) if s.kind == "metro" and any(k[0] == s.id for k in cells)]
    hubs = list(dict.fromkeys(k[1] for k in sorted(
        cells, key=lambda k: order.index(k[1]) if k[1] in smap else len(order))))
    value: dict = {}
    thr: dict = {}
    ratio: dict = {}
    for key, vals in cells.items():
        measured = [(v, t) for v, t in vals if v is not None]
        if not measured:
            value[key] = None
            thr[key] = next((t for _, t in vals if t is not None), None)
        elif how == "median":
            value[key] = median(v for v, _ in measured)
            thr[key] = min((t for _, t in measured if t is not None), default=None)
        else:
            value[key], thr[key] = min(measured, key=lambda vt: vt[0])  # type: ignore[arg-type]
        v, t = value[key], thr[key]
        ratio[key] = v / t if v is not None and t else None
    return {"metros": metros, "hubs": hubs, "value": value, "threshold": thr, "ratio": ratio,
            "how": how}


# --- workload and placements ----------------------------------------------------------------

def service_budgets(r: RunResult) -> dict[str, float]:
    out: dict[str, float] = {}
    for s in (r.run.services if r.run else []):
        if s.name and s.budget_ms is not None:
            out[s.name] = s.budget_ms
    for j in r.jobs or []:
        if j.service and j.budget_ms is not None:
            out.setdefault(j.service, j.budget_ms)
    return out


def placements_per_hub(r: RunResult, metrics: Metrics | None = None) -> dict[str, int]:
    """Placements per hub: the metrics' per_hub counts (of `metrics`, default the run's),
    else, for the run's own, counted from the jobs that started."""
    m = metrics if metrics is not None else r.metrics
    out = m.placements_per_hub() if m is not None else {}
    if out or metrics is not None:
        return out
    for j in r.jobs or []:
        if j.ok and j.hub:
            out[j.hub] = out.get(j.hub, 0) + 1
    return out


def service_stats(r: RunResult) -> dict[str, dict]:
    """Per service, from the jobs: requests, served, SLA violations, response p50/p95."""
    budgets = service_budgets(r)
    out: dict[str, dict] = {}
    for j in r.jobs or []:
        name = str(j.service)
        st = out.setdefault(name, {"requests": 0, "served": 0, "sla_violations": 0,
                                   "deferred": 0, "latencies": [],
                                   "budget_ms": budgets.get(name)})
        st["requests"] += 1
        if j.ok:
            st["served"] += 1
        if j.sla_ok is False:
            st["sla_violations"] += 1
        if (j.deferred_s or 0) > 0:
            st["deferred"] += 1
        if j.start_ms is not None:
            st["latencies"].append(float(j.start_ms))
    for st in out.values():
        st["p50"] = percentile(st["latencies"], 50)
        st["p95"] = percentile(st["latencies"], 95)
    return out


def event_times(r: RunResult) -> list[tuple[float, str]]:
    """Scenario instants on the workload clock: (t, label)."""
    out: list[tuple[float, str]] = []
    cs = capacity_shift(r)
    if cs is not None and cs.t_event is not None:
        out.append((cs.t_event, f"{cs.hub or 'hub'} {cs.action or ''}"))
    fc = fiber_cut(r)
    for i, c in enumerate(fc.cuts if fc else []):
        if c.t_cut is not None:
            out.append((c.t_cut, f"cut {i + 1}"))
        if c.t_restore is not None:
            out.append((c.t_restore, f"restore {i + 1}"))
    return out


# --- plot files (names shared by experiments.report.plots, the report and its tests) --------------

PLOT_FILES: dict[str, tuple[str, str]] = {
    "backbone_map": ("backbone_map.png", "Backbone map (links coloured by one-way delay)"),
    "latency_heatmap": ("latency_heatmap.png", "Metro x hub one-way delay against the envelope"),
    "delay_cdfs": ("delay_cdfs.png", "Delay CDFs: envelope pairs per tier, job response "
                   "latency per service"),
    "placements": ("placements.png", "Placements over time per hub"),
    "fiber_cut_timeline": ("fiber_cut_timeline.png", "Fiber-cut timeline"),
    "policy_comparison": ("policy_comparison.png", "Policy comparison"),
}
