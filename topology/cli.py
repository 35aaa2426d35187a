"""`python -m topology`: print and validate a topology, without building anything.

    python -m topology show [edwc|FILE]      sites, links (km, ms), hub-to-hub delays vs CAICT
    python -m topology validate FILE         check a file without building anything

(Cleaning up after a crashed run and the link-emulation check are `python -m emulation`.)
"""

from __future__ import annotations

import argparse
import json
import sys

from topology.loader import MISSING_COORDS_CHOICES, load_topology
from topology.model import Network, TopologyError
from topology.paths import hub_summary


def _is_number(x) -> bool:
    try:
        float(str(x).split("/")[0])
        return True
    except ValueError:
        return False


def _table(rows: list[list], headers: list[str]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows)]
    numeric = [all(_is_number(r[i]) for r in rows) for i in range(len(headers))]
    fmt = "  ".join(f"{{:{'>' if num else '<'}{w}}}" for w, num in zip(widths, numeric))
    lines = [fmt.format(*headers), fmt.format(*("-" * w for w in widths))]
    lines += [fmt.format(*map(str, r)) for r in rows]
    return "\n".join(lines)


def render(net: Network) -> str:
    out = [f"Topology {net.name} ({net.source}): {len(net.sites)} sites, {len(net.links)} links"]
    site_rows = [[s.id, s.kind, s.region, s.hub or "-", f"{s.lat:.4f}", f"{s.lon:.4f}",
                  s.name + (f" {s.name_zh}" if s.name_zh else "")] for s in net.sites]
    out += ["", "Sites", _table(site_rows, ["id", "kind", "region", "hub", "lat", "lon", "name"])]
    link_rows = []
    for ln in net.links:
        fib = f"{ln.fiber_km:.0f}" if ln.fiber_km is not None else "-"
        d = f"{ln.delay_ms:.3f}"
        if ln.delay_ms_reverse != ln.delay_ms:
            d += f"/{ln.delay_ms_reverse:.3f}"
        link_rows.append([ln.a, ln.b, ln.kind, f"{ln.distance_km:.0f}", fib, ln.delay_source, d,
                          f"{ln.bandwidth_mbps:g}"])
    out += ["", "Links (one-way delay; a/b when asymmetric)",
            _table(link_rows, ["a", "b", "kind", "gc_km", "fiber_km", "from", "delay_ms",
                               "Mbit/s"])]
    hs = hub_summary(net)
    if hs["pairs"]:
        rows = [[p.src, p.dst, f"{p.delay_ms:.2f}", " > ".join(p.path)] for p in hs["pairs"]]
        out += ["", "Hub-to-hub one-way delay on latency-shortest paths",
                _table(rows, ["from", "to", "ms", "path"]), "",
                f"hub-to-hub mean {hs['mean_ms']:.2f} ms, max {hs['max_ms']:.2f} ms "
                f"(CAICT Q1 2024, optical layer between hubs: mean {hs['caict_mean_ms']} ms, "
                f"max {hs['caict_max_ms']} ms)"]
    return "\n".join(out)


def as_json(net: Network) -> dict:
    hs = hub_summary(net)
    return {"name": net.name, "source": net.source,
            "sites": [s.__dict__ | {"compute": s.compute.__dict__ if s.compute else None}
                      for s in net.sites],
            "links": [ln.__dict__ for ln in net.links],
            "hub_pairs": [{"src": p.src, "dst": p.dst, "delay_ms": p.delay_ms,
                           "path": list(p.path)} for p in hs["pairs"]],
            "hub_mean_ms": hs["mean_ms"], "hub_max_ms": hs["max_ms"]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m topology", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("show", "validate"):
        p = sub.add_parser(name)
        p.add_argument("topology", nargs="?" if name == "show" else None, default="edwc",
                       help="built-in name (edwc) or a .yaml/.graphml/.gml file")
        p.add_argument("--missing-coords", choices=MISSING_COORDS_CHOICES, default="error",
                       help="Topology Zoo nodes without coordinates (default: error)")
        p.add_argument("--route-factor", type=float, default=None,
                       help="route factor for Topology Zoo links (default 1.3)")
        if name == "show":
            p.add_argument("--json", action="store_true", help="machine-readable output")
    args = ap.parse_args(argv)
    try:
        net = load_topology(args.topology, missing_coords=args.missing_coords,
                            default_route_factor=args.route_factor)
    except TopologyError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.cmd == "validate":
        print(f"{net.source}: OK, {len(net.sites)} sites, {len(net.links)} links")
    elif args.json:
        json.dump(as_json(net), sys.stdout, indent=1, default=str)
        print()
    else:
        print(render(net))
    return 0


if __name__ == "__main__":
    sys.exit(main())
