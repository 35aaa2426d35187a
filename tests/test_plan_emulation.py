"""Plan naming/addressing, tc command building, ping parsing, run records (no root)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from common.stats import percentile
from emulation import lifecycle
from emulation.linkmode import queue_limit_packets, shaping_commands
from probes.ping import PingParseError, parse_ping, ping_command
from topology.loader import load_topology
from topology.plan import make_plan

FIX = Path(__file__).parent / "fixtures"


def test_plan_is_deterministic_and_names_fit_ifnamsiz():
    net = load_topology("edwc")
    p1, p2 = make_plan(net, "ab12"), make_plan(net, "ab12")
    assert p1.to_json() == p2.to_json()
    names = [s.name for s in p1.switches] + [h.intf for h in p1.hosts]
    for ln in p1.links:
        names += [ln.a_intf, ln.b_intf, ln.relay_a, ln.relay_b]
    assert len(names) == len(set(names))
    assert all(len(n) <= 15 and "ab12" in n for n in names)
    assert len({s.dpid for s in p1.switches}) == len(p1.switches)
    # hosts: metros and clusters only, unique IPs and MACs, on port 1 of their site's switch
    hosts = p1.hosts
    assert {h.site for h in hosts} == {s.id for s in net.sites if s.kind in ("metro", "cluster")}
    assert len({h.ip for h in hosts}) == len({h.mac for h in hosts}) == len(hosts)
    assert all(h.port == 1 and p1.switch_of_site(h.site).name == h.switch for h in hosts)


def test_plan_ports_unique_per_switch_and_delays_carried():
    net = load_topology(FIX / "tiny.yaml")
    plan = make_plan(net, "zz99")
    used = {}
    for h in plan.hosts:
        used.setdefault(h.dpid, []).append(h.port)
    for ln in plan.links:
        used.setdefault(ln.a_dpid, []).append(ln.a_port)
        used.setdefault(ln.b_dpid, []).append(ln.b_port)
    assert all(len(v) == len(set(v)) for v in used.values())
    ew = plan.link("east", "west")
    assert (ew.delay_ms_ab, ew.delay_ms_ba) == (20, 25)
    d = json.loads(plan.to_json())
    assert d["format"] == "edwc-plan/1" and d["run_id"] == "zz99"


def test_plan_rejects_bad_run_id():
    with pytest.raises(ValueError):
        make_plan(load_topology(FIX / "tiny.yaml"), "TOO-LONG")


def test_shaping_commands_userspace_only_bandwidth():
    cmds = shaping_commands("x", bandwidth_mbps=100, delay_ms=10, loss_pct=1, netem=False)
    text = [" ".join(c) for c in cmds]
    assert any("htb" in c and "rate 100mbit" in c for c in text)
    assert not any("netem" in c for c in text)


def test_shaping_commands_netem_under_htb():
    cmds = shaping_commands("x", bandwidth_mbps=100, delay_ms=10, jitter_ms=1, loss_pct=3,
                            netem=True)
    netem = " ".join(cmds[-1])
    assert "parent 5:1" in netem and "delay 10000us 1000us" in netem and "loss 3%" in netem
    only = shaping_commands("x", bandwidth_mbps=None, delay_ms=2, netem=True)
    assert len(only) == 1 and only[0][5:7] == ["root", "handle"]


def test_queue_limit_covers_bdp():
    assert queue_limit_packets(10, 1) == 1000
    assert queue_limit_packets(1000, 20) == pytest.approx(2 * 1e9 * 0.02 / (1514 * 8), abs=1)


# --- ping parser -----------------------------------------------------------------------------

def test_parse_ping_ok():
    r = parse_ping((FIX / "ping_ok.txt").read_text())
    assert (r.sent, r.received, len(r.rtts_ms)) == (3, 3, 3)
    assert r.loss == 0


def test_parse_ping_loss_and_dup():
    r = parse_ping((FIX / "ping_loss.txt").read_text())
    assert (r.sent, r.received) == (4, 3)
    assert r.rtts_ms == (20.4, 20.9, 20.6)  # the DUP reply is ignored
    assert r.loss == pytest.approx(0.25)
    assert r.median == 20.6


def test_parse_ping_all_lost():
    r = parse_ping((FIX / "ping_unreachable.txt").read_text())
    assert r.received == 0 and r.loss == 1.0 and r.rtts_ms == ()


@pytest.mark.parametrize("text", ["", "garbage\n" * 10, "PING x\n64 bytes time=1 ms",
                                  "5 packets transmitted, 9 received"])
def test_parse_ping_rejects_non_ping(text):
    with pytest.raises(PingParseError):
        parse_ping(text)


def test_parse_ping_rejects_huge_input():
    with pytest.raises(PingParseError, match="too large"):
        parse_ping("x" * (5 * 1024 * 1024))


def test_percentile():
    assert percentile([1, 2, 3, 4], 50) == 2.5
    assert percentile([5], 99) == 5
    assert ping_command("10.0.0.1", 5, 0.01)[-1] == "10.0.0.1"


# --- run records -------------------------------------------------------------------------------

@pytest.fixture
def record_dir(tmp_path, monkeypatch):
    monkeypatch.setattr(lifecycle, "RECORD_DIR", tmp_path)
    return tmp_path


def test_record_survives_torn_line_and_kills_only_recorded_process(record_dir):
    ours = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        rec = lifecycle.RunRecord("t001")
        rec.open()
        rec.process(ours.pid, "test")
        workdir = record_dir / "work"
        workdir.mkdir()
        rec.directory(workdir)
        with open(rec.path, "a") as f:
            f.write('{"t": "intf", "na')  # torn by a crash
        # pretend the owner died: rewrite the owner pid to a dead one
        lines = rec.path.read_text().splitlines()
        head = json.loads(lines[0])
        head["owner_pid"], head["owner_start"] = 999999999, 1
        rec.path.write_text("\n".join([json.dumps(head), *lines[1:]]))
        results = lifecycle.cleanup()
        assert results[0]["processes"] == [f"test:{ours.pid}"]
        assert ours.wait(timeout=5) is not None
        assert bystander.poll() is None
        assert not workdir.exists()
        assert lifecycle.cleanup() == []  # second cleanup: nothing to do
    finally:
        for p in (ours, bystander):
            if p.poll() is None:
                p.kill()
            p.wait()


def test_cleanup_skips_live_owner(record_dir):
    rec = lifecycle.RunRecord("t002")
    rec.open()
    out = lifecycle.cleanup()
    assert "skipped" in out[0]
    assert rec.path.exists()


def test_reused_pid_is_not_killed(record_dir):
    me = os.getpid()
    assert not lifecycle.stop_recorded(me, start=12345)  # wrong start time: not ours


def test_mininet_imports_without_distutils():
    """Ubuntu 24.04's Python 3.12 has no distutils; Mininet 2.3.0 imports it."""
    code = ("import sys; sys.modules['distutils'] = None; sys.modules['distutils.version'] = None\n"
            "import emulation.mncompat\n"
            "import mininet.node\n"
            "from distutils.version import StrictVersion as S\n"
            "assert S('1.9') < S('1.10') and not S('3.1') < S('1.10')\n"
            "print('ok')")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       cwd=Path(__file__).resolve().parents[1])
    assert r.stdout.strip() == "ok", r.stderr


def test_plan_json_round_trips_through_the_one_reader():
    """The builder writes plan.json and every reader (controller, probes, reports) parses it
    with topology.plan.parse_plan: what comes back is exactly what was written."""
    from topology.plan import parse_plan
    for net in (load_topology("edwc"), load_topology(FIX / "tiny.yaml")):
        plan = make_plan(net, "rt01")
        assert parse_plan(json.loads(plan.to_json())) == plan


@pytest.mark.skipif(not os.path.exists("/usr/bin/python3"), reason="no system python3")
def test_commands_work_with_the_system_python():
    """`sudo python -m topology ...` and `sudo python experiments/...` find the venv."""
    root = Path(__file__).resolve().parents[1]
    r = subprocess.run(["/usr/bin/python3", "-m", "topology", "validate",
                        str(FIX / "tiny.yaml")], capture_output=True, text=True, cwd=root,
                       env={k: v for k, v in os.environ.items()
                            if k not in ("VIRTUAL_ENV", "PYTHONPATH", "EDWC_TESTBED_REEXEC")})
    assert r.returncode == 0 and "OK, 3 sites, 3 links" in r.stdout, r.stderr
    r = subprocess.run(["/usr/bin/python3", "experiments/run_backbone.py", "--help"],
                       capture_output=True, text=True, cwd=root,
                       env={k: v for k, v in os.environ.items()
                            if k not in ("VIRTUAL_ENV", "PYTHONPATH", "EDWC_TESTBED_REEXEC")})
    assert r.returncode == 0 and "--cli" in r.stdout, r.stderr


@pytest.mark.skipif(not os.path.exists("/usr/bin/python3"), reason="no system python3")
def test_launchers_work_from_any_directory_and_as_one_command(tmp_path):
    """A script run by absolute path from elsewhere, the emulation's check, and the
    installed `edwc` command all start their program."""
    root = Path(__file__).resolve().parents[1]
    env = {k: v for k, v in os.environ.items()
           if k not in ("VIRTUAL_ENV", "PYTHONPATH", "EDWC_TESTBED_REEXEC")}
    r = subprocess.run(["/usr/bin/python3", str(root / "experiments" / "fiber_cut.py"),
                        "--help"], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert r.returncode == 0 and "usage: fiber_cut.py" in r.stdout, r.stderr
    r = subprocess.run(["/usr/bin/python3", "-m", "emulation", "check", "--brief"],
                       capture_output=True, text=True, cwd=root, env=env)
    assert r.returncode == 0 and r.stdout.startswith("link emulation "), r.stderr
    edwc = root / ".venv" / "bin" / "edwc"
    if edwc.exists():
        r = subprocess.run([str(edwc), "topology", "validate", str(FIX / "tiny.yaml")],
                           capture_output=True, text=True, env=env)
        assert r.returncode == 0 and "OK, 3 sites" in r.stdout, r.stderr
        r = subprocess.run([str(edwc), "nope"], capture_output=True, text=True, env=env)
        assert r.returncode == 2 and "unknown command 'nope'" in r.stderr
