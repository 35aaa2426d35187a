"""Compute services (CATS): each is named by an anycast address (CS-ID) and states what a flow
needs: a response-latency budget, compute units and the accelerator kinds that can serve it.

Services are data. A topology file may carry its own ``services:`` list; otherwise the
built-in ``topology/data/services.yaml`` applies. Every error names the file, the item and
the fix (``TopologyError``).

``budget_ms`` is a RESPONSE-latency budget: the round trip between client and gateway over
the chosen path plus the gateway's advertised processing delay must fit in it.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from common import checks
from topology.addressing import RESERVED, SERVICE_NET, SERVICE_PORT
from topology.model import TopologyError

SERVICES_FILE = Path(__file__).resolve().parent / "data" / "services.yaml"
SERVICE_FORMAT = "edwc-services/1"
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
KIND_RE = re.compile(r"^[a-z0-9_]{1,16}$")
MAX_SERVICES = 200


@dataclass(frozen=True)
class Service:
    name: str
    address: str  # CS-ID (anycast IPv4)
    port: int  # service port on every gateway (kept by the address rewrite)
    service_class: str  # "realtime", "interactive", "batch", ... (free text, for reports)
    budget_ms: float  # response-latency budget: path RTT + processing delay
    units: int  # compute units one flow (job) holds
    kinds: tuple[str, ...]  # accelerator kinds that can serve it
    description: str = ""


def _fail(msg: str, src: str, item: str | None = None) -> TopologyError:
    return TopologyError(msg, src, item)


def _number(v, what: str, lo: float, hi: float, src: str, item: str) -> float:
    return checks.number(v, what, lo, hi, error=lambda msg: _fail(msg, src, item))


def make_service(raw, src: str, index: int) -> Service:
    item = f"services[{index}]"
    if not isinstance(raw, dict):
        raise _fail("each service must be a mapping", src, item)
    name = raw.get("name")
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise _fail(f"name {name!r} is invalid; use [a-z0-9_-], at most 32 characters", src, item)
    item = f"service '{name}'"
    known = {"name", "address", "port", "class", "budget_ms", "units", "kinds", "description"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise _fail(f"unknown key(s) {unknown}; allowed: {sorted(known)}", src, item)
    for key in ("address", "budget_ms", "units", "kinds"):
        if key not in raw:
            raise _fail(f"missing '{key}'", src, item)
    try:
        addr = ipaddress.IPv4Address(str(raw["address"]))
    except ValueError:
        raise _fail(f"address {raw['address']!r} is not an IPv4 address", src, item) from None
    if addr not in SERVICE_NET or addr in RESERVED:
        raise _fail(f"address {addr} must be in {SERVICE_NET} (not .0, .254 or .255): the "
                    "controller answers ARP there for service addresses", src, item)
    port = raw.get("port", SERVICE_PORT)
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise _fail(f"port must be an integer 1-65535, got {port!r}", src, item)
    units = raw["units"]
    if isinstance(units, bool) or not isinstance(units, int) or not 1 <= units <= 1_000_000:
        raise _fail(f"units must be an integer >= 1, got {units!r}", src, item)
    kinds = raw["kinds"]
    if (not isinstance(kinds, list) or not kinds or len(kinds) > 8
            or not all(isinstance(k, str) and KIND_RE.match(k) for k in kinds)):
        raise _fail(f"kinds must be a list of 1-8 accelerator kinds like [cuda, cann], got "
                    f"{kinds!r}", src, item)
    cls = raw.get("class", "")
    if not isinstance(cls, str):
        raise _fail("'class' must be a string", src, item)
    return Service(name=name, address=str(addr), port=port, service_class=cls,
                   budget_ms=_number(raw["budget_ms"], "budget_ms", 0.001, 3_600_000, src, item),
                   units=units, kinds=tuple(dict.fromkeys(kinds)),
                   description=str(raw.get("description") or ""))


def make_services(raw_list, src: str) -> tuple[Service, ...]:
    if not isinstance(raw_list, list):
        raise _fail("'services' must be a list", src)
    if len(raw_list) > MAX_SERVICES:
        raise _fail(f"{len(raw_list)} services; at most {MAX_SERVICES}", src)
    out: list[Service] = []
    for i, raw in enumerate(raw_list):
        s = make_service(raw, src, i)
        for other in out:
            if other.name == s.name:
                raise _fail(f"duplicate service name '{s.name}'", src, f"services[{i}]")
            if other.address == s.address:
                raise _fail(f"address {s.address} is also used by '{other.name}'; each service "
                            "needs its own CS-ID", src, f"services[{i}]")
        out.append(s)
    return tuple(out)


def load_services(path: str | Path = SERVICES_FILE) -> tuple[Service, ...]:
    src = str(path)
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as e:
        raise _fail(f"cannot read services file: {e.strerror}", src) from None
    except yaml.YAMLError as e:
        raise _fail(f"not valid YAML: {e}", src) from None
    if not isinstance(raw, dict) or raw.get("format") != SERVICE_FORMAT:
        raise _fail(f"expected a mapping with 'format: {SERVICE_FORMAT}' and 'services'", src)
    unknown = sorted(set(raw) - {"format", "services", "description"})
    if unknown:
        raise _fail(f"unknown top-level key(s) {unknown}", src)
    return make_services(raw.get("services"), src)


def default_services() -> tuple[Service, ...]:
    return load_services(SERVICES_FILE)
