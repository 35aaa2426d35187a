"""Bring a Network up in Mininet with its delays, with the controller and the gateway
agents, and take it down.

    with Emulation(load_topology("edwc")) as emu:
        emu.net["beijing"].cmd("ping -c1", emu.plan.host("zhangjiakou").ip)

    Emulation(net, controller=ControllerConfig(policy="greenest"),
              links=LinkConfig(ovs_port_type="system"), agents=AgentOptions(adv_interval=0.5))

One plan (topology.plan) feeds Mininet, the controller (plan.json) and the reports. The
configuration comes in three parts, each declared once: how links are emulated
(:class:`LinkConfig`), the controller process (:class:`controller.config.ControllerConfig`;
None: no controller) and the gateway agents (:class:`emulation.control.AgentOptions`;
None: no agents). Every bridge, interface and process is recorded (emulation.lifecycle)
before or as it is created; stop() and a failed start() remove exactly those.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from controller.config import ControllerConfig
from emulation import linkmode, mnbuild
from emulation.control import AgentOptions, BuildError, ControllerProcess, GatewayAgents
from emulation.lifecycle import RECORD_DIR, RunRecord, intf_exists
from emulation.linkmode import EmulationChoice
from topology.model import Network
from topology.plan import Plan, make_plan, new_run_id

__all__ = ["AgentOptions", "BuildError", "ControllerConfig", "Emulation", "LinkConfig"]


@dataclasses.dataclass(frozen=True)
class LinkConfig:
    """How links are emulated: the choices (auto: detected, see emulation.linkmode) and the
    userspace delay line's knobs."""

    link_emulation: str = "auto"  # netem | userspace | none | auto
    datapath: str = "auto"  # kernel | user | auto
    ovs_port_type: str = "auto"  # afxdp | system | auto (userspace datapath)
    substrate_us: float | None = None  # per-hop latency to subtract; None = calibrate
    delay_workers: int | None = None  # delay-line processes (None: one per core, >= 2)
    delay_line_rt_priority: int = 10  # SCHED_FIFO priority of the relays; 0 = normal
    seed: int = 1  # delay-line jitter and loss


DEFAULT_CONTROLLER = ControllerConfig()
DEFAULT_AGENTS = AgentOptions()


def _need_tools(choice: EmulationChoice) -> None:
    tools = ["ovs-vsctl", "ovs-ofctl", "mnexec", "ip", "tc", "ping"]
    if choice.datapath == "user" or choice.link == "userspace":
        tools.append("ethtool")
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        raise BuildError(f"missing tool(s): {', '.join(missing)}; run ./setup.sh to install "
                         "them")
    r = subprocess.run(["ovs-vsctl", "--timeout=5", "show"], capture_output=True, text=True)
    if r.returncode != 0:
        raise BuildError("Open vSwitch is not running (ovs-vsctl show failed: "
                         f"{r.stderr.strip()[:120]}); run ./setup.sh to start it")


class Emulation:
    """A running emulation of ``network``. Use as a context manager."""

    def __init__(self, network: Network, *, links: LinkConfig = LinkConfig(),
                 controller: ControllerConfig | None = DEFAULT_CONTROLLER,
                 agents: AgentOptions | None = DEFAULT_AGENTS, run_id: str | None = None,
                 work_dir: Path | None = None, keep_work_dir: bool = False,
                 controller_timeout: float = 60.0, log: Callable[..., Any] = print) -> None:
        self.network = network
        self.links = links
        self.controller_config = controller
        self.agent_options = agents
        self.run_id = run_id
        self.work_dir = work_dir
        self.keep_work_dir = keep_work_dir
        self.controller_timeout = controller_timeout
        self.log = log
        # what start() builds
        self.choice: EmulationChoice | None = None
        self.plan: Plan | None = None
        self.net: Any = None  # mininet.net.Mininet
        self.record: RunRecord | None = None
        self.controller: ControllerProcess | None = None
        self.agents: GatewayAgents | None = None
        self.delay_lines: list = []
        self.root_tc: list[str] = []  # switch-port tc, applied once OVS owns the ports
        self.substrate_us = links.substrate_us
        self.calibration: Any = None
        self.delay_line_scheduling: str | None = None
        self.timings: dict[str, float] = {}

    # --- public ------------------------------------------------------------------------
    def __enter__(self) -> Emulation:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def relay_netns(self) -> str:
        """Named network namespace holding the delay line's ends of every delayed link."""
        return f"ew{self.run_id}dl"

    def start(self) -> Emulation:
        if os.geteuid() != 0:
            raise BuildError("the emulation needs root (network namespaces, Open vSwitch); "
                             "run it with sudo")
        t0 = time.monotonic()
        lc = self.links
        self.choice = linkmode.choose(lc.link_emulation, lc.datapath, lc.ovs_port_type)
        _need_tools(self.choice)
        self.log(f"[emulation] {self.choice.describe()}")
        self.run_id = self.run_id or self._fresh_run_id()
        self.plan = make_plan(self.network, self.run_id)
        self.record = RunRecord(self.run_id)
        self.record.open(topology=self.network.name, argv=sys.argv)
        try:
            if self.work_dir is None:
                self.work_dir = RECORD_DIR / self.run_id
                self.record.directory(self.work_dir)
            self.work_dir.mkdir(parents=True, exist_ok=True)
            (self.work_dir / "plan.json").write_text(self.plan.to_json())
            if self.controller_config is not None:
                key = self.agent_options.adv_key if self.agent_options else None
                self.controller = ControllerProcess(self.controller_config, self.work_dir,
                                                    self.record, adv_key=key, log=self.log)
                self.controller.start()
            mnbuild.build_mininet(self)
            self.timings["build_s"] = time.monotonic() - t0
            if self.controller is not None:
                self.controller.wait_ready(self.controller_timeout)
            self.timings["up_s"] = time.monotonic() - t0
            if self.delay_lines and self.substrate_us is None and self.controller is not None:
                self._calibrate()
                self.timings["calibrated_s"] = time.monotonic() - t0
            if self.agent_options is not None and self.plan.gateways:
                self.agents = GatewayAgents(self.plan, self.net, self.work_dir, self.record,
                                            self.agent_options, log=self.log)
                self.agents.start()
                if self.controller is not None:
                    self.agents.wait_registered(self.controller, self.agent_options.timeout)
                self.timings["gateways_s"] = time.monotonic() - t0
        except BaseException:
            self.log("[emulation] start failed; removing what was built")
            self.stop()
            raise
        return self

    def stop(self) -> None:
        t0 = time.monotonic()
        # Signal every delay line first, then wait: each spends ~0.6 s closing its packet
        # sockets (one RCU grace period per socket in the kernel), so stop them in parallel.
        for dl in self.delay_lines:
            if dl.alive():
                os.kill(dl.pid, signal.SIGTERM)
        for dl in self.delay_lines:
            try:
                dl.stop()
            except Exception as e:  # keep going: everything else must still be removed
                self.log(f"[emulation] stopping delay line: {e}")
        self.delay_lines = []
        if self.agents is not None:
            self.agents.stop()
        if self.controller is not None:
            self.controller.stop()
        if self.net is not None:
            try:
                mnbuild.teardown_mininet(self)
            except Exception as e:
                self.log(f"[emulation] Mininet teardown: {e}")
            self.net = None
        if self.record is not None:
            self.record.release(keep_dirs=self.keep_work_dir)
            self.record = None
        self.timings["down_s"] = time.monotonic() - t0

    def host(self, name: str):
        return self.net[name]

    # --- the control plane ---------------------------------------------------------------
    @property
    def controller_log(self) -> Path:
        return self._need_controller().log_path

    def controller_status(self) -> dict:
        return self.controller.status() if self.controller is not None else {}

    def wait_controller_ready(self, timeout: float) -> dict:
        return self._need_controller().wait_ready(timeout)

    def restart_controller(self, kill: bool = True, timeout: float = 30.0) -> None:
        """Kill (SIGKILL, as a crash) or stop the controller, start a fresh process on the
        same OpenFlow port, and wait until it is ready again. Established flows keep
        working meanwhile: the switches are in fail-secure mode and keep their flows."""
        self._need_controller().restart(kill=kill, timeout=timeout)

    def api(self, resource: str, body: dict | None = None, timeout: float = 5.0):
        """GET (or PUT with ``body``) a state API resource; returns the decoded JSON."""
        return self._need_controller().api(resource, body, timeout)

    @property
    def api_url(self) -> str:
        return self._need_controller().api_url

    def start_gateways(self, only: list[str] | None = None) -> None:
        self._need_agents().start(only)

    def stop_gateways(self, only: list[str] | None = None) -> None:
        if self.agents is not None:
            self.agents.stop(only)

    def gateway_state(self, gid: str) -> dict:
        return self._need_agents().state(gid)

    def wait_gateways(self, timeout: float | None = None,
                      expect: list[str] | None = None) -> list[str]:
        """Until the controller lists every running gateway agent (or ``expect``) alive."""
        agents = self._need_agents()
        return agents.wait_registered(self._need_controller(),
                                      agents.options.timeout if timeout is None else timeout,
                                      expect)

    # --- the data plane --------------------------------------------------------------------
    def cut_link(self, a: str, b: str) -> None:
        """A fibre cut: carrier loss on both switch ports of the link."""
        self._set_link(a, b, "down")

    def restore_link(self, a: str, b: str) -> None:
        self._set_link(a, b, "up")

    def _set_link(self, a: str, b: str, state: str) -> None:
        ln = self.plan.link(a, b)
        for intf in (ln.a_intf, ln.b_intf):
            subprocess.run(["ip", "link", "set", intf, state], check=True)

    def describe(self) -> dict:
        """What this run is, for reports."""
        plan, cc, ao = self.plan, self.controller_config, self.agent_options
        return {"run_id": self.run_id, "topology": self.network.name,
                "topology_source": self.network.source,
                "emulation": self.choice.to_dict() if self.choice else None,
                "substrate_us": self.substrate_us, "seed": self.links.seed,
                "calibration": self.calibration.to_dict() if self.calibration else None,
                "delay_line_scheduling": self.delay_line_scheduling,
                "switches": len(plan.switches) if plan else 0,
                "hosts": len(plan.hosts) if plan else 0,
                "links": len(plan.links) if plan else 0,
                "controller": None if cc is None else {
                    "policy": cc.policy, "policy_params": dict(cc.policy_params),
                    "delay_source": cc.delay_source,
                    "flow_idle_timeout_s": cc.flow_idle_timeout,
                    "probe_interval_s": cc.probe_interval, "newflow_rate": cc.newflow_rate,
                    "gateways": [g.id for g in plan.gateways] if plan else [],
                    "adv_interval_s": ao.adv_interval if ao else None,
                    "adv_authenticated": bool(ao and ao.adv_key)},
                "services": [vars(s) | {"kinds": list(s.kinds)} for s in plan.services]
                if plan else [],
                "timings": dict(self.timings),
                "versions": linkmode.software_versions()}

    # --- internals ---------------------------------------------------------------------
    def _need_controller(self) -> ControllerProcess:
        if self.controller is None:
            raise BuildError("this emulation runs no controller (controller=None)")
        return self.controller

    def _need_agents(self) -> GatewayAgents:
        if self.agents is None:
            if self.agent_options is None or self.plan is None or self.net is None:
                raise BuildError("this emulation runs no gateway agents (agents=None)")
            self.agents = GatewayAgents(self.plan, self.net, self.work_dir, self.record,
                                        self.agent_options, log=self.log)
        return self.agents

    def _fresh_run_id(self) -> str:
        for _ in range(20):
            rid = new_run_id()
            if not (RECORD_DIR / f"{rid}.jsonl").exists() and not intf_exists(f"ew{rid}s1"):
                return rid
        raise BuildError("could not find a free run id")

    def _calibrate(self) -> None:
        from emulation.calibrate import calibrate

        cal = calibrate(self)
        for dl in self.delay_lines:
            dl.set_compensation(cal.compensation_us)
        self.calibration, self.substrate_us = cal, cal.compensation_us
        self.log(f"[emulation] substrate: {cal.per_switch_us:.0f} us per switch traversal, "
                 f"{cal.intercept_us:.0f} us at the ends ({len(cal.points)} paths); the delay "
                 f"line now subtracts {cal.compensation_us:.0f} us per link, leaving "
                 f"~{cal.residual_us:.0f} us per path one-way")
        if cal.note:
            self.log(f"[emulation] calibration: {cal.note}")

