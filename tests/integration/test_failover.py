"""Fibre cuts on real Mininet + OVS + controller: fast-failover groups move traffic in the switch.

Topology (one-way delays, both directions)::

    east (metro) --1 ms-- hubn --1 ms-- dc (cluster)
        \\                    \\1.5 ms     /
         \\--2 ms--------- hubs --2 ms--/

east->dc goes east-hubn-dc; its loop-free alternate at east is hubs (hubs reaches dc in 2 ms
without east). dc->east goes dc-hubn-east; hubn's alternate towards east is hubs (2 ms direct
< 1.5 + 1 ms back through hubn). So cutting east-hubn is covered in the switch at both ends.

A UDP stream each way (1000 packets/s, sequence number and send time in every packet) runs
while ``Emulation.cut_link`` takes both switch ports of east-hubn down. The interruption is
the largest gap, in send time, between consecutive packets that arrived with packets lost in
between, minus the 1 ms send interval (so a stall of the sender itself does not count).
Stated bound: 200 ms per cut (the goal is 50 ms; measured here about 10 ms, but a loaded
2-core VM can stall any process for tens of ms). The controller re-routes afterwards; the
link comes back and traffic must still flow. The cut is repeated CUTS times (median printed).
A second test freezes the controller (SIGSTOP) across the cut: only the switches can fail
over then.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from emulation.network import AgentOptions, Emulation
from tests.integration.conftest import assert_clean
from topology.model import build_network
from topology.services import make_services

PY = sys.executable
SERVICE = "10.0.255.1"
RATE = 1000  # packets/s each way
INTERVAL_MS = 1000 / RATE
BOUND_MS = 200.0  # per cut, in the switch (see the module docstring)
CUTS = 5
PORT = 47000

STREAM = r"""
import json, socket, struct, sys, threading, time
peer, port, rate, duration, out = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), \
    float(sys.argv[4]), sys.argv[5]
rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
rx.bind(("0.0.0.0", port))
rx.settimeout(0.2)
tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
got, sent, done = [], [0], threading.Event()

def send():
    step = int(1e9 / rate)
    t0 = time.monotonic_ns()
    i = 0
    while True:
        now = time.monotonic_ns()
        if now - t0 > duration * 1e9:
            break
        due = t0 + i * step
        if due > now:
            time.sleep((due - now) / 1e9)
        try:
            tx.sendto(struct.pack("!QQ", i, time.monotonic_ns()) + bytes(48), (peer, port))
        except OSError:
            pass  # e.g. no ARP answer yet: counted as lost
        i += 1
    sent[0] = i
    done.set()

threading.Thread(target=send, daemon=True).start()
quiet_since = None
while True:
    try:
        data = rx.recv(128)
    except socket.timeout:
        if done.is_set():
            quiet_since = quiet_since or time.monotonic()
            if time.monotonic() - quiet_since > 0.5:
                break
        continue
    seq, txns = struct.unpack("!QQ", data[:16])
    got.append((seq, txns, time.monotonic_ns()))
with open(out, "w") as f:
    json.dump({"sent": sent[0], "rx": got}, f)
"""


def failover_network():
    sites = [
        {"id": "east", "kind": "metro", "lat": 31.2, "lon": 121.5, "region": "east"},
        {"id": "hubn", "kind": "hub", "lat": 31.4, "lon": 121.0, "region": "east"},
        {"id": "hubs", "kind": "hub", "lat": 30.9, "lon": 121.0, "region": "east"},
        {"id": "dc", "kind": "cluster", "lat": 31.1, "lon": 120.5, "region": "east",
         "hub": "hubn", "compute": {"units": {"cuda": 8}, "energy_price": 0.5,
                                    "green_share": 0.5, "pue": 1.2}},
    ]
    links = [{"a": "east", "b": "hubn", "delay_ms": 1.0},
             {"a": "hubn", "b": "dc", "delay_ms": 1.0},
             {"a": "hubn", "b": "hubs", "delay_ms": 1.5},
             {"a": "east", "b": "hubs", "delay_ms": 2.0},
             {"a": "hubs", "b": "dc", "delay_ms": 2.0}]
    net = build_network(sites, links, name="failover-test")
    services = make_services([{"name": "infer", "address": SERVICE, "port": 7000,
                               "budget_ms": 40.0, "units": 2, "kinds": ["cuda"],
                               "class": "interactive"}], "failover-test")
    return dataclasses.replace(net, services=services)


@pytest.fixture(scope="module")
def emu():
    e = Emulation(failover_network(), log=lambda *_: None,
                  agents=AgentOptions(adv_interval=0.5))
    e.start()
    try:
        yield e
    finally:
        rid = e.run_id
        log = e.controller_log.read_text(errors="replace") if e.work_dir else ""
        e.stop()
        assert_clean(rid)
        assert "Traceback" not in log, log[-3000:]


def wait_until(pred, timeout: float, what: str, step: float = 0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def path(emu, key: str) -> list[str] | None:
    return emu.controller_status().get("paths", {}).get(key)


def interruption(rows: list, t_from: int, t_to: int) -> tuple[float, int]:
    """(interruption in ms, packets lost) among the packets sent between t_from and t_to
    (monotonic ns). The interruption is the largest gap in send time between consecutive
    arrivals with packets lost in between, minus the send interval: a pause of the sender
    itself (a loaded VM) loses nothing and is not counted."""
    rows = sorted(rows)
    inside = [i for i, r in enumerate(rows) if t_from <= r[1] <= t_to]
    if not inside:
        return float("inf"), -1
    lo, hi = max(inside[0] - 1, 0), min(inside[-1] + 1, len(rows) - 1)
    span = rows[lo:hi + 1]
    gaps = [b[1] - a[1] for a, b in zip(span, span[1:]) if b[0] - a[0] > 1]
    lost = (span[-1][0] - span[0][0] + 1) - len(span)
    return (max(gaps) / 1e6 - INTERVAL_MS if gaps else 0.0), lost


def run_streams(emu, tmp_path, tag: str, duration: float):
    script = tmp_path / "stream.py"
    script.write_text(STREAM)
    procs = {}
    for src, dst in (("east", "dc"), ("dc", "east")):
        out = tmp_path / f"{tag}-{src}.json"  # what src received (sent by dst)
        procs[src] = (emu.net[src].popen(
            [PY, str(script), emu.plan.host(dst).ip, str(PORT), str(RATE), str(duration),
             str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE), out)
    return procs


def collect(procs) -> dict:
    res = {}
    for src, (p, out) in procs.items():
        _, err = p.communicate(timeout=30)
        assert p.returncode == 0, err.decode()[-2000:]
        res[src] = json.loads(out.read_text())
    return res


OVS_LOG = Path("/var/log/openvswitch/ovs-vswitchd.log")
STALL = re.compile(r"^(\S+)Z\|\d+\|timeval\|WARN\|Unreasonably long (\d+)ms poll interval")


def ovs_stalls(t0: float, t1: float) -> list[str]:
    """ovs-vswitchd main-loop stalls overlapping [t0, t1] (wall clock), from its log. While
    its main loop is stuck (another emulation adding dozens of ports on this machine, seen
    here for up to 7 s) no port state changes, so no bucket fails over: such a round
    measures the machine, not the failover. No log, no stalls."""
    try:
        with OVS_LOG.open("rb") as f:
            f.seek(max(0, OVS_LOG.stat().st_size - (4 << 20)))
            tail = f.read().decode(errors="replace").splitlines()
    except OSError:
        return []
    out = []
    for line in tail:
        m = STALL.match(line)
        if m:
            end = datetime.fromisoformat(m.group(1)).replace(tzinfo=timezone.utc).timestamp()
            if end >= t0 and end - int(m.group(2)) / 1000 <= t1:
                out.append(line[:120])
    return out


def cut_round(emu, tmp_path, tag: str, freeze: bool = False) -> dict:
    """Streams both ways; cut east-hubn 0.8 s in, restore 1.6 s later. ``freeze``: the
    controller is stopped (SIGSTOP) from just before the cut until after the restore."""
    w0 = time.time()
    procs = run_streams(emu, tmp_path, tag, duration=3.6)
    time.sleep(0.8)
    pid = emu.controller.proc.pid
    if freeze:
        os.kill(pid, signal.SIGSTOP)  # well inside OVS's 5 s inactivity probe
    try:
        t_cut = time.monotonic_ns()
        emu.cut_link("east", "hubn")
        if not freeze:
            wait_until(lambda: path(emu, "east>dc") == ["east", "hubs", "dc"], 30,
                       "the controller to re-route east>dc")
        t_rerouted = time.monotonic_ns()
        time.sleep(max(0.0, 1.6 - (t_rerouted - t_cut) / 1e9))
        t_restore = time.monotonic_ns()
        emu.restore_link("east", "hubn")
    finally:
        if freeze:
            os.kill(pid, signal.SIGCONT)
    got = collect(procs)
    wait_until(lambda: path(emu, "east>dc") == ["east", "hubn", "dc"]
               and path(emu, "dc>east") == ["dc", "hubn", "east"], 30,
               "the old path back after the restore")
    fig: dict = {"round": tag, "stalls": ovs_stalls(w0, time.time())}
    if not freeze:
        fig["controller_reroute_ms"] = round((t_rerouted - t_cut) / 1e6, 1)
    for src, dst in (("east", "dc"), ("dc", "east")):
        rows = got[dst]["rx"]  # dst received what src sent
        cut_ms, cut_lost = interruption(rows, t_cut - 50_000_000, t_restore)
        back_ms, back_lost = interruption(rows, t_restore, t_restore + 600_000_000)
        fig[f"{src}>{dst}"] = {"cut_ms": round(cut_ms, 1), "cut_lost": cut_lost,
                               "restore_ms": round(back_ms, 1), "restore_lost": back_lost,
                               "sent": got[src]["sent"], "received": len(rows),
                               # still flowing half a second after the restore
                               "flowing": any(r[1] > t_restore + 500_000_000 for r in rows)}
    return fig


def test_fibre_cut_fails_over_in_the_switch(emu, tmp_path):
    st = emu.wait_controller_ready(30)
    assert st["paths"]["east>dc"] == ["east", "hubn", "dc"]
    assert st["paths"]["dc>east"] == ["dc", "hubn", "east"]
    cov = st["backup_coverage"]
    print(f"\nbackup coverage on the test topology: {cov}")
    assert cov["covered"] == cov["pairs"] == 6  # every (switch, host switch) pair
    for src, dst in (("east", "dc"), ("dc", "east")):  # ARP through the controller, once
        emu.net[src].cmd(f"ping -c 1 -W 2 {emu.plan.host(dst).ip}")
    ofp_errors = emu.controller_status()["counters"]["of_errors"]
    figures, stalled = [], []
    for i in range(CUTS + 4):  # rounds spoilt by an OVS stall are repeated, up to 4 times
        if len(figures) == CUTS:
            break
        fig = cut_round(emu, tmp_path, f"cut{i}")
        print(f"cut {i}: {fig}")
        (stalled if fig["stalls"] else figures).append(fig)
    assert len(figures) >= 3, f"only {len(figures)} rounds without an OVS stall: {stalled}"
    for flow in ("east>dc", "dc>east"):
        assert all(f[flow]["flowing"] for f in figures), (flow, figures)
        cut = [f[flow]["cut_ms"] for f in figures]
        lost = [f[flow]["cut_lost"] for f in figures]
        back = [f[flow]["restore_ms"] for f in figures]
        print(f"{flow}: interruption at the cut median {statistics.median(cut):.1f} ms "
              f"(all {cut}, lost {lost}); at the restore median "
              f"{statistics.median(back):.1f} ms")
        assert statistics.median(cut) <= BOUND_MS and max(cut) <= 2 * BOUND_MS, (flow, cut)
        assert statistics.median(back) <= BOUND_MS, (flow, back)
    print("controller re-route after the cut (status file), ms:",
          [f["controller_reroute_ms"] for f in figures])
    if stalled:
        print(f"{len(stalled)} round(s) repeated: ovs-vswitchd stalled during them")
    st = emu.controller_status()
    assert st["counters"]["of_errors"] == ofp_errors, st["counters"]


def test_failover_needs_no_controller(emu, tmp_path):
    """The controller frozen (SIGSTOP) across the cut: only the switches' groups can move the
    traffic. Then it resumes, hears the cut and the restore, and routes back."""
    for attempt in range(3):  # repeated only when an OVS stall spoilt the round
        fig = cut_round(emu, tmp_path, f"frozen{attempt}", freeze=True)
        print(f"\ncontroller frozen: {fig}")
        if not fig["stalls"]:
            break
    for flow in ("east>dc", "dc>east"):
        assert fig[flow]["cut_ms"] <= BOUND_MS and fig[flow]["flowing"], (flow, fig)
    wait_until(lambda: emu.controller_status().get("ready"), 30, "the controller to catch up")
    assert emu.controller.proc.poll() is None


def job(emu, duration: float):
    return emu.net["east"].popen(
        [PY, "-m", "gateway.client", "--addr", SERVICE, "--service", "infer", "--units", "2",
         "--duration", str(duration), "--timeout", "10"], stdout=subprocess.PIPE,
        stderr=subprocess.PIPE)


def test_steered_flow_survives_a_cut(emu):
    emu.wait_gateways(10)
    before = emu.api("counters")["controller"]
    running = job(emu, 3.0)
    try:
        wait_until(lambda: emu.api("counters")["controller"]["flows_placed"]
                   > before["flows_placed"], 5, "the job to be placed")
        time.sleep(0.3)
        emu.cut_link("east", "hubn")
        wait_until(lambda: path(emu, "east>dc") == ["east", "hubs", "dc"], 10,
                   "the controller to re-route east>dc")
        out, err = running.communicate(timeout=30)
    finally:
        emu.restore_link("east", "hubn")
        if running.poll() is None:
            running.kill()
            running.wait()
    res = json.loads(out.decode().strip().splitlines()[-1])
    assert res["ok"] and res["done"] and res["gw"] == "dc", (res, err.decode()[-1000:])
    after = emu.api("counters")["controller"]
    # re-pathed, not ended by the flow-removed of its own replaced rules
    assert after["flows_repathed"] > before["flows_repathed"], after
    assert after["flows_ended"] == before["flows_ended"], after
    wait_until(lambda: path(emu, "east>dc") == ["east", "hubn", "dc"], 15, "the restore")
