"""Stream probe: the pure analysis (loss, gaps, interruptions, delay around events), timeline
downsampling, the wire and record-file formats, and the two programs plus StreamRun end to end
on loopback (no root: the 'hosts' are plain subprocess launchers)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from array import array
from pathlib import Path

import pytest

from probes.owd import ProbeError
from probes.stream import StreamRun
from probes.streamanalysis import analyze, timeline
from probes.streamprog import (
    FILE_HEAD,
    HEADER_LEN,
    RecordFile,
    StreamFormatError,
    check_options,
    decode_packet,
    encode_packet,
    parse_records,
    read_records,
    write_records,
)

ROOT = Path(__file__).resolve().parents[1]
T0 = 1_700_000_000_000_000_000  # ns
MS = 1_000_000


def make(sent: int, rate: float, delay_ms: float = 5.0, drop=(), after: dict | None = None,
         lag_ns: int = 0):
    """Synthetic records: packet k sent at T0 + k / rate (+ lag), received delay_ms later;
    `after` maps a first seq to a new delay from that packet on."""
    recs, d = [], delay_ms
    drop = set(drop)
    for k in range(sent):
        if after and k in after:
            d = after[k]
        if k in drop:
            continue
        tx = T0 + round(k * 1e9 / rate) + lag_ns
        recs.append((k, tx, tx + round(d * MS)))
    return recs


# ---------------------------------------------------------------------------- analysis

def test_no_loss():
    r = analyze(1000, make(1000, 1000), 1000, [(0.5, None)], t0_ns=T0)
    assert (r.received, r.lost, r.duplicates, r.reordered, r.gaps) == (1000, 0, 0, 0, [])
    assert r.delay.p50 == pytest.approx(5.0) and r.loss_pct == 0.0
    assert r.t[0] == 0.0 and r.t[-1] == pytest.approx(0.999)
    ev = r.events[0]
    assert (ev.interruption_ms, ev.lost, ev.gap, ev.verdict) == (0.0, 0, None, "no loss")
    assert ev.delay_before_ms == pytest.approx(5.0) and ev.delay_after_ms is None  # past end


def test_one_gap_of_n_packets():
    r = analyze(1000, make(1000, 1000, drop=range(300, 350)), 1000, [(0.3, 0.35)], t0_ns=T0)
    assert r.lost == 50 and r.received == 950
    (g,) = r.gaps
    assert (g.first_seq, g.count) == (300, 50)
    assert g.start_s == pytest.approx(0.3) and g.count_ms == pytest.approx(50.0)
    # rx(350) - rx(299) - 1 ms = 51 - 1
    assert g.duration_ms == pytest.approx(50.0) and not (g.open_start or g.open_end)
    ev = r.events[0]
    assert ev.interruption_ms == pytest.approx(50.0) and ev.lost == 50
    assert ev.verdict == "interrupted" and ev.resumed
    assert r.lost_t == pytest.approx([k / 1000 for k in range(300, 350)])


def test_gap_duration_is_send_time_and_delay_after_is_measured():
    recs = make(3000, 1000, delay_ms=5.0, drop=range(1000, 1020), after={1020: 12.0})
    r = analyze(3000, recs, 1000, [(1.0, None)], t0_ns=T0)
    ev = r.events[0]
    # 20 packets found no path: 20 ms, whatever the new path's delay (+7 ms here)
    assert ev.interruption_ms == pytest.approx(20.0)
    assert ev.gap.rx_gap_ms == pytest.approx(20.0 + 7.0)  # the receiver's silence, kept
    assert ev.delay_before_ms == pytest.approx(5.0)
    assert ev.delay_after_ms == pytest.approx(12.0) and ev.after_from_s == pytest.approx(1.5)


def test_packets_held_during_a_cut_count_as_late_not_delivered():
    # the cut link holds 3 packets caught in flight and delivers them at the restore, 2 s
    # later; 17 more are lost before the new path takes over: 20 packets = 20 ms at 1 kHz
    recs = make(6000, 1000, drop=range(1003, 1020))
    held = [i for i, r in enumerate(recs) if r[0] in (1000, 1001, 1002)]
    for i in held:
        q, tx, _ = recs[i]
        recs[i] = (q, tx, tx + 2000 * MS)
    r = analyze(6000, recs, 1000, [(1.0, 3.0)], t0_ns=T0)
    (g,) = r.gaps
    assert r.late == 3 and r.lost == 17
    assert g.first_seq == 1000 and g.count == 20
    assert r.events[0].interruption_ms == pytest.approx(20.0)
    assert r.events[0].max_delay_ms == pytest.approx(2000.0)
    # within late_ms of the median, a slow packet is delivered, not a gap
    r = analyze(6000, recs, 1000, [(1.0, 3.0)], t0_ns=T0, late_ms=5000.0)
    assert r.late == 0 and r.events[0].interruption_ms == pytest.approx(17.0)


def test_two_events_each_take_their_own_gap():
    drop = set(range(500, 510)) | set(range(2000, 2100))
    r = analyze(4000, make(4000, 1000, drop=drop), 1000, [(2.0, None), (0.5, 0.6)], t0_ns=T0)
    first, second = r.events  # sorted by time
    assert first.t_cut == 0.5 and first.interruption_ms == pytest.approx(10.0)
    assert first.lost == 10  # the window stops 0.5 s before the next cut: not 110
    assert second.interruption_ms == pytest.approx(100.0) and second.lost == 100
    assert len(r.gaps) == 2 and r.lost == 110


def test_gap_far_from_the_event_is_not_its_interruption():
    r = analyze(5000, make(5000, 1000, drop=range(100, 110)), 1000, [(3.0, None)],
                t0_ns=T0, window_s=1.0)
    assert r.lost == 10 and r.events[0].interruption_ms == 0.0
    assert r.events[0].verdict == "no loss"
    # a gap starting up to 0.5 s before the recorded cut still belongs to it
    r = analyze(5000, make(5000, 1000, drop=range(2600, 2700)), 1000, [(3.0, None)], t0_ns=T0)
    assert r.events[0].interruption_ms == pytest.approx(100.0)


def test_traffic_that_never_resumes():
    r = analyze(2000, make(2000, 1000, drop=range(1500, 2000)), 1000, [(1.5, None)], t0_ns=T0)
    ev = r.events[0]
    assert ev.gap.open_end and not ev.resumed and ev.verdict == "not resumed"
    assert ev.interruption_ms == pytest.approx(500.0)  # count / rate: a lower bound
    r = analyze(2000, make(2000, 1000, drop=range(0, 100)), 1000, t0_ns=T0)
    assert r.gaps[0].open_start and r.gaps[0].duration_ms == pytest.approx(100.0)


def test_reorder_and_duplicates():
    recs = make(100, 1000)
    recs[10], recs[11] = recs[11], recs[10]  # 11 arrives before 10
    recs.append(recs[50])  # 50 twice
    r = analyze(100, recs, 1000, t0_ns=T0)
    assert (r.received, r.lost, r.reordered, r.duplicates) == (100, 0, 1, 1)
    assert r.gaps == [] and len(r.t) == 100 and list(r.t) == sorted(r.t)


def test_t0_is_inferred_from_the_records():
    r = analyze(100, make(100, 1000, lag_ns=2 * MS, drop={0}), 1000)
    assert r.t0_ns == T0 + 2 * MS and r.t[0] == pytest.approx(0.001)


def test_empty_streams():
    r = analyze(0, [], 1000)
    assert (r.sent, r.received, r.lost, r.gaps, r.delay.p50, r.loss_pct) == (0, 0, 0, [], None,
                                                                            0.0)
    r = analyze(100, [], 1000, [(0.01, None)], t0_ns=T0)
    assert r.lost == 100 and len(r.lost_t) == 100 and r.delay.p50 is None
    assert r.events[0].verdict == "not resumed"
    assert r.events[0].interruption_ms == pytest.approx(100.0)


@pytest.mark.parametrize("recs, match", [
    ([(100, T0, T0 + MS)], "sequence 100 outside 0..99"),
    ([(1, T0, T0 - 1)], "before it was sent"),
    ([(1, T0)], "not \\(seq, tx_ns, rx_ns\\)"),
    ([(1, T0, 2.5)], "not \\(seq, tx_ns, rx_ns\\)"),
])
def test_bad_records(recs, match):
    with pytest.raises(StreamFormatError, match=match):
        analyze(100, recs, 1000)


@pytest.mark.parametrize("kw, match", [
    ({"sent": -1}, "sent"), ({"rate_pps": 0}, "rate"), ({"events": [(2.0, 1.0)]}, "restored"),
    ({"events": [("x", None)]}, "t_cut"),
])
def test_bad_arguments(kw, match):
    args = {"sent": 10, "records": [], "rate_pps": 100} | kw
    with pytest.raises(ValueError, match=match):
        analyze(**args)


def test_to_dict_is_json():
    r = analyze(1000, make(1000, 1000, drop=range(10, 20)), 1000, [(0.01, 0.02)], t0_ns=T0)
    d = json.loads(json.dumps(r.to_dict(series=True)))
    assert d["lost"] == 10 and d["events"][0]["gap"]["count"] == 10
    assert len(d["series"]["t"]) == 990 and "series" not in r.to_dict()


# ---------------------------------------------------------------------------- timeline

def test_timeline_small_series_is_unchanged():
    r = analyze(100, make(100, 1000, drop={5}), 1000, [(0.005, None)], t0_ns=T0)
    tl = timeline(r)
    assert tl["t"] == list(r.t) and tl["lost_t"] == [0.005] and tl["cuts"] == [[0.005, None]]


@pytest.mark.parametrize("lag_ns", [0, 3 * MS])  # sends 6 intervals late: edges by seq
def test_timeline_downsampling_keeps_lost_marks_gap_edges_and_extrema(lag_ns):
    drop = set(range(5000, 5300)) | set(range(15000, 15002)) | {100 + 97 * k for k in range(50)}
    recs = make(20000, 2000, drop=drop, after={5300: 9.0}, lag_ns=lag_ns)
    spike = next(i for i, r in enumerate(recs) if r[0] == 12345)
    q, tx, _ = recs[spike]
    recs[spike] = (q, tx, tx + 40 * MS)
    r = analyze(20000, recs, 2000, [(2.5, 2.6)], t0_ns=T0)
    tl = timeline(r, max_points=500)
    assert len(tl["t"]) <= 500 and len(tl["t"]) == len(tl["one_way_ms"])
    assert tl["lost_t"] == list(r.lost_t) and len(tl["lost_t"]) == 352
    assert tl["t"] == sorted(tl["t"])
    for edge in (4999 / 2000, 5300 / 2000, 14999 / 2000, 15002 / 2000):
        assert any(abs(t - edge - lag_ns / 1e9) < 1e-9 for t in tl["t"]), edge
    assert max(tl["one_way_ms"]) == pytest.approx(40.0)
    assert min(tl["one_way_ms"]) == pytest.approx(5.0) and 9.0 in tl["one_way_ms"]
    with pytest.raises(ValueError, match="max_points"):
        timeline(r, max_points=1)


# ---------------------------------------------------------------------------- formats

def test_packet_round_trip_and_rejects():
    p = encode_packet(7, 42, T0, 100, warmup=True)
    assert len(p) == 100 and decode_packet(p) == (7, 42, T0, True)
    assert p[:4] == b"EWST" and p[4] == 1 and p[5] == 1
    with pytest.raises(StreamFormatError, match="truncated"):
        decode_packet(p[:HEADER_LEN - 1])
    with pytest.raises(StreamFormatError, match="not a stream packet"):
        decode_packet(b"XXXX" + p[4:])
    with pytest.raises(StreamFormatError, match="size"):
        encode_packet(1, 1, 1, 10)


def _rec(n: int) -> RecordFile:
    return RecordFile(9, array("I", range(n)), array("q", [T0 + k for k in range(n)]),
                      array("q", [T0 + k + MS for k in range(n)]), warmup=3, socket_drops=2,
                      start_ns=T0, end_ns=T0 + 1)


def test_record_file_round_trip(tmp_path):
    path = tmp_path / "r.bin"
    write_records(str(path), _rec(1000))
    assert path.stat().st_size == FILE_HEAD.size + 20 * 1000
    assert not (tmp_path / "r.bin.part").exists()
    rec = read_records(str(path))
    assert rec.session == 9 and len(rec) == 1000 and rec.warmup == 3
    assert rec.counters()["socket_drops"] == 2
    assert list(rec.records())[999] == (999, T0 + 999, T0 + 999 + MS)
    r = analyze(1000, rec, 1000)
    assert r.received == 1000 and r.delay.p50 == pytest.approx(1.0)


def test_truncated_and_corrupt_record_files(tmp_path):
    path = tmp_path / "r.bin"
    write_records(str(path), _rec(100))
    data = path.read_bytes()
    with pytest.raises(StreamFormatError,
                       match="truncated or corrupt: 2055 bytes.*100 records \\(2056 bytes\\)"):
        parse_records(data[:-1])
    with pytest.raises(StreamFormatError, match="truncated or corrupt"):
        parse_records(data + b"\0")
    with pytest.raises(StreamFormatError, match="header alone"):
        parse_records(data[:10])
    with pytest.raises(StreamFormatError, match="not a stream record file"):
        parse_records(b"garbage!" + data[8:])
    with pytest.raises(StreamFormatError, match="does not exist"):
        read_records(str(tmp_path / "missing.bin"))


@pytest.mark.parametrize("args, match", [
    ((0, 1, 64, 0.2), "rate"), ((100, 0, 64, 0.2), "duration"), ((100, 1, 8, 0.2), "size"),
    ((100, 1, 64, -1), "warm-up"), ((1, 0.1, 64, 0), "less than one packet"),
])
def test_option_checks(args, match):
    with pytest.raises(ValueError, match=match):
        check_options(*args)
    assert check_options(2000, 60, 64, 0.2) == 120_000


# ---------------------------------------------------------------------------- programs

def _cmd(*args) -> list[str]:
    return [sys.executable, "-m", "probes.stream", *args]


def test_programs_on_loopback_at_2000_pps(tmp_path):
    out = tmp_path / "r.bin"
    recv = subprocess.Popen(_cmd("recv", "--port", "0", "--out", str(out), "--lifetime", "60"),
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 15
        while not (tmp_path / "r.bin.ready").exists():
            assert recv.poll() is None and time.monotonic() < deadline, recv.stderr.read()
            time.sleep(0.02)
        port = json.loads((tmp_path / "r.bin.ready").read_text())["port"]
        snd = subprocess.run(_cmd("send", "--dst", "127.0.0.1", "--port", str(port), "--rate",
                                  "2000", "--duration", "1", "--warmup", "0.05"),
                             cwd=ROOT, capture_output=True, text=True, timeout=30)
        assert snd.returncode == 0, snd.stderr
        ready, summary = (json.loads(x) for x in snd.stdout.splitlines())
        assert ready["ready"] and summary["sent"] == summary["count"] == 2000
        assert summary["warmup_sent"] == 100 and not summary["stopped_early"]
        lag = summary["send_lag_ms"]
        print("loopback send lag ms:", lag)
        assert lag["p50"] < 1.0  # generous: a loaded 2-core VM
        time.sleep(0.2)
        recv.terminate()
        rout, _ = recv.communicate(timeout=15)
        assert recv.returncode == 0 and json.loads(rout)["records"] == 2000
    finally:
        if recv.poll() is None:
            recv.kill()
            recv.wait()
    rec = read_records(str(out))
    assert rec.warmup == 100 and rec.socket_drops == 0
    r = analyze(summary["sent"], rec, 2000, t0_ns=summary["start_at_ns"])
    assert r.lost == 0 and r.duplicates == 0 and 0 < r.delay.p50 < 1.0
    assert abs(r.t[0]) < 0.05 and r.t[-1] == pytest.approx(0.9995, abs=0.05)


def test_receiver_lifetime_ends_it_and_writes_an_empty_file(tmp_path):
    out = tmp_path / "r.bin"
    p = subprocess.run(_cmd("recv", "--port", "0", "--out", str(out), "--lifetime", "0.3"),
                       cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    assert len(read_records(str(out))) == 0


def test_bad_options_are_clear_cli_errors(tmp_path):
    p = subprocess.run(_cmd("send", "--dst", "127.0.0.1", "--rate", "0", "--duration", "1"),
                       cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert p.returncode == 2 and "rate 0.0 pkt/s must be 1..100000" in p.stderr
    assert "Traceback" not in p.stderr


class LocalHost:
    """Stands in for a Mininet host: popen() runs on this machine, IP() is loopback."""

    def __init__(self) -> None:
        self.started: list[subprocess.Popen] = []

    def IP(self) -> str:  # noqa: N802 - Mininet's name
        return "127.0.0.1"

    def popen(self, cmd, **kw):
        p = subprocess.Popen(cmd, **kw)
        self.started.append(p)
        return p


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_stream_run_marks_events_and_stops_everything():
    hosts = {"a": LocalHost(), "b": LocalHost()}
    with StreamRun(hosts, "a", "b", 1000, 10, _free_udp_port(), warmup_s=0.05) as run:
        deadline = time.monotonic() + 10
        while run.now() < 0.3:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        t_cut = run.mark_cut()
        time.sleep(0.1)
        t_restore = run.mark_restore()
        time.sleep(0.2)
        r = run.stop()
    assert r.sender["stopped_early"] and 300 <= r.sent < 10_000
    assert r.lost == 0 and r.events[0].verdict == "no loss"
    assert r.events[0].t_cut == t_cut and r.events[0].t_restore == t_restore
    assert r.events[0].delay_before_ms is not None and r.receiver["records"] == r.sent
    for p in hosts["a"].started + hosts["b"].started:
        assert p.poll() is not None
    assert run._dir is None  # work files removed


def test_stream_run_wait_runs_to_the_end():
    hosts = {"a": LocalHost(), "b": LocalHost()}
    run = StreamRun(hosts, "a", "b", 500, 0.5, _free_udp_port(), warmup_s=0.05,
                    start_delay_s=0.1, drain_s=0.1).start()
    r = run.wait()
    assert r.sent == 250 and r.lost == 0 and not r.sender["stopped_early"]


def test_stream_run_start_failures_name_the_host():
    hosts = {"a": LocalHost(), "b": LocalHost()}
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as busy:
        busy.bind(("0.0.0.0", 0))
        port = busy.getsockname()[1]
        with pytest.raises(ProbeError, match="receiver on b exited .*Address already in use"):
            StreamRun(hosts, "a", "b", 100, 1, port).start()
    run = StreamRun(hosts, "a", "b", 100, 1, _free_udp_port(), dst_ip="300.1.1.1")
    with pytest.raises(ProbeError, match="sender on a exited with status 2"):
        run.start()
    for p in hosts["a"].started + hosts["b"].started:
        assert p.poll() is not None
    with pytest.raises(ValueError, match="unknown host 'zz'"):
        StreamRun(hosts, "a", "zz", 100, 1)
    with pytest.raises(ValueError, match="itself"):
        StreamRun(hosts, "a", "a", 100, 1)
    assert not [d for d in os.listdir("/tmp") if d.startswith(f"edwc-stream-{port}-")]
