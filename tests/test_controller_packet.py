"""controller.packet: IPv4 parsing of punted frames never crashes or hangs; refusals are exact.

Frames are built with scapy (an independent implementation) and parsed; the RST and ICMP
builders are checked by letting scapy re-parse them and recompute every checksum.
"""

from __future__ import annotations

import random
import struct
import time

import pytest
from scapy.all import ICMP, IP, TCP, UDP, Dot1Q, Ether, Raw, raw

from controller.packet import (
    ERROR_KINDS,
    MAX_FRAME,
    IPv4Packet,
    PacketError,
    _checksum,
    error_kind,
    icmp_unreachable_for,
    parse_ipv4_frame,
    tcp_reset_for,
    udp_frame,
)

A_MAC, B_MAC, CTL_MAC = "02:00:00:00:00:01", "02:00:00:00:00:02", "0e:00:00:ed:c0:02"
A_IP, B_IP = "10.0.0.1", "10.0.1.2"
FUZZ_SEED = 20240611
PARSE_BOUND_S = 0.05  # one parse of <= 9216 bytes takes microseconds; 50 ms allows GC/noise


def eth(*layers, src=A_MAC, dst=B_MAC):
    pkt = Ether(src=src, dst=dst)
    for layer in layers:
        pkt = pkt / layer
    return raw(pkt)


def ip(**kw):
    return IP(**{"src": A_IP, "dst": B_IP, **kw})


def kind_of(frame: bytes, **kw) -> str:
    with pytest.raises(PacketError) as info:
        parse_ipv4_frame(frame, **kw)
    kind = error_kind(info.value)
    assert kind in ERROR_KINDS, str(info.value)
    return kind


def checksums_ok(frame: bytes) -> Ether:
    """Scapy re-parses ``frame``; every outer checksum must equal scapy's recomputation."""
    got = Ether(frame)
    again = Ether(frame)
    for layer in (IP, TCP, UDP, ICMP):
        if layer in again:
            del again[layer].chksum
    again = Ether(raw(again))
    for layer in (IP, TCP, UDP, ICMP):
        if layer in got:
            assert got[layer].chksum == again[layer].chksum, layer.__name__
    return got


# ---- valid frames ---------------------------------------------------------------------------

def test_tcp_syn():
    p = parse_ipv4_frame(eth(ip(ttl=33, id=777), TCP(sport=40000, dport=443, flags="S",
                                                      seq=123456789)))
    assert (p.eth_src, p.eth_dst, p.ip_src, p.ip_dst) == (A_MAC, B_MAC, A_IP, B_IP)
    assert (p.proto, p.ttl, p.ident, p.fragment) == (6, 33, 777, False)
    assert (p.sport, p.dport, p.tcp_flags, p.tcp_seq, p.tcp_ack) == (40000, 443, 0x02,
                                                                     123456789, 0)
    assert p.tcp_data_len == 0 and p.payload == b"" and p.icmp_type is None
    assert len(p.ip_header) == 20 and p.l4_head == raw(TCP(sport=40000, dport=443,
                                                           seq=123456789))[:8]


def test_tcp_data_with_options():
    seg = TCP(sport=5, dport=6, flags="PA", seq=7, ack=8,
              options=[("MSS", 1460), ("NOP", None), ("WScale", 7)]) / Raw(b"hello world")
    p = parse_ipv4_frame(eth(ip(), seg))
    assert (p.tcp_flags, p.tcp_seq, p.tcp_ack, p.tcp_data_len) == (0x18, 7, 8, 11)
    assert p.payload == b""  # only UDP payloads are kept


def test_udp_and_its_payload():
    p = parse_ipv4_frame(eth(ip(), UDP(sport=53, dport=3333) / Raw(b"q" * 300)))
    assert (p.proto, p.sport, p.dport, p.payload, p.payload_truncated) == (17, 53, 3333,
                                                                           b"q" * 300, False)


def test_icmp_echo():
    p = parse_ipv4_frame(eth(ip(), ICMP(type=8, code=0, id=1, seq=2) / Raw(b"ping")))
    assert (p.proto, p.icmp_type, p.icmp_code, p.sport, p.dport) == (1, 8, 0, 0, 0)
    assert len(p.l4_head) == 8


def test_one_vlan_tag_ip_options_and_buffer_types():
    frame = eth(Dot1Q(vlan=42), IP(src=A_IP, dst=B_IP, options=[b"\x01\x01\x01\x00"]),
                UDP(sport=1, dport=2) / Raw(b"x"))
    for buf in (frame, bytearray(frame), memoryview(frame)):
        p = parse_ipv4_frame(buf)
        assert len(p.ip_header) == 24 and p.ip_header == frame[18:42]
        assert (p.sport, p.payload) == (1, b"x")


def test_ethernet_padding_is_trimmed():
    frame = eth(ip(), UDP(sport=1, dport=2) / Raw(b"ab")) + b"\xee" * 20
    p = parse_ipv4_frame(frame)
    assert p.payload == b"ab" and not p.payload_truncated
    short = eth(ip(proto=253) / Raw(b"wxyz")) + b"\xee" * 26  # 4 L4 bytes, then padding
    assert parse_ipv4_frame(short).l4_head == b"wxyz"


def test_udp_length_shorter_than_ip_payload_bounds_the_payload():
    frame = bytearray(eth(ip(), UDP(sport=1, dport=2) / Raw(b"abcdef")))
    struct.pack_into("!H", frame, 14 + 20 + 4, 8 + 3)
    assert parse_ipv4_frame(bytes(frame)).payload == b"abc"


def test_udp_length_beyond_the_frame_is_flagged_not_an_error():
    frame = bytearray(eth(ip(), UDP(sport=1, dport=2) / Raw(b"abcdef")))
    struct.pack_into("!H", frame, 14 + 20 + 4, 1000)
    p = parse_ipv4_frame(bytes(frame))
    assert p.payload == b"abcdef" and p.payload_truncated


def test_non_first_fragment_parses_with_ports_zero():
    for proto in (6, 17, 1):
        p = parse_ipv4_frame(eth(ip(proto=proto, frag=185, flags="MF") / Raw(b"\x01\x02\x03")))
        assert p.fragment and (p.sport, p.dport, p.tcp_flags, p.payload) == (0, 0, 0, b"")
        assert p.icmp_type is None and p.l4_head == b"\x01\x02\x03"


def test_first_fragment_keeps_ports_and_flags_the_cut_udp_payload():
    p = parse_ipv4_frame(eth(ip(flags="MF"), UDP(sport=9, dport=10, len=1480) / Raw(b"z" * 64)))
    assert p.fragment and (p.sport, p.dport) == (9, 10)
    assert p.payload == b"z" * 64 and p.payload_truncated


def test_max_len_is_inclusive():
    base = eth(ip(), UDP(sport=1, dport=2))
    frame = eth(ip(), UDP(sport=1, dport=2) / Raw(b"p" * (MAX_FRAME - len(base))))
    assert len(parse_ipv4_frame(frame).payload) == MAX_FRAME - len(base)
    assert kind_of(frame + b"\0") == "oversize"
    assert kind_of(frame, max_len=100) == "oversize"


# ---- every error path -----------------------------------------------------------------------

def _set(frame: bytes, offset: int, fmt: str, value: int) -> bytes:
    out = bytearray(frame)
    struct.pack_into(fmt, out, offset, value)
    return bytes(out)


TCP_FRAME = eth(ip(), TCP(sport=1, dport=2, flags="S"))
UDP_FRAME = eth(ip(), UDP(sport=1, dport=2) / Raw(b"data"))
IP0 = 14  # IP header offset in an untagged frame

ERROR_CASES = [
    ("empty", b"", "truncated-eth"),
    ("13 bytes", TCP_FRAME[:13], "truncated-eth"),
    ("tag without inner type", eth(Dot1Q(vlan=1))[:16], "truncated-eth"),
    ("arp", raw(Ether(src=A_MAC, dst=B_MAC, type=0x0806) / Raw(b"\0" * 28)), "not-ipv4"),
    ("ipv6 ethertype", raw(Ether(src=A_MAC, dst=B_MAC, type=0x86DD) / Raw(b"\0" * 40)),
     "not-ipv4"),
    ("two 802.1Q tags", eth(Dot1Q(vlan=1), Dot1Q(vlan=2), ip(), UDP()), "vlan-stacked"),
    ("802.1ad inside 802.1Q", eth(Dot1Q(vlan=1, type=0x88A8), Raw(b"\0" * 40)), "vlan-stacked"),
    ("ip header cut", TCP_FRAME[:IP0 + 19], "truncated-ip"),
    ("version 6 under 0x0800", _set(TCP_FRAME, IP0, "!B", 0x65), "bad-ip-version"),
    ("version 0", _set(TCP_FRAME, IP0, "!B", 0x05), "bad-ip-version"),
    ("ihl 4", _set(TCP_FRAME, IP0, "!B", 0x44), "bad-ihl"),
    ("ihl 0", _set(TCP_FRAME, IP0, "!B", 0x40), "bad-ihl"),
    ("ihl beyond frame", _set(TCP_FRAME, IP0, "!B", 0x4F), "truncated-ip"),
    ("total < ihl*4", _set(TCP_FRAME, IP0 + 2, "!H", 19), "bad-ip-length"),
    ("total > frame", _set(TCP_FRAME, IP0 + 2, "!H", 41), "truncated-ip"),
    ("total 0xffff", _set(TCP_FRAME, IP0 + 2, "!H", 0xFFFF), "truncated-ip"),
    ("tcp cut", eth(ip(proto=6) / Raw(b"\0" * 19)), "truncated-tcp"),
    ("tcp tiny first fragment", eth(ip(proto=6, flags="MF") / Raw(b"\0" * 8)), "truncated-tcp"),
    ("tcp data offset 4", _set(TCP_FRAME, IP0 + 32, "!B", 0x40), "bad-tcp-offset"),
    ("tcp data offset beyond", _set(TCP_FRAME, IP0 + 32, "!B", 0x60), "truncated-tcp"),
    ("udp cut", eth(ip(proto=17) / Raw(b"\0" * 7)), "truncated-udp"),
    ("udp length 7", _set(UDP_FRAME, IP0 + 24, "!H", 7), "bad-udp-length"),
    ("udp length 0", _set(UDP_FRAME, IP0 + 24, "!H", 0), "bad-udp-length"),
    ("icmp cut", eth(ip(proto=1) / Raw(b"\x08\0\0")), "truncated-icmp"),
    ("oversize", TCP_FRAME + b"\0" * MAX_FRAME, "oversize"),
]


@pytest.mark.parametrize("frame,kind", [c[1:] for c in ERROR_CASES],
                         ids=[c[0] for c in ERROR_CASES])
def test_error_paths(frame, kind):
    assert kind_of(frame) == kind


@pytest.mark.parametrize("bad", [None, "abc", 42, [1, 2, 3], memoryview(b"\0" * 8).cast("B")])
def test_non_bytes_or_short_input_is_a_packet_error(bad):
    assert kind_of(bad) in ("bad-input", "truncated-eth")


# ---- TCP reset ------------------------------------------------------------------------------

def parsed_tcp(tcp_flags, seq=1000, ack=0, data=b"", **ipkw):
    return parse_ipv4_frame(eth(ip(**ipkw), TCP(sport=40001, dport=8080, flags=tcp_flags,
                                                 seq=seq, ack=ack) / Raw(data)))


@pytest.mark.parametrize("flags,data,want_seq,want_ack,want_flags", [
    ("S", b"", 0, 1001, "RA"),
    ("S", b"0123456789", 0, 1011, "RA"),  # SYN with data: length + 1
    ("F", b"abc", 0, 1004, "RA"),
    ("SF", b"", 0, 1002, "RA"),
    ("", b"xy", 0, 1002, "RA"),  # no flags at all
    ("A", b"", 5555, 0, "R"),  # ACK present: seq = its ack, RST only
    ("PA", b"data", 5555, 0, "R"),
    ("SA", b"", 5555, 0, "R"),
    ("FA", b"", 5555, 0, "R"),
])
def test_tcp_reset_follows_rfc793(flags, data, want_seq, want_ack, want_flags):
    pkt = parsed_tcp(flags, ack=5555 if "A" in flags else 0, data=data)
    got = checksums_ok(tcp_reset_for(pkt, CTL_MAC))
    assert (got.src, got.dst) == (CTL_MAC, A_MAC)
    assert (got[IP].src, got[IP].dst, got[IP].ttl, got[IP].proto) == (B_IP, A_IP, 64, 6)
    assert (got[TCP].sport, got[TCP].dport) == (8080, 40001)
    assert (got[TCP].seq, got[TCP].ack, str(got[TCP].flags)) == (want_seq, want_ack, want_flags)
    assert len(got[TCP].payload) == 0 and got[IP].len == 40


def test_tcp_reset_ack_wraps_around():
    pkt = parsed_tcp("S", seq=0xFFFFFFFF)
    assert Ether(tcp_reset_for(pkt, CTL_MAC))[TCP].ack == 0


def test_tcp_reset_parses_back():
    back = parse_ipv4_frame(tcp_reset_for(parsed_tcp("S"), CTL_MAC))
    assert (back.sport, back.dport, back.tcp_flags) == (8080, 40001, 0x14)


@pytest.mark.parametrize("pkt,kind", [
    (parsed_tcp("R"), "no-rst-for-rst"),
    (parsed_tcp("RA", ack=9), "no-rst-for-rst"),
    (parse_ipv4_frame(UDP_FRAME), "not-tcp"),
    (parsed_tcp("S", flags="MF"), "fragment"),
    (parsed_tcp("S", dst="224.0.0.5"), "not-unicast"),
    (parsed_tcp("S", dst="255.255.255.255"), "not-unicast"),
    (parsed_tcp("S", src="0.0.0.0"), "not-unicast"),
    (parsed_tcp("S", src="127.0.0.1"), "not-unicast"),
    (parse_ipv4_frame(eth(ip(), TCP(flags="S"), dst="ff:ff:ff:ff:ff:ff")), "not-unicast"),
    (parse_ipv4_frame(eth(ip(), TCP(flags="S"), src="01:00:5e:00:00:01")), "not-unicast"),
])
def test_tcp_reset_refusals(pkt, kind):
    with pytest.raises(PacketError) as info:
        tcp_reset_for(pkt, CTL_MAC)
    assert error_kind(info.value) == kind


def test_builders_reject_bad_arguments():
    pkt = parsed_tcp("S")
    for bad_mac in ("", "02:00:00:00:00", "zz:00:00:00:00:01", None):
        with pytest.raises(PacketError, match="bad-argument: src_mac"):
            tcp_reset_for(pkt, bad_mac)
    with pytest.raises(PacketError, match="bad-argument: code"):
        icmp_unreachable_for(pkt, CTL_MAC, code=16)
    with pytest.raises(PacketError, match="bad-argument: src_ip"):
        icmp_unreachable_for(pkt, CTL_MAC, src_ip="10.1")
    with pytest.raises(PacketError, match="bad-argument: pkt.ip_header"):
        icmp_unreachable_for(IPv4Packet(A_MAC, B_MAC, A_IP, B_IP, 6, 64, 0, False), CTL_MAC)
    with pytest.raises(PacketError, match="bad-argument: sport"):
        udp_frame(A_MAC, B_MAC, A_IP, B_IP, 70000, 1, b"")
    with pytest.raises(PacketError, match="bad-argument: ttl"):
        udp_frame(A_MAC, B_MAC, A_IP, B_IP, 1, 1, b"", ttl=256)


# ---- ICMP unreachable ------------------------------------------------------------------------

@pytest.mark.parametrize("frame", [
    eth(ip(), TCP(sport=40001, dport=8080, flags="S")),
    eth(ip(), UDP(sport=5000, dport=53) / Raw(b"x" * 100)),
    eth(IP(src=A_IP, dst=B_IP, options=[b"\x01" * 8]), UDP(sport=1, dport=2) / Raw(b"y" * 3)),
    eth(ip(), ICMP(type=8) / Raw(b"ping")),
    eth(ip(), ICMP(type=0)),
    eth(ip(flags="MF"), UDP(sport=1, dport=2, len=2000) / Raw(b"first")),  # first fragment
    eth(ip(proto=253) / Raw(b"abc")),  # fewer than 8 L4 bytes: quote what there is
])
def test_icmp_unreachable_quotes_header_and_8_bytes(frame):
    pkt = parse_ipv4_frame(frame)
    got = checksums_ok(icmp_unreachable_for(pkt, CTL_MAC))
    assert (got.src, got.dst) == (CTL_MAC, A_MAC)
    assert (got[IP].src, got[IP].dst, got[IP].ttl, got[IP].proto) == (B_IP, A_IP, 64, 1)
    assert (got[ICMP].type, got[ICMP].code) == (3, 13)
    body = raw(got[IP])[20:]
    ihl = (frame[14] & 15) * 4
    assert body[8:] == frame[14:14 + ihl] + pkt.l4_head
    assert len(pkt.l4_head) == min(8, len(frame) - 14 - ihl)
    assert body[4:8] == b"\0\0\0\0"


def test_icmp_unreachable_code_and_source_override():
    pkt = parse_ipv4_frame(UDP_FRAME)
    got = checksums_ok(icmp_unreachable_for(pkt, CTL_MAC, code=1, src_ip="10.0.255.254"))
    assert (got[ICMP].code, got[IP].src) == (1, "10.0.255.254")


@pytest.mark.parametrize("frame,kind", [
    *[(eth(ip(), ICMP(type=t)), "no-icmp-for-icmp-error") for t in (3, 4, 5, 11, 12)],
    (eth(ip(proto=6, frag=100) / Raw(b"\0" * 20)), "fragment"),
    (eth(ip(proto=1, frag=1) / Raw(b"\0" * 8)), "fragment"),
    (eth(ip(dst="239.1.1.1"), UDP()), "not-unicast"),
    (eth(ip(src="240.0.0.1"), UDP()), "not-unicast"),
])
def test_icmp_unreachable_refusals(frame, kind):
    with pytest.raises(PacketError) as info:
        icmp_unreachable_for(parse_ipv4_frame(frame), CTL_MAC)
    assert error_kind(info.value) == kind


# ---- UDP builder and checksum ----------------------------------------------------------------

def test_udp_frame_round_trips_and_checksums():
    frame = udp_frame(A_MAC, B_MAC, A_IP, B_IP, 1234, 5678, b"hello", ttl=9)
    got = checksums_ok(frame)
    assert (got[UDP].sport, got[UDP].dport, raw(got[UDP].payload), got[IP].ttl) == (
        1234, 5678, b"hello", 9)
    assert got[UDP].chksum != 0
    p = parse_ipv4_frame(frame)
    assert (p.eth_src, p.eth_dst, p.ip_src, p.ip_dst, p.payload) == (A_MAC, B_MAC, A_IP, B_IP,
                                                                      b"hello")


def _reference_checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = 0
    for (w,) in struct.iter_unpack("!H", data):
        s += w
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def test_checksum_matches_the_word_by_word_definition():
    rng = random.Random(FUZZ_SEED)
    samples = [b"", b"\0", b"\0\0\0\0", b"\xff\xff", b"\xff\xff\xff\xff", b"\xff", b"\x00\x01"]
    samples += [rng.randbytes(rng.randrange(0, 200)) for _ in range(2000)]
    samples += [b"\xff\xfe\x00\x01", b"\x80\x00\x7f\xff"]  # sums to 0xffff
    for data in samples:
        assert _checksum(data) == _reference_checksum(data), data.hex()


# ---- fuzz -----------------------------------------------------------------------------------

SEEDS = [
    TCP_FRAME,
    eth(ip(), TCP(sport=3, dport=4, flags="PA", options=[("MSS", 1400)]) / Raw(b"d" * 40)),
    UDP_FRAME,
    eth(ip(), ICMP(type=8) / Raw(b"p" * 16)),
    eth(ip(), ICMP(type=3, code=1) / raw(ip() / UDP())[:28]),
    eth(Dot1Q(vlan=7), ip(), UDP(sport=1, dport=2) / Raw(b"v" * 10)),
    eth(IP(src=A_IP, dst=B_IP, options=[b"\x01" * 12]), TCP(flags="S")),
    eth(ip(proto=17, frag=3, flags="MF") / Raw(b"f" * 24)),
    eth(ip(), UDP(sport=1, dport=2) / Raw(b"u")) + b"\0" * 17,
]


def _check_invariants(p: IPv4Packet, frame: bytes) -> None:
    assert 20 <= len(p.ip_header) <= 60 and len(p.ip_header) % 4 == 0
    assert p.ip_header[0] >> 4 == 4 and len(p.l4_head) <= 8
    assert len(p.eth_src) == len(p.eth_dst) == 17
    assert 0 <= p.ttl <= 255 and 0 <= p.proto <= 255 and 0 <= p.ident <= 0xFFFF
    assert 0 <= p.sport <= 0xFFFF and 0 <= p.dport <= 0xFFFF and p.tcp_data_len >= 0
    if p.proto not in (6, 17):
        assert p.sport == p.dport == 0
    if p.proto != 17:
        assert p.payload == b"" and not p.payload_truncated
    assert len(p.payload) < len(frame)


def _mutations(rng: random.Random, count: int):
    for seed in SEEDS:  # truncation at every length, with the IP total length left or fixed
        for n in range(len(seed) + 1):
            yield seed[:n]
            if seed[12:14] == b"\x08\x00" and n >= IP0 + 4:
                yield _set(seed[:n], IP0 + 2, "!H", n - IP0)
    length_fields = [(IP0, "!B"), (IP0 + 2, "!H"), (IP0 + 6, "!H"), (IP0 + 9, "!B"),
                     (IP0 + 20 + 4, "!H"), (IP0 + 20 + 12, "!B"), (12, "!H")]
    while True:
        seed = bytearray(rng.choice(SEEDS))
        roll = rng.random()
        if roll < 0.35:  # byte flips
            for _ in range(rng.randint(1, 4)):
                seed[rng.randrange(len(seed))] = rng.randrange(256)
        elif roll < 0.7:  # corrupt a length/type field (offsets assume no tag: fine for fuzz)
            off, fmt = rng.choice(length_fields)
            if off + struct.calcsize(fmt) <= len(seed):
                top = 0xFF if fmt == "!B" else 0xFFFF
                struct.pack_into(fmt, seed, off, rng.choice([0, 1, 4, 5, 7, 8, 19, 20, 0x45,
                                                             0x4F, top, rng.randrange(top + 1)]))
            if rng.random() < 0.5:
                seed = seed[:rng.randrange(len(seed) + 1)]
        elif roll < 0.85:  # random bytes that get past the Ethernet check
            seed = bytearray(rng.randbytes(rng.randrange(0, 120)))
            if len(seed) >= 15:
                seed[12:15] = b"\x08\x00" + bytes([0x40 | rng.randrange(16)])
        else:  # pure noise, sometimes huge
            seed = bytearray(rng.randbytes(rng.choice([rng.randrange(0, 80), 9300])))
        yield bytes(seed)
        count -= 1
        if count <= 0:
            return


def test_fuzz_only_packet_error_escapes_and_parses_are_bounded():
    rng = random.Random(FUZZ_SEED)
    parsed = errors = 0
    kinds: set[str] = set()
    worst = 0.0
    for frame in _mutations(rng, 20_000):
        t0 = time.perf_counter()
        try:
            p = parse_ipv4_frame(frame)
        except PacketError as exc:
            worst = max(worst, time.perf_counter() - t0)
            errors += 1
            kinds.add(error_kind(exc))
            continue
        worst = max(worst, time.perf_counter() - t0)
        parsed += 1
        _check_invariants(p, frame)
        for build in (tcp_reset_for, icmp_unreachable_for):
            try:
                out = build(p, CTL_MAC)
            except PacketError as exc:
                kinds.add(error_kind(exc))
            else:
                parse_ipv4_frame(out)  # whatever we send must parse as well-formed
    print(f"\nfuzz: {parsed} parsed, {errors} rejected, worst parse {worst * 1e6:.0f} us, "
          f"kinds {sorted(kinds)}")
    assert parsed + errors >= 20_000 and parsed > 1000 and errors > 1000
    assert kinds <= set(ERROR_KINDS)
    assert worst < PARSE_BOUND_S


def test_microbenchmark_parse_time():
    frames = {"tcp syn": TCP_FRAME, "udp 100B": eth(ip(), UDP() / Raw(b"x" * 100)),
              "icmp": SEEDS[3],
              "reject ihl": next(c[1] for c in ERROR_CASES if c[0] == "ihl 4")}
    n = 20_000
    for name, frame in frames.items():
        best = float("inf")
        for _ in range(3):
            t0 = time.perf_counter()
            for _ in range(n):
                try:
                    parse_ipv4_frame(frame)
                except PacketError:
                    pass
            best = min(best, (time.perf_counter() - t0) / n)
        print(f"\nparse {name}: {best * 1e6:.2f} us/frame")
