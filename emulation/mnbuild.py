"""Mininet glue: build the plan's switches, hosts and links, shape them, and take them down
exactly.

Functions of a running :class:`emulation.network.Emulation` (its plan, choice, record and
options), split from it so that the orchestration (network.py) reads in one sitting. Every
bridge, interface, namespace and process is recorded in the run's record before or as it
is created. Mininet classes are passed in (emulation.mnlinks), never patched.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from typing import TYPE_CHECKING

from emulation import linkmode
from emulation.control import BuildError
from emulation.lifecycle import del_bridges_command, intf_exists
from emulation.linkmode import EmulationError

if TYPE_CHECKING:
    from emulation.network import Emulation

# Compensation the relays start with; unless the caller gives one, emulation.calibrate then
# measures the switch substrate of the running network and sets it.
DEFAULT_SUBSTRATE_US = 0.0


def batch(tool: list[str], lines: list[str], what: str) -> None:
    if not lines:
        return
    r = subprocess.run([*tool, "-batch", "-"], input="\n".join(lines) + "\n",
                       capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        raise EmulationError(f"{what} failed: {(r.stderr or r.stdout).strip()[:400]}")


def build_mininet(emu: Emulation) -> None:
    from functools import partial

    from mininet.link import Link
    from mininet.net import Mininet
    from mininet.node import Host

    import emulation.mncompat  # noqa: F401  (before any mininet import)
    from emulation.mnlinks import DelayLineLink, PortTypeOVSSwitch

    plan, rec, choice = emu.plan, emu.record, emu.choice
    userspace = choice.link == "userspace"
    switch_cls = partial(PortTypeOVSSwitch, port_type=choice.port_type, failMode="secure",
                         protocols="OpenFlow13", datapath=choice.datapath, batch=True,
                         inband=False)
    if userspace:
        rec.netns(emu.relay_netns)
        linkmode.run(["ip", "netns", "add", emu.relay_netns],
                      what="creating the delay-line namespace")
    emu.net = net = Mininet(topo=None, build=False, controller=None, switch=switch_cls,
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
                        relay_netns=emu.relay_netns)
        else:
            net.addLink(net[ln.a_switch], net[ln.b_switch], port1=ln.a_port,
                        port2=ln.b_port, intfName1=ln.a_intf, intfName2=ln.b_intf)
    net.build()
    configure_interfaces(emu, net, userspace)
    if userspace:
        start_delay_lines(emu)
    net.start()
    shape_switch_ports(emu)
    if emu.controller is not None:
        # Our controller is a process we own, not a Mininet node: point the bridges at
        # it directly (one transaction), so Mininet never starts or stops anything for it.
        cmd = ["ovs-vsctl", "--timeout=30"]
        for sw in plan.switches:
            cmd += ["--", "set-controller", sw.name,
                    f"tcp:127.0.0.1:{emu.controller.port}"]
        linkmode.run(cmd, what="connecting the switches to the controller")
    if choice.port_type == "afxdp":
        check_ports(emu)


def teardown_mininet(emu: Emulation) -> None:
    """Fast, exact teardown. Mininet's own stop() deletes interfaces one by one through
    node shells (17 ms each in the kernel; seconds on the backbone). Here: end the host
    shells (each host's namespace, and the veth into it, goes with its shell), delete
    the delay-line namespace (every delayed link at once), delete the remaining
    root-namespace interfaces in one `ip -batch`, then all bridges in one ovs-vsctl."""
    net = emu.net
    for node in net.hosts:
        node.terminate()
    ns = emu.relay_netns
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


def configure_interfaces(emu: Emulation, net, userspace: bool) -> None:
    plan, choice = emu.plan, emu.choice
    ns = emu.relay_netns
    root_intfs = [h.intf for h in plan.hosts]
    relay_intfs: list[str] = []
    for ln in plan.links:
        root_intfs += [ln.a_intf, ln.b_intf]
        if userspace:
            relay_intfs += [ln.relay_a, ln.relay_b]
    batch(["ip"], [f"link set {i} up" for i in root_intfs], "bringing interfaces up")
    if relay_intfs:
        batch(["ip", "-n", ns], [f"link set {i} up" for i in relay_intfs],
               "bringing delay-line interfaces up")
    if choice.datapath == "user" or userspace:
        # The userspace datapath and the delay line need real checksums and frames no
        # larger than the MTU: no TX checksum/segmentation offload, no GRO.
        def offloads_off(intfs: list[str]) -> list[str]:
            return ["sh", "-c", "set -e\n" + "".join(
                " ".join(linkmode.offload_off_command(i)) + " >/dev/null\n"
                for i in intfs)]
        linkmode.run(offloads_off(root_intfs), what="turning offloads off")
        if relay_intfs:
            linkmode.run(["ip", "netns", "exec", ns, *offloads_off(relay_intfs)],
                          what="turning offloads off on the delay-line ends")
    for h in plan.hosts:
        node = net[h.name]
        cmds = ["sysctl -qw net.ipv6.conf.all.disable_ipv6=1",
                "sysctl -qw net.ipv6.conf.default.disable_ipv6=1"]
        if choice.datapath == "user" or userspace:
            cmds.append(" ".join(linkmode.offload_off_command("eth0")) + " >/dev/null")
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
            for cmd in linkmode.shaping_commands(
                    intf, bandwidth_mbps=ln.bandwidth_mbps, delay_ms=delay,
                    jitter_ms=ln.jitter_ms, loss_pct=ln.loss_pct,
                    netem=choice.link == "netem"):
                (relay_tc if on_relay else root_tc).append(" ".join(cmd[1:]))
    batch(["tc", "-n", ns], relay_tc, "link shaping on the delay-line ends (tc)")
    emu.root_tc = root_tc  # applied by _shape_switch_ports once OVS owns the ports


def shape_switch_ports(emu: Emulation) -> None:
    """tc on the switch ports, after OVS has attached them. OVS resets the root qdisc of a
    port it attaches (and again whenever it reconfigures a port without QoS), which
    silently removed netem and HTB here; QoS type linux-noop tells it to leave the
    qdiscs alone, then ours go on."""
    if not emu.root_tc:
        return
    ports = [h.intf for h in emu.plan.hosts]
    for ln in emu.plan.links:
        ports += [ln.a_intf, ln.b_intf]
    # QoS rows are roots in OVSDB (not garbage-collected with the ports): tag it with the
    # run id and record it, so stop and cleanup destroy exactly this one.
    emu.record.ovs_qos(emu.run_id)
    cmd = ["ovs-vsctl", "--timeout=30", "--", "--id=@noop", "create", "qos",
           "type=linux-noop", f"external_ids:edwc-run={emu.run_id}"]
    for port in ports:
        cmd += ["--", "set", "port", port, "qos=@noop"]
    linkmode.run(cmd, what="telling OVS to leave the ports' qdiscs alone")
    batch(["tc"], emu.root_tc, "link shaping (tc)")


def check_ports(emu: Emulation) -> None:
    """OVS reports a port it could not open (e.g. no AF_XDP in the kernel) only in the
    Interface table: fail loudly instead of building a network with dead ports."""
    names = [h.intf for h in emu.plan.hosts]
    for ln in emu.plan.links:
        names += [ln.a_intf, ln.b_intf]
    r = subprocess.run(["ovs-vsctl", "--timeout=10", "--format=csv", "--no-headings",
                        "--columns=name,error", "list", "Interface", *names],
                       capture_output=True, text=True, timeout=30)
    bad = [ln for ln in r.stdout.splitlines() if ln and not ln.endswith(",[]")]
    if r.returncode != 0 or bad:
        raise BuildError(
            f"Open vSwitch could not open {len(bad)} port(s) as {emu.choice.port_type}: "
            f"{'; '.join(bad[:3]) or r.stderr.strip()}; run with --ovs-port-type system")


def start_delay_lines(emu: Emulation) -> None:
    from emulation.delayline import DelayLineProcess, Hop, split_links

    # Without a given value the relays start at 0 and _calibrate() sets it once routed.
    comp = DEFAULT_SUBSTRATE_US if emu.substrate_us is None else emu.substrate_us
    pairs = []
    for ln in emu.plan.links:
        lim_ab = linkmode.queue_limit_packets(ln.bandwidth_mbps, ln.delay_ms_ab)
        lim_ba = linkmode.queue_limit_packets(ln.bandwidth_mbps, ln.delay_ms_ba)
        pairs.append((
            Hop(id=f"{ln.id}:a>b", in_if=ln.relay_a, out_if=ln.relay_b,
                delay_us=ln.delay_ms_ab * 1000, jitter_us=ln.jitter_ms * 1000,
                loss=ln.loss_pct / 100, limit=lim_ab, compensation_us=comp),
            Hop(id=f"{ln.id}:b>a", in_if=ln.relay_b, out_if=ln.relay_a,
                delay_us=ln.delay_ms_ba * 1000, jitter_us=ln.jitter_ms * 1000,
                loss=ln.loss_pct / 100, limit=lim_ba, compensation_us=comp)))
    if not pairs:
        return
    workers = emu.links.delay_workers or min(len(pairs), max(2, os.cpu_count() or 2))
    for i, hops in enumerate(split_links(pairs, workers)):
        if not hops:
            continue
        dl = DelayLineProcess.start(hops, str(emu.work_dir), f"delayline-{i}",
                                    seed=emu.links.seed, python=sys.executable,
                                    netns=emu.relay_netns,
                                    rt_priority=emu.links.delay_line_rt_priority)
        emu.delay_lines.append(dl)
        emu.record.process(dl.pid, f"delayline-{i}")
    rt = emu.delay_lines[0].stats(refresh=True).get("realtime", "?")
    emu.log(f"[emulation] {len(emu.delay_lines)} delay-line process(es) relaying "
             f"{len(pairs)} links (scheduling: {rt})")
    emu.delay_line_scheduling = rt
