#!/usr/bin/env python3
"""A fibre cut on an east-west trunk under traffic: interruption and the new path's delay.

    sudo python experiments/fiber_cut.py --help

A launcher (standard library only, so that any `python` sudo finds can start it): the
experiment is `experiments.studies.fiber_cut`; common/bootstrap.py runs it with the project's
virtual environment when this interpreter lacks the project or its dependencies.
"""

import pathlib
import runpy

BOOTSTRAP = pathlib.Path(__file__).resolve().parents[1] / "common" / "bootstrap.py"

if __name__ == "__main__":
    runpy.run_path(str(BOOTSTRAP))["launch"]("experiments.studies.fiber_cut")
