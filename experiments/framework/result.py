"""The run result: what one experiment run measured, as typed sections (format
"edwc-report/1", docs/reports.md).

The runner (experiments.framework.runner.Experiment) owns one `RunResult`; the phases fill
its sections through their typed fields, and the report writer serialises it once, to
report.json (`RunResult.to_dict`). `RunResult.from_dict` reads a report.json back (older
ones too): sections a run did not reach are None; a value of the wrong type is not used
and is named in ``problems`` (experiments.framework.record), never silently taken.

    RunResult
      format, kind, title, status, error        the run and how it ended
      started_at, finished_at, wall_s, phases   timings (Phase: name, s, status)
      config: Config                            the options and the stamp (argv, commit)
      run: RunDescription                       the emulation: link and datapath choices,
                                                controller settings, services, versions
      topology: Topology                        sites and links as emulated
      envelope: Envelope                        latency-envelope verdicts and measurements
      workload: Workload                        what was offered
      jobs: list[Job]                           one per request, with its outcome
      decisions: list[Decision]                 the controller's decisions
      controller: ControllerState               its counters and gateways (state API)
      metrics: Metrics                          SLA, latency, utilization, energy, west
      scenario: FiberCut | CapacityShift | PolicyComparison   (experiments.framework
                                                scenario; by kind; None for backbone)
      scenario_backup_coverage                  fiber cut: the controller's fast-failover
                                                coverage, as the controller reports it
      notes, errors                             what the run noted; checks that failed

Parts that are another component's own format stay plain JSON inside a typed field:
Config's other options (``Config.extra``, keyed by option name), Workload.config (the
generator's parameters), RunDescription.calibration, ControllerState (the state API's
counters and gateways), Measurement's probe details and Decision.flow.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from experiments.framework.record import Record, ResultFormatError

__all__ = ["FORMAT", "KINDS", "ResultFormatError", "RunResult"]

FORMAT = "edwc-report/1"
KINDS = ("backbone", "capacity-shift", "fiber-cut", "policy-comparison")


@dataclass
class Phase(Record):
    name: str | None = None
    s: float | None = None  # seconds it took (None while it runs)
    status: str | None = None  # running, ok, interrupted, failed


@dataclass
class Config(Record):
    """Every command-line option of the run: the ones reports read are fields, the rest are
    kept by option name in ``extra``; plus the stamp (argv, testbed_commit)."""

    seed: int | None = None
    policy: str | None = None
    duration: float | None = None  # --duration, s
    duration_s: float | None = None  # older results
    capacity_scale_used: float | None = None
    argv: list[str] | None = None
    testbed_commit: str | None = None  # git HEAD, "+dirty" with local changes

    @property
    def configured_duration_s(self) -> float | None:
        return self.duration_s if self.duration_s is not None else self.duration

    def items(self) -> list[tuple[str, Any]]:
        """(option, value) as written in report.json."""
        return list(self.to_dict().items())


# --- the emulation (emulation.network.Emulation.describe) ----------------------------------

@dataclass
class EmulationPaths(Record):
    link: str | None = None  # netem | userspace | none
    link_reason: str | None = None
    datapath: str | None = None  # kernel | user
    datapath_reason: str | None = None
    port_type: str | None = None
    port_reason: str | None = None
    reason: str | None = None  # older results: one reason for both


@dataclass
class ControllerSettings(Record):
    policy: str | None = None
    policy_params: dict | None = None
    delay_source: str | None = None
    flow_idle_timeout_s: float | None = None
    gateways: list[str] | None = None
    adv_interval_s: float | None = None
    adv_authenticated: bool | None = None


@dataclass
class ServiceInfo(Record):
    name: str | None = None
    address: str | None = None
    port: int | None = None
    budget_ms: float | None = None
    units: int | None = None
    kinds: list[str] = field(default_factory=list)
    service_class: str | None = None


@dataclass
class RunDescription(Record):
    run_id: str | None = None
    topology: str | None = None
    topology_source: str | None = None
    emulation: EmulationPaths | None = None
    substrate_us: float | None = None
    seed: int | None = None
    calibration: dict | None = None
    delay_line_scheduling: Any = None
    switches: int | None = None
    hosts: int | None = None
    links: int | None = None
    controller: ControllerSettings | None = None
    services: list[ServiceInfo] = field(default_factory=list)
    timings: dict[str, float | None] = field(default_factory=dict)
    versions: dict[str, str | None] = field(default_factory=dict)


# --- topology --------------------------------------------------------------------------------

@dataclass
class SiteInfo(Record):
    id: str | None = None
    name: str | None = None
    kind: str | None = None
    lat: float | None = None
    lon: float | None = None
    region: str | None = None
    hub: str | None = None  # its national hub; a hub's is itself
    zone: str | None = None
    units: dict[str, int] = field(default_factory=dict)
    price: float | None = None
    green: float | None = None
    pue: float | None = None

    @property
    def hub_id(self) -> str | None:
        """The national hub of the site: its `hub`, or itself for a hub."""
        return self.hub or (self.id if self.kind == "hub" else None)


@dataclass
class LinkInfo(Record):
    a: str | None = None
    b: str | None = None
    delay_ms_ab: float | None = None
    delay_ms_ba: float | None = None
    length_km: float | None = None
    bandwidth_mbps: float | None = None

    @property
    def worse_delay_ms(self) -> float | None:
        ds = [d for d in (self.delay_ms_ab, self.delay_ms_ba) if d is not None]
        return max(ds) if ds else None


@dataclass
class Topology(Record):
    name: str | None = None
    source: str | None = None
    sites: list[SiteInfo] = field(default_factory=list)
    links: list[LinkInfo] = field(default_factory=list)

    def site_map(self) -> dict[str, SiteInfo]:
        return {s.id: s for s in self.sites if s.id}


# --- latency envelopes (probes.envelope_report.to_json) ------------------------------------

@dataclass
class TierSpec(Record):
    id: str | None = None
    threshold_ms: float | None = None
    metric: str | None = None
    rule: str | None = None
    city_km: float | None = None
    description: str | None = None


@dataclass
class TierVerdict(Record):
    tier: TierSpec | None = None
    metric: str | None = None
    status: str | None = None
    by_metric: dict[str, str | None] = field(default_factory=dict)
    pairs: int | None = None
    passed: int | None = None
    failed: int | None = None
    insufficient: int | None = None
    worst_margin_ms: float | None = None
    model_failed: int | None = None

    @property
    def tier_id(self) -> str:
        return (self.tier.id if self.tier else None) or "?"


@dataclass
class Reading(Record):
    """One judged reading of a pair (one-way or rtt)."""

    metric: str | None = None
    status: str | None = None
    threshold_ms: float | None = None
    measured_ms: float | None = None
    margin_ms: float | None = None
    samples: int | None = None
    loss_pct: float | None = None
    reason: str | None = None
    direction: str | None = None


@dataclass
class PairVerdict(Record):
    src: str | None = None
    dst: str | None = None
    tier: str | None = None
    also: list[str] = field(default_factory=list)
    metric: str | None = None
    status: str | None = None
    readings: dict[str, Reading] = field(default_factory=dict)
    model_ms: dict[str, float | None] = field(default_factory=dict)
    model_status: str | None = None

    def reading(self, metric: str | None = None) -> Reading | None:
        """The reading of `metric`, default the pair's own (one-way when it has none)."""
        return self.readings.get(metric or self.metric or "one-way")


@dataclass
class DelaySummary(Record):
    """common.stats.Summary.to_dict of one direction (or the round trip), ms."""

    sent: int | None = None
    received: int | None = None
    lost: int | None = None
    loss_pct: float | None = None
    min: float | None = None
    p50: float | None = None
    p95: float | None = None
    p99: float | None = None
    max: float | None = None
    mean: float | None = None
    jitter: float | None = None
    reordered: int | None = None
    duplicates: int | None = None
    samples: int | None = None


@dataclass
class Measurement(Record):
    """probes.owd.OwdResult.to_dict; the probe's details (size, schedule, errors...) stay
    in ``extra``."""

    src: str | None = None
    dst: str | None = None
    forward: DelaySummary | None = None
    reverse: DelaySummary | None = None
    rtt: DelaySummary | None = None


@dataclass
class EnvelopeMeta(Record):
    pairs_mode: str | None = None
    count: int | None = None
    interval_s: float | None = None
    parallel: int | None = None
    measurements: dict[str, Measurement] = field(default_factory=dict)  # "src>dst"


@dataclass
class Envelope(Record):
    format: str | None = None  # probes.envelope_report.JSON_FORMAT
    status: str | None = None
    exit_code: int | None = None
    percentile: float | None = None
    min_samples: int | None = None
    max_loss_pct: float | None = None
    metric_override: str | None = None
    tier_source: str | None = None
    tiers: list[TierVerdict] = field(default_factory=list)
    pairs: list[PairVerdict] = field(default_factory=list)
    meta: EnvelopeMeta | None = None

    def measurement(self, src: str | None, dst: str | None) -> Measurement | None:
        return self.meta.measurements.get(f"{src}>{dst}") if self.meta else None


# --- workload, jobs, decisions -------------------------------------------------------------

@dataclass
class Workload(Record):
    """experiments.workload.generator.describe: what was offered."""

    config: dict | None = None  # the resolved generator parameters, or the replay source
    requests: int | None = None
    offered_rate_per_s: float | None = None
    per_service: dict[str, int] = field(default_factory=dict)
    per_metro: dict[str, int] = field(default_factory=dict)
    offered_unit_s: float | None = None
    deferred: int | None = None
    deferred_mean_s: float | None = None
    last_t: float | None = None
    capacity_scale: float | None = None  # --capacity-scale as used


@dataclass
class Job(Record):
    """One request and its outcome (experiments.workload.metrics.job_records)."""

    idx: int | None = None
    t: float | None = None  # scheduled send time, s from the workload start
    t_start: float | None = None  # actual send time
    client: str | None = None
    metro: str | None = None
    service: str | None = None
    units: int | None = None
    duration_s: float | None = None
    deferred_s: float | None = None
    budget_ms: float | None = None
    ok: bool = False  # it started
    done: bool = False  # it ran to its end
    error: str | None = None
    gw: str | None = None
    hub: str | None = None
    kind: str | None = None  # accelerator kind
    connect_ms: float | None = None
    start_ms: float | None = None  # response latency
    queued_ms: float | None = None
    total_ms: float | None = None
    sla_ok: bool | None = None
    outcome: str | None = None  # experiments.workload.metrics.OUTCOMES


@dataclass
class Decision(Record):
    """One controller decision (controller.steering.Decision.to_dict)."""

    at: float | None = None
    client: str | None = None
    service: str | None = None
    flow: Any = None
    gateway: str | None = None
    reason: str | None = None
    policy: str | None = None
    rtt_ms: float | None = None
    latency_ms: float | None = None
    candidates: int | None = None
    feasible: int | None = None
    path: list[str] = field(default_factory=list)


@dataclass
class ControllerState(Record):
    """The state API's counters and gateways at the end of the run, as it answered them
    (``{"error": ...}`` when it did not)."""

    counters: dict | None = None
    gateways: dict | None = None


# --- metrics (experiments.workload.metrics.compute_metrics) --------------------------------

@dataclass
class ResponseTimes(Record):
    p50: float | None = None
    p95: float | None = None
    p99: float | None = None
    mean: float | None = None


@dataclass
class ConnectTimes(Record):
    p50: float | None = None
    p95: float | None = None


@dataclass
class HubUsage(Record):
    placed: int | None = None
    unit_s: float | None = None  # unit-seconds held inside the window
    units: int | None = None  # capacity
    utilization: float | None = None


@dataclass
class GatewayUsage(Record):
    placed: int | None = None
    hub: str | None = None


@dataclass
class Metrics(Record):
    requests: int | None = None  # sent
    served: int | None = None
    running_at_end: int | None = None
    refused: int | None = None
    busy: int | None = None
    failed: int | None = None
    interrupted_jobs: int | None = None
    not_sent: int | None = None
    client_overload: int | None = None
    started: int | None = None
    sla_violations: int | None = None
    sla_violation_pct: float | None = None  # of started jobs
    sla_met_pct: float | None = None  # of sent requests
    response_ms: ResponseTimes | None = None
    connect_ms: ConnectTimes | None = None
    per_hub: dict[str, HubUsage] = field(default_factory=dict)
    per_gateway: dict[str, GatewayUsage] = field(default_factory=dict)
    utilization_spread: float | None = None  # max - min across hubs, 0..1
    energy_cost_cny: float | None = None  # ILLUSTRATIVE
    unit_hours: float | None = None
    cost_per_unit_hour_cny: float | None = None
    renewable_share: float | None = None
    west_share: float | None = None  # None: the topology defines no west
    west_hubs: list[str] | None = None  # the hubs counted as western
    reroutes: int | None = None
    window_s: float | None = None

    def placements_per_hub(self) -> dict[str, int]:
        return {h: v.placed for h, v in self.per_hub.items() if v.placed is not None}


# --- the run -------------------------------------------------------------------------------

@dataclass
class RunResult(Record):
    """One run; see the module docstring. ``problems``: what `from_dict` could not use."""

    format: str = FORMAT
    kind: str | None = None
    title: str | None = None
    status: str | None = None  # running, complete, interrupted, failed
    error: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    wall_s: float | None = None
    phases: list[Phase] = field(default_factory=list)
    config: Config | None = None
    run: RunDescription | None = None
    topology: Topology | None = None
    envelope: Envelope | None = None
    workload: Workload | None = None
    jobs: list[Job] | None = None
    decisions: list[Decision] | None = None
    metrics: Metrics | None = None
    scenario: Any = None  # by kind: experiments.framework.scenario.SCENARIOS; else as read
    controller: ControllerState | None = field(default=None, metadata={"omit_none": True})
    scenario_backup_coverage: Any = field(default=None, metadata={"omit_none": True})
    notes: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list, repr=False, compare=False,
                                metadata={"internal": True})

    @classmethod
    def _fields(cls):
        return [(f, tp) for f, tp in super()._fields() if not f.metadata.get("internal")]

    @classmethod
    def from_dict(cls, data: Any, problems: list[str] | None = None, where: str = ""
                  ) -> RunResult:
        """Read a run result (a report.json document). Unlike the sections, what cannot
        be used is always recorded, in the result's ``problems`` (and in `problems` when
        given), never raised; the scenario is read as its kind's section."""
        from experiments.framework.scenario import SCENARIOS

        found: list[str] = []
        if not isinstance(data, dict):
            found.append(f"the run result must be an object, got {type(data).__name__}")
            data = {}
        rest = {k: v for k, v in data.items() if k != "scenario"}
        out = super().from_dict(rest, found, where)
        out.order = tuple(data)
        if "scenario" in data:
            out.absent = out.absent - {"scenario"}
            sc, cls_ = data["scenario"], SCENARIOS.get(out.kind or "")
            if cls_ is not None and sc is not None:
                out.scenario = cls_.from_dict(sc, found, "scenario") if isinstance(sc, dict) \
                    else None
                if not isinstance(sc, dict):
                    found.append(f"scenario: expected an object, got {type(sc).__name__}")
            else:
                out.scenario = sc
        out.problems = found
        if problems is not None:
            problems.extend(found)
        return out

    @classmethod
    def coerce(cls, result: RunResult | dict) -> RunResult:
        """A RunResult as it is, or a result dict read with `from_dict`."""
        return result if isinstance(result, RunResult) else cls.from_dict(result)

    def site_map(self) -> dict[str, SiteInfo]:
        return self.topology.site_map() if self.topology else {}
