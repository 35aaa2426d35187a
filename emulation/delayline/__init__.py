"""Userspace delay line: per-link one-way delay, jitter and loss without ``sch_netem``.

Where the kernel has no netem (our development/CI machines, many containers and
WSL2 setups), each emulated link is cut in the middle and a small relay process
forwards Ethernet frames between the two halves::

    switch1 port S1 <-veth-> RA  [delay line: RA <-> RB]  RB <-veth-> S2 switch2 port

One link is two *hops*, one per direction: hop ``a>b`` reads frames arriving on
RA and writes them to RB, hop ``b>a`` reads on RB and writes on RA.  One
AF_PACKET socket per relay interface serves both hops (read for one, write for
the other).  Bandwidth is shaped elsewhere (HTB in the kernel), not here.

Scheduling model (per hop, see :func:`release_time`)::

    release = max(rx_ts + delay + jitter_sample - compensation,  # configured
                  rx_ts,                                          # never early
                  previous_release_of_this_hop)                   # never reorder

* ``rx_ts`` is the kernel receive timestamp of the frame (``SO_TIMESTAMPNS``,
  CLOCK_REALTIME).  If the kernel hands back an implausible stamp (absent, or
  more than 0.5 s in the past, e.g. a monotonic EDT stamp left by TCP pacing)
  the userspace clock at receive is used instead and counted in ``ts_fallbacks``.
* ``jitter_sample`` is uniform in ``[-jitter_us, +jitter_us]``.  Because frames
  of one hop are never reordered (like a fiber, unlike netem's default), a frame
  that follows a strongly delayed one inherits its release time; at high packet
  rates the delay distribution is therefore skewed upwards.
* ``compensation_us`` is the substrate baseline (time the userspace OVS switch
  adds) that the builder measured and wants subtracted; the floor at ``rx_ts``
  means a compensation larger than ``delay + jitter`` simply yields zero delay.
* Since releases are monotonic per hop, each hop is a FIFO ``deque`` (no heap).
* ``loss``: Bernoulli per frame, drawn from a per-hop RNG seeded from
  ``(seed, hop index)``; jitter uses a second per-hop RNG, so the loss sequence
  does not depend on the jitter setting.  Runs are reproducible for the same
  frame sequence.
* ``limit``: drop-tail limit of the hop's queue in frames (``dropped_queue``).

Timing: CPython's ``epoll``/``poll`` round timeouts up to whole milliseconds,
``select.select`` takes microseconds, so the loop sleeps in ``select`` with the
exact time to the next release, and the process timer slack is set to 1 µs
(``prctl(PR_SET_TIMERSLACK)``).  No busy waiting.

Own transmissions are never relayed: ``PACKET_IGNORE_OUTGOING`` is set and the
``pkttype`` of each received frame is checked (``PACKET_OUTGOING`` skipped).
Limitations: VLAN tags stripped into skb metadata by the kernel are not
re-inserted (the backbone carries untagged frames); frames above 64 KiB are
dropped (``dropped_trunc``).

Run as ``python -m emulation.delayline CONFIG.json`` (config format below) or use
:class:`DelayLineProcess` from Python.  The module only uses the standard
library, so it runs under any python3 (Debian's, the .venv, pyenv).

Config (JSON)::

    {"format": "edwc-delayline/1",
     "seed": 1,
     "stats_path": "/run/dir/delayline-0.stats.json",
     "ready_path": "/run/dir/delayline-0.ready",
     "hops": [{"id": "beijing-bth:a>b", "in_if": "xk3p9r3a", "out_if": "xk3p9r3b",
               "delay_us": 10000, "jitter_us": 0, "loss": 0.0, "limit": 1000,
               "compensation_us": 150}]}

SIGHUP re-reads compensation_us of every hop from the config file (nothing else).

Stats (JSON, written atomically on SIGTERM/SIGINT exit and on SIGUSR1): see
:func:`_Relay.stats`.  Exit codes: 0 clean stop, 2 bad config or interface
(message on stderr, no ready file), 1 unexpected error.
"""

from emulation.delayline.config import (
    FORMAT,
    MAX_DELAY_US,
    MAX_LIMIT,
    DelayLineError,
    Hop,
    split_links,
    validate_config,
    validate_hops,
)
from emulation.delayline.model import hop_rngs, release_time
from emulation.delayline.process import DelayLineProcess, main
from emulation.delayline.relay import (
    BATCH,
    FRAME_BUF,
    LATENESS_SAMPLES,
    SAMPLE_EVERY,
    SOCK_BUF,
    SPIN_BUDGET_MAX,
    SPIN_CPU_FRACTION,
    SPIN_US,
    STATS_FORMAT,
    TS_MAX_AGE,
    set_timer_slack,
)

__all__ = [
    "BATCH", "FORMAT", "FRAME_BUF", "LATENESS_SAMPLES", "MAX_DELAY_US", "MAX_LIMIT",
    "SAMPLE_EVERY", "SOCK_BUF", "SPIN_BUDGET_MAX", "SPIN_CPU_FRACTION", "SPIN_US",
    "STATS_FORMAT", "TS_MAX_AGE", "DelayLineError", "DelayLineProcess", "Hop", "hop_rngs",
    "main", "release_time", "set_timer_slack", "split_links", "validate_config",
    "validate_hops",
]
