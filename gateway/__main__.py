"""Command line of the gateway agent (C-SMA), run inside a data-center host's namespace:

    python -m gateway --id zhongwei --units cuda=128,cann=64 --price 0.32 --green 0.6 \\
        --services infer-rt,train-batch [--pue 1.15] [--operator "China Telecom"]

Bad input exits with status 2 and a message naming the option; SIGTERM or SIGINT stop it
cleanly (exit 0) within a fraction of a second.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import signal
import sys

from .agent import Agent, AgentConfig
from .protocol import (
    ADV_ADDR,
    ADV_PORT,
    KIND_RE,
    MAX_KINDS,
    MAX_OPERATOR,
    MAX_QUEUE,
    MAX_SERVICES,
    MAX_UNITS,
    NAME_RE,
    SERVICE_PORT,
    Advert,
    AdvertError,
    encode_advert,
)


def _name(text: str) -> str:
    if NAME_RE.fullmatch(text) is None:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a valid id (1..32 of a-z 0-9 _ -, starting with a-z or 0-9)")
    return text


def _units(text: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for part in text.split(","):
        kind, sep, count = part.strip().partition("=")
        if not sep or KIND_RE.fullmatch(kind) is None:
            raise argparse.ArgumentTypeError(
                f"{part!r} is not KIND=COUNT (e.g. cuda=128,cann=64; kinds are 1..16 of "
                "a-z 0-9 _)")
        if kind in out:
            raise argparse.ArgumentTypeError(f"kind {kind!r} given twice")
        try:
            n = int(count)
        except ValueError:
            n = -1
        if not 0 <= n <= MAX_UNITS:
            raise argparse.ArgumentTypeError(f"{kind}={count}: count must be an integer "
                                             f"0..{MAX_UNITS}")
        out[kind] = n
    if len(out) > MAX_KINDS:
        raise argparse.ArgumentTypeError(f"{len(out)} kinds, at most {MAX_KINDS}")
    if sum(out.values()) == 0:
        raise argparse.ArgumentTypeError("no units at all: give at least one kind a count > 0")
    return out


def _services(text: str) -> tuple[str, ...]:
    names = tuple(s.strip() for s in text.split(",") if s.strip())
    if not names:
        raise argparse.ArgumentTypeError("give at least one service, e.g. infer-rt")
    if len(names) > MAX_SERVICES or len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(f"1..{MAX_SERVICES} distinct services")
    for n in names:
        _name(n)
    return names


def _ranged(lo: float, hi: float):
    def parse(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            v = float("nan")
        if not lo <= v <= hi:  # also rejects NaN
            raise argparse.ArgumentTypeError(f"{text!r} is not a number in {lo:g}..{hi:g}")
        return v
    return parse


def _int_range(lo: int, hi: int):
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            v = lo - 1
        if not lo <= v <= hi:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer in {lo}..{hi}")
        return v
    return parse


def _ipv4(text: str) -> str:
    try:
        return str(ipaddress.IPv4Address(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an IPv4 address") from None


def _operator(text: str) -> str:
    if not text.isprintable() or len(text) > MAX_OPERATOR:
        raise argparse.ArgumentTypeError(f"at most {MAX_OPERATOR} printable characters")
    return text


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m gateway", description=__doc__.split("\n")[0])
    a = p.add_argument
    a("--id", required=True, type=_name, help="gateway id (the cluster's site id)")
    a("--units", required=True, type=_units, help="accelerator units, e.g. cuda=128,cann=64")
    a("--price", required=True, type=_ranged(0, 100), help="energy price, CNY/kWh (0..100)")
    a("--green", required=True, type=_ranged(0, 1), help="renewable share (0..1)")
    a("--services", required=True, type=_services, help="served services, comma-separated")
    a("--pue", type=_ranged(1, 5), help="power usage effectiveness (1..5)")
    a("--operator", type=_operator, help="operator name, e.g. 'China Telecom'")
    a("--interval", type=_ranged(0.05, 60), default=1.0, help="advert period, s (1.0)")
    a("--bind", type=_ipv4, default="0.0.0.0", help="job service address (0.0.0.0)")
    a("--service-port", type=_int_range(0, 65535), default=SERVICE_PORT,
      help=f"job service TCP port ({SERVICE_PORT}; 0 = any, see the state file)")
    a("--adv-addr", type=_ipv4, default=ADV_ADDR, help=f"advert destination ({ADV_ADDR})")
    a("--adv-port", type=_int_range(1, 65535), default=ADV_PORT, help=f"({ADV_PORT})")
    a("--key-file", help="HMAC key file (raw bytes; trailing newline stripped)")
    a("--state-file", help="write the agent's state and counters here (JSON, atomic)")
    a("--log-file", help="log here instead of stderr")
    a("--max-queue", type=_int_range(0, MAX_QUEUE), default=64, help="FIFO queue length (64)")
    a("--request-timeout", type=_ranged(0.05, 600), default=5.0,
      help="seconds a client has to send its request line (5)")
    a("--min-gap", type=_ranged(0.0, 60), default=0.05,
      help="minimum seconds between triggered adverts (0.05)")
    return p


def read_key(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            key = f.read().rstrip(b"\r\n")
    except OSError as e:
        raise ValueError(f"--key-file {path}: cannot read ({e.strerror})") from None
    if not key:
        raise ValueError(f"--key-file {path}: the key is empty; put a shared secret in it")
    return key


def config_from_args(argv: list[str] | None = None) -> tuple[AgentConfig, str | None]:
    """Parse and validate; exits with status 2 on bad input."""
    p = parser()
    args = p.parse_args(argv)
    try:
        key = read_key(args.key_file) if args.key_file else None
    except ValueError as e:
        p.error(str(e))
    cfg = AgentConfig(gw=args.id, units=args.units, price=args.price, green=args.green,
                      services=args.services, pue=args.pue, operator=args.operator,
                      interval=args.interval, bind=args.bind, service_port=args.service_port,
                      adv_addr=args.adv_addr, adv_port=args.adv_port, key=key,
                      state_file=args.state_file, max_queue=args.max_queue,
                      min_gap_s=args.min_gap, request_timeout_s=args.request_timeout)
    try:  # the advert this configuration produces must be valid (e.g. fit MAX_BODY)
        encode_advert(Advert(gw=cfg.gw, epoch=1, seq=0, ts=1.0, interval=cfg.interval,
                             units={k: (n, n) for k, n in cfg.units.items()}, util=0.0,
                             queue=0, delay_ms=0.0, price=cfg.price, green=cfg.green,
                             services=cfg.services, pue=cfg.pue, operator=cfg.operator), key)
    except AdvertError as e:
        p.error(f"the advertisement would be invalid: {e}")
    return cfg, args.log_file


def main(argv: list[str] | None = None) -> int:
    cfg, log_file = config_from_args(argv)
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
