"""The load generator (experiments/workload/loadgen.py) as a real process on loopback against a real
gateway agent (python -m gateway): schedule timing, result lines, the concurrency bound,
SIGTERM mid-run, bad schedules, and reading a truncated result file. No root needed."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from experiments.workload.generator import Request
from experiments.workload.loadgen import RESULT_KEYS, make_schedule, read_results
from tests.test_gateway_agent import AgentProc

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def agent(tmp_path):
    a = AgentProc(tmp_path, units="cuda=4")
    yield a
    a.stop()


def entry(idx: int, t: float, port: int, duration: float, service: str = "infer-rt",
          units: int = 1) -> dict:
    return {"idx": idx, "t": t, "service": service, "address": "127.0.0.1", "port": port,
            "units": units, "kinds": ["cuda"], "duration_s": duration}


def start_loadgen(tmp: Path, entries: list[dict], lead_s: float = 0.7, *extra: str
                  ) -> tuple[subprocess.Popen, Path, float]:
    sched, out = tmp / "schedule.json", tmp / "results.jsonl"
    sched.write_text(json.dumps({"requests": entries}))
    start_at = time.time() + lead_s
    proc = subprocess.Popen(
        [sys.executable, "-m", "experiments.workload.loadgen", "--schedule", str(sched),
         "--start-at", repr(start_at), "--out", str(out), "--timeout", "5", *extra],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 10
    while not Path(f"{out}.ready").exists():
        assert proc.poll() is None, proc.stderr.read()
        assert time.monotonic() < deadline, "no .ready marker in 10 s"
        time.sleep(0.02)
    return proc, out, start_at


def finish(proc: subprocess.Popen, timeout: float) -> tuple[dict, str]:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err
    lines = out.strip().splitlines()
    assert len(lines) == 1, out  # stdout: only the summary
    return json.loads(lines[0]), err


def test_three_requests_on_schedule(agent, tmp_path):
    entries = [entry(0, 0.0, agent.port, 0.3), entry(1, 0.2, agent.port, 0.3),
               entry(2, 0.4, agent.port, 0.2, service="train-batch", units=2)]
    proc, out, _ = start_loadgen(tmp_path, entries)
    summary, err = finish(proc, 20)
    assert "loadgen: ready, 3 requests" in err
    assert summary["requests"] == 3 and summary["sent"] == 3 and summary["done"] == 3
    assert summary["errors"] == {} and summary["not_sent"] == 0
    res = sorted(read_results(out), key=lambda r: r["idx"])
    assert [r["idx"] for r in res] == [0, 1, 2]
    for r, e in zip(res, entries):
        assert tuple(r) == RESULT_KEYS
        assert r["ok"] and r["done"] and r["error"] is None and r["gw"] == "t1"
        assert r["kind"] == "cuda" and r["t"] == e["t"]
        # sent on schedule: within 150 ms of t (threads start in well under that)
        assert e["t"] <= r["t_start"] + 0.005 and r["t_start"] - e["t"] < 0.15
        assert 0 < r["connect_ms"] < 100 and 0 <= r["start_ms"] < 200
        # the job ran for its duration (done reply after duration_s)
        assert r["total_ms"] >= e["duration_s"] * 1000 - 5
    assert json.loads(Path(f"{out}.ready").read_text())["requests"] == 3


def test_concurrency_bound_counts_overload_without_waiting(agent, tmp_path):
    entries = [entry(0, 0.0, agent.port, 0.8), entry(1, 0.1, agent.port, 0.1)]
    proc, out, _ = start_loadgen(tmp_path, entries, 0.7, "--max-inflight", "1")
    summary, _ = finish(proc, 20)
    res = {r["idx"]: r for r in read_results(out)}
    assert res[0]["done"] and res[1]["error"] == "overload" and not res[1]["ok"]
    assert res[1]["t_start"] < 0.3  # the schedule did not wait for job 0
    assert summary["overload"] == 1 and summary["sent"] == 1


def test_sigterm_mid_run_writes_interrupted_lines(agent, tmp_path):
    entries = [entry(0, 0.0, agent.port, 30.0), entry(1, 0.05, agent.port, 0.1),
               entry(2, 20.0, agent.port, 0.1)]
    proc, out, _ = start_loadgen(tmp_path, entries)
    agent.wait_state(lambda s: s["counters"]["jobs_served"] >= 1 and s["running_jobs"] >= 1, 10)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    summary, _ = finish(proc, 10)
    assert time.monotonic() - t0 < 3.0  # grace 1 s plus start-up slack
    res = {r["idx"]: r for r in read_results(out)}
    assert set(res) == {0, 1}  # idx 2 was not due yet: no line
    assert res[1]["done"] and res[0]["error"] == "interrupted" and not res[0]["ok"]
    assert summary["interrupted"] == 1 and summary["not_sent"] == 1 and summary["done"] == 1
    # the agent freed job 0's units when the loadgen's connection closed
    agent.wait_state(lambda s: s["running_jobs"] == 0, 5)


@pytest.mark.parametrize("content, word", [
    ("{}", "expected"),
    ('{"requests": [{"idx": 0, "t": -1, "service": "x", "address": "127.0.0.1", '
     '"port": 7000, "units": 1, "duration_s": 1}]}', "t = -1"),
    ('{"requests": [{"idx": 0, "t": 1, "service": "x", "address": "127.0.0.1", '
     '"port": 7000, "units": true, "duration_s": 1}]}', "'units'"),
    ("not json", "not valid JSON"),
])
def test_bad_schedule_exits_2_without_marker(tmp_path, content, word):
    sched, out = tmp_path / "s.json", tmp_path / "r.jsonl"
    sched.write_text(content)
    p = subprocess.run([sys.executable, "-m", "experiments.workload.loadgen",
                        "--schedule", str(sched), "--start-at", str(time.time()),
                        "--out", str(out)],
                       cwd=ROOT, capture_output=True, text=True, timeout=20)
    assert p.returncode == 2 and word in p.stderr and p.stdout == ""
    assert not Path(f"{out}.ready").exists()


def test_read_results_tolerates_a_truncated_last_line(tmp_path):
    p = tmp_path / "r.jsonl"
    assert read_results(p) == []
    p.write_text('{"idx": 0, "ok": true}\n{"idx": 1, "ok": false}\n{"idx": 2, "o')
    assert [r["idx"] for r in read_results(p)] == [0, 1]
    p.write_text('{"idx": 0}\ngarbage\n{"idx": 2}\n')
    with pytest.raises(ValueError, match="line 2"):
        read_results(p)


def test_make_schedule():
    services = [type("S", (), {"name": "infer", "address": "10.0.255.2", "port": 7000,
                               "kinds": ("cuda", "cann")})]
    s = make_schedule([Request(3, 1.5, 1.0, "shanghai", "infer", 2, 0.7)], services)
    assert s == {"requests": [{"idx": 3, "t": 1.5, "service": "infer",
                               "address": "10.0.255.2", "port": 7000, "units": 2,
                               "kinds": ["cuda", "cann"], "duration_s": 0.7,
                               "metro": "shanghai"}]}
