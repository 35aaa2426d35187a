"""The constant-rate stream probe's two programs (see probes.stream), its wire format and its
record-file format. Standard library only: they run in Mininet host namespaces.

Packet (UDP payload, network byte order, padded with zeros to --size bytes)::

    magic b"EWST" | ver u8 = 1 | flags u8 (bit0: warm-up) | reserved u16 = 0 |
    session u32 | seq u32 | tx_ns u64 (CLOCK_REALTIME, taken just before send())

Warm-up packets (flag set, their own sequence numbers) prime ARP, the controller's flow rules
and the delay line before the counted stream starts; the receiver only counts them.

Record file (written once, atomically, when the receiver stops; little-endian)::

    header  "<8sIIIIIIIIqq": magic b"EWSTREC1", session (0: any), n records, warm-up
            packets, foreign-session packets, malformed packets, receive-stamp fallbacks,
            kernel socket drops (SO_RXQ_OVFL), receive buffer bytes, start_ns, end_ns
    seq     n x u32   \\
    tx_ns   n x i64    > in arrival order; rx_ns is the kernel stamp (SO_TIMESTAMPNS)
    rx_ns   n x i64   /

read_records() checks the magic and that the length is exactly header + 20 n bytes.
"""

from __future__ import annotations

import gc
import json
import os
import select
import signal
import socket
import struct
import sys
import time
from array import array
from dataclasses import dataclass

MAGIC = b"EWST"
VERSION = 1
FLAG_WARMUP = 0x1
HEADER = struct.Struct("!4sBBHIIQ")
HEADER_LEN = HEADER.size  # 24
MAX_SIZE = 1472  # one unfragmented frame on a 1500-byte MTU
MAX_RATE = 100_000
MAX_DURATION_S = 3600.0
MAX_WARMUP_S = 10.0
FILE_MAGIC = b"EWSTREC1"
FILE_HEAD = struct.Struct("<8sIIIIIIIIqq")
RECORD_BYTES = 4 + 8 + 8
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
SO_RXQ_OVFL = getattr(socket, "SO_RXQ_OVFL", 40)
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)
RCVBUF = 16 << 20
_TS = struct.Struct("@qq")
_U32 = struct.Struct("@I")
_CMSG = socket.CMSG_SPACE(_TS.size) + socket.CMSG_SPACE(4)
_SEQ_TX = struct.Struct("!IQ")


class StreamFormatError(ValueError):
    """A stream packet or record file that is not what it should be (message says why)."""


class _Stop(Exception):
    pass


def _raise_stop(signum, frame):
    raise _Stop()


def encode_packet(session: int, seq: int, tx_ns: int, size: int = 64,
                  warmup: bool = False) -> bytes:
    if not HEADER_LEN <= size <= MAX_SIZE:
        raise StreamFormatError(f"size {size} must be {HEADER_LEN}..{MAX_SIZE} bytes")
    return HEADER.pack(MAGIC, VERSION, FLAG_WARMUP if warmup else 0, 0, session, seq,
                       tx_ns) + bytes(size - HEADER_LEN)


def decode_packet(data: bytes) -> tuple[int, int, int, bool]:
    """(session, seq, tx_ns, warmup) of one payload; StreamFormatError if malformed."""
    if len(data) < HEADER_LEN:
        raise StreamFormatError(f"truncated: {len(data)} bytes, a stream packet has at least "
                                f"{HEADER_LEN}")
    magic, ver, flags, _res, session, seq, tx = HEADER.unpack_from(data)
    if magic != MAGIC or ver != VERSION or flags & ~FLAG_WARMUP:
        raise StreamFormatError(f"not a stream packet (magic {bytes(magic)!r}, version {ver}, "
                                f"flags 0x{flags:02x})")
    return session, seq, tx, bool(flags & FLAG_WARMUP)


def check_options(rate_pps: float, duration_s: float, size: int, warmup_s: float) -> int:
    """Validate sender options; returns the number of counted packets."""
    if not 1 <= rate_pps <= MAX_RATE:
        raise ValueError(f"rate {rate_pps} pkt/s must be 1..{MAX_RATE}")
    if not 0 < duration_s <= MAX_DURATION_S:
        raise ValueError(f"duration {duration_s} s must be in (0, {MAX_DURATION_S:g}]")
    if not HEADER_LEN <= size <= MAX_SIZE:
        raise ValueError(f"size {size} must be {HEADER_LEN}..{MAX_SIZE} bytes of UDP payload")
    if not 0 <= warmup_s <= MAX_WARMUP_S:
        raise ValueError(f"warm-up {warmup_s} s must be 0..{MAX_WARMUP_S:g}")
    count = round(rate_pps * duration_s)
    if count < 1:
        raise ValueError(f"{rate_pps} pkt/s for {duration_s} s is less than one packet")
    return count


def _set_timer_slack(ns: int = 1000) -> None:
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(29, ctypes.c_ulong(ns), 0, 0, 0)
    except Exception:  # noqa: BLE001 - not Linux: sleep with the default slack
        pass


# ------------------------------------------------------------------------------ receiver

@dataclass
class RecordFile:
    session: int
    seq: array  # u32, arrival order
    tx_ns: array  # i64
    rx_ns: array  # i64
    warmup: int = 0
    foreign: int = 0
    bad: int = 0
    ts_fallbacks: int = 0
    socket_drops: int = 0
    rcvbuf: int = 0
    start_ns: int = 0
    end_ns: int = 0

    def __len__(self) -> int:
        return len(self.seq)

    def records(self):
        """(seq, tx_ns, rx_ns) in arrival order."""
        return zip(self.seq, self.tx_ns, self.rx_ns)

    def counters(self) -> dict:
        return {"records": len(self.seq), "warmup": self.warmup, "foreign": self.foreign,
                "bad": self.bad, "ts_fallbacks": self.ts_fallbacks,
                "socket_drops": self.socket_drops, "rcvbuf": self.rcvbuf}


def _le(a: array) -> bytes:
    if sys.byteorder != "little":
        a = array(a.typecode, a)
        a.byteswap()
    return a.tobytes()


def write_records(path: str, rec: RecordFile) -> None:
    """Write the record file atomically (a reader never sees a half-written file)."""
    n = len(rec.seq)
    if not len(rec.tx_ns) == len(rec.rx_ns) == n:
        raise ValueError("seq, tx_ns and rx_ns must have the same length")
    tmp = f"{path}.part"
    with open(tmp, "wb") as f:
        f.write(FILE_HEAD.pack(FILE_MAGIC, rec.session, n, rec.warmup, rec.foreign, rec.bad,
                               rec.ts_fallbacks, rec.socket_drops, rec.rcvbuf, rec.start_ns,
                               rec.end_ns))
        for a in (rec.seq, rec.tx_ns, rec.rx_ns):
            f.write(_le(a))
    os.replace(tmp, path)


def parse_records(data: bytes, name: str = "record file") -> RecordFile:
    """Decode a record file's bytes; StreamFormatError naming the problem."""
    if len(data) < FILE_HEAD.size:
        raise StreamFormatError(f"{name} is truncated: {len(data)} bytes, the header alone is "
                                f"{FILE_HEAD.size} (the receiver was killed while writing?)")
    (magic, session, n, warm, foreign, bad, fb, drops, rcvbuf, t_start,
     t_end) = FILE_HEAD.unpack_from(data)
    if magic != FILE_MAGIC:
        raise StreamFormatError(f"{name} is not a stream record file (magic {magic!r}, "
                                f"expected {FILE_MAGIC!r})")
    want = FILE_HEAD.size + n * RECORD_BYTES
    if len(data) != want:
        raise StreamFormatError(f"{name} is truncated or corrupt: {len(data)} bytes, the header "
                                f"announces {n} records ({want} bytes)")
    arrays = []
    off = FILE_HEAD.size
    for code, width in (("I", 4), ("q", 8), ("q", 8)):
        a = array(code)
        if a.itemsize != width:
            raise StreamFormatError(f"this platform's array('{code}') is {a.itemsize} bytes")
        a.frombytes(data[off:off + n * width])
        if sys.byteorder != "little":
            a.byteswap()
        arrays.append(a)
        off += n * width
    return RecordFile(session, *arrays, warmup=warm, foreign=foreign, bad=bad,
                      ts_fallbacks=fb, socket_drops=drops, rcvbuf=rcvbuf, start_ns=t_start,
                      end_ns=t_end)


def read_records(path: str) -> RecordFile:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise StreamFormatError(f"record file {path} does not exist: the receiver did not "
                                "stop cleanly (it writes the file on SIGTERM or lifetime)") \
            from None
    return parse_records(data, f"record file {path}")


def _open_rx(port: int) -> tuple[socket.socket, int]:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RCVBUF)  # root: past rmem_max
    except OSError:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
    s.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    try:
        s.setsockopt(socket.SOL_SOCKET, SO_RXQ_OVFL, 1)
    except OSError:
        pass
    s.bind(("0.0.0.0", port))
    s.setblocking(False)
    return s, s.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)


def receive(port: int, out: str, lifetime_s: float | None = None, session: int = 0,
            stdout=sys.stdout) -> dict:
    """Record every stream datagram until SIGTERM/SIGINT or `lifetime_s`, then write `out`.
    The ready marker `out + ".ready"` (JSON: port, pid, rcvbuf) appears once bound."""
    signal.signal(signal.SIGTERM, _raise_stop)
    signal.signal(signal.SIGINT, _raise_stop)
    s, rcvbuf = _open_rx(port)
    rec = RecordFile(session, array("I"), array("q"), array("q"), rcvbuf=rcvbuf,
                     start_ns=time.time_ns())
    seqs, txs, rxs = rec.seq, rec.tx_ns, rec.rx_ns
    counts = [0, 0, 0, 0, 0]  # warm-up, foreign, bad, stamp fallbacks, socket drops
    end = time.monotonic() + lifetime_s if lifetime_s else None
    unpack, ts_unpack, u32 = HEADER.unpack_from, _TS.unpack_from, _U32.unpack_from
    recvmsg = s.recvmsg
    with open(out + ".ready.part", "w") as f:
        json.dump({"ready": True, "port": s.getsockname()[1], "pid": os.getpid(),
                   "rcvbuf": rcvbuf}, f)
    os.replace(out + ".ready.part", out + ".ready")
    gc.disable()  # a collector pause here would only delay reads; the arrays hold no cycles
    try:
        while end is None or time.monotonic() < end:
            wait = 1.0 if end is None else max(0.0, min(1.0, end - time.monotonic()))
            if not select.select([s], [], [], wait)[0]:
                continue
            while True:
                try:
                    data, anc, _flags, _addr = recvmsg(HEADER_LEN, _CMSG)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError:
                    counts[2] += 1
                    continue
                rx = 0
                for level, typ, val in anc:
                    if level == socket.SOL_SOCKET:
                        if typ == SO_TIMESTAMPNS:
                            sec, nsec = ts_unpack(val)
                            rx = sec * 1_000_000_000 + nsec
                        elif typ == SO_RXQ_OVFL and len(val) >= 4:
                            counts[4] = u32(val)[0]
                if len(data) < HEADER_LEN:
                    counts[2] += 1
                    continue
                magic, ver, flags, _r, sess, seq, tx = unpack(data)
                if magic != MAGIC or ver != VERSION:
                    counts[2] += 1
                    continue
                if session and sess != session:
                    counts[1] += 1
                    continue
                if flags & FLAG_WARMUP:
                    counts[0] += 1
                    continue
                if rx == 0:
                    rx = time.time_ns()
                    counts[3] += 1
                seqs.append(seq)
                txs.append(tx)
                rxs.append(rx)
    except _Stop:
        pass
    finally:
        gc.enable()
        s.close()
        n = min(len(seqs), len(txs), len(rxs))  # SIGTERM may land between two appends
        for arr in (seqs, txs, rxs):
            del arr[n:]
        (rec.warmup, rec.foreign, rec.bad, rec.ts_fallbacks, rec.socket_drops) = counts
        rec.end_ns = time.time_ns()
        write_records(out, rec)
    summary = {"format": "edwc-stream-recv/1", "out": out, **rec.counters()}
    print(json.dumps(summary), file=stdout, flush=True)
    return summary


# -------------------------------------------------------------------------------- sender

def send(dst: str, port: int, rate_pps: float, duration_s: float, size: int = 64,
         start_at: float | None = None, warmup_s: float = 0.2, session: int = 0,
         stdout=sys.stdout) -> dict:
    """Send round(rate * duration) packets on an absolute schedule: packet k leaves at
    start + k / rate (never drifting: a late send is followed by on-time ones, catching up).
    Prints a ready line (with the start time) once the socket is open, warms up until the
    start, and returns (and prints as one JSON line) the summary. SIGTERM ends it early."""
    count = check_options(rate_pps, duration_s, size, warmup_s)
    stats = {"send_errors": 0, "icmp_errors": 0}
    stop: list[int] = []  # set by SIGTERM/SIGINT; checked between sends, never mid-send

    def on_signal(signum, frame) -> None:
        stop.append(signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    _set_timer_slack()
    if not session:
        session = int.from_bytes(os.urandom(4), "big") or 1
    interval = 1.0 / rate_pps
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.connect((dst, port))
    now_wall = time.time()
    start_wall = start_at if start_at is not None else now_wall + warmup_s
    start_ns = int(start_wall * 1e9)
    print(json.dumps({"ready": True, "pid": os.getpid(), "session": session,
                      "start_at_ns": start_ns}), file=stdout, flush=True)
    buf = bytearray(encode_packet(session, 0, 1, size))
    pack_into = _SEQ_TX.pack_into
    sock_send, time_ns, mono, sleep = s.send, time.time_ns, time.monotonic, time.sleep

    def fire(seq: int, warm: bool) -> int:
        buf[5] = FLAG_WARMUP if warm else 0
        t = time_ns()
        pack_into(buf, 12, seq, t)
        try:
            sock_send(buf)
        except ConnectionRefusedError:  # ICMP port unreachable for an earlier packet
            stats["icmp_errors"] += 1
        except OSError:
            stats["send_errors"] += 1
        return t

    lags = array("d")
    sent = warm = 0
    first_tx = last_tx = None
    late_start = None
    def sleep_until(when: float) -> bool:
        while not stop and (left := when - mono()) > 0:
            sleep(min(left, 0.2))
        return not stop

    # the schedule runs on the monotonic clock, anchored to the wall-clock start
    t0 = mono() + (start_wall - time.time())
    gc.disable()  # no collector pause between a send stamp and the send
    try:
        # warm-up at the stream rate during the last warmup_s before the start
        n_warm = max(0, min(round(warmup_s * rate_pps), int((t0 - mono()) / interval + 0.5)))
        for k in range(n_warm):
            if not sleep_until(t0 - (n_warm - k) * interval):
                break
            fire(k, True)
            warm += 1
        if sleep_until(t0):
            late_start = max(0.0, mono() - t0)
        for seq in range(count):
            due = t0 + seq * interval
            if not sleep_until(due):
                break
            lags.append(mono() - due)
            last_tx = fire(seq, False)
            if first_tx is None:
                first_tx = last_tx
            sent += 1
    finally:
        gc.enable()
        s.close()
    stopped = bool(stop)
    srt = sorted(lags)
    pick = (lambda q: srt[min(len(srt) - 1, int(q * (len(srt) - 1) + 0.5))] * 1e3) \
        if srt else (lambda q: None)
    summary = {"format": "edwc-stream-send/1", "dst": dst, "port": port, "session": session,
               "rate_pps": rate_pps, "count": count, "sent": sent, "size": size,
               "warmup_sent": warm, "start_at_ns": start_ns, "first_tx_ns": first_tx,
               "last_tx_ns": last_tx, "stopped_early": stopped or sent < count,
               "late_start_ms": None if late_start is None else late_start * 1e3,
               "send_lag_ms": {"p50": pick(0.5), "p99": pick(0.99), "max": pick(1.0),
                               "over_1ms": sum(1 for x in srt if x > 1e-3)},
               "errors": stats}
    print(json.dumps(summary), file=stdout, flush=True)
    return summary
