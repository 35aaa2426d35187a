#!/usr/bin/env python3
"""Bring up the EDWC backbone, route it, and compare measured RTT with the model.

    sudo python experiments/run_backbone.py            # the built-in EDWC backbone
    sudo python experiments/run_backbone.py --cli      # ... and drop into the Mininet CLI

Builds the backbone in Mininet (link delays from geography), starts the os-ken controller
as its own process, checks that every metro host reaches every cluster host, prints the
measured RTT next to the model's path delay for each metro-cluster pair, and tears
everything down (also on Ctrl-C or an error).
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from experiments import bootstrap  # noqa: E402

bootstrap.ensure()

import argparse  # noqa: E402
import json  # noqa: E402
import signal  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

from probes.ping import percentile, ping_many  # noqa: E402
from topology.emulation import DATAPATHS, LINK_MODES, PORT_TYPES, EmulationError  # noqa: E402
from topology.emulator import BuildError, Emulation  # noqa: E402
from topology.loader import MISSING_COORDS_CHOICES, load_topology  # noqa: E402
from topology.model import TopologyError  # noqa: E402
from topology.paths import measurement_pairs, round_trip_ms, shortest_path  # noqa: E402


def parse_args(argv=None):
    ap = argparse.ArgumentParser(
        prog="run_backbone.py", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--topology", default="edwc",
                    help="built-in name (edwc) or a .yaml / .graphml / .gml file (default: edwc)")
    ap.add_argument("--missing-coords", choices=MISSING_COORDS_CHOICES, default="error",
                    help="for Topology Zoo files: nodes without coordinates (default: error)")
    ap.add_argument("--link-emulation", choices=LINK_MODES, default="auto",
                    help="netem (kernel), userspace (delay line), none (no delay: the "
                         "substrate's own latency) or auto: netem where the kernel has it, "
                         "else userspace (default: auto)")
    ap.add_argument("--datapath", choices=DATAPATHS, default="auto",
                    help="OVS datapath: kernel, user (netdev) or auto: kernel where the "
                         "openvswitch module is loaded (default: auto)")
    ap.add_argument("--delay-line-priority", type=int, default=10, metavar="N",
                    help="SCHED_FIFO priority of the userspace delay line, 0 for normal "
                         "scheduling (default: 10; without it, relays that wake behind OVS's "
                         "busy PMD thread add milliseconds to the delay tail)")
    ap.add_argument("--ovs-port-type", choices=PORT_TYPES, default="auto",
                    help="on the userspace datapath: afxdp (AF_XDP, polled by a PMD thread: "
                         "low latency, slow to start) or system (AF_PACKET: fast to start, "
                         "milliseconds of extra latency on large topologies); auto picks "
                         "afxdp where Open vSwitch has it (default: auto)")
    ap.add_argument("--substrate-us", type=float, default=None,
                    help="per-hop latency of the switch substrate that the userspace delay "
                         "line subtracts (default: measured, see topology/calibrate.py)")
    ap.add_argument("--pings", type=int, default=20,
                    help="echo requests per metro-cluster pair, after one uncounted warm-up "
                         "request (ARP and flow setup) (default: 20)")
    ap.add_argument("--interval", type=float, default=0.05,
                    help="seconds between echo requests (default: 0.05)")
    ap.add_argument("--parallel", type=int, default=8,
                    help="pairs measured at the same time (default: 8)")
    ap.add_argument("--tolerance-ms", type=float, default=1.0,
                    help="flag pairs whose median RTT differs from the model RTT by more "
                         "than this (default: 1.0)")
    ap.add_argument("--json", metavar="FILE", help="also write the results as JSON to FILE")
    ap.add_argument("--seed", type=int, default=1, help="seed for loss/jitter (default: 1)")
    ap.add_argument("--keep-work-dir", action="store_true",
                    help="keep the run directory (plan, controller log, delay-line stats)")
    ap.add_argument("--cli", action="store_true",
                    help="open the Mininet CLI after the measurements; exit it to tear down")
    args = ap.parse_args(argv)
    if args.pings < 1 or args.interval <= 0 or args.parallel < 1:
        ap.error("--pings, --interval and --parallel must be positive")
    if not 0 <= args.delay_line_priority <= 99:
        ap.error("--delay-line-priority must be 0-99")
    return args


def measure(emu: Emulation, args) -> list[dict]:
    net, plan = emu.network, emu.plan
    pairs, emu.pair_kind = measurement_pairs(net, plan)
    graph = net.graph()
    rows: list[dict] = []
    t0 = time.monotonic()
    for i in range(0, len(pairs), args.parallel):
        batch = pairs[i:i + args.parallel]
        results = ping_many([(emu.net[m.name], c.ip) for m, c in batch], args.pings,
                            args.interval, warmup=1)
        status = emu.controller_status().get("paths", {})
        for (m, c), r in zip(batch, results):
            fwd = shortest_path(net, m.site, c.site, graph)
            model_rtt = round_trip_ms(net, m.site, c.site, graph)
            rows.append({
                "src": m.site, "dst": c.site, "model_path": list(fwd.path),
                "controller_path": status.get(f"{m.name}>{c.name}"),
                "model_one_way_ms": round(fwd.delay_ms, 4), "model_rtt_ms": round(model_rtt, 4),
                **{k: (round(v, 4) if isinstance(v, float) else v)
                   for k, v in r.summary().items()},
                "error_ms": round(r.median - model_rtt, 4) if r.rtts_ms else None})
        done = min(i + args.parallel, len(pairs))
        print(f"\r[measure] {done}/{len(pairs)} pairs, {time.monotonic() - t0:.1f} s",
              end="", flush=True)
    print()
    return rows


def print_table(rows: list[dict], tol: float) -> None:
    hdr = f"{'from':<11} {'to':<13} {'model RTT':>9} {'p50 RTT':>8} {'min':>7} " \
          f"{'p95':>7} {'error':>7} {'loss':>5}  path"
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        if not r["received"]:
            print(f"{r['src']:<11} {r['dst']:<13} {r['model_rtt_ms']:>9.2f} "
                  f"{'UNREACHABLE':>8}")
            continue
        flag = "" if abs(r["error_ms"]) <= tol else "  <-- off model"
        same = r["controller_path"] in (None, r["model_path"])
        path = " > ".join(r["model_path"]) + ("" if same else "  (controller: "
                                               + " > ".join(r["controller_path"]) + ")")
        print(f"{r['src']:<11} {r['dst']:<13} {r['model_rtt_ms']:>9.2f} "
              f"{r['p50_ms']:>8.2f} {r['min_ms']:>7.2f} {r['p95_ms']:>7.2f} "
              f"{r['error_ms']:>+7.2f} {r['loss']:>5.0%}  {path}{flag}")


def summarize(rows: list[dict]) -> dict:
    reached = [r for r in rows if r["received"]]
    errs = [r["error_ms"] for r in reached]
    return {"pairs": len(rows), "reachable": len(reached),
            "unreachable": [f"{r['src']}>{r['dst']}" for r in rows if not r["received"]],
            "rtt_error_ms": {"median": statistics.median(errs) if errs else None,
                             "p99": percentile(errs, 99) if errs else None,
                             "max_abs": max(map(abs, errs)) if errs else None},
            "paths_differing_from_model": [f"{r['src']}>{r['dst']}" for r in rows
                                           if r["controller_path"] not in (None,
                                                                           r["model_path"])]}


def _terminate(signum, frame):
    # SIGTERM (a CI timeout, `kill`) tears down like Ctrl-C instead of leaving the run behind
    raise KeyboardInterrupt


def main(argv=None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    try:
        net = load_topology(args.topology, missing_coords=args.missing_coords)
    except TopologyError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"[topology] {net.name}: {len(net.sites)} sites, {len(net.links)} links "
          f"({net.source})")
    emu = Emulation(net, link_emulation=args.link_emulation, datapath=args.datapath,
                    ovs_port_type=args.ovs_port_type, substrate_us=args.substrate_us,
                    delay_line_rt_priority=args.delay_line_priority,
                    seed=args.seed,
                    keep_work_dir=args.keep_work_dir)
    result: dict = {}
    try:
        emu.start()
        print(f"[up] {len(emu.plan.switches)} switches, {len(emu.plan.hosts)} hosts, "
              f"{len(emu.plan.links)} links; controller ready in {emu.timings['up_s']:.1f} s "
              f"(run {emu.run_id}, work dir {emu.work_dir})")
        rows = measure(emu, args)
        print_table(rows, args.tolerance_ms)
        summary = summarize(rows)
        e = summary["rtt_error_ms"]
        print(f"\n{summary['reachable']}/{summary['pairs']} {emu.pair_kind} pairs reachable; "
              f"RTT minus model RTT: median {e['median']:+.3f} ms, p99 {e['p99']:+.3f} ms, "
              f"max |error| {e['max_abs']:.3f} ms" if e["median"] is not None else
              "no pair reachable")
        if summary["paths_differing_from_model"]:
            print(f"controller paths differing from the model's shortest paths: "
                  f"{', '.join(summary['paths_differing_from_model'])}")
        result = {"run": emu.describe(), "summary": summary, "pairs": rows,
                  "pings_per_pair": args.pings, "interval_s": args.interval}
        if args.cli:
            from mininet.cli import CLI

            import topology.mncompat  # noqa: F401
            CLI(emu.net)
    except KeyboardInterrupt:
        print("\ninterrupted: tearing down")
        return 130
    except (BuildError, EmulationError, TopologyError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    finally:
        emu.stop()
        print(f"[down] in {emu.timings.get('down_s', 0):.1f} s")
        if args.json and result:
            result["run"]["timings"] = dict(emu.timings)
            with open(args.json, "w") as f:
                json.dump(result, f, indent=1)
            print(f"[json] {args.json}")
    return 0 if result and not result["summary"]["unreachable"] else 1


if __name__ == "__main__":
    sys.exit(main())
