"""Run the EDWC controller as its own process.

    python -m controller --plan PLAN.json --listen 127.0.0.1:6653 --status STATUS.json \
        [--log-file F] [--probe-interval 1.0] [--check]

The plan is validated before anything listens (exit status 2 with a message naming the
field); so is a missing status/log directory or a busy listen port. ``--check`` only
validates the plan. SIGTERM or SIGINT stop the process cleanly:
the status file gets a last write and the log is flushed.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import sys
import threading

from .plan import PlanError, load_plan

EXIT_BAD_PLAN = 2


def parse_listen(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"--listen must be HOST:PORT, got {text!r}")
    return host.strip("[]"), int(port)


def positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not v > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text!r}")
    return v


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m controller", description=__doc__.split("\n")[0])
    p.add_argument("--plan", required=True, help="plan JSON written by the topology builder")
    p.add_argument("--listen", type=parse_listen, default=("127.0.0.1", 6653),
                   help="OpenFlow listen address HOST:PORT (default 127.0.0.1:6653)")
    p.add_argument("--status", help="status JSON file, rewritten atomically on changes")
    p.add_argument("--log-file", help="log here instead of stderr")
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    p.add_argument("--probe-interval", type=positive_float, default=1.0,
                   help="seconds between discovery probes; links expire after 3 intervals")
    p.add_argument("--policy", default="nearest",
                   help="path selector: nearest, least-loaded, greenest, weighted, random, "
                        "round-robin, or module:Class / path/file.py:Class (default nearest)")
    p.add_argument("--policy-param", action="append", default=[], metavar="KEY=VALUE",
                   help="keyword argument for the policy (VALUE parsed as JSON, else string)")
    p.add_argument("--api", type=parse_listen, metavar="HOST:PORT",
                   help="serve the state API on this loopback address (e.g. 127.0.0.1:8080)")
    p.add_argument("--adv-key-file", help="shared HMAC key for gateway advertisements")
    p.add_argument("--require-auth", action="store_true",
                   help="reject advertisements without a valid HMAC (needs --adv-key-file)")
    p.add_argument("--allow-unregistered-gateways", action="store_true",
                   help="accept gateways the plan does not list (bound to their first port)")
    p.add_argument("--flow-idle-timeout", type=int, default=10, metavar="S",
                   help="seconds a steered flow may idle before its placement ends (default 10)")
    p.add_argument("--delay-source", choices=["model", "measured"], default="model",
                   help="link delays for routing and placement: the plan's (model) or the "
                        "controller's measurement (falls back to the model per link)")
    p.add_argument("--newflow-rate", type=int, default=600, metavar="PPS",
                   help="packet-ins per second per switch for new flows (meter; default 600, "
                        "below what the controller sustains on a small machine)")
    p.add_argument("--check", action="store_true", help="validate the plan and exit")
    return p


def parse_params(items: list[str]) -> dict:
    import json
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.isidentifier():
            raise ValueError(f"--policy-param {item!r}: expected KEY=VALUE with a Python "
                             "identifier as KEY")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def setup_logging(log_file: str | None, level: str) -> None:
    handler = logging.FileHandler(log_file) if log_file else logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(
        "%(asctime)s.%(msecs)03d %(levelname)s %(name)s: %(message)s", "%Y-%m-%d %H:%M:%S"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def preflight(args: argparse.Namespace) -> str | None:
    """Problems os-ken would only report from a background thread, checked up front."""
    for opt, path in (("--status", args.status), ("--log-file", args.log_file)):
        if path and not os.path.isdir(os.path.dirname(os.path.abspath(path))):
            return f"{opt} {path}: directory does not exist"
    if args.check:
        return None
    for opt, addr in (("--listen", args.listen), ("--api", args.api)):
        if addr is None:
            continue
        host, port = addr
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        try:
            with socket.socket(family, socket.SOCK_STREAM) as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind((host, port))
        except OSError as e:
            return f"{opt} {host}:{port}: cannot listen: {e.strerror}"
    return None


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        plan = load_plan(args.plan)
    except PlanError as e:
        print(f"controller: invalid plan: {e}", file=sys.stderr)
        return EXIT_BAD_PLAN
    problem = preflight(args)
    if problem:
        print(f"controller: {problem}", file=sys.stderr)
        return EXIT_BAD_PLAN
    from .policy import PolicyError, load_policy
    try:
        params = parse_params(args.policy_param)
        load_policy(args.policy, **params)  # fail before listening, with the reason
    except (ValueError, PolicyError) as e:
        print(f"controller: {e}", file=sys.stderr)
        return EXIT_BAD_PLAN
    adv_key = None
    if args.adv_key_file:
        try:
            with open(args.adv_key_file, "rb") as f:
                adv_key = f.read().rstrip(b"\r\n")
        except OSError as e:
            print(f"controller: --adv-key-file {args.adv_key_file}: {e.strerror}",
                  file=sys.stderr)
            return EXIT_BAD_PLAN
        if not adv_key:
            print(f"controller: --adv-key-file {args.adv_key_file} is empty", file=sys.stderr)
            return EXIT_BAD_PLAN
    if args.require_auth and adv_key is None:
        print("controller: --require-auth needs --adv-key-file", file=sys.stderr)
        return EXIT_BAD_PLAN
    if args.api and args.api[0] not in ("127.0.0.1", "localhost", "::1"):
        print(f"controller: --api {args.api[0]}: the state API listens on loopback only",
              file=sys.stderr)
        return EXIT_BAD_PLAN
    if args.check:
        print(f"plan OK: {len(plan.switches)} switches, {len(plan.hosts)} hosts, "
              f"{len(plan.links)} links (run {plan.run_id})")
        return 0

    # os-ken hands each event across threads (receive, app, send); with the default 5 ms
    # GIL switch interval a busy thread can hold a new flow's first packet for milliseconds.
    sys.setswitchinterval(0.0005)
    setup_logging(args.log_file, args.log_level)
    log = logging.getLogger("edwc.controller")

    # os-ken reads its listen address from its global oslo.config object.
    from os_ken import cfg
    from os_ken.base.app_manager import AppManager
    from os_ken.controller import controller as _ofp_controller  # noqa: F401 (registers opts)

    from . import app as edwc_app

    host, port = args.listen
    cfg.CONF(args=["--ofp-listen-host", host, "--ofp-tcp-listen-port", str(port)],
             project="os_ken", default_config_files=[])
    edwc_app.RUNTIME.plan = plan
    edwc_app.RUNTIME.status_path = args.status
    edwc_app.RUNTIME.probe_interval = args.probe_interval
    edwc_app.RUNTIME.policy = args.policy
    edwc_app.RUNTIME.policy_params = params
    edwc_app.RUNTIME.api = args.api
    edwc_app.RUNTIME.adv_key = adv_key
    edwc_app.RUNTIME.require_auth = args.require_auth
    edwc_app.RUNTIME.allow_unregistered = args.allow_unregistered_gateways
    edwc_app.RUNTIME.idle_timeout = args.flow_idle_timeout
    edwc_app.RUNTIME.delay_source = args.delay_source
    from . import ofmsg
    edwc_app.RUNTIME.meter_rates = {**ofmsg.DEFAULT_METER_RATES,
                                    ofmsg.METER_NEWFLOW: args.newflow_rate}

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())

    manager = AppManager.get_instance()
    manager.load_apps([edwc_app.__name__])
    contexts = manager.create_contexts()
    manager.instantiate_apps(**contexts)
    log.info("controller pid=%d listening on %s:%d, plan run %s (%d switches, %d links), "
             "probe interval %.2f s", os.getpid(), host, port, plan.run_id,
             len(plan.switches), len(plan.links), args.probe_interval)
    while not stop.wait(0.5):
        pass
    log.info("stopping on signal")
    code = 0
    try:
        for a in list(manager.applications.values()):
            if isinstance(a, edwc_app.EdwcController):
                a.stop()
                a.write_final_status()
    except Exception:
        log.exception("error while stopping")
        code = 1
    logging.shutdown()
    # os-ken's native-thread hub cannot kill its socket threads; leave without waiting.
    os._exit(code)


if __name__ == "__main__":
    sys.exit(main())
