"""The CATS service-metric advertisement, wire format v1 (docs/advertisement.md).

A gateway agent (the C-SMA) sends one UDP datagram per advertisement to ADV_ADDR:ADV_PORT;
the switch punts it to the controller. Layout:

    header  8 bytes, network order: magic b"CATS" | version u8 | flags u8 | body_len u16
    body    UTF-8 JSON object, at most MAX_BODY bytes
    trailer HMAC-SHA256(key, header + body), 32 bytes, present iff flags bit 0

encode_advert and decode_advert are pure. Both run the same field validation, so the
encoder cannot produce a message the decoder rejects; every problem raises AdvertError
whose message starts with the field it concerns.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import re
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from common import checks, strictjson
from topology.addressing import ADV_ADDR, ADV_PORT, SERVICE_PORT  # noqa: F401  (re-exported)

MAGIC = b"CATS"
VERSION = 1
MAX_BODY = 1024
FLAG_HMAC = 0x01
HMAC_LEN = 32
HEADER = struct.Struct("!4sBBH")
MAX_DATAGRAM = HEADER.size + MAX_BODY + HMAC_LEN

NAME_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")  # gateway ids and service names
KIND_RE = re.compile(r"[a-z0-9_]{1,16}")  # accelerator kinds (cuda, cann, ...)
MAX_KINDS = 8
MAX_UNITS = 1_000_000
MAX_QUEUE = 1_000_000
MAX_SERVICES = 32
MAX_OPERATOR = 32
MAX_SEQ = 2**63 - 1

REQUIRED = ("gw", "epoch", "seq", "ts", "interval", "units", "util", "queue", "delay_ms",
            "price", "green", "services")
OPTIONAL = ("pue", "operator", "jobs")


class AdvertError(ValueError):
    """An advertisement that is malformed, out of range or not authentic."""


@dataclass(frozen=True)
class Advert:
    gw: str
    epoch: int
    seq: int
    ts: float
    interval: float
    units: dict[str, tuple[int, int]]  # kind -> (total, free)
    util: float
    queue: int
    delay_ms: float
    price: float
    green: float
    services: tuple[str, ...]
    pue: float | None = None
    operator: str | None = None
    jobs: int | None = None  # jobs started since this epoch began (lets the controller
    #                          tell which of its placements an advert already counts)
    authenticated: bool = False  # set by decode when a valid HMAC was checked


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _int(obj: Mapping, name: str, lo: int, hi: int) -> int:
    v = obj[name]
    if isinstance(v, bool) or not isinstance(v, int):
        raise AdvertError(f"{name}: must be an integer in {lo}..{hi}, got {_show(v)}")
    if not lo <= v <= hi:
        raise AdvertError(f"{name}: {v} is outside {lo}..{hi}")
    return int(v)


def _num(obj: Mapping, name: str, lo: float, hi: float, lo_open: bool = False) -> float:
    v = obj[name]
    if isinstance(v, int) and not isinstance(v, bool) and abs(v) > 2**1023:
        v = _show(v)  # too long to print whole; checks.number names it a non-number
    return checks.number(v, name, lo, hi, lo_open=lo_open, error=AdvertError)


def _name(v: Any, field: str) -> str:
    if not isinstance(v, str) or NAME_RE.fullmatch(v) is None:
        raise AdvertError(f"{field}: {_show(v)} is not a valid name "
                          "(lower-case letters, digits, '_' or '-', 1..32 chars, "
                          "starting with a letter or digit)")
    return v


def _units(v: Any) -> dict[str, tuple[int, int]]:
    if not isinstance(v, Mapping):
        raise AdvertError(f"units: must be an object kind -> [total, free], got {_show(v)}")
    if not 1 <= len(v) <= MAX_KINDS:
        raise AdvertError(f"units: {len(v)} kinds, must be 1..{MAX_KINDS}")
    out: dict[str, tuple[int, int]] = {}
    for kind, pair in v.items():
        if not isinstance(kind, str) or KIND_RE.fullmatch(kind) is None:
            raise AdvertError(f"units: kind {_show(kind)} is not valid "
                              "(1..16 of lower-case letters, digits, '_')")
        where = f"units.{kind}"
        if not isinstance(pair, list) or len(pair) != 2:
            raise AdvertError(f"{where}: must be [total, free], got {_show(pair)}")
        total = _int({where: pair[0]}, where, 0, MAX_UNITS)
        free = _int({where: pair[1]}, where, 0, MAX_UNITS)
        if free > total:
            raise AdvertError(f"{where}: free {free} exceeds total {total}")
        out[kind] = (total, free)
    return out


def _services(v: Any) -> tuple[str, ...]:
    if not isinstance(v, list):
        raise AdvertError(f"services: must be a list of service names, got {_show(v)}")
    if len(v) > MAX_SERVICES:
        raise AdvertError(f"services: {len(v)} entries, at most {MAX_SERVICES}")
    names = tuple(_name(s, "services") for s in v)
    if len(set(names)) != len(names):
        raise AdvertError("services: duplicate service name")
    return names


def _operator(v: Any) -> str:
    if not isinstance(v, str) or not v.isprintable() or len(v) > MAX_OPERATOR:
        raise AdvertError(f"operator: must be printable text of at most {MAX_OPERATOR} "
                          f"characters, got {_show(v)}")
    return v


def validate_fields(obj: Any) -> dict[str, Any]:
    """Check a decoded body; return the normalized Advert keyword arguments."""
    if not isinstance(obj, Mapping):
        raise AdvertError(f"body: must be a JSON object, got {type(obj).__name__}")
    unknown = sorted(str(k) for k in obj if k not in REQUIRED and k not in OPTIONAL)
    if unknown:
        raise AdvertError("body: unknown field(s) " + ", ".join(_show(k) for k in unknown[:5])
                          + f" (version {VERSION} defines {', '.join(REQUIRED + OPTIONAL)})")
    for name in REQUIRED:
        if name not in obj:
            raise AdvertError(f"{name}: missing (required field)")
    out: dict[str, Any] = {
        "gw": _name(obj["gw"], "gw"),
        "epoch": _int(obj, "epoch", 1, MAX_SEQ),
        "seq": _int(obj, "seq", 0, MAX_SEQ),
        "ts": _num(obj, "ts", 0.0, math.inf, lo_open=True),
        "interval": _num(obj, "interval", 0.05, 60.0),
        "units": _units(obj["units"]),
        "util": _num(obj, "util", 0.0, 1.0),
        "queue": _int(obj, "queue", 0, MAX_QUEUE),
        "delay_ms": _num(obj, "delay_ms", 0.0, 600_000.0),
        "price": _num(obj, "price", 0.0, 100.0),
        "green": _num(obj, "green", 0.0, 1.0),
        "services": _services(obj["services"]),
    }
    if "pue" in obj:
        if obj["pue"] is None:
            raise AdvertError("pue: null is not allowed (omit the field instead)")
        out["pue"] = _num(obj, "pue", 1.0, 5.0)
    if "operator" in obj:
        out["operator"] = _operator(obj["operator"])
    if "jobs" in obj:
        out["jobs"] = _int(obj, "jobs", 0, MAX_SEQ)
    return out


def _body_object(adv: Advert) -> dict[str, Any]:
    units = adv.units
    if isinstance(units, Mapping):
        units = {k: list(p) if isinstance(p, tuple) else p for k, p in units.items()}
    services = list(adv.services) if isinstance(adv.services, tuple) else adv.services
    obj: dict[str, Any] = {
        "gw": adv.gw, "epoch": adv.epoch, "seq": adv.seq, "ts": adv.ts,
        "interval": adv.interval, "units": units, "util": adv.util, "queue": adv.queue,
        "delay_ms": adv.delay_ms, "price": adv.price, "green": adv.green,
        "services": services,
    }
    if adv.pue is not None:
        obj["pue"] = adv.pue
    if adv.operator is not None:
        obj["operator"] = adv.operator
    if adv.jobs is not None:
        obj["jobs"] = adv.jobs
    return obj


def _check_key(key: Any) -> None:
    if key is not None and (not isinstance(key, (bytes, bytearray)) or len(key) == 0):
        raise AdvertError("key: must be non-empty bytes or None")


def _mac(key: bytes, data: bytes) -> bytes:
    return hmac.new(bytes(key), data, hashlib.sha256).digest()


def encode_advert(adv: Advert, key: bytes | None = None) -> bytes:
    """The UDP payload for adv, with an HMAC trailer when key is given.

    Raises AdvertError (naming the field) for anything decode_advert would reject,
    including a body longer than MAX_BODY bytes."""
    if not isinstance(adv, Advert):
        raise AdvertError(f"advert: must be an Advert, got {type(adv).__name__}")
    _check_key(key)
    fields = validate_fields(_body_object(adv))
    # Dump the normalized values (ints stay ints, other numbers become floats).
    norm = Advert(**fields)
    body = json.dumps(_body_object(norm), separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")
    if len(body) > MAX_BODY:
        raise AdvertError(f"body: {len(body)} bytes exceeds MAX_BODY {MAX_BODY} "
                          "(advertise fewer services or kinds, or shorter names)")
    flags = FLAG_HMAC if key is not None else 0
    msg = HEADER.pack(MAGIC, VERSION, flags, len(body)) + body
    return msg + _mac(key, msg) if key is not None else msg


def parse_body(body: bytes) -> Any:
    """Strict JSON: UTF-8, no NaN/Infinity, no duplicate keys (common.strictjson)."""
    return strictjson.loads(body, AdvertError, where="body")


def decode_advert(payload: bytes, key: bytes | None = None,
                  require_auth: bool = False) -> Advert:
    """Validate and decode one UDP payload.

    With key, a present HMAC is verified (a wrong one is an error); with require_auth,
    a message without a valid HMAC is an error. Only AdvertError is raised."""
    _check_key(key)
    if require_auth and key is None:
        raise AdvertError("key: require_auth needs a key")
    if not isinstance(payload, (bytes, bytearray, memoryview)):
        raise AdvertError(f"payload: must be bytes, got {type(payload).__name__}")
    data = bytes(payload)
    if len(data) < HEADER.size:
        raise AdvertError(f"header: truncated ({len(data)} bytes, need {HEADER.size})")
    magic, version, flags, body_len = HEADER.unpack_from(data)
    if magic != MAGIC:
        raise AdvertError(f"magic: {magic!r} is not {MAGIC!r} (not a CATS advertisement)")
    if version != VERSION:
        raise AdvertError(f"version: {version} is not supported (this receiver speaks "
                          f"version {VERSION})")
    if flags & ~FLAG_HMAC:
        raise AdvertError(f"flags: unknown bits 0x{flags & ~FLAG_HMAC:02x} set "
                          f"(version {VERSION} defines only bit 0, HMAC present)")
    if body_len == 0:
        raise AdvertError("body_len: 0, the body must be a JSON object")
    if body_len > MAX_BODY:
        raise AdvertError(f"body_len: {body_len} exceeds MAX_BODY {MAX_BODY}")
    has_mac = bool(flags & FLAG_HMAC)
    expected = HEADER.size + body_len + (HMAC_LEN if has_mac else 0)
    if len(data) != expected:
        what = "truncated" if len(data) < expected else "trailing bytes"
        raise AdvertError(f"body_len: {what}: header says {body_len} body bytes"
                          f"{' + HMAC' if has_mac else ''} = {expected} bytes, "
                          f"payload has {len(data)}")
    signed = data[:HEADER.size + body_len]
    authenticated = False
    if has_mac and key is not None:
        if not hmac.compare_digest(_mac(key, signed), data[len(signed):]):
            raise AdvertError("hmac: does not match (wrong key or altered message)")
        authenticated = True
    elif require_auth:
        raise AdvertError("hmac: missing, and this receiver requires authentication")
    fields = validate_fields(parse_body(data[HEADER.size:len(signed)]))
    return Advert(**fields, authenticated=authenticated)
