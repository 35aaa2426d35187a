"""Shared bits for benchmark scripts: environment bootstrap, result files, statistics.

Every benchmark imports this module first. Importing it re-executes the script with the
project's virtual environment when the running interpreter lacks the project or its
dependencies (``sudo python benchmarks/X.py`` with Debian's python): see
common/bootstrap.py, loaded here by path because nothing of the project may be importable
yet.
"""

from __future__ import annotations

import json
import os
import platform
import runpy
import statistics
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
runpy.run_path(os.path.join(ROOT, "common", "bootstrap.py"))["ensure_script"]()

RESULTS = os.path.join(ROOT, "benchmarks", "results")


def stats(values: list[float]) -> dict:
    from common.stats import percentile
    if not values:
        return {"n": 0}
    return {"n": len(values), "median": statistics.median(values),
            "p99": percentile(values, 99), "min": min(values), "max": max(values),
            "mean": statistics.fmean(values)}


def machine() -> dict:
    return {"host": platform.node(), "kernel": platform.release(), "cpus": os.cpu_count(),
            "python": platform.python_version(), "loadavg": os.getloadavg(),
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def write(name: str, data: dict) -> str:
    os.makedirs(RESULTS, exist_ok=True)
    path = os.path.join(RESULTS, f"{name}.json")
    with open(path, "w") as f:
        json.dump({"machine": machine(), **data}, f, indent=1)
    print(f"\nwrote {path}")
    return path
