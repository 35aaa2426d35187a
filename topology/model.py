"""The backbone as data: sites, links and the delay each link carries.

Everything here is pure: no root, no Mininet. The Mininet builder, the controller
plan and the reports are all derived from one `Network` value.

Delay model (see docs/topology-format.md): a link's one-way delay is, in order of
precedence, its explicit `delay_ms`; else `fiber_km` x 4.9 us/km; else the great-circle
distance between its endpoints x route factor x 4.9 us/km.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

import networkx as nx

from common import checks

# Light in silica fibre: c / n with n ~ 1.468 gives ~204,000 km/s, i.e. ~4.9 us per km.
FIBER_US_PER_KM = 4.9
DEFAULT_ROUTE_FACTOR = 1.3
EARTH_RADIUS_KM = 6371.0088  # IUGG mean radius

SITE_KINDS = ("metro", "hub", "cluster", "pop")
# Kinds that get an emulated end host: users sit in metros, compute in clusters.
HOST_KINDS = ("metro", "cluster")

_ID_RE = re.compile(r"^[a-z][a-z0-9_]{0,23}$")

# Sanity bounds: values outside these are almost certainly unit mistakes.
MAX_ROUTE_FACTOR = 5.0
MAX_FIBER_KM = 30000.0
MAX_DELAY_MS = 1000.0
MAX_BANDWIDTH_MBPS = 400_000.0
MAX_JITTER_MS = 100.0


class TopologyError(ValueError):
    """A topology that cannot be used; the message names the file, the item and the fix."""

    def __init__(self, message: str, source: str | None = None, item: str | None = None):
        self.source = source
        self.item = item
        where = ": ".join(p for p in (source, item) if p)
        super().__init__(f"{where}: {message}" if where else message)


def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in km between two WGS84 points (spherical Earth)."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dphi = p2 - p1
    dlmb = math.radians(lon2 - lon1)
    a = math.sin(dphi / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dlmb / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(a)))


def fiber_delay_ms(fiber_km: float) -> float:
    """One-way propagation delay in ms over `fiber_km` of fibre."""
    return fiber_km * FIBER_US_PER_KM / 1000.0


@dataclass(frozen=True)
class Compute:
    """Compute resources at a data-center site (used by the steering layer)."""

    units: dict[str, int] = field(default_factory=dict)  # accelerator kind -> compute units
    energy_price: float | None = None  # CNY per kWh
    green_share: float | None = None  # share of renewable power, 0..1
    pue: float | None = None


@dataclass(frozen=True)
class Site:
    id: str
    name: str
    kind: str
    lat: float
    lon: float
    region: str
    hub: str | None = None  # id of the national hub this site belongs to
    operator: str | None = None
    name_zh: str | None = None
    compute: Compute | None = None
    note: str | None = None
    zone: str | None = None  # side of the national plan (EDWC: "east" or "west"); see docs

    @property
    def has_host(self) -> bool:
        return self.kind in HOST_KINDS


@dataclass(frozen=True)
class Link:
    a: str
    b: str
    delay_ms: float  # one-way, a -> b, as emulated
    delay_ms_reverse: float  # one-way, b -> a
    distance_km: float  # great-circle distance between the endpoints
    fiber_km: float | None  # fibre length the delay came from (None for an explicit delay)
    delay_source: str  # "explicit", "fiber_km" or "route_factor"
    route_factor: float | None
    bandwidth_mbps: float
    loss_pct: float = 0.0
    jitter_ms: float = 0.0
    kind: str = "backbone"
    note: str | None = None

    @property
    def id(self) -> str:
        return f"{self.a}-{self.b}"

    def delay_from(self, site: str) -> float:
        """One-way delay leaving `site` over this link."""
        if site == self.a:
            return self.delay_ms
        if site == self.b:
            return self.delay_ms_reverse
        raise KeyError(f"{site} is not an endpoint of {self.id}")

    def other(self, site: str) -> str:
        return self.b if site == self.a else self.a


@dataclass(frozen=True)
class Network:
    name: str
    sites: tuple[Site, ...]
    links: tuple[Link, ...]
    source: str = "<memory>"
    description: str = ""
    sources: tuple[dict, ...] = ()
    services: tuple = ()  # topology.services.Service; empty = the built-in services

    def site(self, site_id: str) -> Site:
        for s in self.sites:
            if s.id == site_id:
                return s
        raise KeyError(site_id)

    @property
    def site_ids(self) -> list[str]:
        return [s.id for s in self.sites]

    def sites_of_kind(self, *kinds: str) -> list[Site]:
        return [s for s in self.sites if s.kind in kinds]

    def graph(self) -> nx.DiGraph:
        """Directed graph, edge attribute `delay_ms` is the one-way delay in that direction."""
        g = nx.DiGraph()
        for s in self.sites:
            g.add_node(s.id)
        for ln in self.links:
            g.add_edge(ln.a, ln.b, delay_ms=ln.delay_ms, link=ln.id)
            g.add_edge(ln.b, ln.a, delay_ms=ln.delay_ms_reverse, link=ln.id)
        return g

    def path_delay_ms(self, path: Iterable[str]) -> float:
        g = self.graph()
        p = list(path)
        return sum(g[u][v]["delay_ms"] for u, v in zip(p, p[1:]))


# --- building a Network from plain values, with validation ------------------------------

def _num(value, what: str, src: str, item: str, lo: float, hi: float, fix: str) -> float:
    return checks.number(value, what, lo, hi, fix=fix,
                         error=lambda msg: TopologyError(msg, src, item))


def make_site(raw: dict, src: str, index: int) -> Site:
    item = f"sites[{index}]"
    if not isinstance(raw, dict):
        raise TopologyError(f"each site must be a mapping, got {type(raw).__name__}", src, item)
    sid = raw.get("id")
    if not isinstance(sid, str) or not _ID_RE.match(sid):
        raise TopologyError(
            f"site id {sid!r} is invalid; use lowercase letters, digits and '_', "
            "starting with a letter, at most 24 characters", src, item)
    item = f"site '{sid}'"
    known = {"id", "name", "name_zh", "kind", "lat", "lon", "region", "hub", "operator",
             "compute", "note", "source", "zone"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise TopologyError(f"unknown key(s) {unknown}; allowed: {sorted(known)}", src, item)
    kind = raw.get("kind")
    if kind not in SITE_KINDS:
        raise TopologyError(f"kind {kind!r} is not one of {list(SITE_KINDS)}", src, item)
    for key in ("lat", "lon"):
        if raw.get(key) is None:
            raise TopologyError(
                f"missing coordinate '{key}'; give decimal degrees (WGS84), e.g. lat: 39.90, "
                "lon: 116.41", src, item)
    lat = _num(raw["lat"], "lat", src, item, -90, 90, "latitude is decimal degrees in [-90, 90]")
    lon = _num(raw["lon"], "lon", src, item, -180, 180,
               "longitude is decimal degrees in [-180, 180]")
    region = raw.get("region")
    if not isinstance(region, str) or not region:
        raise TopologyError("missing 'region' (a name such as 'north' or 'east')", src, item)
    compute = None
    if raw.get("compute") is not None:
        compute = _make_compute(raw["compute"], src, item)
    for key in ("name", "name_zh", "operator", "note", "hub", "zone"):
        if raw.get(key) is not None and not isinstance(raw[key], str):
            raise TopologyError(f"'{key}' must be a string", src, item)
    return Site(id=sid, name=raw.get("name") or sid, kind=kind, lat=lat, lon=lon, region=region,
                hub=raw.get("hub"), operator=raw.get("operator"), name_zh=raw.get("name_zh"),
                compute=compute, note=raw.get("note"), zone=raw.get("zone"))


def _make_compute(raw, src: str, item: str) -> Compute:
    if not isinstance(raw, dict):
        raise TopologyError("'compute' must be a mapping", src, item)
    known = {"units", "energy_price", "green_share", "pue"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise TopologyError(f"compute: unknown key(s) {unknown}; allowed: {sorted(known)}",
                            src, item)
    units = raw.get("units") or {}
    if not isinstance(units, dict):
        raise TopologyError("compute.units must map accelerator kind to a count", src, item)
    clean: dict[str, int] = {}
    for k, v in units.items():
        if not isinstance(k, str) or isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise TopologyError(f"compute.units.{k} must be a count >= 0, got {v!r}", src, item)
        clean[k] = v
    price = raw.get("energy_price")
    green = raw.get("green_share")
    pue = raw.get("pue")
    return Compute(
        units=clean,
        energy_price=None if price is None else _num(price, "compute.energy_price", src, item,
                                                     0, 100, "give CNY per kWh"),
        green_share=None if green is None else _num(green, "compute.green_share", src, item,
                                                    0, 1, "give a share between 0 and 1"),
        pue=None if pue is None else _num(pue, "compute.pue", src, item, 1, 5,
                                          "PUE is >= 1 (typically 1.1-1.6)"),
    )


def make_link(raw: dict, sites: dict[str, Site], defaults: dict, src: str, index: int) -> Link:
    item = f"links[{index}]"
    if not isinstance(raw, dict):
        raise TopologyError(f"each link must be a mapping, got {type(raw).__name__}", src, item)
    known = {"a", "b", "fiber_km", "route_factor", "delay_ms", "delay_ms_reverse",
             "bandwidth_mbps", "loss_pct", "jitter_ms", "kind", "note", "source"}
    a, b = raw.get("a"), raw.get("b")
    item = f"links[{index}] ({a}-{b})"
    unknown = sorted(set(raw) - known)
    if unknown:
        raise TopologyError(f"unknown key(s) {unknown}; allowed: {sorted(known)}", src, item)
    for end in (a, b):
        if end not in sites:
            raise TopologyError(
                f"endpoint {end!r} is not a site; define it under 'sites' or fix the spelling",
                src, item)
    if a == b:
        raise TopologyError("a link must join two different sites", src, item)
    sa, sb = sites[a], sites[b]
    dist = haversine_km(sa.lat, sa.lon, sb.lat, sb.lon)

    rf = raw.get("route_factor", defaults.get("route_factor", DEFAULT_ROUTE_FACTOR))
    rf = _num(rf, "route_factor", src, item, 1.0, MAX_ROUTE_FACTOR,
              "a fibre route is at least the great circle (1.0); 1.3 is typical, ~2 for "
              "Internet paths")
    fiber_km = None
    if raw.get("delay_ms") is not None:
        delay = _num(raw["delay_ms"], "delay_ms", src, item, 0, MAX_DELAY_MS,
                     "give the one-way delay in milliseconds")
        source = "explicit"
        rf_used: float | None = None
    else:
        if raw.get("fiber_km") is not None:
            fiber_km = _num(raw["fiber_km"], "fiber_km", src, item, 0, MAX_FIBER_KM,
                            "give the fibre length in km")
            source = "fiber_km"
            rf_used = None
            if dist > 1.0 and fiber_km < dist * 0.999:
                raise TopologyError(
                    f"fiber_km = {fiber_km:g} is shorter than the great-circle distance "
                    f"{dist:.1f} km between the sites; check the coordinates or the length",
                    src, item)
        else:
            fiber_km = dist * rf
            source = "route_factor"
            rf_used = rf
        delay = fiber_delay_ms(fiber_km)
    reverse = delay
    if raw.get("delay_ms_reverse") is not None:
        reverse = _num(raw["delay_ms_reverse"], "delay_ms_reverse", src, item, 0, MAX_DELAY_MS,
                       "give the one-way delay b->a in milliseconds")
    bw = raw.get("bandwidth_mbps", defaults.get("bandwidth_mbps", 1000.0))
    bw = _num(bw, "bandwidth_mbps", src, item, 0.01, MAX_BANDWIDTH_MBPS,
              "give the bandwidth in Mbit/s")
    loss = _num(raw.get("loss_pct", defaults.get("loss_pct", 0.0)), "loss_pct", src, item,
                0, 100, "give loss in percent (0-100)")
    jitter = _num(raw.get("jitter_ms", defaults.get("jitter_ms", 0.0)), "jitter_ms", src, item,
                  0, MAX_JITTER_MS, "give jitter in milliseconds")
    if jitter > min(delay, reverse) and jitter > 0:
        raise TopologyError(
            f"jitter_ms = {jitter:g} exceeds the link's delay ({min(delay, reverse):.3f} ms); "
            "delay cannot go negative: lower the jitter", src, item)
    kind = raw.get("kind", "backbone")
    if not isinstance(kind, str):
        raise TopologyError("'kind' must be a string", src, item)
    return Link(a=a, b=b, delay_ms=delay, delay_ms_reverse=reverse, distance_km=dist,
                fiber_km=fiber_km, delay_source=source, route_factor=rf_used, bandwidth_mbps=bw,
                loss_pct=loss, jitter_ms=jitter, kind=kind, note=raw.get("note"))


def build_network(raw_sites: list, raw_links: list, *, name: str, source: str = "<memory>",
                  defaults: dict | None = None, description: str = "",
                  sources: Iterable[dict] = (), require_connected: bool = True) -> Network:
    """Validate plain site/link records and return a Network (raises TopologyError)."""
    defaults = defaults or {}
    if not isinstance(raw_sites, list) or not raw_sites:
        raise TopologyError("'sites' must be a non-empty list", source)
    if not isinstance(raw_links, list):
        raise TopologyError("'links' must be a list", source)
    sites: dict[str, Site] = {}
    for i, raw in enumerate(raw_sites):
        s = make_site(raw, source, i)
        if s.id in sites:
            raise TopologyError(f"duplicate site id '{s.id}'; site ids must be unique", source,
                                f"sites[{i}]")
        sites[s.id] = s
    for s in sites.values():
        if s.hub is not None:
            if s.hub not in sites:
                raise TopologyError(f"hub {s.hub!r} is not a site; name a site of kind 'hub'",
                                    source, f"site '{s.id}'")
            if sites[s.hub].kind != "hub":
                raise TopologyError(f"hub {s.hub!r} has kind {sites[s.hub].kind!r}, not 'hub'",
                                    source, f"site '{s.id}'")
    links: list[Link] = []
    seen: dict[frozenset, int] = {}
    for i, raw in enumerate(raw_links):
        ln = make_link(raw, sites, defaults, source, i)
        key = frozenset((ln.a, ln.b))
        if key in seen:
            raise TopologyError(
                f"duplicate link between '{ln.a}' and '{ln.b}' (also links[{seen[key]}]); "
                "parallel links are not supported: merge them", source, f"links[{i}]")
        seen[key] = i
        links.append(ln)
    net = Network(name=name, sites=tuple(sites.values()), links=tuple(links), source=source,
                  description=description, sources=tuple(sources))
    if require_connected:
        check_connected(net)
    return net


def check_connected(net: Network) -> None:
    g = nx.Graph()
    g.add_nodes_from(net.site_ids)
    g.add_edges_from((ln.a, ln.b) for ln in net.links)
    parts = sorted(nx.connected_components(g), key=len, reverse=True)
    if len(parts) > 1:
        islands = "; ".join(", ".join(sorted(p)) for p in parts[1:4])
        raise TopologyError(
            f"the graph is disconnected ({len(parts)} parts); these sites cannot reach the "
            f"main part: {islands}; add links to join them or remove them", net.source)
