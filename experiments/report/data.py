"""Reading a run-result dict (format "edwc-report/1") defensively, for reports and plots.

The runner's result may be partial (an interrupted run, an older runner): any key may be
missing, None or of an unexpected type. Everything here returns None / empty values instead
of raising, so the Markdown report, the plots, the terminal summary and `compare` can all
render what is there and say what is not.

Derived figures (placements per hub from the jobs, the metro x hub latency matrix, the
per-service response latencies) live here so that the report, the plots and `compare` agree.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable
from typing import Any

from common.stats import percentile as stats_percentile

FORMAT = "edwc-report/1"
KINDS = ("backbone", "capacity-shift", "fiber-cut", "policy-comparison")
MISSING = "not measured"


# --- safe access ---------------------------------------------------------------------------

def get(obj: Any, *path: Any, default: Any = None) -> Any:
    """obj[path[0]][path[1]]...; `default` as soon as a step is missing or of the wrong type."""
    cur = obj
    for key in path:
        if isinstance(cur, dict) and key in cur:
            cur = cur[key]
        elif isinstance(cur, list) and isinstance(key, int) and -len(cur) <= key < len(cur):
            cur = cur[key]
        else:
            return default
    return default if cur is None else cur


def num(x: Any) -> float | None:
    """A finite number as float, else None (booleans are not numbers here)."""
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    v = float(x)
    return v if math.isfinite(v) else None


def as_dict(x: Any) -> dict:
    return x if isinstance(x, dict) else {}


def as_list(x: Any) -> list:
    return x if isinstance(x, list) else []


def dicts(x: Any) -> list[dict]:
    return [d for d in as_list(x) if isinstance(d, dict)]


def fmt(x: Any, unit: str = "", nd: int = 1, signed: bool = False, missing: str = "-") -> str:
    """A number for people: fixed decimals, optional unit; `missing` for None/NaN/non-numbers."""
    v = num(x)
    if v is None:
        return missing
    s = f"{v:+.{nd}f}" if signed else f"{v:.{nd}f}"
    return f"{s} {unit}" if unit else s


def fmt_pct(x: Any, nd: int = 1, missing: str = "-") -> str:
    """A 0..1 share as percent."""
    v = num(x)
    return missing if v is None else f"{100 * v:.{nd}f}%"


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


def percentile(values: Iterable[Any], p: float) -> float | None:
    """common.stats.percentile (type 7) over the values that are numbers."""
    return stats_percentile([v for v in (num(x) for x in values) if v is not None], p)


def median(values: Iterable[Any]) -> float | None:
    xs = [v for v in (num(x) for x in values) if v is not None]
    return statistics.median(xs) if xs else None


# --- topology ------------------------------------------------------------------------------

def sites(result: dict) -> list[dict]:
    return [s for s in dicts(get(result, "topology", "sites")) if isinstance(s.get("id"), str)]


def site_map(result: dict) -> dict[str, dict]:
    return {s["id"]: s for s in sites(result)}


def links(result: dict) -> list[dict]:
    return [ln for ln in dicts(get(result, "topology", "links"))
            if isinstance(ln.get("a"), str) and isinstance(ln.get("b"), str)]


def hub_of(site: dict | None) -> str | None:
    """The national hub of a site: its `hub`, or itself for a hub."""
    if not site:
        return None
    if isinstance(site.get("hub"), str) and site["hub"]:
        return site["hub"]
    return site.get("id") if site.get("kind") == "hub" else None


def link_delay_ms(link: dict) -> float | None:
    """A link's one-way delay for colouring: the worse direction."""
    ds = [d for d in (num(link.get("delay_ms_ab")), num(link.get("delay_ms_ba"))) if d is not None]
    return max(ds) if ds else None


def site_counts(result: dict) -> dict[str, int]:
    out: dict[str, int] = {}
    for s in sites(result):
        out[str(s.get("kind"))] = out.get(str(s.get("kind")), 0) + 1
    return out


# --- envelope ------------------------------------------------------------------------------

def envelope_tiers(result: dict) -> list[dict]:
    return dicts(get(result, "envelope", "tiers"))


def envelope_pairs(result: dict) -> list[dict]:
    return dicts(get(result, "envelope", "pairs"))


def tier_id(tv: dict) -> str:
    return str(get(tv, "tier", "id", default="?"))


def pair_reading(pair: dict, metric: str | None = None) -> dict:
    """The judged reading of a pair (its own metric unless `metric` is given)."""
    m = metric or pair.get("metric") or "one-way"
    return as_dict(get(pair, "readings", m))


def pair_measured(pair: dict, metric: str | None = None) -> float | None:
    return num(pair_reading(pair, metric).get("measured_ms"))


def pair_threshold(pair: dict, metric: str | None = None) -> float | None:
    return num(pair_reading(pair, metric).get("threshold_ms"))


def measurement(result: dict, src: str, dst: str) -> dict:
    return as_dict(get(result, "envelope", "meta", "measurements", f"{src}>{dst}"))


def one_way_value(result: dict, pair: dict) -> float | None:
    """A pair's one-way delay at the envelope's percentile (worse direction): the judged
    reading when there is one, else the raw measurement's p95 of both directions."""
    v = pair_measured(pair, "one-way")
    if v is not None:
        return v
    m = measurement(result, str(pair.get("src")), str(pair.get("dst")))
    ds = [num(get(m, d, "p95")) for d in ("forward", "reverse")]
    ds2 = [d for d in ds if d is not None]
    return max(ds2) if ds2 else None


def metro_hub_matrix(result: dict, how: str = "best") -> dict | None:
    """Metro x hub one-way delay from the envelope pairs.

    For each (metro, hub) the pairs between the metro and the clusters of that hub
    (either direction) are collected; `how` = "best" takes the smallest value (the cluster
    a latency-aware policy would pick), "median" the median. Returns {"metros", "hubs",
    "value", "threshold", "ratio"} with None for cells without a measurement, or None when
    there is nothing to show.
    """
    smap = site_map(result)
    pairs = envelope_pairs(result)
    if not smap or not pairs:
        return None
    cells: dict[tuple[str, str], list[tuple[float | None, float | None]]] = {}
    for p in pairs:
        a, b = smap.get(str(p.get("src"))), smap.get(str(p.get("dst")))
        if not a or not b:
            continue
        if a.get("kind") == "cluster" and b.get("kind") == "metro":
            a, b = b, a
        if a.get("kind") != "metro" or b.get("kind") != "cluster" or not hub_of(b):
            continue
        cells.setdefault((a["id"], hub_of(b)), []).append(  # type: ignore[arg-type]
            (one_way_value(result, p), pair_threshold(p, "one-way")))
    if not cells:
        return None
    metros = [s["id"] for s in sites(result) if s.get("kind") == "metro"
              and any(k[0] == s["id"] for k in cells)]
    hubs = list(dict.fromkeys(k[1] for k in sorted(cells, key=lambda k: _site_order(smap, k[1]))))
    value, thr, ratio = {}, {}, {}
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


def _site_order(smap: dict, sid: str) -> int:
    return list(smap).index(sid) if sid in smap else len(smap)


# --- workload and placements ----------------------------------------------------------------

def jobs(result: dict) -> list[dict]:
    return dicts(result.get("jobs"))


def service_budgets(result: dict) -> dict[str, float]:
    out: dict[str, float] = {}
    for s in dicts(get(result, "run", "services")):
        b = num(s.get("budget_ms"))
        if isinstance(s.get("name"), str) and b is not None:
            out[s["name"]] = b
    for j in jobs(result):
        b = num(j.get("budget_ms"))
        if isinstance(j.get("service"), str) and b is not None:
            out.setdefault(j["service"], b)
    return out


def placements_per_hub(result: dict, metrics: dict | None = None) -> dict[str, int]:
    """Placements per hub: the metrics' per_hub counts, else counted from the jobs."""
    m = metrics if metrics is not None else as_dict(result.get("metrics"))
    per_hub = as_dict(m.get("per_hub"))
    out = {str(h): int(v["placed"]) for h, v in per_hub.items()
           if isinstance(v, dict) and num(v.get("placed")) is not None}
    if out or metrics is not None:
        return out
    for j in jobs(result):
        if j.get("ok") and isinstance(j.get("hub"), str):
            out[j["hub"]] = out.get(j["hub"], 0) + 1
    return out


def service_stats(result: dict) -> dict[str, dict]:
    """Per service, from the jobs: requests, served, SLA violations, response p50/p95."""
    budgets = service_budgets(result)
    out: dict[str, dict] = {}
    for j in jobs(result):
        name = str(j.get("service"))
        st = out.setdefault(name, {"requests": 0, "served": 0, "sla_violations": 0,
                                   "deferred": 0, "latencies": [],
                                   "budget_ms": budgets.get(name)})
        st["requests"] += 1
        if j.get("ok"):
            st["served"] += 1
        if j.get("sla_ok") is False:
            st["sla_violations"] += 1
        if (num(j.get("deferred_s")) or 0) > 0:
            st["deferred"] += 1
        if num(j.get("start_ms")) is not None:
            st["latencies"].append(float(j["start_ms"]))
    for st in out.values():
        st["p50"] = percentile(st["latencies"], 50)
        st["p95"] = percentile(st["latencies"], 95)
    return out


def workload_span_s(result: dict) -> float | None:
    ts = [v for v in (num(j.get("t_start")) for j in jobs(result)) if v is not None]
    return max(ts) if ts else None


def event_times(result: dict) -> list[tuple[float, str]]:
    """Scenario instants on the workload clock: (t, label)."""
    sc = as_dict(result.get("scenario"))
    out: list[tuple[float, str]] = []
    kind = result.get("kind")
    if kind == "capacity-shift" and num(sc.get("t_event")) is not None:
        out.append((float(sc["t_event"]), f"{sc.get('hub', 'hub')} {sc.get('action', '')}"))
    if kind == "fiber-cut":
        for i, c in enumerate(dicts(sc.get("cuts"))):
            if num(c.get("t_cut")) is not None:
                out.append((float(c["t_cut"]), f"cut {i + 1}"))
            if num(c.get("t_restore")) is not None:
                out.append((float(c["t_restore"]), f"restore {i + 1}"))
    return out


def policies(result: dict) -> list[dict]:
    return [p for p in dicts(get(result, "scenario", "policies")) if p.get("policy")]


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
