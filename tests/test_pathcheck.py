"""Path verification, the pure parts: the dump-flows parser (fixtures captured from Open
vSwitch 3.1 with `ovs-ofctl -O OpenFlow13 --no-names dump-flows`), which flows cover a probe,
how many packets a switch attributes to it, path ordering and the verdict."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from probes.pathcheck import (
    DEFAULT_PRIORITY,
    INCONCLUSIVE,
    MATCH,
    MAYBE,
    MISMATCH,
    NO,
    NO_PATH,
    YES,
    FlowParseError,
    ProbePacket,
    check_to_dict,
    covers,
    judge_path,
    order_path,
    parse_dump_flows,
    parse_flow_line,
    probe_count,
    render_checks,
    schedule_rounds,
    youngest_flow_s,
)

FIX = Path(__file__).resolve().parent / "fixtures"
PROBE = ProbePacket("10.0.0.1", "10.0.0.2", 17, 47000, 47000)


def flows(name: str):
    return parse_dump_flows((FIX / name).read_text())


def test_parse_route_table():
    fl = flows("dumpflows_route.txt")
    assert len(fl) == 9  # the OFPST_FLOW reply header is skipped
    route = next(f for f in fl if ("nw_dst", "10.0.0.2") in f.match)
    assert (route.table, route.priority, route.n_packets, route.n_bytes) == (0, 100, 7, 322)
    assert route.match == (("dl_type", "0x0800"), ("nw_dst", "10.0.0.2"))
    assert route.actions == "output:3" and route.cookie == 0xEDC0000000000001
    miss = next(f for f in fl if f.priority == 0)
    assert miss.match == () and miss.actions == "drop" and miss.n_packets == 3
    lldp = next(f for f in fl if ("dl_type", "0x88cc") in f.match)
    assert lldp.actions == "CONTROLLER:65535"
    assert route.duration_s == pytest.approx(0.261) and miss.duration_s == pytest.approx(0.332)


def test_parse_flags_default_priority_and_tables():
    fl = flows("dumpflows_steering.txt")
    assert len(fl) == 9
    masked = fl[0]  # "hard_timeout=600, send_flow_rem udp,nw_dst=10.0.0.0/16,..."
    assert masked.priority == DEFAULT_PRIORITY
    assert dict(masked.match) == {"dl_type": "0x0800", "nw_proto": "17",
                                  "nw_dst": "10.0.0.0/16", "tp_dst": "0xb000/0xf000"}
    assert masked.actions == "goto_table:1"
    steer = fl[2]
    assert dict(steer.match)["in_port"] == "1" and dict(steer.match)["tp_src"] == "40000"
    assert steer.actions == "set_field:10.0.0.2->ip_dst,output:3"
    assert sorted({f.table for f in fl}) == [0, 1]


def test_parse_without_header_and_of10_style_fields():
    text = (" cookie=0x0, duration=5.2s, table=0, n_packets=12, n_bytes=1176, idle_age=1, "
            "priority=100,ip,ip_dst=10.0.0.2 actions=output:3\n"
            " cookie=0x0, duration=5.2s, table=0, n_packets=1, n_bytes=60, "
            "priority=90,udp,ipv4_src=10.0.0.1,udp_dst=47000 actions=output:\"p1\"\n")
    a, b = parse_dump_flows(text)
    assert a.match == (("dl_type", "0x0800"), ("nw_dst", "10.0.0.2")) and a.n_packets == 12
    assert dict(b.match) == {"dl_type": "0x0800", "nw_proto": "17", "nw_src": "10.0.0.1",
                             "tp_dst": "47000"}
    assert parse_dump_flows("") == [] and parse_dump_flows("\n\n") == []


@pytest.mark.parametrize("text, match", [
    (" cookie=0x0, table=0, n_packets=1, n_bytes=2, priority=1,ip", r"line 1: no 'actions='"),
    (" cookie=0x0, table=0, n_packets=abc, n_bytes=2, ip actions=drop",
     "n_packets 'abc' is not an integer"),
    (" cookie=0x0, table=0, n_packets=-4, n_bytes=2, ip actions=drop", "n_packets -4 is neg"),
    (" cookie=0x0, table=0, n_bytes=2, ip actions=drop", "no n_packets counter"),
    (" cookie=0x0, table=x, n_packets=1, ip actions=drop", "table 'x' is not an integer"),
    (" cookie=0x0, duration=abc, n_packets=1, ip actions=drop", "duration 'abc' is not sec"),
    (" cookie=0x0, n_packets=1, priority=1,frobnicate actions=drop",
     "unknown match keyword 'frobnicate'"),
    (" cookie=0x0, n_packets=1, priority=1,@@@=1 actions=drop", "'@@@=1' is not a field"),
    ("OFPST_FLOW reply (OF1.3) (xid=0x2):\n cookie=0x0, n_packets=1 actions=drop\n"
     "\x00\x01\x02 binary", "line 3: control characters"),
    ("hello world\n", "line 1: no 'actions='"),
    ("ovs-ofctl: br0 is not a bridge or a socket\n", "not a flow from ovs-ofctl"),
])
def test_hostile_input_gives_a_clear_error(text, match):
    with pytest.raises(FlowParseError, match=match):
        parse_dump_flows(text)


def test_oversized_input_and_non_text():
    with pytest.raises(FlowParseError, match="too large"):
        parse_dump_flows(" cookie=0x0, n_packets=1 actions=drop\n" * 300_000)
    with pytest.raises(FlowParseError, match="too long"):
        parse_flow_line(" cookie=0x0, n_packets=1, " + "ip," * 30000 + " actions=drop")
    with pytest.raises(FlowParseError, match="must be text"):
        parse_dump_flows(b"cookie=0x0 actions=drop")  # type: ignore[arg-type]


def _flow(match: str, priority: int = 100, n: int = 0, table: int = 0):
    return parse_flow_line(f" cookie=0x0, table={table}, n_packets={n}, n_bytes=0, "
                           f"priority={priority}{',' + match if match else ''} actions=drop")


@pytest.mark.parametrize("match, want", [
    ("", YES),  # table-miss
    ("ip,nw_dst=10.0.0.2", YES),
    ("ip,nw_dst=10.0.0.3", NO),
    ("ip,nw_dst=10.0.0.0/16", YES),
    ("ip,nw_dst=10.0.0.0/255.255.255.0", YES),
    ("ip,nw_dst=10.0.1.0/24", NO),
    ("udp,nw_src=10.0.0.1,nw_dst=10.0.0.2,tp_dst=47000", YES),
    ("udp,tp_dst=0xb000/0xf000", YES),
    ("udp,tp_dst=0xc000/0xf000", NO),
    ("tcp,nw_dst=10.0.0.2", NO),
    ("arp", NO),
    ("ipv6", NO),
    ("dl_type=0x88cc", NO),
    ("ip,in_port=1,nw_dst=10.0.0.2", MAYBE),  # the probe's in_port is not fixed
    ("ip,dl_dst=02:ed:00:00:00:02", MAYBE),
    ("ip,nw_dst=fe80::1", NO),  # malformed for IPv4: never matches
    ("udp,tp_src=zz", NO),
])
def test_covers(match, want):
    assert covers(_flow(match), PROBE) == want


def test_probe_count_route_table():
    fl = flows("dumpflows_route.txt")
    assert probe_count(fl, PROBE) == 7  # the route's 7; the table-miss's 3 do not count
    assert youngest_flow_s(fl, PROBE) == pytest.approx(0.261)  # the route's age
    # no route to the destination: the packets would hit the table-miss flow
    unrouted = ProbePacket("10.0.0.1", "10.0.0.9", 17, 1, 1)
    assert probe_count(fl, unrouted) == 3
    assert youngest_flow_s(fl, unrouted) == pytest.approx(0.332)
    assert probe_count([], PROBE) == 0 and youngest_flow_s([], PROBE) is None


def test_probe_count_steering_and_tables():
    fl = flows("dumpflows_steering.txt")
    # table 0: the default-priority masked flow (4) is highest; table 1: dl_dst flow may
    # match (0) plus the ip flow below it (4): a packet is counted once per table, max 4
    assert probe_count(fl, PROBE) == 4
    # a steering rule above the route catches the probe: both count (it may match)
    fl2 = [_flow("ip,nw_dst=10.0.0.2", 100, 5), _flow("udp,in_port=3,nw_dst=10.0.0.2", 300, 7),
           _flow("", 0, 50)]
    assert probe_count(fl2, PROBE) == 12


ADJ = {"a": {"b", "c"}, "b": {"a", "d"}, "c": {"a", "d"}, "d": {"b", "c"}}  # a square


TRIANGLE = {"e": {"m", "w"}, "m": {"e", "w"}, "w": {"e", "m"}}


def test_order_path():
    assert order_path(ADJ, "a", {"a", "b", "d"}) == ["a", "b", "d"]
    assert order_path(ADJ, "a", {"a", "b", "d"}, "d") == ["a", "b", "d"]
    assert order_path(ADJ, "a", {"a", "b", "d"}, "b") is None  # cannot end at b
    assert order_path(ADJ, "a", {"a"}) == ["a"]
    assert order_path(ADJ, "a", {"a", "b", "c"}) is None  # a fork: no single walk
    assert order_path(ADJ, "a", {"a", "d"}) is None  # a gap
    assert order_path(ADJ, "a", {"b", "d"}) is None  # the start is missing
    assert order_path(ADJ, "a", set()) is None
    # a loop: the unused shortcut e-w does not confuse the order once the end is known
    assert order_path(TRIANGLE, "e", {"e", "m", "w"}, "w") == ["e", "m", "w"]
    assert order_path(TRIANGLE, "e", {"e", "m", "w"}) is None  # e-m-w or e-w-m
    # all four of a square from a to d: a-b-d-c? no; a-b-d ends early; none fits
    assert order_path(ADJ, "a", set(ADJ), "d") is None
    assert order_path(ADJ, "a", set(ADJ), "c") == ["a", "b", "d", "c"]


def test_judge_path():
    ok = judge_path("a", "d", ["a", "b", "d"], {"a": 200, "b": 201, "d": 200, "c": 3}, 200, ADJ)
    assert ok.status == MATCH and ok.measured == ("a", "b", "d") and ok.crossed == (
        "a", "b", "d")
    wrong = judge_path("a", "d", ["a", "b", "d"], {"a": 200, "c": 200, "d": 200}, 200, ADJ)
    assert wrong.status == MISMATCH and "a > c > d" in wrong.reason
    short = judge_path("a", "d", ["a", "b", "d"], {"a": 200, "b": 199, "d": 200}, 200, ADJ)
    assert short.status == MISMATCH and "do not form one chain" in short.reason
    none = judge_path("a", "d", ["a", "b", "d"], {}, 200, ADJ)
    assert none.status == MISMATCH and "no switch carried 200" in none.reason
    noisy = judge_path("a", "d", ["a", "b", "d"], {"a": 200, "b": 200, "c": 260, "d": 200},
                       200, ADJ, noisy=["c"])
    assert noisy.status == INCONCLUSIVE and "background traffic on c" in noisy.reason
    # a counter that went down, or a flow younger than the probe: the flow was replaced
    dropped = judge_path("a", "d", ["a", "b", "d"], {"a": 200, "b": -150, "d": 200}, 200, ADJ)
    assert dropped.status == INCONCLUSIVE and "flows on b were replaced" in dropped.reason
    young = judge_path("a", "d", ["a", "b", "d"], {"a": 200, "b": 120, "d": 200}, 200, ADJ,
                       reset=["b"])
    assert young.status == INCONCLUSIVE
    # ... but a full match on the announced chain stands
    assert judge_path("a", "d", ["a", "b", "d"], {"a": 200, "b": 200, "d": 200, "c": -5}, 200,
                      ADJ, reset=["c"]).status == MATCH
    unannounced = judge_path("a", "d", None, {"a": 200}, 200, ADJ)
    assert unannounced.status == NO_PATH
    doc = json.loads(json.dumps(check_to_dict(ok)))
    assert doc["measured"] == ["a", "b", "d"] and doc["status"] == "match"
    text = render_checks([ok, wrong])
    assert "MATCH        a -> d" in text and "1/2 pairs" in text


def test_schedule_rounds_share_no_host():
    pairs = [(m, c) for m in "abcdefgh" for c in "0123456789"]
    rounds = schedule_rounds(pairs)
    assert sorted(p for r in rounds for p in r) == sorted(pairs)
    for r in rounds:
        srcs, dsts = [p[0] for p in r], [p[1] for p in r]
        assert len(set(srcs)) == len(srcs) and len(set(dsts)) == len(dsts)
    assert len(rounds) == 10  # the minimum: each source has 10 pairs
    both = schedule_rounds([("a", "b"), ("b", "a"), ("c", "d")])
    assert both == [[("a", "b"), ("c", "d")], [("b", "a")]]
