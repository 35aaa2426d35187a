"""Make `sudo python experiments/X.py` work whichever `python` sudo finds.

Standard library only. If the running interpreter cannot import the testbed's
dependencies (Mininet, os-ken, networkx, PyYAML, matplotlib), re-execute the script with
the project's virtual environment (.venv, made by ./setup.sh), whose python sees Debian's
Mininet and the pinned packages.
"""

from __future__ import annotations

import importlib.util
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENV_PYTHON = os.path.join(ROOT, ".venv", "bin", "python")
REQUIRED = ("mininet", "os_ken", "networkx", "yaml", "matplotlib")
_GUARD = "EDWC_TESTBED_REEXEC"


def missing_modules() -> list[str]:
    return [m for m in REQUIRED if importlib.util.find_spec(m) is None]


def ensure() -> None:
    if ROOT not in sys.path:
        sys.path.insert(0, ROOT)
    missing = missing_modules()
    if not missing:
        return
    in_venv = os.path.realpath(sys.prefix) == os.path.realpath(os.path.join(ROOT, ".venv"))
    if os.path.exists(VENV_PYTHON) and not in_venv and not os.environ.get(_GUARD):
        env = dict(os.environ, **{_GUARD: "1"})
        main = os.path.abspath(sys.argv[0])
        if os.path.basename(main) == "__main__.py" and main.startswith(ROOT + os.sep):
            # started as `python -m package`: run it the same way
            package = os.path.relpath(os.path.dirname(main), ROOT).replace(os.sep, ".")
            argv = [VENV_PYTHON, "-m", package, *sys.argv[1:]]
        else:
            argv = [VENV_PYTHON, *sys.argv]
        os.execve(VENV_PYTHON, argv, env)
    sys.stderr.write(
        f"error: cannot import {', '.join(missing)} with {sys.executable}.\n"
        f"Run ./setup.sh in {ROOT} first (it installs Mininet, Open vSwitch and the Python\n"
        "dependencies into .venv), then run this command again.\n")
    sys.exit(2)
