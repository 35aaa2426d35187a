"""Discovery probes: LLDP-style frames (ethertype 0x88cc), pure encode/decode.

Layout: Ethernet(dst 01:80:c2:00:00:0e, ethertype 0x88cc), then LLDP TLVs
  chassis id (subtype 7 "locally assigned") = "dpid:<16 hex digits>"
  port id    (subtype 7 "locally assigned") = decimal port number
  TTL        = 120
  org-specific (OUI 02:ed:c0, subtype 1) = !d send time (controller clock) + run id (UTF-8)
  end
A probe sent out of (dpid1, port1) and punted as packet-in on (dpid2, in_port) shows
the directed link dpid1:port1 -> dpid2:in_port. Anything that does not parse exactly
raises :class:`ProbeError`; the caller counts it and drops the frame.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

LLDP_DST = bytes.fromhex("0180c200000e")
PROBE_SRC = bytes.fromhex("0e0000edc001")  # locally administered, outside host MACs
ETH_TYPE_LLDP = 0x88CC
OUI = bytes.fromhex("02edc0")
OUI_SUBTYPE = 1
TTL_SECONDS = 120
MAX_RUN_ID = 64

_T_END, _T_CHASSIS, _T_PORT, _T_TTL, _T_ORG = 0, 1, 2, 3, 127
_SUBTYPE_LOCAL = 7


class ProbeError(ValueError):
    """A frame with the LLDP ethertype that is not a well-formed probe of ours."""


@dataclass(frozen=True)
class Probe:
    dpid: int
    port: int
    sent_at: float
    run_id: str


def _tlv(t: int, value: bytes) -> bytes:
    if len(value) > 511:
        raise ValueError("TLV value too long")
    return struct.pack("!H", (t << 9) | len(value)) + value


def encode_probe(dpid: int, port: int, sent_at: float, run_id: str) -> bytes:
    rid = run_id.encode("utf-8")
    if len(rid) > MAX_RUN_ID:
        raise ValueError(f"run id longer than {MAX_RUN_ID} bytes")
    body = b"".join([
        _tlv(_T_CHASSIS, bytes([_SUBTYPE_LOCAL]) + b"dpid:%016x" % dpid),
        _tlv(_T_PORT, bytes([_SUBTYPE_LOCAL]) + b"%d" % port),
        _tlv(_T_TTL, struct.pack("!H", TTL_SECONDS)),
        _tlv(_T_ORG, OUI + bytes([OUI_SUBTYPE]) + struct.pack("!d", sent_at) + rid),
        _tlv(_T_END, b""),
    ])
    return LLDP_DST + PROBE_SRC + struct.pack("!H", ETH_TYPE_LLDP) + body


def _tlvs(body: bytes) -> list[tuple[int, bytes]]:
    out = []
    off = 0
    while True:
        if off + 2 > len(body):
            raise ProbeError("truncated TLV header (no end TLV)")
        (hdr,) = struct.unpack_from("!H", body, off)
        t, n = hdr >> 9, hdr & 0x1FF
        off += 2
        if off + n > len(body):
            raise ProbeError(f"TLV type {t} length {n} runs past the frame")
        if t == _T_END:
            if n != 0:
                raise ProbeError("end TLV with non-zero length")
            return out
        out.append((t, body[off:off + n]))
        off += n


OFPP_MAX = 0xFFFFFF00  # highest physical port number in OpenFlow 1.3


def decode_probe(frame: bytes) -> Probe:
    """Parse a probe frame; raises :class:`ProbeError` on anything unexpected."""
    if len(frame) < 14:
        raise ProbeError("frame shorter than an Ethernet header")
    (eth_type,) = struct.unpack_from("!H", frame, 12)
    if eth_type != ETH_TYPE_LLDP:
        raise ProbeError(f"ethertype 0x{eth_type:04x} is not LLDP")
    tlvs = _tlvs(frame[14:])
    if len(tlvs) < 4 or [t for t, _ in tlvs[:3]] != [_T_CHASSIS, _T_PORT, _T_TTL]:
        raise ProbeError("expected chassis id, port id, TTL and org TLVs in that order")
    chassis, port_v = tlvs[0][1], tlvs[1][1]
    if chassis[:1] != bytes([_SUBTYPE_LOCAL]) or not chassis[1:].startswith(b"dpid:"):
        raise ProbeError("chassis id is not ours")
    hexpart = chassis[6:]
    if len(hexpart) != 16 or not all(c in b"0123456789abcdef" for c in hexpart):
        raise ProbeError("chassis id dpid is not 16 lower-case hex digits")
    if port_v[:1] != bytes([_SUBTYPE_LOCAL]) or not port_v[1:].isdigit() or len(port_v) > 11:
        raise ProbeError("port id is not a decimal port number")
    port = int(port_v[1:])
    org = [v for t, v in tlvs[3:] if t == _T_ORG and v[:4] == OUI + bytes([OUI_SUBTYPE])]
    if len(org) != 1 or len(org[0]) < 12:
        raise ProbeError("missing or short timestamp TLV")
    (sent_at,) = struct.unpack_from("!d", org[0], 4)
    try:
        run_id = org[0][12:].decode("utf-8")
    except UnicodeDecodeError:
        raise ProbeError("run id is not UTF-8") from None
    dpid = int(hexpart, 16)
    if dpid == 0 or port == 0:
        raise ProbeError("dpid or port is zero")
    if port > OFPP_MAX:
        raise ProbeError(f"port {port} is a reserved OpenFlow port, not a physical one")
    return Probe(dpid=dpid, port=port, sent_at=sent_at, run_id=run_id)
