"""The emulation plan: names, datapath ids, ports, addresses for one run of a Network.

Pure and deterministic: the same Network and run id give the same plan. The plan is
written to `plan.json` in the run directory; the controller, the probes and the reports
read it, so there is one description of the built network.

Names carry the run id so that concurrent runs, and foreign bridges, never collide:
bridge `ew<rid>s<n>`, switch port `ew<rid>s<n>-p<port>`, delay-line ends
`ew<rid>r<link>a|b` (all within Linux's 15-character interface-name limit).
"""

from __future__ import annotations

import ipaddress
import json
import re
import secrets
import string
from dataclasses import asdict, dataclass, field
from typing import Any

from common import checks
from topology.addressing import HOST_SUBNET
from topology.model import Network, TopologyError
from topology.services import default_services

PLAN_FORMAT = "edwc-plan/1"
NAME_PREFIX = "ew"
RUN_ID_RE = re.compile(r"^[a-z0-9]{4}$")
HOST_PORT = 1  # a site's end host always sits on port 1 of the site's switch
# Words the Mininet CLI reads as commands: a host with such a name could not be addressed.
_CLI_WORDS = {"dpctl", "dump", "exit", "gterm", "help", "intfs", "iperf", "iperfudp", "link",
              "links", "net", "noecho", "nodes", "pingall", "pingallfull", "pingpair",
              "pingpairfull", "ports", "px", "py", "quit", "sh", "source", "switch", "time",
              "wait", "x", "xterm", "eof"}
MAX_SWITCHES = 999
MAX_PORTS = 999


def new_run_id() -> str:
    alphabet = string.ascii_lowercase + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(4))


@dataclass(frozen=True)
class SwitchPlan:
    name: str
    site: str
    dpid: int


@dataclass(frozen=True)
class HostPlan:
    name: str
    site: str
    ip: str
    prefixlen: int
    mac: str
    dpid: int
    port: int
    switch: str = ""
    intf: str = ""  # switch-side interface name (host side is eth0 in the host's namespace)


@dataclass(frozen=True)
class LinkPlan:
    id: str
    a: str
    b: str
    a_dpid: int
    a_port: int
    b_dpid: int
    b_port: int
    delay_ms_ab: float  # one-way a -> b
    delay_ms_ba: float
    bandwidth_mbps: float | None = None
    a_switch: str = ""
    b_switch: str = ""
    a_intf: str = ""
    b_intf: str = ""
    relay_a: str = ""  # delay-line end facing a_intf (used only on the userspace path)
    relay_b: str = ""
    jitter_ms: float = 0.0
    loss_pct: float = 0.0
    distance_km: float | None = None


@dataclass(frozen=True)
class ServicePlan:
    """A compute service (CATS): anycast CS-ID address, budget and demand of one flow."""

    name: str
    address: str
    port: int
    service_class: str
    budget_ms: float  # response latency: path round trip + gateway processing delay
    units: int
    kinds: tuple[str, ...]


@dataclass(frozen=True)
class GatewayPlan:
    """A computing-power gateway: the end host of a site with compute resources."""

    id: str
    site: str
    host: str
    ip: str
    mac: str
    dpid: int
    port: int
    hub: str | None
    units: dict  # accelerator kind -> compute units (from the topology data)
    price: float | None = None  # energy price, CNY/kWh
    green: float | None = None  # renewable share 0..1
    pue: float | None = None
    operator: str | None = None
    services: tuple[str, ...] = ()  # services whose kinds this gateway has


@dataclass(frozen=True)
class Plan:
    run_id: str
    topology: str
    switches: tuple[SwitchPlan, ...]
    hosts: tuple[HostPlan, ...]
    links: tuple[LinkPlan, ...]
    services: tuple[ServicePlan, ...] = ()
    gateways: tuple[GatewayPlan, ...] = ()
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"format": PLAN_FORMAT, "run_id": self.run_id, "topology": self.topology,
                "switches": [asdict(s) for s in self.switches],
                "hosts": [asdict(h) for h in self.hosts],
                "links": [asdict(ln) for ln in self.links],
                "services": [asdict(s) for s in self.services],
                "gateways": [asdict(g) for g in self.gateways], **self.extra}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1, sort_keys=False)

    def host(self, name: str) -> HostPlan:
        for h in self.hosts:
            if h.name == name or h.site == name:
                return h
        raise KeyError(name)

    def switch_of_site(self, site: str) -> SwitchPlan:
        for s in self.switches:
            if s.site == site:
                return s
        raise KeyError(site)

    def link(self, a: str, b: str) -> LinkPlan:
        for ln in self.links:
            if {ln.a, ln.b} == {a, b}:
                return ln
        raise KeyError(f"{a}-{b}")

    def service(self, name: str) -> ServicePlan:
        for s in self.services:
            if s.name == name:
                return s
        raise KeyError(name)

    def switch_by_dpid(self) -> dict[int, SwitchPlan]:
        return {s.dpid: s for s in self.switches}

    def host_by_ip(self) -> dict[str, HostPlan]:
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


def host_mac(index: int) -> str:
    return "02:ed:%02x:%02x:%02x:%02x" % ((index >> 24) & 0xFF, (index >> 16) & 0xFF,
                                           (index >> 8) & 0xFF, index & 0xFF)


def make_plan(net: Network, run_id: str) -> Plan:
    if not RUN_ID_RE.match(run_id):
        raise ValueError(f"run id {run_id!r} must be 4 characters [a-z0-9]")
    if len(net.sites) > MAX_SWITCHES:
        raise TopologyError(f"{len(net.sites)} sites; the emulator supports at most "
                            f"{MAX_SWITCHES}", net.source)
    tag = f"{NAME_PREFIX}{run_id}"
    switches: list[SwitchPlan] = []
    by_site: dict[str, SwitchPlan] = {}
    next_port: dict[str, int] = {}
    for i, site in enumerate(net.sites):
        sw = SwitchPlan(name=f"{tag}s{i + 1}", site=site.id, dpid=i + 1)
        switches.append(sw)
        by_site[site.id] = sw
        next_port[site.id] = HOST_PORT + 1 if site.has_host else 1

    hosts: list[HostPlan] = []
    host_ips = list(HOST_SUBNET.hosts())
    for site in net.sites:
        if not site.has_host:
            continue
        if site.id in _CLI_WORDS:
            raise TopologyError(f"site id '{site.id}' is a Mininet CLI command and cannot name "
                                "a host; rename the site", net.source, f"site '{site.id}'")
        idx = len(hosts) + 1
        sw = by_site[site.id]
        hosts.append(HostPlan(name=site.id, site=site.id, ip=str(host_ips[idx - 1]),
                              prefixlen=HOST_SUBNET.prefixlen, mac=host_mac(idx),
                              switch=sw.name, dpid=sw.dpid, port=HOST_PORT,
                              intf=f"{sw.name}-p{HOST_PORT}"))

    links: list[LinkPlan] = []
    for i, ln in enumerate(net.links):
        sa, sb = by_site[ln.a], by_site[ln.b]
        pa, pb = next_port[ln.a], next_port[ln.b]
        next_port[ln.a] += 1
        next_port[ln.b] += 1
        if max(pa, pb) > MAX_PORTS:
            raise TopologyError(f"a site has more than {MAX_PORTS} links", net.source, ln.id)
        links.append(LinkPlan(
            id=ln.id, a=ln.a, b=ln.b, a_switch=sa.name, b_switch=sb.name, a_dpid=sa.dpid,
            b_dpid=sb.dpid, a_port=pa, b_port=pb, a_intf=f"{sa.name}-p{pa}",
            b_intf=f"{sb.name}-p{pb}", relay_a=f"{tag}r{i + 1}a", relay_b=f"{tag}r{i + 1}b",
            delay_ms_ab=ln.delay_ms, delay_ms_ba=ln.delay_ms_reverse, jitter_ms=ln.jitter_ms,
            loss_pct=ln.loss_pct, bandwidth_mbps=ln.bandwidth_mbps,
            distance_km=round(ln.distance_km, 3)))
    services = tuple(ServicePlan(s.name, s.address, s.port, s.service_class, s.budget_ms,
                                 s.units, tuple(s.kinds))
                     for s in (net.services or default_services()))
    host_of = {h.site: h for h in hosts}
    gateways = []
    for site in net.sites:
        c = site.compute
        if c is None or site.id not in host_of or not any(c.units.values()):
            continue
        h = host_of[site.id]
        kinds = {k for k, v in c.units.items() if v > 0}
        gateways.append(GatewayPlan(
            id=site.id, site=site.id, host=h.name, ip=h.ip, mac=h.mac, dpid=h.dpid, port=h.port,
            hub=site.hub, units={k: v for k, v in sorted(c.units.items()) if v > 0},
            price=c.energy_price, green=c.green_share, pue=c.pue, operator=site.operator,
            services=tuple(s.name for s in services if kinds & set(s.kinds))))
    return Plan(run_id=run_id, topology=net.name, switches=tuple(switches), hosts=tuple(hosts),
                links=tuple(links), services=services, gateways=tuple(gateways))


# --- reading plan.json (the controller, the probes and the reports read what make_plan wrote)

MAX_OF_PORT = 0xFFFFFF00  # OFPP_MAX: larger numbers are reserved ports


class PlanError(ValueError):
    """The plan file is missing, unreadable or invalid; the message names the field."""


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
    return checks.number(obj[key], f"{path}.{key}", 0, error=PlanError)


def _mac(obj: dict, key: str, path: str) -> str:
    v = _str(obj, key, path)
    parts = v.split(":")
    ok = len(parts) == 6 and all(len(p) == 2 and all(c in "0123456789abcdefABCDEF" for c in p)
                                 for p in parts)
    _check(ok, f"{path}.{key}", f"must be a MAC address like 02:00:00:00:00:01, got {v!r}")
    return v.lower()


def _optional(obj: dict, path: str, fields: dict[str, type]) -> dict:
    """The builder's extra fields, type-checked when present; unknown fields are ignored."""
    out = {}
    for key, kind in fields.items():
        if obj.get(key) is None:
            continue
        if kind is float:
            out[key] = _num(obj, key, path)
        else:
            _check(isinstance(obj[key], str), f"{path}.{key}", "must be a string")
            out[key] = obj[key]
    return out


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

    switches: list[SwitchPlan] = []
    names: set[str] = set()
    dpids: dict[int, str] = {}
    for i, s in enumerate(doc["switches"]):
        p = f"switches[{i}]"
        _keys(s, p, {"name", "site", "dpid"})
        sw = SwitchPlan(_str(s, "name", p), _str(s, "site", p), _int(s, "dpid", p, 1, 2**64 - 1))
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

    hosts: list[HostPlan] = []
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
        host = HostPlan(name, _str(h, "site", p), ip, _int(h, "prefixlen", p, 0, 32),
                        _mac(h, "mac", p), _int(h, "dpid", p, 1, 2**64 - 1),
                        _int(h, "port", p, 1, MAX_OF_PORT),
                        **_optional(h, p, {"switch": str, "intf": str}))
        claim(host.dpid, host.port, f"host {name}", f"{p}.dpid/port")
        host_names.add(name)
        ips.add(ip)
        hosts.append(host)

    links: list[LinkPlan] = []
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
        link = LinkPlan(lid, _str(lk, "a", p), _str(lk, "b", p),
                        _int(lk, "a_dpid", p, 1, 2**64 - 1),
                        _int(lk, "a_port", p, 1, MAX_OF_PORT),
                        _int(lk, "b_dpid", p, 1, 2**64 - 1),
                        _int(lk, "b_port", p, 1, MAX_OF_PORT),
                        _num(lk, "delay_ms_ab", p), _num(lk, "delay_ms_ba", p), bw,
                        **_optional(lk, p, {"a_switch": str, "b_switch": str, "a_intf": str,
                                            "b_intf": str, "relay_a": str, "relay_b": str,
                                            "jitter_ms": float, "loss_pct": float,
                                            "distance_km": float}))
        _check(link.a_dpid != link.b_dpid, f"{p}.b_dpid", "a link must join two different switches")
        claim(link.a_dpid, link.a_port, f"link {lid}", f"{p}.a_dpid/a_port")
        claim(link.b_dpid, link.b_port, f"link {lid}", f"{p}.b_dpid/b_port")
        link_ids.add(lid)
        links.append(link)

    services = _parse_services(doc.get("services", []))
    gateways = _parse_gateways(doc.get("gateways", []), {h.ip: h for h in hosts},
                               {s.name for s in services})
    return Plan(run_id, topology, tuple(switches), tuple(hosts), tuple(links),
                services=services, gateways=gateways)


def _parse_services(docs: Any) -> tuple[ServicePlan, ...]:
    _check(isinstance(docs, list), "plan.services", "must be a list")
    out: list[ServicePlan] = []
    seen: set[str] = set()
    for i, s in enumerate(docs):
        p = f"services[{i}]"
        _keys(s, p, {"name", "address", "port", "budget_ms", "units", "kinds"})
        name = _str(s, "name", p)
        _check(name not in seen, f"{p}.name", f"duplicate service {name!r}")
        try:
            addr = str(ipaddress.IPv4Address(_str(s, "address", p)))
        except ValueError:
            raise PlanError(f"{p}.address: must be an IPv4 address") from None
        _check(addr not in {o.address for o in out}, f"{p}.address", f"duplicate {addr}")
        kinds = s["kinds"]
        _check(isinstance(kinds, list) and kinds and all(isinstance(k, str) for k in kinds),
               f"{p}.kinds", "must be a non-empty list of strings")
        cls = s.get("service_class", "")
        _check(isinstance(cls, str), f"{p}.service_class", "must be a string")
        budget = _num(s, "budget_ms", p)
        _check(budget > 0, f"{p}.budget_ms", "must be > 0")
        seen.add(name)
        out.append(ServicePlan(name, addr, _int(s, "port", p, 1, 65535), cls, budget,
                               _int(s, "units", p, 1, 1_000_000), tuple(kinds)))
    return tuple(out)


def _parse_gateways(docs: Any, hosts: dict[str, HostPlan], services: set[str]
                    ) -> tuple[GatewayPlan, ...]:
    _check(isinstance(docs, list), "plan.gateways", "must be a list")
    out: list[GatewayPlan] = []
    for i, g in enumerate(docs):
        p = f"gateways[{i}]"
        _keys(g, p, {"id", "site", "host", "ip", "mac", "dpid", "port", "units"})
        gid = _str(g, "id", p)
        _check(gid not in {o.id for o in out}, f"{p}.id", f"duplicate gateway {gid!r}")
        ip = _str(g, "ip", p)
        host = hosts.get(ip)
        _check(host is not None, f"{p}.ip", f"{ip} is not the address of a host in plan.hosts")
        dpid, port = _int(g, "dpid", p, 1, 2**64 - 1), _int(g, "port", p, 1, MAX_OF_PORT)
        _check((host.dpid, host.port) == (dpid, port), f"{p}.dpid/port",
               f"host {host.name} sits on {host.dpid}:{host.port}, not {dpid}:{port}")
        units = g["units"]
        _check(isinstance(units, dict) and all(
            isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool) and v >= 0
            for k, v in units.items()), f"{p}.units", "must map accelerator kind to a count")
        svcs = g.get("services", [])
        _check(isinstance(svcs, list) and all(s in services for s in svcs), f"{p}.services",
               "must list services defined in plan.services")
        hub = g.get("hub")
        _check(hub is None or isinstance(hub, str), f"{p}.hub", "must be a string or null")
        extra = _optional(g, p, {"price": float, "green": float, "pue": float, "operator": str})
        out.append(GatewayPlan(gid, _str(g, "site", p), _str(g, "host", p), ip,
                               _mac(g, "mac", p), dpid, port, hub, dict(units),
                               services=tuple(svcs), **extra))
    return tuple(out)


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
