#!/usr/bin/env python3
"""Wall time of the front door: `run_backbone.py` with no arguments and with --quick.

    sudo python benchmarks/experiment_walltime.py [--runs 1] [--topology edwc] [--skip-default]

Runs the script as a user does (a subprocess, its own report directory under a temporary
directory), then reads the report: total wall time (the process, start to exit) and the
time of every phase (build, envelope, workload, teardown...). Targets (issue 5): a complete
default run <= 180 s, a --quick run <= 45 s. Writes benchmarks/results/experiment_walltime.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import benchlib

TARGETS = {"default": 180.0, "quick": 45.0}


def one(kind: str, topology: str, out: Path) -> dict:
    args = [sys.executable, str(Path(benchlib.ROOT) / "experiments" / "run_backbone.py"),
            "--topology", topology, "--report-dir", str(out)]
    if kind == "quick":
        args.append("--quick")
    t0 = time.monotonic()
    r = subprocess.run(args, capture_output=True, text=True, cwd=benchlib.ROOT, timeout=1200)
    wall = time.monotonic() - t0
    rep = json.loads((out / "report.json").read_text()) if (out / "report.json").exists() \
        else {}
    phases = {p["name"]: p["s"] for p in rep.get("phases", [])}
    m = rep.get("metrics") or {}
    row = {"kind": kind, "exit": r.returncode, "wall_s": round(wall, 2), "phases_s": phases,
           "status": rep.get("status"), "requests": m.get("requests"),
           "served": m.get("served"), "envelope": (rep.get("envelope") or {}).get("status"),
           "target_s": TARGETS[kind], "meets_target": wall <= TARGETS[kind]}
    print(f"{kind:8} exit {r.returncode}  wall {wall:6.1f} s (target {TARGETS[kind]:.0f} s)  "
          + "  ".join(f"{k} {v:.1f}" for k, v in phases.items() if v is not None))
    if r.returncode not in (0, 1):
        print(r.stderr[-1500:])
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--topology", default="edwc")
    ap.add_argument("--skip-default", action="store_true", help="only the --quick run")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="edwc-walltime-") as tmp:
        for i in range(args.runs):
            for kind in (("quick",) if args.skip_default else ("default", "quick")):
                rows.append(one(kind, args.topology, Path(tmp) / f"{kind}-{i}"))
    summary = {k: benchlib.stats([r["wall_s"] for r in rows if r["kind"] == k])
               for k in TARGETS}
    for k, s in summary.items():
        if s["n"]:
            print(f"{k}: median {s['median']:.1f} s over {s['n']} run(s), target "
                  f"{TARGETS[k]:.0f} s")
    benchlib.write("experiment_walltime", {"topology": args.topology, "runs": rows,
                                         "summary": summary, "targets_s": TARGETS})


if __name__ == "__main__":
    main()
