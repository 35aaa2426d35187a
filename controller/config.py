"""The controller process's configuration, with its command-line flags declared once.

:class:`ControllerConfig` is what ``python -m controller`` runs with. The emulation holds
one (the researcher's choices: policy, delay source, timers), fills in the run's wiring
(plan, listen and API addresses, status and log files, the advertisement key file) and
starts the process with ``common.flags.to_argv(config)``; the process parses it back with
the same declarations (:func:`parse_argv`). Nothing else spells a controller flag.
The effective configuration is written into the status file (``"config"``), so a run can
prove what its controller ran with.
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field
from typing import Any

from common import checks, flags
from common.flags import flag

DEFAULT_POLICY = "nearest"  # latency only: the baseline every other policy is compared to
DELAY_SOURCES = ("model", "measured")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def parse_listen(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host.strip("[]"), int(port)


def render_listen(addr: tuple[str, int]) -> str:
    host, port = addr
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


positive_float = checks.argtype(0, lo_open=True)
positive_int = checks.argtype(0, lo_open=True, integer=True)


@dataclass(frozen=True)
class ControllerConfig:
    """One controller process. The first group is the run's wiring (the emulation fills it
    in); the rest are the researcher's choices."""

    plan: str = field(default="", metadata=flag(
        "--plan", str, required=True, help="plan JSON written by the topology builder"))
    listen: tuple[str, int] = field(default=("127.0.0.1", 6653), metadata=flag(
        "--listen", parse_listen, render=render_listen, metavar="HOST:PORT",
        help="OpenFlow listen address (default 127.0.0.1:6653)"))
    status: str | None = field(default=None, metadata=flag(
        "--status", str, help="status JSON file, rewritten atomically on changes"))
    log_file: str | None = field(default=None, metadata=flag(
        "--log-file", str, help="log here instead of stderr"))
    log_level: str = field(default="INFO", metadata=flag(
        "--log-level", str, choices=LOG_LEVELS, help="(default INFO)"))
    api: tuple[str, int] | None = field(default=None, metadata=flag(
        "--api", parse_listen, render=render_listen, metavar="HOST:PORT",
        help="serve the state API on this loopback address (e.g. 127.0.0.1:8080)"))
    adv_key_file: str | None = field(default=None, metadata=flag(
        "--adv-key-file", str, help="shared HMAC key for gateway advertisements"))
    require_auth: bool = field(default=False, metadata=flag(
        "--require-auth",
        help="reject advertisements without a valid HMAC (needs --adv-key-file)"))

    probe_interval: float = field(default=1.0, metadata=flag(
        "--probe-interval", positive_float, render=repr, metavar="S",
        help="seconds between discovery frames; links expire after 3 intervals (default 1)"))
    policy: str = field(default=DEFAULT_POLICY, metadata=flag(
        "--policy", str, help="path selector: nearest, least-loaded, greenest, weighted, "
        "random, round-robin, or module:Class / path/file.py:Class "
        f"(default {DEFAULT_POLICY})"))
    policy_params: dict[str, Any] = field(default_factory=dict, metadata=flag(
        "--policy-param", str, items=True, metavar="KEY=VALUE",
        help="keyword argument for the policy (repeatable; VALUE parsed as JSON, else a "
             "string)"))
    delay_source: str = field(default="model", metadata=flag(
        "--delay-source", str, choices=DELAY_SOURCES,
        help="link delays for routing and placement: the plan's (model) or the controller's "
             "measurement (falls back to the model per link; default model)"))
    flow_idle_timeout: int = field(default=10, metadata=flag(
        "--flow-idle-timeout", positive_int, metavar="S",
        help="seconds a steered flow may idle before its placement ends (default 10)"))
    newflow_rate: int = field(default=600, metadata=flag(
        "--newflow-rate", positive_int, metavar="PPS",
        help="packet-ins per second per switch for new flows (meter; default 600, below "
             "what the controller sustains on a small machine)"))
    allow_unregistered_gateways: bool = field(default=False, metadata=flag(
        "--allow-unregistered-gateways",
        help="accept gateways the plan does not list (bound to their first port)"))

    def to_argv(self) -> list[str]:
        return flags.to_argv(self)

    def to_dict(self) -> dict:
        """JSON-ready, for the status file and reports."""
        d = dataclasses.asdict(self)
        for k in ("listen", "api"):
            if d[k] is not None:
                d[k] = render_listen(d[k])
        return d

    def problem(self) -> str | None:
        """What is inconsistent across fields (each field's own range is its flag's)."""
        if self.require_auth and not self.adv_key_file:
            return "--require-auth needs --adv-key-file"
        if self.api and self.api[0] not in LOOPBACK:
            return f"--api {self.api[0]}: the state API listens on loopback only"
        return None


def build_parser(description: str = "") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m controller", description=description)
    flags.add_arguments(p, ControllerConfig)
    p.add_argument("--check", action="store_true",
                   help="validate the plan and the configuration, print the configuration "
                        "as JSON, and exit")
    return p


def parse_argv(argv: list[str] | None, description: str = ""
               ) -> tuple[ControllerConfig, argparse.Namespace]:
    """(config, all parsed arguments); exits with status 2 on a malformed option."""
    args = build_parser(description).parse_args(argv)
    return flags.from_args(ControllerConfig, args), args
