#!/usr/bin/env python3
"""Probe cost: how many concurrent probe pairs this machine sustains before the measurement
itself distorts the one-way delay by more than 0.1 ms.

Each of up to --max-pairs metro-cluster pairs (a seeded sample) is first measured alone:
its solo median one-way delay, each direction, is its baseline. Then k = 1, 2, 4, 8, ...
pairs run at once (the first k of the sample), each sending --count probes every
--interval seconds. For each pair and direction, shift = median at k - solo median; the
level's shift is the median over its pairs (also reported: the worst pair). The answer is
the first k whose median shift exceeds --threshold (0.1 ms); k = 1 shows the noise floor.

    sudo python benchmarks/probe_cost.py [--max-pairs 32] [--count 100] [--interval 0.01]
"""

import argparse
import random
import statistics

import common

from probes.owd import measure_owd
from topology.emulator import Emulation
from topology.loader import load_topology
from topology.paths import measurement_pairs


def shifts(res, solo, pairs) -> dict:
    out = {}
    for d in ("forward", "reverse"):
        per = [getattr(res[p], d).p50 - solo[p][d] for p in pairs
               if getattr(res[p], d).p50 is not None and solo[p][d] is not None]
        out[d] = {"median_shift_ms": statistics.median(per) if per else None,
                  "worst_shift_ms": max(per, key=abs) if per else None}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--topology", default="edwc")
    ap.add_argument("--max-pairs", type=int, default=32)
    ap.add_argument("--count", type=int, default=100)
    ap.add_argument("--interval", type=float, default=0.01)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--threshold", type=float, default=0.1, help="ms")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--ovs-port-type", default="auto")
    args = ap.parse_args()
    net = load_topology(args.topology)
    levels, rows = [], []
    with Emulation(net, ovs_port_type=args.ovs_port_type) as emu:
        run = emu.describe()
        allp, _ = measurement_pairs(net, emu.plan)
        sample = random.Random(args.seed).sample(allp, min(args.max_pairs, len(allp)))
        pairs = [(m.name, c.name) for m, c in sample]
        solo = {}
        for i, p in enumerate(pairs):
            r = measure_owd(emu.net, [p], args.count, args.interval, args.size,
                            timeout_s=1.0)[p]
            solo[p] = {"forward": r.forward.p50, "reverse": r.reverse.p50}
            print(f"\rsolo baselines {i + 1}/{len(pairs)}", end="", flush=True)
        print()
        k = 1
        while k <= len(pairs):
            levels.append(k)
            group = pairs[:k]
            res = measure_owd(emu.net, group, args.count, args.interval, args.size,
                              timeout_s=1.0)
            sh = shifts(res, solo, group)
            lag = max(r.send_lag_ms.get("max") or 0 for r in res.values())
            late = max(r.late_start_s or 0 for r in res.values())
            loss = statistics.fmean(r.rtt.loss_pct for r in res.values())
            rows.append({"pairs": k, **sh, "max_send_lag_ms": lag, "max_late_start_s": late,
                         "mean_rtt_loss_pct": loss,
                         "probe_rate_pps": k * 2 / args.interval})
            print(f"{k:3d} pairs ({k * 2 / args.interval:6.0f} probe packets/s): median "
                  f"shift fwd {sh['forward']['median_shift_ms']:+.3f} rev "
                  f"{sh['reverse']['median_shift_ms']:+.3f} ms, worst pair fwd "
                  f"{sh['forward']['worst_shift_ms']:+.3f} rev "
                  f"{sh['reverse']['worst_shift_ms']:+.3f} ms, loss {loss:.2f}%, max send "
                  f"lag {lag:.2f} ms", flush=True)
            k *= 2
    over = [r["pairs"] for r in rows
            if max(abs(r[d]["median_shift_ms"] or 0) for d in ("forward", "reverse"))
            > args.threshold]
    first = over[0] if over else None
    print(f"\n{run['emulation']}")
    cal = run.get("calibration") or {}
    print(f"substrate compensation {run.get('substrate_us') or 0:.0f} us per link "
          f"(calibration: {cal.get('per_switch_us', 0):.0f} us per switch, residual "
          f"{cal.get('residual_us', 0):.0f} us per path); load average "
          f"{common.machine()['loadavg']}")
    print(f"first concurrency with median shift > {args.threshold} ms: "
          f"{first if first else f'none up to {levels[-1]} pairs'}")
    common.write("probe_cost", {"run": run, "count": args.count, "interval_s": args.interval,
                                "size": args.size, "threshold_ms": args.threshold,
                                "levels": rows, "first_over_threshold": first,
                                "solo": {f"{a}>{b}": v for (a, b), v in solo.items()}})


if __name__ == "__main__":
    main()
