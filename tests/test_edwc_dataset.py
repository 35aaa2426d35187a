"""The built-in EDWC dataset (topology/data/edwc.yaml): contents, coordinates, delays.

Pure tests: no root, no Mininet.
"""

from __future__ import annotations

import itertools
import statistics
from pathlib import Path

import networkx as nx
import pytest
import yaml

from topology.model import Network, build_network, haversine_km

DATA = Path(__file__).resolve().parents[1] / "topology" / "data" / "edwc.yaml"

HUBS = {"bth", "yrd", "gba", "cy", "nmg", "gz", "gs", "nx"}
CLUSTERS = {
    "zhangjiakou": "bth",
    "wuhu": "yrd",
    "yrd_eco": "yrd",
    "shaoguan": "gba",
    "tianfu": "cy",
    "chongqing_dc": "cy",
    "horinger": "nmg",
    "guian": "gz",
    "qingyang": "gs",
    "zhongwei": "nx",
}
REQUIRED_METROS = {"beijing", "shanghai", "hangzhou", "guangzhou", "shenzhen"}
EAST_HUBS = {"bth", "yrd", "gba"}
WEST_HUBS = {"nmg", "gz", "gs", "nx"}


def _load() -> Network:
    try:
        from topology.loader import load_topology
    except ImportError:  # loader not there yet: parse the file ourselves
        raw = yaml.safe_load(DATA.read_text(encoding="utf-8"))
        return build_network(raw["sites"], raw["links"], name=raw["name"], source=str(DATA),
                             defaults=raw.get("defaults"), sources=raw.get("sources") or ())
    return load_topology(DATA)


@pytest.fixture(scope="module")
def net() -> Network:
    return _load()


@pytest.fixture(scope="module")
def raw() -> dict:
    return yaml.safe_load(DATA.read_text(encoding="utf-8"))


def _hub_delays(net: Network) -> dict[tuple[str, str], float]:
    g = net.graph()
    hubs = sorted(s.id for s in net.sites_of_kind("hub"))
    return {(a, b): nx.dijkstra_path_length(g, a, b, weight="delay_ms")
            for a, b in itertools.permutations(hubs, 2)}


def test_file_header(raw):
    assert raw["format"] == "edwc-topology/1"
    assert raw["name"] == "edwc-backbone"
    assert raw["description"].strip()
    assert raw["defaults"]["route_factor"] == pytest.approx(1.3)


def test_builtin_name_resolves():
    loader = pytest.importorskip("topology.loader")
    assert "edwc" in loader.builtin_names()
    assert loader.load_topology("edwc").name == "edwc-backbone"


def test_validates_and_fits_the_machine(net):
    # build_network already raised on any error, including a disconnected graph
    assert net.name == "edwc-backbone"
    assert len(net.sites) <= 32
    assert 35 <= len(net.links) <= 50


def test_hubs(net):
    hubs = {s.id for s in net.sites_of_kind("hub")}
    assert hubs == HUBS
    for s in net.sites_of_kind("hub"):
        assert s.hub in (None, s.id)


def test_clusters_and_their_hubs(net):
    clusters = {s.id: s for s in net.sites_of_kind("cluster")}
    assert set(clusters) == set(CLUSTERS)
    for cid, hub in CLUSTERS.items():
        c = clusters[cid]
        assert c.hub == hub, cid
        assert net.site(c.hub).kind == "hub"


def test_clusters_have_compute(net):
    for c in net.sites_of_kind("cluster"):
        assert c.compute is not None, c.id
        assert c.compute.units.get("cuda", 0) > 0 and c.compute.units.get("cann", 0) > 0, c.id
        assert c.compute.energy_price is not None and 0 < c.compute.energy_price < 2
        assert c.compute.green_share is not None
        assert c.compute.pue is not None and c.compute.pue < 1.5
        assert c.note and "illustrative" in c.note.lower(), c.id


def test_west_is_bigger_cheaper_greener(net):
    clusters = net.sites_of_kind("cluster")
    west = [c for c in clusters if c.hub in WEST_HUBS]
    east = [c for c in clusters if c.hub in EAST_HUBS]
    assert len(west) == 4 and len(east) == 4

    def units(c):
        return sum(c.compute.units.values())

    assert min(units(c) for c in west) > max(units(c) for c in east)
    assert max(c.compute.energy_price for c in west) < min(c.compute.energy_price for c in east)
    assert min(c.compute.green_share for c in west) > statistics.mean(
        c.compute.green_share for c in east)


def test_metros(net):
    metros = {s.id for s in net.sites_of_kind("metro")}
    assert REQUIRED_METROS <= metros
    assert 6 <= len(metros) <= 9
    pops = net.sites_of_kind("pop")
    assert 2 <= len(pops) <= 4


def test_every_metro_and_cluster_has_a_hub(net):
    for s in net.sites_of_kind("metro", "cluster"):
        assert s.hub is not None, s.id
        assert net.site(s.hub).kind == "hub"


def test_every_site_is_linked(net):
    linked = {ln.a for ln in net.links} | {ln.b for ln in net.links}
    assert set(net.site_ids) <= linked


def test_coordinates_in_china(net):
    for s in net.sites:
        assert 18 <= s.lat <= 54 and 73 <= s.lon <= 135, s.id


def test_regions_are_a_small_consistent_set(net):
    regions = {s.region for s in net.sites}
    assert 4 <= len(regions) <= 7
    # every region groups at least two sites, otherwise the "region" tier means nothing
    for r in regions:
        assert sum(1 for s in net.sites if s.region == r) >= 2, r
    # a hub's members sit in the hub's region
    for s in net.sites:
        if s.hub is not None:
            assert s.region == net.site(s.hub).region, s.id


def test_zones_say_which_hubs_are_western(net):
    # the region rule cannot: nmg shares region "north" with bth, cy shares "southwest" with gz
    assert net.site("nmg").region == net.site("bth").region
    assert net.site("cy").region == net.site("gz").region
    assert {s.id: s.zone for s in net.sites if s.kind == "hub"} == {
        **dict.fromkeys(WEST_HUBS, "west"), **dict.fromkeys(EAST_HUBS | {"cy"}, "east")}
    assert all(s.zone is None for s in net.sites if s.kind != "hub")  # members inherit


def test_west_share_counts_the_four_western_hubs(net):
    from experiments.workload.metrics import west_sites
    from topology.plan import make_plan

    west = west_sites(net)
    assert west == {s.id for s in net.sites if s.id in WEST_HUBS or s.hub in WEST_HUBS}
    gateways = make_plan(net, "zone").gateways
    assert {g.site for g in gateways if g.site in west} == {
        c for c, h in CLUSTERS.items() if h in WEST_HUBS}
    assert {g.hub for g in gateways if g.site in west} == WEST_HUBS


def test_graph_has_loops(net):
    g = nx.Graph()
    g.add_edges_from((ln.a, ln.b) for ln in net.links)
    assert nx.is_connected(g)
    assert nx.cycle_basis(g), "the backbone must have loops"
    # many loops, not one: the core (hubs and pops) stays connected after any single cut
    core = g.subgraph([s.id for s in net.sites_of_kind("hub", "pop")])
    assert not list(nx.bridges(core))


@pytest.mark.parametrize("a,b,km,tol", [
    ("beijing", "shanghai", 1068, 15),
    ("beijing", "guangzhou", 1890, 20),
    ("shanghai", "guangzhou", 1213, 20),
    ("chongqing", "gz", 330, 15),      # Chongqing - Guiyang
    ("nx", "zhongwei", 145, 15),       # Yinchuan - Zhongwei
])
def test_great_circle_spot_checks(net, a, b, km, tol):
    sa, sb = net.site(a), net.site(b)
    assert haversine_km(sa.lat, sa.lon, sb.lat, sb.lon) == pytest.approx(km, abs=tol)


def test_hubs_at_their_core_cities(net):
    core = {"bth": "beijing", "yrd": "shanghai", "gba": "guangzhou"}
    for hub, metro in core.items():
        h, m = net.site(hub), net.site(metro)
        assert haversine_km(h.lat, h.lon, m.lat, m.lon) < 5


def test_clusters_near_their_hub(net):
    # Qingyang (~345 km from Lanzhou) is the farthest cluster from its hub PoP
    for c in net.sites_of_kind("cluster"):
        h = net.site(c.hub)
        assert haversine_km(c.lat, c.lon, h.lat, h.lon) < 400, c.id


def test_link_delays_sane(net):
    for ln in net.links:
        assert ln.delay_ms > 0, ln.id
        assert ln.delay_ms == ln.delay_ms_reverse, ln.id
        if ln.kind.endswith("access"):
            assert ln.delay_ms < 2.5, ln.id  # region tier (5 ms) must be reachable
        # delays follow from distance: no hidden explicit delays
        assert ln.delay_source in ("route_factor", "fiber_km"), ln.id


def test_city_and_region_latency_circles(net):
    g = net.graph()
    # 1 ms within a city: metro to its co-located hub PoP
    for metro, hub in (("beijing", "bth"), ("shanghai", "yrd"), ("guangzhou", "gba")):
        assert nx.dijkstra_path_length(g, metro, hub, weight="delay_ms") < 1.0
    # 5 ms within a region: every metro/cluster reaches its hub
    for s in net.sites_of_kind("metro", "cluster"):
        assert nx.dijkstra_path_length(g, s.id, s.hub, weight="delay_ms") < 5.0, s.id


def test_hub_to_hub_delays_plausible(net):
    d = _hub_delays(net)
    mean, worst = statistics.mean(d.values()), max(d.values())
    # CAICT 2024: optical layer between hubs 9.7 ms mean / 17.1 ms max (one-way reading)
    assert 5.0 <= mean <= 15.0, mean
    assert worst < 25.0, worst
    # and within the 20 ms inter-hub circle, one-way
    assert worst < 20.0, worst


def test_sources_cited(raw):
    ids = {s["id"] for s in raw["sources"]}
    assert {"ndrc-2022-hubs", "ndrc-2023-opinions", "caict-2024-latency",
            "fiber-delay"} <= ids
    for s in raw["sources"]:
        assert s.get("title"), s
    for item in raw["sites"] + raw["links"]:
        if "source" in item:
            assert item["source"] in ids, item
