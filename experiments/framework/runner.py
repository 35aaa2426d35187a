"""The experiment runner every script under experiments/ shares: phases, progress, the
emulation, envelope verification, driving a workload, and the report.

An `Experiment` owns one run result (experiments.framework.result.RunResult, format
"edwc-report/1", see docs/reports.md) and its phases fill its typed sections. Whatever
happens (Ctrl-C, SIGTERM, an error), `Experiment.run` tears down what was built, runs the
finalizers, and still writes the report of what was measured, marked "interrupted" or
"failed", naming the phase.

    exp = Experiment("backbone", "EDWC backbone", config, report_dir)
    def body(exp):
        with exp.phase("build"):
            emu = exp.start_emulation(net, **options)
        ...
    return exp.run(body)            # exit status: 0 complete, 1 failed checks, 2 error, 130 ^C
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from common.procs import PROJECT_ROOT as REPO_ROOT
from experiments.framework.result import (
    Config,
    LinkInfo,
    Phase,
    RunDescription,
    RunResult,
    SiteInfo,
    Topology,
)

REPORTS_DIR = REPO_ROOT / "reports"


class ExperimentError(RuntimeError):
    """A run cannot go on (the message names the problem and the fix)."""


def _now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def testbed_commit() -> str | None:
    """The git commit of this checkout (with '+dirty' when it has local changes)."""
    try:
        head = subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "HEAD"],
                              capture_output=True, text=True, timeout=5)
        if head.returncode != 0:
            return None
        dirty = subprocess.run(["git", "-C", str(REPO_ROOT), "status", "--porcelain",
                                "--untracked-files=no"], capture_output=True, text=True,
                               timeout=5)
        return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def default_report_dir(kind: str) -> Path:
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    base = REPORTS_DIR / f"{kind}-{stamp}"
    path, n = base, 1
    while path.exists():
        n += 1
        path = Path(f"{base}-{n}")
    return path


def check_report_dir(path: Path) -> Path:
    """Refuse a report directory that already holds files (before anything is built)."""
    path = Path(path)
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise ExperimentError(f"report directory {path} exists and is not empty: give a new "
                              "--report-dir (or delete the old report)")
    return path


def topology_section(net: Any) -> Topology:
    """The topology as reports draw it: sites with coordinates, region, hub, zone and
    compute, links with their one-way delays both ways."""
    sites = []
    for s in net.sites:
        c = s.compute
        sites.append(SiteInfo(
            id=s.id, name=s.name, kind=s.kind, lat=s.lat, lon=s.lon, region=s.region,
            hub=s.hub or (s.id if s.kind == "hub" else None), zone=s.zone,
            units=dict(c.units) if c else {}, price=c.energy_price if c else None,
            green=c.green_share if c else None, pue=c.pue if c else None))
    links = [LinkInfo(a=ln.a, b=ln.b, delay_ms_ab=ln.delay_ms, delay_ms_ba=ln.delay_ms_reverse,
                      length_km=ln.fiber_km or ln.distance_km, bandwidth_mbps=ln.bandwidth_mbps)
             for ln in net.links]
    return Topology(name=net.name, source=net.source, sites=sites, links=links)


class Progress:
    """Timestamped progress lines: '[  12.3 s] phase: message'."""

    def __init__(self, t0: float | None = None, stream=None) -> None:
        self.t0 = time.monotonic() if t0 is None else t0
        self.stream = stream or sys.stdout
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self._live = False

    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    def __call__(self, msg: str) -> None:
        self._end_live()
        print(f"[{self.elapsed():6.1f} s] {msg}", file=self.stream, flush=True)

    def live(self, msg: str) -> None:
        """A line that updates in place on a terminal (one line per call otherwise, so
        logs stay readable: callers rate-limit)."""
        if self.tty:
            print(f"\r[{self.elapsed():6.1f} s] {msg}\033[K", end="", file=self.stream,
                  flush=True)
            self._live = True
        else:
            self(msg)

    def _end_live(self) -> None:
        if self._live:
            print(file=self.stream)
            self._live = False


def _terminate(signum, frame):  # SIGTERM (a CI timeout, `kill`) stops like Ctrl-C
    raise KeyboardInterrupt


class Experiment:
    """One run: its RunResult, its phases, its emulation, its report."""

    def __init__(self, kind: str, title: str, config: dict, report_dir: Path | None,
                 progress: Progress | None = None) -> None:
        self.progress = progress or Progress()
        self.report_dir = Path(report_dir) if report_dir else default_report_dir(kind)
        self.emu: Any = None
        self.result = RunResult(kind=kind, title=title, status="running",
                                started_at=_now_iso())
        self.result.config = Config.from_dict(
            dict(config, argv=list(sys.argv), testbed_commit=testbed_commit()),
            self.result.problems, "config")
        self.checks_failed: list[str] = []
        # Run before teardown whatever happened (e.g. compute the metrics of an interrupted
        # workload while the controller still answers); each one at most once.
        self.finalizers: list[Callable[[], None]] = []

    # ---- phases ---------------------------------------------------------------------------
    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        rec = Phase(name=name, status="running")
        self.result.phases.append(rec)
        self.progress(f"{name} ...")
        t0 = time.monotonic()
        try:
            yield
        except KeyboardInterrupt:
            rec.status = "interrupted"
            raise
        except BaseException:
            rec.status = "failed"
            raise
        else:
            rec.status = "ok"
        finally:
            rec.s = round(time.monotonic() - t0, 3)
            if rec.status == "ok":
                self.progress(f"{name} done in {rec.s:.1f} s")

    def note(self, text: str) -> None:
        self.result.notes.append(text)
        self.progress(f"note: {text}")

    def fail_check(self, text: str) -> None:
        """A measured check failed (exit status 1), the run goes on."""
        self.checks_failed.append(text)
        self.result.errors.append(text)
        self.progress(f"CHECK FAILED: {text}")

    # ---- the emulation --------------------------------------------------------------------
    def start_emulation(self, net: Any, **options: Any) -> Any:
        from emulation.network import Emulation

        self.result.topology = topology_section(net)
        self.emu = Emulation(net, log=self.progress, **options)
        try:
            self.emu.start()
        finally:
            if self.emu.plan is not None:
                self.result.run = self._describe(self.emu)
        st = self.emu.controller_status()
        self.progress(f"up: {len(self.emu.plan.switches)} switches, {len(self.emu.plan.hosts)}"
                      f" hosts, {len(self.emu.plan.links)} links, "
                      f"{len(st.get('gateways_alive', []))} gateways alive "
                      f"(run {self.emu.run_id})")
        return self.emu

    def stop_emulation(self) -> None:
        if self.emu is None:
            return
        emu, self.emu = self.emu, None
        try:
            emu.stop()
        finally:
            if emu.plan is not None:
                self.result.run = self._describe(emu)

    def _describe(self, emu: Any) -> RunDescription:
        return RunDescription.from_dict(emu.describe(), self.result.problems, "run")

    # ---- running ----------------------------------------------------------------------------
    def run(self, body: Callable[[Experiment], None], cli: bool = False) -> int:
        """Run ``body``, tear down, write the report, print the summary; exit status."""
        from emulation.linkmode import EmulationError
        from emulation.network import BuildError
        from topology.model import TopologyError

        old = signal.signal(signal.SIGTERM, _terminate)
        code = 0
        try:
            try:
                body(self)
                if cli and self.emu is not None:
                    from mininet.cli import CLI

                    import emulation.mncompat  # noqa: F401
                    self.progress("Mininet CLI: type 'exit' to tear down and write the report")
                    CLI(self.emu.net)
                self.result.status = "complete"
                code = 1 if self.checks_failed else 0
            except KeyboardInterrupt:
                self.result.status = "interrupted"
                self.result.error = f"interrupted during {self._current_phase()}"
                self.progress(f"interrupted during {self._current_phase()}: tearing down, "
                              "writing what was measured")
                code = 130
            except (ExperimentError, BuildError, EmulationError, TopologyError, ValueError,
                    OSError) as e:
                self.result.status = "failed"
                self.result.error = f"{type(e).__name__}: {e}"
                print(f"error: {e}", file=sys.stderr)
                code = 2
            except Exception as e:  # a bug: show it, but still tear down and report
                import traceback
                traceback.print_exc()
                self.result.status = "failed"
                self.result.error = f"internal error {type(e).__name__}: {e}"
                code = 2
            finally:
                # A second Ctrl-C during teardown must not leave the run behind.
                with _sigint_deferred():
                    while self.finalizers:
                        fn = self.finalizers.pop(0)
                        try:
                            fn()
                        except Exception as e:
                            self.result.errors.append(f"finalizing: {e}")
                    try:
                        with self.phase("teardown"):
                            self.stop_emulation()
                    except Exception as e:  # keep going: the report must still be written
                        self.result.errors.append(f"teardown: {e}")
        finally:
            signal.signal(signal.SIGTERM, old)
        with _sigint_deferred():
            self._write()
        return code

    def _current_phase(self) -> str:
        running = [p.name for p in self.result.phases if p.status != "ok"]
        return running[-1] if running else "start"

    def _write(self) -> None:
        from experiments.report.build import summary_lines, write_report

        r = self.result
        r.finished_at = _now_iso()
        r.wall_s = round(self.progress.elapsed(), 3)
        # what a phase could not record in its typed section is said in the report
        r.errors += [f"result: {p} (left out)" for p in r.problems]
        r.problems = []
        try:
            paths = write_report(r, self.report_dir)
        except Exception as e:  # the report is the product: say where the JSON went
            fallback = Path(f"/tmp/edwc-report-{os.getpid()}.json")
            fallback.write_text(json.dumps(r.to_dict(), indent=1, default=str))
            print(f"error: could not write the report to {self.report_dir}: {e}; the raw "
                  f"result is in {fallback}", file=sys.stderr)
            return
        print()
        for line in summary_lines(r):
            print(line)
        print(f"\nreport: {self.report_dir}/report.md ({len(paths)} files, "
              f"{r.wall_s:.0f} s in all)")


@contextlib.contextmanager
def _sigint_deferred() -> Iterator[None]:
    """Hold SIGINT/SIGTERM while cleaning up; deliver a KeyboardInterrupt afterwards only
    if the caller still runs (the cleanup itself always completes)."""
    got: list[int] = []
    handler = lambda signum, frame: got.append(signum)  # noqa: E731
    old_int = signal.signal(signal.SIGINT, handler)
    old_term = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old_int)
        signal.signal(signal.SIGTERM, old_term)
        if got:
            print("(a second interrupt arrived during cleanup; cleanup was completed)",
                  file=sys.stderr)
