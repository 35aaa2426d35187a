"""Loaders: our YAML format, and Internet Topology Zoo GraphML / GML with Latitude/Longitude.

Every loader returns a validated `topology.model.Network` or raises `TopologyError`
naming the file, the item and the fix.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from pathlib import Path

import networkx as nx
import yaml

from topology.model import Network, TopologyError, build_network
from topology.services import make_services

FORMAT = "edwc-topology/1"
DATA_DIR = Path(__file__).resolve().parent / "data"
MISSING_COORDS_CHOICES = ("error", "drop", "neighbours")


def builtin_names() -> list[str]:
    return sorted(p.stem for p in DATA_DIR.glob("*.yaml") if p.stem != "services")


def resolve(spec: str) -> Path:
    """A built-in topology name (e.g. 'edwc') or a file path."""
    if spec in builtin_names():
        return DATA_DIR / f"{spec}.yaml"
    return Path(spec)


def load_topology(spec: str | os.PathLike, *, missing_coords: str = "error",
                  default_route_factor: float | None = None) -> Network:
    """Load a topology by built-in name or path; the format follows the file extension."""
    path = resolve(str(spec))
    if not path.exists():
        raise TopologyError(
            f"no such file; give a path or one of the built-in topologies {builtin_names()}",
            str(path))
    suffix = path.suffix.lower()
    if suffix in (".yaml", ".yml"):
        return load_yaml(path)
    if suffix in (".graphml", ".gml"):
        return load_zoo(path, missing_coords=missing_coords,
                        route_factor=default_route_factor)
    raise TopologyError(
        f"unknown file type '{suffix}'; use .yaml (our format), .graphml or .gml "
        "(Internet Topology Zoo)", str(path))


def load_yaml(path: str | os.PathLike) -> Network:
    src = str(path)
    try:
        with open(path, encoding="utf-8") as f:
            raw = yaml.safe_load(f)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise TopologyError(f"not valid YAML{where}: {getattr(e, 'problem', e)}", src) from None
    except UnicodeDecodeError as e:
        raise TopologyError(f"not UTF-8 text ({e.reason}); save the file as UTF-8", src) from None
    if not isinstance(raw, dict):
        raise TopologyError("the top level must be a mapping with 'sites' and 'links'", src)
    fmt = raw.get("format")
    if fmt != FORMAT:
        raise TopologyError(f"format is {fmt!r}; this loader reads 'format: {FORMAT}'", src)
    known = {"format", "name", "description", "sources", "defaults", "sites", "links",
             "services"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise TopologyError(f"unknown top-level key(s) {unknown}; allowed: {sorted(known)}", src)
    defaults = raw.get("defaults") or {}
    if not isinstance(defaults, dict):
        raise TopologyError("'defaults' must be a mapping", src)
    bad = sorted(set(defaults) - {"route_factor", "bandwidth_mbps", "loss_pct", "jitter_ms"})
    if bad:
        raise TopologyError(f"defaults: unknown key(s) {bad}", src)
    sources = raw.get("sources") or []
    if not isinstance(sources, list):
        raise TopologyError("'sources' must be a list", src)
    name = raw.get("name") or Path(src).stem
    net = build_network(raw.get("sites"), raw.get("links", []), name=str(name), source=src,
                        defaults=defaults, description=str(raw.get("description") or ""),
                        sources=sources)
    if raw.get("services") is not None:
        net = dataclasses.replace(net, services=make_services(raw["services"], src))
    return net


# --- Internet Topology Zoo --------------------------------------------------------------

def _slug(label: str) -> str:
    s = re.sub(r"[^a-z0-9]+", "_", label.lower()).strip("_")
    if not s or not s[0].isalpha():
        s = "n_" + s
    return s[:24].rstrip("_")


def _coord(value) -> float | None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(v) else v


def _read_gml(src: str) -> nx.Graph:
    text = Path(src).read_text(encoding="utf-8", errors="replace")
    try:
        return nx.parse_gml(text, label="id")
    except nx.NetworkXError as e:
        if "duplicated" not in str(e):
            raise
        # Parallel links without the 'multigraph 1' header (seen in Topology Zoo files).
        return nx.parse_gml(re.sub(r"graph\s*\[", "graph [ multigraph 1", text, count=1),
                            label="id")


def load_zoo(path: str | os.PathLike, *, missing_coords: str = "error",
             route_factor: float | None = None) -> Network:
    """Read a Topology Zoo GraphML/GML file: nodes need Latitude/Longitude.

    Every node becomes a site of kind 'metro' (it gets an end host); its region is the
    node's Country attribute when present. missing_coords: 'error' (default), 'drop'
    (remove such nodes and their links) or 'neighbours' (place them at the mean of their
    neighbours' coordinates; the delays of their links are then estimates).
    """
    src = str(path)
    if missing_coords not in MISSING_COORDS_CHOICES:
        raise TopologyError(f"missing_coords must be one of {MISSING_COORDS_CHOICES}", src)
    try:
        if src.lower().endswith(".graphml"):
            g = nx.read_graphml(src)
        else:
            g = _read_gml(src)
    except Exception as e:  # networkx raises many types for malformed files
        raise TopologyError(f"cannot parse as Topology Zoo {Path(src).suffix} file: {e}",
                            src) from None
    if g.number_of_nodes() == 0:
        raise TopologyError("the graph has no nodes", src)
    simple = nx.Graph()
    for n, d in g.nodes(data=True):
        simple.add_node(n, **d)
    for u, v, d in g.edges(data=True):
        if u != v and not simple.has_edge(u, v):
            simple.add_edge(u, v, **d)

    coords: dict = {}
    missing = []
    for n, d in simple.nodes(data=True):
        lat, lon = _coord(d.get("Latitude")), _coord(d.get("Longitude"))
        if lat is None or lon is None:
            missing.append(n)
        else:
            coords[n] = (lat, lon)
    estimated = set()
    if missing:
        labels = ", ".join(str(simple.nodes[n].get("label", n)) for n in missing[:8])
        more = f" and {len(missing) - 8} more" if len(missing) > 8 else ""
        if missing_coords == "error":
            raise TopologyError(
                f"{len(missing)} node(s) have no Latitude/Longitude: {labels}{more}; "
                "add coordinates, or pass --missing-coords drop (remove them) or "
                "--missing-coords neighbours (place them between their neighbours)", src)
        if missing_coords == "drop":
            simple.remove_nodes_from(missing)
        else:
            pending = list(missing)
            while pending:
                progress = False
                for n in list(pending):
                    known = [coords[m] for m in simple.neighbors(n) if m in coords]
                    if known:
                        coords[n] = (sum(c[0] for c in known) / len(known),
                                     sum(c[1] for c in known) / len(known))
                        estimated.add(n)
                        pending.remove(n)
                        progress = True
                if not progress:
                    raise TopologyError(
                        "cannot place nodes without coordinates that have no placed "
                        f"neighbour: {pending[:8]}; use --missing-coords drop", src)

    ids: dict = {}
    used: set[str] = set()
    sites = []
    for n, d in simple.nodes(data=True):
        label = str(d.get("label", n))
        sid = base = _slug(label)
        k = 2
        while sid in used:
            suffix = f"_{k}"
            sid = base[: 24 - len(suffix)] + suffix
            k += 1
        used.add(sid)
        ids[n] = sid
        lat, lon = coords[n]
        sites.append({"id": sid, "name": label, "kind": "metro", "lat": lat, "lon": lon,
                      "region": _slug(str(d.get("Country") or "zoo")),
                      **({"note": "coordinates estimated from neighbours"}
                         if n in estimated else {})})
    links = []
    for u, v, d in simple.edges(data=True):
        rec: dict = {"a": ids[u], "b": ids[v], "kind": "zoo"}
        if route_factor is not None:
            rec["route_factor"] = route_factor
        speed = _coord(d.get("LinkSpeedRaw"))
        if speed and speed > 0:
            rec["bandwidth_mbps"] = min(speed / 1e6, 400_000.0)
        links.append(rec)
    name = str(g.graph.get("label") or g.graph.get("Network") or Path(src).stem)
    return build_network(sites, links, name=name, source=src,
                         description=f"Imported from Internet Topology Zoo file {Path(src).name}")
