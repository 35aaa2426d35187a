#!/usr/bin/env python3
"""One seeded workload under every built-in (or named) policy, side by side.

    sudo python experiments/policy_compare.py --help

A launcher (standard library only, so that any `python` sudo finds can start it): the
experiment is `experiments.studies.policy_compare`; common/bootstrap.py runs it with the project's
virtual environment when this interpreter lacks the project or its dependencies.
"""

import pathlib
import runpy

BOOTSTRAP = pathlib.Path(__file__).resolve().parents[1] / "common" / "bootstrap.py"

if __name__ == "__main__":
    runpy.run_path(str(BOOTSTRAP))["launch"]("experiments.studies.policy_compare")
