"""The gateway agent's configuration, with its command-line flags declared once.

:class:`GatewayConfig` is what ``python -m gateway`` runs with and what the emulation
starts each agent with: the emulation builds one per gateway of the plan and passes
``common.flags.to_argv(config)``; the agent parses that argv back with the same
declarations (``parse_argv``), so both sides agree on every name, type and default.
"""

from __future__ import annotations

import argparse
import dataclasses
import ipaddress
from dataclasses import dataclass, field

from common import checks, flags
from common.flags import flag
from common.keyfile import read_key
from topology.addressing import ADV_ADDR, ADV_PORT, SERVICE_PORT

from .protocol import (
    KIND_RE,
    MAX_KINDS,
    MAX_OPERATOR,
    MAX_QUEUE,
    MAX_SERVICES,
    MAX_UNITS,
    NAME_RE,
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


def _render_units(units: dict[str, int]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(units.items()))


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
    return checks.argtype(lo, hi)


def _int_range(lo: int, hi: int):
    return checks.argtype(lo, hi, integer=True)


def _ipv4(text: str) -> str:
    try:
        return str(ipaddress.IPv4Address(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an IPv4 address") from None


def _operator(text: str) -> str:
    if not text.isprintable() or len(text) > MAX_OPERATOR:
        raise argparse.ArgumentTypeError(f"at most {MAX_OPERATOR} printable characters")
    return text


@dataclass(frozen=True)
class GatewayConfig:
    """One gateway agent (C-SMA). ``key`` is read from ``key_file`` by :func:`parse_argv`;
    it never appears on a command line."""

    gw: str = field(default="", metadata=flag(
        "--id", _name, required=True, help="gateway id (the cluster's site id)"))
    units: dict[str, int] = field(default_factory=dict, metadata=flag(
        "--units", _units, render=_render_units, required=True,
        help="accelerator units, e.g. cuda=128,cann=64"))
    price: float = field(default=0.0, metadata=flag(
        "--price", _ranged(0, 100), render=repr, required=True,
        help="energy price, CNY/kWh (0..100)"))
    green: float = field(default=0.0, metadata=flag(
        "--green", _ranged(0, 1), render=repr, required=True, help="renewable share (0..1)"))
    services: tuple[str, ...] = field(default=(), metadata=flag(
        "--services", _services, render=",".join, required=True,
        help="served services, comma-separated"))
    pue: float | None = field(default=None, metadata=flag(
        "--pue", _ranged(1, 5), render=repr, help="power usage effectiveness (1..5)"))
    operator: str | None = field(default=None, metadata=flag(
        "--operator", _operator, help="operator name, e.g. 'China Telecom'"))
    interval: float = field(default=1.0, metadata=flag(
        "--interval", _ranged(0.05, 60), render=repr, help="advert period, s (1.0)"))
    bind: str = field(default="0.0.0.0", metadata=flag(
        "--bind", _ipv4, help="job service address (0.0.0.0)"))
    service_port: int = field(default=SERVICE_PORT, metadata=flag(
        "--service-port", _int_range(0, 65535),
        help=f"job service TCP port ({SERVICE_PORT}; 0 = any, see the state file)"))
    adv_addr: str = field(default=ADV_ADDR, metadata=flag(
        "--adv-addr", _ipv4, help=f"advert destination ({ADV_ADDR})"))
    adv_port: int = field(default=ADV_PORT, metadata=flag(
        "--adv-port", _int_range(1, 65535), help=f"({ADV_PORT})"))
    key_file: str | None = field(default=None, metadata=flag(
        "--key-file", str, help="HMAC key file (raw bytes; trailing newline stripped)"))
    state_file: str | None = field(default=None, metadata=flag(
        "--state-file", str, help="write the agent's state and counters here (JSON, atomic)"))
    log_file: str | None = field(default=None, metadata=flag(
        "--log-file", str, help="log here instead of stderr"))
    max_queue: int = field(default=64, metadata=flag(
        "--max-queue", _int_range(0, MAX_QUEUE), help="FIFO queue length (64)"))
    request_timeout_s: float = field(default=5.0, metadata=flag(
        "--request-timeout", _ranged(0.05, 600), render=repr,
        help="seconds a client has to send its request line (5)"))
    min_gap_s: float = field(default=0.05, metadata=flag(
        "--min-gap", _ranged(0.0, 60), render=repr,
        help="minimum seconds between triggered adverts (0.05)"))
    max_connections: int = 1000
    key: bytes | None = field(default=None, repr=False, compare=False)


def parser() -> argparse.ArgumentParser:
    from . import __main__ as program
    p = argparse.ArgumentParser(prog="python -m gateway",
                                description=(program.__doc__ or "").split("\n")[0])
    flags.add_arguments(p, GatewayConfig)
    return p


def parse_argv(argv: list[str] | None = None) -> GatewayConfig:
    """Parse and validate (the key file read, the advertisement it makes checked); exits
    with status 2 and a message naming the option on bad input."""
    p = parser()
    cfg = flags.from_args(GatewayConfig, p.parse_args(argv))
    try:
        key = read_key(cfg.key_file, "--key-file") if cfg.key_file else None
    except ValueError as e:
        p.error(str(e))
    cfg = dataclasses.replace(cfg, key=key)
    try:  # the advert this configuration produces must be valid (e.g. fit MAX_BODY)
        encode_advert(Advert(gw=cfg.gw, epoch=1, seq=0, ts=1.0, interval=cfg.interval,
                             units={k: (n, n) for k, n in cfg.units.items()}, util=0.0,
                             queue=0, delay_ms=0.0, price=cfg.price, green=cfg.green,
                             services=cfg.services, pue=cfg.pue, operator=cfg.operator), key)
    except AdvertError as e:
        p.error(f"the advertisement would be invalid: {e}")
    return cfg
