"""Latency-shortest paths on the model (no emulation): used by reports, the CLI and tests."""

from __future__ import annotations

import statistics
from dataclasses import dataclass

import networkx as nx

from topology.model import Network

# CAICT, Q1 2024: optical-layer one-way latency between national hub nodes.
CAICT_HUB_MEAN_MS = 9.7
CAICT_HUB_MAX_MS = 17.1


@dataclass(frozen=True)
class PathDelay:
    src: str
    dst: str
    path: tuple[str, ...]
    delay_ms: float  # one-way, src -> dst

    @property
    def hops(self) -> int:
        return len(self.path) - 1


def shortest_path(net: Network, src: str, dst: str, graph: nx.DiGraph | None = None
                  ) -> PathDelay:
    g = graph if graph is not None else net.graph()
    path = nx.dijkstra_path(g, src, dst, weight="delay_ms")
    delay = sum(g[u][v]["delay_ms"] for u, v in zip(path, path[1:]))
    return PathDelay(src, dst, tuple(path), delay)


def round_trip_ms(net: Network, a: str, b: str, graph: nx.DiGraph | None = None) -> float:
    """The model's RTT between two sites: shortest path there plus shortest path back
    (the two may differ on asymmetric links)."""
    g = graph if graph is not None else net.graph()
    return shortest_path(net, a, b, g).delay_ms + shortest_path(net, b, a, g).delay_ms


def measurement_pairs(net: Network, plan) -> tuple[list, str]:
    """Host pairs to measure: every metro host to every cluster host; where a topology lacks
    one of the two kinds (a Topology Zoo import has only metros), every unordered pair."""
    metros = [h for h in plan.hosts if net.site(h.site).kind == "metro"]
    clusters = [h for h in plan.hosts if net.site(h.site).kind == "cluster"]
    if metros and clusters:
        return [(m, c) for m in metros for c in clusters], "metro-cluster"
    hosts = list(plan.hosts)
    return [(a, b) for i, a in enumerate(hosts) for b in hosts[i + 1:]], "host"


def pair_delays(net: Network, sources: list[str], targets: list[str]) -> list[PathDelay]:
    g = net.graph()
    out = []
    for s in sources:
        lengths, paths = nx.single_source_dijkstra(g, s, weight="delay_ms")
        for t in targets:
            if t != s and t in lengths:
                out.append(PathDelay(s, t, tuple(paths[t]), lengths[t]))
    return out


def hub_summary(net: Network) -> dict:
    """One-way delays between every pair of hub nodes, with mean and max."""
    hubs = [s.id for s in net.sites_of_kind("hub")]
    pairs = [p for p in pair_delays(net, hubs, hubs) if p.src < p.dst]
    if not pairs:
        return {"pairs": [], "mean_ms": None, "max_ms": None}
    delays = [p.delay_ms for p in pairs]
    return {"pairs": pairs, "mean_ms": statistics.fmean(delays), "max_ms": max(delays),
            "caict_mean_ms": CAICT_HUB_MEAN_MS, "caict_max_ms": CAICT_HUB_MAX_MS}
