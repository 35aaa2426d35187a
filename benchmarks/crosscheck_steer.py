"""Cross-check of the analytic decision-quality mode against a short emulated run (root).

On the emulated EDWC backbone (Mininet + OVS + the controller process + gateway agents),
for each of two policies, every metro asks for one short job of every service, one request
at a time (gateway.client from the metro host, through the CS-ID). The same requests, in the
same order, go through the in-process ControllerCore on the same plan with idle gateways
(as the analytic mode drives it). Reported: the share of requests placed on the same gateway
(or refused by both), the decisions' model RTT on both sides, and the emulated response
time (request sent -> start reply, gateway.client's start_ms) against the model RTT.

Decisions use the plan's link delays (--delay-source model), so the data-plane substrate
(OVS port type) changes the measured times, not the choices; `system` ports keep the start
fast and the memory small.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile

import benchlib
import steer_common as sc

from common import procs

POLICIES = ("nearest", "greenest")

# Run inside a metro host: one short job per service, in order; one JSON line each.
DRIVER = r"""
import json, sys
from dataclasses import asdict
from gateway.client import request_job
for item in json.loads(sys.argv[1]):
    r = request_job(item["addr"], 7000, item["service"], item["units"], [], 0.05, 5.0)
    print(json.dumps({"service": item["service"], **asdict(r)}), flush=True)
"""


def analytic(plan, policy: str, order: list[tuple[str, str]]) -> list[dict]:
    pc = sc.PureController(plan, policy)
    full = {g.id: {k: (v, v) for k, v in g.units.items()} for g in plan.gateways}
    svc = {s.name: s for s in plan.services}
    out = []
    for i, (metro, service) in enumerate(order):
        now = 1.0 + i
        pc.clock.t = sc.WALL0 + now
        for g in plan.gateways:  # idle gateways, advertised once a second
            pc.advert_in(sc.make_advert(g, i + 1, pc.clock.t, full[g.id]), now)
        dpid, port, frame = pc.first_packet(metro, svc[service].address, 30000 + i, 7000)
        pc.core.packet_in(dpid, port, frame, now + 0.001)
        d = pc.core.steering.decisions[-1]
        out.append({"metro": metro, "service": service, "gateway": d.gateway,
                    "rtt_ms": d.rtt_ms})
    return out


def run(net, metros: list[str], port_type: str = "system") -> dict:
    from emulation.network import AgentOptions, Emulation, LinkConfig
    work = tempfile.mkdtemp(prefix="hxcc_")
    driver = f"{work}/driver.py"
    with open(driver, "w") as f:
        f.write(DRIVER)
    result: dict = {"policies": {}, "ovs_port_type": port_type}
    emu = Emulation(net, log=print, links=LinkConfig(ovs_port_type=port_type),
                    agents=AgentOptions(adv_interval=1.0))
    try:
        emu.start()
        result["run"] = emu.describe()
        plan = emu.plan
        items = [{"addr": s.address, "service": s.name, "units": s.units} for s in plan.services]
        order = [(m, s.name) for m in metros for s in plan.services]
        for policy in POLICIES:
            emu.api("policy", {"policy": policy})
            emulated = []
            for m in metros:
                p = emu.net[m].popen([sys.executable, driver, json.dumps(items)],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     cwd=procs.PROJECT_ROOT, env=procs.project_env())
                o, e = p.communicate(timeout=120)
                if p.returncode != 0:
                    raise RuntimeError(f"driver on {m} failed: {e.decode()[-600:]}")
                lines = [json.loads(x) for x in o.decode().splitlines() if x.startswith("{")]
                decs = [d for d in emu.api("decisions?limit=200")["decisions"]
                        if d["client"] == m and d["policy"] == policy]
                for r in lines:  # each (metro, service) is asked once per policy
                    d = next((x for x in reversed(decs) if x["service"] == r["service"]), {})
                    emulated.append({"metro": m, "service": r["service"],
                                     "gateway": r["gw"] if r["ok"] else None,
                                     "decision_gateway": d.get("gateway"),
                                     "decision_reason": d.get("reason"),
                                     "rtt_ms": d.get("rtt_ms"), "start_ms": r["start_ms"],
                                     "ok": r["ok"], "error": r["error"],
                                     "detail": r.get("detail")})
            predicted = analytic(plan, policy, order)
            # the controller's choice is compared (the job itself may still fail on the way)
            same = sum(1 for a, b in zip(predicted, emulated)
                       if a["gateway"] == b["decision_gateway"])
            diffs = [(a["metro"], a["service"], a["gateway"], b["decision_gateway"])
                     for a, b in zip(predicted, emulated) if a["gateway"] != b["decision_gateway"]]
            failed = [(b["metro"], b["service"], b["error"], b["detail"]) for b in emulated
                      if not b["ok"]]
            resp = [b["start_ms"] - b["rtt_ms"] for b in emulated
                    if b["ok"] and b["start_ms"] is not None and b["rtt_ms"] is not None]
            result["policies"][policy] = {
                "requests": len(order), "agree": same,
                "agreement_pct": 100.0 * same / max(1, len(order)), "disagreements": diffs,
                "jobs_failed": failed,
                "emulated": emulated, "analytic": predicted,
                "start_minus_model_rtt_ms": benchlib.stats(resp)}
            s = result["policies"][policy]
            print(f"  crosscheck {policy}: {same}/{len(order)} requests on the same gateway "
                  f"({s['agreement_pct']:.0f} %), {len(failed)} job(s) failed; emulated "
                  f"start time - model RTT: median "
                  f"{s['start_minus_model_rtt_ms'].get('median', float('nan')):.2f} ms",
                  flush=True)
    finally:
        emu.stop()
    return result
