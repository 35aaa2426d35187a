"""Root smoke test: the controller process on three real OVS bridges (userspace datapath).

Triangle s1 (beijing) - s2 (shanghai) - s3 (xian), one host namespace on s1 and on s2.
The plan says s1->s2 direct is 10 ms and s1->s3->s2 is 2 ms, so traffic first goes via
xian; then the s1-s3 link loses carrier on both ends and traffic must move to the direct
link. No delay is emulated here: the plan's delays only steer the routing.

Everything this test creates carries a random ``ct<4 chars>`` prefix and is removed in
``finally``; nothing else is touched. On failure the flows and the controller log are in
the test's tmp dir.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import string
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.root, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
NEEDED = ("ovs-vsctl", "ovs-ofctl", "ip", "ethtool", "ping")


def _skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root"
    missing = [c for c in NEEDED if shutil.which(c) is None]
    if missing:
        return f"missing commands: {missing}"
    if subprocess.run(["ovs-vsctl", "--timeout=3", "show"], capture_output=True).returncode:
        return "Open vSwitch is not running"
    return None


def sh(*cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({r.returncode}): {r.stderr.strip()}")
    return r


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(pred, timeout: float, what: str, step: float = 0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def read_status(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def no_offload(ifname: str, netns: str | None = None) -> None:
    pre = ("ip", "netns", "exec", netns) if netns else ()
    sh(*pre, "ethtool", "-K", ifname, "tx", "off", "tso", "off", "gso", "off", "gro", "off",
       check=False)


class OvsTestbed:
    """Bridges, veths and namespaces named with one random prefix; removes only those."""

    def __init__(self, tag: str) -> None:
        self.tag = tag
        self.bridges: list[str] = []
        self.veths: list[str] = []
        self.netns: list[str] = []

    def bridge(self, n: int, port: int) -> str:
        name = f"{self.tag}s{n}"
        sh("ovs-vsctl", "add-br", name, "--", "set", "bridge", name, "datapath_type=netdev",
           "fail_mode=secure", "protocols=OpenFlow13", f"other-config:datapath-id={n:016x}",
           "other-config:disable-in-band=true")
        self.bridges.append(name)
        sh("ovs-vsctl", "set-controller", name, f"tcp:127.0.0.1:{port}")
        return name

    def veth(self, a: str, b: str) -> None:
        sh("ip", "link", "add", a, "type", "veth", "peer", "name", b)
        self.veths.append(a)
        for end in (a, b):
            no_offload(end)

    def attach(self, bridge: str, ifname: str, ofport: int) -> None:
        sh("ovs-vsctl", "add-port", bridge, ifname, "--", "set", "interface", ifname,
           f"ofport_request={ofport}")
        sh("ip", "link", "set", ifname, "up")

    def host(self, name: str, bridge: str, ofport: int, ip: str, mac: str) -> str:
        ns = f"{self.tag}{name}"
        sh("ip", "netns", "add", ns)
        self.netns.append(ns)
        inner, outer = f"{self.tag}{name}e", f"{bridge}-p{ofport}"
        self.veth(inner, outer)
        sh("ip", "link", "set", inner, "netns", ns)
        sh("ip", "-n", ns, "link", "set", inner, "address", mac)
        sh("ip", "-n", ns, "addr", "add", f"{ip}/8", "dev", inner)
        sh("ip", "-n", ns, "link", "set", inner, "up")
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        no_offload(inner, ns)
        self.attach(bridge, outer, ofport)
        return ns

    def cleanup(self) -> None:
        for br in self.bridges:
            sh("ovs-vsctl", "--if-exists", "del-br", br, check=False)
        for v in self.veths:
            sh("ip", "link", "del", v, check=False)
        for ns in self.netns:
            sh("ip", "netns", "del", ns, check=False)


def ping(ns: str, ip: str, count: int = 3) -> bool:
    r = sh("ip", "netns", "exec", ns, "ping", "-c", str(count), "-i", "0.2", "-W", "1", ip,
           check=False)
    return r.returncode == 0


def flow_packets(bridge: str, ip: str) -> int:
    out = sh("ovs-ofctl", "-O", "OpenFlow13", "dump-flows", bridge, f"ip,nw_dst={ip}").stdout
    m = re.search(r"n_packets=(\d+)", out)
    return int(m.group(1)) if m else 0


def test_controller_on_ovs_triangle(tmp_path):
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    tag = "ct" + "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(4))
    port = free_port()
    sites = {1: "beijing", 2: "shanghai", 3: "xian"}
    # ports: 1 = host, then links; (a, a_port, b, b_port, delay a->b, delay b->a)
    links = [(1, 2, 2, 2, 10.0, 10.0), (1, 3, 3, 2, 1.0, 1.0), (3, 3, 2, 3, 1.0, 1.0)]
    plan = {
        "format": "edwc-plan/1", "run_id": tag[2:], "topology": "ct-triangle",
        "switches": [{"name": f"{tag}s{d}", "site": s, "dpid": d} for d, s in sites.items()],
        "hosts": [{"name": f"h{d}", "site": sites[d], "ip": f"10.0.0.{d}", "prefixlen": 8,
                   "mac": f"02:00:00:00:00:0{d}", "dpid": d, "port": 1} for d in (1, 2)],
        "links": [{"id": f"{sites[a]}-{sites[b]}", "a": sites[a], "b": sites[b], "a_dpid": a,
                   "a_port": ap, "b_dpid": b, "b_port": bp, "delay_ms_ab": dab,
                   "delay_ms_ba": dba, "bandwidth_mbps": 1000.0}
                  for a, ap, b, bp, dab, dba in links],
    }
    plan_path, status_path, log_path = (tmp_path / "plan.json", tmp_path / "status.json",
                                        tmp_path / "controller.log")
    plan_path.write_text(json.dumps(plan, indent=1))

    tb = OvsTestbed(tag)
    proc = None
    t0 = time.monotonic()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "controller", "--plan", str(plan_path),
             "--listen", f"127.0.0.1:{port}", "--status", str(status_path),
             "--log-file", str(log_path), "--probe-interval", "1.0"],
            cwd=REPO, stdout=subprocess.DEVNULL, stderr=open(tmp_path / "stderr.txt", "w"))
        wait_until(lambda: status_path.exists(), 10, "the controller's first status file")
        br = {d: tb.bridge(d, port) for d in sites}
        for a, ap, b, bp, _, _ in links:
            ia, ib = f"{br[a]}-p{ap}", f"{br[b]}-p{bp}"
            tb.veth(ia, ib)
            tb.attach(br[a], ia, ap)
            tb.attach(br[b], ib, bp)
        ns = {d: tb.host(f"h{d}", br[d], 1, f"10.0.0.{d}", f"02:00:00:00:00:0{d}")
              for d in (1, 2)}
        t_built = time.monotonic()

        st = wait_until(lambda: (s := read_status(status_path)).get("ready") and s, 30,
                        "status ready")
        t_ready = time.monotonic()
        assert st["pid"] == proc.pid
        assert st["expected"] == {"switches": 3, "links": 6} and len(st["links"]) == 6
        assert st["paths"]["h1>h2"] == ["beijing", "xian", "shanghai"]
        assert st["paths"]["h2>h1"] == ["shanghai", "xian", "beijing"]
        assert ping(ns[1], "10.0.0.2") and ping(ns[2], "10.0.0.1")
        assert flow_packets(br[3], "10.0.0.2") > 0  # the pings really crossed xian

        # fiber cut: carrier loss on both ends of beijing-xian
        version = st["routes_version"]
        # 100 pings/s across the cut: lost replies x 10 ms ~ the data-plane outage
        flood = subprocess.Popen(["ip", "netns", "exec", ns[1], "ping", "-q", "-i", "0.01",
                                  "-c", "200", "-W", "1", "10.0.0.2"],
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        time.sleep(0.5)
        t_cut = time.monotonic()
        sh("ip", "link", "set", f"{br[1]}-p3", "down")
        sh("ip", "link", "set", f"{br[3]}-p2", "down")
        st = wait_until(lambda: (s := read_status(status_path)).get("paths", {}).get("h1>h2")
                        == ["beijing", "shanghai"] and s, 10, "reroute to the direct link")
        t_rerouted = time.monotonic()
        ping_out, _ = flood.communicate(timeout=20)
        m = re.search(r"(\d+) packets transmitted, (\d+) received", ping_out)
        assert m, ping_out
        lost = int(m.group(1)) - int(m.group(2))
        assert lost <= 20, ping_out  # generous: the controller reacts in tens of ms
        assert st["routes_version"] > version
        assert [1, 3, 3, 2] not in st["links"] and [3, 2, 1, 3] not in st["links"]
        assert st["paths"]["h2>h1"] == ["shanghai", "beijing"]
        assert ping(ns[1], "10.0.0.2") and ping(ns[2], "10.0.0.1")

        # the controller connection of s2 drops and comes back: flows are rebuilt
        t_drop = time.monotonic()
        sh("ovs-vsctl", "del-controller", br[2])
        wait_until(lambda: 2 not in read_status(status_path).get("switches", [2]), 10,
                   "s2 to disconnect")
        sh("ovs-vsctl", "set-controller", br[2], f"tcp:127.0.0.1:{port}")
        st = wait_until(lambda: (s := read_status(status_path)).get("ready") is False
                        and 2 in s["switches"] and len(s["links"]) == 4
                        and s["paths"].get("h1>h2") == ["beijing", "shanghai"] and s, 15,
                        "s2 to reconnect and its links to be rediscovered")
        t_back = time.monotonic()
        assert ping(ns[1], "10.0.0.2") and ping(ns[2], "10.0.0.1")

        assert st["counters"]["of_errors"] == 0, st["counters"]
        assert st["counters"]["arp_replies"] >= 1
        timings = {"built_s": round(t_built - t0, 2), "ready_from_start_s": round(t_ready - t0, 2),
                   "reroute_status_s": round(t_rerouted - t_cut, 3),
                   "pings_lost_at_10ms_interval": lost,
                   "reconnect_s": round(t_back - t_drop, 2)}
        (tmp_path / "timings.json").write_text(json.dumps(timings))
        print("controller smoke timings:", timings)
    finally:
        try:
            for b in tb.bridges:
                (tmp_path / f"flows-{b}.txt").write_text(
                    sh("ovs-ofctl", "-O", "OpenFlow13", "dump-flows", b, check=False).stdout)
        finally:
            if proc is not None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            tb.cleanup()
    assert proc.returncode == 0
    log = log_path.read_text()
    assert "Traceback" not in log and "OpenFlow error" not in log, log[-3000:]
    assert "stopping on signal" in log
