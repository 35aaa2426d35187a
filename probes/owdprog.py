"""The one-way delay probe's two programs: the reflector and the sender (see probes.owd).

Standard library only, so they run under any python3 inside a Mininet host's namespace.
Receive stamps are the kernel's (SO_TIMESTAMPNS, CLOCK_REALTIME, taken when the packet
reaches the socket layer); send stamps are time.time_ns() immediately before send(). The
sender keeps every reply it gets, raw, and the reflector's report; probes.owd.parse_output
turns that into statistics, so all arithmetic is in pure, tested code.
"""

from __future__ import annotations

import base64
import gc
import json
import os
import random
import select
import signal
import socket
import struct
import sys
import time
from collections import OrderedDict

from probes.owdwire import (
    FLAG_WARMUP,
    HEADER_LEN,
    MAX_COUNT,
    OFF_FLAGS_LO,
    OFF_KIND,
    OFF_RX_STAMPS,
    OFF_SEQ,
    OFF_T_TX_SENDER,
    PROBE,
    REPLY,
    Probe,
    ProbeFormatError,
    Report,
    ReportRequest,
    bitmap,
    decode,
    encode_probe,
    encode_report,
    encode_report_request,
)

SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
DEFAULT_PORT = 6500
MAX_SIZE = 1472  # one unfragmented frame on a 1500-byte MTU
MIN_INTERVAL_S = 0.0001
REPORT_TRIES = 10
MAX_SESSIONS = 1024
_TS = struct.Struct("@qq")  # struct timespec
_CMSG = socket.CMSG_SPACE(_TS.size)
_QQ = struct.Struct("!QQ")
_I = struct.Struct("!I")
_Q = struct.Struct("!Q")


class _Stop(Exception):
    pass



def _messages(s, stats: dict):
    """Decoded messages waiting on socket ``s`` with their bytes, receive time and sender;
    packets that do not decode are counted in ``stats["bad_packets"]`` and skipped."""
    while (got := _recv(s, stats)) is not None:
        data, t_rx, addr = got
        if addr is None:
            continue
        try:
            msg = decode(data)
        except ProbeFormatError:
            stats["bad_packets"] += 1
            continue
        yield msg, data, t_rx, addr

def _raise_stop(signum, frame):
    raise _Stop()


def _set_timer_slack(ns: int = 1000) -> bool:
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True).prctl(29, ctypes.c_ulong(ns), 0, 0, 0) == 0
    except Exception:  # noqa: BLE001 - not Linux: schedule with the default slack
        return False


def _scheduling(priority: int) -> str:
    """SCHED_FIFO only on request: the delay line runs at SCHED_FIFO 10, and probes at the
    same or higher priority would take the CPU from the relays they measure."""
    if priority <= 0:
        return "normal"
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))
        return f"SCHED_FIFO {priority}"
    except (OSError, AttributeError) as e:
        return f"SCHED_FIFO unavailable ({e})"


def _open_socket(bind_port: int = 0) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    s.bind(("0.0.0.0", bind_port))
    s.setblocking(False)
    return s


def _recv(s: socket.socket, stats: dict):
    """One datagram: (payload, kernel receive time ns, address), or None when none waits."""
    try:
        data, anc, flags, addr = s.recvmsg(65535, _CMSG)
    except (BlockingIOError, InterruptedError):
        return None
    except ConnectionRefusedError:  # ICMP port unreachable for an earlier send
        stats["icmp_errors"] += 1
        return b"", 0, None
    t = 0
    for level, typ, val in anc:
        if level == socket.SOL_SOCKET and typ == SO_TIMESTAMPNS and len(val) >= _TS.size:
            sec, nsec = _TS.unpack_from(val)
            t = sec * 1_000_000_000 + nsec
    if t == 0:
        t = time.time_ns()
        stats["ts_fallbacks"] += 1
    if flags & socket.MSG_TRUNC:
        stats["bad_packets"] += 1
        return b"", t, None
    return data, t, addr


# ----------------------------------------------------------------------------- reflector

class _Session:
    __slots__ = ("seen", "top", "duplicates", "reordered")

    def __init__(self) -> None:
        self.seen: set[int] = set()
        self.top = -1
        self.duplicates = 0
        self.reordered = 0

    def add(self, seq: int) -> None:
        if seq in self.seen:
            self.duplicates += 1
            return
        self.seen.add(seq)
        if seq < self.top:
            self.reordered += 1
        else:
            self.top = seq


def reflect(port: int, lifetime_s: float | None = None, rt_priority: int = 0,
            out=sys.stdout) -> dict:
    """Echo probes with the reflector's stamps; answer report requests. Runs until SIGTERM,
    SIGINT or `lifetime_s`; returns (and prints as one JSON line) its counters."""
    stats = {"bad_packets": 0, "ts_fallbacks": 0, "icmp_errors": 0, "probes": 0,
             "reports": 0, "sessions": 0}
    sched = _scheduling(rt_priority)
    signal.signal(signal.SIGTERM, _raise_stop)
    signal.signal(signal.SIGINT, _raise_stop)
    sessions: OrderedDict[tuple, _Session] = OrderedDict()
    end = time.monotonic() + lifetime_s if lifetime_s else None
    s = _open_socket(port)
    print(json.dumps({"ready": True, "port": s.getsockname()[1], "pid": os.getpid(),
                      "scheduling": sched}), file=out, flush=True)
    try:
        while end is None or time.monotonic() < end:
            wait = 1.0 if end is None else max(0.0, min(1.0, end - time.monotonic()))
            if not select.select([s], [], [], wait)[0]:
                continue
            for msg, data, t_rx, addr in _messages(s, stats):
                if isinstance(msg, Probe) and msg.kind == PROBE:
                    if not msg.warmup:
                        key = (addr, msg.session)
                        sess = sessions.get(key)
                        if sess is None:
                            sess = sessions[key] = _Session()
                            stats["sessions"] += 1
                            if len(sessions) > MAX_SESSIONS:
                                sessions.popitem(last=False)
                        sessions.move_to_end(key)
                        sess.add(msg.seq)
                        stats["probes"] += 1
                    reply = bytearray(data)
                    reply[OFF_KIND] = REPLY
                    _QQ.pack_into(reply, OFF_RX_STAMPS, t_rx, time.time_ns())
                    _sendto(s, reply, addr, stats)
                elif isinstance(msg, ReportRequest):
                    sess = sessions.get((addr, msg.session)) or _Session()
                    seen = {q for q in sess.seen if q < msg.count}
                    _sendto(s, encode_report(Report(msg.session, msg.count, frozenset(seen),
                                                    sess.duplicates, sess.reordered)),
                            addr, stats)
                    stats["reports"] += 1
                else:
                    stats["bad_packets"] += 1
    except _Stop:
        pass
    finally:
        s.close()
    print(json.dumps(stats), file=out, flush=True)
    return stats


def _sendto(s: socket.socket, data, addr, stats: dict) -> None:
    try:
        s.sendto(data, addr)
    except OSError:
        stats["send_errors"] = stats.get("send_errors", 0) + 1


# -------------------------------------------------------------------------------- sender

def schedule(count: int, interval_s: float, poisson: bool = False, seed: int | None = None
             ) -> list[float]:
    """Send offsets in seconds from the first probe: periodic, or Poisson (exponential gaps
    with mean `interval_s`, seeded)."""
    if not poisson:
        return [i * interval_s for i in range(count)]
    rng = random.Random(seed)
    t, out = 0.0, []
    for _ in range(count):
        out.append(t)
        t += rng.expovariate(1.0 / interval_s)
    return out


def send(dst: str, port: int, count: int, interval_s: float, size: int = 64, warmup: int = 2,
         timeout_s: float = 2.0, poisson: bool = False, seed: int | None = None,
         rt_priority: int = 0, start_at: float | None = None) -> dict:
    """Send `count` probes to a reflector and collect every reply; returns the raw output
    (format edwc-owd/1) that parse_output() turns into statistics. `start_at` (Unix
    seconds): begin the counted probes then, after the warm-up, so that senders started one
    after another still run at the same time."""
    check_options(count, interval_s, size, warmup, timeout_s)
    stats = {"bad_packets": 0, "ts_fallbacks": 0, "icmp_errors": 0, "send_errors": 0,
             "foreign_packets": 0}
    sched = _scheduling(rt_priority)
    _set_timer_slack()
    session = int.from_bytes(os.urandom(4), "big")
    s = _open_socket()
    s.connect((dst, port))
    buf = bytearray(encode_probe(Probe(PROBE, session, 0, 1, size=size)))
    replies: list[list[int]] = []
    report = None
    lags: list[float] = []

    def drain() -> None:
        nonlocal report
        for msg, _data, t_rx, _addr in _messages(s, stats):
            if getattr(msg, "session", None) != session:
                stats["foreign_packets"] += 1
            elif isinstance(msg, Probe) and msg.kind == REPLY:
                if not msg.warmup:
                    answered.add(msg.seq)
                    replies.append([msg.seq, msg.t_tx_sender, msg.t_rx_reflector,
                                    msg.t_tx_reflector, t_rx])
                else:
                    warm_seen.add(msg.seq)
            elif isinstance(msg, Report) and msg.count == count:
                report = msg
            else:
                stats["bad_packets"] += 1

    def wait_until(deadline: float, done=lambda: False) -> None:
        while not done():
            left = deadline - time.monotonic()
            if left <= 0:
                return
            if select.select([s], [], [], left)[0]:
                drain()

    def fire(seq: int, warm: bool) -> None:
        buf[OFF_FLAGS_LO] = FLAG_WARMUP if warm else 0
        _I.pack_into(buf, OFF_SEQ, seq)
        t = time.time_ns()
        _Q.pack_into(buf, OFF_T_TX_SENDER, t)
        try:
            s.send(buf)
        except ConnectionRefusedError:
            stats["icmp_errors"] += 1
        except OSError:
            stats["send_errors"] += 1

    warm_seen: set[int] = set()
    answered: set[int] = set()
    for i in range(warmup):
        fire(i, True)
        wait_until(time.monotonic() + interval_s)
    wait_until(time.monotonic() + timeout_s, lambda: len(warm_seen) >= min(warmup, 1))
    offsets = schedule(count, interval_s, poisson, seed)
    if start_at is not None:
        wait_until(time.monotonic() + max(0.0, start_at - time.time()))
    late_start = None if start_at is None else max(0.0, time.time() - start_at)
    t0 = time.monotonic()
    sent = 0
    try:
        gc.disable()  # no collector pause between a send stamp and the send
        for seq, off in enumerate(offsets):
            wait_until(t0 + off)
            lags.append(time.monotonic() - t0 - off)
            fire(seq, False)
            sent += 1
            if select.select([s], [], [], 0)[0]:
                drain()
        wait_until(time.monotonic() + timeout_s, lambda: len(answered) >= count)
        for _ in range(REPORT_TRIES):
            try:
                s.send(encode_report_request(session, count))
            except OSError:
                stats["send_errors"] += 1
            wait_until(time.monotonic() + min(timeout_s, 0.5), lambda: report is not None)
            if report is not None:
                break
    finally:
        gc.enable()
        s.close()
    lags.sort()
    return {"format": "edwc-owd/1", "dst": dst, "port": port, "session": session,
            "count": count, "sent": sent, "interval_s": interval_s,
            "schedule": "poisson" if poisson else "periodic", "seed": seed, "size": size,
            "warmup": warmup, "warmup_replies": len(warm_seen), "late_start_s": late_start,
            "clock": "CLOCK_REALTIME", "scheduling": sched,
            "send_lag_ms": {"p50": lags[len(lags) // 2] * 1e3 if lags else None,
                            "max": lags[-1] * 1e3 if lags else None},
            "errors": stats, "replies": replies,
            "report": None if report is None else {
                "count": report.count, "duplicates": report.duplicates,
                "reordered": report.reordered,
                "seen": base64.b64encode(bitmap(report.seen, report.count)).decode()}}


def check_options(count: int, interval_s: float, size: int, warmup: int, timeout_s: float
                  ) -> None:
    if not 1 <= count <= MAX_COUNT:
        raise ValueError(f"count {count} must be 1..{MAX_COUNT}")
    if not interval_s >= MIN_INTERVAL_S:
        raise ValueError(f"interval {interval_s} s is below {MIN_INTERVAL_S} s")
    if not HEADER_LEN <= size <= MAX_SIZE:
        raise ValueError(f"size {size} must be {HEADER_LEN}..{MAX_SIZE} bytes of UDP payload "
                         "(the probe header, up to one unfragmented 1500-byte frame)")
    if not 0 <= warmup <= 100:
        raise ValueError(f"warmup {warmup} must be 0..100 probes")
    if not 0 < timeout_s <= 60:
        raise ValueError(f"timeout {timeout_s} s must be in (0, 60]")
