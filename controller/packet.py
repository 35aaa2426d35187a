"""Defensive IPv4 parsing of punted frames, and the refusals sent back (pure, stdlib only).

The controller sees every new flow's first packet. It reads only the headers it needs, with
every length checked against the bytes actually present, so a malformed or hostile frame
(truncated headers, lying length fields, fuzzed bytes) costs a few microseconds and raises
:class:`PacketError`, never anything else. The error message starts with a short, stable kind
(one of :data:`ERROR_KINDS`, e.g. ``"truncated-ip: ..."``) usable as a counter name; see
:func:`error_kind`.

Semantics worth knowing:
- Ethernet II only, at most one 802.1Q tag; a second tag (0x8100/0x88a8/0x9100) is an error.
- Ethernet padding beyond the IPv4 total length is trimmed; a total length beyond the frame
  is an error. The IPv4 header checksum is not verified (OVS does not either, the receiving
  host drops such packets, and no decision here depends on it).
- A non-first fragment parses, with ports 0 and no TCP/ICMP fields (its bytes are not a
  header). A first fragment must hold the whole TCP header (RFC 1858 tiny fragments are
  rejected) and a UDP header; its UDP payload is then cut short, which is flagged.
- A UDP length beyond the bytes present is not an error: the payload is bounded by what the
  frame holds and ``payload_truncated`` is set (normal for a first fragment, hostile or
  broken otherwise: the caller decides). A UDP length below 8 is an error.
- The builders never answer an ICMP error, a TCP RST, a fragment other than the first (ICMP)
  or any fragment (RST: its segment length is unknown), nor anything to or from a
  non-unicast address (RFC 1122 3.2.2, RFC 1812 4.3.2.7).
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass
from socket import inet_ntoa

ETH_TYPE_IPV4 = 0x0800
ETH_TYPE_VLAN = 0x8100
_TAG_TYPES = (0x8100, 0x88A8, 0x9100)  # a second tag of any of these is "stacked"
PROTO_ICMP, PROTO_TCP, PROTO_UDP = 1, 6, 17
TCP_FIN, TCP_SYN, TCP_RST, TCP_PSH, TCP_ACK = 0x01, 0x02, 0x04, 0x08, 0x10
ICMP_ERROR_TYPES = frozenset({3, 4, 5, 11, 12})
ICMP_UNREACHABLE = 3
ICMP_ADMIN_PROHIBITED = 13
DEFAULT_TTL = 64
MAX_FRAME = 9216  # jumbo frame; anything longer is not from our data plane

ERROR_KINDS = (
    "bad-input", "oversize", "truncated-eth", "not-ipv4", "vlan-stacked", "truncated-ip",
    "bad-ip-version", "bad-ihl", "bad-ip-length", "truncated-tcp", "bad-tcp-offset",
    "truncated-udp", "bad-udp-length", "truncated-icmp",
    # builders only
    "bad-argument", "not-tcp", "fragment", "no-rst-for-rst", "no-icmp-for-icmp-error",
    "not-unicast",
)

_IP = struct.Struct("!BBHHHBBH4s4s")
_TCP = struct.Struct("!HHIIBB")
_UDP = struct.Struct("!HHH")
_TCP_RST = struct.Struct("!HHIIBBHHH")
_U16 = struct.Struct("!H")


class PacketError(ValueError):
    """A frame (or builder argument) that is not what it must be; message starts with a kind."""


def error_kind(err: PacketError) -> str:
    """The stable kind of an error (``"truncated-ip"``), for counters."""
    return str(err).split(":", 1)[0]


@dataclass(frozen=True, slots=True)
class IPv4Packet:
    eth_src: str  # "aa:bb:cc:dd:ee:ff", lower case
    eth_dst: str
    ip_src: str  # dotted quad
    ip_dst: str
    proto: int
    ttl: int
    ident: int
    fragment: bool  # MF set or fragment offset != 0
    sport: int = 0  # TCP/UDP ports; 0 for other protocols and non-first fragments
    dport: int = 0
    tcp_flags: int = 0  # the 8 flag bits (CWR..FIN)
    tcp_seq: int = 0
    tcp_ack: int = 0
    icmp_type: int | None = None
    icmp_code: int | None = None
    ip_header: bytes = b""  # as received, ihl*4 bytes (options included)
    l4_head: bytes = b""  # first up to 8 bytes after the IP header (quoted by ICMP errors)
    payload: bytes = b""  # UDP payload bounded by UDP length and IP total length, else b""
    payload_truncated: bool = False  # UDP length claims more than the frame holds
    tcp_data_len: int = 0  # TCP segment data bytes after the TCP header (for RST ack numbers)


def parse_ipv4_frame(frame: bytes, max_len: int = MAX_FRAME) -> IPv4Packet:
    """Parse an Ethernet II IPv4 frame; raises :class:`PacketError` and nothing else."""
    if type(frame) is not bytes:
        if not isinstance(frame, (bytearray, memoryview)):
            raise PacketError(f"bad-input: expected bytes, got {type(frame).__name__}")
        try:
            frame = bytes(frame)
        except (TypeError, ValueError, BufferError) as exc:  # odd memoryview layouts
            raise PacketError(f"bad-input: {exc}") from None
    n = len(frame)
    if n > max_len:
        raise PacketError(f"oversize: frame of {n} bytes exceeds the {max_len}-byte limit")
    if n < 14:
        raise PacketError(f"truncated-eth: {n} bytes, an Ethernet header needs 14")
    etype = frame[12] << 8 | frame[13]
    off = 14
    if etype == ETH_TYPE_VLAN:
        if n < 18:
            raise PacketError(f"truncated-eth: {n} bytes, an 802.1Q-tagged header needs 18")
        etype = frame[16] << 8 | frame[17]
        off = 18
        if etype in _TAG_TYPES:
            raise PacketError(f"vlan-stacked: a second tag (0x{etype:04x}) after 802.1Q")
    if etype != ETH_TYPE_IPV4:
        raise PacketError(f"not-ipv4: ethertype 0x{etype:04x}")
    avail = n - off
    if avail < 20:
        raise PacketError(f"truncated-ip: {avail} bytes after Ethernet, an IPv4 header needs 20")
    vihl, _tos, total, ident, frag, ttl, proto, _ck, src, dst = _IP.unpack_from(frame, off)
    if vihl >> 4 != 4:
        raise PacketError(f"bad-ip-version: version {vihl >> 4} under the IPv4 ethertype")
    hlen = (vihl & 0x0F) * 4
    if hlen < 20:
        raise PacketError(f"bad-ihl: header length {hlen} bytes is below 20")
    if hlen > avail:
        raise PacketError(f"truncated-ip: header length {hlen} but {avail} bytes present")
    if total < hlen:
        raise PacketError(f"bad-ip-length: total length {total} below header length {hlen}")
    if total > avail:
        raise PacketError(f"truncated-ip: total length {total} but {avail} bytes present")
    l4 = off + hlen
    end = off + total  # anything past this is Ethernet padding
    l4n = total - hlen
    first = not frag & 0x1FFF
    fragment = not first or bool(frag & 0x2000)
    sport = dport = flags = seq = ack = data_len = 0
    icmp_type = icmp_code = None
    payload = b""
    cut = False
    if first:
        if proto == PROTO_TCP:
            if l4n < 20:
                raise PacketError(f"truncated-tcp: {l4n} bytes, a TCP header needs 20")
            sport, dport, seq, ack, doff, flags = _TCP.unpack_from(frame, l4)
            doff = (doff >> 4) * 4
            if doff < 20:
                raise PacketError(f"bad-tcp-offset: data offset {doff} bytes is below 20")
            if doff > l4n:
                raise PacketError(f"truncated-tcp: data offset {doff} but {l4n} bytes present")
            data_len = l4n - doff
        elif proto == PROTO_UDP:
            if l4n < 8:
                raise PacketError(f"truncated-udp: {l4n} bytes, a UDP header needs 8")
            sport, dport, ulen = _UDP.unpack_from(frame, l4)
            if ulen < 8:
                raise PacketError(f"bad-udp-length: UDP length {ulen} is below 8")
            if ulen > l4n:
                cut = True
                payload = frame[l4 + 8:end]
            else:
                payload = frame[l4 + 8:l4 + ulen]
        elif proto == PROTO_ICMP:
            if l4n < 4:
                raise PacketError(f"truncated-icmp: {l4n} bytes, an ICMP header needs 4")
            icmp_type = frame[l4]
            icmp_code = frame[l4 + 1]
    return IPv4Packet(
        frame[6:12].hex(":"), frame[0:6].hex(":"), inet_ntoa(src), inet_ntoa(dst),
        proto, ttl, ident, fragment, sport, dport, flags, seq, ack, icmp_type, icmp_code,
        frame[off:l4], frame[l4:min(l4 + 8, end)], payload, cut, data_len)


# ---- builders ---------------------------------------------------------------------------

def _checksum(data: bytes) -> int:
    """Internet checksum (RFC 1071): a big-endian integer is its 16-bit word sum mod 0xffff."""
    if len(data) & 1:
        data += b"\0"
    s = int.from_bytes(data, "big") % 0xFFFF
    if s == 0 and data.count(0) != len(data):
        return 0  # the one's-complement sum is 0xffff, not 0
    return ~s & 0xFFFF


def _mac(text: str, what: str) -> bytes:
    if isinstance(text, str) and len(text) == 17 and text.count(":") == 5:
        try:
            raw = bytes.fromhex(text.replace(":", ""))
        except ValueError:
            pass
        else:
            if len(raw) == 6:
                return raw
    raise PacketError(f"bad-argument: {what} {text!r} is not a MAC like 02:00:00:00:00:01")


def _ip(text: str, what: str) -> bytes:
    try:
        return ipaddress.IPv4Address(text).packed
    except (ValueError, TypeError):
        raise PacketError(f"bad-argument: {what} {text!r} is not a dotted-quad IPv4 address"
                          ) from None


def _port(value: int, what: str) -> int:
    if not isinstance(value, int) or not 0 <= value <= 0xFFFF:
        raise PacketError(f"bad-argument: {what} {value!r} is not a port 0..65535")
    return value


def _host_address(raw: bytes) -> bool:
    """Whether an address names one host (RFC 1812 4.3.2.7): not 0/8, 127/8, 224/4, 240/4."""
    return raw[0] not in (0, 127) and raw[0] < 224


def _ipv4(src: bytes, dst: bytes, proto: int, body: bytes, ttl: int) -> bytes:
    # DF set and ident 0: an atomic datagram (RFC 6864), never fragmented
    hdr = _IP.pack(0x45, 0, 20 + len(body), 0, 0x4000, ttl, proto, 0, src, dst)
    return hdr[:10] + _U16.pack(_checksum(hdr)) + hdr[12:] + body


def _l4_checksum(src: bytes, dst: bytes, proto: int, segment: bytes) -> int:
    return _checksum(src + dst + struct.pack("!BBH", 0, proto, len(segment)) + segment)


def _refusal_endpoints(pkt: IPv4Packet) -> tuple[bytes, bytes, bytes]:
    """(eth dst, ip src of the original, ip dst of the original), refusing non-unicast."""
    eth_src = _mac(pkt.eth_src, "pkt.eth_src")
    eth_dst = _mac(pkt.eth_dst, "pkt.eth_dst")
    src, dst = _ip(pkt.ip_src, "pkt.ip_src"), _ip(pkt.ip_dst, "pkt.ip_dst")
    if eth_src[0] & 1 or eth_dst[0] & 1:
        raise PacketError("not-unicast: group Ethernet address "
                          f"({pkt.eth_src} -> {pkt.eth_dst}); never answered")
    if not (_host_address(src) and _host_address(dst)):
        raise PacketError(f"not-unicast: {pkt.ip_src} -> {pkt.ip_dst} is not host to host")
    return eth_src, src, dst


def tcp_reset_for(pkt: IPv4Packet, src_mac: str) -> bytes:
    """An Ethernet frame resetting the TCP segment ``pkt`` (RFC 793 reset generation)."""
    if pkt.proto != PROTO_TCP:
        raise PacketError(f"not-tcp: protocol {pkt.proto}")
    if pkt.fragment:
        raise PacketError("fragment: a fragmented TCP segment's length is unknown; drop it")
    if pkt.tcp_flags & TCP_RST:
        raise PacketError("no-rst-for-rst: a reset is never answered")
    eth_to, orig_src, orig_dst = _refusal_endpoints(pkt)
    mac = _mac(src_mac, "src_mac")
    if pkt.tcp_flags & TCP_ACK:
        seq, ack, flags = pkt.tcp_ack & 0xFFFFFFFF, 0, TCP_RST
    else:
        seg_len = (pkt.tcp_data_len + (1 if pkt.tcp_flags & TCP_SYN else 0)
                   + (1 if pkt.tcp_flags & TCP_FIN else 0))
        seq, ack, flags = 0, (pkt.tcp_seq + seg_len) & 0xFFFFFFFF, TCP_RST | TCP_ACK
    sport, dport = _port(pkt.dport, "pkt.dport"), _port(pkt.sport, "pkt.sport")
    seg = _TCP_RST.pack(sport, dport, seq, ack, 5 << 4, flags, 0, 0, 0)
    ck = _l4_checksum(orig_dst, orig_src, PROTO_TCP, seg)
    seg = seg[:16] + _U16.pack(ck) + seg[18:]
    return (eth_to + mac + _U16.pack(ETH_TYPE_IPV4)
            + _ipv4(orig_dst, orig_src, PROTO_TCP, seg, DEFAULT_TTL))


def icmp_unreachable_for(pkt: IPv4Packet, src_mac: str, code: int = ICMP_ADMIN_PROHIBITED,
                         src_ip: str | None = None) -> bytes:
    """An ICMP destination-unreachable frame quoting ``pkt`` (RFC 792, RFC 1812 4.3.2)."""
    if not isinstance(code, int) or not 0 <= code <= 15:
        raise PacketError(f"bad-argument: code {code!r} is not a type-3 code 0..15")
    hdr = pkt.ip_header
    if len(hdr) < 20 or len(hdr) > 60:
        raise PacketError(f"bad-argument: pkt.ip_header has {len(hdr)} bytes, need 20..60")
    if (hdr[6] << 8 | hdr[7]) & 0x1FFF:
        raise PacketError("fragment: only the first fragment of a datagram gets an ICMP error")
    if pkt.proto == PROTO_ICMP and (pkt.icmp_type is None or pkt.icmp_type in ICMP_ERROR_TYPES):
        raise PacketError(f"no-icmp-for-icmp-error: ICMP type {pkt.icmp_type}")
    eth_to, orig_src, orig_dst = _refusal_endpoints(pkt)
    mac = _mac(src_mac, "src_mac")
    me = orig_dst if src_ip is None else _ip(src_ip, "src_ip")
    body = bytes([ICMP_UNREACHABLE, code]) + b"\0\0\0\0\0\0" + hdr + pkt.l4_head[:8]
    body = body[:2] + _U16.pack(_checksum(body)) + body[4:]
    return (eth_to + mac + _U16.pack(ETH_TYPE_IPV4)
            + _ipv4(me, orig_src, PROTO_ICMP, body, DEFAULT_TTL))


def udp_frame(src_mac: str, dst_mac: str, src_ip: str, dst_ip: str, sport: int, dport: int,
              payload: bytes, ttl: int = DEFAULT_TTL) -> bytes:
    """A UDP/IPv4/Ethernet II frame with both checksums set."""
    if not isinstance(payload, (bytes, bytearray)) or len(payload) > 0xFFFF - 28:
        raise PacketError("bad-argument: payload must be bytes of at most 65507")
    if not isinstance(ttl, int) or not 0 <= ttl <= 255:
        raise PacketError(f"bad-argument: ttl {ttl!r} is not 0..255")
    src, dst = _ip(src_ip, "src_ip"), _ip(dst_ip, "dst_ip")
    seg = _UDP.pack(_port(sport, "sport"), _port(dport, "dport"), 8 + len(payload)) + b"\0\0"
    seg += bytes(payload)
    ck = _l4_checksum(src, dst, PROTO_UDP, seg) or 0xFFFF  # 0 means "no checksum" in UDP
    seg = seg[:6] + _U16.pack(ck) + seg[8:]
    return (_mac(dst_mac, "dst_mac") + _mac(src_mac, "src_mac") + _U16.pack(ETH_TYPE_IPV4)
            + _ipv4(src, dst, PROTO_UDP, seg, ttl))
