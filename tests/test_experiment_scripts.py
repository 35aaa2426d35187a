"""The experiment scripts' pure parts: option handling, link and pair choice, scenario
analysis (no root, no emulation)."""

from __future__ import annotations

import pytest

from experiments.framework.result import Job
from experiments.framework.runner import ExperimentError, check_report_dir
from experiments.studies import backbone as run_backbone
from experiments.studies import capacity_shift, fiber_cut, policy_compare
from topology.loader import load_topology


def test_quick_changes_only_what_was_not_given():
    a = run_backbone.parse_args([])
    assert (a.duration, a.envelope_count, a.envelope_parallel, a.envelope_pairs) == \
        (60.0, 40, 4, "metro-cluster")
    q = run_backbone.parse_args(["--quick"])
    assert (q.duration, q.envelope_count, q.envelope_pairs) == (15.0, 40, "sample")
    q = run_backbone.parse_args(["--quick", "--duration", "7", "--envelope-pairs", "all"])
    assert (q.duration, q.envelope_pairs) == (7.0, "all")


@pytest.mark.parametrize("argv", [["--duration", "0"], ["--load", "1.5"],
                                  ["--start-hour", "24"], ["--policy-param", "noequals"],
                                  ["--envelope-parallel", "0"]])
def test_bad_options_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as e:
        run_backbone.parse_args(argv)
    assert e.value.code == 2


def test_report_dir_must_be_new_or_empty(tmp_path):
    assert check_report_dir(tmp_path / "new") == tmp_path / "new"
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(ExperimentError, match="not empty"):
        check_report_dir(tmp_path / "full")


def test_fiber_cut_picks_a_busy_backbone_trunk_and_a_pair_across_it():
    net = load_topology("edwc")
    link = fiber_cut.busiest_link(net)
    kind = {s.id: s.kind for s in net.sites}
    assert all(kind[x] not in ("metro", "cluster") for x in link)
    src, dst = fiber_cut.crossing_pair(net, link)
    assert kind[src] == "metro" and kind[dst] == "cluster"
    path, ms = fiber_cut.model_without(net, link, src, dst)
    hops = set(zip(path, path[1:]))
    assert path[0] == src and path[-1] == dst and ms > 0
    assert link not in hops and link[::-1] not in hops


def test_fiber_cut_arguments():
    a = fiber_cut.parse_args(["--cuts", "3", "--cut-s", "2", "--gap-s", "2"])
    assert a.duration == fiber_cut.LEAD_S + 3 * 4 and a.load == fiber_cut.LOAD
    assert fiber_cut.parse_args(["--load", "0.7"]).load == 0.7
    with pytest.raises(ExperimentError, match="two site ids"):
        fiber_cut._split("yrdnmg", "link")


def job(t, hub, ok=True, done=True, dur=5.0, queued=0.0, connect=5.0):
    return Job(t=t, t_start=t, hub=hub, ok=ok, done=done, duration_s=dur, queued_ms=queued,
               connect_ms=connect)


def test_capacity_shift_analysis():
    jobs = [job(1.0, "nmg"), job(2.0, "nmg", done=False), job(3.0, "gz"),
            job(10.5, "nmg", queued=300.0), job(11.0, "nmg"), job(12.0, "gz"),
            job(13.0, "nmg", ok=False, done=False)]
    sc = capacity_shift.analyse(jobs, "nmg", 10.0)
    assert sc.placements_before == {"gz": 1, "nmg": 2}
    assert sc.placements_after == {"gz": 1, "nmg": 3}
    assert sc.late_placements == 3 and sc.misplaced == 2
    assert sc.reaction_ms == pytest.approx(3000.0)  # the failed one at t = 13
    assert sc.existing_flows == 0  # both jobs on nmg ended before t = 10 (5 s long)
    sc = capacity_shift.analyse([job(8.0, "nmg", dur=5), job(9.0, "nmg", dur=5, done=False)],
                                "nmg", 10.0)
    assert (sc.existing_flows, sc.existing_survived, sc.reaction_ms) == (2, 1, 0.0)


def test_capacity_shift_hub_choice():
    from topology.plan import make_plan
    plan = make_plan(load_topology("edwc"), "abcd")
    assert capacity_shift.pick_hub(plan, "auto") in {g.hub for g in plan.gateways}
    with pytest.raises(ExperimentError, match="no gateway belongs"):
        capacity_shift.pick_hub(plan, "atlantis")


def test_policy_explanations_group_alike_reasons():
    decs = [{"policy": "nearest", "gateway": "wuhu",
             "reason": f"nearest: wuhu latency {x:.2f}/40 ms, free 5/6; next horinger"}
            for x in (3.9, 4.1, 4.0)]
    decs.append({"policy": "nearest", "gateway": None,
                 "reason": "no gateway within the 12 ms budget (nearest x at 14.2 ms)"})
    out = policy_compare.explain(decs, "nearest")
    assert out[0].startswith("3 x nearest: wuhu") and out[1].startswith("1 x no gateway")
    with pytest.raises(SystemExit):
        policy_compare.parse_args(["--policies", "nearest,nearest"])
