#!/usr/bin/env python3
"""Sustained new-flow rate: how many new flows per second the controller steers without
dropping decisions. Target: >= 2,000 new flows/s on one core.

(a) In-process (no root; the upper bound of the logic): the real ControllerCore on the
    EDWC plan with stub datapaths, pinned to one CPU. First packets of distinct UDP flows
    from the 8 metros to the 4 CS-IDs arrive at a nominal --sim-rate on the injected
    clock; every gateway advertises once per simulated second (so reservations are pruned
    as in a live run) and every placement's client rule idles out --idle-timeout seconds
    after it was made (flow_removed, as OVS reports it). Reported: decisions per second of
    CPU time, with and without serialising the OpenFlow messages (the app's send does that),
    and per-flow cost including the flow-removed handling.

(b) End to end (root): the small steering topology (benchmarks/steer_common.py), a raw
    AF_PACKET sender in the metro host emitting first packets of distinct UDP flows to the
    CS-ID at each --rates step for --step-seconds, a UDP receiver on the gateway host.
    Per step: flows sent; controller counters (new_flows, flows_placed, flows_refused) at
    the step's end + 1 s (prompt) and after the backlog drained (eventually); flows
    delivered at the gateway and their first-packet setup latency; the metro switch's
    new-flow meter drops (--newflow-rate, default 5000/s per switch); OVS's overflow
    coverage counters; controller and ovs-vswitchd CPU %; steered rules in the metro
    switch's table (placements idle out after --flow-idle-timeout). Reported: the highest
    rate where >= 99 % of the flows sent were decided / placed eventually / placed promptly
    / at the gateway within 100 ms. Every flow fits (the near gateway has 500,000 units),
    so a refusal means the controller lost its view of the gateway (adverts starved).

    sudo python benchmarks/newflow_rate.py [--rates 250,500,1000,2000,4000] [--step-seconds 3]
    python benchmarks/newflow_rate.py --inprocess-only     # no root needed
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import deque

import benchlib
import steer_common as sc

from controller import ofmsg
from controller.steering import SERVICE_MAC

# --------------------------------------------------------------------------- (a) in-process


class _Timed:
    """Wraps a callable and sums the thread CPU time spent in it (for the cost breakdown)."""

    def __init__(self, fn) -> None:
        self.fn, self.cpu, self.calls = fn, 0.0, 0

    def __call__(self, *a, **kw):
        t = time.thread_time()
        try:
            return self.fn(*a, **kw)
        finally:
            self.cpu += time.thread_time() - t
            self.calls += 1


def inprocess(topology: str, policy: str, flows: int, sim_rate: float, idle_timeout: int,
              adv_interval: float, scale: int, serialize: bool) -> dict:
    """Feed ``flows`` first packets to the real core; returns rates and a cost breakdown.

    Per-call costs are thread CPU time (time.thread_time), so other processes on a busy
    machine do not inflate them; wall time of the whole loop is reported alongside."""
    import controller.core as core_mod
    from topology.loader import load_topology
    from topology.plan import make_plan
    plan = make_plan(load_topology(topology), "bnr1")
    pc = sc.PureController(plan, policy, idle_timeout=idle_timeout)
    core = pc.core
    metros = [h.name for h in plan.hosts if h.name not in {g.host for g in plan.gateways}]
    services = [s.address for s in plan.services]
    # Capacity scaled up (x scale, at most the wire format's 1,000,000) so that every flow
    # within its budget is placed: the rate of the expensive path, not of refusals.
    full = {g.id: {k: (min(1_000_000, v * scale),) * 2 for k, v in g.units.items()}
            for g in plan.gateways}
    seq = 0

    def advertise(now: float) -> None:
        nonlocal seq
        seq += 1
        pc.clock.t = sc.WALL0 + now
        for g in plan.gateways:
            pc.advert_in(sc.make_advert(g, seq, pc.clock.t, full[g.id],
                                        interval=adv_interval), now)

    # Frames are built before timing: the app receives bytes, it does not build them.
    frames = []
    for i in range(flows):
        client = metros[i % len(metros)]
        svc = services[(i // len(metros)) % len(services)]
        sport, dport = 1024 + (i // 7) % 64000, 9000 + i % 7
        frames.append((pc.host[client].ip, svc, sport, dport,
                       *pc.first_packet(client, svc, sport, dport, b"x" * 16)))
    advertise(0.0)
    decide = core.steering.decide = _Timed(core.steering.decide)
    build = core_mod.placement_flows = _Timed(core_mod.placement_flows)
    reserve = core.registry.reserve = _Timed(core.registry.reserve)
    pick = core.registry.pick_kind = _Timed(core.registry.pick_kind)
    next_adv, live, ended = adv_interval, deque(), 0
    cpu_in, wall_in, serial_cpu, removed_cpu, msgs_out = [], [], 0.0, 0.0, 0
    placed0, refused0 = core.counters["flows_placed"], core.counters["flows_refused"]
    gc.collect()
    cpu0, wall0 = time.process_time(), time.perf_counter()
    try:
        for i, (cip, svc, sport, dport, dpid, port, frame) in enumerate(frames):
            now = i / sim_rate
            if now >= next_adv:
                advertise(now)
                next_adv += adv_interval
            w, t = time.perf_counter(), time.thread_time()
            msgs = core.packet_in(dpid, port, frame, now)
            t1 = time.thread_time()
            wall_in.append(time.perf_counter() - w)
            cpu_in.append(t1 - t)
            msgs_out += len(msgs)
            if serialize:
                for m in msgs:
                    m.serialize()
                serial_cpu += time.thread_time() - t1
            live.append((now, cip, svc, sport, dport))
            while live and now - live[0][0] >= idle_timeout:
                _, c, s_ip, sp, dp = live.popleft()
                t2 = time.thread_time()
                out = pc.flow_removed(c, s_ip, sp, dp, now)
                if serialize:
                    for m in out:
                        m.serialize()
                removed_cpu += time.thread_time() - t2
                ended += 1
    finally:
        core_mod.placement_flows = build.fn
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    placed = core.counters["flows_placed"] - placed0
    refused = core.counters["flows_refused"] - refused0
    total_in = sum(cpu_in)
    decide_only = decide.cpu
    breakdown = {"steering.decide (candidates, policy)": decide_only,
                 "placement_flows (OFPMatch/FlowMod objects)": build.cpu,
                 "registry.reserve + pick_kind": reserve.cpu + pick.cpu,
                 "rest of packet_in (parse, packet-out, bookkeeping)":
                     total_in - decide_only - build.cpu - reserve.cpu - pick.cpu}
    return {
        "topology": topology, "policy": policy, "flows": flows, "sim_rate": sim_rate,
        "idle_timeout_s": idle_timeout, "adv_interval_s": adv_interval, "capacity_scale": scale,
        "placed": placed, "refused": refused, "messages_out": msgs_out,
        "flows_ended": ended, "placements_at_end": len(core.steering.placements),
        "reservations_pending_at_end": sum(len(b.items)
                                           for b in core.registry._books.values()),
        "packet_in_cpu_us": benchlib.stats([c * 1e6 for c in cpu_in]),
        "packet_in_wall_us": benchlib.stats([c * 1e6 for c in wall_in]),
        "decisions_per_cpu_s": flows / total_in,
        "decisions_per_cpu_s_with_serialize": flows / (total_in + serial_cpu)
        if serialize else None,
        "flow_removed_cpu_us_mean": removed_cpu / ended * 1e6 if ended else None,
        "flows_per_cpu_s_all_work": flows / (total_in + serial_cpu + removed_cpu),
        "breakdown_cpu_us_per_flow": {k: v / flows * 1e6 for k, v in breakdown.items()},
        "serialize_cpu_us_per_flow": serial_cpu / flows * 1e6 if serialize else None,
        "loop_wall_s": wall, "loop_cpu_s": cpu,
    }


def print_inprocess(r: dict) -> None:
    d = r["packet_in_cpu_us"]
    ser = r["decisions_per_cpu_s_with_serialize"]
    print(f"  {r['policy']:<13} {r['flows']} flows ({r['placed']} placed, {r['refused']} "
          f"refused): packet-in CPU median {d['median']:.0f} us, p99 {d['p99']:.0f} us, "
          f"mean {d['mean']:.0f} us -> {r['decisions_per_cpu_s']:,.0f} decisions/CPU-s"
          + (f"; + serialisation {ser:,.0f}/s" if ser else "")
          + (f"; + flow-removed {r['flows_per_cpu_s_all_work']:,.0f} flows/s"
             if r["flows_ended"] else ""), flush=True)


# --------------------------------------------------------------------------- (b) end to end

PROMPT_GRACE_S = 1.0  # decisions later than a step's end + this are not "prompt"

# Run inside the metro host: send first packets of distinct UDP flows (fresh source ports)
# to the CS-ID at RATE/s for SECONDS, from raw frames (AF_PACKET), each carrying
# (flow id, 0, tx time ns). Prints one JSON line: sent, elapsed.
SENDER = r"""
import json, socket, struct, sys, time
(iface, src_mac, src_ip, dst_mac, dst_ip, dport, rate, seconds, fid0, sport0) = sys.argv[1:11]
rate, seconds, fid0, sport0, dport = float(rate), float(seconds), int(fid0), int(sport0), int(dport)
mac = lambda m: bytes.fromhex(m.replace(":", ""))
ip = lambda a: bytes(map(int, a.split(".")))
n = int(rate * seconds)
plen = 16
hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + 8 + plen, 0, 0x4000, 64, 17, 0, ip(src_ip),
                  ip(dst_ip))
ck = sum(struct.unpack("!10H", hdr))
while ck >> 16:
    ck = (ck & 0xFFFF) + (ck >> 16)
hdr = hdr[:10] + struct.pack("!H", ~ck & 0xFFFF) + hdr[12:]
eth = mac(dst_mac) + mac(src_mac) + b"\x08\x00"
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
s.bind((iface, 0))
frames = []
for i in range(n):
    sport = 1024 + (sport0 + i) % 64000
    frames.append(bytearray(eth + hdr + struct.pack("!HHHH", sport, dport, 8 + plen, 0)
                            + bytes(plen)))
pack, send, clock, now_ns = struct.pack_into, s.send, time.perf_counter, time.time_ns
t0 = clock()
errors = 0
for i, f in enumerate(frames):
    due = t0 + i / rate
    while True:
        d = due - clock()
        if d <= 0:
            break
        time.sleep(d if d > 0.0002 else 0)
    pack("!IB3xQ", f, 42, fid0 + i, 0, now_ns())
    try:
        send(f)
    except OSError:
        errors += 1
print(json.dumps({"sent": n - errors, "errors": errors, "elapsed": clock() - t0}))
"""


def _ofctl(*args: str) -> str:
    r = subprocess.run(["ovs-ofctl", "-O", "OpenFlow13", *args], capture_output=True,
                       text=True, timeout=30)
    return r.stdout


def meter_drops(bridge: str, meter: int = ofmsg.METER_NEWFLOW) -> int:
    """Packets the meter's drop band dropped on ``bridge`` so far (-1: no answer).

    ovs-ofctl prints "meter:3 flow_count:.. packet_in_count:.. ... bands:" and then one line
    per band with its own packet_count."""
    text = _ofctl("meter-stats", bridge, f"meter={meter}")
    _, sep, bands = text.partition("bands:")
    for part in bands.replace(",", " ").split() if sep else []:
        if part.startswith("packet_count:"):
            try:
                return int(part.split(":", 1)[1])
            except ValueError:
                break
    return -1


def steered_rules(bridge: str) -> int:
    text = _ofctl("dump-aggregate", bridge, "cookie=0xedc0000000000002/-1")
    for part in text.split():
        if part.startswith("flow_count="):
            return int(part.split("=")[1])
    return -1


def coverage() -> dict[str, int]:
    r = subprocess.run(["ovs-appctl", "coverage/show"], capture_output=True, text=True,
                       timeout=30)
    out = {}
    for line in r.stdout.splitlines():
        parts = line.split()
        if parts and parts[0] in ("packet_in_overflow", "rconn_overflow", "rconn_discarded"):
            try:
                out[parts[0]] = int(parts[-1])
            except ValueError:
                pass
    return out


def end_to_end(args) -> dict:
    from emulation.network import AgentOptions, ControllerConfig, Emulation
    net = sc.steering_topology()
    work = tempfile.mkdtemp(prefix="hxnr_")
    recv_py, send_py = os.path.join(work, "recv.py"), os.path.join(work, "send.py")
    with open(recv_py, "w") as f:
        f.write(sc.RECEIVER)
    with open(send_py, "w") as f:
        f.write(SENDER)
    steps, receiver = [], None
    emu = Emulation(net, log=lambda *a: print(*a), agents=AgentOptions(adv_interval=0.5),
                    controller=ControllerConfig(flow_idle_timeout=args.flow_idle_timeout))
    try:
        emu.start()
        run = emu.describe()
        metro = emu.plan.host("metro")
        metro_br = emu.plan.switch_of_site("metro").name
        ctl_pid = emu.api("status")["pid"]
        ovs_pid = sc.ovs_vswitchd_pid()
        out = os.path.join(work, "rx.txt")
        receiver = emu.net["near"].popen([sys.executable, recv_py, str(sc.PROBE_PORT), out,
                                          "3600"], stdout=subprocess.DEVNULL,
                                         stderr=subprocess.PIPE)
        if not sc.wait_file(out + ".ready", 10):
            raise RuntimeError("the receiver on near did not start")
        fid, sport = 1, 0
        for rate in [200, *args.rates]:  # the first step warms ARP-free paths and caches up
            warm = rate == 200
            secs = 1.0 if warm else args.step_seconds
            c0 = emu.api("counters")["controller"]
            cpu0, ovs0, cov0 = sc.proc_cpu_s(ctl_pid), sc.proc_cpu_s(ovs_pid or -1), coverage()
            m0, t0 = meter_drops(metro_br), time.monotonic()
            p = emu.net["metro"].popen(
                [sys.executable, send_py, "eth0", metro.mac, metro.ip, SERVICE_MAC,
                 sc.SERVICE_IP, str(sc.PROBE_PORT), str(rate), str(secs), str(fid), str(sport)],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            o, e = p.communicate(timeout=secs + 60)
            if p.returncode != 0:
                raise RuntimeError(f"sender failed: {e.decode()[-800:]}")
            sent = json.loads(o.decode().strip().splitlines()[-1])
            t_send = time.monotonic() - t0
            cpu_send, ovs_send = sc.proc_cpu_s(ctl_pid), sc.proc_cpu_s(ovs_pid or -1)
            table_peak = steered_rules(metro_br)
            time.sleep(max(0.0, t0 + t_send + PROMPT_GRACE_S - time.monotonic()))
            cg = emu.api("counters")["controller"]  # what was decided by step end + grace
            # drain: wait until the controller's new_flows counter stops moving
            last, stable_since, deadline = None, time.monotonic(), time.monotonic() + 20
            while time.monotonic() < deadline:
                c = emu.api("counters")["controller"]
                if c["new_flows"] != last:
                    last, stable_since = c["new_flows"], time.monotonic()
                elif time.monotonic() - stable_since > 1.0:
                    break
                time.sleep(0.2)
            c1 = emu.api("counters")["controller"]
            reasons = refusal_reasons(emu)
            cpu1, cov1 = sc.proc_cpu_s(ctl_pid), coverage()
            t_all = time.monotonic() - t0
            d = {k: c1[k] - c0[k] for k in ("new_flows", "flows_placed", "flows_refused",
                                            "packet_in", "flows_ended")}
            step = {"rate": rate, "warmup": warm, "seconds": secs, "sent": sent["sent"],
                    "send_errors": sent["errors"], "send_elapsed_s": sent["elapsed"],
                    "achieved_rate": sent["sent"] / sent["elapsed"],
                    "fid_first": fid, **{f"ctl_{k}": v for k, v in d.items()},
                    "decided": d["flows_placed"] + d["flows_refused"],
                    "decided_pct": 100.0 * (d["flows_placed"] + d["flows_refused"])
                    / max(1, sent["sent"]),
                    "placed_pct": 100.0 * d["flows_placed"] / max(1, sent["sent"]),
                    "placed_by_step_end_plus_grace": cg["flows_placed"] - c0["flows_placed"],
                    "decided_by_step_end_plus_grace": cg["flows_placed"] + cg["flows_refused"]
                    - c0["flows_placed"] - c0["flows_refused"],
                    "decision_rate_during_step": (cg["flows_placed"] + cg["flows_refused"]
                                                  - c0["flows_placed"] - c0["flows_refused"])
                    / (t_send + PROMPT_GRACE_S),
                    "meter_drops": meter_drops(metro_br) - m0 if m0 >= 0 else None,
                    "ovs_coverage_delta": {k: cov1.get(k, 0) - cov0.get(k, 0) for k in cov1},
                    "controller_cpu_pct_sending": 100 * (cpu_send - cpu0) / t_send,
                    "controller_cpu_s_per_1000_flows": 1000 * (cpu1 - cpu0)
                    / max(1, d["new_flows"]),
                    "ovs_cpu_pct_sending": (100 * (ovs_send - ovs0) / t_send) if ovs_pid
                    else None,
                    "steered_rules_metro_after_send": table_peak, "wall_s": t_all,
                    "refusal_reasons_last_1000_decisions": reasons,
                    "loadavg_after": os.getloadavg()}
            steps.append(step)
            fid += sent["sent"] + sent["errors"]
            sport += sent["sent"] + sent["errors"]
            if not warm:
                print(f"  {rate:>5}/s: sent {step['sent']} at {step['achieved_rate']:.0f}/s; "
                      f"within the step + {PROMPT_GRACE_S:g} s: decided "
                      f"{step['decided_by_step_end_plus_grace']} ("
                      f"{step['decision_rate_during_step']:.0f}/s); after draining: placed "
                      f"{d['flows_placed']}, refused {d['flows_refused']}; meter drops "
                      f"{step['meter_drops']}, controller CPU "
                      f"{step['controller_cpu_pct_sending']:.0f} %, ovs-vswitchd CPU "
                      f"{step['ovs_cpu_pct_sending'] or float('nan'):.0f} %, steered rules "
                      f"at metro {table_peak}, OVS {step['ovs_coverage_delta']}", flush=True)
        sc.stop_proc(receiver)
        receiver_err = receiver.stderr.read().decode()[-500:] if receiver.stderr else ""
        rows = sc.parse_receiver(out)
        if not rows and receiver_err:
            print(f"receiver: {receiver_err}")
        setup = latency_per_step(rows, steps, one_way_ms=2 * 1.0)
        for st in steps:
            st.update(setup.get(st["fid_first"], {}))
        final_counters = emu.api("counters")
    finally:
        sc.stop_proc(receiver)
        emu.stop()
    real = [s for s in steps if not s["warmup"]]

    def highest(pred) -> int | None:
        ok = [s["rate"] for s in real if pred(s)]
        return max(ok) if ok else None
    return {"run": run, "steps": steps,
            "highest_rate_99pct_decided_eventually": highest(lambda s: s["decided_pct"] >= 99),
            "highest_rate_99pct_placed_eventually": highest(lambda s: s["placed_pct"] >= 99),
            "highest_rate_99pct_placed_promptly": highest(
                lambda s: s["placed_by_step_end_plus_grace"] >= 0.99 * s["sent"]),
            "highest_rate_99pct_delivered_within_100ms": highest(
                lambda s: s.get("prompt_pct", 0) >= 99),
            "prompt_grace_s": PROMPT_GRACE_S,
            "counters_at_end": final_counters,
            "flow_idle_timeout_s": args.flow_idle_timeout, "one_way_path_ms": 2.0}


def refusal_reasons(emu) -> dict[str, int]:
    out: dict[str, int] = {}
    for dec in emu.api("decisions?limit=1000")["decisions"]:
        if dec.get("gateway") is None:
            r = str(dec.get("reason", "")).split(" (")[0]
            out[r] = out.get(r, 0) + 1
    return out


def latency_per_step(rows, steps, one_way_ms: float) -> dict:
    """Per step: flows delivered at the gateway and (rx - tx - one-way path) statistics."""
    out = {}
    for st in steps:
        lo, hi = st["fid_first"], st["fid_first"] + st["sent"] + st["send_errors"]
        lat = [(rx - tx) / 1e6 - one_way_ms for fid, pno, tx, rx in rows if lo <= fid < hi]
        s = benchlib.stats(lat)
        prompt = sum(1 for x in lat if x <= 100.0)
        out[lo] = {"delivered": len(lat), "delivered_pct": 100.0 * len(lat) / max(1, st["sent"]),
                   "prompt_pct": 100.0 * prompt / max(1, st["sent"]), "setup_ms": s}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rates", default="250,500,1000,2000,4000",
                    help="end-to-end steps, new flows per second (comma-separated)")
    ap.add_argument("--step-seconds", type=float, default=3.0)
    ap.add_argument("--flow-idle-timeout", type=int, default=2,
                    help="placements idle out after this many seconds (keeps OVS tables small)")
    ap.add_argument("--inprocess-only", action="store_true", help="skip the emulated part")
    ap.add_argument("--emulation-only", action="store_true", help="skip the in-process part")
    ap.add_argument("--topology", default="edwc", help="plan for the in-process part")
    ap.add_argument("--flows", type=int, default=40_000, help="in-process flows (nearest)")
    ap.add_argument("--sim-rate", type=float, default=2000.0,
                    help="in-process nominal arrival rate on the injected clock, flows/s")
    ap.add_argument("--idle-timeout", type=int, default=10,
                    help="in-process placement lifetime, simulated seconds")
    ap.add_argument("--adv-interval", type=float, default=1.0,
                    help="in-process advertisement period, simulated seconds (agent default 1)")
    ap.add_argument("--capacity-scale", type=int, default=1000,
                    help="in-process: advertised units = plan units x this (max 1,000,000)")
    ap.add_argument("--cpu", type=int, default=None,
                    help="pin the in-process part to this CPU (default: the last one)")
    args = ap.parse_args()
    try:
        args.rates = [int(x) for x in args.rates.split(",") if x.strip()]
    except ValueError:
        ap.error(f"--rates must be comma-separated integers, got {args.rates!r}")
    if any(r <= 0 for r in args.rates) or args.step_seconds <= 0 or args.flows <= 0:
        ap.error("--rates, --step-seconds and --flows must be > 0")
    result: dict = {"load_before": os.getloadavg()}
    print(f"load average before: {os.getloadavg()}")
    if not args.emulation_only:
        cpu = args.cpu if args.cpu is not None else (os.cpu_count() or 1) - 1
        old = os.sched_getaffinity(0)
        os.sched_setaffinity(0, {cpu})
        print(f"(a) in-process ControllerCore on the {args.topology} plan, pinned to CPU {cpu}, "
              f"{args.sim_rate:g} flows/s simulated, {args.idle_timeout} s idle timeout")
        try:
            main_run = inprocess(args.topology, "nearest", args.flows, args.sim_rate,
                                 args.idle_timeout, args.adv_interval, args.capacity_scale,
                                 serialize=True)
            print_inprocess(main_run)
            for k, v in main_run["breakdown_cpu_us_per_flow"].items():
                print(f"      {v:7.0f} us/flow  {k}")
            print(f"      {main_run['serialize_cpu_us_per_flow']:7.0f} us/flow  serialising "
                  f"{main_run['messages_out'] / main_run['flows']:.1f} messages")
            print(f"      pending reservations at the end: "
                  f"{main_run['reservations_pending_at_end']}")
            fast = inprocess(args.topology, "nearest", min(args.flows, 10_000), args.sim_rate,
                             args.idle_timeout, 0.05, args.capacity_scale, serialize=False)
            print("  the same with adverts every 0.05 s (fewer pending reservations):")
            print_inprocess(fast)
            per_policy = []
            for pol in ("least-loaded", "greenest", "weighted", "random", "round-robin"):
                r = inprocess(args.topology, pol, min(args.flows, 10_000), args.sim_rate,
                              args.idle_timeout, args.adv_interval, args.capacity_scale,
                              serialize=False)
                print_inprocess(r)
                per_policy.append(r)
        finally:
            os.sched_setaffinity(0, old)
        result["inprocess"] = {"pinned_cpu": cpu, "nearest": main_run,
                              "nearest_fast_adverts": fast, "per_policy": per_policy}
    if not args.inprocess_only:
        if os.geteuid() != 0:
            sys.exit("the end-to-end part needs root (sudo); use --inprocess-only without it")
        print(f"(b) end to end: steps {args.rates}/s x {args.step_seconds:g} s, "
              f"flow idle timeout {args.flow_idle_timeout} s")
        result["end_to_end"] = end_to_end(args)
        e2e = result["end_to_end"]
        for st in e2e["steps"]:
            if not st["warmup"] and st.get("setup_ms", {}).get("n"):
                s = st["setup_ms"]
                print(f"  {st['rate']:>5}/s: delivered {st['delivered_pct']:.1f} % ("
                      f"{st['prompt_pct']:.1f} % within 100 ms), setup "
                      f"median {s['median']:.2f} ms, p99 {s['p99']:.2f} ms")
        print("highest rate (target >= 2000/s) where >= 99 % of the flows were ...")
        for k, label in (("decided_eventually", "decided (placed or refused), after draining"),
                         ("placed_eventually", "placed, after draining"),
                         ("placed_promptly", f"placed by the step's end + {PROMPT_GRACE_S:g} s"),
                         ("delivered_within_100ms", "at the gateway within 100 ms")):
            print(f"  {label:<48} {e2e['highest_rate_99pct_' + k]}")
        for st in e2e["steps"]:
            if st["refusal_reasons_last_1000_decisions"]:
                print(f"  refusals at {st['rate']}/s (among the step's last 1000 decisions): "
                      f"{st['refusal_reasons_last_1000_decisions']}")
    result["load_after"] = os.getloadavg()
    print(f"load average after: {os.getloadavg()}")
    benchlib.write("newflow_rate", result)


if __name__ == "__main__":
    main()
