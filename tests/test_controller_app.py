"""The os-ken layer: the send seam, and a failing handler that logs instead of dying."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest

from controller import app as edwc_app
from controller import ofmsg
from controller.config import ControllerConfig
from controller.plan import parse_plan
from controller.policy import make_policy
from tests.fakeof import ring_plan_doc


class RecordingDatapath(SimpleNamespace):
    def send_msg(self, msg):
        self.sent.append(msg)


@pytest.fixture
def controller(tmp_path):
    cfg = ControllerConfig(plan="ring.json", status=str(tmp_path / "s.json"))
    return edwc_app.EdwcController(edwc_runtime=edwc_app.Runtime(
        config=cfg, plan=parse_plan(ring_plan_doc()), policy=make_policy(cfg.policy)))


def test_handlers_send_through_the_seam(controller, tmp_path):
    dp = RecordingDatapath(id=1, ofproto=ofmsg.ofp, ofproto_parser=ofmsg.parser, sent=[])
    controller.on_features(SimpleNamespace(msg=SimpleNamespace(datapath=dp)))
    kinds = [type(m).__name__ for m in dp.sent]
    assert kinds[0] == "OFPMeterMod" and "OFPFlowMod" in kinds
    assert "OFPPortDescStatsRequest" in kinds and "OFPFlowStatsRequest" in kinds
    assert (tmp_path / "s.json").exists()


def test_failing_handler_logs_and_survives(controller, caplog):
    def boom(now):
        raise KeyError("kaput")
    with caplog.at_level(logging.ERROR, logger="edwc.controller"):
        controller._run("boom", boom)
    assert "handler boom FAILED" in caplog.text and "KeyError" in caplog.text
    controller._run("tick", controller.core.tick)  # still works afterwards


def test_requires_runtime():
    with pytest.raises(RuntimeError, match="python -m controller"):
        edwc_app.EdwcController()


def test_status_names_the_configuration(controller, tmp_path):
    import json
    controller.write_final_status()
    doc = json.loads((tmp_path / "s.json").read_text())
    assert doc["config"]["policy"] == "nearest" and doc["config"]["plan"] == "ring.json"


def test_error_description_names_type_and_offending_message():
    dp = ofmsg.stub_datapath(1)
    bad = ofmsg.barrier(dp)
    bad.serialize()
    err = ofmsg.parser.OFPErrorMsg(dp, type_=ofmsg.ofp.OFPET_BAD_REQUEST, code=1, data=bad.buf)
    err.xid = 9
    text = edwc_app.describe_error(err)
    assert "OFPET_BAD_REQUEST(1)" in text and "code=1" in text
    assert f"xid={bad.xid}" in text and "type=20" in text  # 20 = OFPT_BARRIER_REQUEST


def test_cli_refuses_busy_port_and_missing_dirs(tmp_path):
    import json
    import socket
    import subprocess
    import sys
    from pathlib import Path

    plan = tmp_path / "p.json"
    plan.write_text(json.dumps(ring_plan_doc()))
    repo = Path(__file__).resolve().parents[1]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        r = subprocess.run([sys.executable, "-m", "controller", "--plan", str(plan),
                            "--listen", f"127.0.0.1:{port}"],
                           cwd=repo, capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "cannot listen" in r.stderr
    r = subprocess.run([sys.executable, "-m", "controller", "--plan", str(plan), "--check",
                        "--status", str(tmp_path / "nope" / "s.json")],
                       cwd=repo, capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "directory does not exist" in r.stderr


def test_flow_removed_passes_the_reason_and_flow_stats_parse_groups(controller, monkeypatch):
    seen = []
    monkeypatch.setattr(controller.core, "flow_removed",
                        lambda dpid, cookie, fields, now, reason=None: seen.append(
                            (dpid, cookie, fields, reason)) or [])
    dp = RecordingDatapath(id=1, ofproto=ofmsg.ofp, ofproto_parser=ofmsg.parser, sent=[])
    match = ofmsg.parser.OFPMatch(eth_type=0x0800, ipv4_dst="10.0.255.1")
    msg = SimpleNamespace(datapath=dp, cookie=7, match=match, reason=ofmsg.ofp.OFPRR_DELETE)
    controller.on_flow_removed(SimpleNamespace(msg=msg))
    assert seen == [(1, 7, {"eth_type": 0x0800, "ipv4_dst": "10.0.255.1"},
                     ofmsg.ofp.OFPRR_DELETE)]
    inst = ofmsg.apply_actions(dp, [ofmsg.parser.OFPActionSetField(ipv4_dst="10.0.0.4"),
                                    ofmsg.group(dp, 0x101), ofmsg.output(dp, 3)])
    assert edwc_app.set_fields(inst) == [("ipv4_dst", "10.0.0.4"), ("group", 0x101),
                                         ("output", 3)]
