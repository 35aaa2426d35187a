"""`python -m experiments.compare A B`: see :mod:`experiments.report.compare`."""

from common.bootstrap import launch

if __name__ == "__main__":
    launch("experiments.report.compare")
