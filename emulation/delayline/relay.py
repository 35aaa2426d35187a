"""The relay process: receive, stamp, queue and release frames; stats and signals.

One :class:`Relay` serves a set of hops in one thread. Each round of :meth:`Relay.run`:

1. sends, per hop and in order, every queued frame whose release time has come;
2. handles a pending SIGHUP (new compensation) or SIGUSR1 (write stats);
3. waits in ``select()`` for a readable socket, the signal wake-up pipe, or the next
   release (below);
4. reads up to ``BATCH`` frames from each readable socket; each gets its receive stamp
   and the hop's :meth:`~emulation.delayline.model.HopModel.admit` decides whether it is
   queued and when it leaves (:meth:`HopRelay.receive`).

Receive stamps: the kernel's ``SO_TIMESTAMPNS`` (CLOCK_REALTIME). A frame without one,
or whose stamp is more than ``TS_MAX_AGE`` (5 ms) older than the moment ``select()``
returned (e.g. a monotonic EDT stamp left by TCP pacing), is stamped with ``time.time()``
at the read instead and counted in ``ts_fallbacks``.

Waiting, and when it busy-waits: CPython's ``epoll``/``poll`` round timeouts to whole
milliseconds, ``select.select`` takes microseconds, and the process timer slack is set to
1 µs (``prctl(PR_SET_TIMERSLACK)``). Still, ``select()`` wakes up late by tens of µs
(more on a loaded machine), so with frames queued the loop sleeps until ``margin``
before the next release and then busy-waits: it calls ``select()`` with timeout 0
(sockets are still read) round after round until the release is due. ``margin`` is
``est + 20 µs``, at most ``spin_us`` (``SPIN_US`` = 300 µs; environment variable
``EDWC_DELAYLINE_SPIN_US``, 0 = never busy-wait), where ``est`` is a moving average
(weight 1/8, start 50 µs) of how late timed ``select()`` calls that saw no frame returned
(each sample clamped to 0-500 µs). Busy-waiting is paid from a token bucket of wall time:
it fills at ``SPIN_CPU_FRACTION`` (5 %) of the time spent in other rounds, up to
``SPIN_BUDGET_MAX`` (20 ms), and is drained by the wall time of busy-wait rounds; while
it is empty the loop sleeps in ``select()`` with the exact time to the release (the rest
of a busy-wait too). So busy-waiting takes at most about 5 % of a core over time, 20 ms
in a burst. With nothing queued, ``select()`` blocks until a frame or a signal arrives.

Own transmissions are never relayed (:mod:`emulation.delayline.sockets`). Limitations:
VLAN tags stripped into skb metadata by the kernel are not re-inserted (the backbone
carries untagged frames); frames longer than ``FRAME_BUF`` (64 KiB) are dropped
(``dropped_trunc``).
"""

from __future__ import annotations

import gc
import json
import os
import select
import signal
import struct
import sys
import time
from collections import deque

from emulation.delayline.config import DelayLineError, Hop, atomic_write, validate_config
from emulation.delayline.model import HopModel
from emulation.delayline.sockets import (
    MSG_TRUNC,
    PACKET_OUTGOING,
    TIMESTAMP_CMSG_SPACE,
    open_packet_socket,
    set_realtime,
    set_timer_slack,
)

STATS_FORMAT = "edwc-delayline-stats/1"

FRAME_BUF = 65536  # bytes per frame buffer
BATCH = 64  # frames drained per readable socket per round
LATENESS_SAMPLES = 20000  # ring of recent lateness samples per hop
SAMPLE_EVERY = 8  # besides the first frame of every release burst (a power of two)
TS_MAX_AGE = 0.005  # kernel stamps older than this (s) at wake-up are not trusted: the frame
# is stamped now instead (counted as ts_fallbacks). 0.5 s let stale stamps through and frames
# left early (relay lateness up to 0.5 s measured on the backbone); 5 ms still covers a
# relay that wakes late under load.
# Busy-wait before a release (module docstring): at most SPIN_US, paid from a token bucket
# that fills at SPIN_CPU_FRACTION of elapsed time up to SPIN_BUDGET_MAX seconds.
SPIN_US = 300
SPIN_CPU_FRACTION = 0.05
SPIN_BUDGET_MAX = 0.02
SPIN_EST_START = 50e-6  # first guess of select()'s wake-up lateness (s)
SPIN_EST_MAX = 500e-6  # a single lateness sample counts at most this much
SPIN_GUARD = 20e-6  # busy-wait this much more than the expected lateness

_TIMESPEC = struct.Struct("=qq").unpack_from


def _percentiles(samples) -> dict:
    if not samples:
        return {"p50": None, "p99": None, "max": None, "samples": 0}
    s = sorted(samples)
    n = len(s)

    def pct(p):
        return round(s[min(n - 1, int(p * (n - 1) + 0.5))] * 1e6, 1)

    return {"p50": pct(0.50), "p99": pct(0.99), "max": round(s[-1] * 1e6, 1), "samples": n}


class HopRelay:
    """One hop inside the relay: its :class:`HopModel`, its two sockets, its counters.

    ``q`` is the model's queue. ``in_sock`` / ``out_sock`` are set by
    :meth:`Relay.open_sockets` (or by a test, with any object that has ``recvmsg_into`` /
    ``send`` like a non-blocking AF_PACKET socket)."""

    __slots__ = ("hop", "index", "model", "q", "packets_in", "packets_out", "bytes_out",
                 "dropped_trunc", "send_errors", "max_queue", "late", "late_i", "late_n",
                 "out_sock", "in_sock", "ts_fallbacks", "skipped_outgoing", "_bufs", "_mv")

    def __init__(self, hop: Hop, index: int, seed: int):
        self.hop = hop
        self.index = index
        self.model = HopModel.seeded(hop, seed, index)
        self.q: deque = self.model.q
        self.packets_in = self.packets_out = self.bytes_out = 0
        self.dropped_trunc = self.send_errors = 0
        self.max_queue = 0
        self.late = [0.0] * LATENESS_SAMPLES
        self.late_i = 0
        self.late_n = 0
        self.ts_fallbacks = 0
        self.skipped_outgoing = 0
        self.out_sock = None
        self.in_sock = None
        buf = bytearray(FRAME_BUF)
        self._bufs = [buf]
        self._mv = memoryview(buf)

    def receive(self, t_wake: float) -> None:
        """Read up to ``BATCH`` frames from ``in_sock`` (until it would block or fails),
        stamp each (kernel stamp, or the clock when it is missing or older than
        ``TS_MAX_AGE`` before ``t_wake``) and queue those :meth:`HopModel.admit` admits."""
        recv = self.in_sock.recvmsg_into
        bufs = self._bufs
        mv = self._mv
        admit = self.model.admit
        append = self.q.append
        unpack = _TIMESPEC
        now_f = time.time
        ancsize = TIMESTAMP_CMSG_SPACE
        outgoing = PACKET_OUTGOING
        trunc = MSG_TRUNC
        oldest = t_wake - TS_MAX_AGE
        n_in = 0
        for _ in range(BATCH):
            try:
                n, anc, flags, addr = recv(bufs, ancsize)
            except OSError:  # EAGAIN: drained; any other error: retried next round
                break
            if addr[2] == outgoing:
                self.skipped_outgoing += 1
                continue
            n_in += 1
            if flags & trunc:
                self.dropped_trunc += 1
                continue
            if anc:
                sec, nsec = unpack(anc[0][2])
                ts = sec + nsec * 1e-9
                if ts < oldest:
                    ts = now_f()
                    self.ts_fallbacks += 1
            else:
                ts = now_f()
                self.ts_fallbacks += 1
            rel = admit(ts)
            if rel is not None:
                append((rel, mv[:n].tobytes()))
        self.packets_in += n_in
        if len(self.q) > self.max_queue:
            self.max_queue = len(self.q)

    def stats(self) -> dict:
        m = self.model
        return {
            "in_if": self.hop.in_if, "out_if": self.hop.out_if,
            "delay_us": self.hop.delay_us, "jitter_us": self.hop.jitter_us,
            "loss": self.hop.loss, "limit": self.hop.limit,
            "compensation_us": self.hop.compensation_us,
            "packets_in": self.packets_in, "packets_out": self.packets_out,
            "bytes_out": self.bytes_out, "dropped_loss": m.dropped_loss,
            "dropped_queue": m.dropped_queue, "dropped_trunc": self.dropped_trunc,
            "send_errors": self.send_errors, "max_queue": self.max_queue,
            "queued": len(self.q), "ts_fallbacks": self.ts_fallbacks,
            "skipped_outgoing": self.skipped_outgoing,
            "lateness_us": _percentiles(self.late[: min(self.late_n, LATENESS_SAMPLES)]),
        }


class Relay:
    """One relay process's hops, sockets, signals and loop (:meth:`serve` runs it)."""

    def __init__(self, hops: list[Hop], seed: int, stats_path: str, ready_path: str):
        self.hops = hops
        self.seed = seed
        self.stats_path = stats_path
        self.ready_path = ready_path
        self.states = [HopRelay(h, i, seed) for i, h in enumerate(hops)]
        self.socks: dict[str, object] = {}
        self.started_at = time.time()
        self.timer_slack_set = False
        self.running = True
        self.want_stats = False
        self.want_reload = False
        self.reloads = 0
        self.rt_priority = 0
        self.realtime = "off"
        self.config_path = ""
        self.stats_seq = 0
        self._wake_r = self._wake_w = -1
        try:
            self.spin_us = max(0.0, float(os.environ.get("EDWC_DELAYLINE_SPIN_US", SPIN_US)))
        except ValueError:
            self.spin_us = float(SPIN_US)

    # -- setup
    def open_sockets(self) -> None:
        """One socket per relay interface, shared by the hop that reads it and the hop that
        writes it; an interface no hop reads gets a write-only socket."""
        readers = {h.in_if for h in self.hops}
        for ifname in sorted(readers | {h.out_if for h in self.hops}):
            users = ", ".join(f"{h.id!r} ({'in_if' if h.in_if == ifname else 'out_if'})"
                              for h in self.hops if ifname in (h.in_if, h.out_if))
            self.socks[ifname] = open_packet_socket(ifname, ifname in readers, users)
        for st in self.states:
            st.in_sock = self.socks[st.hop.in_if]
            st.out_sock = self.socks[st.hop.out_if]

    def close(self) -> None:
        for s in self.socks.values():
            try:
                s.close()
            except OSError:
                pass
        self.socks.clear()

    # -- stats
    def stats(self) -> dict:
        """The stats file: process facts (pid, seq, seed, cpu, realtime, spin settings) and
        per hop its settings, packet/byte counters, drops by cause (``dropped_loss``,
        ``dropped_queue``, ``dropped_trunc``, ``send_errors``), ``max_queue``, ``queued``,
        ``ts_fallbacks``, ``skipped_outgoing`` and ``lateness_us`` (p50/p99/max over the
        last ``LATENESS_SAMPLES`` samples, see :meth:`run`)."""
        ru = None
        try:
            import resource

            r = resource.getrusage(resource.RUSAGE_SELF)
            ru = {"user_s": round(r.ru_utime, 3), "sys_s": round(r.ru_stime, 3)}
        except Exception:  # noqa: BLE001
            pass
        self.stats_seq += 1
        return {
            "format": STATS_FORMAT, "pid": os.getpid(), "started_at": self.started_at,
            "written_at": time.time(), "seq": self.stats_seq, "seed": self.seed,
            "timer_slack_set": self.timer_slack_set, "running": self.running, "cpu": ru,
            "reloads": self.reloads, "realtime": self.realtime,
            "spin_us": self.spin_us, "spin_cpu_fraction": SPIN_CPU_FRACTION,
            "python": sys.version.split()[0],
            "hops": {st.hop.id: st.stats() for st in self.states},
        }

    def write_stats(self) -> None:
        atomic_write(self.stats_path, json.dumps(self.stats(), indent=1, sort_keys=True) + "\n")

    # -- signals: the handlers only set flags; the loop acts on them between rounds
    def _on_stop(self, signum, frame):
        self.running = False

    def _on_usr1(self, signum, frame):
        self.want_stats = True

    def _on_hup(self, signum, frame):
        self.want_reload = True

    def reload_compensation(self) -> None:
        """SIGHUP: take new compensation_us values from the config file (the builder's
        substrate calibration runs after the relays are up). Nothing else changes; a bad
        file is reported in the log and ignored."""
        try:
            with open(self.config_path) as f:
                hops = {h.id: h for h in validate_config(json.load(f))}
        except (OSError, ValueError, DelayLineError) as e:
            print(f"delayline: reload ignored: {e}", file=sys.stderr, flush=True)
            return
        for st in self.states:
            new = hops.get(st.hop.id)
            if new is not None:
                st.model.set_compensation(new.compensation_us)
        self.reloads += 1

    def install_signals(self) -> None:
        """Handlers for SIGTERM/SIGINT (stop), SIGUSR1 (stats), SIGHUP (reload). The wake-up
        pipe (``signal.set_wakeup_fd``) is in the select() set, so a signal that arrives
        while the loop sleeps ends the sleep (select() itself is retried after EINTR)."""
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        signal.set_wakeup_fd(self._wake_w, warn_on_full_buffer=False)
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)
        signal.signal(signal.SIGUSR1, self._on_usr1)
        signal.signal(signal.SIGHUP, self._on_hup)

    # -- main loop
    def run(self) -> None:
        """Rounds of send, signals, wait, receive until SIGTERM/SIGINT (module docstring).

        Lateness (clock just before ``send()`` minus the release time) is sampled for the
        first frame of each hop's burst and then whenever the count of frames sent in the
        burst is a multiple of ``SAMPLE_EVERY``. A failed ``send()`` drops the frame
        (``send_errors``). The send step is written out here rather than called as a
        method: a call there raised the median lateness from 2.4 to 3.6-3.8 us (in-process
        relay with stand-in sockets, one frame per 5 ms, 400 frames a run)."""
        states = self.states
        rlist = [st.in_sock for st in states] + [self._wake_r]
        receivers = {st.in_sock: st.receive for st in states}
        wake_r = self._wake_r
        now_f = time.time
        sel = select.select
        late_max = LATENESS_SAMPLES
        sample_mask = SAMPLE_EVERY - 1

        # busy-wait state (module docstring): est = expected lateness of a timed select(),
        # budget = seconds of busy-waiting still allowed (token bucket)
        spin_window = self.spin_us * 1e-6
        est = SPIN_EST_START
        budget = SPIN_BUDGET_MAX
        last_t = now_f()
        spin_frac = SPIN_CPU_FRACTION
        budget_max = SPIN_BUDGET_MAX
        spinning = False

        while self.running:
            # ---- pay for the last round if it busy-waited, else refill the bucket
            now = now_f()
            if spinning:
                budget -= now - last_t
            else:
                budget += (now - last_t) * spin_frac
                if budget > budget_max:
                    budget = budget_max
            last_t = now
            # ---- release everything that is due; nxt = earliest release still queued
            nxt = None
            for st in states:
                q = st.q
                if not q:
                    continue
                if q[0][0] <= now:
                    send = st.out_sock.send
                    first = True
                    sent = 0
                    nbytes = 0
                    errs = 0
                    while q and q[0][0] <= now:
                        rel, data = q.popleft()
                        if first or not (sent & sample_mask):
                            first = False
                            i = st.late_i
                            st.late[i] = now_f() - rel
                            st.late_i = i + 1 if i + 1 < late_max else 0
                            st.late_n += 1
                        try:
                            send(data)
                            sent += 1
                            nbytes += len(data)
                        except OSError:
                            errs += 1
                    st.packets_out += sent
                    st.bytes_out += nbytes
                    st.send_errors += errs
                    if not q:
                        continue
                d = q[0][0]
                if nxt is None or d < nxt:
                    nxt = d
            if self.want_reload:
                self.want_reload = False
                self.reload_compensation()
            if self.want_stats:
                self.want_stats = False
                self.write_stats()
            # ---- wait: block (nothing queued), poll (due, or busy-wait), or timed sleep
            spinning = False
            timed = False
            if nxt is None:
                wait = None
            else:
                t = now_f()
                wait = nxt - t
                if wait <= 0:
                    wait = 0
                elif spin_window > 0 and budget > 0:
                    margin = est + SPIN_GUARD
                    if margin > spin_window:
                        margin = spin_window
                    if wait <= margin:
                        wait = 0
                        spinning = True
                    else:
                        wait -= margin
                        timed = True
                        target = t + wait
            try:
                ready, _, _ = sel(rlist, (), (), wait)
            except InterruptedError:  # pragma: no cover - PEP 475 retries anyway
                continue
            if timed and not ready:
                over = now_f() - target
                if over < 0:
                    over = 0
                elif over > SPIN_EST_MAX:
                    over = SPIN_EST_MAX
                est += (over - est) * 0.125
            if not ready:
                continue
            # ---- receive
            t_wake = now_f()
            for s in ready:
                if s is wake_r:
                    try:
                        while os.read(wake_r, 512):
                            pass
                    except BlockingIOError:
                        pass
                    continue
                receivers[s](t_wake)

    # -- lifecycle
    def serve(self) -> None:
        """Set up (timer slack, scheduling, signals, sockets), write the ready file, run the
        loop; on any exit write the final stats and close the sockets."""
        self.timer_slack_set = set_timer_slack(1000)
        self.realtime = set_realtime(self.rt_priority)
        self.install_signals()
        self.open_sockets()
        atomic_write(self.ready_path, json.dumps({"pid": os.getpid(), "at": time.time()}) + "\n")
        # The hot loop creates no reference cycles; a cyclic-GC pass in the middle of a
        # release burst would only add latency, so collect once and switch it off.
        gc.collect()
        gc.freeze()
        gc.disable()
        try:
            self.run()
        finally:
            self.running = False
            self.write_stats()
            self.close()
