"""report.md: a run result ("edwc-report/1") rendered for people to read.

Pure: result dict in, Markdown text out. Each section renders what the result holds and
says "not measured" for the rest; a section that still trips over an unexpected value is
replaced by a one-line note instead of losing the whole report (experiments.report.build).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

from experiments.report.data import (
    MISSING,
    PLOT_FILES,
    as_dict,
    dicts,
    envelope_pairs,
    envelope_tiers,
    fmt,
    fmt_pct,
    get,
    jobs,
    median,
    num,
    placements_per_hub,
    policies,
    service_stats,
    site_counts,
    text,
    tier_id,
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


def _per_policy(r: dict) -> list[str] | None:
    """A policy comparison keeps its figures per policy: point there instead of 'missing'."""
    if r.get("kind") == "policy-comparison" and not r.get("metrics") and policies(r):
        return ["_Per policy: see the policy comparison below._"]
    return None


# --- sections -----------------------------------------------------------------------------

def _header(r: dict) -> list[str]:
    status = str(r.get("status") or "unknown").upper()
    out = [f"# {r.get('title') or 'EDWC run'}", "",
           f"**Status: {status}** · kind: {r.get('kind', '?')} · run "
           f"{get(r, 'run', 'run_id', default='-')} · started {r.get('started_at', '-')} · "
           f"finished {r.get('finished_at', '-')} · wall {fmt(r.get('wall_s'), 's')}"]
    if r.get("error"):
        out += ["", f"> **{status.lower()}:** {r['error']}"]
    phases = dicts(r.get("phases"))
    bad = [f"{p.get('name', '?')} ({p.get('status', '?')})" for p in phases
           if p.get("status") != "ok"]
    if bad:
        out += ["", f"**Partial:** phases not completed: {', '.join(bad)}."]
    per_policy = ("jobs", "metrics") if r.get("kind") == "policy-comparison" else ()
    missing = [k for k in ("topology", "envelope", "workload", "jobs", "metrics")
               if not r.get(k) and k not in per_policy]
    if r.get("kind") not in (None, "backbone") and not r.get("scenario"):
        missing.append("scenario")
    if missing:
        out += ["", f"Not measured in this run: {', '.join(missing)}."]
    return out


def _what(r: dict) -> list[str]:
    run, cfg = as_dict(r.get("run")), as_dict(r.get("config"))
    emu, ctl = as_dict(run.get("emulation")), as_dict(run.get("controller"))
    counts = site_counts(r)
    topo = get(r, "topology", "name") or run.get("topology")
    out = ["## What was run", ""]
    if topo and not counts:
        out.append(f"- topology: **{topo}** (sites and links: {MISSING})")
    elif topo:
        kinds = ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))
        out.append(f"- topology: **{topo}** ({sum(counts.values())} sites: {kinds or '-'}; "
                   f"{len(dicts(get(r, 'topology', 'links')))} links)"
                   + (f"; source `{run['topology_source']}`" if run.get("topology_source")
                      else ""))
    else:
        out.append(f"- topology: {MISSING}")
    if emu:
        out.append(f"- link emulation: **{emu.get('link', '?')}** "
                   f"({emu.get('link_reason') or emu.get('reason') or 'no reason recorded'})")
        out.append(f"- OVS datapath: **{emu.get('datapath', '?')}** "
                   f"({emu.get('datapath_reason') or emu.get('reason') or 'no reason recorded'})"
                   + (f"; ports: {emu['port_type']} ({emu.get('port_reason', '-')})"
                      if emu.get("port_type") else ""))
        if run.get("substrate_us") is not None:
            out.append(f"- substrate baseline: {fmt(run['substrate_us'], nd=1)} us per switch "
                       "(the switches' own latency, accounted for by the delay line)")
    else:
        out.append(f"- link emulation / datapath: {MISSING}")
    policy = ctl.get("policy") or cfg.get("policy")
    out.append(f"- controller policy: **{policy or '-'}**"
               + (f" ({_kv(ctl['policy_params'])})" if ctl.get("policy_params") else "")
               + (f"; delay source {ctl['delay_source']}" if ctl.get("delay_source") else "")
               + (f"; {len(ctl['gateways'])} gateways" if isinstance(ctl.get("gateways"), list)
                  else ""))
    seed = cfg.get("seed", run.get("seed"))
    out.append(f"- seed: {seed if seed is not None else '-'}")
    dur = cfg.get("duration_s", cfg.get("duration"))
    out.append(f"- duration: {dur if dur is not None else '-'} s configured")
    versions = as_dict(run.get("versions"))
    out.append(f"- software: {_kv(versions) if versions else MISSING}")
    if cfg.get("argv") is not None:
        argv = cfg["argv"] if isinstance(cfg["argv"], list) else [cfg["argv"]]
        out.append(f"- command line: `{' '.join(str(a) for a in argv) or '(defaults)'}`")
    rows = [[k, v] for k, v in cfg.items() if k != "argv"]
    out += ["", "### Configuration", ""]
    out += _table(["option", "value"], rows) if rows else _nm("configuration")
    services = dicts(run.get("services"))
    if services:
        out += ["", "### Services", ""]
        out += _table(["service", "class", "budget ms", "units", "kinds", "address"],
                      [[s.get("name"), s.get("service_class"), fmt(s.get("budget_ms"), nd=0),
                        s.get("units"), ", ".join(map(str, s.get("kinds") or [])),
                        f"{s.get('address', '-')}:{s.get('port', '-')}"] for s in services])
    return out


def _timings(r: dict) -> list[str]:
    out = ["## Timings", ""]
    phases = dicts(r.get("phases"))
    if phases:
        out += _table(["phase", "seconds", "status"],
                      [[p.get("name"), fmt(p.get("s")), p.get("status")] for p in phases])
        total = sum(num(p.get("s")) or 0 for p in phases)
        out += ["", f"Sum of phases {total:.1f} s; wall {fmt(r.get('wall_s'), 's')}."]
    else:
        out += _nm("phase timings")
    t = as_dict(get(r, "run", "timings"))
    if t:
        out += ["", "Emulation: " + ", ".join(f"{k} {fmt(v, nd=2)}" for k, v in t.items())]
    return out


def _envelope(r: dict) -> list[str]:
    env = as_dict(r.get("envelope"))
    if not env:
        return ["## Latency envelopes", ""] + _nm("latency envelopes")
    pct = fmt(env.get("percentile"), nd=0)
    out = [f"## Latency envelopes: {str(env.get('status', '?')).upper()}", "",
           f"p{pct} of each pair's samples; metric: {env.get('metric_override') or 'each tier'}"
           f"'s own; a verdict needs >= {env.get('min_samples', '-')} samples and <= "
           f"{fmt(env.get('max_loss_pct'), nd=0)}% loss per direction (exactly on the limit "
           f"passes); tiers from `{env.get('tier_source', '-')}`.", ""]
    tiers = envelope_tiers(r)
    out += _table(["tier", "limit ms", "metric", "rule", "verdict", "pairs", "pass", "fail",
                   "insufficient", "worst margin ms", "model fails"],
                  [[tier_id(t), fmt(get(t, "tier", "threshold_ms"), nd=0), t.get("metric"),
                    get(t, "tier", "rule"), str(t.get("status", "?")).upper(), t.get("pairs"),
                    t.get("passed"), t.get("failed"), t.get("insufficient"),
                    fmt(t.get("worst_margin_ms"), nd=3, signed=True), t.get("model_failed")]
                   for t in tiers]) if tiers else _nm("tiers")
    pairs = envelope_pairs(r)
    failing = [p for p in pairs if p.get("status") == "fail"]
    out += ["", f"### Failing pairs ({len(failing)})", ""]
    if failing:
        rows = []
        for p in failing:
            m = p.get("metric") or "one-way"
            rd = as_dict(get(p, "readings", m))
            note = rd.get("direction") and f"worse direction {rd['direction']}" or ""
            if p.get("model_status") == "pass":
                note += ("; " if note else "") + "model passes: excess from the emulation"
            rows.append([p.get("tier"), p.get("src"), p.get("dst"), m,
                         fmt(rd.get("measured_ms"), nd=3), fmt(rd.get("threshold_ms"), nd=0),
                         fmt(rd.get("margin_ms"), nd=3, signed=True),
                         fmt(get(p, "model_ms", m), nd=3), note])
        out += _table(["tier", "src", "dst", "metric", f"measured p{pct} ms", "limit ms",
                       "margin ms", "model ms", "note"], rows)
    else:
        out.append("None." if pairs else f"_pairs: {MISSING}._")
    insuff = [p for p in pairs if p.get("status") == "insufficient"]
    if insuff:
        why = [(p, get(p, "readings", p.get("metric") or "one-way", "reason", default="-"))
               for p in insuff]
        out += ["", f"No verdict ({len(insuff)} insufficient): " + "; ".join(
            f"{p.get('src')} > {p.get('dst')} ({reason})" for p, reason in why)]
    return out


def _workload(r: dict) -> list[str]:
    wl = as_dict(r.get("workload"))
    out = ["## Workload", ""]
    if wl:
        out.append(f"- requests: {wl.get('requests', '-')}; offered rate "
                   f"{fmt(wl.get('offered_rate_per_s'), 'per s', 2)}")
        if as_dict(wl.get("config")):
            out.append(f"- generator: {_kv(wl['config'])}")
    else:
        out += _nm("workload description")
    js = jobs(r)
    stats = service_stats(r)
    if not stats:
        per = as_dict(wl.get("per_service"))
        if per:
            out += ["", _kv(per)]
        out += [""] + (_per_policy(r) or _nm("jobs"))
        return out
    deferred = [num(j.get("deferred_s")) for j in js if (num(j.get("deferred_s")) or 0) > 0]
    out.append(f"- deferred (waiting for off-peak power): {len(deferred)} of {len(js)} jobs"
               + (f", median wait {fmt(median(deferred), 's')}" if deferred else ""))
    out += ["", "### Per service", ""]
    out += _table(["service", "budget ms", "requests", "served", "SLA violations", "deferred",
                   "response p50 ms", "response p95 ms"],
                  [[name, fmt(st["budget_ms"], nd=0), st["requests"], st["served"],
                    st["sla_violations"], st["deferred"], fmt(st["p50"], nd=2),
                    fmt(st["p95"], nd=2)] for name, st in stats.items()])
    return out


def _placement(r: dict) -> list[str]:
    m = as_dict(r.get("metrics"))
    out = ["## Where work was placed", ""]
    if _per_policy(r):
        return out + _per_policy(r)  # type: ignore[operator]
    per_hub = as_dict(m.get("per_hub"))
    placed = placements_per_hub(r) if not per_hub else placements_per_hub(r, m)
    if not placed:
        return out + _nm("placements")
    total = sum(placed.values()) or 1
    if per_hub:
        out += _table(["hub", "placed", "share", "unit-seconds", "capacity units",
                       "utilization"],
                      [[h, v.get("placed"), fmt_pct((num(v.get("placed")) or 0) / total),
                        fmt(v.get("unit_s")), v.get("units"), fmt_pct(v.get("utilization"), 2)]
                       for h, v in per_hub.items() if isinstance(v, dict)])
    else:
        out += ["_Counted from the jobs (no metrics recorded)._", ""]
        out += _table(["hub", "placed", "share"],
                      [[h, n, fmt_pct(n / total)] for h, n in placed.items()])
    per_gw = as_dict(m.get("per_gateway"))
    if per_gw:
        out += ["", "Per gateway: " + ", ".join(
            f"{g} ({as_dict(v).get('hub', '-')}) {as_dict(v).get('placed', '-')}"
            for g, v in per_gw.items())]
    out += ["", f"Utilization spread across hubs (max - min): "
            f"{fmt_pct(m.get('utilization_spread'), 2)}; west share of placements: "
            f"{fmt_pct(m.get('west_share'))}."]
    return out


def _sla(r: dict) -> list[str]:
    m = as_dict(r.get("metrics"))
    out = ["## SLA and response latency", ""]
    if _per_policy(r):
        return out + _per_policy(r)  # type: ignore[operator]
    if not m:
        return out + _nm("SLA and latency metrics")
    rs, cs = as_dict(m.get("response_ms")), as_dict(m.get("connect_ms"))
    out += [f"- requests {m.get('requests', '-')}: served {m.get('served', '-')}, refused "
            f"{m.get('refused', '-')}, failed {m.get('failed', '-')}",
            f"- SLA violations: **{m.get('sla_violations', '-')}** "
            f"({fmt(m.get('sla_violation_pct'))}%)",
            f"- response latency (ms): p50 {fmt(rs.get('p50'), nd=2)}, p95 "
            f"{fmt(rs.get('p95'), nd=2)}, p99 {fmt(rs.get('p99'), nd=2)}, mean "
            f"{fmt(rs.get('mean'), nd=2)}",
            f"- placement (connect) latency (ms): p50 {fmt(cs.get('p50'), nd=2)}, p95 "
            f"{fmt(cs.get('p95'), nd=2)}",
            f"- reroutes: {m.get('reroutes', '-')}; jobs interrupted: "
            f"{m.get('interrupted_jobs', '-')}"]
    errs = Counter(str(j["error"]) for j in jobs(r) if j.get("error"))
    if errs:
        out.append("- job errors: " + "; ".join(f"{n} x {e}" for e, n in errs.most_common(5)))
    return out


def _energy(r: dict) -> list[str]:
    m = as_dict(r.get("metrics"))
    out = ["## Energy cost (illustrative)", ""]
    if _per_policy(r):
        return out + _per_policy(r)  # type: ignore[operator]
    if num(m.get("energy_cost_cny")) is None:
        return out + _nm("energy cost")
    return out + [f"- energy cost: **{fmt(m.get('energy_cost_cny'), 'CNY', 3)}**; per "
                  f"unit-hour {fmt(m.get('cost_per_unit_hour_cny'), 'CNY', 3)}",
                  "- illustrative: computed from the topology's illustrative energy prices and "
                  "PUE, not from measured power."]


def _fiber_cut(sc: dict) -> list[str]:
    link = " - ".join(str(x) for x in sc.get("link") or ["?"])
    st, im = as_dict(sc.get("stream")), as_dict(sc.get("interruption_ms"))
    cuts = dicts(sc.get("cuts"))
    met = sum(1 for c in cuts if (num(c.get("interruption_ms")) or 1e9) <= FAILOVER_TARGET_MS)
    sent = (f" (sent {st['sent']}, lost {st.get('lost', '-')})" if st.get("sent") is not None
            else "")
    out = [f"- cut link: **{link}**; stream {st.get('src', '?')} -> {st.get('dst', '?')} at "
           f"{st.get('rate_pps', '-')} packets/s{sent}",
           f"- interruption: median **{fmt(im.get('median'), 'ms')}**, max "
           f"{fmt(im.get('max'), 'ms')} over {im.get('n', len(cuts))} cuts; target <= "
           f"{FAILOVER_TARGET_MS:g} ms met by {met} of {len(cuts)}"]
    if sc.get("model_path_without_link"):
        out.append(f"- model's path without the link: "
                   f"{' > '.join(map(str, as_list_(sc['model_path_without_link'])))} "
                   f"({fmt(sc.get('model_one_way_ms_without_link'), 'ms', 3)} one-way)")
    out.append("")
    if not cuts:
        return out + _nm("cuts")
    return out + _table(
        ["#", "cut s", "restored s", "interruption ms", "lost", "old path", "new path",
         "new path one-way ms", "envelope", "verdict"],
        [[i + 1, fmt(c.get("t_cut"), nd=2), fmt(c.get("t_restore"), nd=2),
          fmt(c.get("interruption_ms")), c.get("lost"),
          " > ".join(map(str, c.get("old_path") or [])) or "-",
          " > ".join(map(str, c.get("new_path") or [])) or "-",
          fmt(c.get("new_path_one_way_ms"), nd=3),
          f"{c.get('envelope_tier', '-')} {fmt(c.get('envelope_ms'), nd=0)} ms",
          str(c.get("verdict", "-")).upper()] for i, c in enumerate(cuts)])


def _capacity_shift(sc: dict) -> list[str]:
    before, after = as_dict(sc.get("placements_before")), as_dict(sc.get("placements_after"))
    out = [f"- event: hub **{sc.get('hub', '?')}** {sc.get('action') or 'event'} at t = "
           f"{fmt(sc.get('t_event'), 's')}",
           f"- the controller's view showed it after "
           f"**{fmt(sc.get('controller_view_ms'), 'ms')}** (state API polled every 0.1 s)",
           f"- reaction: the last new flow still sent to the hub that it could not serve at "
           f"once came **{fmt(sc.get('reaction_ms'), 'ms')}** after the event "
           f"({sc.get('misplaced', '-')} such flow(s); 0 ms: none)"]
    if sc.get("late_placements") is not None:
        out.append(f"- new flows placed on the hub after the event: {sc['late_placements']}, "
                   f"served {sc.get('late_placements_served', '-')} (units freed by finished "
                   "jobs are legitimately reused)")
    out += [
           f"- existing flows: {sc.get('existing_survived', '-')} of "
           f"{sc.get('existing_flows', '-')} survived", ""]
    hubs = list(dict.fromkeys(list(before) + list(after)))
    if not hubs:
        return out + _nm("placements before / after")
    return out + _table(["hub", "placements before", "placements after"],
                        [[h, before.get(h, 0), after.get(h, 0)] for h in hubs])


def _policy_comparison(r: dict, sc: dict) -> list[str]:
    ps = policies(r)
    if not ps:
        return _nm("policies")
    rows = []
    for p in ps:
        m = as_dict(p.get("metrics"))
        placed = placements_per_hub(r, m)
        rows.append([p["policy"], f"{m.get('sla_violations', '-')} "
                     f"({fmt(m.get('sla_violation_pct'))}%)", m.get("refused"),
                     f"{fmt(get(m, 'connect_ms', 'p50'), nd=2)} / "
                     f"{fmt(get(m, 'connect_ms', 'p95'), nd=2)}",
                     fmt(get(m, "response_ms", "p95"), nd=2),
                     fmt_pct(m.get("utilization_spread"), 2), fmt(m.get("energy_cost_cny"), nd=3),
                     fmt_pct(m.get("west_share")), m.get("reroutes"),
                     ", ".join(f"{h} {n}" for h, n in placed.items()) or "-"])
    out = [f"Same workload (seed {sc.get('workload_seed', '-')}) under each policy.", ""]
    out += _table(["policy", "SLA violations", "refused", "connect p50 / p95 ms",
                   "response p95 ms", "utilization spread", "energy cost CNY (illustr.)",
                   "west share", "reroutes", "placed per hub"], rows)
    gws = list(dict.fromkeys(g for p in ps for g in as_dict(p.get("placements"))))
    if gws:
        out += ["", "Placements per gateway:", ""]
        out += _table(["policy"] + gws, [[p["policy"]] + [as_dict(p.get("placements")).get(g, 0)
                                                         for g in gws] for p in ps])
    for p in ps:
        ex = [str(e) for e in as_list_(p.get("explanations"))]
        out += ["", f"**{p['policy']}**:" + ("" if ex else " no explanation recorded")]
        out += [f"- {e}" for e in ex]
    return out


def as_list_(x: Any) -> list:
    return x if isinstance(x, list) else ([] if x is None else [x])


def _scenario(r: dict) -> list[str]:
    kind = r.get("kind")
    if kind in (None, "backbone"):
        return []
    titles = {"fiber-cut": "Fiber cut", "capacity-shift": "Capacity shift",
              "policy-comparison": "Policy comparison"}
    out = [f"## Scenario: {titles.get(str(kind), str(kind))}", ""]
    sc = as_dict(r.get("scenario"))
    if not sc:
        return out + _nm("scenario results")
    if kind == "fiber-cut":
        return out + _fiber_cut(sc)
    if kind == "capacity-shift":
        return out + _capacity_shift(sc)
    if kind == "policy-comparison":
        return out + _policy_comparison(r, sc)
    return out + ["_Unknown scenario kind; see report.json._"]


def _notes(r: dict) -> list[str]:
    out = ["## Notes and errors", ""]
    notes = [str(n) for n in as_list_(r.get("notes")) if n]
    errors = [str(e) for e in as_list_(r.get("errors")) if e]
    out += [f"- note: {n}" for n in notes] + [f"- **error:** {e}" for e in errors]
    decisions = dicts(r.get("decisions"))
    out.append(f"- controller decisions recorded: {len(decisions)} (in report.json)")
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


SECTIONS: list[Callable[[dict], list[str]]] = [
    _header, _what, _timings, _envelope, _workload, _placement, _sla, _energy, _scenario,
    _notes]


def render(result: dict, plots: Mapping[str, str | None] | None = None) -> str:
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
