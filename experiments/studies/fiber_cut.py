"""Fiber cut: cut a major east-west link under traffic, measure the interruption and the
new path's delay against the latency envelope; restore it; repeat.

    sudo python experiments/fiber_cut.py                          # EDWC, the busiest trunk
    sudo python experiments/fiber_cut.py --link yrd-nmg --cuts 10 --stream-rate 2000
    sudo python experiments/fiber_cut.py --topology my.yaml --pair shanghai-horinger

A cut is carrier loss on both switch ports of the link (`ip link set ... down`), as a real
fibre cut looks to the switches. The switches move traffic to their precomputed backup next
hop (OpenFlow fast-failover groups, loop-free alternates) without waiting for the
controller; the controller then recomputes routes and placements.

Traffic: a constant-rate UDP stream (--stream-rate packets/s, sequence numbers and send times)
between a metro host and a cluster host whose path crosses the link, and, unless
--no-workload, the default compute workload at a light load. Each cut lasts --cut-s
seconds; the link is then restored and the controller has --gap-s seconds to rediscover it.
Measured per cut: the interruption (the longest receive gap around the cut, ms), packets
lost, the paths before and after (controller's view), the new path's one-way delay (p95 of
the stream's packets during the cut) against the pair's envelope tier, and the same for
the restore. Exit status: 0 complete, 1 a new path broke its envelope or traffic did not
resume, 2 bad input or an error, 130 interrupted.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import Counter

from experiments.framework import cli
from experiments.framework.runner import Experiment, ExperimentError
from experiments.framework.scenario import Cut, FiberCut, InterruptionStats, StreamInfo, Timeline

LEAD_S = 3.0  # stream and workload run this long before the first cut
PATH_SETTLE_S = 1.0  # read the controller's path this long after a cut or restore
LOAD = 0.3  # default compute load during the cuts


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="fiber_cut.py", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--link", default="auto", metavar="A-B",
                    help="the link to cut, as two site ids (default: auto, the backbone link "
                         "that carries the most metro-cluster shortest paths)")
    ap.add_argument("--pair", default="auto", metavar="SRC-DST",
                    help="stream from host SRC to host DST (default: auto, a metro-cluster "
                         "pair whose path crosses the link)")
    ap.add_argument("--cuts", type=int, default=5, help="cuts in a row (default: 5)")
    ap.add_argument("--cut-s", type=float, default=3.0, help="seconds each cut lasts (3)")
    ap.add_argument("--gap-s", type=float, default=4.0,
                    help="seconds between a restore and the next cut (4)")
    ap.add_argument("--stream-rate", type=float, default=1000.0,
                    help="stream packets/s (default: 1000: 1 ms resolution)")
    ap.add_argument("--no-workload", dest="workload_on", action="store_false",
                    help="only the stream, no compute workload")
    ap.add_argument("--tiers", metavar="FILE",
                    help="latency circles (default: probes/data/envelopes.yaml)")
    cli.add_topology_options(ap)
    cli.add_controller_options(ap)
    cli.add_workload_options(ap, duration=0)
    cli.add_run_options(ap)
    args = ap.parse_args(argv)
    if args.cuts < 1 or args.cut_s < 1.0 or args.gap_s < 1.0:
        ap.error("--cuts must be >= 1, --cut-s and --gap-s >= 1 s")
    if not 10 <= args.stream_rate <= 5000:
        ap.error("--stream-rate must be 10-5000 packets/s")
    args.duration = LEAD_S + args.cuts * (args.cut_s + args.gap_s)
    if not any(a == "--load" or a.startswith("--load=") for a in (argv or sys.argv[1:])):
        args.load = LOAD  # traffic under the cut, not a full backbone
    cli.check_common(ap, args)
    return args


def _split(text: str, what: str) -> tuple[str, str]:
    a, sep, b = text.partition("-")
    if not sep or not a or not b:
        raise ExperimentError(f"--{what} {text!r}: write two site ids joined by '-', "
                              "e.g. yrd-nmg")
    return a, b


def busiest_link(net) -> tuple[str, str]:
    """The backbone link (neither end a metro or cluster) crossed by the most metro-cluster
    shortest paths; ties: the longer link."""
    from topology.paths import shortest_path

    kind = {s.id: s.kind for s in net.sites}
    graph = net.graph()
    use: Counter = Counter()
    for m in (s.id for s in net.sites if s.kind == "metro"):
        for c in (s.id for s in net.sites if s.kind == "cluster"):
            p = shortest_path(net, m, c, graph).path
            for a, b in zip(p, p[1:]):
                if kind[a] not in ("metro", "cluster") and kind[b] not in ("metro", "cluster"):
                    use[tuple(sorted((a, b)))] += 1
    if not use:
        raise ExperimentError(f"topology {net.name} has no backbone link on a metro-cluster "
                              "path: give --link")
    length = {tuple(sorted((ln.a, ln.b))): ln.delay_ms for ln in net.links}
    return max(use, key=lambda k: (use[k], length.get(k, 0), k))


def crossing_pair(net, link: tuple[str, str]) -> tuple[str, str]:
    from topology.paths import shortest_path

    graph = net.graph()
    best = None
    for m in sorted(s.id for s in net.sites if s.kind == "metro"):
        for c in sorted(s.id for s in net.sites if s.kind == "cluster"):
            p = shortest_path(net, m, c, graph)
            hops = set(zip(p.path, p.path[1:]))
            if link in hops or link[::-1] in hops:
                if best is None or p.delay_ms > best[0]:
                    best = (p.delay_ms, m, c)
    if best is None:
        raise ExperimentError(f"no metro-cluster shortest path crosses {link[0]}-{link[1]}: "
                              "give --pair")
    return best[1], best[2]


def model_without(net, link: tuple[str, str], src: str, dst: str) -> tuple[list, float | None]:
    """The model's shortest path and its one-way delay with the link gone."""
    import networkx as nx

    g = net.graph().copy()
    for a, b in (link, link[::-1]):
        if g.has_edge(a, b):
            g.remove_edge(a, b)
    try:
        path = nx.shortest_path(g, src, dst, weight="delay_ms")
    except nx.NetworkXNoPath:
        return [], None
    return path, sum(g[a][b]["delay_ms"] for a, b in zip(path, path[1:]))


class CutSchedule:
    """Cuts and restores the link at planned stream times; reads the controller's path."""

    def __init__(self, exp: Experiment, emu, run, link, key: str, args) -> None:
        self.exp, self.emu, self.run, self.link, self.key = exp, emu, run, link, key
        self.plan: list[tuple[float, str, int]] = []
        for i in range(args.cuts):
            t = LEAD_S + i * (args.cut_s + args.gap_s)
            self.plan += [(t, "cut", i), (t + PATH_SETTLE_S, "path-cut", i),
                          (t + args.cut_s, "restore", i),
                          (t + args.cut_s + args.gap_s - 0.5, "path-restored", i)]
        self.cuts: list[dict] = [{} for _ in range(args.cuts)]
        self.link_down = False

    def done(self) -> bool:
        return not self.plan

    def events(self) -> list[tuple[float, None]]:
        """Cuts and restores as separate events, so each gets its own interruption."""
        out = []
        for c in self.cuts:
            out += [(c[k], None) for k in ("t_cut", "t_restore") if c.get(k) is not None]
        return out

    def __call__(self, _t: float = 0.0) -> None:
        now = self.run.now()
        while self.plan and self.plan[0][0] <= now:
            _, what, i = self.plan.pop(0)
            c = self.cuts[i]
            if what == "cut":
                c["old_path"] = self._path()
                c["t_cut"] = self.run.mark_cut()
                self.emu.cut_link(*self.link)
                self.link_down = True
                self.exp.progress(f"cut {i + 1}/{len(self.cuts)}: {self.link[0]}-"
                                  f"{self.link[1]} down at t={c['t_cut']:.2f} s")
            elif what == "path-cut":
                c["new_path"] = self._path()
            elif what == "restore":
                self.emu.restore_link(*self.link)
                self.link_down = False
                c["t_restore"] = self.run.mark_restore()
            else:
                c["restored_path"] = self._path()

    def _path(self) -> list | None:
        return self.emu.controller_status().get("paths", {}).get(self.key)

    def restore_if_down(self) -> None:
        if self.link_down:
            self.emu.restore_link(*self.link)
            self.link_down = False


def _p95_between(result, lo: float, hi: float) -> float | None:
    from common.stats import percentile
    xs = [d for t, d in zip(result.t, result.one_way_ms) if lo <= t < hi]
    return percentile(xs, 95) if xs else None


def analyse(exp: Experiment, net, result, sched: CutSchedule, src: str, dst: str,
            args) -> FiberCut:
    """The fiber-cut section of the run result from the stream's result and the cut
    schedule; a cut whose new path broke its envelope or after which traffic did not
    resume fails a check."""
    from probes.envelope import assign_tier, load_envelopes
    from probes.streamanalysis import timeline

    tier = assign_tier(net, src, dst, load_envelopes(args.tiers).tiers)
    model_path, model_ms = model_without(net, sched.link, src, dst)
    by_t = {round(e.t_cut, 6): e for e in result.events}
    cuts: list[Cut] = []
    for c in sched.cuts:
        if "t_cut" not in c:
            continue
        ev_cut = by_t.get(round(c["t_cut"], 6))
        ev_restore = by_t.get(round(c.get("t_restore", -1.0), 6))
        hi = c.get("t_restore") or (c["t_cut"] + args.cut_s)
        p95 = _p95_between(result, c["t_cut"] + 0.5, hi)
        threshold = tier.threshold_ms if tier else None
        verdict = ("not resumed" if ev_cut is not None and not ev_cut.resumed else
                   "no tier" if threshold is None or p95 is None else
                   "pass" if p95 <= threshold else "fail")
        cuts.append(Cut(
            t_cut=c["t_cut"], t_restore=c.get("t_restore"),
            interruption_ms=ev_cut.interruption_ms if ev_cut else None,
            lost=ev_cut.lost if ev_cut else None,
            restore_interruption_ms=ev_restore.interruption_ms if ev_restore else None,
            restore_lost=ev_restore.lost if ev_restore else None,
            old_path=c.get("old_path"), new_path=c.get("new_path"),
            restored_path=c.get("restored_path"),
            delay_before_ms=ev_cut.delay_before_ms if ev_cut else None,
            new_path_one_way_ms=p95,
            new_path_one_way_median_ms=ev_cut.delay_after_ms if ev_cut else None,
            envelope_tier=tier.id if tier else None, envelope_ms=threshold,
            verdict=verdict))
        if verdict in ("fail", "not resumed"):
            exp.fail_check(f"cut at t={c['t_cut']:.1f} s: {verdict} (new path p95 "
                           f"{p95} ms, envelope {threshold} ms)")
    ints = [c.interruption_ms for c in cuts if c.interruption_ms is not None]
    tl = timeline(result)
    tl["cuts"] = [[c.t_cut, c.t_restore] for c in cuts]
    return FiberCut(
        link=list(sched.link),
        stream=StreamInfo(src=src, dst=dst, rate_pps=args.stream_rate, sent=result.sent,
                          received=result.received, lost=result.lost),
        model_path_without_link=model_path, model_one_way_ms_without_link=model_ms,
        cuts=cuts,
        interruption_ms=InterruptionStats(
            median=statistics.median(ints) if ints else None, max=max(ints) if ints else None,
            min=min(ints) if ints else None, n=len(ints)),
        timeline=Timeline.from_dict(tl, exp.result.problems, "scenario.timeline"))


def body(exp: Experiment, args) -> None:
    from probes.stream import StreamRun

    with exp.phase("topology"):
        net = cli.load_network(args)
        link = _split(args.link, "link") if args.link != "auto" else busiest_link(net)
        pair = _split(args.pair, "pair") if args.pair != "auto" else crossing_pair(net, link)
        sites = {s.id for s in net.sites}
        if not any({ln.a, ln.b} == set(link) for ln in net.links):
            raise ExperimentError(f"--link {link[0]}-{link[1]}: no such link in {net.name}")
        for s in pair:
            if s not in sites:
                raise ExperimentError(f"--pair: no site {s!r} in {net.name}")
        exp.progress(f"cutting {link[0]}-{link[1]} {args.cuts}x under a {args.stream_rate:g} "
                     f"pkt/s stream {pair[0]} -> {pair[1]}")
    with exp.phase("build"):
        emu = exp.start_emulation(net, **cli.emulation_options(args))
    src_host = next(h.name for h in emu.plan.hosts if h.site == pair[0])
    dst_host = next(h.name for h in emu.plan.hosts if h.site == pair[1])
    cov = emu.controller_status().get("backup_coverage")
    if cov:
        exp.note(f"fast-failover backup next hops (switch, destination): {cov}")
        exp.result.scenario_backup_coverage = cov
    requests = cli.make_requests(exp, args, net, emu.plan) if args.workload_on else []
    stream_s = args.duration + 1.0
    # The stream starts 4 s out and the workload at the same instant: one clock for both
    # (the report draws cuts on the placements timeline too).
    with exp.phase("cuts"), StreamRun(emu, src_host, dst_host, args.stream_rate, stream_s,
                                      warmup_s=0.5, start_delay_s=4.0) as run:
        sched = CutSchedule(exp, emu, run, link, f"{src_host}>{dst_host}", args)
        result = None
        try:
            if requests:
                cli.run_requests(exp, emu, requests, args, on_tick=sched,
                                 start_at=run.start_at)
            while not sched.done():
                sched()
                time.sleep(0.02)
            result = run.wait(events=sched.events())
        finally:
            sched.restore_if_down()
            if result is None:
                result = run.stop(events=sched.events())
            exp.result.scenario = analyse(exp, net, result, sched, pair[0], pair[1], args)
    if requests:
        with exp.phase("collect"):
            cli.collect(exp, emu, requests, args)
    i = exp.result.scenario.interruption_ms
    if i.median is not None:
        exp.progress(f"interruption over {i.n} cuts: median {i.median:.1f} ms, max "
                     f"{i.max:.1f} ms")


def main(argv=None) -> int:
    return cli.main("fiber-cut", "A fibre cut on an east-west trunk under traffic",
                    parse_args, body, argv)


if __name__ == "__main__":
    sys.exit(main())
