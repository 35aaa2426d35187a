"""Policy comparison: the same seeded workload under each steering policy, one table.

    sudo python experiments/policy_compare.py                       # every built-in policy
    sudo python experiments/policy_compare.py --policies nearest,greenest --duration 30
    sudo python experiments/policy_compare.py --policies nearest,my_pkg.mod:MyPolicy

The backbone is built once. For each policy in turn: the gateway agents are restarted (every
gateway starts empty), the controller is switched to the policy (state API, PUT policy) and
waits until no placement of the previous policy is left, then the identical request list
(same seed, same arrival times, same metros, same demands) is sent. Per policy the report
gives SLA violations, refusals, placement (TCP connect) and response latency, utilization
balance across hubs, energy cost (illustrative), the western share, reroutes, where the work
went and the controller's reasons for it.
Exit status: 0 complete, 2 bad input or an error, 130 interrupted.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections import Counter
from dataclasses import replace

from experiments.framework import cli
from experiments.framework.runner import Experiment, ExperimentError
from experiments.framework.scenario import PolicyComparison, PolicyRun

BUILTIN_ORDER = ("nearest", "least-loaded", "greenest", "weighted", "random", "round-robin")
IDLE_TIMEOUT_S = 3  # placements of the previous policy idle out this fast between rounds


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="policy_compare.py", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--policies", default=",".join(BUILTIN_ORDER),
                    help="comma-separated policies, built-in names or module:Class "
                         f"(default: {','.join(BUILTIN_ORDER)})")
    cli.add_topology_options(ap)
    cli.add_controller_options(ap)
    cli.add_workload_options(ap, duration=30.0)
    cli.add_run_options(ap)
    args = ap.parse_args(argv)
    args.policies = [p.strip() for p in args.policies.split(",") if p.strip()]
    if not args.policies:
        ap.error("--policies: name at least one policy")
    if len(set(args.policies)) != len(args.policies):
        ap.error("--policies: a policy is listed twice")
    args.policy = args.policies[0]
    if args.duration is None:
        args.duration = 30.0
    cli.check_common(ap, args)
    return args


def explain(decisions: list[dict], policy: str) -> list[str]:
    """The controller's reasons, grouped: numbers blanked so that alike reasons count
    together; the most common first, each with one real example."""
    mine = [d for d in decisions if d.get("policy") == policy or not d.get("gateway")]
    pattern: Counter = Counter()
    example: dict[str, str] = {}
    for d in mine:
        reason = d.get("reason") or ""
        head = reason.split(";")[0]
        key = re.sub(r"\d+(\.\d+)?", "#", head)
        pattern[key] += 1
        example.setdefault(key, reason)
    return [f"{n} x {example[k]}" for k, n in pattern.most_common(4)]


def switch_policy(emu, policy: str, params: dict) -> None:
    body = {"policy": policy}
    if params:
        body["params"] = params
    got = emu.api("policy", body)
    if got.get("policy") is None:
        raise ExperimentError(f"the controller did not take policy {policy}: {got}")


def wait_drained(emu, timeout: float) -> int:
    """Wait until the controller holds no placement; returns how many were left."""
    deadline = time.monotonic() + timeout
    left = -1
    while time.monotonic() < deadline:
        left = emu.controller_status().get("placements", -1)
        if left == 0:
            return 0
        time.sleep(0.2)
    return left


def _round_metrics(emu, row: PolicyRun, requests: list, args,
                   reroutes: int | None = None, decisions: list[dict] | None = None) -> None:
    """Fill a round's metrics, placements and (given the decisions) explanations from its
    jobs."""
    from experiments.workload.metrics import compute_metrics, west_sites

    jobs = row.jobs or []
    row.metrics = compute_metrics(jobs, emu.plan, cli.metrics_window_s(args, requests),
                                  reroutes=reroutes, west=west_sites(emu.network))
    row.placements = dict(sorted(Counter(j.gw for j in jobs if j.gw).items()))
    if decisions is not None:
        row.explanations = explain(decisions[-len(requests):], row.policy or "")


def one_policy(exp: Experiment, emu, requests: list, args, policy: str,
               row: PolicyRun) -> PolicyRun:
    """One round: fresh gateways, the policy, the workload; fills ``row`` (already in the
    result, so that an interrupted round still reports the jobs it ran: its finalizer
    computes their metrics when the round did not get to)."""
    label = "workload-" + re.sub(r"[^A-Za-z0-9_.-]", "_", policy)
    emu.stop_gateways()
    left = wait_drained(emu, IDLE_TIMEOUT_S * 3 + 5)
    if left:
        exp.note(f"{policy}: {left} placement(s) of the previous round still held")
    emu.start_gateways()
    emu.wait_gateways()
    switch_policy(emu, policy, args.policy_params if policy == args.policy else {})
    before = (emu.api("counters").get("controller") or {}).get("flows_repathed", 0)

    def finalize() -> None:  # reroutes unknown: the round did not end normally
        if row.metrics is None and row.jobs:
            _round_metrics(emu, row, requests, args)
    cli.run_requests(exp, emu, requests, args, label=label, into=row, finalize=finalize)
    decisions = emu.api("decisions?limit=1000").get("decisions", [])
    after = (emu.api("counters").get("controller") or {}).get("flows_repathed", 0)
    _round_metrics(emu, row, requests, args, reroutes=after - before, decisions=decisions)
    m = row.metrics
    top = Counter(row.placements).most_common(4)
    exp.progress(f"{policy}: served {m.served}/{m.requests}, SLA violations "
                 f"{m.sla_violations}, placements {dict(top)}")
    return row


def body(exp: Experiment, args) -> None:
    with exp.phase("topology"):
        net = cli.load_network(args)
    with exp.phase("build"):
        opts = cli.emulation_options(args)
        opts["controller"] = replace(opts["controller"], flow_idle_timeout=IDLE_TIMEOUT_S)
        emu = exp.start_emulation(net, **opts)
    requests = cli.make_requests(exp, args, net, emu.plan)
    comparison = PolicyComparison(workload_seed=args.seed)
    exp.result.scenario = comparison

    def promote() -> None:
        """The top-level jobs/metrics are those of the first policy (the plots use them);
        its row drops its copy, so report.json holds every job list once."""
        first = comparison.policies[0] if comparison.policies else None
        if first is not None and first.jobs is not None:
            exp.result.jobs, first.jobs = first.jobs, None
            exp.result.metrics = first.metrics
    try:
        for policy in args.policies:
            with exp.phase(f"policy {policy}"):
                row = PolicyRun(policy=policy)
                comparison.policies.append(row)
                one_policy(exp, emu, requests, args, policy, row)
    finally:
        exp.finalizers.append(promote)  # after the rounds' finalizers, whatever happened


def main(argv=None) -> int:
    return cli.main("policy-comparison", "Steering policies on one seeded workload",
                    parse_args, body, argv)


if __name__ == "__main__":
    sys.exit(main())
