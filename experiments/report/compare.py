"""Put two or more report directories side by side.

    python -m experiments.compare reports/run-a reports/run-b [--out compare.md] [--json c.json]

Reads each directory's report.json (written by experiments.report.build.write_report; older
ones too) as a RunResult, prints one
table with a row per key figure and a column per run (a policy-comparison run gives one
column per policy, labelled DIR/POLICY), then the configuration keys whose values differ
between the runs. --out writes the same as Markdown (a .md file, or compare.md inside a
directory); --json writes the table as JSON. Exit status 2 when a directory has no readable
report, naming the directory and the fix. Values of a report that are not of their type
are left out, and said on stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from experiments.framework.result import ConnectTimes, Metrics, ResponseTimes, RunResult
from experiments.report.data import (
    FORMAT,
    capacity_shift,
    fiber_cut,
    fmt,
    fmt_pct,
    policies,
    text,
)

REPORT_JSON = "report.json"
MAX_BYTES = 256 * 1024 * 1024


class CompareError(ValueError):
    """A report directory that cannot be compared; the message names it and the fix."""


def load_report(path: str | Path) -> RunResult:
    """The run result of a report directory (or of a report.json given directly)."""
    p = Path(path)
    f = p / REPORT_JSON if p.is_dir() else p
    if not p.exists():
        raise CompareError(f"{p}: no such directory; give report directories written by "
                           "run_backbone.py or a scenario (they hold report.json)")
    if not f.is_file():
        raise CompareError(f"{p}: no {REPORT_JSON} in it; is this a report directory? (an "
                           "interrupted run that never reached the report has none)")
    try:
        if f.stat().st_size > MAX_BYTES:
            raise CompareError(f"{f}: larger than {MAX_BYTES} bytes; not a report")
        doc = json.loads(f.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise CompareError(f"{f}: not valid JSON (line {e.lineno}, column {e.colno}: {e.msg}); "
                           "the file is corrupt: rerun the experiment") from None
    except (OSError, UnicodeDecodeError) as e:
        raise CompareError(f"{f}: cannot read: {e}") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        got = doc.get("format") if isinstance(doc, dict) else type(doc).__name__
        raise CompareError(f"{f}: format is {got!r}, expected {FORMAT!r}; not a run report "
                           "(an envelope report from `python -m probes envelope` cannot be "
                           "compared here)")
    return RunResult.from_dict(doc)


def _labels(paths: Sequence[str | Path]) -> list[str]:
    """Directory names; parent/name where two runs share a name."""
    names = [Path(p).resolve().name for p in paths]
    out = []
    for p, n in zip(paths, names):
        out.append(f"{Path(p).resolve().parent.name}/{n}" if names.count(n) > 1 else n)
    return out


def _columns(label: str, r: RunResult) -> list[tuple[str, Metrics, str | None]]:
    """(label, metrics, policy) per column: one per run, one per policy for a comparison."""
    ps = policies(r)
    if ps:
        return [(f"{label}/{p.policy}", p.metrics or Metrics(), p.policy) for p in ps]
    ctl = r.run.controller if r.run else None
    policy = (r.config.policy if r.config else None) or (ctl.policy if ctl else None)
    return [(label, r.metrics or Metrics(), policy)]


def _pct_text(x: float | None) -> str:
    v = fmt(x)
    return v if v == "-" else f"{v}%"


def _scenario_figures(r: RunResult) -> tuple[str, str]:
    fc, cs = fiber_cut(r), capacity_shift(r)
    cut = fmt(fc.interruption_ms.median, "ms") if fc and fc.interruption_ms else ""
    react = fmt(cs.reaction_ms, "ms") if cs else ""
    return cut, react


def comparison(paths: Sequence[str | Path]) -> dict:
    """{"columns": [...], "rows": [[figure, value...]], "config_differences": [[key,
    value per run...]], "runs": [...]}; raises CompareError for an unusable directory."""
    results = [load_report(p) for p in paths]
    labels = _labels(paths)
    for label, r in zip(labels, results):
        for problem in r.problems:
            print(f"compare: {label}: report.json: {problem} (left out)", file=sys.stderr)
    tier_ids = list(dict.fromkeys(t.tier_id for r in results
                                  for t in (r.envelope.tiers if r.envelope else [])))
    columns: list[str] = []
    cells: list[dict[str, str]] = []
    for label, r in zip(labels, results):
        cut, react = _scenario_figures(r)
        emu = r.run.emulation if r.run else None
        tiers = {t.tier_id: t for t in (r.envelope.tiers if r.envelope else [])}
        topo = (r.topology.name if r.topology else None) or (r.run.topology if r.run else None)
        seed = r.config.seed if r.config and r.config.seed is not None else (
            r.run.seed if r.run else None)
        for col, m, policy in _columns(label, r):
            rs, cs = m.response_ms or ResponseTimes(), m.connect_ms or ConnectTimes()
            c = {"status": r.status or "-", "kind": r.kind or "-",
                 "topology": topo or "-", "policy": policy or "-", "seed": text(seed),
                 "link emulation": f"{(emu.link if emu else None) or '-'}/"
                                   f"{(emu.datapath if emu else None) or '-'}",
                 "duration": fmt(r.config.configured_duration_s if r.config else None, "s", 0),
                 "wall": fmt(r.wall_s, "s"),
                 "requests": text(m.requests), "served": text(m.served),
                 "refused": text(m.refused),
                 "SLA violations": _pct_text(m.sla_violation_pct),
                 "response p50": fmt(rs.p50, "ms", 2), "response p95": fmt(rs.p95, "ms", 2),
                 "connect p50": fmt(cs.p50, "ms", 2),
                 "utilization spread": fmt_pct(m.utilization_spread, 2),
                 "energy cost (illustr.)": fmt(m.energy_cost_cny, "CNY", 3),
                 "west share": fmt_pct(m.west_share),
                 "reroutes": text(m.reroutes),
                 "envelopes": ((r.envelope.status if r.envelope else None) or "-").upper(),
                 "fiber-cut interruption median": cut or "-",
                 "capacity-shift reaction": react or "-"}
            for tid in tier_ids:
                t = tiers.get(tid)
                c[f"envelope {tid}"] = (f"{(t.status or '?').upper()} "
                                        f"{t.passed or 0}/{t.pairs or 0}" if t else "-")
            columns.append(col)
            cells.append(c)
    figures = list(cells[0]) if cells else []
    rows = [[f] + [c.get(f, "-") for c in cells] for f in figures]
    return {"runs": labels, "columns": columns, "rows": rows,
            "config_differences": config_differences(results)}


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(d, dict):
        return {prefix.rstrip("."): d} if prefix else {}
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def config_differences(results: Sequence[RunResult]) -> list[list[str]]:
    """[key, value per run] for every config key (and software version) that differs.
    argv is left out: it restates the options."""
    flats = []
    for r in results:
        f = {k: v for k, v in _flatten(r.config.to_dict() if r.config else {}).items()
             if k != "argv"}
        f.update({f"versions.{k}": v for k, v in (r.run.versions if r.run else {}).items()})
        flats.append(f)
    keys = list(dict.fromkeys(k for f in flats for k in f))
    missing = object()
    out = []
    for k in keys:
        vals = [f.get(k, missing) for f in flats]
        if any(v != vals[0] for v in vals[1:]):
            out.append([k] + ["(absent)" if v is missing else json.dumps(v, default=str)
                              for v in vals])
    return out


# --- rendering ------------------------------------------------------------------------------

def render_text(cmp: dict) -> str:
    head = ["figure"] + cmp["columns"]
    rows = cmp["rows"]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]

    def line(r: list[str]) -> str:
        return "  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip()
    out = [line(head), line(["-" * w for w in widths])] + [line(r) for r in rows]
    out += ["", "Differences in configuration:"]
    diffs = cmp["config_differences"]
    if diffs:
        dh = ["key"] + cmp["runs"]
        dw = [max(len(str(x)) for x in col) for col in zip(dh, *diffs)]
        out += ["  " + "  ".join(str(c).ljust(w) for c, w in zip(r, dw)).rstrip()
                for r in [dh, ["-" * w for w in dw]] + diffs]
    else:
        out.append("  none (same configuration)")
    return "\n".join(out)


def _md_row(cells: Sequence[Any]) -> str:
    return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"


def render_markdown(cmp: dict) -> str:
    out = ["# Run comparison", "", f"Runs: {', '.join(cmp['runs'])}", "",
           _md_row(["figure"] + cmp["columns"]), "|" + "---|" * (len(cmp["columns"]) + 1)]
    out += [_md_row(r) for r in cmp["rows"]]
    out += ["", "## Differences in configuration", ""]
    if cmp["config_differences"]:
        out += [_md_row(["key"] + cmp["runs"]), "|" + "---|" * (len(cmp["runs"]) + 1)]
        out += [_md_row(r) for r in cmp["config_differences"]]
    else:
        out.append("None: the runs share their configuration.")
    return "\n".join(out) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m experiments.compare",
                                 description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dirs", nargs="+", metavar="DIR", help="report directories (two or more)")
    ap.add_argument("--out", metavar="DIR_OR_FILE.md",
                    help="also write the comparison as Markdown (compare.md in a directory)")
    ap.add_argument("--json", metavar="FILE", help="also write the comparison as JSON")
    args = ap.parse_args(argv)
    if len(args.dirs) < 2:
        print("compare: give at least two report directories", file=sys.stderr)
        return 2
    try:
        cmp = comparison(args.dirs)
    except CompareError as e:
        print(f"compare: {e}", file=sys.stderr)
        return 2
    print(render_text(cmp))
    try:
        if args.out:
            out = Path(args.out)
            if out.suffix.lower() != ".md":
                out.mkdir(parents=True, exist_ok=True)
                out = out / "compare.md"
            out.write_text(render_markdown(cmp), encoding="utf-8")
            print(f"[markdown] {out}")
        if args.json:
            Path(args.json).write_text(json.dumps(cmp, indent=1) + "\n", encoding="utf-8")
            print(f"[json] {args.json}")
    except OSError as e:
        print(f"compare: cannot write the output: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
