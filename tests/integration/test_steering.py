"""Compute-aware steering on real Mininet + OVS + controller process + gateway agents.

One emulation of tests/integration/steer_topo.py (metro, hub, near and far clusters) is shared
by the module; each test leaves the gateways as it found them.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from emulation.network import AgentOptions, ControllerConfig, Emulation
from tests.integration.conftest import assert_clean
from tests.integration.steer_topo import SERVICE, steering_network

PY = sys.executable


@pytest.fixture(scope="module")
def emu():
    e = Emulation(steering_network(), log=lambda *_: None,
                  agents=AgentOptions(adv_interval=0.5),
                  controller=ControllerConfig(flow_idle_timeout=5))
    e.start()
    try:
        yield e
    finally:
        rid = e.run_id
        e.stop()
        assert_clean(rid)
        log = e.controller_log
        assert not log.exists()  # the work dir went with the run


def job(emu, duration=0.2, units=2, timeout=5.0) -> dict:
    out = emu.net["metro"].cmd(f"{PY} -m gateway.client --addr {SERVICE} --service infer "
                               f"--units {units} --duration {duration} --timeout {timeout}")
    return json.loads(out.strip().splitlines()[-1])


def start_job(emu, duration: float):
    return emu.net["metro"].popen(
        [PY, "-m", "gateway.client", "--addr", SERVICE, "--service", "infer", "--units", "2",
         "--duration", str(duration), "--timeout", "10"], stdout=subprocess.PIPE,
        stderr=subprocess.PIPE)


def wait_until(pred, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def free_units(emu, gw: str) -> int | None:
    g = emu.api("gateways")["gateways"].get(gw)
    return None if g is None else g["advert"]["units"]["cuda"][1]


def controller_log_clean(emu) -> None:
    text = emu.controller_log.read_text(errors="replace")
    assert "Traceback" not in text and "FAILED" not in text, text[-3000:]


def test_client_reaches_the_gateway_the_policy_chose(emu):
    r = job(emu)
    assert r["ok"] and r["done"] and r["gw"] == "near", r  # nearest: 4 ms vs 18 ms RTT
    dec = emu.api("decisions?limit=1")["decisions"][-1]
    assert dec["gateway"] == "near" and dec["path"] == ["metro", "hubx", "near"]
    assert emu.api("policy", {"policy": "greenest"})["policy"] == "greenest"
    try:
        r = job(emu)
        assert r["gw"] == "far", r  # cheaper and greener, and 18 ms fits the 40 ms budget
        assert emu.api("decisions?limit=1")["decisions"][-1]["policy"] == "greenest"
    finally:
        emu.api("policy", {"policy": "nearest"})
    controller_log_clean(emu)


def test_full_gateway_gets_no_new_flows_and_existing_flows_stay(emu):
    wait_until(lambda: free_units(emu, "near") == 4, 5, "near to be idle")
    # two at once: 2 x 2 units fill near's 4 (the controller's reservations and the adverts'
    # job counts must neither double-count nor overbook)
    long_jobs = [start_job(emu, 4.0) for _ in range(2)]
    try:
        wait_until(lambda: free_units(emu, "near") == 0, 5, "near to advertise it is full")
        r = job(emu)
        assert r["ok"] and r["gw"] == "far", r
    finally:
        outs = [p.communicate(timeout=20)[0] for p in long_jobs]
    for out in outs:
        res = json.loads(out.decode().strip().splitlines()[-1])
        assert res["ok"] and res["done"] and res["gw"] == "near", res  # affinity kept


def test_silent_gateway_is_expired_and_avoided(emu):
    emu.stop_gateways(["near"])
    try:
        wait_until(lambda: "near" not in emu.api("gateways")["gateways"]
                   and emu.api("counters")["gateways"]["expired"] >= 1, 5,
                   "near to expire (3 x 0.5 s intervals)")
        r = job(emu)
        assert r["ok"] and r["gw"] == "far", r
    finally:
        emu.start_gateways(["near"])
        emu.wait_gateways(10)


SPOOF = r"""
import socket, time
from gateway.protocol import Advert, encode_advert
from topology.addressing import ADV_ADDR, ADV_PORT
adv = Advert(gw="near", epoch=time.time_ns() + 1, seq=0, ts=time.time(), interval=0.5,
             units={"cuda": (4000, 4000)}, util=0.0, queue=0, delay_ms=0.0, price=0.01,
             green=1.0, services=("infer",))
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for _ in range(3):
    s.sendto(encode_advert(adv), (ADV_ADDR, ADV_PORT))
    time.sleep(0.05)
print("sent")
"""


def test_spoofed_advertisement_from_a_metro_host_is_rejected(emu, tmp_path):
    before = emu.api("counters")["gateways"]["port_mismatch"]
    script = tmp_path / "spoof.py"
    script.write_text(SPOOF)
    assert "sent" in emu.net["metro"].cmd(f"{PY} {script}")
    wait_until(lambda: emu.api("counters")["gateways"]["port_mismatch"] >= before + 3, 5,
               "three port_mismatch rejections")
    assert emu.api("gateways")["gateways"]["near"]["advert"]["units"]["cuda"][0] == 4


FLOOD = r"""
import os, random
from scapy.all import Ether, IP, TCP, UDP, Raw, sendp
rnd = random.Random(7)
mac = open("/sys/class/net/eth0/address").read().strip()
eth = Ether(src=mac, dst="02:ed:ff:00:00:01")
frames = []
for i in range(1500):
    kind = i % 6
    if kind == 0:    # truncated IPv4 header
        raw = bytes(eth / IP(src="10.0.0.1", dst="{svc}") / TCP(dport=7000))
        raw = raw[:14 + rnd.randint(1, 19)]
    elif kind == 1:  # bogus IHL / total length
        p = bytearray(bytes(eth / IP(src="10.0.0.1", dst="{svc}") / TCP(dport=7000)))
        p[14] = 0x40 | rnd.randint(0, 15); p[16:18] = rnd.randint(0, 65535).to_bytes(2, "big")
        raw = bytes(p)
    elif kind == 2:  # fuzzed advertisement
        raw = bytes(eth / IP(src="10.0.0.1", dst="10.0.255.254") / UDP(dport=6400) /
                    Raw(b"CATS\x01" + os.urandom(rnd.randint(0, 1400))))
    elif kind == 3:  # UDP length lies
        p = bytearray(bytes(eth / IP(src="10.0.0.1", dst="10.0.255.254") / UDP(dport=6400)
                            / Raw(b"x" * 20)))
        p[38:40] = rnd.randint(0, 65535).to_bytes(2, "big")
        raw = bytes(p)
    elif kind == 4:  # random TCP flags / offsets to the service
        p = bytearray(bytes(eth / IP(src="10.0.0.1", dst="{svc}")
                            / TCP(sport=rnd.randint(1, 65535), dport=7000,
                                  flags=rnd.randint(0, 255))))
        p[46] = rnd.randint(0, 255)
        raw = bytes(p)
    else:            # garbage after a valid Ethernet header
        raw = bytes(eth)[:12] + b"\x08\x00" + os.urandom(rnd.randint(0, 200))
    frames.append(raw)
sendp([Ether(f) for f in frames], iface="eth0", verbose=False)
print("flooded", len(frames))
"""


def test_malformed_flood_leaves_the_controller_responsive(emu, tmp_path):
    script = tmp_path / "flood.py"
    script.write_text(FLOOD.replace("{svc}", SERVICE))
    out = emu.net["metro"].cmd(f"{PY} {script}")
    assert "flooded 1500" in out, out
    t0 = time.monotonic()
    counters = emu.api("counters")["controller"]
    assert time.monotonic() - t0 < 2.0
    assert counters["ip_malformed"] + counters["adverts_malformed"] > 0, counters
    assert emu.controller.proc.poll() is None
    r = job(emu)
    assert r["ok"] and r["done"], r
    assert emu.controller_status()["ready"]
    controller_log_clean(emu)


def flow_table(emu) -> dict[str, list[str]]:
    """Each bridge's flows without counters/durations (to compare before and after)."""
    out = {}
    for sw in emu.plan.switches:
        text = subprocess.run(["ovs-ofctl", "-O", "OpenFlow13", "dump-flows", sw.name],
                              capture_output=True, text=True, check=True).stdout
        rows = []
        for line in text.splitlines()[1:]:
            parts = [p for p in line.strip().split(", ")
                     if not p.startswith(("duration=", "n_packets=", "n_bytes=", "idle_age=",
                                          "hard_age="))]
            rows.append(", ".join(parts))
        out[sw.name] = sorted(rows)
    return out


def test_controller_restart_keeps_established_flows_and_resyncs(emu):
    wait_until(lambda: free_units(emu, "near") == 4, 5, "near to be idle")
    running = start_job(emu, 5.0)
    wait_until(lambda: emu.api("decisions?limit=1")["decisions"][-1:] and
               emu.api("counters")["controller"]["flows_placed"] > 0 and
               free_units(emu, "near") == 2, 5, "the long job to start")
    sport = emu.api("decisions?limit=1")["decisions"][-1]["flow"][3]
    before = flow_table(emu)
    emu.restart_controller(kill=True)
    st = emu.api("status")
    assert st["counters"]["flows_adopted"] >= 1
    assert st["counters"]["foreign_flows_deleted"] == 0
    wait_until(lambda: set(emu.api("gateways")["gateways"]) == {"near", "far"}, 5,
               "gateways to re-register")
    after = flow_table(emu)

    def mine(rows):  # base and route rules, and the running job's placement
        return [r for r in rows if "priority=200" not in r or f"tp_src={sport}" in r
                or f"tp_dst={sport}" in r]
    for name in before:  # the same rules, none duplicated (older placements may idle out)
        assert mine(after[name]) == mine(before[name]), (name, before[name], after[name])
    assert sum(len(mine(r)) for r in after.values()) > 0
    out, _ = running.communicate(timeout=20)
    res = json.loads(out.decode().strip().splitlines()[-1])
    assert res["ok"] and res["done"] and res["gw"] == "near", res
    assert job(emu)["ok"]
    controller_log_clean(emu)
