#!/usr/bin/env python3
"""Delay-line throughput: iperf3 TCP across a 3-link delayed path through Open vSwitch.

A chain h1 - s1 - s2 - s3 - s4 - h2 with 1 ms per link, bandwidth set high enough not to
limit. Measured with the delay line (userspace link emulation) and without any delay
emulation (the switch substrate's own limit). Target: >= 1 Gbit/s, or the substrate's
limit, whichever is lower.

    sudo python benchmarks/delayline_throughput.py [--seconds 10] [--ovs-port-type ...]
"""

import argparse
import json
import time

import benchlib

from emulation.network import Emulation, LinkConfig
from topology.model import build_network


def chain(delay_ms: float, bw: float):
    sites = [{"id": "h1", "kind": "metro", "region": "r", "lat": 30.0, "lon": 110.0},
             {"id": "s2", "kind": "pop", "region": "r", "lat": 30.0, "lon": 111.0},
             {"id": "s3", "kind": "pop", "region": "r", "lat": 30.0, "lon": 112.0},
             {"id": "h2", "kind": "cluster", "region": "r", "lat": 30.0, "lon": 113.0}]
    ids = [s["id"] for s in sites]
    links = [{"a": a, "b": b, "delay_ms": delay_ms, "bandwidth_mbps": bw}
             for a, b in zip(ids, ids[1:])]
    return build_network(sites, links, name="chain3")


def iperf(emu, seconds: int) -> dict:
    server, client = emu.net["h2"], emu.net["h1"]
    srv = server.popen(["iperf3", "-s", "-1", "-J"])
    try:
        time.sleep(0.5)
        cli = client.popen(["iperf3", "-c", emu.plan.host("h2").ip, "-t", str(seconds), "-J"])
        out, _ = cli.communicate(timeout=seconds + 30)
        data = json.loads(out)
        if "error" in data:
            raise RuntimeError(f"iperf3: {data['error']}")
        return {"gbit_s": data["end"]["sum_received"]["bits_per_second"] / 1e9,
                "retransmits": data["end"]["sum_sent"].get("retransmits")}
    finally:
        if srv.poll() is None:
            srv.terminate()
        srv.wait(timeout=5)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--ovs-port-type", default="auto")
    ap.add_argument("--bandwidth-mbps", type=float, default=10000)
    args = ap.parse_args()
    out = {}
    for mode in ("userspace", "none"):
        net = chain(1.0, args.bandwidth_mbps)
        with Emulation(net, links=LinkConfig(link_emulation=mode,
                                             ovs_port_type=args.ovs_port_type),
                       log=lambda *_: None) as emu:
            r = iperf(emu, args.seconds)
            r["emulation"] = emu.describe()["emulation"]
        out[mode] = r
        label = "delay line, 3 x 1 ms" if mode == "userspace" else "no delay emulation"
        print(f"{label:<24} OVS ports {r['emulation']['port_type']}: "
              f"{r['gbit_s']:.3f} Gbit/s TCP, {r['retransmits']} retransmits")
    ratio = out["userspace"]["gbit_s"] / out["none"]["gbit_s"]
    print(f"delay line / substrate: {ratio:.2f}; target >= min(1 Gbit/s, substrate "
          f"{out['none']['gbit_s']:.3f} Gbit/s)")
    benchlib.write("delayline_throughput", {"results": out, "ratio": ratio,
                                          "seconds": args.seconds})


if __name__ == "__main__":
    main()
