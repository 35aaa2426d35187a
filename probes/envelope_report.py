"""Render envelope verdicts (probes.envelope.EnvelopeReport) as a terminal table, JSON, Markdown.

Pure functions of the verdict objects: same report in, same text out.
"""

from __future__ import annotations

from dataclasses import asdict

from probes.envelope import (
    FAIL,
    METRICS,
    PASS,
    EnvelopeReport,
    Judgement,
    PairVerdict,
    TierVerdict,
)

JSON_FORMAT = "edwc-envelope-report/1"


def _ms(x: float | None, signed: bool = False) -> str:
    if x is None:
        return "-"
    return f"{x:+.3f}" if signed else f"{x:.3f}"


def _other(metric: str | None) -> str:
    return "rtt" if metric == "one-way" else "one-way"


def _reading(j: Judgement | None) -> str:
    if j is None:
        return "-"
    return f"{_ms(j.measured_ms)} {j.status}" if j.measured_ms is not None else j.status


def _table(rows: list[list[str]], headers: list[str], right: set[int]) -> list[str]:
    widths = [max(len(x) for x in col) for col in zip(headers, *rows)]
    def line(r: list[str]) -> str:
        return "  ".join(c.rjust(w) if i in right else c.ljust(w)
                         for i, (c, w) in enumerate(zip(r, widths))).rstrip()
    return [line(headers), line(["-" * w for w in widths])] + [line(r) for r in rows]


def _tier_rows(report: EnvelopeReport) -> list[list[str]]:
    rows = []
    for tv in report.tiers:
        both = " / ".join(f"{m}: {tv.by_metric[m]}" for m in METRICS)
        rows.append([tv.tier.id, f"{tv.tier.threshold_ms:g}", tv.metric, tv.tier.rule,
                     str(tv.pairs), str(tv.passed), str(tv.failed), str(tv.insufficient),
                     _ms(tv.worst_margin_ms, signed=True), str(tv.model_failed),
                     tv.status.upper(), both])
    return rows


_TIER_HEAD = ["tier", "ms", "metric", "rule", "pairs", "pass", "fail", "insuff",
              "worst margin", "model fails", "verdict", "both readings"]


def _pair_rows(report: EnvelopeReport) -> list[list[str]]:
    p = f"p{report.percentile:g}"
    rows = []
    for v in report.pairs:
        j = v.judged
        if j is None:
            rows.append(["-", v.src, v.dst, "-", "-", "-", "-", "-", "-", "untiered", "",
                         "meets no tier"])
            continue
        other = v.readings.get(_other(v.metric))
        note = j.reason or (f"worse direction: {j.direction}" if j.direction else "")
        if v.status == FAIL and v.model_status == PASS:
            note = (note + "; " if note else "") + "model passes: excess from the emulation"
        if v.also:
            note = (note + "; " if note else "") + "also " + ", ".join(v.also)
        rows.append([v.tier or "-", v.src, v.dst, f"{v.metric} {p}", _ms(j.measured_ms),
                     _ms(v.model_ms.get(v.metric or "")), f"{j.threshold_ms:g}",
                     _ms(j.margin_ms, signed=True), f"{j.samples}/{j.loss_pct:.1f}%",
                     v.status, f"{_other(v.metric)}: {_reading(other)}", note])
    return rows


_PAIR_HEAD = ["tier", "src", "dst", "reading", "measured", "model", "limit", "margin",
              "n/loss", "verdict", "other reading", "note"]


def render_table(report: EnvelopeReport) -> str:
    how = report.metric_override or "each tier's own"
    out = [f"Latency envelopes: {report.status.upper()}  (p{report.percentile:g} of each "
           f"pair's samples; metric: {how}; at least {report.min_samples} samples and at most "
           f"{report.max_loss_pct:g}% loss per direction for a verdict; tiers from "
           f"{report.tier_source})", ""]
    out += _table(_tier_rows(report), _TIER_HEAD, {1, 4, 5, 6, 7, 8, 9})
    out += ["", "Pairs (ms; margin = limit - measured, >= 0 passes)"]
    out += _table(_pair_rows(report), _PAIR_HEAD, {4, 5, 6, 7, 8})
    untiered = sum(v.tier is None for v in report.pairs)
    if untiered:
        out += ["", f"{untiered} pair(s) meet no tier: reported, not judged"]
    return "\n".join(out)


def _judgement_dict(j: Judgement) -> dict:
    return asdict(j)


def _pair_dict(v: PairVerdict) -> dict:
    return {"src": v.src, "dst": v.dst, "tier": v.tier, "also": list(v.also),
            "metric": v.metric, "status": v.status,
            "readings": {m: _judgement_dict(j) for m, j in v.readings.items()},
            "model_ms": dict(v.model_ms), "model_status": v.model_status}


def _tier_dict(tv: TierVerdict) -> dict:
    return {"tier": asdict(tv.tier), "metric": tv.metric, "status": tv.status,
            "by_metric": dict(tv.by_metric), "pairs": tv.pairs, "passed": tv.passed,
            "failed": tv.failed, "insufficient": tv.insufficient,
            "worst_margin_ms": tv.worst_margin_ms, "model_failed": tv.model_failed}


def to_json(report: EnvelopeReport) -> dict:
    """A JSON-ready dict (json.dump it)."""
    return {"format": JSON_FORMAT, "status": report.status, "exit_code": report.exit_code,
            "percentile": report.percentile, "min_samples": report.min_samples,
            "max_loss_pct": report.max_loss_pct, "metric_override": report.metric_override,
            "tier_source": report.tier_source, "tiers": [_tier_dict(t) for t in report.tiers],
            "pairs": [_pair_dict(v) for v in report.pairs], "meta": report.meta}


def _md_table(rows: list[list[str]], headers: list[str]) -> list[str]:
    def esc(c: str) -> str:
        return c.replace("|", "\\|")
    out = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    out += ["| " + " | ".join(esc(c) for c in r) + " |" for r in rows]
    return out


def render_markdown(report: EnvelopeReport) -> str:
    meta = report.meta
    out = [f"# Latency envelopes: {report.status.upper()}", ""]
    facts = [f"- percentile: p{report.percentile:g}; metric: "
             f"{report.metric_override or 'as stated per tier'}",
             f"- a verdict needs >= {report.min_samples} samples and <= "
             f"{report.max_loss_pct:g}% loss per direction; exactly on the limit passes",
             f"- tiers: `{report.tier_source}`"]
    for key in ("topology", "run_id", "pairs_mode", "count", "interval_s", "link_emulation"):
        if meta.get(key) is not None:
            facts.append(f"- {key}: {meta[key]}")
    out += facts + ["", "## Tiers", ""]
    out += _md_table(_tier_rows(report), _TIER_HEAD)
    out += ["", "## Pairs", "", "Milliseconds; margin = limit - measured (>= 0 passes).", ""]
    out += _md_table(_pair_rows(report), _PAIR_HEAD)
    return "\n".join(out) + "\n"
