"""Bring a Network up in Mininet with its delays, with the controller, and take it down.

    with Emulation(load_topology("edwc")) as emu:
        emu.net["beijing"].cmd("ping -c1", emu.plan.host("zhangjiakou").ip)

One plan (topology.plan) feeds Mininet, the controller (plan.json) and the reports. Every
bridge, interface and process is recorded (emulation.lifecycle) before or as it is
created; stop() and a failed start() remove exactly those.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from emulation import linkmode as emulation
from emulation.lifecycle import RECORD_DIR, RunRecord, del_bridges_command, intf_exists
from emulation.linkmode import EmulationChoice, EmulationError
from topology.model import Network
from topology.plan import Plan, make_plan, new_run_id

REPO_ROOT = Path(__file__).resolve().parent.parent
# Compensation the relays start with; unless the caller gives one, emulation.calibrate then
# measures the switch substrate of the running network and sets it.
DEFAULT_SUBSTRATE_US = 0.0


class BuildError(RuntimeError):
    pass


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


def free_tcp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _batch(tool: list[str], lines: list[str], what: str) -> None:
    if not lines:
        return
    r = subprocess.run([*tool, "-batch", "-"], input="\n".join(lines) + "\n",
                       capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        raise EmulationError(f"{what} failed: {(r.stderr or r.stdout).strip()[:400]}")


@dataclass
class Emulation:
    """A running emulation of `network`. Use as a context manager."""

    network: Network
    link_emulation: str = "auto"
    datapath: str = "auto"
    ovs_port_type: str = "auto"
    run_id: str | None = None
    work_dir: Path | None = None
    keep_work_dir: bool = False
    start_controller: bool = True
    controller_timeout: float = 60.0
    probe_interval: float = 1.0  # controller's link-discovery period (s)
    substrate_us: float | None = None  # per-hop latency to subtract; None = calibrate
    delay_workers: int | None = None
    delay_line_rt_priority: int = 10  # SCHED_FIFO priority of the relays; 0 = normal
    seed: int = 1
    gateways: bool = True  # start a gateway agent on every gateway host of the plan
    policy: str = "nearest"  # the controller's path selector (built-in or module:Class)
    policy_params: dict = field(default_factory=dict)
    adv_interval: float = 1.0  # gateway advertisement period (s)
    adv_key: bytes | None = None  # shared HMAC key for advertisements (None: unsigned)
    delay_source: str = "model"  # link delays the controller routes on: model | measured
    flow_idle_timeout: int = 10  # seconds before an idle steered flow's placement ends
    newflow_rate: int | None = None  # new-flow packet-ins/s per switch (None: the default)
    gateway_timeout: float = 15.0  # wait this long for every gateway to be registered
    log: object = print
    choice: EmulationChoice | None = None
    plan: Plan | None = None
    net: object = None
    timings: dict = field(default_factory=dict)
    calibration: object = None

    def __post_init__(self) -> None:
        self._record: RunRecord | None = None
        self._controller_proc: subprocess.Popen | None = None
        self._delay_lines: list = []
        self._gateway_procs: dict[str, object] = {}
        self.api_port: int | None = None

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

    @property
    def status_path(self) -> Path:
        assert self.work_dir is not None
        return self.work_dir / "controller-status.json"

    @property
    def controller_log(self) -> Path:
        assert self.work_dir is not None
        return self.work_dir / "controller.log"

    def controller_status(self) -> dict:
        try:
            return json.loads(self.status_path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return {}

    def start(self) -> Emulation:
        if os.geteuid() != 0:
            raise BuildError("the emulation needs root (network namespaces, Open vSwitch); "
                             "run it with sudo")
        t0 = time.monotonic()
        self.choice = emulation.choose(self.link_emulation, self.datapath, self.ovs_port_type)
        _need_tools(self.choice)
        self.log(f"[emulation] {self.choice.describe()}")
        self.run_id = self.run_id or self._fresh_run_id()
        self.plan = make_plan(self.network, self.run_id)
        self._record = RunRecord(self.run_id)
        self._record.open(topology=self.network.name, argv=sys.argv)
        try:
            if self.work_dir is None:
                self.work_dir = RECORD_DIR / self.run_id
                self._record.directory(self.work_dir)
            self.work_dir.mkdir(parents=True, exist_ok=True)
            (self.work_dir / "plan.json").write_text(self.plan.to_json())
            if self.start_controller:
                self._start_controller()
            self._build_mininet()
            self.timings["build_s"] = time.monotonic() - t0
            if self.start_controller:
                self.wait_controller_ready(self.controller_timeout)
            self.timings["up_s"] = time.monotonic() - t0
            if self._delay_lines and self.substrate_us is None and self.start_controller:
                self._calibrate()
                self.timings["calibrated_s"] = time.monotonic() - t0
            if self.gateways and self.plan.gateways:
                self.start_gateways()
                if self.start_controller:
                    self.wait_gateways(self.gateway_timeout)
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
        for dl in self._delay_lines:
            if dl.alive():
                os.kill(dl.pid, signal.SIGTERM)
        for dl in self._delay_lines:
            try:
                dl.stop()
            except Exception as e:  # keep going: everything else must still be removed
                self.log(f"[emulation] stopping delay line: {e}")
        self._delay_lines = []
        self.stop_gateways()
        if self._controller_proc is not None:
            self._stop_controller()
        if self.net is not None:
            try:
                self._teardown_mininet()
            except Exception as e:
                self.log(f"[emulation] Mininet teardown: {e}")
            self.net = None
        if self._record is not None:
            self._record.release(keep_dirs=self.keep_work_dir)
            self._record = None
        self.timings["down_s"] = time.monotonic() - t0

    def wait_controller_ready(self, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._controller_proc is not None and self._controller_proc.poll() is not None:
                raise BuildError("the controller exited with status "
                                 f"{self._controller_proc.returncode}:\n{self._log_tail()}")
            st = self.controller_status()
            if st.get("ready"):
                return st
            time.sleep(0.05)
        st = self.controller_status()
        raise BuildError(
            f"controller not ready after {timeout:.0f} s: switches "
            f"{len(st.get('switches', []))}/{st.get('expected', {}).get('switches', '?')}, links "
            f"{len(st.get('links', []))}/{st.get('expected', {}).get('links', '?')}\n"
            f"{self._log_tail()}")

    def host(self, name: str):
        return self.net[name]

    # --- gateways (computing-power gateway agents on the data-center hosts) ---------------
    def gateway_dir(self) -> Path:
        assert self.work_dir is not None
        return self.work_dir / "gateways"

    def start_gateways(self, only: list[str] | None = None) -> None:
        """Start the gateway agent (``python -m gateway``) on each gateway host."""
        self.gateway_dir().mkdir(exist_ok=True)
        key_file = None
        if self.adv_key:
            key_file = self.work_dir / "adv.key"
            key_file.write_bytes(self.adv_key)
            key_file.chmod(0o600)
        for g in self.plan.gateways:
            if (only is not None and g.id not in only) or g.id in self._gateway_procs:
                continue
            d = self.gateway_dir()
            cmd = [sys.executable, "-m", "gateway", "--id", g.id,
                   "--units", ",".join(f"{k}={v}" for k, v in sorted(g.units.items())),
                   "--price", f"{g.price if g.price is not None else 0:g}",
                   "--green", f"{g.green if g.green is not None else 0:g}",
                   "--services", ",".join(g.services), "--interval", f"{self.adv_interval:g}",
                   "--state-file", str(d / f"{g.id}.json"),
                   "--log-file", str(d / f"{g.id}.log")]
            if g.pue is not None:
                cmd += ["--pue", f"{g.pue:g}"]
            if g.operator:
                cmd += ["--operator", g.operator[:32]]
            if key_file is not None:
                cmd += ["--key-file", str(key_file)]
            env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
            with open(d / f"{g.id}.stderr", "wb") as err:
                proc = self.net[g.host].popen(cmd, stdout=subprocess.DEVNULL, stderr=err,
                                              cwd=str(REPO_ROOT), env=env)
            self._record.process(proc.pid, f"gateway:{g.id}")
            self._gateway_procs[g.id] = proc
        self.log(f"[emulation] {len(self._gateway_procs)} gateway agent(s) running")

    def stop_gateways(self, only: list[str] | None = None) -> None:
        procs = [(gid, p) for gid, p in self._gateway_procs.items()
                 if only is None or gid in only]
        for _gid, p in procs:
            if p.poll() is None:
                p.terminate()
        for gid, p in procs:
            try:
                p.wait(timeout=3)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=3)
            del self._gateway_procs[gid]

    def gateway_state(self, gid: str) -> dict:
        try:
            return json.loads((self.gateway_dir() / f"{gid}.json").read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return {}

    def wait_gateways(self, timeout: float, expect: list[str] | None = None) -> list[str]:
        """Wait until the controller lists every running gateway agent as alive."""
        want = set(expect if expect is not None else self._gateway_procs)
        deadline = time.monotonic() + timeout
        while True:
            alive = set(self.controller_status().get("gateways_alive", []))
            if want <= alive:
                return sorted(alive)
            for gid, p in self._gateway_procs.items():
                if p.poll() is not None:
                    err = (self.gateway_dir() / f"{gid}.stderr").read_text(errors="replace")
                    raise BuildError(f"gateway agent {gid} exited with status {p.returncode}:"
                                     f"\n{err[-1500:]}")
            if time.monotonic() > deadline:
                raise BuildError(f"gateways not registered after {timeout:.0f} s: missing "
                                 f"{sorted(want - alive)}\n{self._log_tail()}")
            time.sleep(0.05)

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}/api/v1"

    def api(self, resource: str, body: dict | None = None, timeout: float = 5.0):
        """GET (or PUT with ``body``) a state API resource; returns the decoded JSON."""
        import urllib.request
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(f"{self.api_url}/{resource}", data=data,
                                     method="GET" if body is None else "PUT",
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return json.loads(r.read())

    def cut_link(self, a: str, b: str) -> None:
        """A fibre cut: carrier loss on both switch ports of the link."""
        ln = self.plan.link(a, b)
        subprocess.run(["ip", "link", "set", ln.a_intf, "down"], check=True)
        subprocess.run(["ip", "link", "set", ln.b_intf, "down"], check=True)

    def restore_link(self, a: str, b: str) -> None:
        ln = self.plan.link(a, b)
        subprocess.run(["ip", "link", "set", ln.a_intf, "up"], check=True)
        subprocess.run(["ip", "link", "set", ln.b_intf, "up"], check=True)

    def describe(self) -> dict:
        """What this run is, for reports."""
        return {"run_id": self.run_id, "topology": self.network.name,
                "topology_source": self.network.source,
                "emulation": self.choice.to_dict() if self.choice else None,
                "substrate_us": self.substrate_us, "seed": self.seed,
                "calibration": self.calibration.to_dict() if self.calibration else None,
                "delay_line_scheduling": getattr(self, "delay_line_scheduling", None),
                "switches": len(self.plan.switches) if self.plan else 0,
                "hosts": len(self.plan.hosts) if self.plan else 0,
                "links": len(self.plan.links) if self.plan else 0,
                "controller": {"policy": self.policy, "policy_params": self.policy_params,
                               "delay_source": self.delay_source,
                               "flow_idle_timeout_s": self.flow_idle_timeout,
                               "gateways": [g.id for g in self.plan.gateways] if self.plan
                               else [], "adv_interval_s": self.adv_interval,
                               "adv_authenticated": bool(self.adv_key)},
                "services": [vars(s) | {"kinds": list(s.kinds)} for s in self.plan.services]
                if self.plan else [],
                "timings": dict(self.timings),
                "versions": emulation.software_versions()}

    # --- internals ---------------------------------------------------------------------
    def _fresh_run_id(self) -> str:
        for _ in range(20):
            rid = new_run_id()
            if not (RECORD_DIR / f"{rid}.jsonl").exists() and not intf_exists(f"ew{rid}s1"):
                return rid
        raise BuildError("could not find a free run id")

    def _log_tail(self, lines: int = 25) -> str:
        try:
            text = self.controller_log.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return "(no controller log)"
        return "\n".join(f"  | {ln}" for ln in text[-lines:])

    def _start_controller(self, port: int | None = None) -> None:
        port = port or free_tcp_port()
        self._controller_port = port
        cmd = [sys.executable, "-m", "controller", "--plan", str(self.work_dir / "plan.json"),
               "--listen", f"127.0.0.1:{port}", "--status", str(self.status_path),
               "--log-file", str(self.controller_log),
               "--probe-interval", f"{self.probe_interval:g}",
               "--policy", self.policy, "--delay-source", self.delay_source,
               "--flow-idle-timeout", str(self.flow_idle_timeout)]
        if self.newflow_rate is not None:
            cmd += ["--newflow-rate", str(self.newflow_rate)]
        for k, v in self.policy_params.items():
            cmd += ["--policy-param", f"{k}={json.dumps(v)}"]
        self.api_port = self.api_port or free_tcp_port()
        cmd += ["--api", f"127.0.0.1:{self.api_port}"]
        if self.adv_key:
            key_file = self.work_dir / "adv.key"
            key_file.write_bytes(self.adv_key)
            key_file.chmod(0o600)
            cmd += ["--adv-key-file", str(key_file), "--require-auth"]
        env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
        with open(self.work_dir / "controller.stderr", "wb") as err:
            self._controller_proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL,
                                                     stderr=err, cwd=REPO_ROOT, env=env,
                                                     start_new_session=True)
        self._record.process(self._controller_proc.pid, "controller")
        self.log(f"[emulation] controller pid {self._controller_proc.pid} on "
                 f"127.0.0.1:{port}")

    def restart_controller(self, kill: bool = True, timeout: float = 30.0) -> None:
        """Kill (SIGKILL, as a crash) or stop the controller, start a fresh process on the
        same OpenFlow port, and wait until it is ready again. Established flows keep
        working meanwhile: the switches are in fail-secure mode and keep their flows."""
        proc = self._controller_proc
        if proc is not None and proc.poll() is None:
            if kill:
                proc.kill()
                proc.wait(timeout=5)
            else:
                self._stop_controller()
        self._controller_proc = None
        if self.status_path.exists():
            self.status_path.unlink()
        self._start_controller(port=self._controller_port)
        self.wait_controller_ready(timeout)

    def _stop_controller(self) -> None:
        proc = self._controller_proc
        self._controller_proc = None
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=3)

    def _build_mininet(self) -> None:
        from functools import partial

        from mininet.link import Link
        from mininet.net import Mininet
        from mininet.node import Host

        from emulation import mncompat  # noqa: F401  (before any mininet import)
        from emulation.mnlinks import DelayLineLink, PortTypeOVSSwitch

        plan, rec, choice = self.plan, self._record, self.choice
        userspace = choice.link == "userspace"
        switch_cls = partial(PortTypeOVSSwitch, port_type=choice.port_type, failMode="secure",
                             protocols="OpenFlow13", datapath=choice.datapath, batch=True,
                             inband=False)
        if userspace:
            rec.netns(self.relay_netns)
            emulation.run(["ip", "netns", "add", self.relay_netns],
                          what="creating the delay-line namespace")
        self.net = net = Mininet(topo=None, build=False, controller=None, switch=switch_cls,
                                 host=Host, link=Link, autoSetMacs=False, waitConnected=False)
        for sw in plan.switches:
            rec.bridge(sw.name)
            rec.intf(sw.name)  # the userspace datapath's internal tap
            node = net.addSwitch(sw.name, dpid=f"{sw.dpid:016x}")
            rec.process(node.pid, f"switch-shell:{sw.name}")
        for h in plan.hosts:
            node = net.addHost(h.name, ip=f"{h.ip}/{h.prefixlen}", mac=h.mac)
            rec.process(node.pid, f"host-shell:{h.name}")
            rec.intf(h.intf)
            net.addLink(node, net[h.switch], port1=0, port2=h.port, intfName1="eth0",
                        intfName2=h.intf, addr1=h.mac)
        for ln in plan.links:
            rec.intf(ln.a_intf)
            rec.intf(ln.b_intf)
            if userspace:
                net.addLink(net[ln.a_switch], net[ln.b_switch], port1=ln.a_port,
                            port2=ln.b_port, intfName1=ln.a_intf, intfName2=ln.b_intf,
                            cls=DelayLineLink, relay1=ln.relay_a, relay2=ln.relay_b,
                            relay_netns=self.relay_netns)
            else:
                net.addLink(net[ln.a_switch], net[ln.b_switch], port1=ln.a_port,
                            port2=ln.b_port, intfName1=ln.a_intf, intfName2=ln.b_intf)
        net.build()
        self._configure_interfaces(net, userspace)
        if userspace:
            self._start_delay_lines()
        net.start()
        self._shape_switch_ports()
        if self.start_controller:
            # Our controller is a process we own, not a Mininet node: point the bridges at
            # it directly (one transaction), so Mininet never starts or stops anything for it.
            cmd = ["ovs-vsctl", "--timeout=30"]
            for sw in plan.switches:
                cmd += ["--", "set-controller", sw.name,
                        f"tcp:127.0.0.1:{self._controller_port}"]
            emulation.run(cmd, what="connecting the switches to the controller")
        if choice.port_type == "afxdp":
            self._check_ports()

    def _teardown_mininet(self) -> None:
        """Fast, exact teardown. Mininet's own stop() deletes interfaces one by one through
        node shells (17 ms each in the kernel; seconds on the backbone). Here: end the host
        shells (each host's namespace, and the veth into it, goes with its shell), delete
        the delay-line namespace (every delayed link at once), delete the remaining
        root-namespace interfaces in one `ip -batch`, then all bridges in one ovs-vsctl."""
        net = self.net
        for node in net.hosts:
            node.terminate()
        ns = self.relay_netns
        if os.path.exists(f"/run/netns/{ns}"):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)
        names = set()
        for ln in net.links:
            for intf in (ln.intf1, ln.intf2):
                if intf is not None and not intf.node.inNamespace:
                    names.add(intf.name)
        present = [n for n in sorted(names) if intf_exists(n)]
        if present:
            subprocess.run(["ip", "-force", "-batch", "-"],
                           input="".join(f"link del {n}\n" for n in present),
                           capture_output=True, text=True, timeout=60)
        bridges = [sw.name for sw in net.switches]
        if bridges:
            subprocess.run(del_bridges_command(bridges), capture_output=True, text=True,
                           timeout=60)
        for node in net.switches:
            node.terminate()
        # namespace teardown is asynchronous in the kernel: wait for the interfaces to go
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(intf_exists(n) for n in names):
            time.sleep(0.02)

    def _configure_interfaces(self, net, userspace: bool) -> None:
        plan, choice = self.plan, self.choice
        ns = self.relay_netns
        root_intfs = [h.intf for h in plan.hosts]
        relay_intfs: list[str] = []
        for ln in plan.links:
            root_intfs += [ln.a_intf, ln.b_intf]
            if userspace:
                relay_intfs += [ln.relay_a, ln.relay_b]
        _batch(["ip"], [f"link set {i} up" for i in root_intfs], "bringing interfaces up")
        if relay_intfs:
            _batch(["ip", "-n", ns], [f"link set {i} up" for i in relay_intfs],
                   "bringing delay-line interfaces up")
        if choice.datapath == "user" or userspace:
            # The userspace datapath and the delay line need real checksums and frames no
            # larger than the MTU: no TX checksum/segmentation offload, no GRO.
            def offloads_off(intfs: list[str]) -> list[str]:
                return ["sh", "-c", "set -e\n" + "".join(
                    " ".join(emulation.offload_off_command(i)) + " >/dev/null\n"
                    for i in intfs)]
            emulation.run(offloads_off(root_intfs), what="turning offloads off")
            if relay_intfs:
                emulation.run(["ip", "netns", "exec", ns, *offloads_off(relay_intfs)],
                              what="turning offloads off on the delay-line ends")
        for h in plan.hosts:
            node = net[h.name]
            cmds = ["sysctl -qw net.ipv6.conf.all.disable_ipv6=1",
                    "sysctl -qw net.ipv6.conf.default.disable_ipv6=1"]
            if choice.datapath == "user" or userspace:
                cmds.append(" ".join(emulation.offload_off_command("eth0")) + " >/dev/null")
            out = node.cmd(" && ".join(cmds) + " && echo OK")
            if "OK" not in out:
                raise EmulationError(f"configuring host {h.name} failed: {out.strip()[:200]}")
        # Bandwidth: HTB on the egress that feeds each direction of a link. AF_XDP ports
        # transmit past the qdisc layer, so with them the shaping moves to the delay line's
        # output (a constant delay and a FIFO queue commute: the same per-packet delay).
        root_tc: list[str] = []
        relay_tc: list[str] = []
        on_relay = userspace and choice.port_type == "afxdp"
        for ln in plan.links:
            dirs = ((ln.relay_b if on_relay else ln.a_intf, ln.delay_ms_ab),
                    (ln.relay_a if on_relay else ln.b_intf, ln.delay_ms_ba))
            for intf, delay in dirs:
                for cmd in emulation.shaping_commands(
                        intf, bandwidth_mbps=ln.bandwidth_mbps, delay_ms=delay,
                        jitter_ms=ln.jitter_ms, loss_pct=ln.loss_pct,
                        netem=choice.link == "netem"):
                    (relay_tc if on_relay else root_tc).append(" ".join(cmd[1:]))
        _batch(["tc", "-n", ns], relay_tc, "link shaping on the delay-line ends (tc)")
        self._root_tc = root_tc  # applied by _shape_switch_ports once OVS owns the ports

    def _shape_switch_ports(self) -> None:
        """tc on the switch ports, after OVS has attached them. OVS resets the root qdisc of a
        port it attaches (and again whenever it reconfigures a port without QoS), which
        silently removed netem and HTB here; QoS type linux-noop tells it to leave the
        qdiscs alone, then ours go on."""
        if not self._root_tc:
            return
        ports = [h.intf for h in self.plan.hosts]
        for ln in self.plan.links:
            ports += [ln.a_intf, ln.b_intf]
        # QoS rows are roots in OVSDB (not garbage-collected with the ports): tag it with the
        # run id and record it, so stop and cleanup destroy exactly this one.
        self._record.ovs_qos(self.run_id)
        cmd = ["ovs-vsctl", "--timeout=30", "--", "--id=@noop", "create", "qos",
               "type=linux-noop", f"external_ids:edwc-run={self.run_id}"]
        for port in ports:
            cmd += ["--", "set", "port", port, "qos=@noop"]
        emulation.run(cmd, what="telling OVS to leave the ports' qdiscs alone")
        _batch(["tc"], self._root_tc, "link shaping (tc)")

    def _calibrate(self) -> None:
        from emulation.calibrate import calibrate

        cal = calibrate(self)
        for dl in self._delay_lines:
            dl.set_compensation(cal.compensation_us)
        self.calibration, self.substrate_us = cal, cal.compensation_us
        self.log(f"[emulation] substrate: {cal.per_switch_us:.0f} us per switch traversal, "
                 f"{cal.intercept_us:.0f} us at the ends ({len(cal.points)} paths); the delay "
                 f"line now subtracts {cal.compensation_us:.0f} us per link, leaving "
                 f"~{cal.residual_us:.0f} us per path one-way")
        if cal.note:
            self.log(f"[emulation] calibration: {cal.note}")

    def _check_ports(self) -> None:
        """OVS reports a port it could not open (e.g. no AF_XDP in the kernel) only in the
        Interface table: fail loudly instead of building a network with dead ports."""
        names = [h.intf for h in self.plan.hosts]
        for ln in self.plan.links:
            names += [ln.a_intf, ln.b_intf]
        r = subprocess.run(["ovs-vsctl", "--timeout=10", "--format=csv", "--no-headings",
                            "--columns=name,error", "list", "Interface", *names],
                           capture_output=True, text=True, timeout=30)
        bad = [ln for ln in r.stdout.splitlines() if ln and not ln.endswith(",[]")]
        if r.returncode != 0 or bad:
            raise BuildError(
                f"Open vSwitch could not open {len(bad)} port(s) as {self.choice.port_type}: "
                f"{'; '.join(bad[:3]) or r.stderr.strip()}; run with --ovs-port-type system")

    def _start_delay_lines(self) -> None:
        from emulation.delayline import DelayLineProcess, Hop, split_links

        # Without a given value the relays start at 0 and _calibrate() sets it once routed.
        comp = DEFAULT_SUBSTRATE_US if self.substrate_us is None else self.substrate_us
        pairs = []
        for ln in self.plan.links:
            lim_ab = emulation.queue_limit_packets(ln.bandwidth_mbps, ln.delay_ms_ab)
            lim_ba = emulation.queue_limit_packets(ln.bandwidth_mbps, ln.delay_ms_ba)
            pairs.append((
                Hop(id=f"{ln.id}:a>b", in_if=ln.relay_a, out_if=ln.relay_b,
                    delay_us=ln.delay_ms_ab * 1000, jitter_us=ln.jitter_ms * 1000,
                    loss=ln.loss_pct / 100, limit=lim_ab, compensation_us=comp),
                Hop(id=f"{ln.id}:b>a", in_if=ln.relay_b, out_if=ln.relay_a,
                    delay_us=ln.delay_ms_ba * 1000, jitter_us=ln.jitter_ms * 1000,
                    loss=ln.loss_pct / 100, limit=lim_ba, compensation_us=comp)))
        if not pairs:
            return
        workers = self.delay_workers or min(len(pairs), max(2, os.cpu_count() or 2))
        for i, hops in enumerate(split_links(pairs, workers)):
            if not hops:
                continue
            dl = DelayLineProcess.start(hops, str(self.work_dir), f"delayline-{i}",
                                        seed=self.seed, python=sys.executable,
                                        netns=self.relay_netns,
                                        rt_priority=self.delay_line_rt_priority)
            self._delay_lines.append(dl)
            self._record.process(dl.pid, f"delayline-{i}")
        rt = self._delay_lines[0].stats(refresh=True).get("realtime", "?")
        self.log(f"[emulation] {len(self._delay_lines)} delay-line process(es) relaying "
                 f"{len(pairs)} links (scheduling: {rt})")
        self.delay_line_scheduling = rt
