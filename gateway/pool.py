"""Accelerator capacity and the FIFO job queue of one gateway, as pure logic.

Every method that depends on time takes ``now`` (seconds on one monotonic clock); nothing
here sleeps, reads a clock or touches a socket, so the agent's bookkeeping is unit-tested
with injected time.

Rules:
- A job holds ``units`` units of ONE kind from its acceptable kinds for ``duration_s``.
  Among the acceptable kinds with enough free units, the one with the most free units is
  taken (ties: the client's order).
- FIFO per kind: a kind that some queued job accepts is reserved for the queue; a new job
  may start at once only on a kind nobody queues for (a job that accepts cuda or cann runs
  on free cann units while a cuda-only job waits, but never takes units a queued job could
  use, so large jobs do not starve). Otherwise it joins the queue (up to max_queue) or is
  refused as busy. Freed units start queued jobs in order under the same rule.
- The expected wait (advertised as delay_ms) is computed by replaying that discipline on
  the declared durations of the running and queued jobs.
"""

from __future__ import annotations

import heapq
import math
from collections import OrderedDict
from dataclasses import dataclass

STARTED, QUEUED, BUSY = "started", "queued", "busy"


@dataclass
class Job:
    id: int
    service: str
    units: int
    kinds: tuple[str, ...]
    duration_s: float
    submitted: float
    started: float | None = None
    kind: str | None = None

    @property
    def ends(self) -> float:
        assert self.started is not None
        return self.started + self.duration_s

    @property
    def queued_s(self) -> float:
        return (self.started - self.submitted) if self.started is not None else 0.0


def pick_kind(free: dict[str, int], units: int, kinds: tuple[str, ...]) -> str | None:
    """The acceptable kind with the most free units that fit, or None."""
    best: str | None = None
    for kind in kinds:
        f = free.get(kind, 0)
        if f >= units and (best is None or f > free[best]):
            best = kind
    return best


def _allowed(kinds: tuple[str, ...], blocked: set[str]) -> tuple[str, ...]:
    return tuple(k for k in kinds if k not in blocked)


def significant_change(prev: dict[str, tuple[int, int]] | None,
                       cur: dict[str, tuple[int, int]], prev_queue: int = 0,
                       cur_queue: int = 0) -> bool:
    """True when an advertisement should go out now: free units of some kind moved by at
    least 10 % of its total, a kind went to or from zero free units, or the queue went
    from empty to non-empty or back."""
    if prev is None or prev.keys() != cur.keys() or (prev_queue == 0) != (cur_queue == 0):
        return True
    for kind, (total, free) in cur.items():
        before = prev[kind][1]
        if (free == 0) != (before == 0):
            return True
        if total > 0 and abs(free - before) * 10 >= total:
            return True
    return False


class Pool:
    def __init__(self, totals: dict[str, int], max_queue: int) -> None:
        if not totals or any(t < 0 for t in totals.values()) or sum(totals.values()) == 0:
            raise ValueError("totals: need at least one kind and one unit, none negative")
        if max_queue < 0:
            raise ValueError("max_queue must be >= 0")
        self.totals = dict(totals)
        self.busy = dict.fromkeys(totals, 0)
        self.max_queue = max_queue
        self.running: dict[int, Job] = {}
        self.queue: OrderedDict[int, Job] = OrderedDict()

    # -- state -------------------------------------------------------------------------
    def free(self) -> dict[str, int]:
        return {k: self.totals[k] - self.busy[k] for k in self.totals}

    def snapshot(self) -> dict[str, tuple[int, int]]:
        return {k: (self.totals[k], self.totals[k] - self.busy[k]) for k in self.totals}

    def utilization(self) -> float:
        return sum(self.busy.values()) / sum(self.totals.values())

    def check(self, units: int, kinds: tuple[str, ...]) -> str | None:
        """Why a request can never be served here (error code), or None."""
        offered = [k for k in kinds if k in self.totals]
        if not offered:
            return "no-kind"
        if units > max(self.totals[k] for k in offered):
            return "too-large"
        return None

    # -- transitions -------------------------------------------------------------------
    def submit(self, job: Job, now: float) -> str:
        """STARTED (units taken), QUEUED or BUSY. The caller ran check() first."""
        kind = pick_kind(self.free(), job.units, _allowed(job.kinds, self.blocked_kinds()))
        if kind is not None:
            self._start(job, kind, now)
            return STARTED
        if len(self.queue) < self.max_queue:
            self.queue[job.id] = job
            return QUEUED
        return BUSY

    def release(self, job_id: int, now: float) -> list[Job]:
        """A job ended or its client left: free its units or drop it from the queue.
        Returns the queued jobs that started as a result, in order."""
        job = self.running.pop(job_id, None)
        if job is not None:
            self.busy[job.kind] -= job.units  # type: ignore[index]
        else:
            self.queue.pop(job_id, None)
        return self._dispatch(now)

    def _start(self, job: Job, kind: str, now: float) -> None:
        job.kind, job.started = kind, now
        self.busy[kind] += job.units
        self.running[job.id] = job

    def blocked_kinds(self) -> set[str]:
        """Kinds reserved for queued jobs: a new job may not start on them."""
        return {k for job in self.queue.values() for k in job.kinds}

    def _dispatch(self, now: float) -> list[Job]:
        started: list[Job] = []
        blocked: set[str] = set()
        free = self.free()
        for job in list(self.queue.values()):
            kind = pick_kind(free, job.units, _allowed(job.kinds, blocked))
            if kind is None:
                blocked.update(job.kinds)
                continue
            del self.queue[job.id]
            self._start(job, kind, now)
            free[kind] -= job.units
            started.append(job)
        return started

    # -- estimates ---------------------------------------------------------------------
    def expected_wait(self, now: float, units: int = 1,
                      kinds: tuple[str, ...] | None = None) -> float:
        """Seconds a new job (units of any of kinds; default: every kind) would wait before
        it starts, replaying the queue discipline on the declared durations of the running
        and queued jobs; inf if it can never fit here."""
        kinds = tuple(self.totals) if kinds is None else kinds
        if self.check(units, kinds) is not None:
            return math.inf
        free = self.free()
        ends = [(max(j.ends, now), j.id, j.kind, j.units) for j in self.running.values()]
        heapq.heapify(ends)
        queue = list(self.queue.values())
        t, n = now, 0
        while True:
            blocked: set[str] = set()
            waiting = []
            for job in queue:
                kind = pick_kind(free, job.units, _allowed(job.kinds, blocked))
                if kind is None:
                    blocked.update(job.kinds)
                    waiting.append(job)
                else:
                    free[kind] -= job.units
                    n += 1
                    heapq.heappush(ends, (t + job.duration_s, -n, kind, job.units))
            queue = waiting
            if pick_kind(free, units, _allowed(kinds, blocked)) is not None:
                return t - now
            if not ends:  # only if a queued job can never fit; check() prevents that
                return math.inf
            t, _, kind, count = heapq.heappop(ends)
            free[kind] += count
            while ends and ends[0][0] <= t:  # release everything ending at the same time
                _, _, kind, count = heapq.heappop(ends)
                free[kind] += count

    def advertised_wait(self, now: float) -> float:
        """The shortest expected wait of a new 1-unit job on any one kind, seconds."""
        return min(self.expected_wait(now, 1, (k,)) for k in self.totals)
