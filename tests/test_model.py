"""Model, delay math, validation errors and loaders (no root)."""

from pathlib import Path

import pytest

from topology.loader import load_topology
from topology.model import (
    FIBER_US_PER_KM,
    TopologyError,
    build_network,
    fiber_delay_ms,
    haversine_km,
)
from topology.paths import hub_summary, shortest_path

FIX = Path(__file__).parent / "fixtures"


def site(sid, lat=30.0, lon=110.0, kind="metro", **kw):
    return {"id": sid, "kind": kind, "region": "r", "lat": lat, "lon": lon, **kw}


def net_of(sites, links, **kw):
    return build_network(sites, links, name="t", source="t.yaml", **kw)


# --- delay math ----------------------------------------------------------------------------

def test_haversine_known_distances():
    # Beijing - Shanghai ~1,067 km; one degree of latitude ~111.2 km
    assert haversine_km(39.9042, 116.4074, 31.2304, 121.4737) == pytest.approx(1067, abs=3)
    assert haversine_km(0, 0, 1, 0) == pytest.approx(111.19, abs=0.05)
    assert haversine_km(10, 20, 10, 20) == 0


def test_fiber_constant_and_delay():
    assert FIBER_US_PER_KM == 4.9
    assert fiber_delay_ms(1000) == pytest.approx(4.9)


def test_delay_precedence_explicit_fiber_route_factor():
    n = load_topology(FIX / "tiny.yaml")
    by = {ln.id: ln for ln in n.links}
    em = by["east-mid"]
    assert em.delay_source == "route_factor"
    assert em.delay_ms == pytest.approx(em.distance_km * 1.3 * 4.9 / 1000)
    mw = by["mid-west"]
    assert mw.delay_source == "fiber_km" and mw.delay_ms == pytest.approx(1200 * 4.9 / 1000)
    ew = by["east-west"]
    assert ew.delay_source == "explicit"
    assert (ew.delay_ms, ew.delay_ms_reverse) == (20, 25)
    assert ew.delay_from("west") == 25
    assert n.links[0].bandwidth_mbps == 100  # from defaults


def test_shortest_path_uses_delay_not_hops():
    n = load_topology(FIX / "tiny.yaml")
    p = shortest_path(n, "east", "west")
    assert p.path == ("east", "mid", "west")  # 2 hops, ~10.9 ms, beats the 20 ms direct link
    assert p.delay_ms < 20
    back = shortest_path(n, "west", "east")
    assert back.delay_ms == pytest.approx(p.delay_ms)


# --- validation ------------------------------------------------------------------------------

@pytest.mark.parametrize("sites,links,needle", [
    ([site("a"), site("a")], [], "duplicate site id 'a'"),
    ([site("a"), site("b")], [{"a": "a", "b": "c"}], "endpoint 'c' is not a site"),
    ([site("a", lat=None), site("b")], [{"a": "a", "b": "b"}], "missing coordinate 'lat'"),
    ([site("a", lat=95), site("b")], [{"a": "a", "b": "b"}], "lat: 95 is outside"),
    ([site("a", lon="x"), site("b")], [{"a": "a", "b": "b"}], "lon: must be a number"),
    ([site("a", lat=float("nan")), site("b")], [{"a": "a", "b": "b"}], "lat: must be finite"),
    ([site("A"), site("b")], [], "site id 'A' is invalid"),
    ([site("a", kind="router"), site("b")], [], "kind 'router' is not one of"),
    ([site("a"), site("b")], [{"a": "a", "b": "b", "delay_ms": -1}], "delay_ms: -1"),
    ([site("a"), site("b")], [{"a": "a", "b": "b", "delay_ms": 5000}], "outside"),
    ([site("a"), site("b")], [{"a": "a", "b": "b", "route_factor": 0.5}], "route_factor"),
    ([site("a"), site("b")], [{"a": "a", "b": "b", "bandwidth_mbps": 0}], "bandwidth_mbps"),
    ([site("a"), site("b")], [{"a": "a", "b": "b", "loss_pct": 120}], "loss_pct"),
    ([site("a"), site("b")], [{"a": "a", "b": "a"}], "two different sites"),
    ([site("a"), site("b")], [{"a": "a", "b": "b"}, {"a": "b", "b": "a"}], "duplicate link"),
    ([site("a"), site("b", lat=40)], [{"a": "a", "b": "b", "fiber_km": 10}],
     "shorter than the great-circle"),
    ([site("a"), site("b")], [{"a": "a", "b": "b", "delay_ms": 1, "jitter_ms": 2}],
     "exceeds the link's delay"),
    ([site("a"), site("b")], [{"a": "a", "b": "b", "colour": "red"}], "unknown key(s)"),
    ([site("a", hub="b"), site("b")], [{"a": "a", "b": "b"}], "has kind 'metro', not 'hub'"),
    ([site("a", zone=1), site("b")], [{"a": "a", "b": "b"}], "'zone' must be a string"),
    ([site("a"), site("b"), site("c")], [{"a": "a", "b": "b"}], "disconnected"),
])
def test_validation_errors_name_the_item(sites, links, needle):
    with pytest.raises(TopologyError) as ei:
        net_of(sites, links)
    msg = str(ei.value)
    assert needle in msg
    assert msg.startswith("t.yaml")  # names the file


def test_disconnected_message_lists_the_island():
    with pytest.raises(TopologyError, match="cannot reach the main part: c, d"):
        net_of([site("a"), site("b"), site("c"), site("d")],
               [{"a": "a", "b": "b"}, {"a": "c", "b": "d"}])


def test_compute_block_validated():
    good = net_of([site("a", kind="cluster", compute={"units": {"cuda": 4}, "pue": 1.2}),
                   site("b")], [{"a": "a", "b": "b"}])
    assert good.site("a").compute.units == {"cuda": 4}
    with pytest.raises(TopologyError, match="compute.units.cuda"):
        net_of([site("a", compute={"units": {"cuda": -1}}), site("b")], [{"a": "a", "b": "b"}])
    with pytest.raises(TopologyError, match="PUE"):
        net_of([site("a", compute={"pue": 0.5}), site("b")], [{"a": "a", "b": "b"}])


# --- YAML loader errors ----------------------------------------------------------------------

def write(tmp_path, text, name="t.yaml"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_yaml_syntax_error_names_line(tmp_path):
    p = write(tmp_path, "format: edwc-topology/1\nsites: [\n  - {id: a\n")
    with pytest.raises(TopologyError, match=r"not valid YAML at line \d+"):
        load_topology(p)


def test_yaml_wrong_format_and_unknown_key(tmp_path):
    with pytest.raises(TopologyError, match="format is 'v0'"):
        load_topology(write(tmp_path, "format: v0\nsites: []\n"))
    with pytest.raises(TopologyError, match=r"unknown top-level key\(s\) \['nodes'\]"):
        load_topology(write(tmp_path, "format: edwc-topology/1\nnodes: []\n"))


def test_missing_file_and_unknown_suffix(tmp_path):
    with pytest.raises(TopologyError, match="no such file"):
        load_topology(tmp_path / "nope.yaml")
    with pytest.raises(TopologyError, match="unknown file type '.txt'"):
        load_topology(write(tmp_path, "x", "t.txt"))


def test_yaml_empty_sites(tmp_path):
    with pytest.raises(TopologyError, match="'sites' must be a non-empty list"):
        load_topology(write(tmp_path, "format: edwc-topology/1\nsites: []\nlinks: []\n"))


# --- Topology Zoo ------------------------------------------------------------------------------

def test_graphml_missing_coords_is_an_error_with_options():
    with pytest.raises(TopologyError) as ei:
        load_topology(FIX / "zoo_small.graphml")
    msg = str(ei.value)
    assert "Nowhere" in msg and "--missing-coords drop" in msg


def test_graphml_drop_and_neighbours():
    dropped = load_topology(FIX / "zoo_small.graphml", missing_coords="drop")
    assert sorted(dropped.site_ids) == ["beijing", "guangzhou", "shanghai"]
    assert dropped.name == "TinyZoo"
    bj_sh = next(ln for ln in dropped.links if {ln.a, ln.b} == {"beijing", "shanghai"})
    assert bj_sh.bandwidth_mbps == 10000
    assert bj_sh.delay_ms == pytest.approx(1067 * 1.3 * 4.9 / 1000, rel=0.01)
    placed = load_topology(FIX / "zoo_small.graphml", missing_coords="neighbours")
    nowhere = placed.site("nowhere")
    assert (nowhere.lat, nowhere.lon) == (23.13, 113.26)  # its only neighbour
    assert "estimated" in nowhere.note


def test_gml_duplicate_labels_and_parallel_edges():
    n = load_topology(FIX / "zoo_small.gml", default_route_factor=2.0)
    assert sorted(n.site_ids) == ["beijing", "beijing_2", "shanghai"]
    assert len(n.links) == 2  # the parallel edge is merged
    assert all(ln.route_factor == 2.0 for ln in n.links)


def test_garbage_graphml(tmp_path):
    with pytest.raises(TopologyError, match="cannot parse"):
        load_topology(write(tmp_path, "<graphml><oops", "x.graphml"))


# --- the built-in backbone ---------------------------------------------------------------------

def test_edwc_hub_summary_is_plausible():
    s = hub_summary(load_topology("edwc"))
    assert len(s["pairs"]) == 28  # 8 hubs
    assert 5 < s["mean_ms"] < 15 and s["max_ms"] < 20


def test_round_trip_uses_each_direction():
    from topology.paths import round_trip_ms
    n = load_topology(FIX / "tiny.yaml")
    assert round_trip_ms(n, "east", "west") == pytest.approx(
        shortest_path(n, "east", "west").delay_ms + shortest_path(n, "west", "east").delay_ms)


def test_zone_is_optional_and_kept():
    n = net_of([site("a", zone="west"), site("b")], [{"a": "a", "b": "b"}])
    assert [s.zone for s in n.sites] == ["west", None]


def test_zoo_import_defines_no_west():
    from experiments.workload.metrics import west_sites
    net = load_topology(FIX / "zoo_small.graphml", missing_coords="drop")
    assert all(s.zone is None for s in net.sites) and west_sites(net) is None
