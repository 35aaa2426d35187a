"""Workload generation and replay files (experiments/workload/generator.py, replay.py):
determinism, rates, mix, diurnal profile, deferral of batch work, replay files and their
errors, compute scaling. No root needed.

Tolerances are stated per test; each is at least 4 standard deviations of the sampling
error at the sample sizes used, so a correct generator fails them with odds < 1e-4."""

from __future__ import annotations

import dataclasses
import math
from collections import Counter

import pytest

from experiments.workload.generator import (
    BATCH_PROFILE,
    DEFAULT_MIX,
    INTERACTIVE_PROFILE,
    Request,
    WorkloadConfig,
    WorkloadError,
    capacity_units,
    describe,
    generate,
    hour_of,
    in_window,
    mean_duration,
    profile_mean,
    rate_for_load,
    resolve,
    scale_compute,
    unit_s_per_request,
)
from experiments.workload.replay import load_replay, save_replay
from topology.loader import load_topology
from topology.model import build_network
from topology.plan import make_plan

NET = load_topology("edwc")
PLAN = make_plan(NET, "tw01")
SERVICES = PLAN.services
METROS = [s.id for s in NET.sites if s.kind == "metro"]


def gen(**kw) -> list[Request]:
    return generate(WorkloadConfig(**kw), SERVICES, NET)


def test_deterministic_for_a_seed_and_seeds_differ():
    a = gen(duration_s=300, seed=7, diurnal=True, defer_batch=True)
    b = gen(duration_s=300, seed=7, diurnal=True, defer_batch=True)
    c = gen(duration_s=300, seed=8, diurnal=True, defer_batch=True)
    assert a == b and len(a) > 100
    assert a != c
    assert [r.idx for r in a] == list(range(len(a)))
    assert all(x.t <= y.t for x, y in zip(a, a[1:]))
    assert {r.metro for r in a} == set(METROS)  # default: every metro site


@pytest.mark.parametrize("diurnal", [False, True])
def test_mean_rate_over_a_long_horizon(diurnal):
    # 10/s over 2000 s: 20,000 expected; Poisson sd 141 (0.7 %); tolerance 3 %
    reqs = gen(duration_s=2000, rate_per_s=10.0, diurnal=diurnal, day_s=400, start_hour=5,
               seed=11)
    assert len(reqs) == pytest.approx(20000, rel=0.03)
    assert all(0 <= r.t < 2000 for r in reqs)


def test_service_mix_shares():
    reqs = gen(duration_s=2000, rate_per_s=10.0, seed=12)
    n = Counter(r.service for r in reqs)
    for name, (share, _) in DEFAULT_MIX.items():
        # binomial sd <= 0.0035 at n = 20,000; tolerance 0.015 (absolute share)
        assert n[name] / len(reqs) == pytest.approx(share, abs=0.015), name
    svc = {s.name: s for s in SERVICES}
    assert all(r.units == svc[r.service].units for r in reqs)


def test_durations_are_clipped_exponentials_with_the_stated_mean():
    reqs = gen(duration_s=2000, rate_per_s=10.0, seed=13)
    for name, (_, mean) in DEFAULT_MIX.items():
        ds = [r.duration_s for r in reqs if r.service == name]
        assert min(ds) >= 0.01 and max(ds) <= 4 * mean + 1e-9
        # sd of the mean <= mean / sqrt(2000); tolerance 10 %
        assert sum(ds) / len(ds) == pytest.approx(mean_duration(mean), rel=0.10), name
    assert mean_duration(1.0) == pytest.approx(0.01 + math.exp(-0.01) - math.exp(-4))


def _peak_night(service: str) -> tuple[float, float]:
    day = 240.0
    reqs = gen(duration_s=day * 50, rate_per_s=5.0, diurnal=True, day_s=day,
               mix={service: (1.0, 1.0)}, seed=21)
    hours = Counter(int(hour_of(r.t, 0.0, day)) for r in reqs)
    peak = [h for h in range(24) if INTERACTIVE_PROFILE[h] == 1.0]
    night = [h for h in range(24) if INTERACTIVE_PROFILE[h] == 0.25]
    assert len(peak) == 5 and len(night) == 3
    return sum(hours[h] for h in peak) / len(peak), sum(hours[h] for h in night) / len(night)


def test_diurnal_interactive_peak_to_night_ratio():
    peak, night = _peak_night("infer-rt")
    # expected ratio 1.0 / 0.25 = 4; counts ~17,000 vs ~2,600: sd of the ratio ~2 %;
    # tolerance 10 %
    assert peak / night == pytest.approx(4.0, rel=0.10)


def test_diurnal_batch_is_flatter():
    peak, night = _peak_night("train-batch")
    expected = BATCH_PROFILE[11] / BATCH_PROFILE[3]  # 1.0 / 0.8125
    assert expected == pytest.approx(1.2308, abs=1e-3)
    # counts ~10,000 vs ~8,000: sd of the ratio ~1.5 %; tolerance 6 %
    assert peak / night == pytest.approx(expected, rel=0.06)


def test_profile_mean_integrates_the_hourly_steps():
    flat = (1.0,) * 24
    assert profile_mean(flat, 3.0, 100.0, 0.0, 37.0) == pytest.approx(1.0)
    assert profile_mean(INTERACTIVE_PROFILE, 0.0, 240.0, 0.0, 240.0) == pytest.approx(
        sum(INTERACTIVE_PROFILE) / 24)
    # hours 2..4 exactly: all 0.25; then half an hour at hour 23.5 -> 0.55
    assert profile_mean(INTERACTIVE_PROFILE, 2.0, 24.0, 0.0, 3.0) == pytest.approx(0.25)
    assert profile_mean(INTERACTIVE_PROFILE, 23.5, 24.0, 0.0, 0.5) == pytest.approx(0.55)


def test_defer_batch_moves_batch_out_of_the_peak_within_max_defer():
    kw = dict(duration_s=2400, day_s=2400, rate_per_s=4.0, diurnal=True, seed=5)
    base = gen(**kw)
    moved = gen(defer_batch=True, max_defer_s=800.0, release_spread_h=1.0, **kw)  # 8 h
    key = lambda r: (r.arrival_t, r.metro, r.service, r.duration_s)  # noqa: E731
    assert sorted(map(key, base)) == sorted(map(key, moved))  # same arrivals
    hour_s = 100.0
    deferred = [r for r in moved if r.t > r.arrival_t]
    assert len(deferred) > 20
    for r in moved:
        h_arr = hour_of(r.arrival_t, 0.0, 2400)
        if r.t > r.arrival_t:
            assert r.deferrable and r.service in ("train-batch", "render")
            assert r.t - r.arrival_t <= 800.0 + 1e-6
            assert in_window(hour_of(r.t + 1e-6, 0.0, 2400), (22, 6))
            assert r.t - 22 * hour_s <= hour_s + 1e-6  # released within the first hour
        elif r.deferrable:
            # not deferred: arose off-peak, or the window was more than 8 h away
            assert in_window(h_arr, (22, 6)) or h_arr < 14.0 - 1e-6
        # batch that arose in the peak within reach of the window never runs in the peak
        if r.deferrable and 14.0 <= h_arr < 22.0:
            assert in_window(hour_of(r.t + 1e-6, 0.0, 2400), (22, 6))
    assert not [r for r in gen(defer_batch=True, max_defer_s=0.0, **kw) if r.t > r.arrival_t]


def test_rate_for_load_and_capacity():
    cfg = WorkloadConfig(load=0.5)
    cap = capacity_units(NET)
    assert cap == 2464
    per = unit_s_per_request(DEFAULT_MIX, SERVICES)
    by_hand = (0.45 * 1 * mean_duration(1) + 0.30 * 2 * mean_duration(2)
               + 0.15 * 4 * mean_duration(4) + 0.10 * 8 * mean_duration(8))
    assert per == pytest.approx(by_hand)
    assert rate_for_load(cfg, SERVICES, cap) == pytest.approx(0.5 * cap / by_hand)
    assert resolve(cfg, SERVICES, NET).rate_per_s == pytest.approx(0.5 * cap / by_hand)


def test_capacity_from_plan_gateways_and_metros_none():
    cfg = WorkloadConfig(duration_s=50, metros=None, load=0.5)
    by_gw = generate(cfg, SERVICES, NET, PLAN.gateways)
    assert by_gw == generate(cfg, SERVICES, NET, capacity_units(NET))  # same total units
    assert by_gw == generate(cfg, SERVICES, NET)
    half = resolve(cfg, SERVICES, NET, capacity_units(NET) / 2)
    assert half.rate_per_s == pytest.approx(resolve(cfg, SERVICES, NET).rate_per_s / 2)
    with pytest.raises(WorkloadError, match="number of compute units"):
        resolve(cfg, SERVICES, NET, "lots")


def test_metro_weights():
    reqs = gen(duration_s=1000, rate_per_s=10.0, metros=("beijing", "shanghai"),
               metro_weights={"beijing": 3.0, "shanghai": 1.0}, seed=3)
    n = Counter(r.metro for r in reqs)
    assert set(n) == {"beijing", "shanghai"}
    assert n["beijing"] / len(reqs) == pytest.approx(0.75, abs=0.02)  # sd 0.004


@pytest.mark.parametrize("kw, word", [
    (dict(mix={"nope": (1.0, 1.0)}), "remove it or add the service"),
    (dict(metros=("paris",)), "not a site"),
    (dict(duration_s=-1), "duration_s"),
    (dict(offpeak_hours=(22, 22)), "offpeak_hours"),
    (dict(load=0), "load"),
    (dict(metro_weights={"beijing": 1.0}, metros=("shanghai",)), "metro_weights"),
])
def test_bad_config_names_the_field(kw, word):
    with pytest.raises(WorkloadError, match=word):
        gen(**kw)


def test_no_metros_without_network():
    with pytest.raises(WorkloadError, match="give WorkloadConfig.metros"):
        generate(WorkloadConfig(rate_per_s=1.0), SERVICES)


def test_describe():
    cfg = WorkloadConfig(duration_s=100, rate_per_s=3.0, defer_batch=True, diurnal=True)
    reqs = generate(cfg, SERVICES, NET)
    d = describe(resolve(cfg, SERVICES, NET), reqs)
    assert d.requests == len(reqs)
    assert d.offered_rate_per_s == pytest.approx(len(reqs) / 100)
    assert sum(d.per_service.values()) == len(reqs)
    assert d.config["seed"] == 1 and d.config["rate_per_s"] == 3.0
    assert d.config["mix"]["infer-rt"] == [0.45, 1.0]
    assert d.deferred == sum(1 for r in reqs if r.t > r.arrival_t)
    assert describe(None, [], source="x.csv").offered_rate_per_s is None


# -- replay -------------------------------------------------------------------------------

@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_replay_round_trip_is_identical(tmp_path, suffix):
    reqs = gen(duration_s=600, rate_per_s=2.0, diurnal=True, defer_batch=True, seed=9)
    assert any(r.t > r.arrival_t for r in reqs)
    path = tmp_path / f"w{suffix}"
    save_replay(reqs, path)
    assert load_replay(path, SERVICES, METROS) == reqs


def test_replay_with_a_network(tmp_path):
    reqs = gen(duration_s=60, rate_per_s=2.0, seed=4)
    path = tmp_path / "w.csv"
    save_replay(reqs, path)
    assert load_replay(path, NET) == reqs  # the network's services and metro sites
    (tmp_path / "x.csv").write_text("t,metro,service\n1,zhongwei,infer\n")
    with pytest.raises(WorkloadError, match="line 2: metro 'zhongwei'"):
        load_replay(tmp_path / "x.csv", NET)  # a cluster site is not a metro
    with pytest.raises(WorkloadError, match="give the metros"):
        load_replay(path, SERVICES)


def test_replay_defaults_and_sorting(tmp_path):
    p = tmp_path / "w.csv"
    p.write_text("# recorded\nt,metro,service\n5,shanghai,infer\n\n1.5,beijing,train-batch\n")
    reqs = load_replay(p, SERVICES, METROS)
    assert [(r.idx, r.t, r.metro, r.service) for r in reqs] == [
        (0, 1.5, "beijing", "train-batch"), (1, 5.0, "shanghai", "infer")]
    assert reqs[0].units == 8 and reqs[0].duration_s == DEFAULT_MIX["train-batch"][1]
    assert reqs[0].deferrable and not reqs[1].deferrable
    assert reqs[0].arrival_t == 1.5


CSV_HEAD = "t,metro,service,units,duration_s,deferrable,arrival_t\n"


@pytest.mark.parametrize("name, text, line, fix", [
    ("a.csv", CSV_HEAD + "1,paris,infer,2,1,false,1\n", 2, "use one of"),
    ("a.csv", CSV_HEAD + "1,shanghai,mine,2,1,false,1\n", 2, "use one of"),
    ("a.csv", CSV_HEAD + "0,shanghai,infer,2,1,false,0\n-1,shanghai,infer,2,1,false,0\n", 3,
     ">= 0"),
    ("a.csv", CSV_HEAD + "nan,shanghai,infer,2,1,false,0\n", 2, "give seconds"),
    ("a.csv", CSV_HEAD + "1,shanghai,infer,0,1,false,1\n", 2, "integer >= 1"),
    ("a.csv", CSV_HEAD + "1,shanghai,infer,1.5,1,false,1\n", 2, "integer >= 1"),
    ("a.csv", CSV_HEAD + "1,shanghai,infer,2,0,false,1\n", 2, "fix the value"),
    ("a.csv", CSV_HEAD + "1,shanghai,infer,2,-3,false,1\n", 2, "duration in seconds"),
    ("a.csv", CSV_HEAD + "1,shanghai,infer,2,1,maybe,1\n", 2, "write true or false"),
    ("a.csv", CSV_HEAD + "1,shanghai,infer,2,1,false,2\n", 2, "fix arrival_t"),
    ("a.csv", CSV_HEAD + "1,shanghai,infer\n", 2, "one value per column"),
    ("a.csv", "t,service\n1,infer\n", 1, "first line must name the columns"),
    ("a.csv", "t,metro,service,colour\n1,shanghai,infer,red\n", 1, "allowed"),
    ("a.jsonl", '{"t": 1, "metro": "shanghai", "service": "infer"}\n{"t": 2,\n', 2,
     "one JSON object per line"),
    ("a.jsonl", "[1, 2]\n", 1, "expected a JSON object"),
    ("a.jsonl", '{"t": 1, "metro": "shanghai", "service": "infer", "gpu": 1}\n', 1,
     "allowed"),
    ("a.jsonl", '{"t": NaN, "metro": "shanghai", "service": "infer"}\n', 1, "give seconds"),
    ("a.jsonl", '{"t": 1, "metro": "shanghai", "service": "infer", "units": true}\n', 1,
     "integer >= 1"),
    ("a.jsonl", '{"t": 1, "service": "infer"}\n', 1, "needs t, metro and service"),
])
def test_replay_errors_name_line_and_fix(tmp_path, name, text, line, fix):
    p = tmp_path / name
    p.write_text(text)
    with pytest.raises(WorkloadError) as e:
        load_replay(p, SERVICES, METROS)
    msg = str(e.value)
    assert f"{p}, line {line}:" in msg and fix in msg, msg


def test_replay_file_level_errors(tmp_path):
    p = tmp_path / "big.csv"
    p.write_text("t,metro,service\n" + "1,shanghai,infer\n" * 4)
    with pytest.raises(WorkloadError, match=r"line 5: more than 3 requests; split"):
        load_replay(p, SERVICES, METROS, max_rows=3)
    empty = tmp_path / "e.csv"
    empty.write_text("t,metro,service\n")
    with pytest.raises(WorkloadError, match="no requests"):
        load_replay(empty, SERVICES, METROS)
    with pytest.raises(WorkloadError, match="name the file .csv"):
        load_replay(tmp_path / "w.txt", SERVICES, METROS)
    with pytest.raises(WorkloadError, match="cannot read"):
        load_replay(tmp_path / "missing.csv", SERVICES, METROS)


# -- compute scaling ------------------------------------------------------------------------

def test_scale_compute():
    small = scale_compute(NET, 0.05)
    z = small.site("zhangjiakou").compute
    assert z.units == {"cuda": 4, "cann": 2}  # ceil(3.2), ceil(1.6)
    assert z.energy_price == NET.site("zhangjiakou").compute.energy_price
    assert NET.site("zhangjiakou").compute.units == {"cuda": 64, "cann": 32}  # a copy
    tiny = scale_compute(NET, 1e-6)
    assert all(v == 1 for s in tiny.sites if s.compute for v in s.compute.units.values())
    assert [s.id for s in small.sites] == [s.id for s in NET.sites]
    assert small.links == NET.links
    net = build_network(
        [{"id": "m", "kind": "metro", "lat": 30, "lon": 120, "region": "east"},
         {"id": "c", "kind": "cluster", "lat": 31, "lon": 121, "region": "east",
          "compute": {"units": {"cuda": 10, "cann": 0}}}],
        [{"a": "m", "b": "c"}], name="t")
    assert scale_compute(net, 0.5).site("c").compute.units == {"cuda": 5, "cann": 0}
    assert scale_compute(net, 2).site("c").compute.units == {"cuda": 20, "cann": 0}
    for bad in (0, -1, float("nan")):
        with pytest.raises(WorkloadError, match="factor"):
            scale_compute(net, bad)


def test_request_is_frozen():
    r = Request(0, 1.0, 1.0, "shanghai", "infer", 2, 1.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.t = 2.0  # type: ignore[misc]
