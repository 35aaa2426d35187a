"""`python -m probes`: latency-envelope verdicts and path verification on an emulated topology.

    sudo python -m probes envelope [--topology edwc|FILE] [--tiers FILE] [--percentile 95]
        [--metric one-way|rtt] [--count N] [--interval S] [--pairs metro-cluster|all|hubs]
        [--json FILE] [--markdown FILE] [--link-emulation auto|netem|userspace|none]
    sudo python -m probes paths [--topology edwc|FILE] [--pairs ...] [--count N] [--json FILE]

`envelope` builds the emulation, measures one-way delay both ways and the round trip of the
same packets for each pair (probes.owd), judges each pair against its latency circle
(probes.envelope, tiers from probes/data/envelopes.yaml or --tiers) and prints the table.
`paths` checks, with OpenFlow counters, which switches each pair's packets crossed against
the path the controller announced (probes.pathcheck).

Exit status: 0 every tier passed / every path matched; 1 a tier failed / a path mismatched
(or was inconclusive); 2 bad input, a failed build, or no verdict possible (every tier
lacks enough samples); 130 interrupted (everything torn down).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys

from emulation.linkmode import DATAPATHS, LINK_MODES, PORT_TYPES, EmulationError
from probes.envelope import (
    METRICS,
    PAIR_MODES,
    EnvelopeError,
    evaluate,
    load_envelopes,
    select_pairs,
)
from topology.loader import load_topology
from topology.model import TopologyError


def _common(p: argparse.ArgumentParser, default_pairs: str) -> None:
    p.add_argument("--topology", default="edwc",
                   help="built-in name (edwc) or a .yaml/.graphml/.gml file (default: edwc)")
    p.add_argument("--pairs", choices=PAIR_MODES, default=default_pairs,
                   help="metro-cluster: every metro to every cluster; all: every pair of "
                        "hosts; hubs: one host per national hub, every pair of hubs "
                        f"(default: {default_pairs})")
    p.add_argument("--link-emulation", choices=LINK_MODES, default="auto",
                   help="netem, userspace (delay line), none, or auto (default: auto)")
    p.add_argument("--datapath", choices=DATAPATHS, default="auto",
                   help="OVS datapath: kernel, user or auto (default: auto)")
    p.add_argument("--ovs-port-type", choices=PORT_TYPES, default="auto",
                   help="userspace datapath port type (default: auto)")
    p.add_argument("--keep-work-dir", action="store_true",
                   help="keep the run directory (plan, controller log)")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON to FILE")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m probes", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    env = sub.add_parser("envelope", help="judge measured delays against the latency circles")
    _common(env, "metro-cluster")
    env.add_argument("--tiers", metavar="FILE",
                     help="tier file (default: probes/data/envelopes.yaml)")
    env.add_argument("--percentile", type=float, default=None,
                     help="percentile compared with each threshold (default: the tier file's, "
                          "95)")
    env.add_argument("--metric", choices=METRICS, default=None,
                     help="judge every tier on this reading (default: each tier's own metric; "
                          "both readings are always reported)")
    env.add_argument("--count", type=int, default=100, help="probes per pair (default: 100)")
    env.add_argument("--interval", type=float, default=0.01,
                     help="seconds between probes (default: 0.01)")
    env.add_argument("--parallel", type=int, default=4,
                     help="pairs measured at the same time (default: 4; benchmarks/probe_cost.py "
                          "measured +0.09 ms distortion at 4 pairs, +0.22 ms at 8 on a 2-core VM)")
    env.add_argument("--min-samples", type=int, default=None,
                     help="fewer samples give no verdict (default: the tier file's, 20)")
    env.add_argument("--max-loss", type=float, default=None, metavar="PCT",
                     help="more loss (percent) gives no verdict (default: the tier file's, 5)")
    env.add_argument("--markdown", metavar="FILE", help="also write a Markdown report")
    paths = sub.add_parser("paths", help="verify forwarding paths with OpenFlow counters")
    _common(paths, "metro-cluster")
    paths.add_argument("--count", type=int, default=200,
                       help="UDP packets per pair (default: 200)")
    paths.add_argument("--interval", type=float, default=0.002,
                       help="seconds between packets (default: 0.002)")
    args = ap.parse_args(argv)
    if args.count < 1:
        ap.error("--count must be >= 1")
    if not args.interval > 0:
        ap.error("--interval must be > 0")
    if args.cmd == "envelope":
        if args.percentile is not None and not 0 < args.percentile <= 100:
            ap.error("--percentile must be in (0, 100]")
        if args.parallel < 1:
            ap.error("--parallel must be >= 1")
        if args.min_samples is not None and args.min_samples < 1:
            ap.error("--min-samples must be >= 1")
        if args.max_loss is not None and not 0 <= args.max_loss <= 100:
            ap.error("--max-loss must be in [0, 100]")
    return args


def _terminate(signum, frame):
    raise KeyboardInterrupt  # SIGTERM tears down like Ctrl-C


def _emulation(net, args):
    from emulation.network import Emulation, LinkConfig
    return Emulation(net, links=LinkConfig(link_emulation=args.link_emulation,
                                           datapath=args.datapath,
                                           ovs_port_type=args.ovs_port_type),
                     keep_work_dir=args.keep_work_dir)


def run_envelope(args, net) -> int:
    from dataclasses import replace

    from probes.envelope_report import render_markdown, render_table, to_json
    from probes.owd import ProbeError, measure_owd

    cfg = load_envelopes(args.tiers)
    cfg = replace(cfg, **{k: v for k, v in (("percentile", args.percentile),
                                            ("min_samples", args.min_samples),
                                            ("max_loss_pct", args.max_loss)) if v is not None})
    if args.count < cfg.min_samples:
        raise EnvelopeError(f"--count {args.count} is below the {cfg.min_samples} samples a "
                            "verdict needs: raise --count or lower --min-samples")
    pairs = select_pairs(net, args.pairs)
    emu = _emulation(net, args)
    results, errors = {}, {}
    with emu:
        print(f"[up] run {emu.run_id}: {len(emu.plan.switches)} switches, "
              f"{len(pairs)} {args.pairs} pairs; {args.count} probes each every "
              f"{args.interval:g} s, {args.parallel} pairs at a time", flush=True)
        for i in range(0, len(pairs), args.parallel):
            batch = pairs[i:i + args.parallel]
            try:
                results.update(measure_owd(emu.net, batch, count=args.count,
                                           interval_s=args.interval))
            except ProbeError as e:
                errors.update({p: f"probe failed: {e}" for p in batch})
            print(f"\r[measure] {min(i + args.parallel, len(pairs))}/{len(pairs)} pairs",
                  end="", flush=True)
        print()
        meta = {"topology": net.name, "topology_source": net.source, "run_id": emu.run_id,
                "pairs_mode": args.pairs, "count": args.count, "interval_s": args.interval,
                "link_emulation": emu.choice.link if emu.choice else None,
                "run": emu.describe(),
                "measurements": {f"{a}>{b}": r.to_dict() for (a, b), r in results.items()}}
    report = evaluate(net, pairs, results, cfg, args.metric, meta, errors=errors)
    print(render_table(report))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(to_json(report), f, indent=1, default=str)
        print(f"[json] {args.json}")
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(render_markdown(report))
        print(f"[markdown] {args.markdown}")
    return report.exit_code


def run_paths(args, net) -> int:
    from probes.pathcheck import MATCH, check_to_dict, render_checks, verify_paths

    pairs = select_pairs(net, args.pairs)
    with _emulation(net, args) as emu:
        print(f"[up] run {emu.run_id}: {len(emu.plan.switches)} switches, {len(pairs)} "
              f"{args.pairs} pairs, {args.count} UDP packets each", flush=True)
        checks = verify_paths(emu, pairs, count=args.count, interval_s=args.interval,
                              log=lambda m: print(m, flush=True))
        describe = emu.describe()
    print(render_checks(checks))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"format": "edwc-pathcheck/1", "run": describe,
                       "pairs": [check_to_dict(c) for c in checks]}, f, indent=1, default=str)
        print(f"[json] {args.json}")
    return 0 if all(c.status == MATCH for c in checks) else 1


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    from emulation.network import BuildError
    from probes.pathcheck import PathCheckError
    try:
        if args.cmd == "envelope":
            load_envelopes(args.tiers)  # a bad tier file fails before anything is built
        net = load_topology(args.topology)
        select_pairs(net, args.pairs)
        return run_envelope(args, net) if args.cmd == "envelope" else run_paths(args, net)
    except (EnvelopeError, TopologyError, BuildError, EmulationError, PathCheckError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted: torn down", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
