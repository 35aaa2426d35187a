"""`python -m topology`: see :mod:`topology.cli` (run through :mod:`common.bootstrap`)."""

from common.bootstrap import launch

if __name__ == "__main__":
    launch("topology.cli")
