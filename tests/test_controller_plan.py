"""Plan validation: good plans load, bad ones fail with a message naming the field."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest

from controller.plan import PlanError, load_plan, parse_plan
from tests.fakeof import ring_plan_doc

REPO = Path(__file__).resolve().parents[1]


def test_ring_plan_loads():
    plan = parse_plan(ring_plan_doc())
    assert len(plan.switches) == 4 and len(plan.hosts) == 4 and len(plan.links) == 4
    delays = plan.directed_delays()
    assert delays[(1, 2, 2, 3)] == 10.0 and delays[(2, 3, 1, 2)] == 0.5
    assert len(plan.expected_directed_links()) == 8


def test_builder_extras_are_ignored():
    doc = ring_plan_doc()
    doc["extra_key"] = {"anything": 1}
    doc["hosts"][0]["intf"] = "ewk3p9s1-p1"
    doc["links"][0].update(a_intf="ewk3p9s1-p2", jitter_ms=0.0, relay_a="ewk3p9r1a")
    assert parse_plan(doc).hosts[0].name == "beijing"


def test_topology_builder_plan_is_accepted():
    """One description of the network: the plan the topology package writes loads here."""
    tplan = pytest.importorskip("topology.plan")
    loader = pytest.importorskip("topology.loader")
    net = loader.load_topology("edwc")
    doc = json.loads(tplan.make_plan(net, "k3p9").to_json())
    plan = parse_plan(doc)
    assert len(plan.switches) == len(doc["switches"]) and plan.run_id == "k3p9"
    assert len(plan.expected_directed_links()) == 2 * len(doc["links"])


def _broken(mutate):
    doc = copy.deepcopy(ring_plan_doc())
    mutate(doc)
    return doc


@pytest.mark.parametrize("mutate, field", [
    (lambda d: d.update(format="edwc-plan/9"), "plan.format"),
    (lambda d: d.pop("run_id"), "plan.run_id"),
    (lambda d: d["switches"][1].update(dpid=1), "switches[1].dpid"),
    (lambda d: d["switches"][0].update(dpid="1"), "switches[0].dpid"),
    (lambda d: d["hosts"][2].update(ip="10.0.0.300"), "hosts[2].ip"),
    (lambda d: d["hosts"][0].update(mac="02:00:00:00:00"), "hosts[0].mac"),
    (lambda d: d["hosts"][0].update(dpid=99), "hosts[0].dpid/port"),
    (lambda d: d["links"][0].pop("delay_ms_ab"), "links[0].delay_ms_ab"),
    (lambda d: d["links"][1].update(delay_ms_ba=-1), "links[1].delay_ms_ba"),
    (lambda d: d["links"][1].update(delay_ms_ba=True), "links[1].delay_ms_ba"),
    (lambda d: d["links"][2].update(a_port=1), "links[2].a_dpid/a_port"),
    (lambda d: d["links"][3].update(b_dpid=4), "links[3].b_dpid"),
    (lambda d: d["links"][3].update(id="beijing-shanghai"), "links[3].id"),
    (lambda d: d.update(switches=[]), "plan.switches"),
])
def test_invalid_plan_names_the_field(mutate, field):
    with pytest.raises(PlanError) as exc:
        parse_plan(_broken(mutate))
    assert str(exc.value).startswith(field + ":"), str(exc.value)


def test_load_plan_file_errors(tmp_path):
    with pytest.raises(PlanError, match="cannot read"):
        load_plan(str(tmp_path / "missing.json"))
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(PlanError, match="not valid JSON"):
        load_plan(str(bad))
    p = tmp_path / "p.json"
    p.write_text(json.dumps(_broken(lambda d: d["links"][0].update(b_port="x"))))
    with pytest.raises(PlanError, match=r"p\.json: links\[0\]\.b_port"):
        load_plan(str(p))


def test_cli_check(tmp_path):
    good, bad = tmp_path / "good.json", tmp_path / "bad.json"
    good.write_text(json.dumps(ring_plan_doc()))
    bad.write_text(json.dumps(_broken(lambda d: d["hosts"][1].pop("mac"))))
    cmd = [sys.executable, "-m", "controller", "--check", "--plan"]
    ok = subprocess.run(cmd + [str(good)], cwd=REPO, capture_output=True, text=True)
    assert ok.returncode == 0 and "plan OK: 4 switches" in ok.stdout
    ko = subprocess.run(cmd + [str(bad)], cwd=REPO, capture_output=True, text=True)
    assert ko.returncode == 2 and "hosts[1].mac: missing required field" in ko.stderr
