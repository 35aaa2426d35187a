"""Run reports: a directory with report.json (everything), report.md (for people) and PNG plots,
plus the one-screen terminal summary printed at the end of a run.

The input is the runner's result dict (format "edwc-report/1", docs in issue 5 / the
experiments docs). A partial result (interrupted or failed run) is normal: every section
renders what is there and says "not measured" for what is not; nothing here raises on
missing or oddly typed keys.

    paths = write_report(result, "reports/run-1")   # {"json": ..., "markdown": ..., plots}
    print("\\n".join(summary_lines(result)))

Writes are atomic per file (temporary name, then rename), and report.json is written last:
a directory with a report.json holds a complete report.
"""

from __future__ import annotations

import fnmatch
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from experiments.report import markdown as report_md
from experiments.report.data import (
    FORMAT,
    MISSING,
    PLOT_FILES,
    as_dict,
    dicts,
    envelope_tiers,
    fmt,
    fmt_pct,
    get,
    num,
    placements_per_hub,
    policies,
    sanitize,
    site_counts,
    tier_id,
)

JSON_NAME = "report.json"
MD_NAME = "report.md"
MAX_LINES = 25
MAX_WIDTH = 100


class ReportError(RuntimeError):
    """A report that cannot be written; the message names the directory and the fix."""


def render_markdown(result: dict, plots: Mapping[str, str | None] | None = None) -> str:
    """report.md text. `plots`: plot name -> file name relative to the report (None: no data
    for it; a string starting with "failed:" says why it could not be drawn)."""
    return report_md.render(result if isinstance(result, dict) else {}, plots)


def _ours(name: str) -> bool:
    files = {JSON_NAME, MD_NAME} | {f for f, _ in PLOT_FILES.values()}
    return name in files or (name.startswith(".") and name.endswith(".tmp"))


def _atomic_write(path: Path, data: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(data, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_report(result: dict, out_dir: str | Path, *, plots: bool = True,
                 dpi: int | None = None, keep: Iterable[str] = ()) -> dict[str, Path]:
    """Write report.json, report.md and the plots into `out_dir`; return name -> path.

    `out_dir` is created; an existing directory may only hold an earlier report (our own
    file names) and files matching the glob patterns in `keep` (e.g. the runner's logs),
    otherwise ReportError. A plot that fails is reported in report.md, not raised: the
    report of a long run is never lost to a drawing bug.
    """
    if not isinstance(result, dict):
        raise ReportError(f"the run result must be a dict (format {FORMAT}), got "
                          f"{type(result).__name__}")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ReportError(f"{out} exists and is not a directory; give a new report directory")
    patterns = list(keep)
    if out.is_dir():
        foreign = sorted(p.name for p in out.iterdir() if not _ours(p.name)
                         and not any(fnmatch.fnmatch(p.name, k) for k in patterns))
        if foreign:
            shown = ", ".join(foreign[:5]) + (" ..." if len(foreign) > 5 else "")
            raise ReportError(f"{out} already holds files that are not part of a report "
                              f"({shown}); give a new or empty report directory")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ReportError(f"cannot create the report directory {out}: {e}") from None
    clean = sanitize(result)
    try:
        text = json.dumps(clean, indent=1, default=str, allow_nan=False) + "\n"
    except (TypeError, ValueError) as e:
        raise ReportError(f"the run result cannot be written as JSON: {e}") from None
    written: dict[str, Path] = {}
    plot_files: dict[str, str | None] = {}
    if plots:
        from experiments.report import plots as plotting

        for name, fn in plotting.PLOTS.items():
            path = out / PLOT_FILES[name][0]
            try:
                got = fn(clean, path, dpi=dpi or plotting.DPI)
            except Exception as e:  # noqa: BLE001 - a drawing bug must not lose the report
                plot_files[name] = f"failed: {type(e).__name__}: {e}"
                got = None
            else:
                plot_files[name] = path.name if got else None
            if got:
                written[name] = Path(got)
            elif path.exists():
                path.unlink()  # a stale plot from an earlier report in this directory
    md_path, json_path = out / MD_NAME, out / JSON_NAME
    _atomic_write(md_path, render_markdown(clean, plot_files if plots else None))
    _atomic_write(json_path, text)
    return {"json": json_path, "markdown": md_path, **written}


# --- the one-screen summary -------------------------------------------------------------

def _clip(line: str) -> str:
    return line if len(line) <= MAX_WIDTH else line[:MAX_WIDTH - 3] + "..."


def _wrap(head: str, items: list[str], indent: str = "  ", sep: str = ", ") -> list[str]:
    """`head item, item, ...` wrapped at MAX_WIDTH, continuation lines indented."""
    lines, cur, first = [], head, True
    for it in items:
        glue = " " if first else sep
        if not first and len(cur) + len(glue) + len(it) > MAX_WIDTH:
            lines.append(cur + sep.rstrip())
            cur, glue = indent, ""
        cur += glue + it
        first = False
    lines.append(cur)
    return lines


def _envelope_lines(result: dict) -> list[str]:
    env = as_dict(result.get("envelope"))
    if not env:
        return [f"envelopes: {MISSING}"]
    out = [f"envelopes: {str(env.get('status', '?')).upper()} (p{fmt(env.get('percentile'), nd=0)}"
           f" per pair)"]
    for tv in envelope_tiers(result):
        thr = fmt(get(tv, "tier", "threshold_ms"), nd=0)
        out.append(f"  {tier_id(tv):<10} {thr:>3} ms {str(tv.get('metric', '')):<7} "
                   f"{str(tv.get('status', '?')).upper():<12} {tv.get('passed', 0)} pass, "
                   f"{tv.get('failed', 0)} fail, {tv.get('insufficient', 0)} insufficient; "
                   f"worst margin {fmt(tv.get('worst_margin_ms'), 'ms', 2, signed=True)}")
    return out


def _metrics_lines(result: dict) -> list[str]:
    m = as_dict(result.get("metrics"))
    if not m:
        placed = placements_per_hub(result)
        if placed:
            return _wrap("placed per hub (from jobs):", [f"{h} {n}" for h, n in placed.items()])
        return [f"placements, SLA, utilization: {MISSING}"]
    out = [f"requests {m.get('requests', '-')}, served {m.get('served', '-')}, refused "
           f"{m.get('refused', '-')}; SLA violations {m.get('sla_violations', '-')} "
           f"({fmt(m.get('sla_violation_pct'))}%); response p50 "
           f"{fmt(get(m, 'response_ms', 'p50'))} / p95 {fmt(get(m, 'response_ms', 'p95'))} ms"]
    placed = placements_per_hub(result, m)
    out += _wrap("placed per hub:", [f"{h} {n}" for h, n in placed.items()] or [MISSING])
    utils = [f"{h} {fmt_pct(v.get('utilization'))}" for h, v in as_dict(m.get("per_hub")).items()
             if isinstance(v, dict)]
    spread = num(m.get("utilization_spread"))
    head = "utilization per hub" + (f" (spread {100 * spread:.1f} pts):" if spread is not None
                                    else ":")
    out += _wrap(head, utils or [MISSING])
    out.append(f"energy cost (illustrative): {fmt(m.get('energy_cost_cny'), 'CNY', 3)}, "
               f"{fmt(m.get('cost_per_unit_hour_cny'), 'CNY/unit-h', 3)}; west share "
               f"{fmt_pct(m.get('west_share'), 0)}; reroutes {m.get('reroutes', '-')}")
    return out


def _scenario_lines(result: dict) -> list[str]:
    kind, sc = result.get("kind"), as_dict(result.get("scenario"))
    if kind in (None, "backbone"):
        return []
    if not sc:
        return [f"{kind}: {MISSING}"]
    if kind == "fiber-cut":
        link = "-".join(str(x) for x in sc.get("link") or ["?"])
        im = as_dict(sc.get("interruption_ms"))
        cuts = dicts(sc.get("cuts"))
        verdicts = [c.get("verdict") for c in cuts if c.get("verdict")]
        new = next((c for c in cuts if num(c.get("new_path_one_way_ms")) is not None), {})
        return [f"fiber cut {link} x{len(cuts)}: interruption median {fmt(im.get('median'))} ms,"
                f" max {fmt(im.get('max'))} ms (target <= 50 ms)",
                f"  new path {fmt(new.get('new_path_one_way_ms'), nd=2)} ms one-way vs "
                f"{new.get('envelope_tier', '?')} {fmt(new.get('envelope_ms'), nd=0)} ms: "
                f"{', '.join(str(v) for v in verdicts) or MISSING}"]
    if kind == "capacity-shift":
        return [f"capacity shift: {sc.get('hub', '?')} {sc.get('action', '?')} at t="
                f"{fmt(sc.get('t_event'))} s; reaction {fmt(sc.get('reaction_ms'), 'ms')}; "
                f"existing flows survived "
                f"{sc.get('existing_survived', '-')}/{sc.get('existing_flows', '-')}"]
    if kind == "policy-comparison":
        rows = [f"{'policy':<16} {'SLA viol':>8} {'refused':>7} {'resp p95':>9} {'spread%':>7} "
                f"{'cost CNY':>9} {'west':>5} {'reroutes':>8}"]
        for p in policies(result):
            m = as_dict(p.get("metrics"))
            rows.append(f"{str(p['policy'])[:16]:<16} {fmt(m.get('sla_violation_pct')) + '%':>8} "
                        f"{text_int(m.get('refused')):>7} "
                        f"{fmt(get(m, 'response_ms', 'p95')):>9} "
                        f"{fmt_pct(m.get('utilization_spread'), 1)[:-1]:>7} "
                        f"{fmt(m.get('energy_cost_cny'), nd=3):>9} "
                        f"{fmt_pct(m.get('west_share'), 0):>5} {text_int(m.get('reroutes')):>8}")
        return ["policy comparison:"] + ["  " + r for r in rows]
    return []


def text_int(x: Any) -> str:
    v = num(x)
    return "-" if v is None else f"{v:g}"


def summary_lines(result: dict) -> list[str]:
    """The one-screen summary: at most 25 lines of at most 100 characters."""
    r = result if isinstance(result, dict) else {}
    status = str(r.get("status") or "unknown").upper()
    wall = f" in {fmt(r.get('wall_s'), 's', 0)}" if num(r.get("wall_s")) is not None else ""
    lines = [f"{r.get('title') or 'EDWC run'}: {status}{wall}"
             + (f" ({r['error']})" if r.get("error") else "")]
    emu = as_dict(get(r, "run", "emulation"))
    counts = site_counts(r)
    policy = get(r, "config", "policy") or get(r, "run", "controller", "policy") or "-"
    seed = get(r, "config", "seed", default=get(r, "run", "seed", default="-"))
    lines += _wrap(f"{r.get('kind', '?')} on", [
        f"{get(r, 'topology', 'name', default='?')} ({sum(counts.values())} sites, "
        f"{len(dicts(get(r, 'topology', 'links')))} links)", f"policy {policy}", f"seed {seed}",
        f"emulation {emu.get('link', '?')}/{emu.get('datapath', '?')}"], sep="; ")
    per_policy = r.get("kind") == "policy-comparison" and bool(policies(r))
    if per_policy and not r.get("metrics"):
        lines += _envelope_lines(r) + _scenario_lines(r)  # the figures are per policy
    else:
        lines += _envelope_lines(r) + _metrics_lines(r) + _scenario_lines(r)
    missing = [k for k in ("envelope", "jobs", "metrics")
               if not r.get(k) and not (per_policy and k != "envelope")]
    if missing:
        lines.append(f"not measured: {', '.join(missing)}")
    errors = [e for e in (r.get("errors") or []) if e]
    if errors:
        lines.append(f"errors: {len(errors)}: {errors[0]}")
    lines = [_clip(ln) for ln in lines]
    if len(lines) > MAX_LINES:
        lines = lines[:MAX_LINES - 1] + ["... (more in report.md)"]
    return lines
