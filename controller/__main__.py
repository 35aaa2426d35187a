"""Run the EDWC controller as its own process.

    python -m controller --plan PLAN.json --listen 127.0.0.1:6653 --status STATUS.json \
        [--log-file F] [--probe-interval 1.0] [--check]

Every flag is declared once, in controller.config.ControllerConfig (``--help`` lists
them). The plan is validated before anything listens (exit status 2 with a message naming
the field); so are the policy, the key file, a missing status/log directory and a busy
listen port. ``--check`` only validates, and prints the configuration as JSON. SIGTERM or
SIGINT stop the process cleanly: the status file gets a last write and the log is
flushed.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import sys
import threading

from common.keyfile import read_key

from .config import ControllerConfig, parse_argv
from .plan import PlanError, load_plan

EXIT_BAD_PLAN = 2


def setup_logging(log_file: str | None, level: str) -> None:
    handler = logging.FileHandler(log_file) if log_file else logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(
        "%(asctime)s.%(msecs)03d %(levelname)s %(name)s: %(message)s", "%Y-%m-%d %H:%M:%S"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def preflight(cfg: ControllerConfig, check_only: bool) -> str | None:
    """Problems os-ken would only report from a background thread, checked up front."""
    for opt, path in (("--status", cfg.status), ("--log-file", cfg.log_file)):
        if path and not os.path.isdir(os.path.dirname(os.path.abspath(path))):
            return f"{opt} {path}: directory does not exist"
    problem = cfg.problem()
    if problem or check_only:
        return problem
    for opt, addr in (("--listen", cfg.listen), ("--api", cfg.api)):
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
    cfg, args = parse_argv(argv, description=(__doc__ or "").split("\n")[0])
    try:
        plan = load_plan(cfg.plan)
    except PlanError as e:
        print(f"controller: invalid plan: {e}", file=sys.stderr)
        return EXIT_BAD_PLAN
    problem = preflight(cfg, args.check)
    if problem:
        print(f"controller: {problem}", file=sys.stderr)
        return EXIT_BAD_PLAN
    from .policy import PolicyError, make_policy
    try:
        policy = make_policy(cfg.policy, cfg.policy_params)  # fails before listening
        adv_key = read_key(cfg.adv_key_file, "--adv-key-file") if cfg.adv_key_file else None
    except (ValueError, PolicyError) as e:
        print(f"controller: {e}", file=sys.stderr)
        return EXIT_BAD_PLAN
    if args.check:
        print(f"plan OK: {len(plan.switches)} switches, {len(plan.hosts)} hosts, "
              f"{len(plan.links)} links (run {plan.run_id})")
        print(json.dumps({"config": cfg.to_dict()}, sort_keys=True))
        return 0

    # os-ken hands each event across threads (receive, app, send); with the default 5 ms
    # GIL switch interval a busy thread can hold a new flow's first packet for milliseconds.
    sys.setswitchinterval(0.0005)
    setup_logging(cfg.log_file, cfg.log_level)
    log = logging.getLogger("edwc.controller")

    # os-ken reads its listen address from its global oslo.config object.
    from os_ken import cfg as oslo_cfg
    from os_ken.base.app_manager import AppManager
    from os_ken.controller import controller as _ofp_controller  # noqa: F401 (registers opts)

    from . import app as edwc_app

    host, port = cfg.listen
    oslo_cfg.CONF(args=["--ofp-listen-host", host, "--ofp-tcp-listen-port", str(port)],
                  project="os_ken", default_config_files=[])
    runtime = edwc_app.Runtime(config=cfg, plan=plan, policy=policy, adv_key=adv_key)

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())

    manager = AppManager.get_instance()
    manager.load_apps([edwc_app.__name__])
    contexts = manager.create_contexts()
    # The configuration reaches the app as a keyword of its constructor (os-ken passes
    # instantiate_apps' keywords to every app; its own apps ignore unknown ones).
    manager.instantiate_apps(**contexts, edwc_runtime=runtime)
    log.info("controller pid=%d listening on %s:%d, plan run %s (%d switches, %d links), "
             "policy %s, probe interval %.2f s", os.getpid(), host, port, plan.run_id,
             len(plan.switches), len(plan.links), cfg.policy, cfg.probe_interval)
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
