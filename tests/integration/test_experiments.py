"""The experiment scripts as a researcher runs them, on the small east-west backbone
(tests/fixtures/small_backbone.yaml): real Mininet, OVS, controller, gateway agents, load
generators and probes.

Stated tolerances:
- a pair's measured one-way p50 is within 0.5 ms of the model's path delay; the probe's own
  RTT p50 is no shorter than the sum of its two one-way p50s (less 0.2 ms: medians do not add
  exactly) and at most 2 ms longer: the RTT also holds the Python reflector's turnaround,
  which reached 1.08 ms on this loaded 2-core machine;
- the envelope verdict (a p95 over 20 probes, which one stall on this shared machine
  decides) is checked for consistency with the exit status and the report, not for pass;
- a job's TCP connect time is never below the model round trip to the gateway it reached
  (minus 0.3 ms of delay-line accounting), and the controller's recorded path RTT for a
  decision equals the model's to 0.01 ms;
- a fibre cut with a loop-free alternate interrupts the stream for less than 1 s (the
  target is 50 ms; the bound is loose so a loaded CI machine does not flake; the figure
  is printed and the benchmark measures it properly).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.integration.conftest import assert_clean
from topology.loader import load_topology
from topology.paths import shortest_path

ROOT = Path(__file__).resolve().parents[2]
SMALL = ROOT / "tests" / "fixtures" / "small_backbone.yaml"
PNG = b"\x89PNG\r\n\x1a\n"


def run(script: str, *args: str, timeout: float = 240, stdin: str | None = None
        ) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "experiments" / script), *args],
                          input=stdin, capture_output=True, text=True, timeout=timeout,
                          cwd=ROOT)


def load_report(d: Path) -> dict:
    return json.loads((d / "report.json").read_text())


def test_run_backbone_short_run_writes_a_complete_report(tmp_path):
    out = tmp_path / "report"
    r = run("run_backbone.py", "--topology", str(SMALL), "--duration", "8",
            "--envelope-count", "20", "--report-dir", str(out), "--cli", stdin="exit\n")
    # Exit 1 means a latency envelope failed: a p95 verdict on a shared, noisy machine (one
    # stall in 20 probes decides it), judged below for consistency, not for its outcome.
    assert r.returncode in (0, 1), r.stdout[-3000:] + r.stderr[-3000:]
    assert "mininet>" in r.stdout  # the CLI opened; `exit` went on to teardown and report
    rep = load_report(out)
    assert rep["status"] == "complete" and rep["format"] == "edwc-report/1"
    assert [p["status"] for p in rep["phases"]] == ["ok"] * len(rep["phases"])
    assert rep["run"]["emulation"]["link"] in ("netem", "userspace")
    assert rep["run"]["versions"]["os-ken"] and rep["config"]["seed"] == 1
    for name in ("report.md", "backbone_map.png", "latency_heatmap.png", "delay_cdfs.png",
                 "placements.png"):
        assert (out / name).stat().st_size > 1000, name
    assert (out / "backbone_map.png").read_bytes()[:8] == PNG
    assert_clean(rep["run"]["run_id"])

    # the envelope numbers agree with the model and with each other
    net = load_topology(SMALL)
    env = rep["envelope"]
    assert env["status"] in ("pass", "fail")  # every pair measured: a verdict, not "insufficient"
    assert (r.returncode == 1) == (env["status"] == "fail"), env["status"]
    assert all(p["status"] in ("pass", "fail") for p in env["pairs"])
    meas = env["meta"]["measurements"]
    assert len(meas) == 6  # 2 metros x 3 clusters
    for key, m in meas.items():
        a, b = key.split(">")
        fwd, rev = shortest_path(net, a, b).delay_ms, shortest_path(net, b, a).delay_ms
        assert abs(m["forward"]["p50"] - fwd) <= 0.5, (key, m["forward"], fwd)
        assert abs(m["reverse"]["p50"] - rev) <= 0.5, (key, m["reverse"], rev)
        turnaround = m["rtt"]["p50"] - (m["forward"]["p50"] + m["reverse"]["p50"])
        assert -0.2 <= turnaround <= 2.0, (key, m)

    # the jobs: every request accounted for, and physics respected
    jobs, metrics = rep["jobs"], rep["metrics"]
    assert len(jobs) == rep["workload"]["requests"] > 10
    served = [j for j in jobs if j["ok"]]
    assert metrics["served"] == len(served) >= 0.8 * len(jobs)
    assert sum(h["placed"] for h in metrics["per_hub"].values()) == len(
        [j for j in jobs if j["gw"]])
    gw_site = {g: g for g in ("wuhu", "horinger", "guian")}
    for j in served:
        rtt = (shortest_path(net, j["metro"], gw_site[j["gw"]]).delay_ms
               + shortest_path(net, gw_site[j["gw"]], j["metro"]).delay_ms)
        assert j["connect_ms"] >= rtt - 0.3, (j, rtt)
    for d in rep["decisions"]:
        if d["gateway"]:
            site = d["client"]
            rtt = (shortest_path(net, site, d["gateway"]).delay_ms
                   + shortest_path(net, d["gateway"], site).delay_ms)
            assert abs(d["rtt_ms"] - rtt) <= 0.01, d
    md = (out / "report.md").read_text()
    assert f"requests: {len(jobs)}" in md and env["status"].upper() in md


def test_fiber_cut_measures_the_interruption_and_restores(tmp_path):
    out = tmp_path / "cut"
    r = run("fiber_cut.py", "--topology", str(SMALL), "--link", "yrd-nmg",
            "--pair", "shanghai-horinger", "--cuts", "2", "--cut-s", "2", "--gap-s", "3",
            "--stream-rate", "500", "--no-workload", "--report-dir", str(out))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    rep = load_report(out)
    sc = rep["scenario"]
    print("interruptions (ms):", [c["interruption_ms"] for c in sc["cuts"]],
          "restore:", [c["restore_interruption_ms"] for c in sc["cuts"]])
    assert len(sc["cuts"]) == 2
    for c in sc["cuts"]:
        assert c["interruption_ms"] is not None and c["interruption_ms"] < 1000.0, c
        assert c["old_path"] == ["shanghai", "yrd", "nmg", "horinger"], c
        assert c["new_path"] and ("yrd", "nmg") not in set(zip(c["new_path"],
                                                               c["new_path"][1:])), c
        assert c["verdict"] == "pass", c  # the detour stays inside the 20 ms circle
        assert c["restored_path"] == c["old_path"], c
    # traffic flowed to the end: the last packets arrived after the last restore
    tl = sc["timeline"]
    assert max(tl["t"]) > sc["cuts"][-1]["t_restore"] + 2.0
    assert sc["stream"]["lost"] < 0.2 * sc["stream"]["sent"]
    assert (out / "fiber_cut_timeline.png").stat().st_size > 1000
    assert_clean(rep["run"]["run_id"])


def test_policy_comparison_places_differently_and_says_why(tmp_path):
    # shanghai's infer work (40 ms budget) fits both wuhu (near, pricey) and horinger
    # (far, cheap and green): nearest and greenest must split on it.
    wl = tmp_path / "wl.csv"
    rows = ["t,metro,service,units,duration_s"]
    rows += [f"{0.5 + 0.4 * i:.1f},shanghai,infer,2,0.3" for i in range(8)]
    wl.write_text("\n".join(rows) + "\n")
    out = tmp_path / "cmp"
    r = run("policy_compare.py", "--topology", str(SMALL), "--policies", "nearest,greenest",
            "--workload", str(wl), "--duration", "4", "--report-dir", str(out))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    rep = load_report(out)
    rows = {p["policy"]: p for p in rep["scenario"]["policies"]}
    assert rows["nearest"]["placements"] == {"wuhu": 8}, rows["nearest"]["placements"]
    assert rows["greenest"]["placements"] == {"horinger": 8}, rows["greenest"]["placements"]
    assert any("nearest: wuhu" in e for e in rows["nearest"]["explanations"])
    assert any("greenest: horinger" in e for e in rows["greenest"]["explanations"])
    md = (out / "report.md").read_text()
    assert "| nearest |" in md and "| greenest |" in md
    c = subprocess.run([sys.executable, "-m", "experiments.compare", str(out), str(out)],
                       capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert c.returncode == 0 and "greenest" in c.stdout, c.stdout + c.stderr
    assert_clean(rep["run"]["run_id"])


def test_ctrl_c_during_the_workload_tears_down_and_reports(tmp_path):
    out = tmp_path / "int"
    p = subprocess.Popen([sys.executable, str(ROOT / "experiments" / "run_backbone.py"),
                          "--topology", str(SMALL), "--duration", "30", "--envelope-count",
                          "0", "--report-dir", str(out)], stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True, cwd=ROOT)
    seen = []
    try:
        deadline = time.monotonic() + 120
        for line in p.stdout:
            seen.append(line)
            if "requests finished" in line and "starts in" not in line:
                break
            assert time.monotonic() < deadline, "".join(seen[-20:])
        time.sleep(2.0)
        p.send_signal(signal.SIGINT)
        rest, _ = p.communicate(timeout=90)
    finally:
        if p.poll() is None:
            p.kill()
    text = "".join(seen) + rest
    assert p.returncode == 130, text[-3000:]
    assert "Traceback" not in text
    rep = load_report(out)
    assert rep["status"] == "interrupted" and "workload" in rep["error"]
    assert rep["jobs"] and any(j["ok"] for j in rep["jobs"])
    assert any(j["error"] == "interrupted" or j["t"] > 10 for j in rep["jobs"])
    assert rep["metrics"] is not None
    assert_clean(rep["run"]["run_id"])


@pytest.mark.parametrize("args, needle", [
    (["--workload", "MISSING.csv"], "MISSING.csv"),
    (["--policy", "nosuchmodule:Cls"], "nosuchmodule"),
    (["--topology", str(ROOT / "tests" / "fixtures" / "tiny.yaml")], "no site with compute"),
])
def test_bad_input_fails_before_anything_is_built(tmp_path, args, needle):
    before = set(os.listdir("/sys/class/net"))
    r = run("run_backbone.py", *args, "--report-dir", str(tmp_path / "x"), timeout=60)
    assert r.returncode == 2, r.stdout + r.stderr
    assert needle in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "x").exists()
    assert set(os.listdir("/sys/class/net")) <= before
