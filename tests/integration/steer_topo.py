"""A small steering topology for the integration tests: one metro, two clusters.

    metro --1 ms-- hub --1 ms-- near (cluster, 4 cuda units, pricey)
                    \\--8 ms-- far  (cluster, 64 cuda units, cheap and green)
"""

from __future__ import annotations

import dataclasses

from topology.model import build_network
from topology.services import make_services

SERVICE = "10.0.255.1"


def steering_network(budget_ms: float = 40.0):
    sites = [
        {"id": "metro", "kind": "metro", "lat": 31.2, "lon": 121.5, "region": "east"},
        {"id": "hubx", "kind": "hub", "lat": 31.0, "lon": 120.0, "region": "east"},
        {"id": "near", "kind": "cluster", "lat": 31.5, "lon": 119.0, "region": "east",
         "hub": "hubx", "compute": {"units": {"cuda": 4}, "energy_price": 0.7,
                                    "green_share": 0.2, "pue": 1.3}},
        {"id": "far", "kind": "cluster", "lat": 37.5, "lon": 105.2, "region": "west",
         "hub": "hubx", "compute": {"units": {"cuda": 64}, "energy_price": 0.3,
                                    "green_share": 0.7, "pue": 1.15}},
    ]
    links = [{"a": "metro", "b": "hubx", "delay_ms": 1.0},
             {"a": "hubx", "b": "near", "delay_ms": 1.0},
             {"a": "hubx", "b": "far", "delay_ms": 8.0}]
    net = build_network(sites, links, name="steer-test")
    services = make_services([{"name": "infer", "address": SERVICE, "port": 7000,
                               "budget_ms": budget_ms, "units": 2, "kinds": ["cuda"],
                               "class": "interactive"}], "steer-test")
    return dataclasses.replace(net, services=services)
