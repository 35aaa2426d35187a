"""Run reports: a directory with report.json (everything), report.md (for people) and PNG plots,
plus the one-screen terminal summary printed at the end of a run.

The input is the run result (experiments.framework.result.RunResult, format
"edwc-report/1", docs/reports.md), or a result dict, which is read with
RunResult.from_dict. A partial result (interrupted or failed run) is normal: every section
renders what is there and says "not measured" for what is not.

    paths = write_report(result, "reports/run-1")   # {"json": ..., "markdown": ..., plots}
    print("\\n".join(summary_lines(result)))

The result is serialised once (RunResult.to_dict, then NaN -> null), and report.md and
the plots are rendered from what was serialised, read back: they show what report.json
holds. Writes are atomic per file (temporary name, then rename), and report.json is
written last: a directory with a report.json holds a complete report.
"""

from __future__ import annotations

import fnmatch
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from experiments.framework.result import Metrics, ResponseTimes, RunResult
from experiments.report import markdown as report_md
from experiments.report.data import (
    FORMAT,
    MISSING,
    PLOT_FILES,
    as_result,
    capacity_shift,
    fiber_cut,
    fmt,
    fmt_pct,
    per_policy,
    placements_per_hub,
    policies,
    sanitize,
    site_counts,
    text,
)

JSON_NAME = "report.json"
MD_NAME = "report.md"
MAX_LINES = 25
MAX_WIDTH = 100


class ReportError(RuntimeError):
    """A report that cannot be written; the message names the directory and the fix."""


def render_markdown(result: RunResult | dict,
                    plots: Mapping[str, str | None] | None = None) -> str:
    """report.md text. `plots`: plot name -> file name relative to the report (None: no data
    for it; a string starting with "failed:" says why it could not be drawn)."""
    return report_md.render(as_result(result), plots)


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
    if not isinstance(result, (RunResult, dict)):
        raise ReportError(f"the run result must be a RunResult or a dict (format {FORMAT}), "
                          f"got {type(result).__name__}")
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
    res = as_result(result)
    doc = sanitize(res.to_dict())
    try:
        data = json.dumps(doc, indent=1, default=str, allow_nan=False) + "\n"
    except (TypeError, ValueError) as e:
        raise ReportError(f"the run result cannot be written as JSON: {e}") from None
    clean = RunResult.from_dict(json.loads(data))  # what report.json holds
    clean.problems[:0] = res.problems  # and what it could not hold
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
    _atomic_write(json_path, data)
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


def _envelope_lines(r: RunResult) -> list[str]:
    env = r.envelope
    if env is None:
        return [f"envelopes: {MISSING}"]
    out = [f"envelopes: {(env.status or '?').upper()} (p{fmt(env.percentile, nd=0)} per pair)"]
    for tv in env.tiers:
        thr = fmt(tv.tier.threshold_ms if tv.tier else None, nd=0)
        out.append(f"  {tv.tier_id:<10} {thr:>3} ms {tv.metric or '':<7} "
                   f"{(tv.status or '?').upper():<12} {tv.passed or 0} pass, "
                   f"{tv.failed or 0} fail, {tv.insufficient or 0} insufficient; "
                   f"worst margin {fmt(tv.worst_margin_ms, 'ms', 2, signed=True)}")
    return out


def _metrics_lines(r: RunResult) -> list[str]:
    m = r.metrics
    if m is None:
        placed = placements_per_hub(r)
        if placed:
            return _wrap("placed per hub (from jobs):", [f"{h} {n}" for h, n in placed.items()])
        return [f"placements, SLA, utilization: {MISSING}"]
    rs = m.response_ms or ResponseTimes()
    out = [f"requests {text(m.requests)}, served {text(m.served)}, refused "
           f"{text(m.refused)}; SLA violations {text(m.sla_violations)} "
           f"({fmt(m.sla_violation_pct)}%); response p50 {fmt(rs.p50)} / p95 {fmt(rs.p95)} ms"]
    placed = placements_per_hub(r, m)
    out += _wrap("placed per hub:", [f"{h} {n}" for h, n in placed.items()] or [MISSING])
    utils = [f"{h} {fmt_pct(v.utilization)}" for h, v in m.per_hub.items()]
    spread = m.utilization_spread
    head = "utilization per hub" + (f" (spread {100 * spread:.1f} pts):" if spread is not None
                                    else ":")
    out += _wrap(head, utils or [MISSING])
    out.append(f"energy cost (illustrative): {fmt(m.energy_cost_cny, 'CNY', 3)}, "
               f"{fmt(m.cost_per_unit_hour_cny, 'CNY/unit-h', 3)}; west share "
               f"{fmt_pct(m.west_share, 0)}; reroutes {text(m.reroutes)}")
    return out


def _scenario_lines(r: RunResult) -> list[str]:
    kind = r.kind
    if kind in (None, "backbone"):
        return []
    if not r.scenario:
        return [f"{kind}: {MISSING}"]
    fc, cs = fiber_cut(r), capacity_shift(r)
    if fc is not None:
        link = "-".join(fc.link or ["?"])
        im = fc.interruption_ms
        verdicts = [c.verdict for c in fc.cuts if c.verdict]
        new = next((c for c in fc.cuts if c.new_path_one_way_ms is not None), None)
        return [f"fiber cut {link} x{len(fc.cuts)}: interruption median "
                f"{fmt(im.median if im else None)} ms, max {fmt(im.max if im else None)} ms "
                "(target <= 50 ms)",
                f"  new path {fmt(new.new_path_one_way_ms if new else None, nd=2)} ms one-way "
                f"vs {(new.envelope_tier if new else None) or '?'} "
                f"{fmt(new.envelope_ms if new else None, nd=0)} ms: "
                f"{', '.join(verdicts) or MISSING}"]
    if cs is not None:
        return [f"capacity shift: {cs.hub or '?'} {cs.action or '?'} at t="
                f"{fmt(cs.t_event)} s; reaction {fmt(cs.reaction_ms, 'ms')}; "
                f"existing flows survived "
                f"{text(cs.existing_survived)}/{text(cs.existing_flows)}"]
    if kind == "policy-comparison":
        rows = [f"{'policy':<16} {'SLA viol':>8} {'refused':>7} {'resp p95':>9} {'spread%':>7} "
                f"{'cost CNY':>9} {'west':>5} {'reroutes':>8}"]
        for p in policies(r):
            m = p.metrics or Metrics()
            rs = m.response_ms or ResponseTimes()
            rows.append(f"{str(p.policy)[:16]:<16} {fmt(m.sla_violation_pct) + '%':>8} "
                        f"{text(m.refused):>7} {fmt(rs.p95):>9} "
                        f"{fmt_pct(m.utilization_spread, 1)[:-1]:>7} "
                        f"{fmt(m.energy_cost_cny, nd=3):>9} "
                        f"{fmt_pct(m.west_share, 0):>5} {text(m.reroutes):>8}")
        return ["policy comparison:"] + ["  " + r for r in rows]
    return []


def summary_lines(result: RunResult | dict) -> list[str]:
    """The one-screen summary: at most 25 lines of at most 100 characters."""
    r = as_result(result)
    status = (r.status or "unknown").upper()
    wall = f" in {fmt(r.wall_s, 's', 0)}" if r.wall_s is not None else ""
    lines = [f"{r.title or 'EDWC run'}: {status}{wall}" + (f" ({r.error})" if r.error else "")]
    emu = r.run.emulation if r.run else None
    ctl = r.run.controller if r.run else None
    counts = site_counts(r)
    policy = (r.config.policy if r.config else None) or (ctl.policy if ctl else None) or "-"
    seed = r.config.seed if r.config and r.config.seed is not None else (
        r.run.seed if r.run and r.run.seed is not None else "-")
    topo = r.topology
    lines += _wrap(f"{r.kind or '?'} on", [
        f"{(topo.name if topo else None) or '?'} ({sum(counts.values())} sites, "
        f"{len(topo.links) if topo else 0} links)", f"policy {policy}", f"seed {seed}",
        f"emulation {(emu.link if emu else None) or '?'}/"
        f"{(emu.datapath if emu else None) or '?'}"], sep="; ")
    by_policy = r.kind == "policy-comparison" and bool(policies(r))
    if per_policy(r):
        lines += _envelope_lines(r) + _scenario_lines(r)  # the figures are per policy
    else:
        lines += _envelope_lines(r) + _metrics_lines(r) + _scenario_lines(r)
    present = {"envelope": r.envelope, "jobs": r.jobs, "metrics": r.metrics}
    missing = [k for k, v in present.items() if not v and not (by_policy and k != "envelope")]
    if missing:
        lines.append(f"not measured: {', '.join(missing)}")
    errors = [e for e in r.errors if e] + [f"report.json: {p}" for p in r.problems]
    if errors:
        lines.append(f"errors: {len(errors)}: {errors[0]}")
    lines = [_clip(ln) for ln in lines]
    if len(lines) > MAX_LINES:
        lines = lines[:MAX_LINES - 1] + ["... (more in report.md)"]
    return lines
