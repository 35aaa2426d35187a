"""Capacity shift: a compute hub fills up or goes offline under a steady workload; how fast
do new placements move away, and do the flows already running there survive?

    sudo python experiments/capacity_shift.py                      # EDWC, the largest hub fills
    sudo python experiments/capacity_shift.py --hub nmg --action offline
    sudo python experiments/capacity_shift.py --topology my.yaml --duration 40 --event-at 15

Actions at --event-at seconds into the workload:
  fill     a job of every free unit, on every accelerator kind of every gateway of the hub,
           started on the gateway hosts themselves (it holds the units until the run ends);
           the agents advertise the change at once (at most 50 ms later);
  offline  the hub's gateway agents stop (a data-center outage): the controller notices
           when their advertisements stop (3 advertisement intervals), and jobs running
           there are lost.
Measured: placements per hub before and after; the reaction time: from the event to the
last new flow the controller still sent to the hub that the hub could not serve at once
(queued behind the filler, busy, or no agent; 0 when none); the new placements that still
went there and how they fared; the jobs running on the hub at the event and how many of
them completed. The workload is flat (no diurnal profile) unless --diurnal is given.
Exit status: 0 complete, 2 bad input or an error, 130 interrupted.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections import Counter

from common import procs
from experiments.framework import cli
from experiments.framework.result import Job
from experiments.framework.runner import Experiment, ExperimentError
from experiments.framework.scenario import CapacityShift

ACTIONS = ("fill", "offline")


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="capacity_shift.py", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hub", default="auto",
                    help="hub whose compute fills up or goes offline (default: auto, the hub "
                         "with the most compute units)")
    ap.add_argument("--action", choices=ACTIONS, default="fill",
                    help="fill (every unit taken by other work) or offline (agents stop) "
                         "(default: fill)")
    ap.add_argument("--event-at", type=float, default=None,
                    help="seconds into the workload (default: a third of --duration)")
    ap.add_argument("--diurnal", dest="diurnal_on", action="store_true",
                    help="use the diurnal profile (default: a flat rate)")
    cli.add_topology_options(ap)
    cli.add_controller_options(ap)
    cli.add_workload_options(ap, duration=30.0)
    cli.add_run_options(ap)
    args = ap.parse_args(argv)
    args.diurnal = args.diurnal_on
    if args.duration is None:
        args.duration = 30.0
    if args.event_at is None:
        args.event_at = round(args.duration / 3, 3)
    if not 0 < args.event_at < args.duration:
        ap.error("--event-at must fall inside the workload (0 < event-at < duration)")
    cli.check_common(ap, args)
    return args


def pick_hub(plan, wanted: str) -> str:
    units: Counter = Counter()
    for g in plan.gateways:
        units[g.hub] += sum(g.units.values())
    if wanted != "auto":
        if wanted not in units:
            raise ExperimentError(f"--hub {wanted}: no gateway belongs to it; hubs with "
                                  f"compute: {sorted(units)}")
        return wanted
    if not units:
        raise ExperimentError("the topology has no gateways")
    return sorted(units.items(), key=lambda kv: (-kv[1], kv[0]))[0][0]


class Event:
    """Fills or stops the hub's gateways once, at the planned instant (on_tick)."""

    def __init__(self, exp: Experiment, emu, hub: str, action: str, at: float,
                 hold_s: float) -> None:
        self.exp, self.emu, self.hub, self.action, self.at = exp, emu, hub, action, at
        self.hold_s = hold_s
        self.fired_at: float | None = None
        self.fillers: list = []
        self.gws = [g for g in emu.plan.gateways if g.hub == hub]
        self.seen_at: float | None = None  # when the controller's view showed the event

    def _watch(self, t: float) -> None:
        """Poll the controller (state API) until every gateway of the hub advertises no
        free unit (fill) or is no longer alive (offline)."""
        try:
            gws = self.emu.api("gateways", timeout=1.0).get("gateways", {})
        except Exception:  # a slow answer: try again on the next tick
            return
        for g in self.gws:
            st = gws.get(g.id)
            if self.action == "offline" and st is not None:
                return
            if self.action == "fill" and st is not None and any(
                    free > 0 for _total, free in st["advert"]["units"].values()):
                return
        self.seen_at = t
        self.exp.progress(f"the controller sees hub {self.hub} "
                          f"{'full' if self.action == 'fill' else 'gone'} "
                          f"{(t - self.fired_at) * 1000:.0f} ms after the event")

    def __call__(self, t: float) -> None:
        if self.fired_at is not None:
            if self.seen_at is None:
                self._watch(t)
            return
        if t < self.at:
            return
        self.fired_at = t
        if self.action == "offline":
            self.emu.stop_gateways(only=[g.id for g in self.gws])
        else:
            self._fill()
        self.exp.progress(f"event: hub {self.hub} {self.action} at t={t:.2f} s "
                          f"({', '.join(g.id for g in self.gws)})")

    def _fill(self) -> None:
        """Per kind, one job holding every free unit now and one queued for the units
        that running jobs hold (it starts as they finish): the hub stays full, and the
        jobs already running there finish normally."""
        services = self.emu.plan.services
        for g in self.gws:
            state = self.emu.gateway_state(g.id)
            for kind, u in sorted((state.get("units") or {}).items()):
                svc = next((s for s in services if kind in s.kinds and s.name in g.services),
                           None)
                if svc is None:
                    continue
                for units in (int(u.get("free", 0)), int(u.get("busy", 0))):
                    if units <= 0:
                        continue
                    self.fillers.append(procs.start(
                        "gateway.client",
                        ["--addr", g.ip, "--service", svc.name, "--units", units,
                         "--kinds", kind, "--duration", f"{self.hold_s:g}",
                         "--timeout", f"{self.hold_s:g}"],
                        host=self.emu.net[g.host], stderr=subprocess.DEVNULL))

    def stop(self) -> None:
        procs.stop_all(self.fillers, grace_s=2.0)


def analyse(jobs: list[Job], hub: str, t_event: float) -> CapacityShift:
    """The capacity-shift section of the run result (see docs/reports.md); action and
    controller_view_ms are the caller's.

    A late placement is a new flow the controller still sent to the hub after the event. It
    was misplaced when the hub could not serve it at once (it queued behind the filler, was
    turned away busy, or found no agent); reaction_ms is the time from the event to the last
    misplaced one (0: none). Late placements served at once are legitimate: units freed by
    jobs that finished."""
    def at(j: Job) -> float:
        return j.t_start if j.t_start is not None else (j.t or 0.0)

    placed = [j for j in jobs if j.hub]
    before = Counter(j.hub for j in placed if at(j) < t_event)
    after = Counter(j.hub for j in placed if at(j) >= t_event)
    late = [j for j in jobs if j.hub == hub and at(j) >= t_event]
    misplaced = [j for j in late if not j.ok or (j.queued_ms or 0) > 1.0]
    reaction = max((at(j) - t_event for j in misplaced), default=0.0)
    running = [j for j in placed if j.hub == hub and j.ok and at(j) < t_event
               and at(j) + (j.duration_s or 0) > t_event]
    return CapacityShift(
        hub=hub, t_event=t_event, reaction_ms=round(reaction * 1000.0, 1),
        late_placements=len(late), misplaced=len(misplaced),
        late_placements_served=sum(1 for j in late if j.ok),
        placements_before=dict(sorted(before.items())),
        placements_after=dict(sorted(after.items())),
        existing_flows=len(running), existing_survived=sum(1 for j in running if j.done))


def body(exp: Experiment, args) -> None:
    with exp.phase("topology"):
        net = cli.load_network(args)
    with exp.phase("build"):
        emu = exp.start_emulation(net, **cli.emulation_options(args))
    hub = pick_hub(emu.plan, args.hub)
    requests = cli.make_requests(exp, args, net, emu.plan)
    event = Event(exp, emu, hub, args.action, args.event_at, hold_s=args.duration + 30)
    try:
        with exp.phase("workload"):
            cli.run_requests(exp, emu, requests, args, on_tick=event)
    finally:
        event.stop()
        if event.fired_at is not None:
            sc = analyse(exp.result.jobs or [], hub, event.fired_at)
            sc.action = args.action
            if event.seen_at is not None:
                sc.controller_view_ms = round((event.seen_at - event.fired_at) * 1000.0, 1)
            exp.result.scenario = sc
    with exp.phase("collect"):
        cli.collect(exp, emu, requests, args)
    sc = exp.result.scenario
    if sc is None:
        exp.progress(f"hub {hub} {args.action}: the event did not fire during the workload")
        return
    exp.progress(f"hub {hub} {args.action}: {sc.misplaced} new flow(s) still sent "
                 f"there and not served at once, the last {sc.reaction_ms:.0f} ms "
                 f"after the event; running jobs that completed "
                 f"{sc.existing_survived}/{sc.existing_flows}")


def main(argv=None) -> int:
    return cli.main("capacity-shift", "A hub's compute fills up or goes offline",
                    parse_args, body, argv)


if __name__ == "__main__":
    sys.exit(main())
