"""Latency-envelope verdicts: which pairs belong to which latency circle, and did they meet it.

Pure: no root, no emulation. The tiers (1 ms within a city, 5 ms within a region, 20 ms
between national hubs) are data (probes/data/envelopes.yaml, or a file of the same format);
which pair falls in which tier is derived from the topology; the verdict takes measured
summaries (common.stats.Summary, from probes.owd.measure_owd) and returns plain objects that
probes.envelope_report renders as a table, JSON or Markdown.

Rules (docs/probes.md, "Envelopes and path verification"):
- A pair belongs to the FIRST tier, in file order, whose rule it meets; the other tiers it
  also meets are recorded (`also`). Pairs meeting none are "untiered": reported, not judged.
- A pair's measured value is the chosen percentile (p95 by default) of its samples: of the
  round-trip times for metric "rtt"; for "one-way", of each direction's one-way delays, and
  the worse direction counts (the circle binds both directions).
- Verdict "insufficient" (no verdict) when a direction has fewer than `min_samples` received
  samples or more than `max_loss_pct` percent loss; else "pass" when measured <= threshold
  (exactly on the threshold passes), "fail" otherwise. margin = threshold - measured.
- A tier fails if any of its pairs fails, passes if none fails and at least one was judged,
  is "insufficient" if none was judged, "empty" without pairs. The run's verdict: "fail" if
  any tier fails, else "insufficient" if any non-empty tier is insufficient or no tier has
  pairs, else "pass".
- Each pair also carries the model's delay (latency-shortest paths on the topology, one-way
  = the worse direction, rtt = there and back) and whether THAT meets the threshold: a
  measured failure whose model passes comes from the emulation (switch substrate, load),
  not from the topology.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import yaml

from common import checks
from topology.model import Network, Site, haversine_km
from topology.paths import shortest_path

FORMAT = "edwc-envelopes/1"
DEFAULT_FILE = Path(__file__).resolve().parent / "data" / "envelopes.yaml"
METRICS = ("one-way", "rtt")
RULES = ("same-city", "same-region", "same-hub", "different-hub", "any")
PASS, FAIL, INSUFFICIENT, UNTIERED, EMPTY = "pass", "fail", "insufficient", "untiered", "empty"
EXIT_CODES = {PASS: 0, FAIL: 1, INSUFFICIENT: 2}
MAX_FILE_BYTES = 1024 * 1024


class EnvelopeError(ValueError):
    """A tier file or an argument that cannot be used; the message names the key and the fix."""


@dataclass(frozen=True)
class Tier:
    id: str
    threshold_ms: float
    metric: str  # "one-way" or "rtt"
    rule: str
    city_km: float | None = None  # same-city only
    description: str = ""


@dataclass(frozen=True)
class EnvelopeConfig:
    tiers: tuple[Tier, ...]
    percentile: float = 95.0
    min_samples: int = 20
    max_loss_pct: float = 5.0
    source: str = "<memory>"

    def tier(self, tier_id: str) -> Tier:
        for t in self.tiers:
            if t.id == tier_id:
                return t
        raise KeyError(tier_id)


# --- the tier file ------------------------------------------------------------------------

_TOP_KEYS = {"format", "percentile", "min_samples", "max_loss_pct", "tiers"}
_TIER_KEYS = {"id", "description", "threshold_ms", "metric", "rule", "city_km"}


def _number(value: Any, where: str, lo: float, hi: float, fix: str, lo_open: bool = False
            ) -> float:
    return checks.number(value, where, lo, hi, lo_open=lo_open, fix=fix, error=EnvelopeError)


def parse_envelopes(doc: Any, source: str = "<memory>") -> EnvelopeConfig:
    """Validate a decoded tier file; raises EnvelopeError naming the file, the key and the fix."""
    def err(msg: str) -> EnvelopeError:
        return EnvelopeError(f"{source}: {msg}")

    if not isinstance(doc, dict):
        raise err("the top level must be a mapping with 'format' and 'tiers'")
    if doc.get("format") != FORMAT:
        raise err(f"format is {doc.get('format')!r}; start the file with 'format: {FORMAT}'")
    unknown = sorted(set(doc) - _TOP_KEYS)
    if unknown:
        raise err(f"unknown key(s) {unknown}; allowed: {sorted(_TOP_KEYS)}")
    try:
        pct = _number(doc.get("percentile", 95), "percentile", 0, 100,
                      "give a percentile such as 95 (0 < p <= 100)", lo_open=True)
        min_samples = doc.get("min_samples", 20)
        if isinstance(min_samples, bool) or not isinstance(min_samples, int) or min_samples < 1:
            raise EnvelopeError(f"min_samples must be an integer >= 1, got {min_samples!r}")
        max_loss = _number(doc.get("max_loss_pct", 5), "max_loss_pct", 0, 100,
                           "give a loss in percent, e.g. 5")
    except EnvelopeError as e:
        raise err(str(e)) from None
    raw_tiers = doc.get("tiers")
    if not isinstance(raw_tiers, list) or not raw_tiers:
        raise err("'tiers' must be a non-empty list of {id, threshold_ms, metric, rule}")
    tiers: list[Tier] = []
    for i, raw in enumerate(raw_tiers):
        tiers.append(_parse_tier(raw, f"tiers[{i}]", source))
        if [t.id for t in tiers].count(tiers[-1].id) > 1:
            raise err(f"tiers[{i}]: duplicate tier id {tiers[-1].id!r}; tier ids must be unique")
    return EnvelopeConfig(tuple(tiers), pct, min_samples, max_loss, source)


def _parse_tier(raw: Any, where: str, source: str) -> Tier:
    def err(msg: str) -> EnvelopeError:
        return EnvelopeError(f"{source}: {where}: {msg}")

    if not isinstance(raw, dict):
        raise err(f"each tier must be a mapping, got {type(raw).__name__}")
    tid = raw.get("id")
    if not isinstance(tid, str) or not tid.strip() or len(tid) > 32:
        raise err(f"'id' must be a short name such as 'city', got {tid!r}")
    where = f"{where} ({tid})"
    unknown = sorted(set(raw) - _TIER_KEYS)
    if unknown:
        raise err(f"unknown key(s) {unknown}; allowed: {sorted(_TIER_KEYS)}")
    if "threshold_ms" not in raw:
        raise err("missing 'threshold_ms' (the circle's delay bound in milliseconds)")
    try:
        thr = _number(raw["threshold_ms"], "threshold_ms", 0, 60000,
                      "give the bound in milliseconds, e.g. 20", lo_open=True)
    except EnvelopeError as e:
        raise err(str(e)) from None
    metric = raw.get("metric")
    if metric not in METRICS:
        raise err(f"metric {metric!r} is not one of {list(METRICS)}; state it explicitly "
                  "(one-way: each direction's delay; rtt: the round trip)")
    rule = raw.get("rule")
    if rule not in RULES:
        raise err(f"rule {rule!r} is not one of {list(RULES)}")
    city_km = None
    if rule == "same-city":
        if "city_km" not in raw:
            raise err("rule same-city needs 'city_km' (sites at most this many km apart "
                      "count as one city, e.g. 50)")
        try:
            city_km = _number(raw["city_km"], "city_km", 0, 1000, "give a distance in km")
        except EnvelopeError as e:
            raise err(str(e)) from None
    elif "city_km" in raw:
        raise err(f"'city_km' only applies to rule same-city, not {rule}; remove it")
    desc = raw.get("description", "")
    if not isinstance(desc, str):
        raise err("'description' must be text")
    return Tier(tid, thr, metric, rule, city_km, desc)


def load_envelopes(path: str | Path | None = None) -> EnvelopeConfig:
    """Read a tier file (default: the built-in probes/data/envelopes.yaml)."""
    p = Path(path) if path is not None else DEFAULT_FILE
    src = str(p)
    try:
        if p.stat().st_size > MAX_FILE_BYTES:
            raise EnvelopeError(f"{src}: file is larger than {MAX_FILE_BYTES} bytes; "
                                "is this a tier file?")
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise EnvelopeError(f"{src}: no such file; give a tier file (see "
                            f"{DEFAULT_FILE}) or leave --tiers out for the default") from None
    except (OSError, UnicodeDecodeError) as e:
        raise EnvelopeError(f"{src}: cannot read the tier file: {e}") from None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise EnvelopeError(f"{src}: not valid YAML{at}: {getattr(e, 'problem', e)}") from None
    return parse_envelopes(doc, src)


# --- which pair is in which tier ------------------------------------------------------------

def site_hub(site: Site) -> str | None:
    """The national hub a site belongs to: its `hub`, or itself for a hub site."""
    if site.hub:
        return site.hub
    return site.id if site.kind == "hub" else None


def rule_holds(tier: Tier, a: Site, b: Site) -> bool:
    if tier.rule == "same-city":
        assert tier.city_km is not None
        return haversine_km(a.lat, a.lon, b.lat, b.lon) <= tier.city_km
    if tier.rule == "same-region":
        return a.region == b.region
    ha, hb = site_hub(a), site_hub(b)
    if tier.rule == "same-hub":
        return ha is not None and ha == hb
    if tier.rule == "different-hub":
        return ha is not None and hb is not None and ha != hb
    return tier.rule == "any"


def matching_tiers(net: Network, a: str, b: str, tiers: Sequence[Tier]) -> list[Tier]:
    """Every tier whose rule the pair meets, in file order (the first one is the pair's)."""
    sa, sb = net.site(a), net.site(b)
    return [t for t in tiers if rule_holds(t, sa, sb)]


def assign_tier(net: Network, a: str, b: str, tiers: Sequence[Tier]) -> Tier | None:
    m = matching_tiers(net, a, b, tiers)
    return m[0] if m else None


# --- verdicts -------------------------------------------------------------------------------

class SummaryLike(Protocol):  # common.stats.Summary
    sent: int
    received: int
    loss_pct: float

    def percentile(self, p: float) -> float | None: ...


class ResultLike(Protocol):  # probes.owd.OwdResult
    forward: SummaryLike
    reverse: SummaryLike
    rtt: SummaryLike


@dataclass(frozen=True)
class Judgement:
    """One reading (one-way or rtt) of one pair against one threshold."""

    metric: str
    status: str  # pass | fail | insufficient
    threshold_ms: float
    measured_ms: float | None  # the chosen percentile; worse direction for one-way
    margin_ms: float | None  # threshold - measured; >= 0 passes
    samples: int  # delay samples (the fewer of the two directions for one-way)
    loss_pct: float  # the higher of the two directions for one-way
    reason: str = ""
    direction: str | None = None  # one-way: "forward" or "reverse", the one that counted


def _n_samples(s: SummaryLike) -> int:
    """Delay samples in the series: a one-way series can count more packets received than
    it has delays for (common.stats.Summary.n_samples); the verdict needs the delays."""
    n = getattr(s, "n_samples", None)
    return s.received if n is None else int(n)


def judge_summary(s: SummaryLike, threshold_ms: float, percentile: float, min_samples: int,
                  max_loss_pct: float, metric: str = "rtt", direction: str | None = None
                  ) -> Judgement:
    n = _n_samples(s)
    base = dict(metric=metric, threshold_ms=threshold_ms, samples=n,
                loss_pct=float(s.loss_pct), direction=direction)
    what = f"{direction} " if direction else ""
    if s.sent <= 0:
        return Judgement(status=INSUFFICIENT, measured_ms=None, margin_ms=None,
                         reason=f"{what}no probes sent", **base)
    if n <= 0:
        lost = "lost" if s.received <= 0 else "without a delay sample"
        return Judgement(status=INSUFFICIENT, measured_ms=None, margin_ms=None,
                         reason=f"{what}all {s.sent} probes {lost}", **base)
    if n < min_samples:
        return Judgement(status=INSUFFICIENT, measured_ms=None, margin_ms=None,
                         reason=f"{what}{n} samples < minimum {min_samples}", **base)
    if s.loss_pct > max_loss_pct:
        return Judgement(status=INSUFFICIENT, measured_ms=None, margin_ms=None,
                         reason=f"{what}loss {s.loss_pct:.1f}% > maximum {max_loss_pct:g}%",
                         **base)
    measured = s.percentile(percentile)
    if measured is None or not math.isfinite(measured):
        return Judgement(status=INSUFFICIENT, measured_ms=None, margin_ms=None,
                         reason=f"{what}no percentile from the samples", **base)
    status = PASS if measured <= threshold_ms else FAIL
    return Judgement(status=status, measured_ms=measured, margin_ms=threshold_ms - measured,
                     **base)


def judge_one_way(forward: SummaryLike, reverse: SummaryLike, threshold_ms: float,
                  percentile: float, min_samples: int, max_loss_pct: float) -> Judgement:
    """Both directions must be judgeable; the worse (larger) percentile decides."""
    js = [judge_summary(s, threshold_ms, percentile, min_samples, max_loss_pct, "one-way", d)
          for s, d in ((forward, "forward"), (reverse, "reverse"))]
    samples = min(j.samples for j in js)
    loss = max(j.loss_pct for j in js)
    bad = [j for j in js if j.status == INSUFFICIENT]
    if bad:
        return Judgement("one-way", INSUFFICIENT, threshold_ms, None, None, samples, loss,
                         "; ".join(j.reason for j in bad))
    worst = max(js, key=lambda j: j.measured_ms)  # type: ignore[arg-type, return-value]
    return Judgement("one-way", worst.status, threshold_ms, worst.measured_ms, worst.margin_ms,
                     samples, loss, direction=worst.direction)


@dataclass(frozen=True)
class PairVerdict:
    src: str
    dst: str
    tier: str | None  # None: untiered
    also: tuple[str, ...]  # further tiers the pair meets (not judged against)
    metric: str | None  # the reading the verdict uses
    status: str  # pass | fail | insufficient | untiered
    readings: dict[str, Judgement] = field(default_factory=dict)  # "one-way" and "rtt"
    model_ms: dict[str, float] = field(default_factory=dict)  # the model's one-way / rtt
    model_status: str | None = None  # the model's delay against the threshold (pass/fail)

    @property
    def judged(self) -> Judgement | None:
        return self.readings.get(self.metric) if self.metric else None


@dataclass(frozen=True)
class TierVerdict:
    tier: Tier
    metric: str
    status: str  # pass | fail | insufficient | empty
    by_metric: dict[str, str]  # the tier's status under each reading
    pairs: int
    passed: int
    failed: int
    insufficient: int
    worst_margin_ms: float | None  # the smallest margin among judged pairs
    model_failed: int = 0  # pairs whose MODEL delay already exceeds the threshold


@dataclass(frozen=True)
class EnvelopeReport:
    status: str  # pass | fail | insufficient
    tiers: tuple[TierVerdict, ...]
    pairs: tuple[PairVerdict, ...]
    percentile: float
    min_samples: int
    max_loss_pct: float
    metric_override: str | None
    tier_source: str
    meta: dict = field(default_factory=dict)  # run description, probe settings

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.status]


def judge_pair(src: str, dst: str, tiers: Sequence[Tier], result: ResultLike | None,
               cfg: EnvelopeConfig, metric: str | None = None,
               model_ms: Mapping[str, float] | None = None,
               unmeasured: str = "not measured") -> PairVerdict:
    """`tiers`: the tiers the pair meets, first = the pair's own (matching_tiers)."""
    if not tiers:
        return PairVerdict(src, dst, None, (), None, UNTIERED, {}, dict(model_ms or {}))
    tier = tiers[0]
    use = metric or tier.metric
    args = (tier.threshold_ms, cfg.percentile, cfg.min_samples, cfg.max_loss_pct)
    if result is None:
        none = dict(status=INSUFFICIENT, threshold_ms=tier.threshold_ms, measured_ms=None,
                    margin_ms=None, samples=0, loss_pct=100.0, reason=unmeasured)
        readings = {m: Judgement(metric=m, **none) for m in METRICS}  # type: ignore[arg-type]
    else:
        readings = {"one-way": judge_one_way(result.forward, result.reverse, *args),
                    "rtt": judge_summary(result.rtt, *args, metric="rtt")}
    model_delay = (model_ms or {}).get(use)
    model_status = None if model_delay is None else (
        PASS if model_delay <= tier.threshold_ms else FAIL)
    return PairVerdict(src, dst, tier.id, tuple(t.id for t in tiers[1:]), use,
                       readings[use].status, readings, dict(model_ms or {}), model_status)


def _tier_status(statuses: Sequence[str]) -> str:
    if not statuses:
        return EMPTY
    if FAIL in statuses:
        return FAIL
    return PASS if PASS in statuses else INSUFFICIENT


def evaluate(net: Network, pairs: Sequence[tuple[str, str]],
             results: Mapping[tuple[str, str], ResultLike], cfg: EnvelopeConfig,
             metric: str | None = None, meta: dict | None = None,
             model: bool = True, errors: Mapping[tuple[str, str], str] | None = None
             ) -> EnvelopeReport:
    """Judge every pair (site ids) against its tier; `metric` overrides the tiers' own.
    Pairs missing from `results` are insufficient, with `errors[pair]` as the reason."""
    if metric is not None and metric not in METRICS:
        raise EnvelopeError(f"metric {metric!r} is not one of {list(METRICS)}")
    graph = net.graph() if model else None
    verdicts: list[PairVerdict] = []
    for a, b in pairs:
        mm: dict[str, float] = {}
        if graph is not None:
            fwd = shortest_path(net, a, b, graph).delay_ms
            rev = shortest_path(net, b, a, graph).delay_ms
            mm = {"one-way": max(fwd, rev), "rtt": fwd + rev}
        verdicts.append(judge_pair(a, b, matching_tiers(net, a, b, cfg.tiers),
                                   results.get((a, b)), cfg, metric, mm,
                                   (errors or {}).get((a, b), "not measured")))
    tier_verdicts = []
    for t in cfg.tiers:
        mine = [v for v in verdicts if v.tier == t.id]
        use = metric or t.metric
        margins = [v.judged.margin_ms for v in mine
                   if v.judged is not None and v.judged.margin_ms is not None]
        by_metric = {m: _tier_status([v.readings[m].status for v in mine]) for m in METRICS}
        tier_verdicts.append(TierVerdict(
            t, use, by_metric[use], by_metric, len(mine),
            sum(v.status == PASS for v in mine), sum(v.status == FAIL for v in mine),
            sum(v.status == INSUFFICIENT for v in mine), min(margins) if margins else None,
            sum(v.model_status == FAIL for v in mine)))
    statuses = [tv.status for tv in tier_verdicts if tv.status != EMPTY]
    if FAIL in statuses:
        overall = FAIL
    elif not statuses or INSUFFICIENT in statuses:
        overall = INSUFFICIENT
    else:
        overall = PASS
    return EnvelopeReport(overall, tuple(tier_verdicts), tuple(verdicts), cfg.percentile,
                          cfg.min_samples, cfg.max_loss_pct, metric, cfg.source, dict(meta or {}))


# --- which host pairs to measure ------------------------------------------------------------

PAIR_MODES = ("metro-cluster", "all", "hubs")


def select_pairs(net: Network, mode: str) -> list[tuple[str, str]]:
    """Host pairs (site ids) to measure.

    metro-cluster: every metro to every cluster (ordered as given);
    all: every unordered pair of sites that have a host (metros and clusters);
    hubs: one host per national hub (its first cluster, else its first metro), every pair of
    hubs: the 20 ms circle between hubs (note: two hubs in the same region fall in the region
    tier under the default first-match rule).
    """
    hosts = [s for s in net.sites if s.has_host]
    if mode == "metro-cluster":
        metros = [s.id for s in hosts if s.kind == "metro"]
        clusters = [s.id for s in hosts if s.kind == "cluster"]
        if not metros or not clusters:
            raise EnvelopeError(
                f"topology {net.name} has {len(metros)} metro and {len(clusters)} cluster "
                "sites; --pairs metro-cluster needs both: use --pairs all")
        return [(m, c) for m in metros for c in clusters]
    if mode == "all":
        if len(hosts) < 2:
            raise EnvelopeError(f"topology {net.name} has fewer than 2 host sites")
        return [(a.id, b.id) for i, a in enumerate(hosts) for b in hosts[i + 1:]]
    if mode == "hubs":
        rep: dict[str, str] = {}
        for kind in ("cluster", "metro"):
            for s in hosts:
                h = site_hub(s)
                if s.kind == kind and h is not None and h not in rep:
                    rep[h] = s.id
        order = [h for h in (site_hub(s) for s in net.sites) if h in rep]
        hubs = list(dict.fromkeys(order))
        if len(hubs) < 2:
            raise EnvelopeError(f"topology {net.name} has hosts in {len(hubs)} national "
                                "hub(s); --pairs hubs needs at least 2 (set sites' 'hub')")
        return [(rep[a], rep[b]) for i, a in enumerate(hubs) for b in hubs[i + 1:]]
    raise EnvelopeError(f"pairs mode {mode!r} is not one of {list(PAIR_MODES)}")
