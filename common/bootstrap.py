"""Run a project program under an interpreter that has the project and its dependencies.

Standard library only: this module runs before anything else is importable. Every command
the README names (``sudo python experiments/run_backbone.py``, ``sudo python -m topology``,
...) starts here and calls :func:`launch` with the module that holds the program. When the
running interpreter can import the project and its dependencies (Mininet, os-ken, networkx,
PyYAML, matplotlib), the program's ``main()`` runs in this process. Otherwise (Debian's
``python`` under sudo, a pyenv interpreter) the same program is started again with the
project's virtual environment (``.venv``, made by ``./setup.sh``, where the project is
installed), as ``.venv/bin/python -m MODULE ARGS``.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from typing import NoReturn

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENV = os.path.join(ROOT, ".venv")
VENV_PYTHON = os.path.join(VENV, "bin", "python")
DEPENDENCIES = ("mininet", "os_ken", "networkx", "yaml", "matplotlib")
PROJECT = ("common", "topology", "emulation", "controller", "gateway", "probes", "experiments")
_GUARD = "EDWC_TESTBED_REEXEC"


def _importable(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def missing_modules() -> list[str]:
    """Project packages and dependencies this interpreter cannot import."""
    return [m for m in (*PROJECT, *DEPENDENCIES) if not _importable(m)]


def _in_venv() -> bool:
    return os.path.realpath(sys.prefix) == os.path.realpath(VENV)


def launch(module: str, argv: list[str] | None = None) -> NoReturn:
    """Run ``module.main(argv)`` here, or re-execute as ``.venv/bin/python -m module``."""
    args = sys.argv[1:] if argv is None else argv
    missing = missing_modules()
    if not missing:
        sys.exit(importlib.import_module(module).main(args))
    if os.path.exists(VENV_PYTHON) and not _in_venv() and not os.environ.get(_GUARD):
        env = dict(os.environ, **{_GUARD: "1"})
        os.execve(VENV_PYTHON, [VENV_PYTHON, "-m", module, *args], env)
    _explain(missing)


def _explain(missing: list[str]) -> NoReturn:
    sys.stderr.write(
        f"error: cannot import {', '.join(missing)} with {sys.executable}.\n"
        f"Run ./setup.sh in {ROOT} first (it installs Mininet, Open vSwitch, the Python\n"
        "dependencies and this project into .venv), then run this command again.\n")
    sys.exit(2)


def ensure_script() -> None:
    """For a script run by path (``python benchmarks/X.py``): return when this interpreter
    has the project and its dependencies, else re-execute the script with .venv's python."""
    missing = missing_modules()
    if not missing:
        return
    if os.path.exists(VENV_PYTHON) and not _in_venv() and not os.environ.get(_GUARD):
        env = dict(os.environ, **{_GUARD: "1"})
        os.execve(VENV_PYTHON, [VENV_PYTHON, os.path.abspath(sys.argv[0]), *sys.argv[1:]],
                  env)
    _explain(missing)
