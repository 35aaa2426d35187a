"""The typed run result (experiments/framework/result.py, record.py, scenario.py): a recorded
report.json round-trips key for key, sections are typed, values of the wrong type are named
and never used, and the runner glue (cli.run_requests) stores and finalizes every workload
run. Pure, no root."""

from __future__ import annotations

import copy
import json
import math
import sys
from pathlib import Path
from types import SimpleNamespace as NS

import pytest

from experiments.framework import cli
from experiments.framework.record import ResultFormatError
from experiments.framework.result import (
    FORMAT,
    Job,
    Metrics,
    RunResult,
    SiteInfo,
    Topology,
)
from experiments.framework.runner import Experiment
from experiments.framework.scenario import (
    CapacityShift,
    Cut,
    FiberCut,
    PolicyComparison,
    PolicyRun,
)
from experiments.workload.metrics import job_records
from tests.test_experiment_metrics import NET, PLAN, REQS, RESULTS
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


# --- written by the phases ------------------------------------------------------------------

def test_a_result_built_by_the_phases_writes_every_section():
    r = RunResult(kind="backbone", title="t", status="complete")
    r.topology = Topology(name="n", sites=[SiteInfo(id="a", kind="hub", zone="west")])
    r.jobs = job_records(REQS, RESULTS, PLAN)
    d = r.to_dict()
    for key in ("format", "kind", "status", "error", "phases", "config", "run", "topology",
                "envelope", "workload", "jobs", "decisions", "metrics", "scenario", "notes",
                "errors"):
        assert key in d, key
    assert "controller" not in d and "scenario_backup_coverage" not in d  # only when set
    assert d["topology"]["sites"][0]["zone"] == "west" and d["jobs"][7]["error"] == "not-sent"
    back = RunResult.from_dict(json.loads(json.dumps(d)))
    assert back.problems == [] and back.to_dict() == d


def test_job_records_name_a_bad_result_line():
    bad = copy.deepcopy(RESULTS)
    bad[0]["connect_ms"] = "fast"
    with pytest.raises(ResultFormatError, match=r"jobs\[0\].connect_ms"):
        job_records(REQS, bad, PLAN)
    found: list[str] = []
    jobs = job_records(REQS, bad, PLAN, found)
    assert jobs[0].connect_ms is None and found == [
        "jobs[0].connect_ms: expected a number, got string"]


# --- cli.run_requests: every workload run is stored and finalized ---------------------------

class FakeEmu:
    plan, network = PLAN, NET

    def api(self, resource, *a, **kw):
        raise OSError("controller gone")  # an interrupted run: the state API is down


@pytest.fixture
def exp(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["test"])
    return Experiment("backbone", "t", {"seed": 1}, tmp_path / "r")


def fake_drive(rows_then=None):
    def drive(exp, emu, requests, label, on_tick, start_at, rows, stop_after_s):
        rows += RESULTS
        if rows_then is not None:
            raise rows_then
    return drive


def test_run_requests_stores_jobs_and_finalizes_an_interrupted_run(exp, monkeypatch):
    from experiments.framework import steps
    monkeypatch.setattr(steps, "drive_workload", fake_drive(KeyboardInterrupt()))
    args = NS(duration=10.0)
    with pytest.raises(KeyboardInterrupt):
        cli.run_requests(exp, FakeEmu(), REQS, args)
    assert len(exp.result.jobs) == len(REQS) and exp.result.metrics is None
    assert len(exp.finalizers) == 1
    exp.finalizers.pop()()
    m = exp.result.metrics
    assert m is not None and m.requests == 9 and m.reroutes is None  # counters unknown
    assert m.west_hubs == ["nx"]  # the west of the sites behind the plan
    assert exp.result.controller.counters == {"error": "controller gone"}


def test_every_workload_run_gets_its_own_finalizer(exp, monkeypatch):
    """policy_compare runs several workloads, each into its own round."""
    from experiments.framework import steps
    monkeypatch.setattr(steps, "drive_workload", fake_drive())
    args = NS(duration=10.0)
    rounds = [PolicyRun(policy="nearest"), PolicyRun(policy="greenest")]
    done: list[str] = []
    for row in rounds:
        cli.run_requests(exp, FakeEmu(), REQS, args, label=f"workload-{row.policy}",
                         into=row, finalize=lambda row=row: done.append(row.policy))
    assert [len(r.jobs) for r in rounds] == [10, 10] and exp.result.jobs is None
    while exp.finalizers:
        exp.finalizers.pop(0)()
    assert done == ["nearest", "greenest"]
    # the default finalizer does nothing once collect stored the metrics
    cli.run_requests(exp, FakeEmu(), REQS, args)
    exp.result.metrics = Metrics(requests=1)
    exp.finalizers.pop()()
    assert exp.result.metrics.requests == 1
