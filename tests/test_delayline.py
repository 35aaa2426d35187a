"""Unit tests of the userspace delay line: config validation, scheduling, worker split.

No root, no sockets (only the CLI error path runs a subprocess).
"""

from __future__ import annotations

import copy
import json
import math
import os
import subprocess
import sys

import pytest

from emulation.delayline import (
    FORMAT,
    DelayLineError,
    DelayLineProcess,
    Hop,
    hop_rngs,
    release_time,
    split_links,
    validate_config,
)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def cfg(tmp_path, **hop_overrides):
    hop = {"id": "beijing-bth:a>b", "in_if": "xk3p9r3a", "out_if": "xk3p9r3b",
           "delay_us": 10000, "jitter_us": 0, "loss": 0.0, "limit": 1000,
           "compensation_us": 150}
    hop.update(hop_overrides)
    back = {"id": "beijing-bth:b>a", "in_if": "xk3p9r3b", "out_if": "xk3p9r3a",
            "delay_us": 10000}
    return {"format": FORMAT, "seed": 1, "stats_path": str(tmp_path / "d.stats.json"),
            "ready_path": str(tmp_path / "d.ready"), "hops": [hop, back]}


def test_valid_config(tmp_path):
    hops = validate_config(cfg(tmp_path))
    assert [h.id for h in hops] == ["beijing-bth:a>b", "beijing-bth:b>a"]
    assert hops[0].compensation_us == 150
    assert hops[1].limit == 1000 and hops[1].jitter_us == 0 and hops[1].loss == 0.0


@pytest.mark.parametrize("field", ["id", "in_if", "out_if", "delay_us"])
def test_missing_field(tmp_path, field):
    c = cfg(tmp_path)
    del c["hops"][0][field]
    with pytest.raises(DelayLineError, match=f"hop #0.*missing required field '{field}'"):
        validate_config(c)


@pytest.mark.parametrize("field,value,msg", [
    ("delay_us", -1, "delay_us"),
    ("jitter_us", -5, "jitter_us"),
    ("compensation_us", -1, "compensation_us"),
    ("loss", 1.5, "loss"),
    ("loss", -0.1, "loss"),
    ("loss", float("nan"), "loss.*finite"),
    ("delay_us", float("nan"), "delay_us.*finite"),
    ("delay_us", float("inf"), "delay_us.*finite"),
    ("delay_us", "10ms", "delay_us.*number"),
    ("delay_us", True, "delay_us.*number"),
    ("delay_us", None, "delay_us.*number"),
    ("loss", "0.1", "loss.*number"),
    ("limit", 0, "limit"),
    ("limit", 10.5, "limit.*integer"),
    ("limit", True, "limit.*integer"),
    ("in_if", "", "in_if"),
    ("in_if", 7, "in_if"),
    ("out_if", "a-very-long-interface-name", "out_if.*15"),
    ("out_if", "has space", "out_if.*forbidden"),
    ("id", "", "'id'"),
    ("id", 3, "'id'"),
])
def test_bad_field_names_hop_and_field(tmp_path, field, value, msg):
    c = cfg(tmp_path, **{field: value})
    with pytest.raises(DelayLineError, match=msg) as e:
        validate_config(c)
    assert "hop #0" in str(e.value)


def test_unknown_field(tmp_path):
    with pytest.raises(DelayLineError, match="unknown field.*delay_ms"):
        validate_config(cfg(tmp_path, delay_ms=5))


def test_duplicate_hop_id(tmp_path):
    c = cfg(tmp_path)
    c["hops"][1]["id"] = c["hops"][0]["id"]
    with pytest.raises(DelayLineError, match="hop #1 .*duplicate hop id"):
        validate_config(c)


def test_same_in_if_twice(tmp_path):
    c = cfg(tmp_path)
    c["hops"].append({"id": "x", "in_if": "xk3p9r3a", "out_if": "zz0", "delay_us": 1})
    with pytest.raises(DelayLineError, match="hop #2 .*'xk3p9r3a' is already 'in_if'"):
        validate_config(c)


def test_same_out_if_twice(tmp_path):
    c = cfg(tmp_path)
    c["hops"].append({"id": "x", "in_if": "zz0", "out_if": "xk3p9r3b", "delay_us": 1})
    with pytest.raises(DelayLineError, match="already 'out_if'"):
        validate_config(c)


def test_in_equals_out(tmp_path):
    with pytest.raises(DelayLineError, match="both"):
        validate_config(cfg(tmp_path, out_if="xk3p9r3a"))


@pytest.mark.parametrize("mutate,msg", [
    (lambda c: c.update(format="edwc-delayline/2"), "format"),
    (lambda c: c.update(seed="1"), "seed"),
    (lambda c: c.update(hops=[]), "hops"),
    (lambda c: c.pop("hops"), "hops"),
    (lambda c: c.update(hops={"a": 1}), "hops"),
    (lambda c: c.update(stats_path=""), "stats_path"),
    (lambda c: c.update(ready_path="/nonexistent-dir-xyz/r"), "ready_path.*does not exist"),
    (lambda c: c.update(extra=1), "unknown"),
    (lambda c: c["hops"].__setitem__(0, "hop"), "hop #0.*object"),
])
def test_bad_top_level(tmp_path, mutate, msg):
    c = cfg(tmp_path)
    mutate(c)
    with pytest.raises(DelayLineError, match=msg):
        validate_config(c)


def test_not_an_object():
    with pytest.raises(DelayLineError, match="JSON object"):
        validate_config([1, 2])


# ----------------------------------------------------------------- release_time

H = Hop("h", "a", "b", delay_us=10000, compensation_us=150)


def test_release_basic_with_compensation():
    assert release_time(100.0, H, 0, 0.0) == pytest.approx(100.0 + 0.00985)


def test_release_compensation_floor():
    h = Hop("h", "a", "b", delay_us=100, compensation_us=150)
    assert release_time(100.0, h, 0, 0.0) == 100.0  # never earlier than reception
    h2 = Hop("h", "a", "b", delay_us=1000, jitter_us=500, compensation_us=0)
    assert release_time(100.0, h2, -2000, 0.0) == 100.0


def test_release_no_reorder_clamp():
    prev = 100.02
    assert release_time(100.0, H, 0, prev) == prev
    # a later frame whose own schedule is later is not clamped
    assert release_time(100.02, H, 0, prev) == pytest.approx(100.02985)


def test_release_jitter_bounds():
    h = Hop("h", "a", "b", delay_us=5000, jitter_us=1000)
    _, rng = hop_rngs(1, 0)
    lo, hi = 100.0 + 0.004, 100.0 + 0.006
    vals = [release_time(100.0, h, rng.uniform(-h.jitter_us, h.jitter_us), 0.0)
            for _ in range(5000)]
    assert all(lo - 1e-9 <= v <= hi + 1e-9 for v in vals)
    assert min(vals) < lo + 0.0001 and max(vals) > hi - 0.0001  # spread covers the range


def test_release_monotonic_sequence():
    h = Hop("h", "a", "b", delay_us=5000, jitter_us=2000)
    _, rng = hop_rngs(7, 3)
    prev, t = 0.0, 100.0
    for _ in range(2000):
        t += 0.0001
        r = release_time(t, h, rng.uniform(-2000, 2000), prev)
        assert r >= prev and r >= t
        prev = r


def test_rngs_reproducible_and_distinct():
    a1, j1 = hop_rngs(1, 0)
    a2, _ = hop_rngs(1, 0)
    b1, _ = hop_rngs(1, 1)
    c1, _ = hop_rngs(2, 0)
    s1 = [a1.random() for _ in range(5)]
    assert s1 == [a2.random() for _ in range(5)]
    assert s1 != [b1.random() for _ in range(5)]
    assert s1 != [c1.random() for _ in range(5)]
    assert s1 != [j1.random() for _ in range(5)]


# ----------------------------------------------------------------- split_links

def links(n):
    return [(Hop(f"l{i}:a>b", f"r{i}a", f"r{i}b", 1), Hop(f"l{i}:b>a", f"r{i}b", f"r{i}a", 1))
            for i in range(n)]


@pytest.mark.parametrize("n,w", [(1, 1), (1, 4), (5, 2), (7, 3), (8, 4), (10, 1), (3, 3)])
def test_split_links_balanced(n, w):
    groups = split_links(links(n), w)
    assert len(groups) == min(n, w)
    sizes = [len(g) for g in groups]
    assert max(sizes) - min(sizes) <= 2  # one link = two hops
    flat = [h.id for g in groups for h in g]
    assert sorted(flat) == sorted(h.id for lk in links(n) for h in lk)
    for g in groups:  # both hops of a link in the same worker
        names = {h.id.split(":")[0] for h in g}
        for name in names:
            assert {f"{name}:a>b", f"{name}:b>a"} <= {h.id for h in g}


def test_split_links_edge_cases():
    assert split_links([], 3) == []
    with pytest.raises(DelayLineError):
        split_links(links(2), 0)


# ----------------------------------------------------------------- CLI error path (no root)

def test_cli_bad_config_exit_2(tmp_path):
    c = cfg(tmp_path, loss=2)
    p = tmp_path / "c.json"
    p.write_text(json.dumps(c))
    r = subprocess.run([sys.executable, "-m", "emulation.delayline", str(p)], cwd=REPO,
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2
    assert "beijing-bth:a>b" in r.stderr and "loss" in r.stderr
    assert not os.path.exists(c["ready_path"])


def test_cli_unreadable_and_bad_json(tmp_path):
    r = subprocess.run([sys.executable, "-m", "emulation.delayline", str(tmp_path / "nope.json")],
                       cwd=REPO, capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "cannot read config" in r.stderr
    p = tmp_path / "bad.json"
    p.write_text("{not json")
    r = subprocess.run([sys.executable, "-m", "emulation.delayline", str(p)],
                       cwd=REPO, capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "not valid JSON" in r.stderr


def test_process_start_rejects_bad_hops_before_spawning(tmp_path):
    with pytest.raises(DelayLineError, match="loss"):
        DelayLineProcess.start([Hop("x", "a0", "b0", 10, loss=math.nan)], str(tmp_path), "d", 1)
    assert not (tmp_path / "d.json").exists()


def test_hop_roundtrip(tmp_path):
    h = Hop("x", "a0", "b0", 10, jitter_us=2, loss=0.1, limit=5, compensation_us=1)
    c = cfg(tmp_path)
    c["hops"] = [h.to_json()]
    assert validate_config(copy.deepcopy(c)) == [h]


def test_importable_without_scapy():
    code = ("import sys; sys.modules['scapy'] = None; import emulation.delayline as d; "
            "assert 'scapy' not in [m for m in sys.modules if sys.modules[m] is not None]")
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("value", [-1, 100, "10", 1.5, True])
def test_rt_priority_must_be_0_to_99(tmp_path, value):
    c = cfg(tmp_path)
    c["rt_priority"] = value
    with pytest.raises(DelayLineError, match="rt_priority"):
        validate_config(c)


def test_rt_priority_accepted(tmp_path):
    c = cfg(tmp_path)
    c["rt_priority"] = 10
    assert len(validate_config(c)) == 2  # the two hops of the link
