"""The typed run result (experiments/framework/result.py, record.py, scenario.py): a recorded
report.json round-trips key for key, sections are typed, values of the wrong type are named
and never used. Pure, no root."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import pytest

from experiments.framework.record import ResultFormatError
from experiments.framework.result import (
    FORMAT,
    Job,
    Metrics,
    RunResult,
    SiteInfo,
)
from experiments.framework.scenario import (
    CapacityShift,
    Cut,
    FiberCut,
    PolicyComparison,
)
from tests.test_report import capacity_variant, policy_variant

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "report_result.json"


def load() -> dict:
    return json.loads(FIXTURE.read_text())


# --- round trip ---------------------------------------------------------------------------

def test_fixture_round_trips_key_for_key():
    r = RunResult.from_dict(load())
    assert r.problems == []
    assert r.to_dict() == load()
    # byte for byte, in the recorded key order
    assert json.dumps(r.to_dict(), indent=1) + "\n" == FIXTURE.read_text()


@pytest.mark.parametrize("variant", [policy_variant, capacity_variant])
def test_scenario_variants_round_trip(variant):
    d = variant(load())
    r = RunResult.from_dict(copy.deepcopy(d))
    assert r.problems == [] and r.to_dict() == d


def test_sections_are_typed():
    r = RunResult.from_dict(load())
    assert r.format == FORMAT and r.kind == "fiber-cut" and r.config.seed == 7
    assert r.run.emulation.link == "userspace" and r.run.versions["os-ken"] == "4.2.2"
    assert r.run.services[0].kinds == ["cuda", "cann"]
    assert isinstance(r.topology.sites[0], SiteInfo) and r.topology.sites[0].hub_id == "yrd"
    assert r.envelope.tiers[0].tier_id == "city" and r.envelope.tiers[0].tier.threshold_ms == 1
    pair = r.envelope.pairs[0]
    assert pair.reading().measured_ms == pytest.approx(1.36608)
    assert r.envelope.measurement("shanghai", "yrd_eco").forward.p95 == pytest.approx(1.32637)
    assert isinstance(r.jobs[0], Job) and r.jobs[0].gw == "wuhu" and r.jobs[0].ok is True
    assert r.decisions[0].path == ["hangzhou", "yrd", "wuhu"]
    assert r.metrics.per_hub["cy"].placed == 23 and r.metrics.response_ms.p95 == 44.473
    assert r.metrics.placements_per_hub() == {"yrd": 16, "cy": 23}
    assert isinstance(r.scenario, FiberCut) and isinstance(r.scenario.cuts[0], Cut)
    assert r.scenario.cuts[2].t_restore is None and r.scenario.interruption_ms.n == 3
    assert r.scenario.timeline.cuts[2] == [32.0, None]
    assert isinstance(RunResult.from_dict(capacity_variant(load())).scenario, CapacityShift)
    pc = RunResult.from_dict(policy_variant(load())).scenario
    assert isinstance(pc, PolicyComparison) and isinstance(pc.policies[1].metrics, Metrics)
    assert pc.policies[1].metrics.per_hub["cy"].placed == 30


def test_an_older_result_keeps_its_missing_keys_missing():
    r = RunResult.from_dict(load())
    # the recorded result predates these figures: read as None, not written back
    assert r.metrics.busy is None and r.metrics.west_hubs is None
    assert "busy" not in r.metrics.to_dict() and "source" not in r.topology.to_dict()
    assert "outcome" not in r.jobs[0].to_dict()
    # ... until they are set
    r.metrics.busy = 0
    assert r.metrics.to_dict()["busy"] == 0


def test_unknown_keys_are_kept_and_a_scenario_of_an_unknown_kind_stays_as_read():
    d = load()
    d["kind"], d["scenario"], d["future"] = "bandwidth-race", {"winner": "tcp"}, [1, 2]
    d["metrics"]["carbon_g"] = 12.5
    r = RunResult.from_dict(copy.deepcopy(d))
    assert r.problems == [] and r.scenario == {"winner": "tcp"}
    assert r.extra["future"] == [1, 2] and r.metrics.extra["carbon_g"] == 12.5
    assert r.to_dict() == d


def test_missing_sections_are_none():
    r = RunResult.from_dict({"format": FORMAT, "status": "failed", "error": "no OVS"})
    assert (r.run, r.topology, r.envelope, r.jobs, r.metrics, r.scenario) == (None,) * 6
    assert r.phases == [] and r.problems == []
    assert r.to_dict() == {"format": FORMAT, "status": "failed", "error": "no OVS"}


# --- wrong types: named, never used -------------------------------------------------------

def test_values_of_the_wrong_type_are_named_and_left_out():
    d = load()
    d["jobs"] = "lost"
    d["metrics"]["per_hub"] = ["yrd"]
    d["metrics"]["refused"] = "1"  # a string is not a count
    d["metrics"]["served"] = True  # nor is a boolean
    d["envelope"]["pairs"][0]["readings"] = "?"
    d["scenario"]["cuts"][0] = 42
    d["scenario"]["timeline"]["t"] = [0.0, "x", None]
    r = RunResult.from_dict(d)
    assert r.jobs is None and r.metrics.per_hub == {} and r.metrics.refused is None
    assert r.metrics.served is None and r.envelope.pairs[0].readings == {}
    assert len(r.scenario.cuts) == 2  # the non-object cut is dropped
    assert r.scenario.timeline.t == [0.0, None, None]  # positions kept: t[i] pairs one_way[i]
    assert set(r.problems) == {
        "jobs: expected a list, got string", "metrics.per_hub: expected an object, got list",
        "metrics.refused: expected an integer, got string",
        "metrics.served: expected an integer, got boolean",
        "envelope.pairs[0].readings: expected an object, got string",
        "scenario.cuts[0]: expected an object, got integer",
        "scenario.timeline.t[1]: expected a number, got string"}
    assert r.to_dict()["jobs"] is None  # read, unusable: written as not measured


def test_a_section_read_alone_is_strict_unless_given_a_problems_list():
    with pytest.raises(ResultFormatError, match="requests: expected an integer, got string"):
        Metrics.from_dict({"requests": "3"})
    found: list[str] = []
    assert Metrics.from_dict({"requests": "3", "served": 2}, found).served == 2
    assert found == ["requests: expected an integer, got string"]
    with pytest.raises(ResultFormatError):
        RunResult.from_dict(load()).metrics.list_from([{"requests": 1}, 7])


def test_not_finite_numbers_read_as_not_measured_and_integers_stay_integers():
    d = load()
    d["metrics"]["energy_cost_cny"] = math.nan
    d["metrics"]["response_ms"]["p99"] = -math.inf
    r = RunResult.from_dict(d)
    assert r.problems == [] and r.metrics.energy_cost_cny is None
    assert r.metrics.response_ms.p99 is None
    assert r.run.substrate_us == 350 and isinstance(r.run.substrate_us, int)


def test_coerce_takes_a_result_or_a_dict():
    r = RunResult.from_dict(load())
    assert RunResult.coerce(r) is r and RunResult.coerce(load()) == r
