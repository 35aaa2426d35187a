"""One-way delay probe: wire format (fixtures and hostile input), the output parser, the
schedule, and the two programs end to end on loopback (no root needed)."""

import base64
import json
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest

from probes import owd, owdwire
from probes.owd import parse_output
from probes.owdprog import check_options, schedule
from probes.owdwire import (
    HEADER_LEN,
    MAX_COUNT,
    PROBE,
    REPLY,
    Probe,
    ProbeFormatError,
    Report,
    ReportRequest,
    decode,
    encode_probe,
    encode_report,
    encode_report_request,
)

ROOT = Path(__file__).resolve().parents[1]
T0 = 1_700_000_000_000_000_000  # ns

# A reply as bytes, written out by hand from the format in probes/owdwire.py (the fixture).
REPLY_FIXTURE = bytes.fromhex(
    "45574f44" "01" "02" "0001" "0000abcd" "00000007"
    "0000000000000064" "00000000000000c8" "00000000000000c9") + bytes(24)


def test_reply_fixture_decodes():
    m = decode(REPLY_FIXTURE)
    assert m == Probe(REPLY, 0xABCD, 7, 100, 200, 201, warmup=True, size=64)
    assert encode_probe(m) == REPLY_FIXTURE


def test_round_trips():
    p = Probe(PROBE, 2**32 - 1, MAX_COUNT - 1, T0, size=1472)
    assert decode(encode_probe(p)) == p and len(encode_probe(p)) == 1472
    assert decode(encode_report_request(5, 300)) == ReportRequest(5, 300)
    r = Report(9, 13, frozenset({0, 5, 7, 8, 12}), duplicates=2, reordered=1)
    raw = encode_report(r)
    assert len(raw) == HEADER_LEN + 8 + 2
    assert raw[-2:] == bytes([0b10000101, 0b10001000])  # seq 0,5,7 | 8,12, MSB first
    assert decode(raw) == r
    empty = Report(1, 0, frozenset())
    assert decode(encode_report(empty)) == empty


def _probe(**kw):
    return bytearray(encode_probe(Probe(PROBE, 1, 3, T0, size=64, **kw)))


@pytest.mark.parametrize("payload, match", [
    (b"", "truncated"),
    (REPLY_FIXTURE[:HEADER_LEN - 1], "truncated"),
    (b"\x00" * 64, "magic"),
    (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + b"x" * 40, "magic"),
    (bytes(65508), "65507"),
    (b"EWOD\x02" + REPLY_FIXTURE[5:], "version 2"),
    (b"EWOD\x01\x09" + REPLY_FIXTURE[6:], "unknown message kind 9"),
    (b"EWOD\x01\x02\x00\x02" + REPLY_FIXTURE[8:], "flags"),
    (REPLY_FIXTURE[:24] + bytes(16) + bytes(24), "lacks the reflector"),
    (encode_report_request(1, 5) + b"\x00", "report request of 41"),
    (encode_report(Report(1, 16, frozenset({1})))[:-1], "truncated or padded"),
    (encode_report(Report(1, 16, frozenset({1}))) + b"\x00", "truncated or padded"),
])
def test_hostile_payloads(payload, match):
    with pytest.raises(ProbeFormatError, match=match):
        decode(payload)


def test_hostile_field_values():
    p = _probe()
    p[24:32] = (5).to_bytes(8, "big")  # a probe already carrying a reflector stamp
    with pytest.raises(ProbeFormatError, match="already carries"):
        decode(bytes(p))
    p = _probe()
    p[12:16] = MAX_COUNT.to_bytes(4, "big")
    with pytest.raises(ProbeFormatError, match="seq"):
        decode(bytes(p))
    p = _probe()
    p[16:24] = bytes(8)
    with pytest.raises(ProbeFormatError, match="no sender timestamp"):
        decode(bytes(p))
    rep = bytearray(encode_report(Report(1, 12, frozenset({11}))))
    rep[-1] |= 0x01  # bit for seq 15, beyond count 12
    with pytest.raises(ProbeFormatError, match="beyond count"):
        decode(bytes(rep))
    huge_count = bytearray(encode_report_request(1, 0))
    huge_count[12:16] = (2**32 - 1).to_bytes(4, "big")
    with pytest.raises(ProbeFormatError, match="exceeds"):
        decode(bytes(huge_count))
    with pytest.raises(ProbeFormatError, match="bytes"):
        decode("EWOD")  # text, not bytes


def test_encoder_rejects_what_the_decoder_would():
    with pytest.raises(ProbeFormatError, match="size"):
        encode_probe(Probe(PROBE, 1, 0, T0, size=39))
    with pytest.raises(ProbeFormatError, match="session"):
        encode_probe(Probe(PROBE, 2**32, 0, T0))
    with pytest.raises(ProbeFormatError, match="outside"):
        encode_report(Report(1, 4, frozenset({4})))


def test_mutated_and_random_payloads_never_escape_as_other_errors():
    rng = random.Random(7)
    valid = [bytes(_probe()), REPLY_FIXTURE, encode_report_request(3, 100),
             encode_report(Report(3, 100, frozenset(range(0, 100, 3)), 1, 2))]
    for i in range(3000):
        if i % 3 == 0:
            data = rng.randbytes(rng.randrange(0, 200))
        else:
            data = bytearray(rng.choice(valid))
            for _ in range(rng.randrange(1, 4)):
                data[rng.randrange(len(data))] = rng.randrange(256)
            data = bytes(data[:rng.randrange(len(data) + 1)] if i % 5 == 0 else data)
        try:
            decode(data)
        except ProbeFormatError:
            pass


# ------------------------------------------------------------------------- output parser

def output(replies, count=5, sent=None, seen=None, fdup=0, freo=0, **kw):
    obj = {"format": "edwc-owd/1", "dst": "10.0.0.2", "port": 6500, "session": 1,
           "count": count, "sent": count if sent is None else sent, "interval_s": 0.01,
           "schedule": "periodic", "size": 64, "errors": {"bad_packets": 0},
           "send_lag_ms": {"p50": 0.01, "max": 0.2}, "replies": replies, "report": None}
    if seen is not None:
        obj["report"] = {"count": count, "duplicates": fdup, "reordered": freo,
                         "seen": base64.b64encode(owdwire.bitmap(seen, count)).decode()}
    obj.update(kw)
    return json.dumps(obj)


def reply(seq, fwd_ms, rev_ms, send_at_ms=None, turnaround_ms=0.05):
    t0 = T0 + int((send_at_ms if send_at_ms is not None else seq * 10) * 1e6)
    t1 = t0 + int(fwd_ms * 1e6)
    t2 = t1 + int(turnaround_ms * 1e6)
    return [seq, t0, t1, t2, t2 + int(rev_ms * 1e6)]


def test_parse_splits_loss_by_direction():
    # 5 probes: 4 lost forward, 2 reached the reflector but its reply was lost
    replies = [reply(0, 5.0, 8.0), reply(1, 5.5, 8.5), reply(3, 6.0, 9.0)]
    r = parse_output(output(replies, seen={0, 1, 2, 3}), "a", "b")
    assert (r.src, r.dst, r.count, r.size) == ("a", "b", 5, 64)
    assert r.loss_split_known
    f, v = r.forward, r.reverse
    assert (f.sent, f.received, f.lost, f.loss_pct) == (5, 4, 1, 20.0)
    assert (v.sent, v.received, v.lost, v.loss_pct) == (4, 3, 1, 25.0)
    assert (r.rtt.sent, r.rtt.received) == (5, 3)
    assert f.p50 == pytest.approx(5.5) and f.min == pytest.approx(5.0)
    assert v.p50 == pytest.approx(8.5) and v.max == pytest.approx(9.0)
    assert r.rtt.p50 == pytest.approx(5.5 + 0.05 + 8.5)
    assert f.n_samples == 3  # forward samples only for probes that came back
    assert r.to_dict()["forward"]["loss_pct"] == 20.0


def test_parse_reordering_duplicates_and_jitter():
    r0, r1, r2 = reply(0, 5.0, 8.0), reply(1, 5.0, 12.0), reply(2, 5.0, 2.0)
    # reply 2 overtakes reply 1 on the way back; reply 0 arrives twice (same reflector stamp:
    # duplicated in reverse); probe 1 reached the reflector twice (a new reflector stamp)
    r1_again = [1, r1[1], r1[2] + 1000, r1[3] + 1000, r1[4] + 1000]
    replies = [r0, r2, r1, list(r0), r1_again]
    r = parse_output(output(replies, count=3, seen={0, 1, 2}, fdup=1, freo=0))
    assert r.reverse.reordered == 1 and r.reverse.duplicates == 1
    assert r.forward.duplicates == 1 and r.forward.reordered == 0  # the reflector's counts
    assert r.forward.jitter == 0.0  # constant forward delay
    # reverse transits in sender arrival order: 8, 2, 12
    j = (6 / 16)
    assert r.reverse.jitter == pytest.approx(j + (10 - j) / 16)
    assert r.reverse.received == 3 and r.reverse.lost == 0


def test_parse_without_report_marks_split_unknown():
    r = parse_output(output([reply(0, 1.0, 1.0)], count=4))
    assert not r.loss_split_known
    assert (r.forward.received, r.forward.lost) == (1, 3)
    assert (r.reverse.sent, r.reverse.lost) == (1, 0)


def test_parse_all_lost():
    r = parse_output(output([], count=10, seen=set()))
    assert r.forward.loss_pct == 100.0 and r.forward.p50 is None
    assert r.reverse.sent == 0 and r.reverse.loss_pct == 0.0
    assert r.rtt.lost == 10


@pytest.mark.parametrize("text, match", [
    ("", "not JSON"),
    ('{"format": "edwc-owd/1", "count": 3', "not JSON"),
    ("garbage \x00\xff", "not JSON"),
    ("[1, 2, 3]", "not edwc-owd"),
    ('{"format": "other"}', "not edwc-owd"),
    ("[" * 100000 + "]" * 100000, "not"),
])
def test_parse_hostile_text(text, match):
    with pytest.raises(ProbeFormatError, match=match):
        parse_output(text)


def test_parse_hostile_fields():
    with pytest.raises(ProbeFormatError, match="'count'"):
        parse_output(output([], count=0))
    with pytest.raises(ProbeFormatError, match="'sent'"):
        parse_output(output([], count=3, sent=4))
    with pytest.raises(ProbeFormatError, match="reply 0 is not"):
        parse_output(output([[0, 1, 2]]))
    with pytest.raises(ProbeFormatError, match="reply 0 is not"):
        parse_output(output([[0, True, 2, 3, 4]]))
    with pytest.raises(ProbeFormatError, match="sequence 9"):
        parse_output(output([reply(9, 1, 1)]))
    bad = reply(0, 1, 1)
    bad[4] = bad[1] - 1
    with pytest.raises(ProbeFormatError, match="backwards"):
        parse_output(output([bad]))
    with pytest.raises(ProbeFormatError, match="at most"):
        parse_output(output([reply(0, 1, 1)] * 21))
    obj = json.loads(output([], seen={1}))
    obj["report"]["seen"] = "!!not base64!!"
    with pytest.raises(ProbeFormatError, match="base64"):
        parse_output(json.dumps(obj))
    obj["report"]["seen"] = base64.b64encode(b"\xff\xff").decode()
    with pytest.raises(ProbeFormatError, match="bitmap"):
        parse_output(json.dumps(obj))


def test_parse_huge_output(monkeypatch):
    monkeypatch.setattr(owd, "MAX_OUTPUT", 1000)
    with pytest.raises(ProbeFormatError, match="exceeds"):
        parse_output(output([reply(i, 1, 1) for i in range(20)], count=20))


# ---------------------------------------------------------------------------- schedule

def test_periodic_and_poisson_schedules():
    assert schedule(4, 0.5) == [0.0, 0.5, 1.0, 1.5]
    a = schedule(20000, 0.002, poisson=True, seed=3)
    assert a == schedule(20000, 0.002, poisson=True, seed=3)  # seeded
    gaps = [y - x for x, y in zip(a, a[1:])]
    mean = sum(gaps) / len(gaps)
    # exponential gaps: sd of the mean = 0.002/sqrt(20000) = 1.4e-5 s; 5 sd
    assert abs(mean - 0.002) < 7e-5
    assert min(gaps) >= 0 and a[0] == 0.0


@pytest.mark.parametrize("args, match", [
    ((0, 0.01, 64, 2, 2.0), "count"), ((10, 0.0, 64, 2, 2.0), "interval"),
    ((10, 0.01, 39, 2, 2.0), "size"), ((10, 0.01, 1473, 2, 2.0), "size"),
    ((10, 0.01, 64, -1, 2.0), "warmup"), ((10, 0.01, 64, 2, 0), "timeout"),
])
def test_option_checks(args, match):
    with pytest.raises(ValueError, match=match):
        check_options(*args)


# ----------------------------------------------------------- the programs, on loopback

@pytest.fixture
def reflector():
    p = subprocess.Popen([sys.executable, "-m", "probes.owd", "reflect", "--port", "0",
                          "--lifetime", "60"], cwd=ROOT, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        ready = json.loads(p.stdout.readline())
        assert ready["ready"]
        yield ready["port"]
    finally:
        p.terminate()
        out, _ = p.communicate(timeout=5)
        assert p.returncode == 0
        assert json.loads(out.strip().splitlines()[-1])["bad_packets"] == 0


def run_sender(*args, timeout=30):
    return subprocess.run([sys.executable, "-m", "probes.owd", "send", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


def test_loopback_end_to_end(reflector):
    r = run_sender("--dst", "127.0.0.1", "--port", str(reflector), "--count", "100",
                   "--interval", "0.001", "--size", "200", "--json")
    assert r.returncode == 0, r.stderr
    res = parse_output(r.stdout, "lo", "lo")
    assert res.loss_split_known and res.size == 200
    for s in (res.forward, res.reverse, res.rtt):
        assert (s.sent, s.received, s.lost) == (100, 100, 0), s
        assert 0 <= s.min and s.p50 < 1.0  # loopback: well under a millisecond
    assert res.rtt.p50 >= res.forward.p50 and res.rtt.p50 >= res.reverse.p50
    assert res.errors["ts_fallbacks"] == 0  # kernel receive stamps were used


def test_text_output_and_poisson(reflector):
    r = run_sender("--dst", "127.0.0.1", "--port", str(reflector), "--count", "30",
                   "--interval", "0.002", "--poisson", "--seed", "1")
    assert r.returncode == 0, r.stderr
    assert "(poisson)" in r.stdout and "forward" in r.stdout and "loss 0.0%" in r.stdout


def test_no_reflector_is_total_loss_with_unknown_split():
    t0 = time.monotonic()
    r = run_sender("--dst", "127.0.0.1", "--port", "9", "--count", "5", "--interval", "0.001",
                   "--timeout", "0.1", "--warmup", "0", "--json")
    assert r.returncode == 0, r.stderr
    res = parse_output(r.stdout)
    assert res.forward.loss_pct == 100.0 and not res.loss_split_known
    assert res.errors["icmp_errors"] > 0  # port unreachable came back
    assert time.monotonic() - t0 < 10


def test_bad_option_is_a_clear_cli_error():
    r = run_sender("--dst", "127.0.0.1", "--count", "5", "--size", "20")
    assert r.returncode == 2
    assert "size 20 must be 40..1472" in r.stderr and "Traceback" not in r.stderr


def test_start_at_waits_for_the_agreed_time(reflector):
    start = time.time() + 0.6
    r = run_sender("--dst", "127.0.0.1", "--port", str(reflector), "--count", "5",
                   "--interval", "0.001", "--start-at", f"{start:.6f}", "--json")
    assert r.returncode == 0, r.stderr
    res = parse_output(r.stdout)
    first_send_ns = min(x[1] for x in json.loads(r.stdout)["replies"])
    assert first_send_ns >= start * 1e9  # nothing counted was sent before the agreed time
    assert res.late_start_s is not None and res.late_start_s < 0.2
    assert res.forward.received == 5
