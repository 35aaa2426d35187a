"""What a hop does to a frame: loss, the drop-tail queue, the release time.

Pure: no sockets, no clock (receive stamps are passed in). The relay loop
(:mod:`emulation.delayline.relay`) calls :meth:`HopModel.admit` for every frame it reads,
so the decisions tested here are the ones production makes. Per hop::

    release = max(rx_ts + delay + jitter_sample - compensation,  # configured
                  rx_ts,                                          # never early
                  previous_release_of_this_hop)                   # never reorder

* ``jitter_sample`` is uniform in ``[-jitter_us, +jitter_us]`` (drawn only when
  ``jitter_us`` is not 0).  Because frames of one hop are never reordered (like a
  fiber, unlike netem's default), a frame that follows a strongly delayed one inherits
  its release time; at high packet rates the delay distribution is therefore skewed
  upwards.
* ``compensation_us`` is the substrate baseline (time the userspace OVS switch adds)
  that the builder measured and wants subtracted; the floor at ``rx_ts`` means a
  compensation larger than ``delay + jitter`` simply yields zero delay.
* Since releases are monotonic per hop, each hop's queue is a FIFO ``deque`` of
  ``(release, frame)`` (no heap): the relay sends from its head.
* ``loss``: Bernoulli per frame, drawn before the queue limit is checked, from a per-hop
  RNG seeded from ``(seed, hop index)``; jitter uses a second per-hop RNG, drawn only for
  frames that are queued, so the loss sequence does not depend on the jitter setting.
  Runs are reproducible for the same frame sequence.
* ``limit``: drop-tail limit of the hop's queue in frames.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import replace

from emulation.delayline.config import Hop


def hop_rngs(seed: int, index: int) -> tuple[random.Random, random.Random]:
    """(loss RNG, jitter RNG) of hop ``index``: deterministic in (seed, index)."""
    return (random.Random(f"edwc-delayline/{seed}/{index}/loss"),
            random.Random(f"edwc-delayline/{seed}/{index}/jitter"))


class HopModel:
    """Loss, queue limit and release schedule of one hop.

    ``q`` is the hop's queue of ``(release, frame)``; :meth:`admit` decides whether a
    received frame joins it and when it leaves; the caller appends the frame and later
    pops it (the relay does both: it owns the sockets and the frame bytes). Everything
    the per-frame path reads is precomputed here (seconds, bound RNG methods), which keeps
    one method call per frame cheap.
    """

    __slots__ = ("hop", "q", "base", "jit", "loss", "limit", "prev", "dropped_loss",
                 "dropped_queue", "_draw_loss", "_draw_jitter")

    def __init__(self, hop: Hop, rng_loss: random.Random | None,
                 rng_jitter: random.Random | None):
        self.hop = hop
        self.q: deque = deque()
        self.jit = hop.jitter_us * 1e-6
        self.loss = hop.loss
        self.limit = hop.limit
        self.prev = 0.0  # release time of the hop's previous queued frame (0: none yet)
        self.dropped_loss = 0
        self.dropped_queue = 0
        self._draw_loss = rng_loss.random if rng_loss is not None else None
        self._draw_jitter = rng_jitter.uniform if rng_jitter is not None else None
        if self.loss and self._draw_loss is None:
            raise ValueError(f"hop {hop.id!r}: loss {hop.loss} needs a loss RNG")
        if self.jit and self._draw_jitter is None:
            raise ValueError(f"hop {hop.id!r}: jitter {hop.jitter_us} us needs a jitter RNG")
        self.set_compensation(hop.compensation_us)

    @classmethod
    def seeded(cls, hop: Hop, seed: int, index: int) -> HopModel:
        """The model of hop ``index`` of a relay started with ``seed`` (see :func:`hop_rngs`)."""
        return cls(hop, *hop_rngs(seed, index))

    def set_compensation(self, compensation_us: float) -> None:
        """Take a new compensation (SIGHUP reload); frames already queued keep their time."""
        self.hop.compensation_us = compensation_us
        self.base = (self.hop.delay_us - compensation_us) * 1e-6

    def admit(self, rx_ts: float) -> float | None:
        """Decide one frame received at ``rx_ts`` (seconds): None if it is dropped (loss
        drawn first, then the queue limit; counted in ``dropped_loss`` / ``dropped_queue``),
        else its release time (same clock as ``rx_ts``), which becomes ``prev``. The caller
        appends ``(release, frame)`` to :attr:`q` before admitting the next frame."""
        loss = self.loss
        if loss and self._draw_loss() < loss:
            self.dropped_loss += 1
            return None
        if len(self.q) >= self.limit:
            self.dropped_queue += 1
            return None
        rel = rx_ts + self.base
        jit = self.jit
        if jit:
            rel += self._draw_jitter(-jit, jit)
        if rel < rx_ts:
            rel = rx_ts
        prev = self.prev
        if rel < prev:
            rel = prev
        self.prev = rel
        return rel


class _FixedJitter:
    """Stands in for a jitter RNG: every draw returns ``sample`` (seconds)."""

    __slots__ = ("sample",)

    def __init__(self, sample: float):
        self.sample = sample

    def uniform(self, a: float, b: float) -> float:
        return self.sample


def release_time(rx_ts: float, hop: Hop, jitter_sample: float, prev_release: float) -> float:
    """Release time (seconds) of a frame received at ``rx_ts`` on ``hop``.

    Runs :meth:`HopModel.admit` (the relay's per-frame decision) on a model whose previous
    release is ``prev_release`` (0 if none) and whose jitter draw is ``jitter_sample``
    microseconds (meant from ``[-jitter_us, +jitter_us]``; like the relay, a hop with
    ``jitter_us`` 0 draws nothing, so the sample is ignored). Loss and the queue limit do
    not apply. ``max(rx + delay + jitter - compensation, rx, prev_release)``: never
    earlier than reception, never before the previous frame of the same hop.
    """
    model = HopModel(replace(hop, loss=0.0), None, _FixedJitter(jitter_sample * 1e-6))
    model.prev = prev_release
    rel = model.admit(rx_ts)
    assert rel is not None  # empty queue, no loss: always admitted
    return rel
