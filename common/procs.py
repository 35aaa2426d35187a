"""One way to start and stop the project's own programs (controller, gateway agents, probe
senders and reflectors, load generators, delay lines) on this machine or inside a Mininet
host's namespace.

Every child runs ``python -m MODULE`` with the parent's interpreter, from the project root,
with the project root first on ``PYTHONPATH``: the child runs exactly the code its parent
runs (also from a second checkout, whatever the virtual environment's editable install
points at). Processes are stopped by handle, never by name: SIGTERM, a grace period, then
SIGKILL (:func:`stop`, :func:`stop_all`). Readiness is the caller's predicate, polled by
:func:`wait_ready`, which fails early, with the tail of the child's stderr, when the child
exits first.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, BinaryIO

PROJECT_ROOT = Path(__file__).resolve().parent.parent
STDERR_TAIL_CHARS = 1500


class ProcessError(RuntimeError):
    """A project program exited early or did not become ready."""


def project_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for a child: ``base`` (default: ours) with the project root first on
    PYTHONPATH."""
    env = dict(os.environ if base is None else base)
    rest = env.get("PYTHONPATH")
    env["PYTHONPATH"] = str(PROJECT_ROOT) + (os.pathsep + rest if rest else "")
    return env


def module_command(module: str, args: Sequence[str] = (), python: str | None = None
                   ) -> list[str]:
    """``[python, -m, module, *args]`` with this interpreter unless ``python`` is given."""
    return [python or sys.executable, "-m", module, *map(str, args)]


def start(module: str, args: Sequence[str] = (), *, host: Any = None,
          python: str | None = None, stdout: Any = subprocess.DEVNULL,
          stderr: Any = None, stderr_path: str | os.PathLike | None = None,
          new_session: bool = False) -> subprocess.Popen:
    """Start ``python -m module args``; in Mininet ``host``'s namespace when given.

    ``stderr_path``: the child's stderr goes to this file (read back by :func:`stderr_tail`
    when it fails); otherwise ``stderr`` is passed through (None: inherit, or PIPE).
    ``new_session``: the child gets its own session (a Ctrl-C in our terminal does not reach
    it; we stop it ourselves).
    """
    cmd = module_command(module, args, python)
    kw: dict[str, Any] = {"cwd": str(PROJECT_ROOT), "env": project_env(), "stdout": stdout}
    err_file: BinaryIO | None = None
    if stderr_path is not None:
        err_file = open(stderr_path, "wb")  # noqa: SIM115  (the child keeps its own copy)
        kw["stderr"] = err_file
    else:
        kw["stderr"] = stderr
    try:
        if host is None:
            return subprocess.Popen(cmd, start_new_session=new_session, **kw)
        if new_session:
            kw["start_new_session"] = True
        return host.popen(cmd, **kw)
    finally:
        if err_file is not None:
            err_file.close()


def stop(proc: subprocess.Popen | None, grace_s: float = 3.0) -> int | None:
    """End a process we started, by its handle: SIGTERM, wait ``grace_s``, then SIGKILL.
    Closes its pipes. Returns its exit status (None if it could not be reaped)."""
    if proc is None:
        return None
    stop_all([proc], grace_s)
    return proc.returncode


def stop_all(procs: Iterable[subprocess.Popen], grace_s: float = 3.0) -> None:
    """Stop several at once: SIGTERM to every one first, then wait for each, so that slow
    shutdowns overlap instead of adding up."""
    procs = [p for p in procs if p is not None]
    for p in procs:
        if p.poll() is None:
            try:
                p.terminate()
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + grace_s
    for p in procs:
        try:
            p.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            try:
                p.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                pass
        for f in (p.stdin, p.stdout, p.stderr):
            if f is not None:
                f.close()


def stderr_tail(path: str | os.PathLike | None, chars: int = STDERR_TAIL_CHARS) -> str:
    """The end of a child's stderr file, or a note that there is none."""
    if path is None:
        return "(no stderr file)"
    try:
        text = Path(path).read_text(errors="replace").strip()
    except FileNotFoundError:
        return f"(no stderr file {path})"
    return text[-chars:] if text else "(stderr empty)"


def wait_ready(proc: subprocess.Popen, ready: Callable[[], Any], timeout: float, what: str,
               stderr_path: str | os.PathLike | None = None, poll_s: float = 0.05,
               detail: Callable[[], str] | None = None) -> Any:
    """Poll ``ready()`` until it returns something true and return that; raise ProcessError
    when the process exits first (with its stderr tail) or after ``timeout`` seconds (with
    ``detail()``, e.g. a log tail)."""
    deadline = time.monotonic() + timeout
    while True:
        got = ready()
        if got:
            return got
        if proc.poll() is not None:
            raise ProcessError(f"{what} exited with status {proc.returncode}:\n"
                               f"{stderr_tail(stderr_path)}")
        if time.monotonic() >= deadline:
            more = detail() if detail is not None else stderr_tail(stderr_path)
            raise ProcessError(f"{what} not ready after {timeout:g} s\n{more}")
        time.sleep(poll_s)
