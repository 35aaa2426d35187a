#!/usr/bin/env python3
"""Benchmark of the userspace delay line alone (no OVS, no Mininet). Needs root.

Lab: ``ns1 --veth-- RA1 [relay 1] RB1 --veth-- RA2 [relay 2] ... RBn --veth-- ns2``.
Relay interfaces stay in the root namespace; ``RBk <-> RA(k+1)`` is a plain veth
pair, so relay k writes into RBk and relay k+1 reads the same frame on RA(k+1).
The two hosts are network namespaces with 10.213.0.1/24 and 10.213.0.2/24;
offloads are off on every veth end (as the Mininet builder does for OVS netdev).

Measures
  (a) delay fidelity: one link, 10 ms one way; 200 pings at 20 ms interval;
      RTT error vs 2 x configured (median, p99) plus the relay's own lateness;
  (b) iperf3 TCP throughput, 10 s, through 1 link (1 ms) and a chain of 3 links
      (1 ms each), plus a 0-delay single link for reference; one relay process
      per link, like the builder's one-worker-per-link split.

Prints a table and writes ``benchmarks/results/delayline_raw.json``.
Usage: ``python benchmarks/delayline_raw.py [--quick] [--out PATH]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import shutil
import signal
import statistics
import string
import subprocess
import sys
import tempfile
import time

import benchlib  # first: the .venv re-exec

from common.stats import percentile
from emulation.delayline import DelayLineProcess, Hop

REPO = benchlib.ROOT


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(args, check=check, capture_output=True, text=True)


class Lab:
    """Two host namespaces joined by ``links`` relay points; cleans up what it made."""

    def __init__(self, links: int = 1, prefix: str | None = None):
        self.prefix = prefix or "dlt" + "".join(random.choices(string.ascii_lowercase, k=4))
        self.links = links
        self.ns = [f"{self.prefix}h1", f"{self.prefix}h2"]
        self.netns_made: list[str] = []
        self.links_made: list[str] = []  # root-ns ends of veth pairs we created
        self.relay_pairs: list[tuple[str, str]] = []  # (RAk, RBk)
        self.procs: list[DelayLineProcess] = []
        self.run_dir = tempfile.mkdtemp(prefix=self.prefix + "-")

    def ip_ns(self, i: int, *args: str, check: bool = True):
        return sh("ip", "netns", "exec", self.ns[i], *args, check=check)

    def up(self) -> Lab:
        p = self.prefix
        for n in self.ns:
            sh("ip", "netns", "add", n)
            self.netns_made.append(n)
        ra = [f"{p}a{k}" for k in range(self.links)]
        rb = [f"{p}b{k}" for k in range(self.links)]
        self.relay_pairs = list(zip(ra, rb))
        # host 1 <-> RA0
        sh("ip", "link", "add", f"{p}e1", "type", "veth", "peer", "name", ra[0])
        self.links_made.append(ra[0])
        sh("ip", "link", "set", f"{p}e1", "netns", self.ns[0])
        # RBk <-> RA(k+1)
        for k in range(self.links - 1):
            sh("ip", "link", "add", rb[k], "type", "veth", "peer", "name", ra[k + 1])
            self.links_made.append(rb[k])
        # RB(last) <-> host 2
        sh("ip", "link", "add", f"{p}e2", "type", "veth", "peer", "name", rb[-1])
        self.links_made.append(rb[-1])
        sh("ip", "link", "set", f"{p}e2", "netns", self.ns[1])
        for i, (dev, addr) in enumerate(((f"{p}e1", "10.213.0.1/24"),
                                         (f"{p}e2", "10.213.0.2/24"))):
            self.ip_ns(i, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1")
            self.ip_ns(i, "ip", "link", "set", "lo", "up")
            self.ip_ns(i, "ip", "addr", "add", addr, "dev", dev)
            self.ip_ns(i, "ip", "link", "set", dev, "up")
            self.ip_ns(i, "ethtool", "-K", dev, "tx", "off", "tso", "off", "gso", "off",
                       "gro", "off", check=False)
        for dev in ra + rb:
            sh("sysctl", "-qw", f"net.ipv6.conf.{dev}.disable_ipv6=1", check=False)
            sh("ip", "link", "set", dev, "up")
            sh("ethtool", "-K", dev, "tx", "off", "tso", "off", "gso", "off", "gro", "off",
               check=False)
        return self

    def start_relays(self, delay_us: float, jitter_us: float = 0, loss_ab: float = 0.0,
                     loss_ba: float = 0.0, seed: int = 1, compensation_us: float = 0,
                     per_link_process: bool = True) -> list[DelayLineProcess]:
        links = []
        for k, (ra, rb) in enumerate(self.relay_pairs):
            links.append((
                Hop(f"l{k}:a>b", ra, rb, delay_us, jitter_us, loss_ab, 1000, compensation_us),
                Hop(f"l{k}:b>a", rb, ra, delay_us, jitter_us, loss_ba, 1000, compensation_us)))
        groups = [list(lk) for lk in links] if per_link_process else [
            [h for lk in links for h in lk]]
        for g, hops in enumerate(groups):
            self.procs.append(DelayLineProcess.start(hops, self.run_dir, f"delayline-{g}", seed))
        return self.procs

    def stop_relays(self) -> list[dict]:
        out = []
        for p in self.procs:
            p.stop()
            try:
                out.append(p.stats(refresh=False))
            except Exception:  # noqa: BLE001
                pass
        self.procs = []
        return out

    def down(self) -> None:
        for p in self.procs:
            p.stop()
        self.procs = []
        for dev in self.links_made:
            sh("ip", "link", "del", dev, check=False)
        self.links_made = []
        for n in self.netns_made:
            sh("ip", "netns", "del", n, check=False)
        self.netns_made = []
        shutil.rmtree(self.run_dir, ignore_errors=True)

    def __enter__(self):
        try:
            return self.up()
        except BaseException:
            self.down()
            raise

    def __exit__(self, *exc):
        self.down()


def ping(lab: Lab, count: int, interval: float, timeout: float = 60) -> dict:
    r = lab.ip_ns(0, "ping", "-n", "-q" if count > 2000 else "-n", "-c", str(count), "-i",
                  str(interval), "-W", "1", "10.213.0.2", check=False)
    rtts = [float(m) for m in re.findall(r"time=([\d.]+) ms", r.stdout)]
    m = re.search(r"(\d+) packets transmitted, (\d+) received", r.stdout)
    sent, recv = (int(m.group(1)), int(m.group(2))) if m else (count, len(rtts))
    return {"rtts_ms": rtts, "sent": sent, "received": recv}


def cpu_times(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except OSError:
        return float("nan")


def iperf(lab: Lab, seconds: int) -> dict:
    srv = subprocess.Popen(["ip", "netns", "exec", lab.ns[1], "iperf3", "-s", "-1", "-J"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(0.5)
        cpu0 = {p.pid: cpu_times(p.pid) for p in lab.procs}
        t0 = time.monotonic()
        cli = lab.ip_ns(0, "iperf3", "-c", "10.213.0.2", "-t", str(seconds), "-J", check=False)
        wall = time.monotonic() - t0
        cpu1 = {p.pid: cpu_times(p.pid) for p in lab.procs}
        try:
            srv.wait(10)
        except subprocess.TimeoutExpired:
            pass
        data = json.loads(cli.stdout)
        if "error" in data:
            return {"error": data["error"]}
        end = data["end"]
        return {
            "gbit_s": round(end["sum_received"]["bits_per_second"] / 1e9, 3),
            "sender_gbit_s": round(end["sum_sent"]["bits_per_second"] / 1e9, 3),
            "retransmits": end["sum_sent"].get("retransmits"),
            "relay_cpu_pct": {str(pid): round(100 * (cpu1[pid] - cpu0[pid]) / wall, 1)
                              for pid in cpu0},
            "host_cpu_pct": end.get("cpu_utilization_percent"),
        }
    finally:
        if srv.poll() is None:
            srv.send_signal(signal.SIGTERM)
            try:
                srv.wait(3)
            except subprocess.TimeoutExpired:
                srv.kill()
                srv.wait()


_OWD_RX = r"""
import json, socket, struct, sys
n, port = int(sys.argv[1]), int(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, 35, 1)  # SO_TIMESTAMPNS: kernel receive time
s.bind(("10.213.0.2", port))
s.settimeout(3)
print("ready", flush=True)
out = []
try:
    while len(out) < n:
        d, anc, fl, a = s.recvmsg(64, 64)
        seq, tx = struct.unpack("!Id", d[:12])
        sec, ns = struct.unpack("qq", anc[0][2][:16])
        out.append([seq, sec + ns * 1e-9 - tx])
except socket.timeout:
    pass
print(json.dumps(out), flush=True)
"""

_OWD_TX = r"""
import socket, struct, sys, time
n, port, gap = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.connect(("10.213.0.2", port))
for i in range(n):
    s.send(struct.pack("!Id", i, time.time()) + bytes(52))
    time.sleep(gap)
"""


def one_way(lab: Lab, count: int, interval: float, port: int = 39213) -> list[float]:
    """True one-way delays (s): sender's clock before send -> kernel receive stamp in h2.

    All namespaces share one clock, so this is exact up to the sender's syscall path.
    """
    rx = subprocess.Popen(["ip", "netns", "exec", lab.ns[1], sys.executable, "-c", _OWD_RX,
                           str(count), str(port)], stdout=subprocess.PIPE, text=True)
    try:
        assert rx.stdout.readline().strip() == "ready"
        lab.ip_ns(0, sys.executable, "-c", _OWD_TX, str(count), str(port), str(interval))
        out, _ = rx.communicate(timeout=30)
    finally:
        if rx.poll() is None:
            rx.kill()
            rx.wait()
    return [d for _, d in json.loads(out.strip().splitlines()[-1])]


def bench_delay(delay_us: float, count: int) -> dict:
    with Lab(1) as lab:
        lab.start_relays(delay_us)
        ping(lab, 3, 0.2)  # ARP warm-up
        r = ping(lab, count, 0.02)
        owd = one_way(lab, count, 0.02)
        stats = lab.stop_relays()
    rtts = r["rtts_ms"]
    target = 2 * delay_us / 1000
    err = [x - target for x in rtts]
    hops = stats[0]["hops"] if stats else {}
    return {
        "configured_one_way_ms": delay_us / 1000, "pings": r["sent"], "replies": r["received"],
        "rtt_ms": {"min": min(rtts), "median": statistics.median(rtts), "p99": percentile(rtts, 99),
                   "max": max(rtts)},
        "rtt_error_ms": {"median": round(statistics.median(err), 4),
                         "p99": round(percentile(err, 99), 4), "max": round(max(err), 4)},
        "rtt_note": "iputils ping prints RTTs of 10-100 ms with 0.1 ms resolution",
        "one_way_ms": {"probes": len(owd), "median": round(statistics.median(owd) * 1e3, 4),
                       "p99": round(percentile(owd, 99) * 1e3, 4), "min": round(min(owd) * 1e3, 4),
                       "max": round(max(owd) * 1e3, 4)},
        "one_way_error_us": {"median": round((statistics.median(owd) - delay_us * 1e-6) * 1e6, 1),
                             "p99": round((percentile(owd, 99) - delay_us * 1e-6) * 1e6, 1)},
        "relay_lateness_us": {h: v["lateness_us"] for h, v in hops.items()},
        "timer_slack_set": stats[0]["timer_slack_set"] if stats else None,
    }


def bench_baseline(count: int) -> dict:
    """Same lab with 0 delay configured: the relay's own round-trip cost."""
    with Lab(1) as lab:
        lab.start_relays(0)
        ping(lab, 3, 0.2)
        r = ping(lab, count, 0.02)
        lab.stop_relays()
    rtts = r["rtts_ms"]
    return {"rtt_ms": {"min": min(rtts), "median": statistics.median(rtts),
                       "p99": percentile(rtts, 99)}}


def bench_substrate(count: int) -> dict:
    """Same lab with a kernel bridge in place of the relay: the probes' own cost."""
    lab = Lab(1)
    try:
        lab.up()
        br = lab.prefix + "br"
        sh("ip", "link", "add", br, "type", "bridge")
        lab.links_made.append(br)
        sh("ip", "link", "set", br, "up")
        for dev in lab.relay_pairs[0]:
            sh("ip", "link", "set", dev, "master", br)
        for _ in range(30):  # wait for the bridge ports to forward
            if ping(lab, 1, 0.1)["received"]:
                break
            time.sleep(0.1)
        r = ping(lab, count, 0.02)
        owd = one_way(lab, count, 0.02)
        tput = iperf(lab, 5)
    finally:
        lab.down()
    return {"rtt_ms": {"median": statistics.median(r["rtts_ms"]),
                       "p99": percentile(r["rtts_ms"], 99)},
            "one_way_us": {"median": round(statistics.median(owd) * 1e6, 1),
                           "p99": round(percentile(owd, 99) * 1e6, 1)},
            "iperf3_gbit_s": tput.get("gbit_s")}


def bench_tput(links: int, delay_us: float, seconds: int) -> dict:
    with Lab(links) as lab:
        lab.start_relays(delay_us)
        ping(lab, 3, 0.2)
        res = iperf(lab, seconds)
        stats = lab.stop_relays()
    drops = {}
    for s in stats:
        for h, v in s["hops"].items():
            drops[h] = {k: v[k] for k in ("packets_in", "packets_out", "dropped_queue",
                                          "send_errors", "max_queue")}
    res.update({"links": links, "one_way_delay_ms_per_link": delay_us / 1000,
                "seconds": seconds, "hops": drops})
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="short runs (smoke test)")
    ap.add_argument("--out", default=os.path.join(REPO, "benchmarks", "results",
                                                  "delayline_raw.json"))
    ap.add_argument("--seconds", type=int, default=10)
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("delayline_raw: needs root (network namespaces, AF_PACKET)", file=sys.stderr)
        return 2
    for tool in ("ip", "ping", "iperf3", "ethtool"):
        if not shutil.which(tool):
            print(f"delayline_raw: missing tool {tool!r}", file=sys.stderr)
            return 2
    seconds = 3 if args.quick else args.seconds
    npings = 50 if args.quick else 200

    out = {"benchmark": "delayline_raw", "at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
           "host": {"kernel": platform.release(), "cpus": os.cpu_count(),
                    "python": sys.version.split()[0]}}
    print("== substrate: kernel bridge instead of the relay")
    out["substrate_bridge"] = sub = bench_substrate(npings)
    print("   ping RTT median %.3f ms, one-way probe median %.1f us, iperf3 %s Gbit/s" % (
        sub["rtt_ms"]["median"], sub["one_way_us"]["median"], sub["iperf3_gbit_s"]))
    print("== baseline: relay with 0 delay, %d pings" % npings)
    out["baseline_0ms"] = bench_baseline(npings)
    print("   RTT median %.3f ms" % out["baseline_0ms"]["rtt_ms"]["median"])
    print("== delay fidelity: 10 ms one way, %d pings at 20 ms" % npings)
    out["delay_10ms"] = d = bench_delay(10000, npings)
    print("== iperf3 TCP %d s" % seconds)
    out["tput"] = []
    for links, delay in ((1, 0), (1, 1000), (3, 1000)):
        r = bench_tput(links, delay, seconds)
        out["tput"].append(r)
        print(f"   {links} link(s) x {delay / 1000:g} ms: "
              f"{r.get('gbit_s', r.get('error'))} Gbit/s  relay CPU {r.get('relay_cpu_pct')}")

    base, ow = out["baseline_0ms"]["rtt_ms"], d["one_way_error_us"]
    net = ow["median"] - sub["one_way_us"]["median"]
    d["one_way_error_net_of_substrate_us"] = {"median": round(net, 1)}
    rows = [
        ("RTT, 0 ms configured (median)", f"{base['median']:.3f} ms"),
        ("RTT, 2 x 10 ms (median / p99)",
         f"{d['rtt_ms']['median']:.3f} / {d['rtt_ms']['p99']:.3f} ms"),
        ("RTT error vs 20 ms (median / p99)",
         f"{d['rtt_error_ms']['median']:+.3f} / {d['rtt_error_ms']['p99']:+.3f} ms"),
        ("one-way UDP error vs 10 ms (med / p99)",
         f"{ow['median']:+.1f} / {ow['p99']:+.1f} us"),
        ("same, minus bridge substrate (median)", f"{net:+.1f} us"),
        ("kernel bridge: one-way / iperf3",
         f"{sub['one_way_us']['median']:.1f} us / {sub['iperf3_gbit_s']} Gbit/s"),
    ]
    for h, lat in d["relay_lateness_us"].items():
        rows.append((f"relay lateness {h} p50/p99/max",
                     f"{lat['p50']} / {lat['p99']} / {lat['max']} us"))
    for r in out["tput"]:
        label = f"iperf3 TCP, {r['links']} link(s) x {r['one_way_delay_ms_per_link']:g} ms"
        val = f"{r['gbit_s']:.3f} Gbit/s" if "gbit_s" in r else str(r.get("error"))
        rows.append((label, val))
    print()
    print(f"| {'measurement':<40} | value")
    print(f"|{'-' * 42}|{'-' * 30}")
    for k, v in rows:
        print(f"| {k:<40} | {v}")
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
