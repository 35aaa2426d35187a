"""The measuring steps experiments share, on a running `emulation.network.Emulation`.

- `verify_envelopes`: one-way delay both ways and RTT for the chosen host pairs
  (probes.owd, a few pairs at a time), judged against the latency circles (probes.envelope).
- `drive_workload`: one load generator (experiments/workload/loadgen.py) per metro host,
  in that host's namespace, all starting at one agreed wall-clock instant; progress while
  it runs; results read back before the emulation goes away. Ctrl-C stops the generators
  (they mark unfinished jobs "interrupted") and the rows read so far stay in the caller's
  ``rows`` list.
- `controller_snapshot`: decisions, counters and gateways from the controller's state API,
  as it answers them (plain JSON; experiments.framework.cli.collect types them).

verify_envelopes stores its section in the experiment's RunResult before it re-raises an
interrupt, so the report has it.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from typing import Any

from common import procs
from experiments.framework.result import Envelope
from experiments.framework.runner import Experiment, ExperimentError

ENVELOPE_COUNT = 40  # probes per pair: 2x the 20 a verdict needs, so loss never starves one
ENVELOPE_INTERVAL_S = 0.01
ENVELOPE_PARALLEL = 4  # benchmarks/probe_cost.py: +0.09 ms at 4 pairs, +0.22 ms at 8


def verify_envelopes(exp: Experiment, emu: Any, net: Any, pairs_mode: str = "metro-cluster",
                     count: int = ENVELOPE_COUNT, interval_s: float = ENVELOPE_INTERVAL_S,
                     parallel: int = ENVELOPE_PARALLEL, tiers: str | None = None,
                     pairs: list[tuple[str, str]] | None = None) -> Envelope:
    """Measure and judge; stores result.envelope (read from probes.envelope_report.to_json)."""
    from probes.envelope import evaluate, load_envelopes, select_pairs
    from probes.envelope_report import to_json
    from probes.owd import ProbeError, measure_owd

    cfg = load_envelopes(tiers)
    if count < cfg.min_samples:
        exp.note(f"envelope: {count} probes per pair, below the {cfg.min_samples} a verdict "
                 "normally needs; verdicts here need only that many samples")
        cfg = replace(cfg, min_samples=count)
    mode = pairs_mode if pairs is None else "given"
    if pairs is None:
        pairs = sample_pairs(net) if pairs_mode == "sample" else select_pairs(net, pairs_mode)
    results: dict = {}
    errors: dict = {}
    meta = {"pairs_mode": mode, "count": count,
            "interval_s": interval_s, "parallel": parallel}

    def store() -> Envelope:
        meta["measurements"] = {f"{a}>{b}": r.to_dict() for (a, b), r in results.items()}
        report = evaluate(net, pairs, results, cfg, None, meta, errors=errors)
        exp.result.envelope = Envelope.from_dict(to_json(report), exp.result.problems,
                                                 "envelope")
        return exp.result.envelope

    last = 0.0
    try:
        for i in range(0, len(pairs), parallel):
            batch = pairs[i:i + parallel]
            try:
                results.update(measure_owd(emu.net, batch, count=count, interval_s=interval_s))
            except ProbeError as e:
                errors.update({p: f"probe failed: {e}" for p in batch})
            now = time.monotonic()
            if now - last > 2.0 or i + parallel >= len(pairs):
                exp.progress.live(f"envelope: {min(i + parallel, len(pairs))}/{len(pairs)} "
                                  f"pairs measured")
                last = now
    finally:
        env = store()
    for t in env.tiers:
        if t.status in ("empty",):
            continue
        exp.progress(f"envelope {t.tier_id:<10} {str(t.status).upper():<12} "
                     f"{t.passed}/{t.pairs} pairs pass ({t.metric} p{env.percentile:g})")
        if t.status == "fail":
            exp.fail_check(f"latency envelope {t.tier_id}: {t.failed} pair(s) over "
                           f"{t.tier.threshold_ms if t.tier else '?'} ms")
    return env


def sample_pairs(net: Any) -> list[tuple[str, str]]:
    """Each metro to its nearest and its farthest cluster (model one-way delay): the two
    ends of its delay range, for a quick check."""
    from probes.envelope import select_pairs
    from topology.paths import shortest_path

    graph = net.graph()
    by_metro: dict[str, list[tuple[float, str]]] = {}
    for m, c in select_pairs(net, "metro-cluster"):
        by_metro.setdefault(m, []).append((shortest_path(net, m, c, graph).delay_ms, c))
    out: list[tuple[str, str]] = []
    for m, cs in by_metro.items():
        cs.sort()
        out += [(m, c) for _d, c in dict.fromkeys([cs[0], cs[-1]])]
    return out


def metro_hosts(plan: Any, metros: list[str]) -> dict[str, str]:
    """metro site id -> its host name (the first host of the site)."""
    out: dict[str, str] = {}
    for h in plan.hosts:
        out.setdefault(h.site, h.name)
    missing = [m for m in metros if m not in out]
    if missing:
        raise ExperimentError(f"workload metros {missing} have no host in the topology: "
                              "use metro sites of this topology (see its sites list)")
    return {m: out[m] for m in metros}


def drive_workload(exp: Experiment, emu: Any, requests: list, label: str = "workload",
                   timeout_s: float = 5.0, start_delay_s: float = 3.0,
                   on_tick: Any = None, start_at: float | None = None,
                   rows: list[dict] | None = None, stop_after_s: float | None = None
                   ) -> list[dict]:
    """Run ``requests`` (experiments.workload.generator.Request) from their metros' hosts
    against the service addresses; returns the load generators' result rows (dicts, see
    experiments/workload/loadgen.py).
    ``on_tick(t)`` is called about every 0.1 s with seconds since the workload start (the
    scenarios use it to cut links or fill hubs at a planned instant). ``start_at`` (Unix
    time) puts t = 0 at a given instant, e.g. a probe stream's start, so that both share
    one clock; default: ``start_delay_s`` from now (the generators need ~1-2 s to start).
    ``rows``: a list to fill with the results, so that a caller still has them when an
    interrupt propagates out of this function. ``stop_after_s``: end of the measurement
    window (s after t = 0); jobs still running then are stopped and recorded as running at
    the end (experiments.workload.metrics RUNNING_AT_END) instead of stretching the run.
    Problems (generators that failed or overran) go to the result's errors."""
    from experiments.workload.loadgen import make_schedule, read_results
    from experiments.workload.metrics import RUNNING_AT_END
    plan = emu.plan
    svc = {s.name for s in plan.services}
    unknown = sorted({r.service for r in requests} - svc)
    if unknown:
        raise ExperimentError(f"workload services {unknown} are not in the topology's "
                              f"services {sorted(svc)}")
    by_metro: dict[str, list] = {}
    for r in requests:
        by_metro.setdefault(r.metro, []).append(r)
    hosts = metro_hosts(plan, sorted(by_metro))
    d = emu.work_dir / label
    d.mkdir(parents=True, exist_ok=True)
    if start_at is None:
        start_at = time.time() + start_delay_s
    elif start_at < time.time() + 1.0:
        raise ExperimentError("the workload's start time is less than 1 s away: the load "
                              "generators could not start in time")
    started: dict[str, Any] = {}
    outs: dict[str, Any] = {}
    end_t = max((r.t + r.duration_s for r in requests), default=0.0)
    rows = [] if rows is None else rows
    try:
        for metro, reqs in sorted(by_metro.items()):
            sched = d / f"{metro}.json"
            sched.write_text(json.dumps(make_schedule(reqs, plan.services)))
            outs[metro] = d / f"{metro}.jsonl"
            started[metro] = procs.start(
                "experiments.workload.loadgen",
                ["--schedule", sched, "--start-at", f"{start_at:.6f}", "--out", outs[metro],
                 "--timeout", f"{timeout_s:g}"],
                host=emu.net[hosts[metro]], stderr_path=d / f"{metro}.stderr")
        exp.progress(f"{label}: {len(requests)} requests from {len(started)} metros over "
                     f"{max((r.t for r in requests), default=0):.0f} s")
        deadline = start_at + end_t + 2 * timeout_s + 15.0
        last_print = 0.0
        cut_off = False
        while any(p.poll() is None for p in started.values()):
            now = time.time()
            if stop_after_s is not None and now >= start_at + stop_after_s:
                cut_off = True
                break
            if on_tick is not None and now >= start_at:
                on_tick(now - start_at)
            if now > deadline:
                exp.result.errors.append(f"{label}: load generators still running "
                                            f"{deadline - start_at:.0f} s after the start")
                break
            if time.monotonic() - last_print >= 2.0:
                done = sum(_count_lines(p) for p in outs.values())
                when = (f"starts in {start_at - now:.1f} s" if now < start_at else
                        f"t={now - start_at:5.1f}/{end_t:.0f} s")
                exp.progress.live(f"{label}: {when}, {done}/{len(requests)} requests finished")
                last_print = time.monotonic()
            time.sleep(0.1)
    finally:
        procs.stop_all(started.values(), grace_s=3.0)  # SIGTERM: unfinished jobs are marked
        for metro, p in started.items():
            if p.returncode not in (0, None, -15):
                err = (d / f"{metro}.stderr").read_text(errors="replace").strip()
                exp.result.errors.append(f"load generator at {metro} exited with "
                                            f"{p.returncode}: {err[-300:]}")
        for path in outs.values():
            got = read_results(str(path))
            if cut_off:
                for r in got:
                    if r.get("error") == "interrupted":
                        r["error"] = RUNNING_AT_END
            rows += got
    return rows


def _count_lines(path: Any) -> int:
    try:
        with open(path, "rb") as f:
            return sum(1 for _ in f)
    except FileNotFoundError:
        return 0


def controller_snapshot(emu: Any, limit: int = 1000) -> dict:
    """Decisions (most recent ``limit``), counters and gateways from the state API; empty
    parts when the controller does not answer."""
    out: dict = {}
    for name, resource in (("decisions", f"decisions?limit={limit}"),
                           ("counters", "counters"), ("gateways", "gateways"),
                           ("links", "links")):
        try:
            out[name] = emu.api(resource)
        except Exception as e:  # the controller may be gone (interrupted run)
            out[name] = {"error": str(e)}
    return out
