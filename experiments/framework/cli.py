"""Command-line options and glue the experiment scripts share (run_backbone.py and the
scenarios), so every script spells an option the same way and records it the same way."""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable
from typing import Any

from experiments.framework.result import ControllerState, Decision, Job, Metrics
from experiments.framework.runner import Experiment, ExperimentError

END_GRACE_S = 5.0  # the measurement window ends this long after the workload's last arrival
CAPACITY_TARGET_UNITS = 300  # --capacity-scale auto: scale total compute to about this
QUICK = {"duration": 15.0, "envelope_count": 40, "envelope_parallel": 4,
         "envelope_pairs": "sample"}
NORMAL = {"envelope_count": 40, "envelope_parallel": 4, "envelope_pairs": "metro-cluster"}


def add_topology_options(ap: argparse.ArgumentParser) -> None:
    from topology.loader import MISSING_COORDS_CHOICES
    ap.add_argument("--topology", default="edwc",
                    help="built-in name (edwc) or a .yaml / .graphml / .gml file (default: edwc)")
    ap.add_argument("--missing-coords", choices=MISSING_COORDS_CHOICES, default="error",
                    help="for Topology Zoo files: nodes without coordinates (default: error)")
    ap.add_argument("--capacity-scale", type=_scale, default=None, metavar="X|auto",
                    help="multiply every cluster's compute units by X (jobs hold real units "
                         "for real seconds, so a minutes-long run needs a scaled-down "
                         f"backbone); auto: about {CAPACITY_TARGET_UNITS} units in all, never "
                         "more than x1 (default: auto)")


# The studies compare compute-aware placement: their default is the weighted score, where
# the controller's own default (controller.config.DEFAULT_POLICY) is the latency baseline.
EXPERIMENT_POLICY = "weighted"


def add_controller_options(ap: argparse.ArgumentParser) -> None:
    """The controller's own --policy and --policy-param (controller.config declares them)."""
    from common import flags
    from controller.config import ControllerConfig
    flags.add_arguments(ap, ControllerConfig, only=("policy", "policy_params"))
    ap.set_defaults(policy=EXPERIMENT_POLICY)
    ap.add_argument("--adv-interval", type=float, default=1.0,
                    help="gateway advertisement period, s (default: 1.0)")


def add_workload_options(ap: argparse.ArgumentParser, duration: float) -> None:
    g = ap.add_argument_group("workload")
    ap.set_defaults(default_duration=duration)
    g.add_argument("--workload", metavar="FILE",
                   help="replay requests from a CSV or JSONL file (columns t, metro, service "
                        "[, units, duration_s, deferrable]) instead of generating them")
    g.add_argument("--duration", type=float, default=None,
                   help=f"seconds of generated workload (default: {duration:g}; --quick: "
                        f"{QUICK['duration']:g})")
    g.add_argument("--rate", type=float, default=None,
                   help="mean requests/s over the run (default: from --load)")
    g.add_argument("--load", type=float, default=0.5,
                   help="target mean utilization of all compute, 0-1, when --rate is not "
                        "given (default: 0.5)")
    g.add_argument("--no-diurnal", dest="diurnal", action="store_false",
                   help="a flat arrival rate instead of one simulated day over the run")
    g.add_argument("--no-defer-batch", dest="defer_batch", action="store_false",
                   help="batch work starts when it arrives instead of waiting for the "
                        "cheap off-peak night")
    g.add_argument("--start-hour", type=float, default=8.0,
                   help="simulated hour of day at the start of the run; the run covers one "
                        "simulated day (default: 8, so the cheap night falls in the run's "
                        "second half)")
    g.add_argument("--metros", default=None,
                   help="comma-separated metro site ids that send work (default: every metro)")
    g.add_argument("--save-workload", metavar="FILE",
                   help="also write the generated requests to FILE (replay it with --workload)")
    g.add_argument("--seed", type=int, default=1,
                   help="seed of the workload, random policies and delay-line jitter/loss "
                        "(default: 1)")


def add_envelope_options(ap: argparse.ArgumentParser) -> None:
    g = ap.add_argument_group("latency envelopes")
    g.add_argument("--envelope-count", type=int, default=None,
                   help=f"probes per pair (default: {NORMAL['envelope_count']}, --quick "
                        f"{QUICK['envelope_count']}; 0 skips the envelope phase)")
    g.add_argument("--envelope-interval", type=float, default=0.01,
                   help="seconds between probes (default: 0.01)")
    g.add_argument("--envelope-parallel", type=int, default=None,
                   help=f"pairs measured at once (default: {NORMAL['envelope_parallel']}, "
                        f"--quick {QUICK['envelope_parallel']})")
    g.add_argument("--envelope-pairs", default=None,
                   choices=("metro-cluster", "sample", "all", "hubs"),
                   help="which host pairs: every metro-cluster pair, a sample (each metro to "
                        "its nearest and farthest cluster), all, or one per hub (default: "
                        "metro-cluster; --quick: sample)")
    g.add_argument("--tiers", metavar="FILE",
                   help="latency circles (default: probes/data/envelopes.yaml)")


def add_run_options(ap: argparse.ArgumentParser) -> None:
    from emulation.linkmode import DATAPATHS, LINK_MODES, PORT_TYPES
    g = ap.add_argument_group("emulation and output")
    g.add_argument("--link-emulation", choices=LINK_MODES, default="auto",
                   help="netem (kernel), userspace (delay line), none, or auto: netem where "
                        "the kernel has it, else userspace (default: auto)")
    g.add_argument("--datapath", choices=DATAPATHS, default="auto",
                   help="OVS datapath: kernel, user (netdev) or auto (default: auto)")
    g.add_argument("--ovs-port-type", choices=PORT_TYPES, default="auto",
                   help="userspace datapath ports: afxdp, system or auto (default: auto)")
    g.add_argument("--delay-line-priority", type=int, default=10, metavar="N",
                   help="SCHED_FIFO priority of the userspace delay line, 0 for normal "
                        "(default: 10)")
    g.add_argument("--substrate-us", type=float, default=None,
                   help="per-hop switch latency the delay line subtracts (default: measured)")
    g.add_argument("--report-dir", metavar="DIR",
                   help="write the report here (default: reports/<kind>-<date>-<time>)")
    g.add_argument("--keep-work-dir", action="store_true",
                   help="keep the run directory (plan, controller log, gateway logs)")
    g.add_argument("--cli", action="store_true",
                   help="open the Mininet CLI after the measurements; exit it to tear down")


def _scale(text: str) -> float | None:
    if text == "auto":
        return None
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number or 'auto'") from None
    if not 0 < v <= 100:
        raise argparse.ArgumentTypeError("give a factor in (0, 100]")
    return v


def apply_quick(args: argparse.Namespace) -> None:
    """Fill the options --quick changes, unless they were given explicitly."""
    quick = getattr(args, "quick", False)
    base = dict(QUICK) if quick else dict(NORMAL, duration=args.default_duration)
    for k, v in base.items():
        if getattr(args, k, None) is None:
            setattr(args, k, v)


def check_common(ap: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if getattr(args, "duration", None) is not None and args.duration <= 0:
        ap.error("--duration must be > 0")
    if args.rate is not None and args.rate <= 0:
        ap.error("--rate must be > 0")
    if not 0 < args.load <= 1:
        ap.error("--load must be in (0, 1]")
    if not 0 <= args.start_hour < 24:
        ap.error("--start-hour must be in [0, 24)")
    if getattr(args, "envelope_count", 0) < 0 or getattr(args, "envelope_parallel", 1) < 1:
        ap.error("--envelope-count must be >= 0 and --envelope-parallel >= 1")
    if getattr(args, "envelope_interval", 1) <= 0:
        ap.error("--envelope-interval must be > 0")
    if not 0 <= args.delay_line_priority <= 99:
        ap.error("--delay-line-priority must be 0-99")
    if not 0.05 <= args.adv_interval <= 60:
        ap.error("--adv-interval must be in [0.05, 60] s")
    args.policy_params = dict(args.policy_params)  # (KEY, VALUE) pairs, parsed by the flag


def preflight(args: argparse.Namespace) -> None:
    """Everything that can be checked before anything is built: root, the policy spec, the
    replay file, the tier file, the topology."""
    from controller.policy import PolicyError, load_policy
    from probes.envelope import EnvelopeError, load_envelopes
    from topology.model import TopologyError

    if os.geteuid() != 0:
        raise ExperimentError("the emulation needs root (network namespaces, Open vSwitch): "
                              "run it with sudo")
    for spec in policies_of(args):
        try:
            load_policy(spec, **(args.policy_params if spec == args.policy else {}))
        except PolicyError as e:
            raise ExperimentError(str(e)) from None
    try:
        if getattr(args, "envelope_count", 0):
            load_envelopes(args.tiers)
        net = load_network(args)
    except (EnvelopeError, TopologyError) as e:
        raise ExperimentError(str(e)) from None
    if not any(s.compute and s.compute.units for s in net.sites):
        raise ExperimentError(f"topology {net.name} has no site with compute units: give "
                              "clusters a 'compute: {units: {...}}' entry")
    from experiments.workload.generator import WorkloadError, resolve
    from experiments.workload.replay import load_replay
    try:
        if args.workload:
            load_replay(args.workload, net)
        elif getattr(args, "duration", None):
            from topology.services import default_services
            resolve(workload_config(args), net.services or default_services(), net)
    except WorkloadError as e:
        raise ExperimentError(str(e)) from None


def policies_of(args: argparse.Namespace) -> list[str]:
    return list(getattr(args, "policies", None) or [args.policy])


def load_network(args: argparse.Namespace) -> Any:
    """The topology, with compute scaled (--capacity-scale)."""
    from experiments.workload.generator import scale_compute
    from topology.loader import load_topology

    net = load_topology(args.topology, missing_coords=args.missing_coords)
    total = sum(sum(s.compute.units.values()) for s in net.sites if s.compute)
    scale = args.capacity_scale
    if scale is None:
        scale = min(1.0, CAPACITY_TARGET_UNITS / total) if total else 1.0
        scale = float(f"{scale:.3g}")
    args.capacity_scale_used = scale
    return scale_compute(net, scale) if scale != 1.0 else net


def emulation_options(args: argparse.Namespace) -> dict:
    """The Emulation's configuration from a study's options (see emulation.network)."""
    from emulation.network import AgentOptions, ControllerConfig, LinkConfig
    return {"links": LinkConfig(link_emulation=args.link_emulation, datapath=args.datapath,
                                ovs_port_type=args.ovs_port_type,
                                substrate_us=args.substrate_us,
                                delay_line_rt_priority=args.delay_line_priority,
                                seed=args.seed),
            "controller": ControllerConfig(policy=args.policy,
                                           policy_params=dict(args.policy_params)),
            "agents": AgentOptions(adv_interval=args.adv_interval),
            "keep_work_dir": args.keep_work_dir}


def config_of(args: argparse.Namespace) -> dict:
    cfg = {k: v for k, v in vars(args).items() if not k.startswith("_")}
    return json.loads(json.dumps(cfg, default=str))


def workload_config(args: argparse.Namespace) -> Any:
    from experiments.workload.generator import WorkloadConfig
    metros = args.metros.split(",") if args.metros else None
    return WorkloadConfig(duration_s=args.duration, rate_per_s=args.rate,
                          load=args.load, metros=metros, diurnal=args.diurnal,
                          defer_batch=args.defer_batch, start_hour=args.start_hour,
                          seed=args.seed)


def make_requests(exp: Experiment, args: argparse.Namespace, net: Any, plan: Any) -> list:
    """Generate (or replay) the requests; stores result.workload."""
    from experiments.workload import generator as wl
    from experiments.workload import replay

    cfg = workload_config(args)
    if args.workload:
        requests = replay.load_replay(args.workload, net)
        exp.result.workload = wl.describe(None, requests, source=args.workload)
    else:
        cfg = wl.resolve(cfg, plan.services, net, plan.gateways)
        requests = wl.generate(cfg, plan.services, net, plan.gateways)
        exp.result.workload = wl.describe(cfg, requests)
        if args.save_workload:
            replay.save_replay(requests, args.save_workload)
            exp.progress(f"workload written to {args.save_workload}")
    if not requests:
        raise ExperimentError("the workload has no requests: raise --duration or --rate")
    exp.result.workload.capacity_scale = getattr(args, "capacity_scale_used", None)
    return requests


def run_requests(exp: Experiment, emu: Any, requests: list, args: argparse.Namespace,
                 label: str = "workload", on_tick: Any = None,
                 start_at: float | None = None, *, into: Any = None,
                 finalize: Callable[[], Any] | None = None) -> list[Job]:
    """Drive one workload run; its jobs go to ``into`` (anything with ``jobs`` and
    ``metrics``; default: the run result), also when the run is interrupted.

    Every workload run registers its own finalizer (runner.Experiment.finalizers: each is
    called once, before teardown, whatever happened, while the controller still answers):
    ``finalize`` when given, else `finish`: the decisions and metrics of the run result's
    jobs when the run ended before `collect` stored them. A finalizer must do nothing when
    its figures were stored the normal way (policy_compare gives one per policy round)."""
    from experiments.framework import steps
    from experiments.workload.metrics import job_records

    target = exp.result if into is None else into
    exp.finalizers.append(finalize or (lambda: finish(exp, emu, requests, args)))
    rows: list[dict] = []
    try:
        steps.drive_workload(exp, emu, requests, label=label, on_tick=on_tick,
                             start_at=start_at, rows=rows,
                             stop_after_s=args.duration + END_GRACE_S)
    finally:
        target.jobs = job_records(requests, rows, emu.plan, exp.result.problems)
    return target.jobs


def finish(exp: Experiment, emu: Any, requests: list, args: argparse.Namespace) -> None:
    """The default finalizer of a workload run: `collect`, unless the run has no jobs or
    its metrics are already stored."""
    if exp.result.metrics is None and exp.result.jobs:
        collect(exp, emu, requests, args)


def metrics_window_s(args: argparse.Namespace, requests: list) -> float:
    """The measurement window the metrics are over: --duration, else the last arrival."""
    return getattr(args, "duration", None) or max((r.t for r in requests), default=0.0)


def collect(exp: Experiment, emu: Any, requests: list, args: argparse.Namespace) -> Metrics:
    """The controller's decisions, counters and gateways, and the metrics of the run
    result's jobs; stores result.decisions, result.controller and result.metrics."""
    from experiments.framework import steps
    from experiments.workload.metrics import compute_metrics, west_sites

    r = exp.result
    snap = steps.controller_snapshot(emu)
    dec = snap.get("decisions")
    r.decisions = Decision.list_from(dec.get("decisions") if isinstance(dec, dict) else None,
                                     r.problems, "decisions")
    r.controller = ControllerState.from_dict(
        {k: snap.get(k) for k in ("counters", "gateways")}, r.problems, "controller")
    counters = (r.controller.counters or {}).get("controller") or {}
    r.metrics = compute_metrics(r.jobs or [], emu.plan, metrics_window_s(args, requests),
                                reroutes=counters.get("flows_repathed"),
                                west=west_sites(emu.network))
    return r.metrics


def main(kind: str, title: str, parse_args: Any, body: Any, argv: Any = None) -> int:
    """Parse, check everything that can be checked before building (exit 2 with a clear
    message), then run ``body(exp, args)`` as an Experiment (see runner.Experiment.run)."""
    import sys

    from experiments.framework.runner import check_report_dir

    args = parse_args(argv)
    try:
        report_dir = check_report_dir(args.report_dir) if args.report_dir else None
        preflight(args)
    except (ExperimentError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    exp = Experiment(kind, title, config_of(args), report_dir)
    return exp.run(lambda e: body(e, args), cli=args.cli)
