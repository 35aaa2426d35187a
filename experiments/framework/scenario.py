"""The scenario sections of a run result (RunResult.scenario), one type per kind of run:
fiber cut, capacity shift, policy comparison (see docs/reports.md). The backbone run has
none. The studies (experiments.studies) fill them; the reports read them.

All three are typed in full except FiberCut.timeline, which is typed as the series
probes.stream.timeline returns (times, delays, lost marks, cut spans) and nothing more.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from experiments.framework.record import Record
from experiments.framework.result import Job, Metrics


@dataclass
class StreamInfo(Record):
    """The constant-rate probe stream of a fiber-cut run."""

    src: str | None = None
    dst: str | None = None
    rate_pps: float | None = None
    sent: int | None = None
    received: int | None = None
    lost: int | None = None


@dataclass
class Cut(Record):
    t_cut: float | None = None  # s on the stream's clock
    t_restore: float | None = None
    interruption_ms: float | None = None
    lost: int | None = None
    restore_interruption_ms: float | None = None
    restore_lost: int | None = None
    old_path: list[str] | None = None  # the controller's path before, during, after
    new_path: list[str] | None = None
    restored_path: list[str] | None = None
    delay_before_ms: float | None = None
    new_path_one_way_ms: float | None = None  # p95 of the stream during the cut
    new_path_one_way_median_ms: float | None = None
    envelope_tier: str | None = None
    envelope_ms: float | None = None
    verdict: str | None = None  # pass, fail, no tier, not resumed


@dataclass
class InterruptionStats(Record):
    median: float | None = None
    max: float | None = None
    min: float | None = None
    n: int | None = None


@dataclass
class Timeline(Record):
    """probes.stream.timeline: the delay series for plots (t[i] with one_way_ms[i])."""

    t: list[float | None] = field(default_factory=list)
    one_way_ms: list[float | None] = field(default_factory=list)
    lost_t: list[float | None] = field(default_factory=list)
    cuts: list[list[float | None]] = field(default_factory=list)  # [t_cut, t_restore]


@dataclass
class FiberCut(Record):
    link: list[str] = field(default_factory=list)  # [a, b]
    stream: StreamInfo | None = None
    model_path_without_link: list[str] = field(default_factory=list)
    model_one_way_ms_without_link: float | None = None
    cuts: list[Cut] = field(default_factory=list)
    interruption_ms: InterruptionStats | None = None
    timeline: Timeline | None = None


@dataclass
class CapacityShift(Record):
    hub: str | None = None
    action: str | None = None  # fill | offline
    t_event: float | None = None  # s on the workload clock
    controller_view_ms: float | None = None
    reaction_ms: float | None = None
    late_placements: int | None = None
    misplaced: int | None = None
    late_placements_served: int | None = None
    placements_before: dict[str, int] = field(default_factory=dict)
    placements_after: dict[str, int] = field(default_factory=dict)
    existing_flows: int | None = None
    existing_survived: int | None = None


@dataclass
class PolicyRun(Record):
    """One policy's round of a policy comparison. ``jobs`` is None for the first policy:
    its jobs are the run's top-level jobs (report.json holds every job list once)."""

    policy: str | None = None
    metrics: Metrics | None = None
    placements: dict[str, int] = field(default_factory=dict)  # per gateway
    explanations: list[str] = field(default_factory=list)
    jobs: list[Job] | None = None


@dataclass
class PolicyComparison(Record):
    policies: list[PolicyRun] = field(default_factory=list)
    workload_seed: int | None = None


SCENARIOS: dict[str, type[Record]] = {
    "fiber-cut": FiberCut, "capacity-shift": CapacityShift,
    "policy-comparison": PolicyComparison}
