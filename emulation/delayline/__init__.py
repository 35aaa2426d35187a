"""Userspace delay line: per-link one-way delay, jitter and loss without ``sch_netem``.

Where the kernel has no netem (our development/CI machines, many containers and
WSL2 setups), each emulated link is cut in the middle and a small relay process
forwards Ethernet frames between the two halves::

    switch1 port S1 <-veth-> RA  [delay line: RA <-> RB]  RB <-veth-> S2 switch2 port

One link is two *hops*, one per direction: hop ``a>b`` reads frames arriving on
RA and writes them to RB, hop ``b>a`` reads on RB and writes on RA.  One
AF_PACKET socket per relay interface serves both hops (read for one, write for
the other).  Bandwidth is shaped elsewhere (HTB in the kernel), not here.  Each frame
leaves at its kernel receive stamp plus the hop's delay and jitter, less the
compensation, never earlier than received and never before the hop's previous frame.

Modules:

* :mod:`~emulation.delayline.config`: :class:`Hop`, config validation,
  :func:`split_links` (links over worker processes);
* :mod:`~emulation.delayline.model`: what a hop does to a frame (loss, queue limit,
  :func:`release_time`), as :class:`HopModel`, which the relay loop calls per frame;
* :mod:`~emulation.delayline.relay`: the relay loop (receive stamps, queues, release,
  when it sleeps and when it busy-waits), stats, signals;
* :mod:`~emulation.delayline.sockets`: AF_PACKET sockets, timer slack, SCHED_FIFO;
* :mod:`~emulation.delayline.process`: :class:`DelayLineProcess` (start, wait until
  ready, stats, new compensation, stop) and the CLI :func:`main`.

Run as ``python -m emulation.delayline CONFIG.json`` (config format below) or use
:class:`DelayLineProcess` from Python.  The package only uses the standard library, so
it runs under any python3 (Debian's, the .venv, pyenv).

Config (JSON)::

    {"format": "edwc-delayline/1",
     "seed": 1,
     "rt_priority": 10,
     "stats_path": "/run/dir/delayline-0.stats.json",
     "ready_path": "/run/dir/delayline-0.ready",
     "hops": [{"id": "beijing-bth:a>b", "in_if": "xk3p9r3a", "out_if": "xk3p9r3b",
               "delay_us": 10000, "jitter_us": 0, "loss": 0.0, "limit": 1000,
               "compensation_us": 150}]}

``seed`` (default 0) seeds the per-hop loss and jitter RNGs; ``rt_priority`` (0-99,
default 0 = normal scheduling) asks for SCHED_FIFO; hop fields other than ``id``,
``in_if``, ``out_if`` and ``delay_us`` are optional (defaults as above, with
``compensation_us`` 0).

SIGHUP re-reads compensation_us of every hop from the config file (nothing else).

Stats (JSON, written atomically on SIGUSR1 and when the loop ends, on SIGTERM/SIGINT or
an error): see :meth:`emulation.delayline.relay.Relay.stats`.  Exit codes: 0 clean stop,
2 bad config or interface (message on stderr, no ready file), 1 unexpected error
(traceback in the log).
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
from emulation.delayline.model import HopModel, hop_rngs, release_time
from emulation.delayline.process import DelayLineProcess, main
from emulation.delayline.relay import (
    BATCH,
    FRAME_BUF,
    LATENESS_SAMPLES,
    SAMPLE_EVERY,
    SPIN_BUDGET_MAX,
    SPIN_CPU_FRACTION,
    SPIN_US,
    STATS_FORMAT,
    TS_MAX_AGE,
)
from emulation.delayline.sockets import SOCK_BUF, set_timer_slack

__all__ = [
    "BATCH", "FORMAT", "FRAME_BUF", "LATENESS_SAMPLES", "MAX_DELAY_US", "MAX_LIMIT",
    "SAMPLE_EVERY", "SOCK_BUF", "SPIN_BUDGET_MAX", "SPIN_CPU_FRACTION", "SPIN_US",
    "STATS_FORMAT", "TS_MAX_AGE", "DelayLineError", "DelayLineProcess", "Hop", "HopModel",
    "hop_rngs", "main", "release_time", "set_timer_slack", "split_links", "validate_config",
    "validate_hops",
]
