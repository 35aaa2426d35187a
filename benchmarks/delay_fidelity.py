#!/usr/bin/env python3
"""Delay fidelity: measured minus configured one-way delay over the EDWC metro-cluster paths.

One-way delay is estimated as RTT/2 against the mean of the configured forward and reverse
path delays (a true one-way probe comes with the probes package). Light load: a few pairs
at a time, pings at 20 ms intervals, after one uncounted warm-up ping per pair (ARP and
flow setup, ~6 ms, are not path delay). Target on the userspace path: median error <= 0.3 ms,
p99 <= 1 ms.

    sudo python benchmarks/delay_fidelity.py [--pings 40] [--parallel 4] [--ovs-port-type ...]
"""

import argparse

import benchlib

from emulation.network import Emulation, LinkConfig
from probes.ping import ping_many
from topology.loader import load_topology
from topology.paths import measurement_pairs, round_trip_ms


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--topology", default="edwc")
    ap.add_argument("--pings", type=int, default=40)
    ap.add_argument("--interval", type=float, default=0.02)
    ap.add_argument("--parallel", type=int, default=4)
    ap.add_argument("--link-emulation", default="auto")
    ap.add_argument("--ovs-port-type", default="auto")
    ap.add_argument("--substrate-us", type=float, default=None)
    ap.add_argument("--delay-line-priority", type=int, default=10,
                    help="SCHED_FIFO priority of the relays, 0: normal scheduling")
    args = ap.parse_args()
    net = load_topology(args.topology)
    g = net.graph()
    per_sample, per_pair = [], []
    with Emulation(net, links=LinkConfig(
            link_emulation=args.link_emulation, ovs_port_type=args.ovs_port_type,
            substrate_us=args.substrate_us,
            delay_line_rt_priority=args.delay_line_priority)) as emu:
        run = emu.describe()
        pairs, _ = measurement_pairs(net, emu.plan)
        for i in range(0, len(pairs), args.parallel):
            batch = pairs[i:i + args.parallel]
            res = ping_many([(emu.net[m.name], c.ip) for m, c in batch], args.pings,
                            args.interval, warmup=1)
            for (m, c), r in zip(batch, res):
                conf = round_trip_ms(net, m.site, c.site, g) / 2
                errs = [rtt / 2 - conf for rtt in r.rtts_ms]
                per_sample += errs
                if errs:
                    per_pair.append({"pair": f"{m.site}>{c.site}", "configured_ms": conf,
                                     "median_error_ms": benchlib.stats(errs)["median"],
                                     "lost": r.sent - r.received})
            print(f"\r{min(i + args.parallel, len(pairs))}/{len(pairs)} pairs", end="",
                  flush=True)
    s = benchlib.stats(per_sample)
    pm = benchlib.stats([p["median_error_ms"] for p in per_pair])
    print(f"\n\n{run['emulation']}")
    print(f"one-way error (RTT/2 - configured), all {s['n']} samples: median "
          f"{s['median']:+.3f} ms, p99 {s['p99']:+.3f} ms, min {s['min']:+.3f}, "
          f"max {s['max']:+.3f}")
    print(f"per-pair median errors over {pm['n']} pairs: median {pm['median']:+.3f} ms, "
          f"p99 {pm['p99']:+.3f} ms")
    print("target (userspace path): median <= 0.3 ms, p99 <= 1 ms")
    benchlib.write("delay_fidelity", {"run": run, "samples": s, "pairs": pm,
                                    "per_pair": per_pair, "pings": args.pings,
                                    "interval_s": args.interval, "parallel": args.parallel})


if __name__ == "__main__":
    main()
