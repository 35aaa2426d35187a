#!/usr/bin/env python3
"""Fibre-cut interruption: the median over repeated cuts of an east-west trunk.

    sudo python benchmarks/fiber_cut_interruption.py [--cuts 10] [--topology edwc]
        [--link auto] [--stream-rate 1000] [--no-workload]

Runs experiments/fiber_cut.py (a subprocess, as a user would) and reads its report: the
interruption of every cut (longest run of lost-or-late packets of a constant-rate UDP
stream across the link, in send time, see probes/stream.py), packets lost, the old and new
path, the new path's one-way p95 against the envelope, and the same for every restore.
Target (issue 5): <= 50 ms with fast-failover groups. Writes
benchmarks/results/fiber_cut_interruption.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import benchlib

TARGET_MS = 50.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cuts", type=int, default=10)
    ap.add_argument("--topology", default="edwc")
    ap.add_argument("--link", default="auto")
    ap.add_argument("--stream-rate", default="1000")
    ap.add_argument("--no-workload", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="edwc-cut-") as tmp:
        out = Path(tmp) / "report"
        cmd = [sys.executable, str(Path(benchlib.ROOT) / "experiments" / "fiber_cut.py"),
               "--topology", args.topology, "--link", args.link, "--cuts", str(args.cuts),
               "--stream-rate", args.stream_rate, "--report-dir", str(out)]
        if args.no_workload:
            cmd.append("--no-workload")
        r = subprocess.run(cmd, capture_output=True, text=True, cwd=benchlib.ROOT, timeout=1800)
        if not (out / "report.json").exists():
            sys.exit(f"fiber_cut.py wrote no report (exit {r.returncode}):\n{r.stderr[-2000:]}")
        rep = json.loads((out / "report.json").read_text())
    sc = rep.get("scenario") or {}
    cuts = sc.get("cuts", [])
    ints = [c["interruption_ms"] for c in cuts if c.get("interruption_ms") is not None]
    rest = [c["restore_interruption_ms"] for c in cuts
            if c.get("restore_interruption_ms") is not None]
    for i, c in enumerate(cuts):
        print(f"cut {i + 1:2}: interruption {c.get('interruption_ms')} ms, lost "
              f"{c.get('lost')}, restore {c.get('restore_interruption_ms')} ms, new path "
              f"{' > '.join(c.get('new_path') or [])} p95 {c.get('new_path_one_way_ms')} ms "
              f"({c.get('verdict')})")
    s, sr = benchlib.stats(ints), benchlib.stats(rest)
    print(f"\n{sc.get('link')} cut {len(ints)}x: interruption median {s.get('median')} ms, "
          f"max {s.get('max')} ms (target {TARGET_MS:g} ms); restore median "
          f"{sr.get('median')} ms; backup coverage {rep.get('scenario_backup_coverage')}")
    benchlib.write("fiber_cut_interruption", {
        "exit": r.returncode, "link": sc.get("link"), "stream": sc.get("stream"),
        "interruption_ms": s, "restore_interruption_ms": sr, "target_ms": TARGET_MS,
        "backup_coverage": rep.get("scenario_backup_coverage"),
        "cuts": cuts, "notes": rep.get("notes"), "errors": rep.get("errors")})


if __name__ == "__main__":
    main()
