"""Run a complete compute-aware routing experiment on the EDWC backbone and write a report.

    sudo python experiments/run_backbone.py                 # the built-in EDWC backbone
    sudo python experiments/run_backbone.py --quick         # a shorter run (fewer probes)
    sudo python experiments/run_backbone.py --policy greenest --duration 120 --seed 7
    sudo python experiments/run_backbone.py --cli           # ... then the Mininet CLI

Phases:
  1. build:    the backbone in Mininet (link delays from geography), the os-ken controller
               as its own process, one gateway agent per data-center cluster;
  2. envelope: one-way delay both ways for every metro-cluster pair, judged against the
               latency circles (1 ms city, 5 ms region, 20 ms between hubs; p95);
  3. workload: a seeded workload (Poisson, diurnal: one simulated day over --duration
               seconds; batch work deferred to the cheap western night) sent from the metro
               hosts to the compute services; the controller places every flow;
  4. report:   a directory with report.json (everything, including configuration, seed,
               versions and the link-emulation path), report.md and PNG plots.
Ctrl-C at any point tears everything down and still writes what was measured.
Exit status: 0 complete, 1 a check failed (an envelope, an unreachable pair), 2 bad input or
an error, 130 interrupted.
"""

from __future__ import annotations

import argparse
import sys

from experiments.framework import cli
from experiments.framework.runner import Experiment


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="run_backbone.py", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_topology_options(ap)
    cli.add_controller_options(ap)
    cli.add_workload_options(ap, duration=60.0)
    cli.add_envelope_options(ap)
    cli.add_run_options(ap)
    ap.add_argument("--quick", action="store_true",
                    help="a short run: envelopes of each metro to its nearest and farthest "
                         "cluster only, a 15 s workload (explicit --duration and "
                         "--envelope-* options win)")
    args = ap.parse_args(argv)
    cli.apply_quick(args)
    cli.check_common(ap, args)
    return args


def body(exp: Experiment, args: argparse.Namespace) -> None:
    from experiments.framework import steps

    with exp.phase("topology"):
        net = cli.load_network(args)
        exp.progress(f"topology {net.name}: {len(net.sites)} sites, {len(net.links)} links "
                     f"({net.source}); compute scaled x{args.capacity_scale_used:g}")
    with exp.phase("build"):
        emu = exp.start_emulation(net, **cli.emulation_options(args))
    if args.envelope_count > 0:
        with exp.phase("envelope"):
            steps.verify_envelopes(exp, emu, net, pairs_mode=args.envelope_pairs,
                                   count=args.envelope_count,
                                   interval_s=args.envelope_interval,
                                   parallel=args.envelope_parallel, tiers=args.tiers)
    with exp.phase("workload"):
        requests = cli.make_requests(exp, args, net, emu.plan)
        cli.run_requests(exp, emu, requests, args)
    with exp.phase("collect"):
        cli.collect(exp, emu, requests, args)


def main(argv=None) -> int:
    return cli.main("backbone", "Compute-aware routing on the backbone",
                    parse_args, body, argv)


if __name__ == "__main__":
    sys.exit(main())
