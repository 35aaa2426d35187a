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

from __future__ import annotations

import gc
import json
import math
import os
import random
import signal
import struct
import subprocess
import sys
import time
from collections import deque
from dataclasses import asdict, dataclass

FORMAT = "edwc-delayline/1"
STATS_FORMAT = "edwc-delayline-stats/1"

# Linux constants (not all exported by the socket module).
SOL_PACKET = 263
PACKET_IGNORE_OUTGOING = 23
PACKET_OUTGOING = 4
ETH_P_ALL = 0x0003
SO_TIMESTAMPNS = getattr(__import__("socket"), "SO_TIMESTAMPNS", 35)
SO_RCVBUFFORCE = 33
SO_SNDBUFFORCE = 32
PR_SET_TIMERSLACK = 29

FRAME_BUF = 65536  # bytes per frame buffer
SOCK_BUF = 8 * 1024 * 1024  # requested SO_RCVBUF / SO_SNDBUF
BATCH = 64  # frames drained per readable socket per round
LATENESS_SAMPLES = 20000  # ring of recent lateness samples per hop
SAMPLE_EVERY = 8  # besides the first frame of every release burst
TS_MAX_AGE = 0.005  # kernel stamps older than this (s) at wake-up are not trusted: the frame
# is stamped now instead (counted as ts_fallbacks). 0.5 s let stale stamps through and frames
# left early (relay lateness up to 0.5 s measured on the backbone); 5 ms still covers a
# relay that wakes late under load.
# Hybrid sleep: poll (no sleeping) for at most SPIN_US before a release, within a CPU
# budget of SPIN_CPU_FRACTION of one core (token bucket, burst SPIN_BUDGET_MAX seconds).
# Override with the environment variable EDWC_DELAYLINE_SPIN_US (0 = pure sleeping).
SPIN_US = 300
SPIN_CPU_FRACTION = 0.05
SPIN_BUDGET_MAX = 0.02

MAX_DELAY_US = 60_000_000  # 60 s: anything above is a unit mistake
MAX_LIMIT = 10_000_000


class DelayLineError(Exception):
    """Bad configuration, missing interface, or a relay process that failed."""


@dataclass
class Hop:
    """One direction of one emulated link."""

    id: str
    in_if: str
    out_if: str
    delay_us: float
    jitter_us: float = 0
    loss: float = 0.0
    limit: int = 1000
    compensation_us: float = 0

    def to_json(self) -> dict:
        return asdict(self)


# --------------------------------------------------------------------------- validation

_HOP_FIELDS = {
    "id", "in_if", "out_if", "delay_us", "jitter_us", "loss", "limit", "compensation_us",
}
_REQUIRED = ("id", "in_if", "out_if", "delay_us")


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _check_ifname(name: str, where: str) -> None:
    if not isinstance(name, str) or not name:
        raise DelayLineError(f"{where}: interface name must be a non-empty string, got {name!r}")
    if len(name.encode()) > 15:
        raise DelayLineError(
            f"{where}: interface name {name!r} is longer than 15 bytes (Linux IFNAMSIZ)")
    if any(c in name for c in "/: \t\n\x00") or name in (".", ".."):
        raise DelayLineError(f"{where}: interface name {name!r} contains a forbidden character")


def _validate_hop(i: int, h) -> Hop:
    label = f"hop #{i}"
    if not isinstance(h, dict):
        raise DelayLineError(f"{label}: must be an object, got {type(h).__name__}")
    if isinstance(h.get("id"), str) and h["id"]:
        label = f"hop #{i} ({h['id']!r})"
    for f in _REQUIRED:
        if f not in h:
            raise DelayLineError(f"{label}: missing required field '{f}'")
    unknown = set(h) - _HOP_FIELDS
    if unknown:
        raise DelayLineError(
            f"{label}: unknown field(s) {sorted(unknown)}; allowed: {sorted(_HOP_FIELDS)}")
    if not isinstance(h["id"], str) or not h["id"].strip():
        raise DelayLineError(f"{label}: field 'id' must be a non-empty string")
    _check_ifname(h["in_if"], f"{label} field 'in_if'")
    _check_ifname(h["out_if"], f"{label} field 'out_if'")
    if h["in_if"] == h["out_if"]:
        raise DelayLineError(f"{label}: 'in_if' and 'out_if' are both {h['in_if']!r}")
    vals = {}
    for f, default, lo, hi in (
        ("delay_us", None, 0, MAX_DELAY_US),
        ("jitter_us", 0, 0, MAX_DELAY_US),
        ("compensation_us", 0, 0, MAX_DELAY_US),
        ("loss", 0.0, 0.0, 1.0),
    ):
        v = h.get(f, default)
        if not _is_number(v):
            raise DelayLineError(f"{label}: field '{f}' must be a number, got {v!r}")
        if not math.isfinite(v):
            raise DelayLineError(f"{label}: field '{f}' must be finite, got {v!r}")
        if not lo <= v <= hi:
            raise DelayLineError(f"{label}: field '{f}'={v!r} outside [{lo}, {hi}]")
        vals[f] = v
    limit = h.get("limit", 1000)
    if not isinstance(limit, int) or isinstance(limit, bool):
        raise DelayLineError(f"{label}: field 'limit' must be an integer, got {limit!r}")
    if not 1 <= limit <= MAX_LIMIT:
        raise DelayLineError(f"{label}: field 'limit'={limit} outside [1, {MAX_LIMIT}]")
    return Hop(id=h["id"], in_if=h["in_if"], out_if=h["out_if"], delay_us=vals["delay_us"],
               jitter_us=vals["jitter_us"], loss=float(vals["loss"]), limit=limit,
               compensation_us=vals["compensation_us"])


def validate_hops(hops) -> list[Hop]:
    """Validate a list of hop dicts (or :class:`Hop`) and the cross-hop rules."""
    if not isinstance(hops, list) or not hops:
        raise DelayLineError("field 'hops' must be a non-empty list")
    out = [_validate_hop(i, h.to_json() if isinstance(h, Hop) else h) for i, h in enumerate(hops)]
    seen_id: dict[str, int] = {}
    seen_in: dict[str, str] = {}
    seen_out: dict[str, str] = {}
    for i, h in enumerate(out):
        if h.id in seen_id:
            raise DelayLineError(
                f"hop #{i} ({h.id!r}): duplicate hop id (also hop #{seen_id[h.id]})")
        seen_id[h.id] = i
        if h.in_if in seen_in:
            raise DelayLineError(
                f"hop #{i} ({h.id!r}): interface {h.in_if!r} is already 'in_if' of hop "
                f"{seen_in[h.in_if]!r}; each relay interface is read by exactly one hop")
        seen_in[h.in_if] = h.id
        if h.out_if in seen_out:
            raise DelayLineError(
                f"hop #{i} ({h.id!r}): interface {h.out_if!r} is already 'out_if' of hop "
                f"{seen_out[h.out_if]!r}; each relay interface is written by exactly one hop")
        seen_out[h.out_if] = h.id
    return out


def validate_config(obj) -> list[Hop]:
    """Validate a parsed config object; return its hops or raise :class:`DelayLineError`."""
    if not isinstance(obj, dict):
        raise DelayLineError(f"config must be a JSON object, got {type(obj).__name__}")
    if obj.get("format") != FORMAT:
        raise DelayLineError(f"config field 'format' must be {FORMAT!r}, got {obj.get('format')!r}")
    unknown = set(obj) - {"format", "seed", "stats_path", "ready_path", "hops", "rt_priority"}
    if unknown:
        raise DelayLineError(f"config: unknown field(s) {sorted(unknown)}")
    seed = obj.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise DelayLineError(f"config field 'seed' must be an integer, got {seed!r}")
    rt = obj.get("rt_priority", 0)
    if not isinstance(rt, int) or isinstance(rt, bool) or not 0 <= rt <= 99:
        raise DelayLineError(f"config field 'rt_priority' must be an integer 0-99 (0: no "
                             f"real-time scheduling), got {rt!r}")
    for f in ("stats_path", "ready_path"):
        v = obj.get(f)
        if not isinstance(v, str) or not v:
            raise DelayLineError(f"config field '{f}' must be a non-empty path string, got {v!r}")
        d = os.path.dirname(os.path.abspath(v))
        if not os.path.isdir(d):
            raise DelayLineError(f"config field '{f}': directory {d!r} does not exist")
    if "hops" not in obj:
        raise DelayLineError("config: missing required field 'hops'")
    return validate_hops(obj["hops"])


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


# --------------------------------------------------------------------------- worker split

def split_links(link_hops: list[tuple[Hop, Hop]], workers: int) -> list[list[Hop]]:
    """Distribute links over ``workers`` processes; both hops of a link stay together.

    Greedy balance by hop count (links processed in the given order, each to the
    currently lightest worker, ties to the lowest index).  Returns
    ``min(workers, len(link_hops))`` non-empty lists (an empty list if there are
    no links).  An element may also be a 1-tuple for a one-way link.
    """
    if not isinstance(workers, int) or workers < 1:
        raise DelayLineError(f"split_links: workers must be a positive integer, got {workers!r}")
    n = min(workers, len(link_hops))
    groups: list[list[Hop]] = [[] for _ in range(n)]
    for link in link_hops:
        k = min(range(n), key=lambda j: (len(groups[j]), j))
        groups[k].extend(link)
    return groups


# --------------------------------------------------------------------------- helpers

def _atomic_write(path: str, text: str) -> None:
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def set_timer_slack(ns: int = 1000) -> bool:
    """Set this process's timer slack (PR_SET_TIMERSLACK); False if unavailable."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_TIMERSLACK, ctypes.c_ulong(ns), 0, 0, 0) == 0
    except Exception:  # noqa: BLE001 - non-Linux or no libc: report, do not fail
        return False


def _percentiles(samples) -> dict:
    if not samples:
        return {"p50": None, "p99": None, "max": None, "samples": 0}
    s = sorted(samples)
    n = len(s)

    def pct(p):
        return round(s[min(n - 1, int(p * (n - 1) + 0.5))] * 1e6, 1)

    return {"p50": pct(0.50), "p99": pct(0.99), "max": round(s[-1] * 1e6, 1), "samples": n}


class _HopState:
    __slots__ = ("hop", "index", "q", "base", "jit", "loss", "limit", "rng_loss", "rng_jit",
                 "prev", "packets_in", "packets_out", "bytes_out", "dropped_loss",
                 "dropped_queue", "dropped_trunc", "send_errors", "max_queue", "late",
                 "late_i", "late_n", "out_sock", "in_sock", "ts_fallbacks", "skipped_outgoing")

    def __init__(self, hop: Hop, index: int, seed: int):
        self.hop = hop
        self.index = index
        self.q: deque = deque()
        self.base = (hop.delay_us - hop.compensation_us) * 1e-6
        self.jit = hop.jitter_us * 1e-6
        self.loss = hop.loss
        self.limit = hop.limit
        self.rng_loss, self.rng_jit = hop_rngs(seed, index)
        self.prev = 0.0
        self.packets_in = self.packets_out = self.bytes_out = 0
        self.dropped_loss = self.dropped_queue = self.dropped_trunc = self.send_errors = 0
        self.max_queue = 0
        self.late = [0.0] * LATENESS_SAMPLES
        self.late_i = 0
        self.late_n = 0
        self.ts_fallbacks = 0
        self.skipped_outgoing = 0
        self.out_sock = None
        self.in_sock = None

    def stats(self) -> dict:
        return {
            "in_if": self.hop.in_if, "out_if": self.hop.out_if,
            "delay_us": self.hop.delay_us, "jitter_us": self.hop.jitter_us,
            "loss": self.hop.loss, "limit": self.hop.limit,
            "compensation_us": self.hop.compensation_us,
            "packets_in": self.packets_in, "packets_out": self.packets_out,
            "bytes_out": self.bytes_out, "dropped_loss": self.dropped_loss,
            "dropped_queue": self.dropped_queue, "dropped_trunc": self.dropped_trunc,
            "send_errors": self.send_errors, "max_queue": self.max_queue,
            "queued": len(self.q), "ts_fallbacks": self.ts_fallbacks,
            "skipped_outgoing": self.skipped_outgoing,
            "lateness_us": _percentiles(self.late[: min(self.late_n, LATENESS_SAMPLES)]),
        }


# --------------------------------------------------------------------------- the relay

class _Relay:
    def __init__(self, hops: list[Hop], seed: int, stats_path: str, ready_path: str):
        self.hops = hops
        self.seed = seed
        self.stats_path = stats_path
        self.ready_path = ready_path
        self.states = [_HopState(h, i, seed) for i, h in enumerate(hops)]
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
        import socket

        readers = {h.in_if for h in self.hops}
        for ifname in sorted({h.in_if for h in self.hops} | {h.out_if for h in self.hops}):
            try:
                socket.if_nametoindex(ifname)
            except OSError:
                users = [f"{h.id!r} ({'in_if' if h.in_if == ifname else 'out_if'})"
                         for h in self.hops if ifname in (h.in_if, h.out_if)]
                raise DelayLineError(
                    f"interface {ifname!r} of hop {', '.join(users)} does not exist in this "
                    f"network namespace; create the veth pair (and bring it up) before starting "
                    f"the delay line, or fix the name in the config") from None
            proto = ETH_P_ALL if ifname in readers else 0  # write-only: receive nothing
            try:
                s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(proto))
            except PermissionError:
                raise DelayLineError(
                    "opening an AF_PACKET socket needs root (CAP_NET_RAW); run as root") from None
            for opt, force, size in ((socket.SO_RCVBUF, SO_RCVBUFFORCE, SOCK_BUF),
                                     (socket.SO_SNDBUF, SO_SNDBUFFORCE, SOCK_BUF)):
                try:
                    s.setsockopt(socket.SOL_SOCKET, force, size)
                except OSError:
                    s.setsockopt(socket.SOL_SOCKET, opt, size)
            try:
                s.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
            except OSError:
                pass  # old kernel: the pkttype check below still filters our own frames
            s.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            try:
                s.bind((ifname, proto))
            except OSError as e:
                s.close()
                raise DelayLineError(
                    f"cannot bind an AF_PACKET socket to interface {ifname!r}: {e.strerror}; "
                    f"check that it exists in this namespace") from None
            s.setblocking(False)
            self.socks[ifname] = s
            if s.fileno() >= 1024:
                raise DelayLineError(
                    f"socket for {ifname!r} got fd {s.fileno()} >= 1024 (select() limit); "
                    f"split the hops over more delay-line processes (split_links)")
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
        _atomic_write(self.stats_path, json.dumps(self.stats(), indent=1, sort_keys=True) + "\n")

    # -- signals
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
                st.hop.compensation_us = new.compensation_us
                st.base = (st.hop.delay_us - new.compensation_us) * 1e-6
        self.reloads += 1

    def install_signals(self) -> None:
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
        import select

        states = self.states
        rlist = [st.in_sock for st in states] + [self._wake_r]
        by_sock = {st.in_sock: st for st in states}
        wake_r = self._wake_r
        buf = bytearray(FRAME_BUF)
        mv = memoryview(buf)
        bufs = [buf]
        ancsize = _socket_cmsg_space(16)
        ts_unpack = struct.Struct("=qq").unpack_from
        now_f = time.time
        sel = select.select
        MSG_TRUNC = 0x20
        late_max = LATENESS_SAMPLES
        sample_mask = SAMPLE_EVERY - 1

        # Hybrid sleep (see module doc): sleep in select() until ``margin`` before the
        # next release, then poll (select with timeout 0, still reading sockets) up to
        # the release.  ``est`` tracks how late select() wakes up on this machine;
        # the polling is capped by a CPU budget of SPIN_CPU_FRACTION of one core.
        spin_window = self.spin_us * 1e-6
        est = 50e-6
        budget = SPIN_BUDGET_MAX
        last_t = now_f()
        spin_frac = SPIN_CPU_FRACTION
        budget_max = SPIN_BUDGET_MAX
        spinning = False

        while self.running:
            # ---- release everything that is due
            now = now_f()
            if spinning:
                budget -= now - last_t
            else:
                budget += (now - last_t) * spin_frac
                if budget > budget_max:
                    budget = budget_max
            last_t = now
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
                            # lateness: time the frame enters the out interface - schedule
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
                if q:
                    d = q[0][0]
                    if nxt is None or d < nxt:
                        nxt = d
            if self.want_reload:
                self.want_reload = False
                self.reload_compensation()
            if self.want_stats:
                self.want_stats = False
                self.write_stats()
            # ---- sleep until the next release or a frame arrives
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
                    margin = est + 20e-6
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
                elif over > 500e-6:
                    over = 500e-6
                est += (over - est) * 0.125
            if not ready:
                continue
            t_wake = now_f()
            for s in ready:
                if s is wake_r:
                    try:
                        while os.read(wake_r, 512):
                            pass
                    except BlockingIOError:
                        pass
                    continue
                st = by_sock[s]
                q = st.q
                recv = s.recvmsg_into
                loss = st.loss
                rnd_loss = st.rng_loss.random
                jit = st.jit
                uni = st.rng_jit.uniform
                base = st.base
                limit = st.limit
                prev = st.prev
                n_in = 0
                for _ in range(BATCH):
                    try:
                        n, anc, flags, addr = recv(bufs, ancsize)
                    except BlockingIOError:
                        break
                    except OSError:
                        break
                    if addr[2] == PACKET_OUTGOING:
                        st.skipped_outgoing += 1
                        continue
                    n_in += 1
                    if flags & MSG_TRUNC:
                        st.dropped_trunc += 1
                        continue
                    if anc:
                        sec, nsec = ts_unpack(anc[0][2])
                        ts = sec + nsec * 1e-9
                        if ts < t_wake - TS_MAX_AGE:
                            ts = now_f()
                            st.ts_fallbacks += 1
                    else:
                        ts = now_f()
                        st.ts_fallbacks += 1
                    if loss and rnd_loss() < loss:
                        st.dropped_loss += 1
                        continue
                    if len(q) >= limit:
                        st.dropped_queue += 1
                        continue
                    rel = ts + base
                    if jit:
                        rel += uni(-jit, jit)
                    if rel < ts:
                        rel = ts
                    if rel < prev:
                        rel = prev
                    prev = rel
                    q.append((rel, mv[:n].tobytes()))
                st.prev = prev
                st.packets_in += n_in
                if len(q) > st.max_queue:
                    st.max_queue = len(q)

    # -- lifecycle
    def set_realtime(self, priority: int) -> None:
        """SCHED_FIFO: a relay that wakes behind a busy thread (OVS's PMD busy-polls a core)
        waits up to a scheduler slice, milliseconds. Measured on the backbone: RTT minus pair
        median p90/p99 0.6/6.7 ms without, 0.14/0.4 ms with. The kernel's RT throttling
        (sched_rt_runtime_us) keeps a saturated relay from locking a core."""
        if priority <= 0:
            self.realtime = "off"
            return
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))
            self.realtime = f"SCHED_FIFO {priority}"
        except (OSError, AttributeError) as e:
            self.realtime = f"not available: {e}"

    def serve(self) -> None:
        self.timer_slack_set = set_timer_slack(1000)
        self.set_realtime(self.rt_priority)
        self.install_signals()
        self.open_sockets()
        _atomic_write(self.ready_path, json.dumps({"pid": os.getpid(), "at": time.time()}) + "\n")
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


def _socket_cmsg_space(n: int) -> int:
    import socket

    return socket.CMSG_SPACE(n)


# --------------------------------------------------------------------------- process wrapper

def _repo_root() -> str:
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class DelayLineProcess:
    """One delay-line OS process serving a set of hops."""

    def __init__(self, proc: subprocess.Popen, config_path: str, stats_path: str,
                 ready_path: str, log_path: str):
        self._proc = proc
        self.pid = proc.pid
        self.config_path = config_path
        self.stats_path = stats_path
        self.ready_path = ready_path
        self.log_path = log_path
        self._stopped = False

    @classmethod
    def start(cls, hops: list[Hop], run_dir: str, name: str, seed: int,
              python: str = sys.executable, ready_timeout: float = 5.0,
              netns: str | None = None, rt_priority: int = 0) -> DelayLineProcess:
        """Start one delay-line process; with `netns`, inside that named network namespace
        (`ip netns exec` execs in place, so the pid is the relay's own)."""
        hops = validate_hops(list(hops))
        os.makedirs(run_dir, exist_ok=True)
        base = os.path.join(run_dir, name)
        cfg = {"format": FORMAT, "seed": seed, "rt_priority": rt_priority,
               "stats_path": base + ".stats.json",
               "ready_path": base + ".ready", "hops": [h.to_json() for h in hops]}
        validate_config(cfg)
        for p in (cfg["ready_path"], cfg["stats_path"]):
            if os.path.exists(p):
                os.unlink(p)
        config_path = base + ".json"
        _atomic_write(config_path, json.dumps(cfg, indent=1) + "\n")
        log_path = base + ".log"
        env = dict(os.environ)
        env["PYTHONPATH"] = _repo_root() + (
            os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        with open(log_path, "ab") as log:
            prefix = ["ip", "netns", "exec", netns] if netns else []
            proc = subprocess.Popen(
                [*prefix, python, "-m", "emulation.delayline", config_path],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                start_new_session=True, env=env, cwd=_repo_root())
        self = cls(proc, config_path, cfg["stats_path"], cfg["ready_path"], log_path)
        deadline = time.monotonic() + ready_timeout
        while True:
            if os.path.exists(self.ready_path):
                return self
            rc = proc.poll()
            if rc is not None:
                raise DelayLineError(
                    f"delay line {name!r} exited with code {rc} before becoming ready; "
                    f"log {log_path}:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                self.stop()
                raise DelayLineError(
                    f"delay line {name!r} (pid {self.pid}) not ready after {ready_timeout} s; "
                    f"stopped it; log {log_path}:\n{self.log_tail()}")
            time.sleep(0.01)

    def set_compensation(self, compensation_us: float, timeout: float = 2.0) -> None:
        """Give every hop a new compensation (rewrite the config, SIGHUP, wait until the
        process reports it)."""
        with open(self.config_path) as f:
            cfg = json.load(f)
        for h in cfg["hops"]:
            h["compensation_us"] = compensation_us
        validate_config(cfg)
        _atomic_write(self.config_path, json.dumps(cfg, indent=1) + "\n")
        before = self.stats(refresh=True).get("reloads", 0)
        self._proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.stats(refresh=True).get("reloads", 0) > before:
                return
            time.sleep(0.02)
        raise DelayLineError(f"delay line pid {self.pid} did not take the new compensation")

    def log_tail(self, lines: int = 20) -> str:
        try:
            with open(self.log_path, errors="replace") as f:
                return "".join(f.readlines()[-lines:])
        except OSError:
            return "(no log)"

    def alive(self) -> bool:
        return self._proc.poll() is None

    def stop(self, timeout: float = 3.0) -> int | None:
        """SIGTERM, wait, then SIGKILL; idempotent; acts on this pid only."""
        if self._proc.poll() is None:
            try:
                self._proc.send_signal(signal.SIGTERM)
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._stopped = True
        return self._proc.returncode

    def stats(self, refresh: bool = True, timeout: float = 2.0) -> dict:
        """Read the stats file; if the process runs and ``refresh``, ask for fresh figures."""
        if refresh and self._proc.poll() is None:
            old = self._read_stats_or_none()
            old_seq = old.get("seq") if old else None
            self._proc.send_signal(signal.SIGUSR1)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                cur = self._read_stats_or_none()
                if cur is not None and cur.get("seq") != old_seq:
                    return cur
                time.sleep(0.01)
            raise DelayLineError(f"delay line pid {self.pid} did not write stats in {timeout} s")
        cur = self._read_stats_or_none()
        if cur is None:
            raise DelayLineError(f"no stats file {self.stats_path}; log:\n{self.log_tail()}")
        return cur

    def _read_stats_or_none(self) -> dict | None:
        try:
            with open(self.stats_path) as f:
                return json.load(f)
        except (OSError, ValueError):
            return None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


# --------------------------------------------------------------------------- CLI

def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1 or argv[0] in ("-h", "--help"):
        print("usage: python -m emulation.delayline CONFIG.json", file=sys.stderr)
        return 2
    path = argv[0]
    try:
        try:
            with open(path) as f:
                obj = json.load(f)
        except OSError as e:
            raise DelayLineError(f"cannot read config {path!r}: {e.strerror}") from None
        except ValueError as e:
            raise DelayLineError(f"config {path!r} is not valid JSON: {e}") from None
        hops = validate_config(obj)
        relay = _Relay(hops, obj.get("seed", 0), obj["stats_path"], obj["ready_path"])
        relay.config_path = path
        relay.rt_priority = obj.get("rt_priority", 0)
        try:
            relay.serve()
        except DelayLineError:
            relay.close()
            raise
    except DelayLineError as e:
        print(f"delayline: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
