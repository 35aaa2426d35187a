"""Per-hop scheduling: release time and the hop's random streams.

Pure: no sockets, no clock.
"""

from __future__ import annotations

import random

from emulation.delayline.config import Hop

# --------------------------------------------------------------------------- pure scheduling

def release_time(rx_ts: float, hop: Hop, jitter_sample: float, prev_release: float) -> float:
    """Release time (seconds) of a frame received at ``rx_ts`` on ``hop``.

    ``jitter_sample`` is in microseconds (drawn from ``[-jitter_us, +jitter_us]``);
    ``prev_release`` is the release time of the hop's previous frame (0 if none).
    ``max(rx + delay + jitter - compensation, rx, prev_release)``: never earlier
    than reception, never before the previous frame of the same hop.
    """
    rel = rx_ts + (hop.delay_us + jitter_sample - hop.compensation_us) * 1e-6
    if rel < rx_ts:
        rel = rx_ts
    if rel < prev_release:
        rel = prev_release
    return rel


def hop_rngs(seed: int, index: int) -> tuple[random.Random, random.Random]:
    """(loss RNG, jitter RNG) of hop ``index``: deterministic in (seed, index)."""
    return (random.Random(f"edwc-delayline/{seed}/{index}/loss"),
            random.Random(f"edwc-delayline/{seed}/{index}/jitter"))

