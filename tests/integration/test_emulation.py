"""The emulated backbone delivers its model's delays; cuts reroute; nothing is left behind.

Tolerances (stated, on the link-emulation path this machine has, measured under CI load):
- small topology: median ping RTT within 1.0 ms of twice the configured one-way path delay;
- full EDWC backbone: within 1.5 ms (more switch hops, more load on a 2-core machine).
"""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from emulation.network import BuildError, Emulation, LinkConfig
from probes.ping import ping_from
from tests.integration.conftest import assert_clean, leftovers
from topology.loader import load_topology
from topology.paths import round_trip_ms

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "tests" / "fixtures" / "tiny.yaml"
SMALL_TOL_MS = 1.0
EDWC_TOL_MS = 1.5


model_rtt = round_trip_ms


def wait_path(emu, key, want, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if emu.controller_status().get("paths", {}).get(key) == want:
            return
        time.sleep(0.05)
    raise AssertionError(f"path {key} is {emu.controller_status().get('paths', {}).get(key)}, "
                         f"expected {want}")


@pytest.fixture(scope="module")
def tiny():
    net = load_topology(TINY)
    emu = Emulation(net, log=lambda *_: None)
    emu.start()
    yield emu
    rid = emu.run_id
    emu.stop()
    assert_clean(rid)


def test_small_topology_rtt_matches_model(tiny):
    net = tiny.network
    want = model_rtt(net, "east", "west")
    r = ping_from(tiny.net["east"], tiny.plan.host("west").ip, count=50, interval_s=0.02)
    assert r.loss == 0
    assert abs(r.median - want) <= SMALL_TOL_MS, (r.summary(), want)
    assert tiny.controller_status()["paths"]["east>west"] == ["east", "mid", "west"]


def test_link_cut_reroutes_and_restores(tiny):
    net, plan = tiny.network, tiny.plan
    west_ip = plan.host("west").ip
    tiny.cut_link("east", "mid")
    try:
        wait_path(tiny, "east>west", ["east", "west"])
        r = ping_from(tiny.net["east"], west_ip, count=20, interval_s=0.02)
        direct = net.graph()
        want = direct["east"]["west"]["delay_ms"] + direct["west"]["east"]["delay_ms"]
        assert r.loss == 0
        assert abs(r.median - want) <= SMALL_TOL_MS, (r.summary(), want)  # 20 + 25 ms
    finally:
        tiny.restore_link("east", "mid")
    wait_path(tiny, "east>west", ["east", "mid", "west"], timeout=15)
    r = ping_from(tiny.net["east"], west_ip, count=10, interval_s=0.02)
    assert r.loss == 0 and abs(r.median - model_rtt(net, "east", "west")) <= SMALL_TOL_MS


def test_controller_log_is_clean(tiny):
    log = tiny.controller_log.read_text()
    assert "Traceback" not in log
    assert tiny.controller_status()["counters"]["of_errors"] == 0


def test_controller_process_runs_with_the_emulations_config(tiny):
    """The running controller reports, in its status file, the configuration the emulation
    built its command line from."""
    assert tiny.controller_status()["config"] == tiny.controller.config.to_dict()


@pytest.mark.slow
def test_edwc_backbone_rtt_matches_model():
    net = load_topology("edwc")
    with Emulation(net, log=lambda *_: None) as emu:
        rid = emu.run_id
        assert emu.timings["up_s"] < 60
        for a, b in (("beijing", "zhangjiakou"), ("shanghai", "guian"), ("shenzhen", "qingyang"),
                     ("hangzhou", "horinger")):
            want = model_rtt(net, a, b)
            r = ping_from(emu.net[a], emu.plan.host(b).ip, count=30, interval_s=0.02)
            assert r.loss == 0, (a, b, r.summary())
            assert abs(r.median - want) <= EDWC_TOL_MS, (a, b, r.summary(), want)
        assert "Traceback" not in emu.controller_log.read_text()
    assert_clean(rid)


def test_failed_build_rolls_back():
    net = load_topology(TINY)
    emu = Emulation(net, controller_timeout=0.01, log=lambda *_: None)
    with pytest.raises(BuildError, match="not ready"):
        emu.start()
    assert_clean(emu.run_id)


CRASH_SCRIPT = textwrap.dedent("""
    import time
    from emulation.network import Emulation, LinkConfig
    from topology.loader import load_topology
    # system ports: the run also owns an OVSDB QoS row, which cleanup must remove too
    emu = Emulation(load_topology({tiny!r}), links=LinkConfig(ovs_port_type="system"),
                    log=lambda *_: None).start()
    print(emu.run_id, flush=True)
    time.sleep(600)
""")


def test_cleanup_after_sigkill_removes_exactly_the_run(tmp_path):
    foreign_br = f"fx{os.getpid() % 100000}"
    foreign_log = Path("/tmp") / f"x-{os.getpid()}.log"
    foreign_log.write_text("not ours")
    subprocess.run(["ovs-vsctl", "add-br", foreign_br, "--", "set", "bridge", foreign_br,
                    "datapath_type=netdev"], check=True)
    bystander = subprocess.Popen(["ping", "-q", "127.0.0.1"], stdout=subprocess.DEVNULL)
    crashed = subprocess.Popen([sys.executable, "-c",
                                CRASH_SCRIPT.format(tiny=str(TINY))], cwd=ROOT,
                               stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        rid = crashed.stdout.readline().strip()
        assert rid, "the emulation did not start"
        assert any(leftovers(rid).values())
        os.killpg(crashed.pid, signal.SIGKILL)  # the owner dies without stopping anything
        crashed.wait(timeout=10)
        left = leftovers(rid)
        assert left["interfaces"] and left["bridges"] and left["record"]
        assert left["ovs_qos_rows"]
        out = subprocess.run([sys.executable, "-m", "emulation", "cleanup"], cwd=ROOT,
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        assert f"run {rid}: removed" in out.stdout
        assert_clean(rid)
        # the processes the run started (controller, delay lines) are gone too
        ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
        assert f"edwc-testbed/{rid}/" not in ps
        # ... and nothing else was touched
        assert subprocess.run(["ovs-vsctl", "br-exists", foreign_br]).returncode == 0
        assert bystander.poll() is None
        assert foreign_log.read_text() == "not ours"
        again = subprocess.run([sys.executable, "-m", "emulation", "cleanup"], cwd=ROOT,
                               capture_output=True, text=True, timeout=60)
        assert "nothing to clean up" in again.stdout or f"run {rid}" not in again.stdout
    finally:
        if crashed.poll() is None:
            os.killpg(crashed.pid, signal.SIGKILL)
        bystander.terminate()
        bystander.wait()
        subprocess.run(["ovs-vsctl", "--if-exists", "del-br", foreign_br])
        foreign_log.unlink(missing_ok=True)


def test_bad_topology_file_fails_cleanly(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("format: edwc-topology/1\nsites:\n  - {id: a, kind: metro, region: r, "
                   "lat: 95, lon: 1}\nlinks: []\n")
    r = subprocess.run([sys.executable, str(ROOT / "experiments" / "run_backbone.py"),
                        "--topology", str(bad)], capture_output=True, text=True, timeout=60,
                       cwd=ROOT)
    assert r.returncode == 2
    assert "lat: 95 is outside" in r.stderr and str(bad) in r.stderr
    assert "Traceback" not in r.stderr


def test_failure_in_the_middle_of_the_build_rolls_back(monkeypatch):
    """Bridges, veths, host namespaces and the controller exist when the delay line fails."""
    from emulation import delayline

    def fail(cls, *args, **kwargs):
        raise delayline.DelayLineError("injected failure")

    monkeypatch.setattr(delayline.DelayLineProcess, "start", classmethod(fail))
    emu = Emulation(load_topology(TINY), links=LinkConfig(link_emulation="userspace"),
                    log=lambda *_: None)
    with pytest.raises(delayline.DelayLineError, match="injected"):
        emu.start()
    assert_clean(emu.run_id)
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert f"edwc-testbed/{emu.run_id}/" not in ps  # the controller process is gone too


def test_switch_port_qdiscs_survive_ovs():
    """OVS resets the root qdisc of ports it attaches; shaping must still be there after the
    build (this is where the kernel path puts netem), and the QoS row that protects it goes
    with the run."""
    net = load_topology(TINY)
    with Emulation(net, links=LinkConfig(ovs_port_type="system"), log=lambda *_: None) as emu:
        rid = emu.run_id
        for ln in emu.plan.links:
            for intf in (ln.a_intf, ln.b_intf):
                out = subprocess.run(["tc", "qdisc", "show", "dev", intf], capture_output=True,
                                     text=True).stdout
                assert "htb 5:" in out, (intf, out)
        assert leftovers(rid)["ovs_qos_rows"]
        r = ping_from(emu.net["east"], emu.plan.host("west").ip, count=10, interval_s=0.02)
        assert r.loss == 0
    assert_clean(rid)
