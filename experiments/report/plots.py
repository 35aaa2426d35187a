"""PNG plots of a run result ("edwc-report/1"): backbone map, metro x hub latency heatmap,
delay CDFs, placements over time, fiber-cut timeline, policy comparison.

Each function takes the run result (experiments.framework.result.RunResult, or a result
dict, read with RunResult.from_dict) and a path, draws with the Agg backend on a private
Figure (no pyplot state, no windows), writes the PNG atomically and returns the path, or
returns None when the result has no data for that plot. Partial data draws what is there.
Sizes are fixed (SIZES inches x dpi), so a plot's pixel size does not depend on the data.

The delay CDFs are ONE figure with two panels: (a) envelope pairs per tier, (b) job response
latency per service.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

from matplotlib import colormaps  # noqa: E402
from matplotlib.collections import LineCollection  # noqa: E402
from matplotlib.colors import Normalize, TwoSlopeNorm  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from experiments.framework.result import ConnectTimes, Metrics, ResponseTimes  # noqa: E402
from experiments.framework.scenario import Cut, StreamInfo  # noqa: E402
from experiments.report.data import (  # noqa: E402
    as_result,
    event_times,
    fiber_cut,
    fmt,
    metro_hub_matrix,
    pair_measured,
    policies,
    service_budgets,
    sites,
)

DPI = 100
SIZES = {"backbone_map": (10.0, 7.0), "latency_heatmap": (9.0, 6.0),
         "delay_cdfs": (12.0, 5.0), "placements": (10.0, 5.0),
         "fiber_cut_timeline": (10.0, 5.0), "policy_comparison": (14.0, 6.0)}
KIND_STYLE = {"hub": ("*", 260, "#c0392b"), "cluster": ("s", 70, "#2471a3"),
              "metro": ("o", 70, "#e67e22"), "pop": ("^", 60, "#7f8c8d")}
PathLike = str | os.PathLike


def _figure(name: str, dpi: int) -> Figure:
    return Figure(figsize=SIZES[name], dpi=dpi, layout="constrained")


def _save(fig: Figure, path: PathLike, dpi: int) -> Path:
    """Write the PNG under a temporary name, then rename: never a half-written plot."""
    p = Path(path)
    tmp = p.with_name(f".{p.name}.{os.getpid()}.tmp")
    try:
        fig.savefig(tmp, dpi=dpi, format="png")
        os.replace(tmp, p)
    finally:
        if tmp.exists():
            tmp.unlink()
    return p


def _no_data(ax, what: str = "not measured") -> None:
    ax.text(0.5, 0.5, what, ha="center", va="center", transform=ax.transAxes, color="#777777")


# --- backbone map -------------------------------------------------------------------------

def backbone_map(result, path: PathLike, *, dpi: int = DPI) -> Path | None:
    """Sites at (lon, lat), equirectangular; links coloured by one-way delay (worse
    direction); on a fiber-cut run the cut link is drawn dashed red."""
    result = as_result(result)
    pts = {s.id: (s.lon, s.lat, str(s.kind)) for s in sites(result)
           if s.lon is not None and s.lat is not None}
    if not pts:
        return None
    fig = _figure("backbone_map", dpi)
    ax = fig.add_subplot()
    segs, delays, plain = [], [], []
    for ln in result.topology.links if result.topology else []:
        a, b = pts.get(ln.a or ""), pts.get(ln.b or "")
        if not a or not b:
            continue
        d = ln.worse_delay_ms
        if d is None:
            plain.append([(a[0], a[1]), (b[0], b[1])])
        else:
            segs.append([(a[0], a[1]), (b[0], b[1])])
            delays.append(d)
    if segs:
        lc = LineCollection(segs, cmap="viridis", norm=Normalize(0, max(delays) or 1.0),
                            linewidths=2.2, zorder=1)
        lc.set_array(delays)
        ax.add_collection(lc)
        fig.colorbar(lc, ax=ax, shrink=0.8, label="link one-way delay (ms, worse direction)")
    if plain:
        ax.add_collection(LineCollection(plain, colors="#aaaaaa", linestyles="dashed",
                                         linewidths=1.2, zorder=1))
    handles = []
    fc = fiber_cut(result)
    cut = fc.link if fc else None
    if cut and len(cut) == 2 and all(c in pts for c in cut):
        (x1, y1, _), (x2, y2, _) = pts[cut[0]], pts[cut[1]]
        ax.plot([x1, x2], [y1, y2], color="#e6194b", lw=4.5, ls=(0, (3, 2)), zorder=2)
        handles.append(Line2D([], [], color="#e6194b", lw=3, ls=(0, (3, 2)),
                              label=f"cut link {cut[0]}-{cut[1]}"))
    for kind, (marker, size, colour) in KIND_STYLE.items():
        xs = [(v[0], v[1]) for v in pts.values() if v[2] == kind]
        if xs:
            ax.scatter([x for x, _ in xs], [y for _, y in xs], marker=marker, s=size,
                       c=colour, edgecolors="black", linewidths=0.5, zorder=3)
            handles.append(Line2D([], [], marker=marker, ls="", color=colour, mec="black",
                                  ms=math.sqrt(size), label=kind))
    placed: list[tuple[float, float]] = []
    for sid, (x, y, _) in pts.items():
        k = sum(1 for px, py in placed if abs(px - x) < 0.4 and abs(py - y) < 0.4)
        placed.append((x, y))  # stack the labels of sites that sit (almost) on top of others
        ax.annotate(sid, (x, y), xytext=(5, 4 - 10 * k), textcoords="offset points",
                    fontsize=7, zorder=4)
    lat0 = sum(v[1] for v in pts.values()) / len(pts)
    ax.set_aspect(1.0 / max(0.2, math.cos(math.radians(lat0))), adjustable="datalim")
    ax.autoscale_view()
    ax.margins(0.08)
    ax.set_xlabel("longitude (deg E)")
    ax.set_ylabel("latitude (deg N)")
    ax.grid(alpha=0.3)
    ax.legend(handles=handles, loc="best", fontsize=8)
    ax.set_title(f"{(result.topology.name if result.topology else None) or 'backbone'}: "
                 f"{len(pts)} sites, "
                 f"{len(segs) + len(plain)} links (equirectangular)")
    return _save(fig, path, dpi)


# --- metro x hub heatmap ------------------------------------------------------------------

def latency_heatmap(result, path: PathLike, *, dpi: int = DPI,
                    how: str = "best") -> Path | None:
    """Rows metros, columns hubs; cell = one-way delay at the envelope percentile to the
    hub's best (or median) cluster; colour = delay / the pair's envelope threshold."""
    result = as_result(result)
    m = metro_hub_matrix(result, how)
    if m is None:
        return None
    metros, hubs = m["metros"], m["hubs"]
    ratios = [[m["ratio"].get((r, c)) for c in hubs] for r in metros]
    finite = [x for row in ratios for x in row if x is not None]
    vmax = max([2.0] + finite)
    data = [[math.nan if x is None else x for x in row] for row in ratios]
    fig = _figure("latency_heatmap", dpi)
    ax = fig.add_subplot()
    cmap = colormaps["RdYlGn_r"].with_extremes(bad="#d9d9d9")
    im = ax.imshow(data, cmap=cmap, norm=TwoSlopeNorm(vcenter=1.0, vmin=0.0, vmax=vmax),
                   aspect="auto")
    fig.colorbar(im, ax=ax, label="measured / envelope threshold (<= 1 passes)")
    for i, r in enumerate(metros):
        for j, c in enumerate(hubs):
            key = (r, c)
            v, t = m["value"].get(key), m["threshold"].get(key)
            if key not in m["value"]:
                label = "no pair"
            elif v is None:
                label = "not\nmeasured"
            elif t is None:
                label = f"{v:.2f}\nuntiered"
            else:
                label = f"{v:.2f}\n/ {t:g} ms"
            ax.text(j, i, label, ha="center", va="center", fontsize=8)
    ax.set_xticks(range(len(hubs)), hubs)
    ax.set_yticks(range(len(metros)), metros)
    ax.set_xlabel("hub (its clusters)")
    ax.set_ylabel("metro")
    pct = fmt(result.envelope.percentile if result.envelope else None, nd=0, missing="95")
    ax.set_title(f"One-way delay p{pct} (worse direction), {how} cluster per hub, "
                 "vs envelope (ms)", fontsize=10)
    return _save(fig, path, dpi)


# --- delay CDFs -----------------------------------------------------------------------------

def _cdf(ax, values: list[float], colour, label: str) -> None:
    xs = sorted(values)
    ys = [(i + 1) / len(xs) for i in range(len(xs))]
    ax.step([xs[0]] + xs, [0.0] + ys, where="post", color=colour, label=label)


def delay_cdfs(result, path: PathLike, *, dpi: int = DPI) -> Path | None:
    """(a) per envelope tier: CDF across pairs of the judged percentile, with the tier's
    threshold; (b) per service: CDF of job response latency (start_ms), with its budget."""
    result = as_result(result)
    palette = colormaps["tab10"]
    env = result.envelope
    tiers = []
    for tv in env.tiers if env else []:
        tid = tv.tier_id
        vals = [v for v in (pair_measured(p) for p in env.pairs if p.tier == tid)
                if v is not None]
        if vals:
            tiers.append((tid, vals, tv.tier.threshold_ms if tv.tier else None, tv.metric))
    budgets = service_budgets(result)
    per_service: dict[str, list[float]] = {}
    for j in result.jobs or []:
        if j.start_ms is not None:
            per_service.setdefault(str(j.service), []).append(j.start_ms)
    if not tiers and not per_service:
        return None
    fig = _figure("delay_cdfs", dpi)
    ax1, ax2 = fig.subplots(1, 2)
    pct = fmt(env.percentile if env else None, nd=0, missing="95")
    for i, (tid, vals, thr, metric) in enumerate(tiers):
        c = palette(i % 10)
        _cdf(ax1, vals, c, f"{tid} ({metric}, n={len(vals)})")
        if thr is not None:
            ax1.axvline(thr, color=c, ls="--", lw=1)
    for i, (name, vals) in enumerate(per_service.items()):
        c = palette(i % 10)
        _cdf(ax2, vals, c, f"{name} (n={len(vals)})")
        if budgets.get(name) is not None:
            ax2.axvline(budgets[name], color=c, ls="--", lw=1)
    for ax, data, title, xl in (
            (ax1, tiers, f"(a) envelope pairs: measured p{pct} per tier; dashed = limit",
             "delay (ms)"),
            (ax2, per_service, "(b) job response latency per service; dashed = budget",
             "response latency (ms)")):
        ax.set_title(title, fontsize=10)
        ax.set_xlabel(xl)
        ax.set_ylabel("fraction")
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
        if data:
            ax.set_xscale("log")
            ax.legend(fontsize=8, loc="lower right")
        else:
            _no_data(ax)
    return _save(fig, path, dpi)


# --- placements over time ---------------------------------------------------------------

def _bin_width(span: float, max_bins: int = 40) -> float:
    for w in (0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200):
        if span / w <= max_bins:
            return float(w)
    return span / max_bins


def placements_over_time(result, path: PathLike, *, dpi: int = DPI) -> Path | None:
    """Stacked bars of placements per time bin per hub (jobs' t_start and hub), with the
    scenario's events (capacity shift, cuts and restores) as vertical lines."""
    result = as_result(result)
    placed = [(float(j.t_start), str(j.hub)) for j in result.jobs or []
              if j.ok and j.hub and j.t_start is not None]
    if not placed:
        return None
    events = event_times(result)
    span = max([t for t, _ in placed] + [t for t, _ in events] + [1.0])
    w = _bin_width(span)
    nb = int(span // w) + 1
    hubs = list(dict.fromkeys(h for _, h in sorted(placed)))
    counts = {h: [0] * nb for h in hubs}
    for t, h in placed:
        counts[h][min(nb - 1, max(0, int(t // w)))] += 1
    fig = _figure("placements", dpi)
    ax = fig.add_subplot()
    lefts = [i * w for i in range(nb)]
    bottom = [0] * nb
    palette = colormaps["tab10"]
    for i, h in enumerate(hubs):
        ax.bar(lefts, counts[h], width=w * 0.95, bottom=bottom, align="edge",
               color=palette(i % 10), label=h)
        bottom = [b + c for b, c in zip(bottom, counts[h])]
    for t, label in events:
        colour = "#2ca02c" if label.startswith("restore") else "#d62728"
        ax.axvline(t, color=colour, ls="--", lw=1.2)
        ax.text(t, 0.98, f" {label}", transform=ax.get_xaxis_transform(), rotation=90,
                va="top", ha="left", fontsize=8, color=colour)
    ax.set_xlabel("time since workload start (s)")
    ax.set_ylabel(f"placements per {w:g} s")
    ax.set_xlim(0, nb * w)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(title="hub", fontsize=8)
    ax.set_title(f"Placements over time per hub ({len(placed)} placed)")
    return _save(fig, path, dpi)


# --- fiber-cut timeline -------------------------------------------------------------------

def fiber_cut_timeline(result, path: PathLike, *, dpi: int = DPI) -> Path | None:
    """One-way delay per packet of the probe stream over time; lost packets as red marks at
    the bottom; cuts (red) and restores (green) as vertical lines, each cut annotated with
    its interruption."""
    sc = fiber_cut(as_result(result))
    tl = sc.timeline if sc else None
    if tl is None:
        return None
    pts2 = [(t, v) for t, v in zip(tl.t, tl.one_way_ms) if t is not None and v is not None]
    lost = [t for t in tl.lost_t if t is not None]
    if not pts2 and not lost:
        return None
    cuts = sc.cuts
    spans = [c for c in tl.cuts if c] or [[c.t_cut, c.t_restore] for c in cuts]
    fig = _figure("fiber_cut_timeline", dpi)
    ax = fig.add_subplot()
    if pts2:
        ax.scatter([t for t, _ in pts2], [v for _, v in pts2], s=4, color="#1f77b4",
                   label=f"one-way delay ({len(pts2)} packets)")
    if lost:
        ax.plot(lost, [0.02] * len(lost), "x", color="#d62728", ms=6,
                transform=ax.get_xaxis_transform(), label=f"lost ({len(lost)})")
    env = next((c for c in cuts if c.envelope_ms is not None), None)
    if env:
        ax.axhline(env.envelope_ms, color="#555555", ls=":", lw=1,
                   label=f"envelope {env.envelope_tier or ''} {env.envelope_ms:g} ms")
    for i, span in enumerate(spans):
        t_cut = span[0]
        t_res = span[1] if len(span) > 1 else None
        if t_cut is not None:
            ax.axvline(t_cut, color="#d62728", ls="--", lw=1.2,
                       label="cut" if i == 0 else None)
            c = cuts[i] if i < len(cuts) else Cut()
            note = (f" {c.interruption_ms:.1f} ms" if c.interruption_ms is not None
                    else " interruption n/m")
            if c.lost is not None:
                note += f", {c.lost} lost"
            ax.text(t_cut, 0.97, note, transform=ax.get_xaxis_transform(), va="top",
                    ha="left", fontsize=8, color="#d62728")
        if t_res is not None:
            ax.axvline(t_res, color="#2ca02c", ls=":", lw=1.2,
                       label="restore" if i == 0 else None)
    link = "-".join(sc.link or ["?"])
    st = sc.stream or StreamInfo()
    med = fmt(sc.interruption_ms.median if sc.interruption_ms else None, "ms", missing="n/m")
    ax.set_title(f"Fiber cut {link}: stream {st.src or '?'} -> {st.dst or '?'} "
                 f"at {st.rate_pps if st.rate_pps is not None else '?'} pps; interruption "
                 f"median {med}", fontsize=10)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("one-way delay (ms)")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    fig.legend(fontsize=8, loc="outside lower center", ncols=5)
    return _save(fig, path, dpi)


# --- policy comparison ------------------------------------------------------------------

POLICY_PANELS: list[tuple[str, Callable[[Metrics], float | None], float]] = [
    ("SLA violations (%)", lambda m: m.sla_violation_pct, 1.0),
    ("refused", lambda m: m.refused, 1.0),
    ("connect p95 (ms)", lambda m: (m.connect_ms or ConnectTimes()).p95, 1.0),
    ("response p95 (ms)", lambda m: (m.response_ms or ResponseTimes()).p95, 1.0),
    ("utilization spread (pts)", lambda m: m.utilization_spread, 100.0),
    ("energy cost (CNY, illustrative)", lambda m: m.energy_cost_cny, 1.0),
    ("west share (%)", lambda m: m.west_share, 100.0),
    ("reroutes", lambda m: m.reroutes, 1.0)]


def policy_comparison(result, path: PathLike, *, dpi: int = DPI) -> Path | None:
    """One bar panel per figure of merit, one bar per policy (policy-comparison runs)."""
    result = as_result(result)
    ps = policies(result)
    if not ps:
        return None
    fig = _figure("policy_comparison", dpi)
    axes = fig.subplots(2, 4)
    names = [str(p.policy) for p in ps]
    palette = colormaps["tab10"]
    for ax, (title, figure, scale) in zip(axes.flat, POLICY_PANELS):
        vals = [figure(p.metrics or Metrics()) for p in ps]
        ys = [0.0 if v is None else v * scale for v in vals]
        bars = ax.bar(range(len(ps)), ys, color=[palette(i % 10) for i in range(len(ps))])
        for b, v in zip(bars, vals):
            ax.text(b.get_x() + b.get_width() / 2, b.get_height(),
                    "n/m" if v is None else f"{v * scale:.3g}", ha="center", va="bottom",
                    fontsize=7)
        ax.set_xticks(range(len(ps)), names, rotation=30, ha="right", fontsize=8)
        ax.set_title(title, fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    seed = result.scenario.workload_seed  # policies() found a PolicyComparison
    fig.suptitle("Policy comparison on the same workload "
                 f"(seed {seed if seed is not None else '-'})")
    return _save(fig, path, dpi)


PLOTS: dict[str, Callable[..., Path | None]] = {
    "backbone_map": backbone_map, "latency_heatmap": latency_heatmap,
    "delay_cdfs": delay_cdfs, "placements": placements_over_time,
    "fiber_cut_timeline": fiber_cut_timeline, "policy_comparison": policy_comparison}
