"""Job outcomes and run metrics (experiments/workload/metrics.py) on hand-built jobs: exact numbers,
empty input, everything refused. Pure, no root."""

from __future__ import annotations

import math
from types import SimpleNamespace as NS

import pytest

from experiments.workload.generator import Request
from experiments.workload.metrics import (
    compute_metrics,
    energy_cost_cny,
    job_records,
    outcome,
    placements_over_time,
    west_sites,
    zone_of,
)

PLAN = NS(
    services=(NS(name="infer", budget_ms=40.0, units=2),
              NS(name="rt", budget_ms=12.0, units=1)),
    gateways=(NS(id="gw_w", site="gw_w", hub="nx", units={"cuda": 4}, price=0.3, pue=1.1,
                 green=0.6),
              NS(id="gw_e", site="gw_e", hub="yrd", units={"cuda": 2, "cann": 2}, price=0.7,
                 pue=1.25, green=0.2),
              NS(id="lone", site="lone", hub=None, units={"cuda": 2}, price=None, pue=None,
                 green=None)),
    hosts=(NS(site="sh", name="sh"), NS(site="bj", name="bj")))
# the sites behind PLAN: hub nx is zone west, hub yrd zone east; gateways inherit their hub's
NET = NS(sites=(NS(id="nx", hub="nx", zone="west"), NS(id="yrd", hub="yrd", zone="east"),
                NS(id="gw_w", hub="nx", zone=None), NS(id="gw_e", hub="yrd", zone=None),
                NS(id="lone", hub=None, zone=None), NS(id="sh", hub="yrd", zone=None)))
WEST = west_sites(NET)

REQS = [
    Request(0, 0.0, 0.0, "sh", "infer", 2, 10.0),
    Request(1, 1.0, 1.0, "bj", "rt", 1, 4.0),
    Request(2, 2.0, 2.0, "sh", "infer", 2, 1.0),
    Request(3, 3.0, 3.0, "sh", "infer", 2, 1.0),
    Request(4, 4.0, 4.0, "sh", "infer", 2, 1.0),
    Request(5, 5.0, 4.5, "bj", "infer", 2, 10.0, True),
    Request(6, 6.0, 6.0, "sh", "infer", 2, 1.0),
    Request(7, 7.0, 7.0, "sh", "infer", 2, 1.0),
    Request(8, 8.0, 8.0, "sh", "infer", 2, 1.0),
    Request(9, 9.0, 9.0, "sh", "infer", 2, 1.0),
]


def res(idx: int, t_start: float, **kw) -> dict:
    base = {"idx": idx, "t": float(idx), "t_start": t_start, "ok": False, "done": False,
            "error": None, "gw": None, "kind": None, "connect_ms": None, "start_ms": None,
            "queued_ms": None, "total_ms": None, "detail": None}
    base.update(kw)
    return base


RESULTS = [
    res(0, 0.0, ok=True, done=True, gw="gw_w", kind="cuda", connect_ms=5.0, start_ms=20.0,
        queued_ms=0.0, total_ms=10030.0),
    res(1, 1.0, ok=True, done=True, gw="gw_e", kind="cann", connect_ms=6.0, start_ms=50.0,
        queued_ms=30.0, total_ms=4060.0),
    res(2, 2.0, error="connect", detail="[Errno 111] Connection refused", total_ms=3.0),
    res(3, 3.0, error="busy", gw="gw_e", connect_ms=7.0, total_ms=15.0),
    res(4, 4.0, error="timeout", connect_ms=9.0, detail="no start reply in time"),
    res(5, 5.0, ok=True, gw="gw_w", kind="cuda", connect_ms=8.0, start_ms=15.0,
        error="closed", total_ms=3000.0),
    res(6, 6.0, error="interrupted"),
    # 7: no line (not sent)
    res(8, 8.0, error="overload"),
    res(9, 9.0, error="connect", detail="timed out", total_ms=5000.0),
]


def test_outcomes_per_definition():
    got = [outcome(r) for r in RESULTS] + [outcome(None)]
    assert got == ["served", "served", "refused", "busy", "failed", "failed", "interrupted",
                   "failed", "failed", "not-sent"]
    assert outcome({"error": "connect", "detail": "Connection reset by peer"}) == "refused"
    assert outcome({"error": "overloaded", "gw": "x"}) == "busy"


def test_job_records():
    jobs = job_records(REQS, RESULTS, PLAN)
    assert [j.idx for j in jobs] == list(range(10))
    assert [j.sla_ok for j in jobs] == [True, False, None, None, None, False, None, None,
                                           None, None]
    j0, j5, j7 = jobs[0], jobs[5], jobs[7]
    assert j0.hub == "nx" and j0.client == "sh" and j0.budget_ms == 40.0
    assert j5.deferred_s == 0.5 and j5.outcome == "failed"
    assert j7.error == "not-sent" and j7.t_start is None and j7.outcome == "not-sent"
    assert jobs[3].hub == "yrd" and jobs[3].outcome == "busy"
    assert set(j0.to_dict()) >= {"idx", "t", "t_start", "client", "metro", "service", "units",
                       "duration_s", "deferred_s", "budget_ms", "ok", "done", "error", "gw",
                       "hub", "kind", "connect_ms", "start_ms", "queued_ms", "total_ms",
                       "sla_ok"}


def test_metrics_exact():
    m = compute_metrics(job_records(REQS, RESULTS, PLAN), PLAN, window_s=10.0, reroutes=3,
                        west=WEST)
    assert (m.requests, m.served, m.refused, m.busy, m.failed,
            m.interrupted_jobs, m.not_sent, m.client_overload, m.started) == \
        (9, 2, 1, 1, 4, 1, 1, 1, 3)
    assert m.sla_violations == 2
    assert m.sla_violation_pct == pytest.approx(200 / 3)
    assert m.sla_met_pct == pytest.approx(100 / 9)
    # started jobs' start_ms: 15, 20, 50 (type-7 percentiles)
    assert m.response_ms.to_dict() == pytest.approx({"p50": 20.0, "p95": 47.0, "p99": 49.4,
                                              "mean": 85 / 3})
    # connect_ms of sent jobs: 5, 6, 7, 9, 8
    assert m.connect_ms.to_dict() == pytest.approx({"p50": 7.0, "p95": 8.8})
    # job 0: 2 units from 0.025 s for 10 s, clipped at 10 -> 19.95 unit-s;
    # job 5: 2 units from 5.023 s, lost at 5 + 3.0 -> 5.954; job 1: 1 unit 4 s on gw_e
    nx, yrd, lone = m.per_hub["nx"], m.per_hub["yrd"], m.per_hub["lone"]
    assert (nx.placed, nx.units) == (2, 4) and nx.unit_s == pytest.approx(25.904)
    assert nx.utilization == pytest.approx(25.904 / 40)
    assert (yrd.placed, yrd.unit_s, yrd.utilization) == (2, pytest.approx(4.0),
                                                                  pytest.approx(0.1))
    assert (lone.placed, lone.units, lone.utilization) == (0, 2, 0.0)
    assert m.utilization_spread == pytest.approx(25.904 / 40)
    assert {g: v.to_dict() for g, v in m.per_gateway.items()} == {
        "gw_e": {"placed": 2, "hub": "yrd"}, "gw_w": {"placed": 2, "hub": "nx"},
        "lone": {"placed": 0, "hub": "lone"}}
    held_w, held_e = 20.0 + 5.954, 4.0  # unclipped unit-seconds
    cost = held_w / 3600 * 0.3 * 1.1 + held_e / 3600 * 0.7 * 1.25
    assert m.energy_cost_cny == pytest.approx(cost)
    assert m.unit_hours == pytest.approx((held_w + held_e) / 3600)
    assert m.cost_per_unit_hour_cny == pytest.approx(cost * 3600 / (held_w + held_e))
    assert m.west_share == pytest.approx(held_w / (held_w + held_e))
    assert m.renewable_share == pytest.approx((held_w * 0.6 + held_e * 0.2)
                                                 / (held_w + held_e))
    assert m.reroutes == 3 and m.west_hubs == ["nx"]


def test_metrics_empty():
    m = compute_metrics([], PLAN, window_s=60.0, west=WEST)
    assert (m.requests, m.served, m.started, m.sla_violations) == (0, 0, 0, 0)
    assert m.sla_violation_pct is None and m.sla_met_pct is None
    assert m.response_ms.to_dict() == {"p50": None, "p95": None, "p99": None, "mean": None}
    assert m.connect_ms.to_dict() == {"p50": None, "p95": None}
    assert all(d.utilization == 0.0 and d.placed == 0 for d in m.per_hub.values())
    assert m.utilization_spread == 0.0 and m.energy_cost_cny == 0.0
    assert m.cost_per_unit_hour_cny is None and m.west_share is None
    assert m.reroutes is None
    with pytest.raises(ValueError, match="window_s"):
        compute_metrics([], PLAN, window_s=0, west=WEST)


def test_metrics_all_refused():
    reqs = [Request(i, float(i), float(i), "sh", "infer", 2, 1.0) for i in range(4)]
    results = [res(i, float(i), error="connect", detail="[Errno 111] Connection refused")
               for i in range(4)]
    m = compute_metrics(job_records(reqs, results, PLAN), PLAN, window_s=4.0, west=WEST)
    assert (m.requests, m.refused, m.served, m.started) == (4, 4, 0, 0)
    assert m.sla_met_pct == 0.0 and m.sla_violation_pct is None
    assert m.sla_violations == 0 and m.west_share is None
    assert sum(d.placed for d in m.per_gateway.values()) == 0


def test_west_comes_from_the_sites_zones():
    assert WEST == {"nx", "gw_w"}  # the western hub and its member; not yrd's, not lone
    by_id = {x.id: x for x in NET.sites}
    assert [zone_of(by_id[x], by_id) for x in ("gw_w", "gw_e", "lone")] == ["west", "east",
                                                                            None]
    # a site's own zone wins over its hub's
    own = NS(sites=NET.sites + (NS(id="edge", hub="nx", zone="east"),))
    assert "edge" not in west_sites(own) and "gw_w" in west_sites(own)
    # no site with a zone: the topology defines no west (not "nothing is western")
    bare = NS(sites=tuple(NS(id=x.id, hub=x.hub, zone=None) for x in NET.sites))
    assert west_sites(bare) is None
    m = compute_metrics(job_records(REQS, RESULTS, PLAN), PLAN, window_s=10.0, west=None)
    assert m.west_share is None and m.west_hubs is None
    assert m.unit_hours > 0  # work was held: only the west is undefined
    # zones, but none west: a real zero
    m = compute_metrics(job_records(REQS, RESULTS, PLAN), PLAN, window_s=10.0,
                        west=frozenset())
    assert m.west_share == 0.0 and m.west_hubs == []


def test_energy_formula():
    assert energy_cost_cny(8, 3600, 0.5, 1.2) == pytest.approx(8 * 0.5 * 1.2)
    assert energy_cost_cny(1, 3600, None, None) == 0.0


def test_placements_over_time():
    jobs = job_records(REQS, RESULTS, PLAN)
    p = placements_over_time(jobs, 5.0, PLAN, window_s=10.0)
    # placed (reached a gateway): 0 (nx, t 0), 1 (yrd, 1), 3 (yrd, 3), 5 (nx, 5)
    assert p == {"t": [0.0, 5.0], "per_hub": {"lone": [0, 0], "nx": [1, 1], "yrd": [2, 0]}}
    q = placements_over_time(jobs, 2.0)
    assert q["t"] == [0.0, 2.0, 4.0] and q["per_hub"] == {"nx": [1, 0, 1], "yrd": [1, 1, 0]}
    assert placements_over_time([], 1.0) == {"t": [0.0], "per_hub": {}}
    with pytest.raises(ValueError, match="bin_s"):
        placements_over_time(jobs, math.nan)
