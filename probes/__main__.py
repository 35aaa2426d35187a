"""`python -m probes`: see :mod:`probes.cli` (run through :mod:`common.bootstrap`)."""

from common.bootstrap import launch

if __name__ == "__main__":
    launch("probes.cli")
