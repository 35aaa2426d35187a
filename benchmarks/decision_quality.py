#!/usr/bin/env python3
"""Decision quality of the built-in steering policies on one fixed, seeded workload.

ANALYTIC MODE: no emulation, no packets on a wire. The REAL decision code runs in-process:
`ControllerCore` (packet parsing, candidates, budget and capacity checks, reservations,
hysteresis, the policy) on the EDWC plan (topology.loader.load_topology("edwc") ->
topology.plan.make_plan), with stub datapaths. The network is the plan's latency-shortest
paths (the routes the controller computes); time is simulated (``now`` injected, no sleeps).

Simulated gateways: one per plan gateway, each a real `gateway.pool.Pool` (units per kind,
FIFO queue of at most 64 jobs, as the agent runs it). Each advertises like gateway/agent.py:
every --adv-interval seconds and, at most every 0.05 s, as soon as its free units change
significantly (pool.significant_change); the advertisement (CATS wire format, encoded and
decoded) reaches the controller as a punted frame from the gateway's switch port.

Workload (identical for every policy): requests from the 8 eastern metros (uniformly),
Poisson arrivals (seeded) at a rate giving --load x total units of offered work, services
from topology/data/services.yaml in the mix below, exponential durations. A request's first
packet goes to the controller at its arrival time; if placed, the job reaches the gateway
1.5 round trips later (handshake + request) and holds its units for its duration, after
queueing if the gateway turned out to be full (its view was stale); a gateway with a full
queue refuses it ("busy"). The placement ends (flow_removed) --idle-timeout after the job.

Metrics per policy:
- placed / refused by the controller (no feasible gateway) / busy at the gateway;
- SLA violations: served jobs whose response latency = path RTT + the wait at the gateway
  exceeds the service's budget (the controller only places flows whose advertised
  latency fits, so these come from stale views); refusals are reported separately as
  violations of service; "SLA met" = served within budget / all requests;
- response latency mean and p95 over served jobs;
- per-hub utilization (busy unit-seconds / (hub units x window), window = after --warmup
  until the last arrival) and its spread across the 8 hubs: max - min and coefficient of
  variation;
- energy cost, ILLUSTRATIVE: sum over jobs of units x hours x KW_PER_UNIT x price x PUE, in
  CNY at 1 kW per compute unit (prices and PUE are the dataset's illustrative numbers);
  also per unit-hour served and the renewable share (green-weighted unit-hours);
- share of unit-hours placed on western gateways: sites whose zone (their own, else their
  hub's) is "west" in the topology data (experiments.workload.metrics.west_sites; EDWC: the
  Inner Mongolia, Guizhou, Gansu and Ningxia hubs); none when the topology has no zones.

    python benchmarks/decision_quality.py [--load 0.6] [--duration 900] [--seed 1]
    sudo python benchmarks/decision_quality.py --crosscheck   # + a short emulated check
"""

from __future__ import annotations

import argparse
import heapq
import itertools
import math
import os
import random
import statistics
import time
from dataclasses import dataclass

import benchlib
import steer_common as sc

from common.stats import percentile
from controller.policy import dampen, load_policy
from experiments.workload.generator import ANALYTIC_MIX
from experiments.workload.metrics import KW_PER_UNIT, west_sites
from gateway.pool import BUSY, STARTED, Job, Pool, significant_change

POLICIES = ("nearest", "least-loaded", "greenest", "weighted", "random", "round-robin")
MIX = ANALYTIC_MIX  # service -> (share of requests, mean duration in seconds); illustrative
MAX_QUEUE = 64  # the agent's default
MIN_GAP_S = 0.05  # the agent's minimum gap between change-triggered advertisements


@dataclass(frozen=True)
class Req:
    idx: int
    t: float
    client: str
    service: str
    duration: float


@dataclass
class JobRec:
    req: Req
    gateway: str
    rtt_ms: float
    units: int
    submitted: float
    started: float | None = None
    busy: bool = False


def make_workload(plan, metros: list[str], load: float, duration: float, seed: int
                  ) -> tuple[list[Req], float]:
    svc = {s.name: s for s in plan.services}
    missing = sorted(set(MIX) - set(svc))
    if missing:
        raise SystemExit(f"the plan has no service(s) {missing}; the workload mix needs them")
    names = list(MIX)
    weights = [MIX[n][0] for n in names]
    capacity = sum(sum(g.units.values()) for g in plan.gateways)
    unit_s = sum(MIX[n][0] * svc[n].units * MIX[n][1] for n in names) / sum(weights)
    rate = load * capacity / unit_s
    rng = random.Random(seed)
    out, t = [], 0.0
    while True:
        t += rng.expovariate(rate)
        if t > duration:
            return out, rate
        name = rng.choices(names, weights)[0]
        out.append(Req(len(out), t, rng.choice(metros), name,
                       max(0.01, rng.expovariate(1.0 / MIX[name][1]))))


class SimGateway:
    """A gateway agent's capacity and advertisement timing, on simulated time."""

    def __init__(self, g, interval: float) -> None:
        self.g, self.interval = g, interval
        self.pool = Pool(dict(g.units), MAX_QUEUE)
        self.seq = 0
        self.next_advert = 0.0
        self.last_units: dict | None = None
        self.last_queue = 0
        self.last_sent = -math.inf

    def advert(self, now: float):
        return sc.make_advert(self.g, self.seq, sc.WALL0 + now, self.pool.snapshot(),
                              util=self.pool.utilization(), queue=len(self.pool.queue),
                              delay_ms=self.pool.advertised_wait(now) * 1000.0,
                              interval=self.interval)

    def changed(self, now: float) -> bool:
        """True if the next advertisement moved earlier (as the agent's _changed does)."""
        if significant_change(self.last_units, self.pool.snapshot(), self.last_queue,
                              len(self.pool.queue)):
            when = max(now, self.last_sent + MIN_GAP_S)
            if when < self.next_advert:
                self.next_advert = when
                return True
        return False


def simulate(plan, policy_name: str, reqs: list[Req], args,
             west: frozenset[str] | None = None) -> dict:
    """``west``: the site ids of western gateways (west_sites), None: no west defined."""
    params = {"seed": args.seed} if policy_name == "random" else {}
    policy = dampen(load_policy(policy_name, **params))
    pc = sc.PureController(plan, policy, idle_timeout=args.idle_timeout)
    core = pc.core
    svc = {s.name: s for s in plan.services}
    gws = {g.id: SimGateway(g, args.adv_interval) for g in plan.gateways}
    events: list = []
    order = itertools.count()

    def push(t: float, kind: str, data) -> None:
        heapq.heappush(events, (t, next(order), kind, data))

    for r in reqs:
        push(r.t, "arrive", r)
    for gw in gws.values():
        push(0.0, "advert", gw.g.id)
    end_adverts = reqs[-1].t + 1.0 if reqs else 1.0
    jobs: dict[int, JobRec] = {}
    refused: dict[str, int] = {}
    reasons: dict[str, int] = {}
    decide_cpu = 0.0
    job_ids = itertools.count(1)

    def start(rec: JobRec, job: Job, now: float) -> None:
        rec.started = now
        push(now + job.duration_s, "end", (rec.gateway, job.id))

    def maybe_advert(gw: SimGateway, now: float) -> None:
        if now <= end_adverts and gw.changed(now):
            push(gw.next_advert, "advert", gw.g.id)

    while events:
        now, _, kind, data = heapq.heappop(events)
        pc.clock.t = sc.WALL0 + now
        if kind == "advert":
            gw = gws[data]
            if abs(now - gw.next_advert) > 1e-12:
                continue  # superseded by an earlier change-triggered one
            pc.advert_in(gw.advert(now), now)
            gw.seq += 1
            gw.last_units, gw.last_queue = gw.pool.snapshot(), len(gw.pool.queue)
            gw.last_sent = now
            gw.next_advert = now + gw.interval
            if gw.next_advert <= end_adverts:  # after the last arrival nobody listens
                push(gw.next_advert, "advert", gw.g.id)
            else:
                gw.next_advert = math.inf
        elif kind == "arrive":
            r: Req = data
            s = svc[r.service]
            sport, dport = 1024 + r.idx % 60000, 10000 + r.idx // 60000
            dpid, port, frame = pc.first_packet(r.client, s.address, sport, dport, bytes(32))
            placed0 = core.counters["flows_placed"]
            t0 = time.thread_time()
            core.packet_in(dpid, port, frame, now)
            decide_cpu += time.thread_time() - t0
            if core.counters["flows_placed"] == placed0:
                refused[r.service] = refused.get(r.service, 0) + 1
                reason = core.steering.decisions[-1].reason.split(" (")[0]
                reasons[reason] = reasons.get(reason, 0) + 1
                continue
            p = core.steering.placements[_key(pc, r, s, sport, dport)]
            jid = next(job_ids)
            jobs[jid] = JobRec(r, p.gateway, p.rtt_ms, s.units, now + 1.5 * p.rtt_ms / 1000)
            push(jobs[jid].submitted, "job", (jid, sport, dport))
        elif kind == "job":
            jid, sport, dport = data
            rec = jobs[jid]
            gw = gws[rec.gateway]
            s = svc[rec.req.service]
            job = Job(jid, s.name, s.units, tuple(s.kinds), rec.req.duration, now)
            outcome = gw.pool.submit(job, now)
            if outcome == STARTED:
                start(rec, job, now)
            elif outcome == BUSY:
                rec.busy = True
                push(now + args.idle_timeout, "flow_end", (rec.req, sport, dport))
            if outcome != BUSY:
                push(now + rec.req.duration + args.idle_timeout, "flow_end",
                     (rec.req, sport, dport))  # at the earliest; enough to bound the table
            maybe_advert(gw, now)
        elif kind == "end":
            gid, jid = data
            gw = gws[gid]
            for job in gw.pool.release(jid, now):
                start(jobs[job.id], job, now)
            maybe_advert(gw, now)
        elif kind == "flow_end":
            r, sport, dport = data
            pc.flow_removed(pc.host[r.client].ip, svc[r.service].address, sport, dport, now)
    return metrics(plan, policy_name, reqs, jobs, refused, reasons, decide_cpu, args, west)


def _key(pc, r: Req, s, sport: int, dport: int):
    from controller.steering import FlowKey
    return FlowKey(pc.host[r.client].ip, s.address, 17, sport, dport)


def metrics(plan, policy: str, reqs: list[Req], jobs: dict[int, JobRec], refused: dict,
            reasons: dict, decide_cpu: float, args,
            west: frozenset[str] | None = None) -> dict:
    svc = {s.name: s for s in plan.services}
    gw = {g.id: g for g in plan.gateways}
    t0 = args.warmup
    t1 = reqs[-1].t if reqs else t0
    window = max(1e-9, t1 - t0)
    served = [j for j in jobs.values() if j.started is not None]
    busy = [j for j in jobs.values() if j.busy]
    lat = {j.req.idx: j.rtt_ms + (j.started - j.submitted) * 1000.0 for j in served}
    viol = [j for j in served if lat[j.req.idx] > svc[j.req.service].budget_ms + 1e-9]
    busy_us: dict[str, float] = dict.fromkeys(gw, 0.0)
    unit_h = cost = green_uh = west_uh = 0.0
    for j in served:
        g = gw[j.gateway]
        end = j.started + j.req.duration
        busy_us[j.gateway] += j.units * max(0.0, min(end, t1) - max(j.started, t0))
        uh = j.units * j.req.duration / 3600.0
        unit_h += uh
        cost += uh * KW_PER_UNIT * (g.price or 0.0) * (g.pue or 1.0)
        green_uh += uh * (g.green or 0.0)
        if west is not None and g.site in west:
            west_uh += uh
    hubs = sorted({g.hub for g in plan.gateways if g.hub})
    util = {h: sum(busy_us[g.id] for g in plan.gateways if g.hub == h)
            / (window * sum(sum(g.units.values()) for g in plan.gateways if g.hub == h))
            for h in hubs}
    u = list(util.values())
    mean_u = statistics.fmean(u) if u else 0.0
    lats = list(lat.values())
    n = len(reqs)
    per_service = {}
    for name in svc:
        mine = [r for r in reqs if r.service == name]
        js = [j for j in jobs.values() if j.req.service == name]
        sv = [j for j in js if j.started is not None]
        per_service[name] = {
            "requests": len(mine), "placed": len(js), "refused": refused.get(name, 0),
            "busy": sum(1 for j in js if j.busy),
            "violations": sum(1 for j in sv if lat[j.req.idx] > svc[name].budget_ms + 1e-9),
            "latency_p95_ms": percentile([lat[j.req.idx] for j in sv], 95) if sv
            else None,
            "west_share": (sum(j.units * j.req.duration for j in sv
                               if gw[j.gateway].site in west)
                           / max(1e-9, sum(j.units * j.req.duration for j in sv)))
            if sv and west is not None else None}
    ok = len(served) - len(viol)
    return {
        "policy": policy, "requests": n, "placed": len(jobs),
        "refused": sum(refused.values()), "busy_at_gateway": len(busy),
        "served": len(served), "sla_violations": len(viol),
        "sla_violation_pct_of_served": 100.0 * len(viol) / max(1, len(served)),
        "not_served_pct": 100.0 * (sum(refused.values()) + len(busy)) / max(1, n),
        "sla_met_pct": 100.0 * ok / max(1, n),
        "latency_mean_ms": statistics.fmean(lats) if lats else None,
        "latency_p95_ms": percentile(lats, 95) if lats else None,
        "hub_utilization": {h: round(v, 4) for h, v in util.items()},
        "utilization_spread": max(u) - min(u) if u else None,
        "utilization_cv": statistics.pstdev(u) / mean_u if mean_u > 0 else None,
        "utilization_mean": mean_u,
        "energy_cost_cny": cost, "unit_hours": unit_h,
        "cost_per_unit_hour_cny": cost / unit_h if unit_h else None,
        "renewable_share": green_uh / unit_h if unit_h else None,
        "west_share": west_uh / unit_h if unit_h and west is not None else None,
        "per_gateway_placed": {g: sum(1 for j in jobs.values() if j.gateway == g)
                               for g in sorted(gw)},
        "per_service": per_service, "refusal_reasons": reasons,
        "decision_cpu_us_mean": decide_cpu / max(1, n) * 1e6,
    }


def markdown(results: list[dict], meta: dict) -> str:
    lines = [f"# Decision quality (analytic mode, seed {meta['seed']}, load {meta['load']:g})",
             "",
             f"{meta['requests']} requests from {len(meta['metros'])} metros over "
             f"{meta['duration_s']:g} s simulated ({meta['rate_per_s']:.2f}/s); utilization "
             f"window {meta['warmup_s']:g} s .. last arrival. The real ControllerCore and "
             f"policies decided; gateways simulated (gateway.pool). Energy cost "
             f"illustrative: CNY at {KW_PER_UNIT:g} kW per unit.", "",
             "| policy | placed | refused | busy at gw | SLA viol. (served) | SLA met % "
             "| lat. mean ms | lat. p95 ms | util. spread | util. CV | energy CNY "
             "| CNY/unit-h | renewable | west share |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(
            f"| {r['policy']} | {r['placed']} | {r['refused']} | {r['busy_at_gateway']} | "
            f"{r['sla_violations']} ({r['sla_violation_pct_of_served']:.1f} %) | "
            f"{r['sla_met_pct']:.1f} | {_f(r['latency_mean_ms'])} | {_f(r['latency_p95_ms'])} | "
            f"{_f(r['utilization_spread'], 3)} | {_f(r['utilization_cv'], 3)} | "
            f"{r['energy_cost_cny']:.0f} | {_f(r['cost_per_unit_hour_cny'], 3)} | "
            f"{_f(r['renewable_share'], 3)} | {_f(r['west_share'], 3)} |")
    hubs = list(results[0]["hub_utilization"]) if results else []
    lines += ["", "Per-hub utilization (busy units / hub units, time average):", "",
              "| policy | " + " | ".join(hubs) + " |", "|---|" + "---|" * len(hubs)]
    for r in results:
        lines.append(f"| {r['policy']} | " + " | ".join(
            f"{r['hub_utilization'][h]:.2f}" for h in hubs) + " |")
    names = list(results[0]["per_service"]) if results else []
    lines += ["", "Per service: refused by the controller / SLA violations / west share:", "",
              "| policy | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for r in results:
        cells = []
        for n in names:
            ps = r["per_service"][n]
            cells.append(f"{ps['refused']}/{ps['requests']} ref, {ps['violations']} viol, "
                         f"west {_f(ps['west_share'], 2)}")
        lines.append(f"| {r['policy']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _f(v, nd: int = 2) -> str:
    return "-" if v is None else f"{v:.{nd}f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--topology", default="edwc")
    ap.add_argument("--load", type=float, default=0.6,
                    help="offered work as a fraction of all units (default 0.6)")
    ap.add_argument("--duration", type=float, default=900.0, help="arrivals over this, s")
    ap.add_argument("--warmup", type=float, default=120.0,
                    help="utilization is averaged after this, s")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--adv-interval", type=float, default=1.0)
    ap.add_argument("--idle-timeout", type=int, default=10)
    ap.add_argument("--policies", default=",".join(POLICIES))
    ap.add_argument("--crosscheck", action="store_true",
                    help="also run a short emulated check of two policies (root)")
    ap.add_argument("--crosscheck-port-type", default="system",
                    help="OVS port type of the cross-check emulation (decisions do not depend "
                         "on it; system starts fastest)")
    args = ap.parse_args()
    if not 0 < args.load <= 5 or args.duration <= 0 or not 0 <= args.warmup < args.duration:
        ap.error("--load must be in (0, 5], --duration > 0, 0 <= --warmup < --duration")
    from topology.loader import load_topology
    from topology.plan import make_plan
    net = load_topology(args.topology)
    plan = make_plan(net, "bdq1")
    metros = [s.id for s in net.sites if s.kind == "metro"]
    west = west_sites(net)
    if not metros or not plan.gateways:
        raise SystemExit("the topology needs metro sites and gateways (compute sites)")
    reqs, rate = make_workload(plan, metros, args.load, args.duration, args.seed)
    print(f"workload: {len(reqs)} requests from {len(metros)} metros, {rate:.2f}/s, "
          f"offered load {args.load:g} of {sum(sum(g.units.values()) for g in plan.gateways)} "
          f"units, seed {args.seed}")
    results = []
    for name in [p.strip() for p in args.policies.split(",") if p.strip()]:
        t = time.perf_counter()
        r = simulate(plan, name, reqs, args, west)
        r["sim_wall_s"] = time.perf_counter() - t
        results.append(r)
        print(f"  {name:<13} placed {r['placed']:>5}  refused {r['refused']:>5}  busy "
              f"{r['busy_at_gateway']:>3}  violations {r['sla_violations']:>4}  SLA met "
              f"{r['sla_met_pct']:5.1f} %  p95 {_f(r['latency_p95_ms'])} ms  spread "
              f"{_f(r['utilization_spread'], 3)}  CV {_f(r['utilization_cv'], 3)}  cost "
              f"{r['energy_cost_cny']:.0f}  west {_f(r['west_share'], 3)}  "
              f"({r['sim_wall_s']:.1f} s)", flush=True)
    meta = {"mode": "analytic: real ControllerCore + policies + registry in-process, "
                    "simulated gateways (gateway.pool), no emulation",
            "topology": args.topology, "seed": args.seed, "load": args.load,
            "duration_s": args.duration, "warmup_s": args.warmup, "rate_per_s": rate,
            "requests": len(reqs), "metros": metros, "mix": MIX,
            "adv_interval_s": args.adv_interval, "idle_timeout_s": args.idle_timeout,
            "kw_per_unit": KW_PER_UNIT,
            "western_hubs": None if west is None else sorted(
                {g.hub or g.site for g in plan.gateways if g.site in west}),
            "energy_unit": "CNY, illustrative (units x hours x kW/unit x price x PUE)"}
    md = markdown(results, meta)
    print("\n" + md)
    out = {"meta": meta, "results": results}
    if args.crosscheck:
        import crosscheck_steer
        cc = out["crosscheck"] = crosscheck_steer.run(net, metros, args.crosscheck_port_type)
        md += "\nCross-check against an emulated run (idle gateways, one job per metro and " \
              "service, same order):\n\n"
        for pol, v in cc["policies"].items():
            st = v["start_minus_model_rtt_ms"]
            md += (f"- {pol}: {v['agree']}/{v['requests']} decisions identical "
                   f"({v['agreement_pct']:.0f} %); {len(v['jobs_failed'])} job(s) failed; "
                   f"emulated start time - model RTT median {st.get('median', float('nan')):.2f}"
                   f" ms (OVS ports: {cc['ovs_port_type']})\n")
    os.makedirs(benchlib.RESULTS, exist_ok=True)
    with open(os.path.join(benchlib.RESULTS, "decision_quality.md"), "w") as f:
        f.write(md)
    benchlib.write("decision_quality", out)


if __name__ == "__main__":
    main()
