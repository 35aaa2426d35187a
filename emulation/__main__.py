"""`python -m emulation`: see :mod:`emulation.cli` (run through :mod:`common.bootstrap`)."""

from common.bootstrap import launch

if __name__ == "__main__":
    launch("emulation.cli")
