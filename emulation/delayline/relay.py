"""The relay process: AF_PACKET sockets, receive timestamps, the release loop, stats."""

from __future__ import annotations

import gc
import json
import os
import signal
import struct
import sys
import time
from collections import deque

from emulation.delayline.config import DelayLineError, Hop, atomic_write, validate_config
from emulation.delayline.model import HopModel

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
    __slots__ = ("hop", "index", "model", "q", "packets_in", "packets_out", "bytes_out",
                 "dropped_trunc", "send_errors", "max_queue", "late", "late_i", "late_n",
                 "out_sock", "in_sock", "ts_fallbacks", "skipped_outgoing")

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

    def stats(self) -> dict:
        return {
            "in_if": self.hop.in_if, "out_if": self.hop.out_if,
            "delay_us": self.hop.delay_us, "jitter_us": self.hop.jitter_us,
            "loss": self.hop.loss, "limit": self.hop.limit,
            "compensation_us": self.hop.compensation_us,
            "packets_in": self.packets_in, "packets_out": self.packets_out,
            "bytes_out": self.bytes_out, "dropped_loss": self.model.dropped_loss,
            "dropped_queue": self.model.dropped_queue, "dropped_trunc": self.dropped_trunc,
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
        atomic_write(self.stats_path, json.dumps(self.stats(), indent=1, sort_keys=True) + "\n")

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
                st.model.set_compensation(new.compensation_us)
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
                append = q.append
                admit = st.model.admit
                recv = s.recvmsg_into
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
                    rel = admit(ts)
                    if rel is not None:
                        append((rel, mv[:n].tobytes()))
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


def _socket_cmsg_space(n: int) -> int:
    import socket

    return socket.CMSG_SPACE(n)

