#!/usr/bin/env python3
"""Probe accuracy: measured one-way delay (probes.owd) minus the configured one-way path
delay, each direction, over the EDWC metro-cluster paths, on this machine's link-emulation
path.

Forward (metro -> cluster) is compared with the model's shortest path metro -> cluster,
reverse with cluster -> metro (they differ only on asymmetric links). Light load: a few
pairs at a time, probes every 20 ms after 2 uncounted warm-up probes (ARP, flow setup).
Reports the median and p99 error over every sample and over per-pair medians, and the
per-pair minimum error (the delay floor: what is left when no queueing or scheduling delay
is added, i.e. the configured delay plus the substrate residual plus the probe's own cost).

    sudo python benchmarks/probe_accuracy.py [--count 40] [--parallel 4] [--ovs-port-type ...]
"""

import argparse

import benchlib

from emulation.network import Emulation, LinkConfig
from probes.owd import measure_owd
from topology.loader import load_topology
from topology.paths import measurement_pairs, shortest_path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--topology", default="edwc")
    ap.add_argument("--count", type=int, default=40, help="probes per pair")
    ap.add_argument("--interval", type=float, default=0.02)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--parallel", type=int, default=4)
    ap.add_argument("--link-emulation", default="auto")
    ap.add_argument("--ovs-port-type", default="auto")
    ap.add_argument("--substrate-us", type=float, default=None)
    args = ap.parse_args()
    net = load_topology(args.topology)
    g = net.graph()
    errs = {"forward": [], "reverse": []}
    per_pair = []
    with Emulation(net, links=LinkConfig(
            link_emulation=args.link_emulation, ovs_port_type=args.ovs_port_type,
            substrate_us=args.substrate_us)) as emu:
        run = emu.describe()
        pairs, _ = measurement_pairs(net, emu.plan)
        for i in range(0, len(pairs), args.parallel):
            batch = pairs[i:i + args.parallel]
            res = measure_owd(emu.net, [(m.name, c.name) for m, c in batch], args.count,
                              args.interval, args.size, warmup=2, timeout_s=1.0)
            for m, c in batch:
                r = res[(m.name, c.name)]
                conf = {"forward": shortest_path(net, m.site, c.site, g).delay_ms,
                        "reverse": shortest_path(net, c.site, m.site, g).delay_ms}
                row = {"pair": f"{m.site}>{c.site}", "loss_split_known": r.loss_split_known}
                for d, s in (("forward", r.forward), ("reverse", r.reverse)):
                    e = [x - conf[d] for x in s.samples]
                    errs[d] += e
                    row[d] = {"configured_ms": conf[d], "lost": s.lost,
                              "median_error_ms": benchlib.stats(e).get("median"),
                              "p99_error_ms": benchlib.stats(e).get("p99"),
                              "min_error_ms": benchlib.stats(e).get("min"),
                              "jitter_ms": s.jitter}
                per_pair.append(row)
            print(f"\r{min(i + args.parallel, len(pairs))}/{len(pairs)} pairs", end="",
                  flush=True)
    out = {"run": run, "count": args.count, "interval_s": args.interval, "size": args.size,
           "parallel": args.parallel, "per_pair": per_pair}
    print(f"\n\n{run['emulation']}")
    cal = run.get("calibration") or {}
    print(f"substrate compensation {run.get('substrate_us') or 0:.0f} us per link "
          f"(calibration: {cal.get('per_switch_us', 0):.0f} us per switch, residual "
          f"{cal.get('residual_us', 0):.0f} us per path); load average "
          f"{benchlib.machine()['loadavg']}")
    for d in ("forward", "reverse"):
        s = benchlib.stats(errs[d])
        pm = benchlib.stats([p[d]["median_error_ms"] for p in per_pair
                           if p[d]["median_error_ms"] is not None])
        lost = sum(p[d]["lost"] for p in per_pair)
        floor = benchlib.stats([p[d]["min_error_ms"] for p in per_pair
                              if p[d]["min_error_ms"] is not None])
        out[d] = {"samples": s, "pair_medians": pm, "pair_minima": floor, "lost": lost}
        if not s["n"]:
            print(f"{d}: no samples")
            continue
        print(f"{d:8s} one-way error (measured - configured), {s['n']} samples: median "
              f"{s['median']:+.3f} ms, p99 {s['p99']:+.3f} ms, min {s['min']:+.3f}, "
              f"max {s['max']:+.3f}; per-pair medians: median {pm['median']:+.3f}, p99 "
              f"{pm['p99']:+.3f} ms over {pm['n']} pairs; per-pair minima: median "
              f"{floor['median']:+.3f} ms; {lost} lost")
    benchlib.write("probe_accuracy", out)


if __name__ == "__main__":
    main()
