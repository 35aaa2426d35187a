"""The delay line as an OS process: :class:`DelayLineProcess` (start, ready, stop, stats,
compensation) in the parent, :func:`main` (``python -m emulation.delayline CONFIG``) in
the child."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from common import procs
from emulation.delayline.config import (
    FORMAT,
    DelayLineError,
    Hop,
    atomic_write,
    validate_config,
    validate_hops,
)
from emulation.delayline.relay import Relay


class DelayLineProcess:
    """One delay-line OS process serving a set of hops."""

    def __init__(self, proc: subprocess.Popen, config_path: str, stats_path: str,
                 ready_path: str, log_path: str):
        self._proc = proc
        self.pid = proc.pid
        self.config_path = config_path
        self.stats_path = stats_path
        self.ready_path = ready_path
        self.log_path = log_path
        self._stopped = False

    @classmethod
    def start(cls, hops: list[Hop], run_dir: str, name: str, seed: int,
              python: str = sys.executable, ready_timeout: float = 5.0,
              netns: str | None = None, rt_priority: int = 0) -> DelayLineProcess:
        """Start one delay-line process; with `netns`, inside that named network namespace
        (`ip netns exec` execs in place, so the pid is the relay's own)."""
        hops = validate_hops(list(hops))
        os.makedirs(run_dir, exist_ok=True)
        base = os.path.join(run_dir, name)
        cfg = {"format": FORMAT, "seed": seed, "rt_priority": rt_priority,
               "stats_path": base + ".stats.json",
               "ready_path": base + ".ready", "hops": [h.to_json() for h in hops]}
        validate_config(cfg)
        for p in (cfg["ready_path"], cfg["stats_path"]):
            if os.path.exists(p):
                os.unlink(p)
        config_path = base + ".json"
        atomic_write(config_path, json.dumps(cfg, indent=1) + "\n")
        log_path = base + ".log"
        with open(log_path, "ab") as log:
            # `ip netns exec` in front of the program: common.procs' command and environment
            prefix = ["ip", "netns", "exec", netns] if netns else []
            proc = subprocess.Popen(
                [*prefix, *procs.module_command("emulation.delayline", [config_path], python)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
                env=procs.project_env(), cwd=str(procs.PROJECT_ROOT))
        self = cls(proc, config_path, cfg["stats_path"], cfg["ready_path"], log_path)
        deadline = time.monotonic() + ready_timeout
        while True:
            if os.path.exists(self.ready_path):
                return self
            rc = proc.poll()
            if rc is not None:
                raise DelayLineError(
                    f"delay line {name!r} exited with code {rc} before becoming ready; "
                    f"log {log_path}:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                self.stop()
                raise DelayLineError(
                    f"delay line {name!r} (pid {self.pid}) not ready after {ready_timeout} s; "
                    f"stopped it; log {log_path}:\n{self.log_tail()}")
            time.sleep(0.01)

    def set_compensation(self, compensation_us: float, timeout: float = 2.0) -> None:
        """Give every hop a new compensation (rewrite the config, SIGHUP, wait until the
        process reports it)."""
        with open(self.config_path) as f:
            cfg = json.load(f)
        for h in cfg["hops"]:
            h["compensation_us"] = compensation_us
        validate_config(cfg)
        atomic_write(self.config_path, json.dumps(cfg, indent=1) + "\n")
        before = self.stats(refresh=True).get("reloads", 0)
        self._proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.stats(refresh=True).get("reloads", 0) > before:
                return
            time.sleep(0.02)
        raise DelayLineError(f"delay line pid {self.pid} did not take the new compensation")

    def log_tail(self, lines: int = 20) -> str:
        try:
            with open(self.log_path, errors="replace") as f:
                return "".join(f.readlines()[-lines:])
        except OSError:
            return "(no log)"

    def alive(self) -> bool:
        return self._proc.poll() is None

    def stop(self, timeout: float = 3.0) -> int | None:
        """SIGTERM, wait, then SIGKILL; idempotent; acts on this pid only."""
        if self._proc.poll() is None:
            try:
                self._proc.send_signal(signal.SIGTERM)
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._stopped = True
        return self._proc.returncode

    def stats(self, refresh: bool = True, timeout: float = 2.0) -> dict:
        """Read the stats file; if the process runs and ``refresh``, ask for fresh figures."""
        if refresh and self._proc.poll() is None:
            old = self._read_stats_or_none()
            old_seq = old.get("seq") if old else None
            self._proc.send_signal(signal.SIGUSR1)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                cur = self._read_stats_or_none()
                if cur is not None and cur.get("seq") != old_seq:
                    return cur
                time.sleep(0.01)
            raise DelayLineError(f"delay line pid {self.pid} did not write stats in {timeout} s")
        cur = self._read_stats_or_none()
        if cur is None:
            raise DelayLineError(f"no stats file {self.stats_path}; log:\n{self.log_tail()}")
        return cur

    def _read_stats_or_none(self) -> dict | None:
        try:
            with open(self.stats_path) as f:
                return json.load(f)
        except (OSError, ValueError):
            return None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


# --------------------------------------------------------------------------- CLI

def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1 or argv[0] in ("-h", "--help"):
        print("usage: python -m emulation.delayline CONFIG.json", file=sys.stderr)
        return 2
    path = argv[0]
    try:
        try:
            with open(path) as f:
                obj = json.load(f)
        except OSError as e:
            raise DelayLineError(f"cannot read config {path!r}: {e.strerror}") from None
        except ValueError as e:
            raise DelayLineError(f"config {path!r} is not valid JSON: {e}") from None
        hops = validate_config(obj)
        relay = Relay(hops, obj.get("seed", 0), obj["stats_path"], obj["ready_path"])
        relay.config_path = path
        relay.rt_priority = obj.get("rt_priority", 0)
        try:
            relay.serve()
        except DelayLineError:
            relay.close()
            raise
    except DelayLineError as e:
        print(f"delayline: error: {e}", file=sys.stderr)
        return 2
    return 0

