"""Controller and gateway flags are declared once: the configuration the emulation builds
round-trips through argv, into the real controller and agent command lines, unchanged."""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

from common import flags
from controller.config import ControllerConfig, parse_argv
from emulation.control import AgentOptions, ControllerProcess, GatewayAgents
from gateway import config as gwconfig
from topology.loader import load_topology
from topology.plan import make_plan

ROOT = Path(__file__).resolve().parents[1]


class Record:
    def process(self, pid, what):  # the run record; nothing is started here
        raise AssertionError("nothing may start")


def controller_for(tmp_path: Path, config: ControllerConfig, key: bytes | None = None
                   ) -> ControllerProcess:
    plan = make_plan(load_topology("edwc"), "cf01")
    (tmp_path / "plan.json").write_text(plan.to_json())
    return ControllerProcess(config, tmp_path, Record(), adv_key=key, log=lambda *_: None)


CHOICES = ControllerConfig(
    probe_interval=0.25, policy="weighted", delay_source="measured", flow_idle_timeout=7,
    newflow_rate=1234, allow_unregistered_gateways=True, log_level="DEBUG",
    policy_params={"latency": 2.5, "green": 0.1, "price_ref": 3, "latency_ref_ms": 80.0})


def test_every_field_has_exactly_one_flag():
    opts = [f.metadata["edwc_flag"].option for f in dataclasses.fields(ControllerConfig)]
    assert len(opts) == len(set(opts)) == len(dataclasses.fields(ControllerConfig))


def test_controller_config_round_trips_through_argv(tmp_path):
    ctl = controller_for(tmp_path, CHOICES, key=b"k3y")
    cfg = ctl.config  # the researcher's choices plus the run's wiring
    assert cfg.require_auth and cfg.adv_key_file and cfg.api and cfg.listen[1] > 0
    back, _ = parse_argv(ctl.argv())
    assert back == cfg
    assert parse_argv(ControllerConfig(plan="p.json").to_argv())[0] == \
        ControllerConfig(plan="p.json")


def test_the_controller_process_runs_with_the_emulations_config(tmp_path):
    """The real `python -m controller`, given the argv the emulation builds, reports the
    same configuration (its --check prints what it parsed)."""
    ctl = controller_for(tmp_path, CHOICES, key=b"k3y")
    r = subprocess.run([sys.executable, "-m", "controller", *ctl.argv(), "--check"],
                       cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    printed = json.loads(r.stdout.splitlines()[-1])["config"]
    assert printed == ctl.config.to_dict()


def test_controller_rejects_inconsistent_or_bad_flags(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        parse_argv(["--plan", "p.json", "--probe-interval", "0"])
    assert e.value.code == 2 and "--probe-interval" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse_argv(["--plan", "p.json", "--policy-param", "1x=2"])
    assert "KEY=VALUE" in capsys.readouterr().err
    plan = controller_for(tmp_path, ControllerConfig()).config.plan
    r = subprocess.run([sys.executable, "-m", "controller", "--plan", plan, "--require-auth",
                        "--check"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "--require-auth needs --adv-key-file" in r.stderr


def test_gateway_configs_round_trip_through_argv(tmp_path):
    plan = make_plan(load_topology("edwc"), "cf02")
    (tmp_path / "adv.key").write_bytes(b"secret")
    agents = GatewayAgents(plan, net=None, work_dir=tmp_path, record=Record(),
                           options=AgentOptions(adv_interval=0.37, adv_key=b"secret"))
    assert plan.gateways
    for g in plan.gateways:
        cfg = agents.config(g)
        back = gwconfig.parse_argv(flags.to_argv(cfg))
        assert back == cfg, g.id
        assert back.key == b"secret" and back.interval == 0.37


def test_flag_items_parse_json_values():
    assert flags.parse_items("--p", ["a=1", "b=x", "c=[1]"]) == {"a": 1, "b": "x", "c": [1]}
    with pytest.raises(ValueError, match="--p 'no'"):
        flags.parse_items("--p", ["no"])
    with pytest.raises(argparse.ArgumentTypeError):
        flags.parse_item("--p", "=1")
