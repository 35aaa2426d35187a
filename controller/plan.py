"""The plan file: the one description of the emulated network the controller routes on.

The Mininet builder writes it (format ``edwc-plan/1``); the controller only reads it.
Everything is validated up front and every error names the offending field, e.g.
``links[3].delay_ms_ab: must be a number >= 0, got 'x'``.
"""

from __future__ import annotations

import ipaddress
import json
import math
from dataclasses import dataclass
from typing import Any

PLAN_FORMAT = "edwc-plan/1"
MAX_OF_PORT = 0xFFFFFF00  # OFPP_MAX: larger numbers are reserved ports


class PlanError(ValueError):
    """The plan file is missing, unreadable or invalid; the message names the field."""


@dataclass(frozen=True)
class Switch:
    name: str
    site: str
    dpid: int


@dataclass(frozen=True)
class Host:
    name: str
    site: str
    ip: str
    prefixlen: int
    mac: str
    dpid: int
    port: int


@dataclass(frozen=True)
class Link:
    id: str
    a: str
    b: str
    a_dpid: int
    a_port: int
    b_dpid: int
    b_port: int
    delay_ms_ab: float
    delay_ms_ba: float
    bandwidth_mbps: float | None


@dataclass(frozen=True)
class Plan:
    run_id: str
    topology: str
    switches: tuple[Switch, ...]
    hosts: tuple[Host, ...]
    links: tuple[Link, ...]

    def switch_by_dpid(self) -> dict[int, Switch]:
        return {s.dpid: s for s in self.switches}

    def host_by_ip(self) -> dict[str, Host]:
        return {h.ip: h for h in self.hosts}

    def directed_delays(self) -> dict[tuple[int, int, int, int], float]:
        """(from_dpid, from_port, to_dpid, to_port) -> one-way delay in ms, both directions."""
        out: dict[tuple[int, int, int, int], float] = {}
        for lk in self.links:
            out[(lk.a_dpid, lk.a_port, lk.b_dpid, lk.b_port)] = lk.delay_ms_ab
            out[(lk.b_dpid, lk.b_port, lk.a_dpid, lk.a_port)] = lk.delay_ms_ba
        return out

    def expected_directed_links(self) -> set[tuple[int, int, int, int]]:
        return set(self.directed_delays())


def _check(cond: bool, path: str, msg: str) -> None:
    if not cond:
        raise PlanError(f"{path}: {msg}")


def _keys(obj: Any, path: str, required: set[str]) -> None:
    """Required fields must be present; other fields are the builder's business and ignored
    (the plan also carries interface names, relay ends, jitter, loss, distances...)."""
    _check(isinstance(obj, dict), path, f"must be an object, got {type(obj).__name__}")
    missing = sorted(required - set(obj))
    _check(not missing, f"{path}.{missing[0]}" if missing else path, "missing required field")


def _str(obj: dict, key: str, path: str) -> str:
    v = obj[key]
    _check(isinstance(v, str) and v != "", f"{path}.{key}",
           f"must be a non-empty string, got {v!r}")
    return v


def _int(obj: dict, key: str, path: str, lo: int, hi: int) -> int:
    v = obj[key]
    ok = isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi
    _check(ok, f"{path}.{key}", f"must be an integer in [{lo}, {hi}], got {v!r}")
    return v


def _num(obj: dict, key: str, path: str) -> float:
    v = obj[key]
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v >= 0
    _check(ok, f"{path}.{key}", f"must be a number >= 0, got {v!r}")
    return float(v)


def _mac(obj: dict, key: str, path: str) -> str:
    v = _str(obj, key, path)
    parts = v.split(":")
    ok = len(parts) == 6 and all(len(p) == 2 and all(c in "0123456789abcdefABCDEF" for c in p)
                                 for p in parts)
    _check(ok, f"{path}.{key}", f"must be a MAC address like 02:00:00:00:00:01, got {v!r}")
    return v.lower()


def parse_plan(doc: Any) -> Plan:
    """Validate a decoded plan document and return a :class:`Plan`."""
    _keys(doc, "plan", {"format", "run_id", "switches", "hosts", "links"})
    _check(doc["format"] == PLAN_FORMAT, "plan.format",
           f"must be {PLAN_FORMAT!r}, got {doc['format']!r}")
    run_id = _str(doc, "run_id", "plan")
    topology = doc.get("topology", "")
    _check(isinstance(topology, str), "plan.topology", "must be a string")
    for key in ("switches", "hosts", "links"):
        _check(isinstance(doc[key], list), f"plan.{key}", "must be a list")

    switches: list[Switch] = []
    names: set[str] = set()
    dpids: dict[int, str] = {}
    for i, s in enumerate(doc["switches"]):
        p = f"switches[{i}]"
        _keys(s, p, {"name", "site", "dpid"})
        sw = Switch(_str(s, "name", p), _str(s, "site", p), _int(s, "dpid", p, 1, 2**64 - 1))
        _check(sw.name not in names, f"{p}.name", f"duplicate name {sw.name!r}")
        _check(sw.dpid not in dpids, f"{p}.dpid",
               f"duplicate dpid {sw.dpid} (also {dpids.get(sw.dpid)})")
        names.add(sw.name)
        dpids[sw.dpid] = sw.name
        switches.append(sw)
    _check(bool(switches), "plan.switches", "must not be empty")

    used_ports: dict[tuple[int, int], str] = {}

    def claim(dpid: int, port: int, who: str, path: str) -> None:
        _check(dpid in dpids, path, f"dpid {dpid} is not a switch in plan.switches")
        prev = used_ports.get((dpid, port))
        _check(prev is None, path, f"port {port} on dpid {dpid} already used by {prev}")
        used_ports[(dpid, port)] = who

    hosts: list[Host] = []
    host_names: set[str] = set()
    ips: set[str] = set()
    for i, h in enumerate(doc["hosts"]):
        p = f"hosts[{i}]"
        _keys(h, p, {"name", "site", "ip", "prefixlen", "mac", "dpid", "port"})
        name = _str(h, "name", p)
        _check(name not in host_names, f"{p}.name", f"duplicate host name {name!r}")
        ip = _str(h, "ip", p)
        try:
            ip = str(ipaddress.IPv4Address(ip))
        except ValueError:
            raise PlanError(f"{p}.ip: must be an IPv4 address, got {ip!r}") from None
        _check(ip not in ips, f"{p}.ip", f"duplicate IP {ip}")
        host = Host(name, _str(h, "site", p), ip, _int(h, "prefixlen", p, 0, 32),
                    _mac(h, "mac", p), _int(h, "dpid", p, 1, 2**64 - 1),
                    _int(h, "port", p, 1, MAX_OF_PORT))
        claim(host.dpid, host.port, f"host {name}", f"{p}.dpid/port")
        host_names.add(name)
        ips.add(ip)
        hosts.append(host)

    links: list[Link] = []
    link_ids: set[str] = set()
    for i, lk in enumerate(doc["links"]):
        p = f"links[{i}]"
        _keys(lk, p, {"id", "a", "b", "a_dpid", "a_port", "b_dpid", "b_port",
                      "delay_ms_ab", "delay_ms_ba"})
        lid = _str(lk, "id", p)
        _check(lid not in link_ids, f"{p}.id", f"duplicate link id {lid!r}")
        bw = lk.get("bandwidth_mbps")
        if bw is not None:
            bw = _num(lk, "bandwidth_mbps", p)
        link = Link(lid, _str(lk, "a", p), _str(lk, "b", p),
                    _int(lk, "a_dpid", p, 1, 2**64 - 1), _int(lk, "a_port", p, 1, MAX_OF_PORT),
                    _int(lk, "b_dpid", p, 1, 2**64 - 1), _int(lk, "b_port", p, 1, MAX_OF_PORT),
                    _num(lk, "delay_ms_ab", p), _num(lk, "delay_ms_ba", p), bw)
        _check(link.a_dpid != link.b_dpid, f"{p}.b_dpid", "a link must join two different switches")
        claim(link.a_dpid, link.a_port, f"link {lid}", f"{p}.a_dpid/a_port")
        claim(link.b_dpid, link.b_port, f"link {lid}", f"{p}.b_dpid/b_port")
        link_ids.add(lid)
        links.append(link)

    return Plan(run_id, topology, tuple(switches), tuple(hosts), tuple(links))


def load_plan(path: str) -> Plan:
    """Read and validate a plan file; raises :class:`PlanError` with a clear message."""
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except OSError as e:
        raise PlanError(f"{path}: cannot read plan file: {e.strerror}") from None
    except json.JSONDecodeError as e:
        raise PlanError(f"{path}: not valid JSON: {e}") from None
    try:
        return parse_plan(doc)
    except PlanError as e:
        raise PlanError(f"{path}: {e}") from None
