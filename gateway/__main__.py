"""Command line of the gateway agent (C-SMA), run inside a data-center host's namespace:

    python -m gateway --id zhongwei --units cuda=128,cann=64 --price 0.32 --green 0.6 \\
        --services infer-rt,train-batch [--pue 1.15] [--operator "China Telecom"]

Bad input exits with status 2 and a message naming the option; SIGTERM or SIGINT stop it
cleanly (exit 0) within a fraction of a second.
"""

from __future__ import annotations

import logging
import signal
import sys

from .agent import Agent
from .config import parse_argv


def main(argv: list[str] | None = None) -> int:
    cfg = parse_argv(argv)
    log_file = cfg.log_file
    try:
        handler: logging.Handler = (logging.FileHandler(log_file) if log_file
                                    else logging.StreamHandler(sys.stderr))
    except OSError as e:
        print(f"python -m gateway: error: --log-file {log_file}: {e.strerror}", file=sys.stderr)
        return 2
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[handler])
    agent = Agent(cfg)
    try:
        agent.start()
    except OSError as e:
        print(f"gateway: cannot open sockets on {cfg.bind}:{cfg.service_port}: {e.strerror} "
              "(is another agent running? choose --service-port or --bind)", file=sys.stderr)
        return 1
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: agent.stop())
    agent.serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
