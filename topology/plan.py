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

from topology.model import Network, TopologyError

PLAN_FORMAT = "edwc-plan/1"
NAME_PREFIX = "ew"
RUN_ID_RE = re.compile(r"^[a-z0-9]{4}$")
HOST_PORT = 1  # a site's end host always sits on port 1 of the site's switch
HOST_SUBNET = ipaddress.ip_network("10.0.0.0/16")
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
    switch: str
    dpid: int
    port: int
    intf: str  # switch-side interface name (host side is eth0 in the host's namespace)


@dataclass(frozen=True)
class LinkPlan:
    id: str
    a: str
    b: str
    a_switch: str
    b_switch: str
    a_dpid: int
    b_dpid: int
    a_port: int
    b_port: int
    a_intf: str
    b_intf: str
    relay_a: str  # delay-line end facing a_intf (used only on the userspace path)
    relay_b: str
    delay_ms_ab: float
    delay_ms_ba: float
    jitter_ms: float
    loss_pct: float
    bandwidth_mbps: float
    distance_km: float


@dataclass(frozen=True)
class Plan:
    run_id: str
    topology: str
    switches: tuple[SwitchPlan, ...]
    hosts: tuple[HostPlan, ...]
    links: tuple[LinkPlan, ...]
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"format": PLAN_FORMAT, "run_id": self.run_id, "topology": self.topology,
                "switches": [asdict(s) for s in self.switches],
                "hosts": [asdict(h) for h in self.hosts],
                "links": [asdict(ln) for ln in self.links], **self.extra}

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
    return Plan(run_id=run_id, topology=net.name, switches=tuple(switches), hosts=tuple(hosts),
                links=tuple(links))
