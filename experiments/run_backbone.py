#!/usr/bin/env python3
"""Run a complete compute-aware routing experiment on the EDWC backbone and write a report.

    sudo python experiments/run_backbone.py --help

A launcher (standard library only, so that any `python` sudo finds can start it): the
experiment is `experiments.studies.backbone`; common/bootstrap.py runs it with the project's
virtual environment when this interpreter lacks the project or its dependencies.
"""

import pathlib
import runpy

BOOTSTRAP = pathlib.Path(__file__).resolve().parents[1] / "common" / "bootstrap.py"

if __name__ == "__main__":
    runpy.run_path(str(BOOTSTRAP))["launch"]("experiments.studies.backbone")
