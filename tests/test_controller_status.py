"""The status file: content, readiness, atomic and rate-limited writes."""

from __future__ import annotations

import json
import os

from controller.core import ControllerCore
from controller.plan import parse_plan
from controller.status import StatusWriter, write_json_atomic
from tests.fakeof import FakeNetwork, ack_barriers, bring_up, ring_plan_doc


def test_status_content():
    plan = parse_plan(ring_plan_doc())
    core = ControllerCore(plan)
    net = FakeNetwork(plan)
    s = core.status()
    assert s["ready"] is False and s["switches"] == [] and s["paths"] == {}
    assert s["expected"] == {"switches": 4, "links": 8}
    ack_barriers(core, bring_up(core, net))
    s = json.loads(json.dumps(core.status()))
    assert s["pid"] == os.getpid() and s["ready"] is True
    assert s["switches"] == [1, 2, 3, 4]
    assert len(s["links"]) == 8 and [1, 2, 2, 3] in s["links"]
    assert s["paths"]["beijing>shanghai"] == ["beijing", "chengdu", "guangzhou", "shanghai"]
    assert len(s["paths"]) == 12 and s["routes_version"] >= 1
    for k in ("packet_in", "arp_replies", "arp_dropped", "probes_malformed", "of_errors"):
        assert k in s["counters"]
    assert s["counters"]["of_errors"] == 0
    core.of_error(1, "type=OFPET_BAD_MATCH(4) code=1", 0.0)
    assert core.status()["counters"]["of_errors"] == 1


def test_writer_is_atomic_and_rate_limited(tmp_path):
    path = tmp_path / "status.json"
    w = StatusWriter(str(path), min_interval=0.2)
    assert w.maybe_write(1, 10.0, lambda: {"n": 1})
    assert not w.maybe_write(2, 10.1, lambda: {"n": 2})  # too soon
    assert not w.maybe_write(1, 11.0, lambda: {"n": 1})  # nothing changed
    assert w.maybe_write(2, 10.25, lambda: {"n": 2})
    assert json.loads(path.read_text()) == {"n": 2}
    assert w.maybe_write(2, 10.26, lambda: {"n": 3}, force=True)
    assert [p.name for p in tmp_path.iterdir()] == ["status.json"]  # no temp files left


def test_failed_write_leaves_old_file(tmp_path):
    path = tmp_path / "s.json"
    write_json_atomic(str(path), {"ok": 1})
    try:
        write_json_atomic(str(path), {"bad": object()})
    except TypeError:
        pass
    assert json.loads(path.read_text()) == {"ok": 1}
    assert len(list(tmp_path.iterdir())) == 1
