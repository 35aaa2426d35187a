#!/usr/bin/env python3
"""Probe cost: how many concurrent probe pairs this machine sustains before the measurement
itself distorts the one-way delay by more than 0.1 ms.

Each of up to --max-pairs metro-cluster pairs (a seeded sample) is first measured alone,
--repeats times: the median of its solo medians, each direction, is its baseline. Then
k = 1, 2, 4, 8, ... pairs run at once (the first k of the sample; the senders agree on a
common start time), each sending --count probes every --interval seconds, --repeats times.
For each pair and direction, shift = median at k - baseline; a run's shift is the median
over its pairs, the level's shift the median over its runs (the worst pair is reported too).
The answer is the first k whose shift exceeds --threshold (0.1 ms) in either direction;
k = 1 shows the noise floor. Repeats damp, but cannot remove, the effect of other work on
the machine (another emulation's relays and OVS threads share the same cores).

    sudo python benchmarks/probe_cost.py [--max-pairs 32] [--count 100] [--interval 0.01]
"""

import argparse
import random
import statistics

import benchlib

from emulation.network import Emulation, LinkConfig
from probes.owd import measure_owd
from topology.loader import load_topology
from topology.paths import measurement_pairs

DIRS = ("forward", "reverse")


def median_or_none(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def f3(x) -> str:
    return "n/a" if x is None else f"{x:+.3f}"


def run_shifts(res, base, group) -> dict:
    out = {}
    for d in DIRS:
        per = [getattr(res[p], d).p50 - base[p][d] for p in group
               if getattr(res[p], d).p50 is not None and base[p][d] is not None]
        out[d] = (statistics.median(per) if per else None,
                  max(per, key=abs) if per else None)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--topology", default="edwc")
    ap.add_argument("--max-pairs", type=int, default=32)
    ap.add_argument("--count", type=int, default=100)
    ap.add_argument("--interval", type=float, default=0.01)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threshold", type=float, default=0.1, help="ms")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--ovs-port-type", default="auto")
    args = ap.parse_args()
    net = load_topology(args.topology)
    rows = []

    def owd(group):
        return measure_owd(emu.net, group, args.count, args.interval, args.size,
                           timeout_s=1.0)

    with Emulation(net, links=LinkConfig(ovs_port_type=args.ovs_port_type)) as emu:
        run = emu.describe()
        allp, _ = measurement_pairs(net, emu.plan)
        sample = random.Random(args.seed).sample(allp, min(args.max_pairs, len(allp)))
        pairs = [(m.name, c.name) for m, c in sample]
        solo_runs = {p: {d: [] for d in DIRS} for p in pairs}
        for rep in range(args.repeats):
            for i, p in enumerate(pairs):
                r = owd([p])[p]
                for d in DIRS:
                    solo_runs[p][d].append(getattr(r, d).p50)
                print(f"\rsolo baselines, round {rep + 1}/{args.repeats}: {i + 1}/{len(pairs)}",
                      end="", flush=True)
        print()
        base = {p: {d: median_or_none(solo_runs[p][d]) for d in DIRS} for p in pairs}
        k = 1
        while k <= len(pairs):
            group = pairs[:k]
            runs, lags, lates, losses = [], [], [], []
            for _ in range(args.repeats):
                res = owd(group)
                runs.append(run_shifts(res, base, group))
                lags.append(max(r.send_lag_ms.get("max") or 0 for r in res.values()))
                lates.append(max(r.late_start_s or 0 for r in res.values()))
                losses.append(statistics.fmean(r.rtt.loss_pct for r in res.values()))
            row = {"pairs": k, "probe_rate_pps": k * 2 / args.interval,
                   "max_send_lag_ms": max(lags), "max_late_start_s": max(lates),
                   "mean_rtt_loss_pct": statistics.fmean(losses)}
            for d in DIRS:
                row[d] = {"shift_ms": median_or_none(r[d][0] for r in runs),
                          "run_shifts_ms": [r[d][0] for r in runs],
                          "worst_pair_ms": max((r[d][1] for r in runs if r[d][1] is not None),
                                               key=abs, default=None)}
            rows.append(row)
            fw, rv = row["forward"], row["reverse"]
            print(f"{k:3d} pairs ({row['probe_rate_pps']:5.0f} probe packets/s): shift fwd "
                  f"{f3(fw['shift_ms'])} rev {f3(rv['shift_ms'])} ms (runs fwd "
                  f"{', '.join(f3(x) for x in fw['run_shifts_ms'])}), worst pair fwd "
                  f"{f3(fw['worst_pair_ms'])} rev {f3(rv['worst_pair_ms'])} ms, loss "
                  f"{row['mean_rtt_loss_pct']:.2f}%, max send lag {max(lags):.1f} ms",
                  flush=True)
            k *= 2
    over = [r["pairs"] for r in rows
            if max(abs(r[d]["shift_ms"] or 0) for d in DIRS) > args.threshold]
    first = over[0] if over else None
    print(f"\n{run['emulation']}")
    cal = run.get("calibration") or {}
    print(f"substrate compensation {run.get('substrate_us') or 0:.0f} us per link "
          f"(calibration: {cal.get('per_switch_us', 0):.0f} us per switch, residual "
          f"{cal.get('residual_us', 0):.0f} us per path); load average "
          f"{benchlib.machine()['loadavg']}")
    top = rows[-1]["pairs"]
    print(f"first concurrency with a median shift > {args.threshold} ms: "
          f"{first if first else f'none up to {top} pairs'}")
    benchlib.write("probe_cost", {"run": run, "count": args.count, "interval_s": args.interval,
                                "size": args.size, "repeats": args.repeats,
                                "threshold_ms": args.threshold, "levels": rows,
                                "first_over_threshold": first,
                                "solo": {f"{a}>{b}": {"baseline": base[(a, b)],
                                                      "runs": solo_runs[(a, b)]}
                                         for a, b in pairs}})


if __name__ == "__main__":
    main()
