"""Steering against the fake flow table: placement both ways with address rewrite, affinity,
capacity, expiry, spoofing, refusal, idle expiry, re-pathing and adoption after a restart."""

from __future__ import annotations

import struct

import pytest
from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as parser

from controller import ofmsg
from controller.core import ControllerCore
from controller.packet import parse_ipv4_frame, udp_frame
from controller.plan import parse_plan
from controller.steering import COOKIE_STEER, PRIO_STEER, SERVICE_MAC
from gateway.protocol import Advert, encode_advert
from tests.fakeof import (
    FakeNetwork,
    TraceError,
    ack_barriers,
    bring_up,
    deliver_probes,
    ring_plan_doc,
    trace_packet,
)
from topology.addressing import ADV_ADDR, ADV_PORT

SVC = "10.0.255.1"
WALL0 = 1_800_000_000.0


def steering_plan_doc(budget_ms: float = 30.0) -> dict:
    """The ring (beijing 1, shanghai 2, guangzhou 3, chengdu 4) with gateways at shanghai and
    chengdu. beijing->shanghai is 3 ms one way via chengdu/guangzhou (10 ms direct), back
    0.5 ms; beijing<->chengdu is 1 ms each way."""
    doc = ring_plan_doc()
    for h in doc["hosts"]:
        h["prefixlen"] = 16
    doc["services"] = [{"name": "infer", "address": SVC, "port": 7000, "budget_ms": budget_ms,
                        "units": 2, "kinds": ["cuda"], "service_class": "interactive"}]
    doc["gateways"] = [
        {"id": site, "site": site, "host": site, "ip": f"10.0.0.{dpid}",
         "mac": f"02:00:00:00:00:{dpid:02x}", "dpid": dpid, "port": 1, "hub": None,
         "units": {"cuda": 8}, "price": price, "green": green, "services": ["infer"]}
        for site, dpid, price, green in (("shanghai", 2, 0.6, 0.2), ("chengdu", 4, 0.3, 0.7))]
    return doc


class Clock:
    def __init__(self) -> None:
        self.t = WALL0

    def __call__(self) -> float:
        return self.t


def setup(policy: str = "nearest", budget_ms: float = 30.0):
    plan = parse_plan(steering_plan_doc(budget_ms))
    wall = Clock()
    core = ControllerCore(plan, 1.0, now=0.0, policy=policy, wall=wall)
    net = FakeNetwork(plan)
    msgs = bring_up(core, net, 0.0)
    ack_barriers(core, msgs)
    return plan, core, net, wall


def advert_frame(plan, gw: str, seq: int, free: int, total: int = 8, delay_ms: float = 0.0,
                 ts: float = WALL0, epoch: int = 1, src: str | None = None,
                 jobs: int | None = None) -> tuple[int, bytes]:
    g = next(x for x in plan.gateways if x.id == gw)
    host = plan.host(src) if src else plan.host(g.host)
    adv = Advert(gw=gw, epoch=epoch, seq=seq, ts=ts, interval=1.0,
                 units={"cuda": (total, free)}, util=1 - free / total, queue=0,
                 delay_ms=delay_ms, price=g.price, green=g.green, services=("infer",),
                 jobs=jobs)
    frame = udp_frame(host.mac, SERVICE_MAC, host.ip, ADV_ADDR, 40000, ADV_PORT,
                      encode_advert(adv))
    return host.dpid, frame


def advertise(core, plan, now, wall, seq, **free):
    for gw, f in free.items():
        dpid, frame = advert_frame(plan, gw, seq, f, ts=wall.t)
        core.packet_in(dpid, 1, frame, now)


def tcp_syn(plan, client: str, sport: int, dst: str = SVC, dport: int = 7000,
            flags: int = 0x02) -> bytes:
    h = plan.host(client)
    tcp = struct.pack("!HHIIBBHHH", sport, dport, 1000, 0, 5 << 4, flags, 65535, 0, 0)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 1, 0, 64, 6, 0,
                     bytes(map(int, h.ip.split("."))), bytes(map(int, dst.split("."))))
    return bytes.fromhex(SERVICE_MAC.replace(":", "")) + bytes.fromhex(
        h.mac.replace(":", "")) + b"\x08\x00" + ip + tcp


def pkt_fields(frame: bytes, in_port: int = 1) -> dict:
    p = parse_ipv4_frame(frame)
    return {"eth_type": 0x0800, "eth_src": p.eth_src, "eth_dst": p.eth_dst,
            "ipv4_src": p.ip_src, "ipv4_dst": p.ip_dst, "ip_proto": p.proto,
            "tcp_src": p.sport, "tcp_dst": p.dport}


def open_flow(core, net, plan, client, sport, now):
    frame = tcp_syn(plan, client, sport)
    h = plan.host(client)
    msgs = core.packet_in(h.dpid, h.port, frame, now)
    net.apply(msgs)
    return msgs, frame


def test_first_packet_is_punted_then_placed_both_ways_with_rewrite():
    plan, core, net, wall = setup()
    frame = tcp_syn(plan, "beijing", 5555)
    with pytest.raises(TraceError, match="punted"):
        trace_packet(net, pkt_fields(frame), 1, 1)
    advertise(core, plan, 1.0, wall, 1, shanghai=8, chengdu=8)
    assert sorted(s.gw for s in core.registry.alive(1.0)) == ["chengdu", "shanghai"]
    msgs, frame = open_flow(core, net, plan, "beijing", 5555, 1.0)
    # nearest: chengdu (1 + 1 ms) beats shanghai (3 + 0.5 ms)
    sites, delivered, host = trace_packet(net, pkt_fields(frame), 1, 1)
    assert host == "chengdu" and sites == ["beijing", "chengdu"]
    assert delivered["ipv4_dst"] == "10.0.0.4" and delivered["eth_dst"] == "02:00:00:00:00:04"
    # the first packet itself goes on with the rewrite
    po = [m for m in msgs if isinstance(m, parser.OFPPacketOut)]
    assert len(po) == 1 and po[0].in_port == 1
    assert [a.key for a in po[0].actions[:2]] == ["eth_dst", "ipv4_dst"]
    # the reply comes back from the service address, not the gateway's
    reply = {"eth_type": 0x0800, "eth_src": "02:00:00:00:00:04", "eth_dst": "02:00:00:00:00:01",
             "ipv4_src": "10.0.0.4", "ipv4_dst": "10.0.0.1", "ip_proto": 6,
             "tcp_src": 7000, "tcp_dst": 5555}
    sites, back, host = trace_packet(net, reply, 4, 1)
    assert host == "beijing" and back["ipv4_src"] == SVC and back["eth_src"] == SERVICE_MAC
    dec = core.steering.decisions[-1]
    assert dec.gateway == "chengdu" and dec.rtt_ms == pytest.approx(2.0)
    assert "nearest" in dec.reason and dec.feasible == 2
    # the rules carry the steering cookie and an idle timeout; only the ingress one notifies
    fms = [m for m in msgs if isinstance(m, parser.OFPFlowMod)]
    assert all(m.cookie == COOKIE_STEER and m.idle_timeout == 10 and m.priority == PRIO_STEER
               for m in fms)
    assert [m.flags for m in fms].count(ofp.OFPFF_SEND_FLOW_REM) == 1
    assert fms[-1].flags == ofp.OFPFF_SEND_FLOW_REM and fms[-1].datapath.id == 1


def test_multi_hop_path_is_pinned_and_latency_shortest():
    plan, core, net, wall = setup()
    advertise(core, plan, 1.0, wall, 1, shanghai=8)  # chengdu silent: not a candidate
    _, frame = open_flow(core, net, plan, "beijing", 6000, 1.0)
    sites, delivered, host = trace_packet(net, pkt_fields(frame), 1, 1)
    assert host == "shanghai" and sites == ["beijing", "chengdu", "guangzhou", "shanghai"]
    reply = {"eth_type": 0x0800, "ipv4_src": "10.0.0.2", "ipv4_dst": "10.0.0.1",
             "ip_proto": 6, "tcp_src": 7000, "tcp_dst": 6000}
    sites, back, host = trace_packet(net, reply, 2, 1)
    assert sites == ["shanghai", "beijing"] and back["ipv4_src"] == SVC  # 0.5 ms direct
    assert core.steering.decisions[-1].rtt_ms == pytest.approx(3.5)


def test_full_gateway_gets_no_new_flows_but_existing_flows_stay():
    plan, core, net, wall = setup()
    advertise(core, plan, 1.0, wall, 1, shanghai=8, chengdu=8)
    _, f1 = open_flow(core, net, plan, "beijing", 1001, 1.0)
    assert trace_packet(net, pkt_fields(f1), 1, 1)[2] == "chengdu"
    wall.t += 0.5
    advertise(core, plan, 1.5, wall, 2, shanghai=8, chengdu=0)  # chengdu full
    _, f2 = open_flow(core, net, plan, "beijing", 1002, 1.5)
    assert trace_packet(net, pkt_fields(f2), 1, 1)[2] == "shanghai"
    assert trace_packet(net, pkt_fields(f1), 1, 1)[2] == "chengdu"  # affinity
    # the same 5-tuple punted again (raced its rules) keeps its gateway
    again = core.packet_in(1, 1, f1, 1.6)
    assert [type(m).__name__ for m in again] == ["OFPPacketOut"]
    assert again[0].actions[1].value == "10.0.0.4"


def test_reservations_spread_a_burst_before_the_next_advert():
    plan, core, net, wall = setup()
    advertise(core, plan, 1.0, wall, 1, shanghai=8, chengdu=4)  # 2 units per flow
    gws = []
    for sport in range(2000, 2004):
        _, f = open_flow(core, net, plan, "beijing", sport, 1.0)
        gws.append(trace_packet(net, pkt_fields(f), 1, 1)[2])
    assert gws == ["chengdu", "chengdu", "shanghai", "shanghai"]


def test_jobs_count_settles_exactly_the_reservations_an_advert_shows():
    """A triggered advert arriving between two placements must neither double-count the
    first job (advert free units AND its reservation) nor forget the second."""
    plan, core, net, wall = setup()
    for gw in ("shanghai", "chengdu"):
        dpid, frame = advert_frame(plan, gw, 1, 4, total=4, jobs=0)
        core.packet_in(dpid, 1, frame, 1.0)
    _, f1 = open_flow(core, net, plan, "beijing", 2100, 1.0)
    assert trace_packet(net, pkt_fields(f1), 1, 1)[2] == "chengdu"
    dpid, frame = advert_frame(plan, "chengdu", 2, 2, total=4, jobs=1)  # job 1 started
    core.packet_in(dpid, 1, frame, 1.01)
    assert core.registry.effective_free("chengdu", ["cuda"], 1.01) == 2
    _, f2 = open_flow(core, net, plan, "beijing", 2101, 1.02)
    assert trace_packet(net, pkt_fields(f2), 1, 1)[2] == "chengdu"
    _, f3 = open_flow(core, net, plan, "beijing", 2102, 1.03)  # chengdu now full
    assert trace_packet(net, pkt_fields(f3), 1, 1)[2] == "shanghai"
    dpid, frame = advert_frame(plan, "chengdu", 3, 0, total=4, jobs=2)  # job 2 started
    core.packet_in(dpid, 1, frame, 1.05)
    assert core.registry.effective_free("chengdu", ["cuda"], 1.05) == 0


def test_silent_gateway_expires_and_is_avoided():
    plan, core, net, wall = setup()
    advertise(core, plan, 1.0, wall, 1, shanghai=8, chengdu=8)
    for i, t in enumerate((2.0, 3.0, 4.0, 5.0), start=2):
        wall.t = WALL0 + t - 1.0
        advertise(core, plan, t, wall, i, shanghai=8)  # chengdu fell silent after t=1
        ack_barriers(core, deliver_probes(core, net, core.tick(t), t))
    assert [s.gw for s in core.registry.alive(5.0)] == ["shanghai"]
    assert core.registry.counters["expired"] == 1
    _, f = open_flow(core, net, plan, "beijing", 3000, 5.0)
    assert trace_packet(net, pkt_fields(f), 1, 1)[2] == "shanghai"


def test_spoofed_advert_from_a_metro_port_is_rejected():
    plan, core, net, wall = setup()
    dpid, frame = advert_frame(plan, "chengdu", 1, 8, src="beijing")
    assert dpid == 1
    core.packet_in(1, 1, frame, 1.0)
    assert core.registry.alive(1.0) == [] and core.counters["adverts_rejected"] == 1
    assert core.registry.counters["port_mismatch"] + core.registry.counters["ip_mismatch"] == 1
    # garbage to the collector is counted, never raised
    bad = udp_frame("02:00:00:00:00:04", SERVICE_MAC, "10.0.0.4", ADV_ADDR, 1, ADV_PORT,
                    b"CATS\x01\x00\xff\xffgarbage")
    assert core.packet_in(4, 1, bad, 1.0) == []
    assert core.counters["adverts_malformed"] == 1


def test_spoofed_client_source_is_not_placed():
    plan, core, net, wall = setup()
    advertise(core, plan, 1.0, wall, 1, chengdu=8)
    frame = tcp_syn(plan, "beijing", 4000)
    assert core.packet_in(3, 1, frame, 1.0) == []  # beijing's address on guangzhou's port
    assert core.counters["flows_spoofed"] == 1 and not core.steering.placements


def test_no_gateway_within_budget_gets_a_reset_and_a_logged_reason():
    plan, core, net, wall = setup(budget_ms=1.5)
    advertise(core, plan, 1.0, wall, 1, shanghai=8, chengdu=8)
    msgs, frame = open_flow(core, net, plan, "beijing", 7777, 1.0)
    (po,) = msgs
    rst = parse_ipv4_frame(bytes(po.data))
    assert po.actions[0].port == 1
    assert rst.ip_src == SVC and rst.ip_dst == "10.0.0.1" and rst.tcp_flags & 0x04
    assert rst.sport == 7000 and rst.dport == 7777 and rst.tcp_ack == 1001
    dec = core.steering.decisions[-1]
    assert dec.gateway is None and "1.5 ms budget" in dec.reason and "chengdu" in dec.reason
    assert core.counters["flows_refused"] == 1


def test_idle_expiry_ends_the_placement_and_removes_its_rules():
    plan, core, net, wall = setup()
    advertise(core, plan, 1.0, wall, 1, shanghai=8)
    msgs, frame = open_flow(core, net, plan, "beijing", 8000, 1.0)
    ingress = msgs[-2]  # the client-switch rule, sent last before the packet-out
    assert ingress.datapath.id == 1 and ingress.flags == ofp.OFPFF_SEND_FLOW_REM
    before = sum(t.flow_count(PRIO_STEER) for t in net.tables.values())
    assert before == 6  # 4 forward hops (beijing-chengdu-guangzhou-shanghai), 2 back
    net.tables[1].flows = [f for f in net.tables[1].flows if f.priority != PRIO_STEER]
    out = core.flow_removed(1, COOKIE_STEER, dict(ingress.match.items()), 12.0)
    net.apply(out)
    assert not core.steering.placements and core.counters["flows_ended"] == 1
    assert sum(t.flow_count(PRIO_STEER) for t in net.tables.values()) == 0


def test_link_cut_moves_placements_to_a_new_path_to_the_same_gateway():
    plan, core, net, wall = setup()
    advertise(core, plan, 1.0, wall, 1, shanghai=8)
    _, frame = open_flow(core, net, plan, "beijing", 9000, 1.0)
    assert trace_packet(net, pkt_fields(frame), 1, 1)[0] == [
        "beijing", "chengdu", "guangzhou", "shanghai"]
    net.down.add("chengdu-beijing")
    from controller.core import PortInfo
    msgs = core.port_status(1, ofp.OFPPR_MODIFY, PortInfo(3, ofp.OFPPS_LINK_DOWN, 0), 2.0)
    msgs += core.port_status(4, ofp.OFPPR_MODIFY, PortInfo(2, ofp.OFPPS_LINK_DOWN, 0), 2.0)
    net.apply(msgs)
    sites, _, host = trace_packet(net, pkt_fields(frame), 1, 1)
    assert host == "shanghai" and sites == ["beijing", "shanghai"]
    assert core.counters["flows_repathed"] == 1


def test_restarted_controller_adopts_placements_and_deletes_only_foreign_flows():
    plan, core, net, wall = setup()
    advertise(core, plan, 1.0, wall, 1, shanghai=8, chengdu=8)
    open_flow(core, net, plan, "beijing", 1234, 1.0)
    net.tables[1].apply(ofmsg.stub_datapath(1).ofproto_parser.OFPFlowMod(
        datapath=ofmsg.stub_datapath(1), cookie=0x1234, priority=50,
        match=parser.OFPMatch(eth_type=0x86DD), instructions=[]))
    # a new controller process: same plan, empty memory
    fresh = ControllerCore(plan, 1.0, now=0.0, policy="least-loaded", wall=wall)
    before = {d: len(t.flows) for d, t in net.tables.items()}
    msgs = bring_up(fresh, net, 0.0)
    assert not any(isinstance(m, parser.OFPFlowMod) and m.command == ofp.OFPFC_DELETE
                   and m.cookie_mask == 0 for m in msgs)
    out = []
    for dpid, table in net.tables.items():
        entries = [(f.priority, f.cookie, _fields(f), _setfields(f)) for f in table.flows]
        out += fresh.flow_stats(dpid, entries, False, 0.5)
    net.apply(out)
    assert fresh.counters["flows_adopted"] == 1 and fresh.counters["foreign_flows_deleted"] == 1
    (p,) = fresh.steering.placements.values()
    assert p.gateway == "chengdu" and p.client == "beijing" and p.adopted
    after = {d: len(t.flows) for d, t in net.tables.items()}
    assert after == {**before, 1: before[1] - 1}  # no duplicates; only the foreign flow left
    frame = tcp_syn(plan, "beijing", 1234)
    assert trace_packet(net, pkt_fields(frame), 1, 1)[2] == "chengdu"


def _fields(flow) -> dict:
    import ipaddress
    out = {}
    for k, (v, _m) in flow.match.items():
        if k.startswith("ipv4"):
            out[k] = str(ipaddress.IPv4Address(v))
        elif k.startswith("eth_") and k != "eth_type":
            out[k] = ":".join(f"{(v >> s) & 0xFF:02x}" for s in range(40, -1, -8))
        else:
            out[k] = v
    return out


def _setfields(flow) -> list:
    """The actions as the app hands them to the core (set-fields, outputs, groups)."""
    from types import SimpleNamespace

    from controller.app import set_fields
    return set_fields([SimpleNamespace(actions=flow.actions)])


def test_policy_switch_and_a_raising_plugin_falls_back(tmp_path, monkeypatch):
    plan, core, net, wall = setup()
    advertise(core, plan, 1.0, wall, 1, shanghai=8, chengdu=2)
    assert core.set_policy("least-loaded") == "least-loaded"
    _, f = open_flow(core, net, plan, "beijing", 1500, 1.0)
    assert trace_packet(net, pkt_fields(f), 1, 1)[2] == "shanghai"
    mod = tmp_path / "badpol.py"
    mod.write_text("from controller.policy import Policy\n"
                   "class Boom(Policy):\n"
                   "    name = 'boom'\n"
                   "    def score(self, req, cand):\n"
                   "        raise RuntimeError('kaput')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    core.set_policy("badpol:Boom")
    _, f = open_flow(core, net, plan, "beijing", 1501, 1.0)
    assert trace_packet(net, pkt_fields(f), 1, 1)[2] == "shanghai"  # least-loaded again
    assert core.steering.policy.name == "least-loaded"
    assert "kaput" in core.steering.policy_errors[-1]["error"]
    from controller.policy import PolicyError
    with pytest.raises(PolicyError):
        core.set_policy("no_such_module:X")
    assert core.steering.policy.name == "least-loaded"


def test_api_views_are_json():
    import json
    plan, core, net, wall = setup()
    advertise(core, plan, 1.0, wall, 1, shanghai=8, chengdu=8)
    open_flow(core, net, plan, "beijing", 1600, 1.0)
    for r in ("status", "topology", "links", "gateways", "services", "decisions", "counters",
              "policy"):
        json.dumps(core.api_view(r, {}, 1.0))
    assert core.api_view("services", {}, 1.0)[0]["active_flows"] == 1
    with pytest.raises(KeyError):
        core.api_view("nope", {}, 1.0)


def test_feasibility_is_per_accelerator_kind():
    """5 free CUDA + 5 free CANN units cannot run a 6-unit job: a job holds one kind."""
    doc = steering_plan_doc()
    doc["services"][0].update(units=6, kinds=["cuda", "cann"])
    for g in doc["gateways"]:
        g["units"] = {"cuda": 8, "cann": 8}
    plan = parse_plan(doc)
    wall = Clock()
    core = ControllerCore(plan, 1.0, now=0.0, wall=wall)
    net = FakeNetwork(plan)
    ack_barriers(core, bring_up(core, net, 0.0))
    for seq, (cuda, cann) in enumerate(((5, 5), (8, 6)), start=1):
        g = next(x for x in plan.gateways if x.id == "chengdu")
        adv = Advert(gw="chengdu", epoch=1, seq=seq, ts=wall.t, interval=1.0,
                     units={"cuda": (8, cuda), "cann": (8, cann)}, util=0.5, queue=0,
                     delay_ms=0.0, price=g.price, green=g.green, services=("infer",), jobs=0)
        core.packet_in(4, 1, udp_frame(g.mac, SERVICE_MAC, g.ip, ADV_ADDR, 40000, ADV_PORT,
                                       encode_advert(adv)), 1.0 + seq)
        msgs, frame = open_flow(core, net, plan, "beijing", 3300 + seq, 1.0 + seq)
        if seq == 1:
            assert core.steering.decisions[-1].gateway is None  # refused: no kind has 6
            assert "none with 6 free" in core.steering.decisions[-1].reason
        else:
            assert trace_packet(net, pkt_fields(frame), 1, 1)[2] == "chengdu"
            assert core.registry.reserved("chengdu", 3.0) == {"cuda": 6}  # the 8-free kind
