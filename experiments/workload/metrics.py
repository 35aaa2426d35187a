"""Job outcomes and run metrics of an experiment (pure: no root, no emulation).

`job_records` joins the workload's requests with the load generators' result lines
(experiments/workload/loadgen.py; dicts) by ``idx`` into the run result's jobs
(experiments.framework.result.Job); `compute_metrics` turns those into its Metrics;
`placements_over_time` bins placements per hub.

Outcome of one job (``outcome``), from the client's view (gateway/client.py):

- served: the job started (``ok``) and its done reply arrived (``done``).
- refused: the connection was refused or reset at connect (``error`` "connect" with
  "refused" or "reset" in the detail): the controller found no gateway whose advertised
  capacity and latency fit, and answered the SYN with a TCP reset.
- busy: a gateway took the connection and answered "busy" (no free units, queue full) or
  "overloaded" (too many connections): placed, but the gateway had no room.
- failed: anything else that did not run to its end: connect timeout or unreachable,
  "timeout", "closed", "bad-reply", other gateway errors (unknown-service, no-kind,
  too-large, shutting-down), a job that started but was lost before its done reply, and
  "overload" (the load generator's own concurrency bound: the request was never sent).
- running: the job started and was still running when the measurement window ended (the
  runner stops the load generators a few seconds after the last arrival; error
  "running-at-end"): its response latency counts, its units count until the window's end.
- interrupted: the run stopped (Ctrl-C) while the job was in flight; its fate is unknown.
- not-sent: no result line (the run stopped before the request was due).

SLA: ``sla_ok`` is True for a job that started (ok), ran to its end (done) or was still
running at the window's end, and whose
response latency (``start_ms``: request sent -> start reply, i.e. path round trip plus
queueing) is within the service's ``budget_ms``; False for a started job over budget or
lost before its end; None for jobs that never started (refused, busy and failed are
counted separately) and for interrupted ones. sla_violation_pct is over started jobs;
sla_met_pct over all sent requests (as in benchmarks/decision_quality.py).

Accounting: a started job holds ``units`` from t_start + (connect_ms + start_ms) / 1000 for
``duration_s`` (less if it was lost earlier: until t_start + total_ms / 1000). Utilization
of a hub = those unit-seconds clipped to [0, window_s] / (hub's units x window_s). Energy
cost is ILLUSTRATIVE: unit-hours x KW_PER_UNIT x price (CNY/kWh) x PUE, over the whole
time held. A gateway outside any hub counts as its own hub (its site id).

West share: the share of held unit-seconds on western gateways. "Western" comes from the
topology's data, not from a list of hubs: a site's zone is its own ``zone``, else the
``zone`` of its hub site, and a gateway is western when the zone of its site is "west"
(`west_sites`). The sites' ``region`` cannot say it: regions are geography (they make the
5 ms circle), and in the EDWC dataset the western hub nmg shares region "north" with bth,
while the eastern (demand) hub cy shares "southwest" with the western gz. The EDWC data
marks its eight hubs zone east (bth, yrd, gba, cy) or west (nmg, gz, gs, nx). A topology
where no site has a zone (e.g. a Topology Zoo import) defines no west: west_share is None.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Collection, Iterable, Sequence
from typing import Any

from common.stats import percentile
from experiments.framework.result import (
    ConnectTimes,
    GatewayUsage,
    HubUsage,
    Job,
    Metrics,
    ResponseTimes,
)

WEST_ZONE = "west"  # the site zone whose gateways count as western (west_share)
KW_PER_UNIT = 1.0  # illustrative power draw of one compute unit (accelerator + host share)
OUTCOMES = ("served", "running", "refused", "busy", "failed", "interrupted", "not-sent")
RUNNING_AT_END = "running-at-end"  # the runner's error for jobs cut off by the window's end
BUSY_ERRORS = ("busy", "overloaded")


def energy_cost_cny(units: float, seconds: float, price: float | None,
                    pue: float | None) -> float:
    """Illustrative energy cost: unit-hours x KW_PER_UNIT x price x PUE (missing: 0, 1)."""
    return units * seconds / 3600.0 * KW_PER_UNIT * (price or 0.0) * (pue or 1.0)


def hub_key(gateway) -> str:
    """The hub a plan gateway counts towards: its hub, or its site if it has none."""
    return gateway.hub or gateway.site


def zone_of(site, by_id: dict) -> str | None:
    """A site's zone: its own, else its hub site's (None when neither has one)."""
    if site.zone:
        return site.zone
    hub = by_id.get(site.hub) if site.hub else None
    return hub.zone if hub is not None else None


def west_sites(network) -> frozenset[str] | None:
    """The ids of the sites of a topology.model.Network whose zone is WEST_ZONE (see the
    module docstring); None when no site has a zone: the topology defines no west."""
    by_id = {s.id: s for s in network.sites}
    if not any(s.zone for s in network.sites):
        return None
    return frozenset(s.id for s in network.sites if zone_of(s, by_id) == WEST_ZONE)


def outcome(result: dict | None) -> str:
    """One of OUTCOMES for a loadgen result line (None: no line)."""
    if result is None:
        return "not-sent"
    err = result.get("error")
    if result.get("ok") and result.get("done"):
        return "served"
    if err == "interrupted":
        return "interrupted"
    if err == RUNNING_AT_END:
        return "running" if result.get("ok") else "interrupted"
    if err == "connect":
        detail = str(result.get("detail") or "").lower()
        if "refused" in detail or "reset" in detail:
            return "refused"
        return "failed"
    if err in BUSY_ERRORS:
        return "busy"
    return "failed"


def _held(job: Job) -> tuple[float, float] | None:
    """(start, end) in workload seconds of the units a started job held, else None."""
    if not job.ok or job.t_start is None:
        return None
    start = job.t_start + ((job.connect_ms or 0.0) + (job.start_ms or 0.0)) / 1000.0
    end = start + float(job.duration_s or 0.0)
    if not job.done and job.total_ms is not None and job.error != "interrupted":
        end = min(end, job.t_start + job.total_ms / 1000.0)
    return start, max(start, end)


def job_records(requests: Iterable, results: Iterable[dict], plan,
                problems: list[str] | None = None) -> list[Job]:
    """The run result's jobs: one per request (experiments.workload.generator.Request),
    joined with its load-generator result line by idx (docs/reports.md). A value of a
    result line that is not of its type is left out and named in `problems` (None:
    ResultFormatError)."""
    by_idx: dict[int, dict] = {}
    for r in results:
        if isinstance(r, dict) and isinstance(r.get("idx"), int):
            by_idx[r["idx"]] = r
    svc = {s.name: s for s in plan.services}
    gws = {g.id: g for g in plan.gateways}
    client = {h.site: h.name for h in plan.hosts}
    out = []
    for q in requests:
        res = by_idx.get(q.idx)
        r = res or {}
        s = svc.get(q.service)
        budget = float(s.budget_ms) if s is not None else None
        gw = r.get("gw")
        g = gws.get(gw) if gw is not None else None
        oc = outcome(res)
        start_ms = r.get("start_ms")
        sla: bool | None = None
        if r.get("ok") and oc != "interrupted":
            sla = (bool(r.get("done")) or oc == "running") and start_ms is not None \
                and budget is not None and start_ms <= budget
        out.append(Job.from_dict({
            "idx": q.idx, "t": q.t, "t_start": r.get("t_start"),
            "client": client.get(q.metro, q.metro), "metro": q.metro, "service": q.service,
            "units": q.units, "duration_s": q.duration_s,
            "deferred_s": round(q.t - q.arrival_t, 6), "budget_ms": budget,
            "ok": bool(r.get("ok")), "done": bool(r.get("done")),
            "error": "not-sent" if res is None else r.get("error"),
            "gw": gw, "hub": hub_key(g) if g is not None else None, "kind": r.get("kind"),
            "connect_ms": r.get("connect_ms"), "start_ms": start_ms,
            "queued_ms": r.get("queued_ms"), "total_ms": r.get("total_ms"),
            "sla_ok": sla, "outcome": oc}, problems, f"jobs[{len(out)}]"))
    return out


def compute_metrics(jobs: Sequence[Job], plan, window_s: float,
                    reroutes: int | None = None, *, west: Collection[str] | None) -> Metrics:
    """The run's Metrics from job_records(...) over a run of window_s seconds.

    ``reroutes`` comes from the controller (flows moved to a new path), None if unknown.
    ``west``: the site ids that count as western (`west_sites` of the topology); None: the
    topology defines no west, and west_share and west_hubs are None."""
    if not window_s > 0 or not math.isfinite(window_s):
        raise ValueError(f"window_s = {window_s!r}: give the run length in seconds, > 0")
    gws = {g.id: g for g in plan.gateways}
    hubs_units: dict[str, int] = {}
    for g in plan.gateways:
        hubs_units[hub_key(g)] = hubs_units.get(hub_key(g), 0) + sum(g.units.values())
    counts = dict.fromkeys(OUTCOMES, 0)
    for j in jobs:
        counts[j.outcome or "failed"] += 1
    sent = [j for j in jobs if j.outcome != "not-sent"]
    started = [j for j in sent if j.ok]
    violations = sum(1 for j in started if j.sla_ok is False)
    met = sum(1 for j in started if j.sla_ok is True)
    placed = dict.fromkeys(sorted(hubs_units), 0)
    unit_s = dict.fromkeys(sorted(hubs_units), 0.0)
    per_gw = {g: GatewayUsage(placed=0, hub=hub_key(gws[g])) for g in sorted(gws)}
    held_total = held_west = cost = green = 0.0
    for j in sent:
        if j.gw is None:
            continue
        g = gws.get(j.gw)
        per_gw.setdefault(j.gw, GatewayUsage(placed=0, hub=None)).placed += 1
        if g is not None:
            placed[hub_key(g)] += 1
        span = _held(j)
        if span is None:
            continue
        a, b = span
        units = j.units or 0
        held = units * (b - a)
        held_total += held
        if g is None:
            continue
        unit_s[hub_key(g)] += units * max(0.0, min(b, window_s) - max(a, 0.0))
        if west is not None and g.site in west:
            held_west += held
        cost += energy_cost_cny(units, b - a, g.price, g.pue)
        green += held * (g.green or 0.0)
    per_hub = {h: HubUsage(placed=placed[h], unit_s=round(unit_s[h], 3), units=u,
                           utilization=unit_s[h] / (u * window_s) if u else None)
               for h, u in sorted(hubs_units.items())}
    utils = [d.utilization for d in per_hub.values() if d.utilization is not None]
    unit_h = held_total / 3600.0
    n = len(sent)
    response = [j.start_ms for j in started if j.start_ms is not None]
    connect = [j.connect_ms for j in sent if j.connect_ms is not None]
    return Metrics(
        requests=n, served=counts["served"], running_at_end=counts["running"],
        refused=counts["refused"], busy=counts["busy"], failed=counts["failed"],
        interrupted_jobs=counts["interrupted"], not_sent=counts["not-sent"],
        client_overload=sum(1 for j in sent if j.error == "overload"),
        started=len(started), sla_violations=violations,
        sla_violation_pct=100.0 * violations / len(started) if started else None,
        sla_met_pct=100.0 * met / n if n else None,
        response_ms=ResponseTimes(
            p50=percentile(response, 50), p95=percentile(response, 95),
            p99=percentile(response, 99),
            mean=statistics.fmean(response) if response else None),
        connect_ms=ConnectTimes(p50=percentile(connect, 50), p95=percentile(connect, 95)),
        per_hub=per_hub, per_gateway=per_gw,
        utilization_spread=max(utils) - min(utils) if utils else None,
        energy_cost_cny=cost, unit_hours=unit_h,
        cost_per_unit_hour_cny=cost / unit_h if unit_h > 0 else None,
        renewable_share=green / held_total if held_total > 0 else None,
        west_share=held_west / held_total if held_total > 0 and west is not None else None,
        west_hubs=None if west is None else sorted(
            {hub_key(g) for g in plan.gateways if g.site in west}),
        reroutes=reroutes, window_s=window_s)


def placements_over_time(jobs: Sequence[Job], bin_s: float, plan=None,
                         window_s: float | None = None) -> dict[str, Any]:
    """Placements (jobs that reached a gateway) per hub in bins of bin_s by t_start:
    {"t": [bin start s...], "per_hub": {hub: [count...]}}. With `plan`, every hub that has
    a gateway is listed, placed or not; window_s fixes the number of bins."""
    if not bin_s > 0 or not math.isfinite(bin_s):
        raise ValueError(f"bin_s = {bin_s!r}: give the bin width in seconds, > 0")
    placed = [j for j in jobs if j.gw is not None and j.t_start is not None]
    end = window_s if window_s is not None else max((j.t_start for j in placed),
                                                    default=0.0)
    nbins = max(1, math.ceil(end / bin_s - 1e-9)) if end > 0 else 1
    hubs = sorted({hub_key(g) for g in plan.gateways}) if plan is not None else []
    per_hub: dict[str, list[int]] = {h: [0] * nbins for h in hubs}
    for j in placed:
        h = j.hub or j.gw
        k = min(nbins - 1, max(0, int(j.t_start // bin_s)))
        per_hub.setdefault(h, [0] * nbins)[k] += 1
    return {"t": [round(i * bin_s, 6) for i in range(nbins)],
            "per_hub": dict(sorted(per_hub.items()))}
