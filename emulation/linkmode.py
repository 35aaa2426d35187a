"""Link emulation: which path this machine supports, and the tc commands for it.

Two independent choices, each detected automatically, printed, overridable, recorded:
- link emulation: `netem` (kernel sch_netem for delay/jitter/loss) or `userspace`
  (emulation.delayline relays frames between veth ends and holds them);
- OVS datapath: `kernel` (openvswitch module) or `user` (datapath_type=netdev);
- on the userspace datapath, how OVS reads its ports: `afxdp` (AF_XDP sockets polled by a
  PMD thread) or `system` (AF_PACKET sockets polled by the main thread). Measured here on
  the 29-switch EDWC backbone, `system` ports added 4-6 ms to a 3-switch RTT (the main
  loop polls every port on every wake-up) and `afxdp` ports 0.4 ms, at the price of one
  core busy-polling and ~60 MB of locked memory per port.
Bandwidth is always shaped in the kernel with HTB, on the egress of the switch port
that feeds the link, so a frame is serialised first and then propagated, as on a fibre.

The command builders are pure and unit-tested; `run()` executes and checks them.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass

LINK_MODES = ("auto", "netem", "userspace", "none")  # none: no delay (substrate baseline)
DATAPATHS = ("auto", "kernel", "user")
PORT_TYPES = ("auto", "system", "afxdp")
HTB_HANDLE = "5:"
HTB_CLASS = "5:1"
NETEM_HANDLE = "10:"
MTU_BYTES = 1514


class EmulationError(RuntimeError):
    pass


@dataclass(frozen=True)
class EmulationChoice:
    link: str  # "netem" | "userspace" | "none"
    datapath: str  # "kernel" | "user"
    link_reason: str
    datapath_reason: str
    port_type: str = "system"  # "system" | "afxdp"
    port_reason: str = "kernel datapath"

    def to_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        return (f"link emulation: {self.link} ({self.link_reason}); "
                f"OVS datapath: {self.datapath} ({self.datapath_reason}); "
                f"OVS ports: {self.port_type} ({self.port_reason})")


def netem_available() -> tuple[bool, str]:
    """Try a netem qdisc on the loopback of a throwaway network namespace."""
    if os.path.isdir("/sys/module/sch_netem"):
        return True, "sch_netem module loaded"
    if not shutil.which("mnexec") or not shutil.which("tc"):
        return False, "cannot probe: mnexec or tc missing"
    r = subprocess.run(["mnexec", "-n", "tc", "qdisc", "add", "dev", "lo", "root", "netem",
                        "delay", "1ms"], capture_output=True, text=True, timeout=10)
    if r.returncode == 0:
        return True, "netem qdisc accepted by the kernel"
    return False, f"kernel has no sch_netem ({(r.stderr or r.stdout).strip()[:80]})"


def ovs_kernel_datapath_available() -> tuple[bool, str]:
    if os.path.isdir("/sys/module/openvswitch"):
        return True, "openvswitch kernel module loaded"
    return False, "openvswitch kernel module not loaded"


def ovs_afxdp_available() -> tuple[bool, str]:
    r = subprocess.run(["ovs-vsctl", "--timeout=5", "get", "Open_vSwitch", ".", "iface_types"],
                       capture_output=True, text=True)
    if r.returncode != 0:
        return False, "cannot ask Open vSwitch for its interface types"
    if "afxdp" not in r.stdout.replace("afxdp-nonpmd", ""):
        return False, "this Open vSwitch build has no AF_XDP ports"
    return True, "this Open vSwitch build has AF_XDP ports"


def _decide(asked: str, probe, on: str, off: str, flag: str) -> tuple[str, str]:
    """`auto`: the probe decides between `on` and `off`; `on` by flag: the probe must agree."""
    if asked == "auto":
        ok, why = probe()
        return (on if ok else off), why
    if asked == on:
        ok, why = probe()
        if not ok:
            raise EmulationError(f"{flag} {on} asked for, but {why}; use {flag} {off} or auto")
    return asked, "chosen by flag"


def choose(link: str = "auto", datapath: str = "auto", port_type: str = "auto"
           ) -> EmulationChoice:
    for value, allowed, what in ((link, LINK_MODES, "link emulation"),
                                 (datapath, DATAPATHS, "datapath"),
                                 (port_type, PORT_TYPES, "OVS port type")):
        if value not in allowed:
            raise EmulationError(f"{what} {value!r} is not one of {allowed}")
    link_choice, link_reason = _decide(link, netem_available, "netem", "userspace",
                                       "--link-emulation")
    dp_choice, dp_reason = _decide(datapath, ovs_kernel_datapath_available, "kernel", "user",
                                   "--datapath")
    if dp_choice == "kernel":
        if port_type == "afxdp":
            raise EmulationError("--ovs-port-type afxdp needs --datapath user")
        pt, pt_reason = "system", "kernel datapath"
    else:
        pt, pt_reason = _decide(port_type, ovs_afxdp_available, "afxdp", "system",
                                "--ovs-port-type")
        if pt == "system" and port_type == "auto":
            pt_reason += "; expect extra switch latency on large topologies"
    return EmulationChoice(link_choice, dp_choice, link_reason, dp_reason, pt, pt_reason)


def queue_limit_packets(bandwidth_mbps: float, delay_ms: float) -> int:
    """Queue limit holding twice the bandwidth-delay product, at least 1000 packets."""
    bdp_packets = bandwidth_mbps * 1e6 * max(delay_ms, 0.0) / 1000.0 / (MTU_BYTES * 8)
    return max(1000, int(math.ceil(2 * bdp_packets)))


def shaping_commands(intf: str, *, bandwidth_mbps: float | None, delay_ms: float = 0.0,
                     jitter_ms: float = 0.0, loss_pct: float = 0.0,
                     netem: bool = False) -> list[list[str]]:
    """tc commands for one interface's egress: HTB rate limit, and netem if asked.

    With netem=False only the bandwidth is shaped (delay, jitter and loss then come from the
    userspace delay line).
    """
    cmds: list[list[str]] = []
    parent = ["root"]
    if bandwidth_mbps:
        rate = f"{bandwidth_mbps:g}mbit"
        cmds.append(["tc", "qdisc", "add", "dev", intf, "root", "handle", HTB_HANDLE, "htb",
                     "default", "1"])
        # Burst: at least 10 frames or 1 ms at line rate, so HTB is accurate at high rates.
        burst = max(10 * MTU_BYTES, int(bandwidth_mbps * 1e6 / 8 / 1000))
        cmds.append(["tc", "class", "add", "dev", intf, "parent", HTB_HANDLE, "classid",
                     HTB_CLASS, "htb", "rate", rate, "burst", str(burst), "cburst",
                     str(burst), "quantum", str(min(200000, max(MTU_BYTES, burst)))])
        parent = ["parent", HTB_CLASS]
    if netem and (delay_ms > 0 or jitter_ms > 0 or loss_pct > 0):
        cmd = ["tc", "qdisc", "add", "dev", intf, *parent, "handle", NETEM_HANDLE, "netem",
               "limit", str(queue_limit_packets(bandwidth_mbps or 1000.0, delay_ms))]
        cmd += ["delay", f"{delay_ms * 1000:.0f}us"]
        if jitter_ms > 0:
            cmd += [f"{jitter_ms * 1000:.0f}us", "distribution", "normal"]
        if loss_pct > 0:
            cmd += ["loss", f"{loss_pct:g}%"]
        cmds.append(cmd)
    return cmds


def software_versions() -> dict:
    """Versions that matter for reproducing a run's numbers."""
    import platform
    from importlib import metadata

    out = {"kernel": platform.release(), "python": platform.python_version()}
    for dist in ("os-ken", "mininet", "networkx", "PyYAML", "matplotlib", "numpy"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    try:
        r = subprocess.run(["ovs-vswitchd", "--version"], capture_output=True, text=True,
                           timeout=5)
        out["openvswitch"] = r.stdout.split()[-1] if r.returncode == 0 else None
    except (OSError, subprocess.SubprocessError, IndexError):
        out["openvswitch"] = None
    return out


def offload_off_command(intf: str) -> list[str]:
    """The userspace datapath and the delay line need real checksums and MTU-sized frames."""
    return ["ethtool", "-K", intf, "tx", "off", "tso", "off", "gso", "off", "gro", "off"]


def run(cmd: list[str], *, what: str = "") -> str:
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    if r.returncode != 0:
        raise EmulationError(f"{what or 'command'} failed: {' '.join(cmd)}: "
                             f"{(r.stderr or r.stdout).strip()}")
    return r.stdout


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m emulation check",
                                 description="Show which link-emulation path and OVS datapath "
                                             "this machine will use.")
    ap.add_argument("--link-emulation", choices=LINK_MODES, default="auto")
    ap.add_argument("--datapath", choices=DATAPATHS, default="auto")
    ap.add_argument("--ovs-port-type", choices=PORT_TYPES, default="auto")
    ap.add_argument("--brief", action="store_true", help="one line")
    args = ap.parse_args(argv)
    try:
        c = choose(args.link_emulation, args.datapath, args.ovs_port_type)
    except EmulationError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.brief:
        print(f"link emulation {c.link}, OVS datapath {c.datapath}, OVS ports {c.port_type}")
    else:
        print(c.describe())
    return 0


if __name__ == "__main__":
    sys.exit(main())
