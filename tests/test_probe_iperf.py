"""probes.iperf: the iperf3 -J parser on real fixtures (recorded with iperf3 3.12: loopback,
and between two network namespaces with a 20 Mbit/s TBF for the multi-stream TCP and the
lossy UDP runs), hostile input, command building."""

import json
import os
import socket
from pathlib import Path

import pytest

from probes import iperf
from probes.iperf import (
    IperfError,
    IperfParseError,
    client_command,
    listening,
    parse_iperf,
    server_command,
)

FIX = Path(__file__).resolve().parent / "fixtures"


def fixture(name: str) -> str:
    return (FIX / f"iperf3_{name}.json").read_text()


def test_tcp_loopback():
    r = parse_iperf(fixture("tcp"))
    assert r.proto == "tcp" and r.streams == 1 and r.version == "iperf 3.12"
    assert r.sent_bps == pytest.approx(14679080501.606392)
    assert r.received_bps == pytest.approx(14549662437.081167)
    assert r.bytes_sent == 1835008000 and r.bytes_received == 1818886038
    assert r.retransmits == 53
    assert r.jitter_ms is None and r.lost_pct is None
    assert r.seconds == pytest.approx(1.000067)


def test_tcp_two_streams_sums():
    r = parse_iperf(fixture("tcp_p2"))
    assert r.streams == 2 and r.retransmits == 526
    assert r.received_bps == pytest.approx(19127435.7229592)
    assert r.received_mbps == pytest.approx(19.1274357)
    # the per-stream figures add up to the sum iperf3 printed
    obj = json.loads(fixture("tcp_p2"))
    assert sum(s["sender"]["bytes"] for s in obj["end"]["streams"]) == r.bytes_sent


def test_tcp_sums_rebuilt_from_streams_when_absent():
    obj = json.loads(fixture("tcp_p2"))
    want = parse_iperf(fixture("tcp_p2"))
    del obj["end"]["sum_sent"], obj["end"]["sum_received"]
    r = parse_iperf(json.dumps(obj))
    assert r.bytes_sent == want.bytes_sent and r.retransmits == want.retransmits
    assert r.sent_bps == pytest.approx(want.sent_bps, rel=1e-3)


def test_udp_loopback():
    r = parse_iperf(fixture("udp"))
    assert r.proto == "udp" and r.retransmits is None
    assert r.jitter_ms == pytest.approx(0.012734776971005923)
    assert (r.lost_packets, r.packets, r.lost_pct) == (0, 284, 0)
    assert r.sent_bps == pytest.approx(50011449.96190678)


def test_udp_with_loss():
    r = parse_iperf(fixture("udp_loss"))
    assert (r.lost_packets, r.packets) == (3510, 6903)
    assert r.lost_pct == pytest.approx(50.847457627118644)
    assert r.sent_bps == pytest.approx(39979277.50238108)
    assert r.received_bps == pytest.approx(19445324.272359874)  # the 20 Mbit/s TBF
    assert r.bytes_received == 4910168


def test_udp_older_format_only_sum():
    obj = json.loads(fixture("udp_loss"))
    del obj["end"]["sum_sent"], obj["end"]["sum_received"]
    r = parse_iperf(json.dumps(obj))
    assert r.received_bps == pytest.approx(39979277.50238108 * (1 - 0.50847457627118644))
    assert r.lost_packets == 3510


def test_error_field_is_iperfs_message():
    with pytest.raises(IperfError, match="iperf3 failed: unable to connect to server: "
                                         "Connection refused"):
        parse_iperf(fixture("refused"))


@pytest.mark.parametrize("mangle, match", [
    (lambda t: t[:len(t) // 2], "truncated"),
    (lambda t: t[:10], "not JSON"),
    (lambda t: "", "empty"),
    (lambda t: "Connecting to host 10.0.0.2, port 5201\n[  5] local ...", "without -J"),
    (lambda t: "\x00\xff garbage", "not JSON"),
    (lambda t: "[1, 2]", "not an object"),
    (lambda t: '{"start": {}, "end": {}}', "did not complete"),
    (lambda t: "[" * 50000 + "]" * 50000, "not JSON"),
    (lambda t: t.replace('"protocol":\t"TCP"', '"protocol":\t"SCTP"'), "neither TCP"),
    (lambda t: t.replace('"retransmits":\t53', '"retransmits":\ttrue'), "retransmits"),
    (lambda t: t.replace('"bytes":\t1818886038', '"bytes":\t-5'), "bytes"),
    (lambda t: t.replace('"bits_per_second":\t14679080501.606392', '"bits_per_second":\tNaN'),
     "bits_per_second"),
])
def test_hostile_input(mangle, match):
    with pytest.raises(IperfParseError, match=match):
        parse_iperf(mangle(fixture("tcp")))


def test_hostile_udp_values():
    t = fixture("udp_loss").replace('"lost_percent":\t50.847457627118644',
                                    '"lost_percent":\t250')
    with pytest.raises(IperfParseError, match="lost_percent"):
        parse_iperf(t)


def test_huge_input(monkeypatch):
    monkeypatch.setattr(iperf, "MAX_INPUT", 1000)
    with pytest.raises(IperfParseError, match="exceeds"):
        parse_iperf(fixture("tcp"))


def test_bytes_input_and_not_text():
    assert parse_iperf(fixture("udp").encode()).proto == "udp"
    with pytest.raises(IperfParseError, match="text"):
        parse_iperf(42)


def test_commands():
    assert server_command(5301) == ["iperf3", "-s", "-1", "-J", "-p", "5301"]
    c = client_command("10.0.0.2", 5301, "udp", 2, 20.0)
    assert c[:3] == ["iperf3", "-c", "10.0.0.2"] and "-u" in c and "-J" in c
    assert c[c.index("-b") + 1] == "20000000" and c[c.index("-t") + 1] == "2"
    assert "-u" not in client_command("10.0.0.2", 5301, "tcp")
    for bad, match in (({"proto": "sctp"}, "proto"), ({"seconds": 0}, "seconds"),
                       ({"bandwidth_mbps": -1}, "bandwidth"), ({"streams": 0}, "streams")):
        with pytest.raises(ValueError, match=match):
            client_command("10.0.0.2", 1, **bad)


def test_listening_reads_the_process_namespace():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        assert not listening(os.getpid(), port)
        s.listen()
        assert listening(os.getpid(), port)
    assert not listening(2**22 + 12345, port)  # no such process
