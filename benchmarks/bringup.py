#!/usr/bin/env python3
"""Time to bring the full backbone up (all switches connected, all links discovered and
routed, every host reachable from one host) and down. Target: up <= 10 s, down <= 3 s.

    sudo python benchmarks/bringup.py [--repeat 2] [--ovs-port-type auto|system|afxdp]
"""

import argparse
import time

import benchlib

from emulation.network import Emulation, LinkConfig
from probes.ping import ping_many
from topology.loader import load_topology


def once(net, port_type: str) -> dict:
    t0 = time.monotonic()
    emu = Emulation(net, links=LinkConfig(ovs_port_type=port_type), log=lambda *_: None)
    emu.start()
    try:
        first = emu.plan.hosts[0]
        src = emu.net[first.name]
        results = ping_many([(src, h.ip) for h in emu.plan.hosts[1:]], count=1,
                            interval_s=0.2)
        unreachable = [h.name for h, r in zip(emu.plan.hosts[1:], results) if not r.received]
        up = time.monotonic() - t0
        desc = emu.describe()
    finally:
        t1 = time.monotonic()
        emu.stop()
        down = time.monotonic() - t1
    return {"up_s": up, "controller_ready_s": desc["timings"]["up_s"], "down_s": down,
            "unreachable": unreachable, "emulation": desc["emulation"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--topology", default="edwc")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--ovs-port-type", action="append",
                    help="repeatable; default: auto and system")
    args = ap.parse_args()
    net = load_topology(args.topology)
    out = {}
    for pt in args.ovs_port_type or ["auto", "system"]:
        runs = [once(net, pt) for _ in range(args.repeat)]
        up = benchlib.stats([r["up_s"] for r in runs])
        down = benchlib.stats([r["down_s"] for r in runs])
        ports = runs[0]["emulation"]["port_type"]
        print(f"{net.name}, OVS ports {ports}: up median {up['median']:.1f} s "
              f"(max {up['max']:.1f}), down median {down['median']:.1f} s "
              f"(max {down['max']:.1f}) over {len(runs)} runs; unreachable: "
              f"{sorted({u for r in runs for u in r['unreachable']}) or 'none'}")
        out[ports] = {"runs": runs, "up": up, "down": down}
    print("targets: up <= 10 s, down <= 3 s")
    benchlib.write("bringup", {"topology": net.name, "results": out})


if __name__ == "__main__":
    main()
