"""Wire format of the one-way delay probe (probes.owd): pure encode/decode functions.

Every message starts with the same 40-byte header (network byte order)::

    magic  4s  b"EWOD"
    ver    u8  1
    kind   u8  1 probe (sender -> reflector)   2 reply (reflector -> sender)
               3 report request (sender -> reflector)   4 report (reflector -> sender)
    flags  u16 bit0: warm-up probe (echoed, never counted); other bits must be 0
    session u32 the sender's random session id
    seq    u32 probe/reply: sequence number 0 .. count-1; report request/report: count
    t_tx_sender    u64 ns  sender's send time (CLOCK_REALTIME) — probe, reply
    t_rx_reflector u64 ns  reflector's kernel receive stamp (SO_TIMESTAMPNS) — reply only
    t_tx_reflector u64 ns  reflector's send time — reply only

A probe and its reply are padded (with anything) to the configured UDP payload size, so both
directions carry packets of the same size. A report request is the bare header. A report is
the header, then ``duplicates u32 | reordered u32`` (counted by the reflector in its arrival
order) and a bitmap of ceil(count / 8) bytes: bit (seq % 8), most significant first, of byte
seq // 8 is set when the reflector received probe `seq`; unused trailing bits are zero.

decode() raises ProbeFormatError, naming the problem, for anything else (truncated, garbage,
oversized, unknown kind or flags, inconsistent stamps or lengths).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

MAGIC = b"EWOD"
VERSION = 1
PROBE, REPLY, REPORT_REQUEST, REPORT = 1, 2, 3, 4
FLAG_WARMUP = 0x1
HEADER = struct.Struct("!4sBBHIIQQQ")
HEADER_LEN = HEADER.size  # 40
REPORT_FIXED = struct.Struct("!II")
MAX_PACKET = 65507  # largest UDP payload over IPv4
MAX_COUNT = 262_144  # probes per session: the report bitmap (32 KiB) fits one datagram
OFF_KIND = 5
OFF_FLAGS_LO = 7
OFF_SEQ = 12
OFF_T_TX_SENDER = 16
OFF_RX_STAMPS = 24  # t_rx_reflector, t_tx_reflector as "!QQ"
_KINDS = {PROBE: "probe", REPLY: "reply", REPORT_REQUEST: "report request", REPORT: "report"}
_U64 = 2**64


class ProbeFormatError(ValueError):
    """A probe message or probe output that is not what it should be (message says why)."""


@dataclass(frozen=True)
class Probe:
    """A probe (kind PROBE) or its reply (kind REPLY); `size` is the UDP payload length."""

    kind: int
    session: int
    seq: int
    t_tx_sender: int
    t_rx_reflector: int = 0
    t_tx_reflector: int = 0
    warmup: bool = False
    size: int = HEADER_LEN


@dataclass(frozen=True)
class ReportRequest:
    session: int
    count: int


@dataclass(frozen=True)
class Report:
    session: int
    count: int
    seen: frozenset[int]
    duplicates: int = 0
    reordered: int = 0


def _check_u32(name: str, v: int) -> None:
    if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < 2**32:
        raise ProbeFormatError(f"{name} = {v!r} does not fit an unsigned 32-bit field")


def _check_stamp(name: str, v: int) -> None:
    if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < _U64:
        raise ProbeFormatError(f"{name} = {v!r} is not a 64-bit nanosecond timestamp")


def encode_probe(p: Probe) -> bytes:
    if p.kind not in (PROBE, REPLY):
        raise ProbeFormatError(f"kind {p.kind!r} is not a probe or reply")
    if isinstance(p.size, bool) or not isinstance(p.size, int) \
            or not HEADER_LEN <= p.size <= MAX_PACKET:
        raise ProbeFormatError(f"size {p.size!r} must be {HEADER_LEN}..{MAX_PACKET} bytes")
    _check_u32("session", p.session)
    _check_u32("seq", p.seq)
    if p.seq >= MAX_COUNT:
        raise ProbeFormatError(f"seq {p.seq} >= {MAX_COUNT}, the most probes per session")
    for name in ("t_tx_sender", "t_rx_reflector", "t_tx_reflector"):
        _check_stamp(name, getattr(p, name))
    head = HEADER.pack(MAGIC, VERSION, p.kind, FLAG_WARMUP if p.warmup else 0, p.session,
                       p.seq, p.t_tx_sender, p.t_rx_reflector, p.t_tx_reflector)
    return head + bytes(p.size - HEADER_LEN)


def encode_report_request(session: int, count: int) -> bytes:
    _check_u32("session", session)
    if isinstance(count, bool) or not isinstance(count, int) or not 0 <= count <= MAX_COUNT:
        raise ProbeFormatError(f"count {count!r} must be 0..{MAX_COUNT}")
    return HEADER.pack(MAGIC, VERSION, REPORT_REQUEST, 0, session, count, 0, 0, 0)


def bitmap(seen, count: int) -> bytes:
    out = bytearray((count + 7) // 8)
    for s in seen:
        if not 0 <= s < count:
            raise ProbeFormatError(f"seen sequence {s} is outside 0..{count - 1}")
        out[s >> 3] |= 0x80 >> (s & 7)
    return bytes(out)


def bitmap_members(bits: bytes, count: int) -> frozenset[int]:
    if len(bits) != (count + 7) // 8:
        raise ProbeFormatError(f"bitmap has {len(bits)} bytes, {(count + 7) // 8} expected "
                               f"for {count} probes")
    seen = [i * 8 + j for i, b in enumerate(bits) if b for j in range(8) if b & (0x80 >> j)]
    if seen and seen[-1] >= count:
        raise ProbeFormatError(f"bitmap marks probe {seen[-1]} beyond count {count}")
    return frozenset(seen)


def encode_report(r: Report) -> bytes:
    _check_u32("session", r.session)
    _check_u32("duplicates", r.duplicates)
    _check_u32("reordered", r.reordered)
    if isinstance(r.count, bool) or not isinstance(r.count, int) \
            or not 0 <= r.count <= MAX_COUNT:
        raise ProbeFormatError(f"count {r.count!r} must be 0..{MAX_COUNT}")
    return (HEADER.pack(MAGIC, VERSION, REPORT, 0, r.session, r.count, 0, 0, 0)
            + REPORT_FIXED.pack(r.duplicates, r.reordered) + bitmap(r.seen, r.count))


def decode(payload: bytes) -> Probe | ReportRequest | Report:
    """Decode one UDP payload. Raises ProbeFormatError for anything malformed."""
    if not isinstance(payload, (bytes, bytearray, memoryview)):
        raise ProbeFormatError(f"payload must be bytes, not {type(payload).__name__}")
    n = len(payload)
    if n > MAX_PACKET:
        raise ProbeFormatError(f"payload of {n} bytes exceeds the {MAX_PACKET}-byte UDP limit")
    if n < HEADER_LEN:
        raise ProbeFormatError(f"truncated: {n} bytes, a probe message has at least "
                               f"{HEADER_LEN}")
    magic, ver, kind, flags, session, seq, t_tx, t_rx_r, t_tx_r = HEADER.unpack_from(payload)
    if magic != MAGIC:
        raise ProbeFormatError(f"bad magic {bytes(magic)!r} (expected {MAGIC!r}): not a probe "
                               "message")
    if ver != VERSION:
        raise ProbeFormatError(f"version {ver} is not supported (this is version {VERSION})")
    if kind not in _KINDS:
        raise ProbeFormatError(f"unknown message kind {kind}")
    if flags & ~FLAG_WARMUP or (flags and kind not in (PROBE, REPLY)):
        raise ProbeFormatError(f"unknown flags 0x{flags:04x} on a {_KINDS[kind]}")
    if kind in (PROBE, REPLY):
        if seq >= MAX_COUNT:
            raise ProbeFormatError(f"seq {seq} >= {MAX_COUNT}, the most probes per session")
        if t_tx == 0:
            raise ProbeFormatError(f"{_KINDS[kind]} {seq} has no sender timestamp")
        if kind == PROBE and (t_rx_r or t_tx_r):
            raise ProbeFormatError(f"probe {seq} already carries reflector timestamps")
        if kind == REPLY and not (t_rx_r and t_tx_r):
            raise ProbeFormatError(f"reply {seq} lacks the reflector timestamps")
        return Probe(kind, session, seq, t_tx, t_rx_r, t_tx_r, bool(flags & FLAG_WARMUP), n)
    if seq > MAX_COUNT:
        raise ProbeFormatError(f"count {seq} exceeds {MAX_COUNT}")
    if t_tx or t_rx_r or t_tx_r:
        raise ProbeFormatError(f"{_KINDS[kind]} carries timestamps; it must not")
    if kind == REPORT_REQUEST:
        if n != HEADER_LEN:
            raise ProbeFormatError(f"report request of {n} bytes, expected {HEADER_LEN}")
        return ReportRequest(session, seq)
    want = HEADER_LEN + REPORT_FIXED.size + (seq + 7) // 8
    if n != want:
        raise ProbeFormatError(f"report of {n} bytes, expected {want} for {seq} probes "
                               "(truncated or padded)")
    dups, reordered = REPORT_FIXED.unpack_from(payload, HEADER_LEN)
    seen = bitmap_members(bytes(payload[HEADER_LEN + REPORT_FIXED.size:]), seq)
    return Report(session, seq, seen, dups, reordered)
