"""report.md: a run result ("edwc-report/1", experiments.framework.result.RunResult)
rendered for people to read.

Pure: RunResult in, Markdown text out. Each section renders what the result holds and says
"not measured" for the sections and figures it lacks; values RunResult.from_dict could not
use are listed under "Notes and errors". A section that still trips over an unexpected
value is replaced by a one-line note instead of losing the whole report.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

from experiments.framework.result import (
    ConnectTimes,
    Metrics,
    Reading,
    ResponseTimes,
    RunResult,
)
from experiments.framework.scenario import (
    CapacityShift,
    FiberCut,
    InterruptionStats,
    PolicyComparison,
    StreamInfo,
)
from experiments.report.data import (
    MISSING,
    PLOT_FILES,
    as_result,
    fmt,
    fmt_pct,
    median,
    per_policy,
    placements_per_hub,
    policies,
    service_stats,
    site_counts,
    text,
)

FAILOVER_TARGET_MS = 50.0


def _table(headers: list[str], rows: list[list[Any]]) -> list[str]:
    def cell(c: Any) -> str:
        return text(c).replace("|", "\\|").replace("\n", " ")
    out = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    return out + ["| " + " | ".join(cell(c) for c in r) + " |" for r in rows]


def _kv(items: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in items.items()) or "-"


def _nm(what: str) -> list[str]:
    return [f"_{what}: {MISSING}._"]


def _per_policy(r: RunResult) -> list[str] | None:
    """A policy comparison keeps its figures per policy: point there instead of 'missing'."""
    return ["_Per policy: see the policy comparison below._"] if per_policy(r) else None


# --- sections -----------------------------------------------------------------------------

def _header(r: RunResult) -> list[str]:
    status = (r.status or "unknown").upper()
    out = [f"# {r.title or 'EDWC run'}", "",
           f"**Status: {status}** · kind: {r.kind or '?'} · run "
           f"{(r.run.run_id if r.run else None) or '-'} · started {r.started_at or '-'} · "
           f"finished {r.finished_at or '-'} · wall {fmt(r.wall_s, 's')}"]
    if r.error:
        out += ["", f"> **{status.lower()}:** {r.error}"]
    bad = [f"{p.name or '?'} ({p.status or '?'})" for p in r.phases if p.status != "ok"]
    if bad:
        out += ["", f"**Partial:** phases not completed: {', '.join(bad)}."]
    present = {"topology": r.topology, "envelope": r.envelope, "workload": r.workload,
               "jobs": r.jobs, "metrics": r.metrics}
    skip = ("jobs", "metrics") if r.kind == "policy-comparison" else ()
    missing = [k for k, v in present.items() if not v and k not in skip]
    if r.kind not in (None, "backbone") and not r.scenario:
        missing.append("scenario")
    if missing:
        out += ["", f"Not measured in this run: {', '.join(missing)}."]
    return out


def _what(r: RunResult) -> list[str]:
    run, cfg = r.run, r.config
    emu = run.emulation if run else None
    ctl = run.controller if run else None
    counts = site_counts(r)
    topo = (r.topology.name if r.topology else None) or (run.topology if run else None)
    out = ["## What was run", ""]
    if topo and not counts:
        out.append(f"- topology: **{topo}** (sites and links: {MISSING})")
    elif topo:
        kinds = ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))
        source = run.topology_source if run else None
        out.append(f"- topology: **{topo}** ({sum(counts.values())} sites: {kinds or '-'}; "
                   f"{len(r.topology.links) if r.topology else 0} links)"
                   + (f"; source `{source}`" if source else ""))
    else:
        out.append(f"- topology: {MISSING}")
    if emu:
        out.append(f"- link emulation: **{emu.link or '?'}** "
                   f"({emu.link_reason or emu.reason or 'no reason recorded'})")
        out.append(f"- OVS datapath: **{emu.datapath or '?'}** "
                   f"({emu.datapath_reason or emu.reason or 'no reason recorded'})"
                   + (f"; ports: {emu.port_type} ({emu.port_reason or '-'})"
                      if emu.port_type else ""))
        if run.substrate_us is not None:
            out.append(f"- substrate baseline: {fmt(run.substrate_us, nd=1)} us per switch "
                       "(the switches' own latency, accounted for by the delay line)")
    else:
        out.append(f"- link emulation / datapath: {MISSING}")
    policy = (ctl.policy if ctl else None) or (cfg.policy if cfg else None)
    out.append(f"- controller policy: **{policy or '-'}**"
               + (f" ({_kv(ctl.policy_params)})" if ctl and ctl.policy_params else "")
               + (f"; delay source {ctl.delay_source}" if ctl and ctl.delay_source else "")
               + (f"; {len(ctl.gateways)} gateways" if ctl and ctl.gateways is not None
                  else ""))
    seed = cfg.seed if cfg and cfg.seed is not None else (run.seed if run else None)
    out.append(f"- seed: {seed if seed is not None else '-'}")
    dur = cfg.configured_duration_s if cfg else None
    out.append(f"- duration: {text(dur)} s configured")
    out.append(f"- software: {_kv(run.versions) if run and run.versions else MISSING}")
    if cfg and cfg.argv is not None:
        out.append(f"- command line: `{' '.join(cfg.argv) or '(defaults)'}`")
    rows = [[k, v] for k, v in (cfg.items() if cfg else []) if k != "argv"]
    out += ["", "### Configuration", ""]
    out += _table(["option", "value"], rows) if rows else _nm("configuration")
    services = run.services if run else []
    if services:
        out += ["", "### Services", ""]
        out += _table(["service", "class", "budget ms", "units", "kinds", "address"],
                      [[s.name, s.service_class, fmt(s.budget_ms, nd=0), s.units,
                        ", ".join(s.kinds), f"{s.address or '-'}:{text(s.port)}"]
                       for s in services])
    return out


def _timings(r: RunResult) -> list[str]:
    out = ["## Timings", ""]
    if r.phases:
        out += _table(["phase", "seconds", "status"],
                      [[p.name, fmt(p.s), p.status] for p in r.phases])
        total = sum(p.s or 0 for p in r.phases)
        out += ["", f"Sum of phases {total:.1f} s; wall {fmt(r.wall_s, 's')}."]
    else:
        out += _nm("phase timings")
    if r.run and r.run.timings:
        out += ["", "Emulation: " + ", ".join(f"{k} {fmt(v, nd=2)}"
                                               for k, v in r.run.timings.items())]
    return out


def _envelope(r: RunResult) -> list[str]:
    env = r.envelope
    if env is None:
        return ["## Latency envelopes", ""] + _nm("latency envelopes")
    pct = fmt(env.percentile, nd=0)
    out = [f"## Latency envelopes: {(env.status or '?').upper()}", "",
           f"p{pct} of each pair's samples; metric: {env.metric_override or 'each tier'}"
           f"'s own; a verdict needs >= {text(env.min_samples)} samples and <= "
           f"{fmt(env.max_loss_pct, nd=0)}% loss per direction (exactly on the limit "
           f"passes); tiers from `{env.tier_source or '-'}`.", ""]
    out += _table(["tier", "limit ms", "metric", "rule", "verdict", "pairs", "pass", "fail",
                   "insufficient", "worst margin ms", "model fails"],
                  [[t.tier_id, fmt(t.tier.threshold_ms if t.tier else None, nd=0), t.metric,
                    t.tier.rule if t.tier else None, (t.status or "?").upper(), t.pairs,
                    t.passed, t.failed, t.insufficient,
                    fmt(t.worst_margin_ms, nd=3, signed=True), t.model_failed]
                   for t in env.tiers]) if env.tiers else _nm("tiers")
    failing = [p for p in env.pairs if p.status == "fail"]
    out += ["", f"### Failing pairs ({len(failing)})", ""]
    if failing:
        rows = []
        for p in failing:
            m = p.metric or "one-way"
            rd = p.reading(m) or Reading()
            note = f"worse direction {rd.direction}" if rd.direction else ""
            if p.model_status == "pass":
                note += ("; " if note else "") + "model passes: excess from the emulation"
            rows.append([p.tier, p.src, p.dst, m, fmt(rd.measured_ms, nd=3),
                         fmt(rd.threshold_ms, nd=0), fmt(rd.margin_ms, nd=3, signed=True),
                         fmt(p.model_ms.get(m), nd=3), note])
        out += _table(["tier", "src", "dst", "metric", f"measured p{pct} ms", "limit ms",
                       "margin ms", "model ms", "note"], rows)
    else:
        out.append("None." if env.pairs else f"_pairs: {MISSING}._")
    insuff = [p for p in env.pairs if p.status == "insufficient"]
    if insuff:
        why = [(p, (p.reading().reason if p.reading() else None) or "-") for p in insuff]
        out += ["", f"No verdict ({len(insuff)} insufficient): " + "; ".join(
            f"{p.src} > {p.dst} ({reason})" for p, reason in why)]
    return out


def _workload(r: RunResult) -> list[str]:
    wl = r.workload
    out = ["## Workload", ""]
    if wl:
        out.append(f"- requests: {text(wl.requests)}; offered rate "
                   f"{fmt(wl.offered_rate_per_s, 'per s', 2)}")
        if wl.config:
            out.append(f"- generator: {_kv(wl.config)}")
    else:
        out += _nm("workload description")
    js = r.jobs or []
    stats = service_stats(r)
    if not stats:
        if wl and wl.per_service:
            out += ["", _kv(wl.per_service)]
        out += [""] + (_per_policy(r) or _nm("jobs"))
        return out
    deferred = [j.deferred_s for j in js if (j.deferred_s or 0) > 0]
    out.append(f"- deferred (waiting for off-peak power): {len(deferred)} of {len(js)} jobs"
               + (f", median wait {fmt(median(deferred), 's')}" if deferred else ""))
    out += ["", "### Per service", ""]
    out += _table(["service", "budget ms", "requests", "served", "SLA violations", "deferred",
                   "response p50 ms", "response p95 ms"],
                  [[name, fmt(st["budget_ms"], nd=0), st["requests"], st["served"],
                    st["sla_violations"], st["deferred"], fmt(st["p50"], nd=2),
                    fmt(st["p95"], nd=2)] for name, st in stats.items()])
    return out


def _placement(r: RunResult) -> list[str]:
    m = r.metrics
    out = ["## Where work was placed", ""]
    if _per_policy(r):
        return out + _per_policy(r)  # type: ignore[operator]
    per_hub = m.per_hub if m else {}
    placed = placements_per_hub(r)
    if not placed:
        return out + _nm("placements")
    total = sum(placed.values()) or 1
    if per_hub:
        out += _table(["hub", "placed", "share", "unit-seconds", "capacity units",
                       "utilization"],
                      [[h, v.placed, fmt_pct((v.placed or 0) / total), fmt(v.unit_s), v.units,
                        fmt_pct(v.utilization, 2)] for h, v in per_hub.items()])
    else:
        out += ["_Counted from the jobs (no metrics recorded)._", ""]
        out += _table(["hub", "placed", "share"],
                      [[h, n, fmt_pct(n / total)] for h, n in placed.items()])
    if m and m.per_gateway:
        out += ["", "Per gateway: " + ", ".join(
            f"{g} ({v.hub or '-'}) {text(v.placed)}" for g, v in m.per_gateway.items())]
    out += ["", f"Utilization spread across hubs (max - min): "
            f"{fmt_pct(m.utilization_spread if m else None, 2)}; west share of placements: "
            f"{_west(m)}."]
    return out


def _west(m: Metrics | None, nd: int = 1) -> str:
    """The west share; on a topology without zones, that it is not defined."""
    if m is not None and m.west_share is None and m.west_hubs is None \
            and "west_hubs" not in m.absent:
        return "not defined (no site of the topology has a zone)"
    return fmt_pct(m.west_share if m else None, nd)


def _sla(r: RunResult) -> list[str]:
    m = r.metrics
    out = ["## SLA and response latency", ""]
    if _per_policy(r):
        return out + _per_policy(r)  # type: ignore[operator]
    if not m:
        return out + _nm("SLA and latency metrics")
    rs, cs = m.response_ms or ResponseTimes(), m.connect_ms or ConnectTimes()
    out += [f"- requests {text(m.requests)}: served {text(m.served)}, refused "
            f"{text(m.refused)}, failed {text(m.failed)}",
            f"- SLA violations: **{text(m.sla_violations)}** ({fmt(m.sla_violation_pct)}%)",
            f"- response latency (ms): p50 {fmt(rs.p50, nd=2)}, p95 {fmt(rs.p95, nd=2)}, p99 "
            f"{fmt(rs.p99, nd=2)}, mean {fmt(rs.mean, nd=2)}",
            f"- placement (connect) latency (ms): p50 {fmt(cs.p50, nd=2)}, p95 "
            f"{fmt(cs.p95, nd=2)}",
            f"- reroutes: {text(m.reroutes)}; jobs interrupted: {text(m.interrupted_jobs)}"]
    errs = Counter(j.error for j in r.jobs or [] if j.error)
    if errs:
        out.append("- job errors: " + "; ".join(f"{n} x {e}" for e, n in errs.most_common(5)))
    return out


def _energy(r: RunResult) -> list[str]:
    m = r.metrics
    out = ["## Energy cost (illustrative)", ""]
    if _per_policy(r):
        return out + _per_policy(r)  # type: ignore[operator]
    if m is None or m.energy_cost_cny is None:
        return out + _nm("energy cost")
    return out + [f"- energy cost: **{fmt(m.energy_cost_cny, 'CNY', 3)}**; per "
                  f"unit-hour {fmt(m.cost_per_unit_hour_cny, 'CNY', 3)}",
                  "- illustrative: computed from the topology's illustrative energy prices and "
                  "PUE, not from measured power."]


def _fiber_cut(sc: FiberCut) -> list[str]:
    link = " - ".join(sc.link or ["?"])
    st, im = sc.stream or StreamInfo(), sc.interruption_ms or InterruptionStats()
    cuts = sc.cuts
    met = sum(1 for c in cuts if c.interruption_ms is not None
              and c.interruption_ms <= FAILOVER_TARGET_MS)
    sent = f" (sent {st.sent}, lost {text(st.lost)})" if st.sent is not None else ""
    out = [f"- cut link: **{link}**; stream {st.src or '?'} -> {st.dst or '?'} at "
           f"{text(st.rate_pps)} packets/s{sent}",
           f"- interruption: median **{fmt(im.median, 'ms')}**, max "
           f"{fmt(im.max, 'ms')} over {im.n if im.n is not None else len(cuts)} cuts; target "
           f"<= {FAILOVER_TARGET_MS:g} ms met by {met} of {len(cuts)}"]
    if sc.model_path_without_link:
        out.append(f"- model's path without the link: {' > '.join(sc.model_path_without_link)} "
                   f"({fmt(sc.model_one_way_ms_without_link, 'ms', 3)} one-way)")
    out.append("")
    if not cuts:
        return out + _nm("cuts")
    return out + _table(
        ["#", "cut s", "restored s", "interruption ms", "lost", "old path", "new path",
         "new path one-way ms", "envelope", "verdict"],
        [[i + 1, fmt(c.t_cut, nd=2), fmt(c.t_restore, nd=2), fmt(c.interruption_ms), c.lost,
          " > ".join(c.old_path or []) or "-", " > ".join(c.new_path or []) or "-",
          fmt(c.new_path_one_way_ms, nd=3),
          f"{c.envelope_tier or '-'} {fmt(c.envelope_ms, nd=0)} ms",
          (c.verdict or "-").upper()] for i, c in enumerate(cuts)])


def _capacity_shift(sc: CapacityShift) -> list[str]:
    before, after = sc.placements_before, sc.placements_after
    out = [f"- event: hub **{sc.hub or '?'}** {sc.action or 'event'} at t = "
           f"{fmt(sc.t_event, 's')}",
           f"- the controller's view showed it after "
           f"**{fmt(sc.controller_view_ms, 'ms')}** (state API polled every 0.1 s)",
           f"- reaction: the last new flow still sent to the hub that it could not serve at "
           f"once came **{fmt(sc.reaction_ms, 'ms')}** after the event "
           f"({text(sc.misplaced)} such flow(s); 0 ms: none)"]
    if sc.late_placements is not None:
        out.append(f"- new flows placed on the hub after the event: {sc.late_placements}, "
                   f"served {text(sc.late_placements_served)} (units freed by finished "
                   "jobs are legitimately reused)")
    out += [f"- existing flows: {text(sc.existing_survived)} of {text(sc.existing_flows)} "
            "survived", ""]
    hubs = list(dict.fromkeys(list(before) + list(after)))
    if not hubs:
        return out + _nm("placements before / after")
    return out + _table(["hub", "placements before", "placements after"],
                        [[h, before.get(h, 0), after.get(h, 0)] for h in hubs])


def _policy_comparison(r: RunResult, sc: PolicyComparison) -> list[str]:
    ps = policies(r)
    if not ps:
        return _nm("policies")
    rows = []
    for p in ps:
        m = p.metrics or Metrics()
        rs, cs = m.response_ms or ResponseTimes(), m.connect_ms or ConnectTimes()
        placed = placements_per_hub(r, m)
        rows.append([p.policy, f"{text(m.sla_violations)} ({fmt(m.sla_violation_pct)}%)",
                     m.refused, f"{fmt(cs.p50, nd=2)} / {fmt(cs.p95, nd=2)}",
                     fmt(rs.p95, nd=2), fmt_pct(m.utilization_spread, 2),
                     fmt(m.energy_cost_cny, nd=3), fmt_pct(m.west_share), m.reroutes,
                     ", ".join(f"{h} {n}" for h, n in placed.items()) or "-"])
    out = [f"Same workload (seed {text(sc.workload_seed)}) under each policy.", ""]
    out += _table(["policy", "SLA violations", "refused", "connect p50 / p95 ms",
                   "response p95 ms", "utilization spread", "energy cost CNY (illustr.)",
                   "west share", "reroutes", "placed per hub"], rows)
    gws = list(dict.fromkeys(g for p in ps for g in p.placements))
    if gws:
        out += ["", "Placements per gateway:", ""]
        out += _table(["policy"] + gws, [[p.policy] + [p.placements.get(g, 0) for g in gws]
                                         for p in ps])
    for p in ps:
        out += ["", f"**{p.policy}**:" + ("" if p.explanations else " no explanation recorded")]
        out += [f"- {e}" for e in p.explanations]
    return out


def _scenario(r: RunResult) -> list[str]:
    kind = r.kind
    if kind in (None, "backbone"):
        return []
    titles = {"fiber-cut": "Fiber cut", "capacity-shift": "Capacity shift",
              "policy-comparison": "Policy comparison"}
    out = [f"## Scenario: {titles.get(kind, kind)}", ""]
    sc = r.scenario
    if not sc:
        return out + _nm("scenario results")
    if isinstance(sc, FiberCut):
        return out + _fiber_cut(sc)
    if isinstance(sc, CapacityShift):
        return out + _capacity_shift(sc)
    if isinstance(sc, PolicyComparison):
        return out + _policy_comparison(r, sc)
    return out + ["_Unknown scenario kind; see report.json._"]


def _notes(r: RunResult) -> list[str]:
    out = ["## Notes and errors", ""]
    out += [f"- note: {n}" for n in r.notes if n] + [f"- **error:** {e}" for e in r.errors if e]
    out += [f"- **report.json:** {p} (left out)" for p in r.problems]
    out.append(f"- controller decisions recorded: {len(r.decisions or [])} (in report.json)")
    return out


def _plots(plots: Mapping[str, str | None] | None) -> list[str]:
    out = ["## Plots", ""]
    if plots is None:
        return out + ["_Plots not rendered._"]
    for name, (_, title) in PLOT_FILES.items():
        f = plots.get(name)
        if f and not f.startswith("failed:"):
            out += [f"- [{title}]({f})", "", f"  ![{title}]({f})", ""]
        elif f:
            out.append(f"- {title}: could not be drawn ({f[len('failed:'):].strip()})")
        else:
            out.append(f"- {title}: no data in this run")
    return out


SECTIONS: list[Callable[[RunResult], list[str]]] = [
    _header, _what, _timings, _envelope, _workload, _placement, _sla, _energy, _scenario,
    _notes]


def render(result: RunResult | dict, plots: Mapping[str, str | None] | None = None) -> str:
    result = as_result(result)
    parts: list[str] = []
    for section in SECTIONS:
        try:
            lines = section(result)
        except Exception as e:  # noqa: BLE001 - one odd value must not lose the report
            lines = [f"_Section {section.__name__.strip('_')} could not be rendered: "
                     f"{type(e).__name__}: {e}._"]
        if lines:
            parts.append("\n".join(lines))
    parts.append("\n".join(_plots(plots)))
    return "\n\n".join(parts).rstrip() + "\n"
