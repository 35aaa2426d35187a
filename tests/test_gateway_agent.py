"""The gateway agent (C-SMA): capacity/queue bookkeeping with injected time, request
parsing, the command line, and the real agent process on loopback (adverts, jobs, queue,
errors, disconnects, 200 concurrent connections, SIGTERM). No root needed."""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from gateway.client import request_job
from gateway.config import parse_argv
from gateway.jobs import RequestError, parse_request
from gateway.pool import BUSY, QUEUED, STARTED, Job, Pool, pick_kind, significant_change
from gateway.protocol import Advert, decode_advert

ROOT = Path(__file__).resolve().parent.parent
KEY = b"loopback-test-key"


def job(i: int, units: int, kinds=("cuda",), dur: float = 1.0, at: float = 0.0) -> Job:
    return Job(i, "infer-rt", units, tuple(kinds), dur, at)


# -- pure bookkeeping -----------------------------------------------------------------------

def test_pick_kind_most_free_then_client_order():
    free = {"cuda": 3, "cann": 5}
    assert pick_kind(free, 2, ("cuda", "cann")) == "cann"
    assert pick_kind(free, 4, ("cuda", "cann")) == "cann"
    assert pick_kind(free, 6, ("cuda", "cann")) is None
    assert pick_kind({"cuda": 4, "cann": 4}, 1, ("cann", "cuda")) == "cann"
    assert pick_kind(free, 1, ("tpu",)) is None


def test_start_and_release_change_free_units_and_util():
    p = Pool({"cuda": 4, "cann": 4}, max_queue=2)
    assert p.submit(job(1, 3, ("cuda",)), now=10.0) == STARTED
    assert p.snapshot() == {"cuda": (4, 1), "cann": (4, 4)}
    assert p.utilization() == pytest.approx(3 / 8)
    assert p.running[1].kind == "cuda" and p.running[1].ends == 11.0
    assert p.release(1, now=11.0) == []
    assert p.snapshot() == {"cuda": (4, 4), "cann": (4, 4)} and p.utilization() == 0


def test_check_never_satisfiable_requests():
    p = Pool({"cuda": 4, "cann": 2}, max_queue=2)
    assert p.check(1, ("tpu",)) == "no-kind"
    assert p.check(5, ("cuda", "cann")) == "too-large"
    assert p.check(3, ("cann",)) == "too-large"
    assert p.check(4, ("cann", "cuda")) is None


def test_queue_fifo_then_busy_and_queued_time():
    p = Pool({"cuda": 4}, max_queue=2)
    assert p.submit(job(1, 4, dur=2.0), now=0.0) == STARTED
    assert p.submit(job(2, 2, at=0.5), now=0.5) == QUEUED
    assert p.submit(job(3, 1, at=0.6), now=0.6) == QUEUED  # fits nowhere: cuda is busy
    assert p.submit(job(4, 1, at=0.7), now=0.7) == BUSY
    started = p.release(1, now=2.0)
    assert [j.id for j in started] == [2, 3]
    assert started[0].queued_s == pytest.approx(1.5) and started[1].queued_s == pytest.approx(1.4)
    assert p.snapshot() == {"cuda": (4, 1)} and not p.queue


def test_max_queue_zero_means_refuse_when_full():
    p = Pool({"cuda": 1}, max_queue=0)
    assert p.submit(job(1, 1), 0.0) == STARTED
    assert p.submit(job(2, 1), 0.0) == BUSY


def test_nothing_overtakes_a_queued_job_on_units_it_could_use():
    p = Pool({"cuda": 4}, max_queue=4)
    p.submit(job(1, 3, dur=5), 0.0)
    assert p.submit(job(2, 4), 1.0) == QUEUED  # needs all 4
    assert p.submit(job(3, 1), 1.0) == QUEUED  # 1 is free, but job 2 is first
    assert p.snapshot() == {"cuda": (4, 1)}
    assert [j.id for j in p.release(1, 5.0)] == [2]  # job 3 still waits behind job 2
    assert list(p.queue) == [3]


def test_other_kinds_are_not_blocked_by_a_queue():
    p = Pool({"cuda": 2, "cann": 2}, max_queue=4)
    p.submit(job(1, 2, ("cuda",)), 0.0)
    assert p.submit(job(2, 1, ("cuda",)), 0.0) == QUEUED
    assert p.submit(job(3, 1, ("cann",)), 0.0) == STARTED
    assert p.submit(job(4, 1, ("cuda", "cann")), 0.0) == STARTED  # runs on cann
    assert p.running[4].kind == "cann"
    assert p.blocked_kinds() == {"cuda"}


def test_cancel_queued_job_and_release_unknown_id():
    p = Pool({"cuda": 1}, max_queue=4)
    p.submit(job(1, 1), 0.0)
    p.submit(job(2, 1), 0.0)
    p.submit(job(3, 1), 0.0)
    assert p.release(2, 0.5) == [] and list(p.queue) == [3]
    assert p.release(99, 0.5) == [] and p.snapshot() == {"cuda": (1, 0)}
    assert [j.id for j in p.release(1, 1.0)] == [3]


def test_expected_wait_replays_the_queue():
    p = Pool({"cuda": 4}, max_queue=8)
    assert p.expected_wait(0.0) == 0.0
    p.submit(job(1, 2, dur=2.0), 0.0)  # ends at 2
    p.submit(job(2, 2, dur=3.0), 0.0)  # ends at 3
    assert p.expected_wait(0.5) == pytest.approx(1.5)  # a unit frees at t=2
    assert p.expected_wait(0.5, units=3) == pytest.approx(2.5)  # 3 units free at t=3
    p.submit(job(3, 2, dur=4.0, at=1.0), 1.0)  # queued: starts at 2, ends at 6
    # t=2: job 3 takes the 2 freed units; t=3: job 2's 2 units free up -> wait 2 s from 1
    assert p.expected_wait(1.0) == pytest.approx(2.0)
    assert p.expected_wait(1.0, units=4) == pytest.approx(5.0)  # all 4 free at t=6
    assert p.expected_wait(1.0, units=5) == math.inf
    assert p.expected_wait(1.0, kinds=("tpu",)) == math.inf


def test_advertised_wait_is_the_best_kind():
    p = Pool({"cuda": 1, "cann": 1, "rocm": 0}, max_queue=8)
    p.submit(job(1, 1, ("cuda",), dur=4.0), 0.0)
    assert p.advertised_wait(0.0) == 0.0  # cann is free
    p.submit(job(2, 1, ("cann",), dur=2.0), 0.0)
    assert p.advertised_wait(1.0) == pytest.approx(1.0)
    p.submit(job(3, 1, ("cann",), dur=5.0), 1.0)  # queued for cann: cann frees at 7
    assert p.advertised_wait(1.0) == pytest.approx(3.0)  # cuda frees at 4


def test_running_job_past_its_end_counts_as_ending_now():
    p = Pool({"cuda": 1}, max_queue=1)
    p.submit(job(1, 1, dur=1.0), 0.0)
    assert p.expected_wait(1.5) == 0.0


def test_significant_change():
    base = {"cuda": (100, 50), "cann": (10, 5)}
    assert significant_change(None, base)
    assert not significant_change(base, base)
    assert not significant_change(base, {"cuda": (100, 41), "cann": (10, 5)})
    assert significant_change(base, {"cuda": (100, 40), "cann": (10, 5)})  # 10 %
    assert significant_change(base, {"cuda": (100, 60), "cann": (10, 5)})
    assert significant_change(base, {"cuda": (100, 50), "cann": (10, 4)})  # 1 of 10
    assert significant_change({"cuda": (1000, 1)}, {"cuda": (1000, 0)})  # to zero
    assert significant_change({"cuda": (1000, 0)}, {"cuda": (1000, 1)})  # from zero
    assert significant_change(base, base, prev_queue=0, cur_queue=1)
    assert not significant_change(base, base, prev_queue=2, cur_queue=5)


# -- request parsing ----------------------------------------------------------------------

SERVICES, OFFERED = ("infer-rt", "train-batch"), ("cuda", "cann")


def test_parse_request_valid_and_defaults():
    r = parse_request(b'{"service":"infer-rt","units":2,"kinds":["cann"],"duration_s":1.5}',
                      SERVICES, OFFERED)
    assert (r.service, r.units, r.kinds, r.duration_s, r.id) == ("infer-rt", 2, ("cann",),
                                                                 1.5, None)
    r = parse_request(b' {"service":"train-batch","units":1,"duration_s":2,"id":"x1"}\r',
                      SERVICES, OFFERED)
    assert r.kinds == OFFERED and r.duration_s == 2.0 and r.id == "x1"


@pytest.mark.parametrize(("line", "code", "word"), [
    (b"not json", "bad-request", "JSON"),
    (b"[1]", "bad-request", "object"),
    (b'{"service":"infer-rt","units":1}', "bad-request", "duration_s"),
    (b'{"service":"infer-rt","units":true,"duration_s":1}', "bad-request", "units"),
    (b'{"service":"infer-rt","units":0,"duration_s":1}', "bad-request", "units"),
    (b'{"service":"infer-rt","units":1.0,"duration_s":1}', "bad-request", "units"),
    (b'{"service":"infer-rt","units":1,"duration_s":0}', "bad-request", "duration_s"),
    (b'{"service":"infer-rt","units":1,"duration_s":NaN}', "bad-request", "finite"),
    (b'{"service":"infer-rt","units":1,"duration_s":1e9}', "bad-request", "duration_s"),
    (b'{"service":"infer-rt","units":1,"duration_s":1,"kinds":[]}', "bad-request", "kinds"),
    (b'{"service":"infer-rt","units":1,"duration_s":1,"kinds":["a","a"]}', "bad-request",
     "duplicate"),
    (b'{"service":"infer-rt","units":1,"duration_s":1,"x":1}', "bad-request", "unknown"),
    (b'{"service":"infer-rt","units":1,"units":2,"duration_s":1}', "bad-request",
     "duplicate"),
    (b'{"service":"Infer","units":1,"duration_s":1}', "bad-request", "service"),
    (b'{"service":"other","units":1,"duration_s":1}', "unknown-service", "other"),
    (b"{" + b" " * 600 + b"}", "too-long", "512"),
])
def test_parse_request_errors(line, code, word):
    with pytest.raises(RequestError) as e:
        parse_request(line, SERVICES, OFFERED)
    assert e.value.code == code and word in e.value.detail


# -- command line ------------------------------------------------------------------------

GOOD = ["--id", "zhongwei", "--units", "cuda=128,cann=64", "--price", "0.32", "--green",
        "0.6", "--services", "infer-rt,train-batch"]


def test_command_line_good(tmp_path):
    keyf = tmp_path / "key"
    keyf.write_bytes(b"secret\n")
    cfg = parse_argv(GOOD + ["--pue", "1.15", "--operator", "China Telecom",
                             "--key-file", str(keyf), "--interval", "0.5"])
    assert cfg.units == {"cuda": 128, "cann": 64} and cfg.key == b"secret"
    assert cfg.services == ("infer-rt", "train-batch") and cfg.interval == 0.5
    assert (cfg.adv_addr, cfg.adv_port, cfg.service_port) == ("10.0.255.254", 6400, 7000)
    assert cfg.log_file is None


def _replace(args: list[str], opt: str, value: str) -> list[str]:
    out = list(args)
    if opt in out:
        out[out.index(opt) + 1] = value
    else:
        out += [opt, value]
    return out


@pytest.mark.parametrize(("opt", "value", "word"), [
    ("--id", "Zhongwei", "--id"), ("--units", "cuda=x", "--units"),
    ("--units", "cuda=1,cuda=2", "twice"), ("--units", "cuda=0", "no units"),
    ("--units", "cuda", "KIND=COUNT"), ("--price", "-1", "--price"),
    ("--price", "nan", "--price"), ("--green", "2", "--green"), ("--pue", "0.5", "--pue"),
    ("--interval", "0.01", "--interval"), ("--services", "Bad", "--services"),
    ("--services", ",", "--services"), ("--adv-addr", "10.0.255", "--adv-addr"),
    ("--adv-port", "0", "--adv-port"), ("--max-queue", "-1", "--max-queue"),
    ("--operator", "x" * 40, "--operator"), ("--key-file", "/nonexistent/key", "key-file"),
    ("--services", ",".join(f"s{i:02d}-" + "x" * 27 for i in range(32)), "invalid"),
])
def test_command_line_bad_input_exits_2(opt, value, word, capsys):
    with pytest.raises(SystemExit) as e:
        parse_argv(_replace(GOOD, opt, value))
    assert e.value.code == 2
    assert word in capsys.readouterr().err


def test_empty_key_file_exits_2(tmp_path, capsys):
    keyf = tmp_path / "key"
    keyf.write_bytes(b"\n")
    with pytest.raises(SystemExit) as e:
        parse_argv(GOOD + ["--key-file", str(keyf)])
    assert e.value.code == 2 and "empty" in capsys.readouterr().err


def test_missing_option_exits_2_as_a_process():
    r = subprocess.run([sys.executable, "-m", "gateway", "--id", "x"], cwd=ROOT,
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "required" in r.stderr and "Traceback" not in r.stderr


# -- the agent process on loopback ---------------------------------------------------------

class AgentProc:
    """python -m gateway on 127.0.0.1, advertising to a UDP socket this test binds."""

    def __init__(self, tmp: Path, *extra: str, units: str = "cuda=4,cann=2",
                 key: bytes | None = None) -> None:
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind(("127.0.0.1", 0))
        self.state_file = tmp / "state.json"
        self.log_file = tmp / "agent.log"
        self.key = key
        args = [sys.executable, "-m", "gateway", "--id", "t1", "--units", units,
                "--price", "0.3", "--green", "0.5", "--services", "infer-rt,train-batch",
                "--bind", "127.0.0.1", "--service-port", "0", "--adv-addr", "127.0.0.1",
                "--adv-port", str(self.udp.getsockname()[1]),
                "--state-file", str(self.state_file), "--log-file", str(self.log_file),
                *extra]
        if key is not None:
            (tmp / "key").write_bytes(key + b"\n")
            args += ["--key-file", str(tmp / "key")]
        self.proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
        self.port = self.wait_state(lambda s: s["running"], 10.0)["service_port"]

    def state(self) -> dict | None:
        try:
            return json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            return None

    def wait_state(self, pred, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            s = self.state()
            if s is not None and pred(s):
                return s
            assert self.proc.poll() is None, self.proc.stderr.read().decode()
            time.sleep(0.02)
        raise AssertionError(f"state not reached in {timeout} s: {self.state()}")

    def advert(self, pred=lambda a: True, timeout: float = 3.0) -> tuple[Advert, float]:
        """The next advertisement satisfying pred, and when it arrived (monotonic)."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            self.udp.settimeout(left)
            try:
                data = self.udp.recv(2048)
            except TimeoutError:
                break
            adv = decode_advert(data, self.key, require_auth=self.key is not None)
            if pred(adv):
                return adv, time.monotonic()
        raise AssertionError(f"no matching advertisement within {timeout} s")

    def drain(self) -> None:
        self.udp.setblocking(False)
        try:
            while True:
                self.udp.recv(2048)
        except BlockingIOError:
            pass
        self.udp.setblocking(True)

    def connect(self) -> socket.socket:
        s = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        s.settimeout(5)
        return s

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc.stderr.close()
        self.udp.close()


@pytest.fixture
def start_agent(tmp_path):
    agents: list[AgentProc] = []

    def start(*extra: str, **kw) -> AgentProc:
        d = tmp_path / f"a{len(agents)}"
        d.mkdir()
        agents.append(AgentProc(d, *extra, **kw))
        return agents[-1]

    yield start
    for a in agents:
        a.stop()


def read_line(s: socket.socket) -> dict:
    buf = b""
    while not buf.endswith(b"\n"):
        chunk = s.recv(4096)
        if not chunk:
            raise ConnectionError(f"closed after {buf!r}")
        buf += chunk
    return json.loads(buf)


def send_request(agent: AgentProc, **req) -> socket.socket:
    s = agent.connect()
    s.sendall(json.dumps(req).encode() + b"\n")
    return s


def test_adverts_arrive_periodically_with_hmac(start_agent):
    agent = start_agent("--interval", "0.2", key=KEY)
    first, t0 = agent.advert()
    seen = [first]
    for _ in range(3):
        seen.append(agent.advert()[0])
    assert all(a.authenticated and a.gw == "t1" and a.epoch == first.epoch for a in seen)
    assert [a.seq for a in seen] == list(range(first.seq, first.seq + 4))
    assert first.units == {"cuda": (4, 4), "cann": (2, 2)} and first.util == 0.0
    assert first.services == ("infer-rt", "train-batch") and first.interval == 0.2
    assert first.price == 0.3 and first.green == 0.5 and first.pue is None
    assert abs(first.ts - time.time()) < 5.0
    gaps = [b.ts - a.ts for a, b in zip(seen, seen[1:])]
    assert all(0.15 <= g <= 0.5 for g in gaps), gaps  # 0.2 s period, scheduling slack


def test_job_lowers_free_units_and_they_recover(start_agent):
    agent = start_agent("--interval", "1.0")
    agent.advert()
    agent.drain()
    result = {}
    th = threading.Thread(target=lambda: result.update(r=request_job(
        "127.0.0.1", agent.port, "infer-rt", 2, ["cuda"], 1.0)))
    t_req = time.monotonic()
    th.start()
    busy, t_busy = agent.advert(lambda a: a.units["cuda"] == (4, 2))
    assert t_busy - t_req < 0.5, "a significant change must be advertised at once"
    assert busy.util == pytest.approx(2 / 6, abs=1e-6) and busy.delay_ms == 0.0
    idle, t_idle = agent.advert(lambda a: a.units["cuda"] == (4, 4), timeout=3.0)
    th.join(5)
    r = result["r"]
    assert r.ok and r.done and r.gw == "t1" and r.kind == "cuda" and r.units == 2
    assert 0.95 <= t_idle - t_req <= 1.6, "units come back when the job ends"
    assert 990 <= r.total_ms <= 1600 and r.start_ms < 300 and r.queued_ms == 0.0
    assert idle.seq > busy.seq
    s = agent.wait_state(lambda s: s["counters"]["jobs_served"] == 1, 2.0)
    assert s["units"]["cuda"] == {"total": 4, "free": 4, "busy": 0}


def test_queue_then_busy_and_advertised_delay(start_agent):
    agent = start_agent("--max-queue", "1", units="cuda=4")
    a = send_request(agent, service="infer-rt", units=4, duration_s=1.0)
    assert read_line(a)["ok"] is True
    t_a = time.monotonic()
    b = send_request(agent, service="infer-rt", units=1, duration_s=0.3, id="b")
    adv, _ = agent.advert(lambda x: x.queue == 1, timeout=2.0)
    remaining_ms = (1.0 - (time.monotonic() - t_a)) * 1000
    assert adv.units == {"cuda": (4, 0)} and adv.util == 1.0
    assert remaining_ms - 300 <= adv.delay_ms <= 1000, (adv.delay_ms, remaining_ms)
    c = send_request(agent, service="infer-rt", units=1, duration_s=0.3)
    refused = read_line(c)
    assert refused["ok"] is False and refused["error"] == "busy" and c.recv(10) == b""
    start_b = read_line(b)
    assert start_b["ok"] is True and start_b["id"] == "b"
    assert 700 <= start_b["queued_ms"] <= 1300
    assert read_line(a)["done"] is True
    done_b = read_line(b)
    assert done_b["done"] is True and done_b["id"] == "b" and 290 <= done_b["run_ms"] <= 800
    s = agent.wait_state(lambda s: s["counters"]["jobs_served"] == 2, 3.0)
    assert s["counters"]["jobs_queued"] == 1 and s["counters"]["jobs_refused"] == 1
    for sock in (a, b, c):
        sock.close()


@pytest.mark.parametrize(("raw", "code"), [
    (b"hello\n", "bad-request"),
    (b'{"service":"nope","units":1,"duration_s":1}\n', "unknown-service"),
    (b'{"service":"infer-rt","units":true,"duration_s":1}\n', "bad-request"),
    (b'{"service":"infer-rt","units":1,"duration_s":1,"kinds":["tpu"]}\n', "no-kind"),
    (b'{"service":"infer-rt","units":5,"duration_s":1}\n', "too-large"),
    (b"x" * 600, "too-long"),
])
def test_malformed_requests_get_an_error_and_close(start_agent, raw, code):
    agent = start_agent()
    s = agent.connect()
    s.sendall(raw)
    reply = read_line(s)
    assert reply == {"ok": False, "gw": "t1", "error": code, "detail": reply["detail"]}
    assert reply["detail"] and s.recv(10) == b""
    s.close()
    r = request_job("127.0.0.1", agent.port, "infer-rt", 1, None, 0.1)
    assert r.ok and r.done, "the agent still serves after a bad request"


def test_slow_and_silent_clients_time_out_without_blocking_others(start_agent):
    agent = start_agent("--request-timeout", "0.5")
    idle = [agent.connect() for _ in range(50)]
    for s in idle[:25]:
        s.sendall(b'{"service": "inf')  # never finished
    t0 = time.monotonic()
    r = request_job("127.0.0.1", agent.port, "infer-rt", 1, ["cann"], 0.1)
    assert r.ok and r.done and r.start_ms < 300
    for s in idle:
        assert read_line(s)["error"] == "timeout"
        s.close()
    assert 0.4 <= time.monotonic() - t0 <= 3.0
    s = agent.wait_state(lambda s: s["counters"]["timeouts"] == 50, 2.0)
    assert s["connections"] == 0


def test_client_disconnect_releases_units(start_agent):
    agent = start_agent("--interval", "1.0")
    s = send_request(agent, service="infer-rt", units=4, kinds=["cuda"], duration_s=30)
    assert read_line(s)["ok"] is True
    agent.advert(lambda a: a.units["cuda"] == (4, 0))
    queued = send_request(agent, service="train-batch", units=1, kinds=["cuda"],
                          duration_s=30)
    agent.wait_state(lambda st: st["queue"] == 1, 2.0)
    queued.close()
    agent.wait_state(lambda st: st["queue"] == 0, 2.0)
    t0 = time.monotonic()
    s.close()
    agent.advert(lambda a: a.units["cuda"] == (4, 4) and a.queue == 0)
    assert time.monotonic() - t0 < 0.5
    st = agent.wait_state(lambda st: st["counters"]["jobs_cancelled"] == 2, 2.0)
    assert st["counters"]["jobs_served"] == 0 and st["running_jobs"] == 0


def test_200_concurrent_connections(start_agent):
    agent = start_agent("--max-queue", "64", units="cuda=160,cann=40")
    t0 = time.monotonic()
    socks = [send_request(agent, service="infer-rt", units=1, duration_s=0.5, id=str(i))
             for i in range(200)]
    starts = [read_line(s) for s in socks]
    assert all(r["ok"] is True for r in starts)
    assert sorted(int(r["id"]) for r in starts) == list(range(200))
    kinds = [r["kind"] for r in starts]
    assert kinds.count("cuda") == 160 and kinds.count("cann") == 40
    dones = [read_line(s) for s in socks]
    assert all(d["done"] is True for d in dones)
    assert time.monotonic() - t0 < 5.0
    for s in socks:
        s.close()
    st = agent.wait_state(lambda st: st["counters"]["jobs_served"] == 200, 3.0)
    assert st["units"]["cuda"]["free"] == 160 and st["counters"]["connections"] == 200


def test_sigterm_stops_within_one_second(start_agent):
    agent = start_agent()
    running = send_request(agent, service="infer-rt", units=1, duration_s=30)
    assert read_line(running)["ok"] is True
    waiting = agent.connect()
    agent.wait_state(lambda st: st["connections"] == 2, 2.0)  # accepted, not in the backlog
    t0 = time.monotonic()
    os.kill(agent.proc.pid, signal.SIGTERM)
    assert agent.proc.wait(timeout=2) == 0
    assert time.monotonic() - t0 < 1.0
    assert read_line(waiting)["error"] == "shutting-down"
    assert running.recv(100) == b""
    st = agent.state()
    assert st is not None and st["running"] is False
    assert "Traceback" not in agent.log_file.read_text()
    running.close()
    waiting.close()


def test_client_cli_and_connect_failure(start_agent):
    agent = start_agent()
    r = subprocess.run([sys.executable, "-m", "gateway.client", "--addr", "127.0.0.1",
                        "--port", str(agent.port), "--service", "infer-rt", "--units", "1",
                        "--kinds", "cann", "--duration", "0.2"],
                       cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["ok"] and out["done"] and out["kind"] == "cann" and out["gw"] == "t1"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    r2 = request_job("127.0.0.1", closed_port, "infer-rt", 1, None, 0.1, timeout_s=1.0)
    assert not r2.ok and r2.error == "connect" and not r2.done
