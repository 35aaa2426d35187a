#!/usr/bin/env python3
"""Controller-side link-delay measurement (C-NMA): measured vs configured one-way link delay.

Builds the topology, lets the controller probe every link (discovery probes carry their send
time; per-switch self-probes measure the control path they share), waits until every
directed link has --samples estimates, and compares the controller's published estimate
(state API `links`) with the plan's configured delay, per direction.

    sudo python benchmarks/cnma_accuracy.py [--topology edwc] [--probe-interval 0.25]
        [--samples 12]
"""

import argparse
import time

import benchlib

from controller.netmetric import compare
from emulation.network import ControllerConfig, Emulation
from topology.loader import load_topology


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--topology", default="edwc")
    ap.add_argument("--probe-interval", type=float, default=0.25)
    ap.add_argument("--samples", type=int, default=12)
    ap.add_argument("--timeout", type=float, default=120.0)
    args = ap.parse_args()
    net = load_topology(args.topology)
    with Emulation(net, controller=ControllerConfig(probe_interval=args.probe_interval),
                   agents=None) as emu:
        want = len(emu.plan.expected_directed_links())
        deadline = time.monotonic() + args.timeout
        while True:
            view = emu.api("links")
            samples = [v["samples"] for v in view["measurement"]["links"].values()]
            print(f"\r{len(samples)}/{want} links, min samples {min(samples or [0])}", end="",
                  flush=True)
            if len(samples) >= want and min(samples) >= args.samples:
                break
            if time.monotonic() > deadline:
                print("\ntimed out waiting for samples; reporting what there is")
                break
            time.sleep(0.5)
        result = compare(view["measurement"], emu.plan.directed_delays())
        run = emu.describe()
    s = result["summary"]
    errs = sorted(v["error_ms"] for v in result["links"].values()
                  if v.get("error_ms") is not None)
    print(f"\n\n{run['emulation']}")
    print(f"{s['n']} directed links: mean error {s['mean_error_ms']:+.3f} ms, median |error| "
          f"{s['median_abs_error_ms']:.3f} ms, p95 |error| {s['p95_abs_error_ms']:.3f} ms, "
          f"max |error| {s['max_abs_error_ms']:.3f} ms")
    if errs:
        print(f"signed error range {errs[0]:+.3f} .. {errs[-1]:+.3f} ms")
    benchlib.write("cnma_accuracy", {"args": vars(args), "summary": s, "links": result["links"],
                                   "run": run})


if __name__ == "__main__":
    main()
