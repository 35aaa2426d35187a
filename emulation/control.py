"""The emulation's control plane: the controller process and the gateway agents it starts,
and the clients that read them (status file, state API, agent state files).

:class:`ControllerProcess` runs ``python -m controller`` with a
:class:`controller.config.ControllerConfig` turned into argv (the one declaration of its
flags), waits until the status file says ready, restarts it on the same OpenFlow port, and
serves as the state-API client (:meth:`ControllerProcess.api`). :class:`GatewayAgents`
runs ``python -m gateway`` in each gateway host's namespace, one
:class:`gateway.config.GatewayConfig` each. Processes are started and stopped through
common.procs and recorded in the run's record (emulation.lifecycle) as they start.
"""

from __future__ import annotations

import dataclasses
import json
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from common import flags, procs
from controller.config import ControllerConfig
from gateway.config import GatewayConfig


class BuildError(RuntimeError):
    """The emulation could not be built: a tool, the controller or a gateway agent failed
    to start or to become ready."""


def free_tcp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_key(path: Path, key: bytes) -> Path:
    """The shared advertisement key, readable by root only."""
    path.write_bytes(key)
    path.chmod(0o600)
    return path


class ControllerProcess:
    """The controller of one run: its configuration with the run's wiring filled in."""

    def __init__(self, config: ControllerConfig, work_dir: Path, record: Any,
                 adv_key: bytes | None = None, log: Callable[[str], Any] = print) -> None:
        self.work_dir = work_dir
        self.status_path = work_dir / "controller-status.json"
        self.log_path = work_dir / "controller.log"
        self.stderr_path = work_dir / "controller.stderr"
        key_file = write_key(work_dir / "adv.key", adv_key) if adv_key else None
        self.config = dataclasses.replace(
            config, plan=str(work_dir / "plan.json"),
            listen=("127.0.0.1", free_tcp_port()), status=str(self.status_path),
            log_file=str(self.log_path), api=("127.0.0.1", free_tcp_port()),
            adv_key_file=str(key_file) if key_file else None, require_auth=bool(adv_key))
        self._record = record
        self._log = log
        self.proc: subprocess.Popen | None = None

    @property
    def port(self) -> int:
        return self.config.listen[1]

    @property
    def api_url(self) -> str:
        assert self.config.api is not None
        return f"http://127.0.0.1:{self.config.api[1]}/api/v1"

    def argv(self) -> list[str]:
        return self.config.to_argv()

    def start(self) -> None:
        self.proc = procs.start("controller", self.argv(), stderr_path=self.stderr_path,
                                new_session=True)
        self._record.process(self.proc.pid, "controller")
        self._log(f"[emulation] controller pid {self.proc.pid} on 127.0.0.1:{self.port} "
                  f"(policy {self.config.policy})")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        procs.stop(proc, grace_s=3.0)

    def kill(self) -> None:
        """SIGKILL, as a crash."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(timeout=5)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def restart(self, kill: bool = True, timeout: float = 30.0) -> None:
        """Kill (as a crash) or stop the process, start a fresh one on the same ports, and
        wait until it is ready again."""
        self.kill() if kill else self.stop()
        self.status_path.unlink(missing_ok=True)
        self.start()
        self.wait_ready(timeout)

    def status(self) -> dict:
        try:
            return json.loads(self.status_path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return {}

    def log_tail(self, lines: int = 25) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return "(no controller log)"
        return "\n".join(f"  | {ln}" for ln in text[-lines:])

    def wait_ready(self, timeout: float) -> dict:
        """Until the status file says every planned switch and link is up."""
        def detail() -> str:
            st = self.status()
            exp = st.get("expected", {})
            return (f"switches {len(st.get('switches', []))}/{exp.get('switches', '?')}, "
                    f"links {len(st.get('links', []))}/{exp.get('links', '?')}\n"
                    f"{self.log_tail()}")
        if self.proc is None:
            raise BuildError("the controller is not running")
        try:
            return procs.wait_ready(self.proc, lambda: (st := self.status()).get("ready") and st,
                                    timeout, "the controller", self.stderr_path, detail=detail)
        except procs.ProcessError as e:
            raise BuildError(f"{e}\n{self.log_tail()}" if "exited" in str(e) else str(e)) \
                from None

    def api(self, resource: str, body: dict | None = None, timeout: float = 5.0) -> Any:
        """GET (or PUT with ``body``) a state API resource; returns the decoded JSON."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(f"{self.api_url}/{resource}", data=data,
                                     method="GET" if body is None else "PUT",
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return json.loads(r.read())


@dataclasses.dataclass(frozen=True)
class AgentOptions:
    """What every gateway agent of a run shares."""

    adv_interval: float = 1.0  # advertisement period (s)
    adv_key: bytes | None = dataclasses.field(default=None, repr=False)  # None: unsigned
    timeout: float = 15.0  # wait this long for every agent to be registered


class GatewayAgents:
    """The gateway agents (C-SMAs) of a run, one per gateway of the plan."""

    def __init__(self, plan: Any, net: Any, work_dir: Path, record: Any,
                 options: AgentOptions, log: Callable[[str], Any] = print) -> None:
        self.plan, self.net, self.record, self.options = plan, net, record, options
        self.dir = work_dir / "gateways"
        self._key_file = work_dir / "adv.key"
        self._log = log
        self.procs: dict[str, subprocess.Popen] = {}

    def config(self, g: Any) -> GatewayConfig:
        """The agent of plan gateway ``g``: its site's compute, the run's options."""
        return GatewayConfig(
            gw=g.id, units=dict(sorted(g.units.items())),
            price=g.price if g.price is not None else 0.0,
            green=g.green if g.green is not None else 0.0, services=tuple(g.services),
            pue=g.pue, operator=g.operator[:32] if g.operator else None,
            interval=self.options.adv_interval,
            key_file=str(self._key_file) if self.options.adv_key else None,
            state_file=str(self.dir / f"{g.id}.json"), log_file=str(self.dir / f"{g.id}.log"))

    def start(self, only: list[str] | None = None) -> None:
        self.dir.mkdir(exist_ok=True)
        if self.options.adv_key:
            write_key(self._key_file, self.options.adv_key)
        for g in self.plan.gateways:
            if (only is not None and g.id not in only) or g.id in self.procs:
                continue
            proc = procs.start("gateway", flags.to_argv(self.config(g)), host=self.net[g.host],
                               stderr_path=self.dir / f"{g.id}.stderr")
            self.record.process(proc.pid, f"gateway:{g.id}")
            self.procs[g.id] = proc
        self._log(f"[emulation] {len(self.procs)} gateway agent(s) running")

    def stop(self, only: list[str] | None = None) -> None:
        gids = [gid for gid in self.procs if only is None or gid in only]
        procs.stop_all([self.procs[gid] for gid in gids], grace_s=3.0)
        for gid in gids:
            del self.procs[gid]

    def state(self, gid: str) -> dict:
        try:
            return json.loads((self.dir / f"{gid}.json").read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return {}

    def wait_registered(self, controller: ControllerProcess, timeout: float,
                        expect: list[str] | None = None) -> list[str]:
        """Until the controller lists every running agent (or ``expect``) as alive."""
        want = set(expect if expect is not None else self.procs)
        deadline = time.monotonic() + timeout
        while True:
            alive = set(controller.status().get("gateways_alive", []))
            if want <= alive:
                return sorted(alive)
            for gid, p in self.procs.items():
                if p.poll() is not None:
                    raise BuildError(f"gateway agent {gid} exited with status {p.returncode}:"
                                     f"\n{procs.stderr_tail(self.dir / f'{gid}.stderr')}")
            if time.monotonic() > deadline:
                raise BuildError(f"gateways not registered after {timeout:.0f} s: missing "
                                 f"{sorted(want - alive)}\n{controller.log_tail()}")
            time.sleep(0.05)
