"""Envelope verdicts: tier assignment (EDWC and a constructed topology), verdict edge cases,
the tier file's validation, the renderers and the CLI's input checks (no root needed)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from common.stats import summarize
from probes.envelope import (
    DEFAULT_FILE,
    FAIL,
    INSUFFICIENT,
    PASS,
    UNTIERED,
    EnvelopeConfig,
    EnvelopeError,
    Tier,
    assign_tier,
    evaluate,
    judge_one_way,
    judge_summary,
    load_envelopes,
    matching_tiers,
    parse_envelopes,
    site_hub,
)
from probes.envelope_report import render_markdown, render_table, to_json
from topology.loader import load_topology
from topology.model import build_network

ROOT = Path(__file__).resolve().parents[1]


def series(value_ms: float, n: int, sent: int | None = None):
    return summarize([value_ms] * n, sent if sent is not None else n)


def result(fwd, rev=None, rtt=None):
    rev = rev if rev is not None else fwd
    return SimpleNamespace(forward=fwd, reverse=rev, rtt=rtt if rtt is not None else fwd)


@pytest.fixture(scope="module")
def cfg() -> EnvelopeConfig:
    return load_envelopes()


@pytest.fixture(scope="module")
def edwc():
    return load_topology("edwc")


# --- the default tier file -----------------------------------------------------------------

def test_default_tiers_are_the_policy_circles_one_way(cfg):
    assert [(t.id, t.threshold_ms, t.metric, t.rule) for t in cfg.tiers] == [
        ("city", 1.0, "one-way", "same-city"), ("region", 5.0, "one-way", "same-region"),
        ("inter-hub", 20.0, "one-way", "different-hub")]
    assert (cfg.percentile, cfg.min_samples, cfg.max_loss_pct) == (95.0, 20, 5.0)
    assert cfg.source == str(DEFAULT_FILE)


# --- tier assignment -----------------------------------------------------------------------

def test_edwc_metro_cluster_tiers(edwc, cfg):
    tiers = {}
    for m in edwc.sites_of_kind("metro"):
        for c in edwc.sites_of_kind("cluster"):
            t = assign_tier(edwc, m.id, c.id, cfg.tiers)
            tiers[(m.id, c.id)] = t.id if t else None
    assert len(tiers) == 80 and None not in tiers.values()  # every pair is judged
    city = sorted(k for k, v in tiers.items() if v == "city")
    assert city == [("chongqing", "chongqing_dc"), ("shanghai", "yrd_eco")]
    region = {k for k, v in tiers.items() if v == "region"}
    assert region == {("beijing", "zhangjiakou"), ("beijing", "horinger"),
                      ("tianjin", "zhangjiakou"), ("tianjin", "horinger"),
                      ("shanghai", "wuhu"), ("hangzhou", "wuhu"), ("hangzhou", "yrd_eco"),
                      ("nanjing", "wuhu"), ("nanjing", "yrd_eco"), ("guangzhou", "shaoguan"),
                      ("shenzhen", "shaoguan"), ("chongqing", "tianfu"), ("chongqing", "guian")}
    assert sum(v == "inter-hub" for v in tiers.values()) == 65
    # first match wins; the others are recorded
    assert [t.id for t in matching_tiers(edwc, "beijing", "horinger", cfg.tiers)] == [
        "region", "inter-hub"]
    assert [t.id for t in matching_tiers(edwc, "shanghai", "yrd_eco", cfg.tiers)] == [
        "city", "region"]


def _constructed():
    sites = [
        {"id": "h1", "kind": "hub", "region": "r1", "lat": 30.0, "lon": 110.0},  # no hub field
        {"id": "h2", "kind": "hub", "region": "r2", "lat": 30.0, "lon": 100.0},
        {"id": "m1", "kind": "metro", "region": "r1", "hub": "h1", "lat": 30.0, "lon": 110.05},
        {"id": "c1", "kind": "cluster", "region": "r1", "hub": "h1", "lat": 30.5, "lon": 110.5},
        {"id": "c2", "kind": "cluster", "region": "r2", "hub": "h2", "lat": 30.0, "lon": 100.1},
        {"id": "p1", "kind": "pop", "region": "r1", "lat": 31.0, "lon": 111.0},
        {"id": "m2", "kind": "metro", "region": "r3", "lat": 35.0, "lon": 105.0},  # no hub
    ]
    links = [{"a": "h1", "b": "m1"}, {"a": "h1", "b": "c1"}, {"a": "h1", "b": "h2"},
             {"a": "h2", "b": "c2"}, {"a": "h1", "b": "p1"}, {"a": "p1", "b": "m2"}]
    return build_network(sites, links, name="constructed")


def test_constructed_topology_tiers(cfg):
    net = _constructed()
    assert site_hub(net.site("h1")) == "h1" and site_hub(net.site("m2")) is None

    def tier(a, b):
        t = assign_tier(net, a, b, cfg.tiers)
        return t.id if t else None
    assert tier("m1", "h1") == "city"  # ~5 km apart
    assert tier("m1", "c1") == "region"  # ~72 km, same region r1
    assert tier("m1", "c2") == "inter-hub"  # hubs h1 and h2
    assert tier("h1", "c2") == "inter-hub"  # a hub site is its own hub
    assert tier("m1", "p1") == "region"  # a pop has no hub but shares the region
    assert tier("m2", "c2") is None  # no shared region, m2 has no hub: untiered
    assert tier("c2", "m2") is None  # symmetric
    same_hub = Tier("hub", 3.0, "one-way", "same-hub")
    catch_all = Tier("all", 50.0, "rtt", "any")
    assert matching_tiers(net, "m1", "c1", [same_hub, catch_all]) == [same_hub, catch_all]
    assert matching_tiers(net, "m2", "c2", [same_hub, catch_all]) == [catch_all]


# --- one reading ---------------------------------------------------------------------------

J = dict(threshold_ms=20.0, percentile=95, min_samples=20, max_loss_pct=5.0)


def test_no_probes_sent_is_insufficient():
    j = judge_summary(summarize([], 0), **J)
    assert j.status == INSUFFICIENT and "no probes sent" in j.reason and j.margin_ms is None


def test_all_lost_is_insufficient():
    j = judge_summary(summarize([], 100), **J)
    assert j.status == INSUFFICIENT and "all 100 probes lost" in j.reason


def test_exactly_on_the_threshold_passes():
    j = judge_summary(series(20.0, 100), **J)
    assert j.status == PASS and j.measured_ms == 20.0 and j.margin_ms == 0.0
    j = judge_summary(series(20.001, 100), **J)
    assert j.status == FAIL and j.margin_ms == pytest.approx(-0.001)


def test_too_few_samples_is_insufficient():
    j = judge_summary(series(1.0, 19), **J)
    assert j.status == INSUFFICIENT and "19 samples < minimum 20" in j.reason
    assert judge_summary(series(1.0, 20), **J).status == PASS


def test_loss_above_the_maximum_is_insufficient_at_the_maximum_judged():
    j = judge_summary(series(1.0, 94, sent=100), **J)  # 6 % loss
    assert j.status == INSUFFICIENT and "loss 6.0% > maximum 5%" in j.reason
    assert judge_summary(series(1.0, 95, sent=100), **J).status == PASS  # exactly 5 %


def test_percentile_is_the_chosen_one():
    s = summarize([1.0] * 90 + [30.0] * 10, 100)  # p50 = 1, p95 = 30
    assert judge_summary(s, **J).status == FAIL
    assert judge_summary(s, **{**J, "percentile": 50}).status == PASS


def test_one_way_takes_the_worse_direction_and_needs_both():
    fwd, rev = series(8.0, 100), series(21.0, 100)
    j = judge_one_way(fwd, rev, **J)
    assert j.status == FAIL and j.direction == "reverse" and j.measured_ms == 21.0
    j = judge_one_way(fwd, summarize([], 100), **J)
    assert j.status == INSUFFICIENT and "reverse all 100 probes lost" in j.reason


def test_forward_series_counts_delay_samples_not_packets():
    # 100 arrived, but only 10 have a delay (their replies came back)
    fwd = summarize([5.0] * 10, 100, received=100)
    j = judge_one_way(fwd, series(5.0, 100), **J)
    assert j.status == INSUFFICIENT and "10 samples" in j.reason


# --- pairs, tiers, the run ---------------------------------------------------------------------

def _net2():
    sites = [{"id": "ha", "kind": "hub", "region": "ra", "lat": 30.0, "lon": 110.0},
             {"id": "hb", "kind": "hub", "region": "rb", "lat": 30.0, "lon": 100.0},
             {"id": "m", "kind": "metro", "region": "ra", "hub": "ha", "lat": 30.0,
              "lon": 110.001},
             {"id": "c", "kind": "cluster", "region": "rb", "hub": "hb", "lat": 30.0,
              "lon": 100.001},
             {"id": "c2", "kind": "cluster", "region": "ra", "hub": "ha", "lat": 31.0,
              "lon": 110.0},
             {"id": "x", "kind": "metro", "region": "rx", "lat": 20.0, "lon": 110.0}]
    links = [{"a": "ha", "b": "hb", "delay_ms": 12}, {"a": "ha", "b": "m", "delay_ms": 0.1},
             {"a": "hb", "b": "c", "delay_ms": 0.1}, {"a": "ha", "b": "c2", "delay_ms": 1},
             {"a": "ha", "b": "x", "delay_ms": 2}]
    return build_network(sites, links, name="two-hubs")


def test_rtt_and_one_way_readings_differ(cfg):
    net = _net2()
    res = {("m", "c"): result(series(12.2, 100), rtt=series(24.4, 100))}
    one_way = evaluate(net, [("m", "c")], res, cfg)
    v = one_way.pairs[0]
    assert v.tier == "inter-hub" and v.metric == "one-way" and v.status == PASS
    assert v.readings["rtt"].status == FAIL and v.readings["rtt"].margin_ms == pytest.approx(
        -4.4)
    assert one_way.status == PASS and one_way.exit_code == 0
    assert one_way.tiers[2].by_metric == {"one-way": PASS, "rtt": FAIL}
    assert v.model_ms["one-way"] == pytest.approx(12.2) and v.model_ms["rtt"] == pytest.approx(
        24.4)
    assert v.model_status == PASS and one_way.tiers[2].model_failed == 0
    rtt = evaluate(net, [("m", "c")], res, cfg, metric="rtt")
    assert rtt.pairs[0].status == FAIL and rtt.status == FAIL and rtt.exit_code == 1
    # as a round trip the model itself (24.4 ms) breaks the 20 ms circle
    assert rtt.pairs[0].model_status == FAIL and rtt.tiers[2].model_failed == 1
    with pytest.raises(EnvelopeError, match="metric 'owd'"):
        evaluate(net, [("m", "c")], res, cfg, metric="owd")


def test_tier_and_run_aggregation(cfg):
    net = _net2()
    pairs = [("m", "c"), ("c2", "c"), ("m", "c2"), ("x", "c")]
    res = {("m", "c"): result(series(12.0, 100)),
           ("c2", "c"): result(series(13.0, 10)),  # too few: insufficient
           ("m", "c2"): result(series(1.5, 100)),
           ("x", "c"): result(series(30.0, 100))}  # untiered: not judged
    rep = evaluate(net, pairs, res, cfg)
    by = {(v.src, v.dst): v for v in rep.pairs}
    assert by[("x", "c")].status == UNTIERED and by[("x", "c")].judged is None
    assert by[("m", "c2")].tier == "region"
    inter = rep.tiers[2]
    assert (inter.status, inter.pairs, inter.passed, inter.insufficient) == (PASS, 2, 1, 1)
    assert inter.worst_margin_ms == pytest.approx(8.0)
    assert rep.tiers[0].status == "empty"
    assert rep.status == PASS
    # a failing pair fails its tier and the run
    res[("m", "c2")] = result(series(5.5, 100))
    rep = evaluate(net, pairs, res, cfg)
    assert rep.tiers[1].status == FAIL and rep.status == FAIL and rep.exit_code == 1
    # no pair judged anywhere: insufficient, exit 2
    rep = evaluate(net, [("c2", "c")], res, cfg)
    assert rep.status == INSUFFICIENT and rep.exit_code == 2
    # a pair that was not measured at all
    rep = evaluate(net, [("m", "c")], {}, cfg)
    assert rep.pairs[0].status == INSUFFICIENT and rep.pairs[0].judged.reason == "not measured"
    # only untiered pairs: nothing to judge
    assert evaluate(net, [("x", "c")], res, cfg).status == INSUFFICIENT


def test_a_tier_with_only_insufficient_pairs_is_insufficient(cfg):
    net = _net2()
    rep = evaluate(net, [("m", "c")], {("m", "c"): result(series(1, 100, sent=200))}, cfg)
    assert rep.tiers[2].status == INSUFFICIENT and rep.status == INSUFFICIENT


# --- renderers ---------------------------------------------------------------------------------

def test_renderers(cfg):
    net = _net2()
    res = {("m", "c"): result(series(12.0, 100), rtt=series(24.0, 100)),
           ("m", "c2"): result(series(5.5, 100))}
    rep = evaluate(net, [("m", "c"), ("m", "c2"), ("x", "c")], res, cfg,
                   meta={"topology": "two-hubs", "count": 100})
    table = render_table(rep)
    assert table.startswith("Latency envelopes: FAIL")
    assert "region" in table and "-0.500" in table and "+8.000" in table
    assert "rtt: 24.000 fail" in table and "1 pair(s) meet no tier" in table
    # m -> c2: measured 5.5 ms fails the 5 ms region circle, the model's 1.1 ms does not
    row = next(ln for ln in table.splitlines() if ln.startswith("region") and " c2 " in ln)
    assert "fail" in row and "model passes: excess from the emulation" in row
    doc = json.loads(json.dumps(to_json(rep)))
    assert doc["status"] == "fail" and doc["exit_code"] == 1
    assert [t["tier"]["id"] for t in doc["tiers"]] == ["city", "region", "inter-hub"]
    pair = next(p for p in doc["pairs"] if p["dst"] == "c")
    assert pair["readings"]["rtt"]["status"] == "fail" and pair["status"] == "pass"
    md = render_markdown(rep)
    assert md.startswith("# Latency envelopes: FAIL")
    assert "| tier | ms | metric |" in md and "- topology: two-hubs" in md
    header = next(ln for ln in md.splitlines() if ln.startswith("| tier | src"))
    row = next(ln for ln in md.splitlines() if ln.startswith("| region | m | c2"))
    assert row.count(" | ") == header.count(" | ")  # no stray pipes


# --- the tier file -----------------------------------------------------------------------------

GOOD = {"format": "edwc-envelopes/1",
        "tiers": [{"id": "t", "threshold_ms": 3, "metric": "rtt", "rule": "any"}]}


def _tier(**kw):
    return {**GOOD, "tiers": [{**GOOD["tiers"][0], **kw}]}


@pytest.mark.parametrize("doc, match", [
    ([], "top level must be a mapping"),
    ({"tiers": []}, "format: edwc-envelopes/1"),
    ({**GOOD, "percentil": 95}, r"unknown key\(s\) \['percentil'\]"),
    ({**GOOD, "percentile": 0}, r"percentile: 0 is outside \(0, 100\]"),
    ({**GOOD, "min_samples": 0}, "min_samples must be an integer >= 1"),
    ({**GOOD, "max_loss_pct": True}, "max_loss_pct: must be a number"),
    ({**GOOD, "tiers": []}, "'tiers' must be a non-empty list"),
    ({**GOOD, "tiers": ["city"]}, r"tiers\[0\]: each tier must be a mapping"),
    (_tier(metric=None), r"tiers\[0\] \(t\): metric None is not one of"),
    (_tier(metric="owd"), "state it explicitly"),
    (_tier(threshold_ms=-1), r"threshold_ms: -1 is outside"),
    (_tier(threshold_ms=float("nan")), "threshold_ms: must be finite, got nan"),
    (_tier(threshold_ms="20ms"), "threshold_ms: must be a number, got '20ms'"),
    (_tier(rule="same-town"), "rule 'same-town' is not one of"),
    (_tier(rule="same-city"), "needs 'city_km'"),
    (_tier(city_km=5), "'city_km' only applies to rule same-city"),
    (_tier(treshold=3), r"unknown key\(s\) \['treshold'\]"),
    ({**GOOD, "tiers": GOOD["tiers"] * 2}, "duplicate tier id 't'"),
])
def test_bad_tier_files_name_the_key(doc, match):
    with pytest.raises(EnvelopeError, match=match):
        parse_envelopes(doc, "x.yaml")


def test_missing_threshold_and_bad_files(tmp_path):
    doc = {**GOOD, "tiers": [{"id": "t", "metric": "rtt", "rule": "any"}]}
    with pytest.raises(EnvelopeError, match="missing 'threshold_ms'"):
        parse_envelopes(doc)
    with pytest.raises(EnvelopeError, match="no such file"):
        load_envelopes(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("format: edwc-envelopes/1\ntiers: [\n")
    with pytest.raises(EnvelopeError, match=r"bad.yaml: not valid YAML at line"):
        load_envelopes(bad)
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(EnvelopeError, match="cannot read"):
        load_envelopes(binary)


def test_cli_rejects_a_bad_tier_file_before_building(tmp_path):
    bad = tmp_path / "tiers.yaml"
    bad.write_text("format: edwc-envelopes/1\ntiers:\n  - {id: city, threshold_ms: 1, "
                   "rule: same-city, city_km: 50}\n")
    r = subprocess.run([sys.executable, "-m", "probes", "envelope", "--tiers", str(bad)],
                       cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert "metric None is not one of" in r.stderr and str(bad) in r.stderr
    assert "Traceback" not in r.stderr


def test_cli_rejects_bad_arguments(tmp_path):
    for args, msg in ((["--percentile", "101"], "--percentile"),
                      (["--count", "0"], "--count"),
                      (["--topology", str(tmp_path / "none.yaml")], "no such file")):
        r = subprocess.run([sys.executable, "-m", "probes", "envelope", *args], cwd=ROOT,
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 2, (args, r.stderr)
        assert msg in r.stderr and "Traceback" not in r.stderr
