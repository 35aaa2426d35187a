"""Path verification: which switches a probe flow really crossed, against the announced path.

Method: snapshot the OpenFlow flow counters of every switch (`ovs-ofctl -O OpenFlow13
dump-flows`), send a known number N of UDP packets with a distinctive 5-tuple from the source
host to the destination, snapshot again. On each switch, the packets that can be the probe's
are the counters of the flows whose match covers the probe packet (route flows
`ip,nw_dst=<dst>`, and any higher-priority steering rule that matches it); a switch whose
count rose by >= N carried the flow. Those switches are put in order by walking the plan's
links from the source's switch, and compared with the path the controller announced
(`controller_status()["paths"]["src>dst"]`).

Concurrent traffic can raise the same counters (another flow to the same destination), and
the controller can replace flows mid-probe. The checks that keep them out: (1) only flows
covering the probe's exact 5-tuple count, and within a table only flows at or above the
priority of the highest flow certain to match (a table-miss flow under a route counts
nothing); (2) the distinctive UDP ports; (3) a switch counts only when its rise is >= N, so
stray packets cannot add a switch by themselves; (4) counters moving while no probe is sent
mark a switch "noisy", and a mismatch involving a noisy switch is "inconclusive", not a
wrong path; (5) a counted flow younger than the probe, a counter that went down, or a change
of the controller's routes_version during the probe also make a mismatch "inconclusive";
(6) pairs run together only when they share no host; inconclusive pairs are retried. The
parser and the verdict are pure (fixtures in tests/fixtures/dumpflows_*.txt).
"""

from __future__ import annotations

import ipaddress
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace

MAX_INPUT = 8 * 1024 * 1024
MAX_LINE = 64 * 1024
DEFAULT_PRIORITY = 32768  # ovs-ofctl leaves priority out when it is the OpenFlow default
PROBE_PORT_BASE = 47000  # UDP ports of the probe flows (source and destination)
MATCH, MISMATCH, INCONCLUSIVE, NO_PATH = "match", "mismatch", "inconclusive", "no-path"

_STAT_KEYS = {"cookie", "duration", "table", "n_packets", "n_bytes", "idle_timeout",
              "hard_timeout", "idle_age", "hard_age", "importance", "out_port", "out_group"}
_FLAGS = {"send_flow_rem", "reset_counts", "no_packet_counts", "no_byte_counts",
          "check_overlap", "no_readonly_table"}
_SHORTHANDS = {"ip": {"dl_type": "0x0800"}, "ipv6": {"dl_type": "0x86dd"},
               "arp": {"dl_type": "0x0806"}, "rarp": {"dl_type": "0x8035"},
               "icmp": {"dl_type": "0x0800", "nw_proto": "1"},
               "tcp": {"dl_type": "0x0800", "nw_proto": "6"},
               "udp": {"dl_type": "0x0800", "nw_proto": "17"},
               "sctp": {"dl_type": "0x0800", "nw_proto": "132"},
               "icmp6": {"dl_type": "0x86dd", "nw_proto": "58"},
               "tcp6": {"dl_type": "0x86dd", "nw_proto": "6"},
               "udp6": {"dl_type": "0x86dd", "nw_proto": "17"},
               "mpls": {"dl_type": "0x8847"}, "mplsm": {"dl_type": "0x8848"}}
_SYNONYMS = {"eth_type": "dl_type", "ip_src": "nw_src", "ip_dst": "nw_dst",
             "ipv4_src": "nw_src", "ipv4_dst": "nw_dst", "ip_proto": "nw_proto",
             "udp_src": "tp_src", "udp_dst": "tp_dst", "tcp_src": "tp_src", "tcp_dst": "tp_dst",
             "sctp_src": "tp_src", "sctp_dst": "tp_dst"}
_KEY_RE = re.compile(r"^[a-z][a-z0-9_]*(\[[0-9.]*\])?$")


class FlowParseError(ValueError):
    """Text that is not `ovs-ofctl dump-flows` output; the message names the line."""


@dataclass(frozen=True)
class FlowEntry:
    table: int
    priority: int
    n_packets: int
    n_bytes: int
    match: tuple[tuple[str, str], ...]  # normalised (field, value); shorthands expanded
    actions: str
    cookie: int = 0
    line: int = 0
    duration_s: float | None = None  # age of the flow entry (None when not printed)


def _int(text: str, what: str, lineno: int) -> int:
    try:
        v = int(text, 0)
    except ValueError:
        raise FlowParseError(f"line {lineno}: {what} {text[:40]!r} is not an integer") from None
    if v < 0:
        raise FlowParseError(f"line {lineno}: {what} {v} is negative")
    return v


def parse_flow_line(line: str, lineno: int = 1) -> FlowEntry:
    if len(line) > MAX_LINE:
        raise FlowParseError(f"line {lineno}: {len(line)} characters is too long for a flow")
    if any(ord(c) < 32 and c != "\t" for c in line):
        raise FlowParseError(f"line {lineno}: control characters; not dump-flows text")
    head, sep, actions = line.strip().partition(" actions=")
    if not sep:
        if line.strip().startswith("actions="):
            head, actions = "", line.strip()[len("actions="):]
        else:
            raise FlowParseError(f"line {lineno}: no 'actions=' in {line.strip()[:80]!r}; "
                                 "not a flow from ovs-ofctl dump-flows")
    stats: dict[str, str] = {}
    match: dict[str, str] = {}
    priority = DEFAULT_PRIORITY
    # stats and flags are ", "-separated, the match ","-separated; a flag such as
    # send_flow_rem is followed by the match after a space
    for tok in re.split(r"[,\s]+", head):
        if not tok or tok in _FLAGS:
            continue
        key, eq, value = tok.partition("=")
        key = key.strip()
        if not _KEY_RE.match(key):
            raise FlowParseError(f"line {lineno}: {tok[:40]!r} is not a field")
        if key in _STAT_KEYS:
            stats[key] = value
        elif key == "priority":
            priority = _int(value, "priority", lineno)
        elif not eq:
            if key not in _SHORTHANDS:
                raise FlowParseError(f"line {lineno}: unknown match keyword {key!r}")
            match.update(_SHORTHANDS[key])
        else:
            match[_SYNONYMS.get(key, key)] = value.strip().strip('"')
    if "n_packets" not in stats:
        raise FlowParseError(f"line {lineno}: no n_packets counter; run dump-flows without "
                             "--no-stats")
    duration = None
    if "duration" in stats:
        try:
            duration = float(stats["duration"].rstrip("s"))
        except ValueError:
            raise FlowParseError(f"line {lineno}: duration {stats['duration'][:40]!r} is not "
                                 "seconds") from None
    return FlowEntry(table=_int(stats.get("table", "0"), "table", lineno), priority=priority,
                     n_packets=_int(stats["n_packets"], "n_packets", lineno),
                     n_bytes=_int(stats.get("n_bytes", "0"), "n_bytes", lineno),
                     match=tuple(sorted(match.items())), actions=actions.strip(),
                     cookie=_int(stats.get("cookie", "0"), "cookie", lineno), line=lineno,
                     duration_s=duration)


def parse_dump_flows(text: str) -> list[FlowEntry]:
    """Parse `ovs-ofctl [-O OpenFlow13] dump-flows BRIDGE` output (with or without the
    OFPST_FLOW reply header). Raises FlowParseError naming the bad line."""
    if not isinstance(text, str):
        raise FlowParseError("dump-flows output must be text")
    if len(text) > MAX_INPUT:
        raise FlowParseError(f"dump-flows output too large ({len(text)} characters)")
    flows = []
    for i, line in enumerate(text.splitlines(), 1):
        s = line.strip()
        if not s or re.match(r"^(OFPST|NXST|OFST)_FLOW reply\b", s):
            continue
        flows.append(parse_flow_line(line, i))
    return flows


# --- does a flow's match cover the probe packet? ---------------------------------------------

@dataclass(frozen=True)
class ProbePacket:
    """The fields of the probe packet we know; every other field may be anything."""

    nw_src: str
    nw_dst: str
    nw_proto: int = 17
    tp_src: int | None = None
    tp_dst: int | None = None
    dl_type: int = 0x0800

    def known(self) -> dict[str, int | str]:
        out: dict[str, int | str] = {"dl_type": self.dl_type, "nw_proto": self.nw_proto,
                                     "nw_src": self.nw_src, "nw_dst": self.nw_dst}
        if self.tp_src is not None:
            out["tp_src"] = self.tp_src
        if self.tp_dst is not None:
            out["tp_dst"] = self.tp_dst
        return out


YES, MAYBE, NO = "yes", "maybe", "no"


def _field_matches(key: str, want: str, have: int | str) -> bool:
    base, _, mask = want.partition("/")
    if key in ("nw_src", "nw_dst"):
        try:
            net = ipaddress.IPv4Network(f"{base}/{mask}" if mask else base, strict=False)
        except ValueError:
            return False  # an IPv6 or malformed address never matches an IPv4 probe
        return ipaddress.IPv4Address(str(have)) in net
    try:
        value = int(base, 0)
        m = int(mask, 0) if mask else -1
    except ValueError:
        return False
    return (int(have) & m) == (value & m)


def covers(flow: FlowEntry, pkt: ProbePacket) -> str:
    """YES: the match certainly covers the packet; MAYBE: it does if fields the probe does
    not fix (in_port, MAC addresses, TTL...) fit; NO: a field rules it out."""
    known = pkt.known()
    result = YES
    for key, value in flow.match:
        if key in known:
            if not _field_matches(key, value, known[key]):
                return NO
        else:
            result = MAYBE
    return result


def counted_flows(flows: Iterable[FlowEntry], pkt: ProbePacket) -> dict[int, list[FlowEntry]]:
    """Per table, the flows that can carry the probe: those covering it at or above the
    highest priority certain to match (a packet takes the highest-priority match)."""
    by_table: dict[int, list[tuple[FlowEntry, str]]] = {}
    for f in flows:
        c = covers(f, pkt)
        if c != NO:
            by_table.setdefault(f.table, []).append((f, c))
    out = {}
    for table, entries in by_table.items():
        floor = max((f.priority for f, c in entries if c == YES), default=-1)
        out[table] = [f for f, _c in entries if f.priority >= floor]
    return out


def probe_count(flows: Iterable[FlowEntry], pkt: ProbePacket) -> int:
    """Packets this switch's counters attribute to flows that can carry the probe: the
    counted flows' packets per table, max over tables (a packet crossing several tables is
    counted in each)."""
    return max((sum(f.n_packets for f in fl) for fl in counted_flows(flows, pkt).values()),
               default=0)


def youngest_flow_s(flows: Iterable[FlowEntry], pkt: ProbePacket) -> float | None:
    """Age of the youngest counted flow: younger than the probe means it was (re)installed
    during the probe and its counter restarted from zero."""
    ages = [f.duration_s for fl in counted_flows(flows, pkt).values() for f in fl
            if f.duration_s is not None]
    return min(ages) if ages else None


# --- ordering and the verdict -----------------------------------------------------------------

def order_path(adjacency: dict[str, set[str]], start: str, crossed: set[str],
               end: str | None = None, max_steps: int = 100_000) -> list[str] | None:
    """The one walk over plan links that starts at `start`, visits every `crossed` switch
    (site ids) exactly once and, if given, ends at `end`. None when there is no such walk
    or more than one (the counters then cannot tell the order), or the search is too big.
    Links between crossed switches that the flow did not use (a loop's shortcut) are fine
    as long as only one order fits."""
    if start not in crossed or (end is not None and end not in crossed):
        return None
    found: list[list[str]] = []
    steps = 0

    def walk(path: list[str]) -> None:
        nonlocal steps
        steps += 1
        if len(found) > 1 or steps > max_steps:
            return
        if len(path) == len(crossed):
            if end is None or path[-1] == end:
                found.append(list(path))
            return
        for n in sorted(adjacency.get(path[-1], ())):
            if n in crossed and n not in path:
                path.append(n)
                walk(path)
                path.pop()

    walk([start])
    return found[0] if len(found) == 1 and steps <= max_steps else None


@dataclass(frozen=True)
class PathCheck:
    src: str
    dst: str
    announced: tuple[str, ...] | None
    measured: tuple[str, ...] | None  # ordered; None when the crossed set is not a chain
    crossed: tuple[str, ...]  # sites whose counters rose by >= count
    counts: dict[str, int]  # site -> counter rise, every switch with a rise
    count: int
    status: str  # match | mismatch | inconclusive | no-path
    reason: str = ""
    noisy: tuple[str, ...] = ()
    tuple5: tuple = field(default=())


def judge_path(src: str, dst: str, announced: Sequence[str] | None, counts: dict[str, int],
               count: int, adjacency: dict[str, set[str]], noisy: Iterable[str] = (),
               tuple5: tuple = (), reset: Iterable[str] = ()) -> PathCheck:
    """counts: the rise of each switch's probe counters; noisy: switches whose counters moved
    while no probe was sent; reset: switches whose counted flows were replaced during the
    probe (a rise below zero is one too)."""
    crossed = {s for s, n in counts.items() if n >= count}
    resets = sorted(set(reset) | {s for s, n in counts.items() if n < 0})
    noisy_t = tuple(sorted(noisy))
    measured = order_path(adjacency, src, crossed, dst)
    ann = tuple(announced) if announced else None
    base = dict(src=src, dst=dst, announced=ann, crossed=tuple(sorted(crossed)),
                counts=dict(sorted(counts.items())), count=count, noisy=noisy_t, tuple5=tuple5)
    if ann is None:
        return PathCheck(measured=tuple(measured) if measured else None, status=NO_PATH,
                         reason="the controller announces no path for this pair", **base)
    if measured is not None and tuple(measured) == ann:
        return PathCheck(measured=tuple(measured), status=MATCH, **base)
    if measured is None:
        why = (f"the switches that carried >= {count} packets ({', '.join(sorted(crossed))}) "
               f"do not form one chain from {src}" if crossed else
               f"no switch carried {count} packets (lost, or the counters did not update)")
    else:
        why = f"the probe crossed {' > '.join(measured)}"
    if resets:
        return PathCheck(measured=tuple(measured) if measured else None, status=INCONCLUSIVE,
                         reason=f"{why}; flows on {', '.join(resets)} were replaced during "
                                "the probe (counters restarted): the controller re-routed?",
                         **base)
    suspects = set(noisy_t) & (crossed ^ set(ann))
    if suspects:
        return PathCheck(measured=tuple(measured) if measured else None, status=INCONCLUSIVE,
                         reason=f"{why}; background traffic on {', '.join(sorted(suspects))}",
                         **base)
    return PathCheck(measured=tuple(measured) if measured else None, status=MISMATCH,
                     reason=why, **base)


def schedule_rounds(pairs: Sequence[tuple[str, str]]) -> list[list[tuple[str, str]]]:
    """Rounds of pairs in which no host appears twice (as source or destination).

    Greedy over the pairs taken diagonal by diagonal (destination index minus source index),
    which for every-metro-to-every-cluster gives the minimum: as many rounds as clusters."""
    srcs = list(dict.fromkeys(p[0] for p in pairs))
    dsts = list(dict.fromkeys(p[1] for p in pairs))
    si, di = {h: i for i, h in enumerate(srcs)}, {h: i for i, h in enumerate(dsts)}
    ordered = sorted(pairs, key=lambda p: ((di[p[1]] - si[p[0]]) % len(dsts), si[p[0]]))
    rounds: list[list[tuple[str, str]]] = []
    for p in ordered:
        for r in rounds:
            if all(p[0] not in q and p[1] not in q for q in r):
                r.append(p)
                break
        else:
            rounds.append([p])
    return rounds


# --- the runner (needs a running emulation.network.Emulation) ------------------------------

SENDER = (
    "import socket,sys,time\n"
    "dst,sport,dport,n,gap=sys.argv[1],int(sys.argv[2]),int(sys.argv[3]),int(sys.argv[4]),"
    "float(sys.argv[5])\n"
    "s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n"
    "s.bind(('',sport))\n"
    "t=time.monotonic()\n"
    "for i in range(n):\n"
    "    s.sendto(b'edwc-pathcheck %d' % i,(dst,dport))\n"
    "    t+=gap\n"
    "    time.sleep(max(0.0,t-time.monotonic()))\n"
    "print('sent',n)\n")


class PathCheckError(RuntimeError):
    """Reading the switches failed (ovs-ofctl missing, timed out, or printed garbage)."""


def dump_flows(bridges: Sequence[str], timeout: float = 30.0, parallel: int = 4
               ) -> dict[str, list[FlowEntry]]:
    """Every bridge's flows, `parallel` ovs-ofctl processes at a time."""
    out: dict[str, list[FlowEntry]] = {}
    deadline = time.monotonic() + timeout
    for i in range(0, len(bridges), parallel):
        procs = {}
        for b in bridges[i:i + parallel]:
            try:
                procs[b] = subprocess.Popen(
                    ["ovs-ofctl", "-O", "OpenFlow13", "--no-names", "dump-flows", b],
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            except OSError as e:
                raise PathCheckError(f"cannot run ovs-ofctl: {e}; install Open vSwitch "
                                     "(./setup.sh)") from None
        for b, p in procs.items():
            try:
                so, se = p.communicate(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                for q in procs.values():
                    if q.poll() is None:
                        q.kill()
                        q.communicate()
                raise PathCheckError(f"ovs-ofctl dump-flows {b} did not answer within "
                                     f"{timeout:g} s (Open vSwitch overloaded?)") from None
            if p.returncode != 0:
                raise PathCheckError(f"ovs-ofctl dump-flows {b} failed: {se.strip()[:200]}")
            try:
                out[b] = parse_dump_flows(so)
            except FlowParseError as e:
                raise PathCheckError(f"dump-flows {b}: {e}") from None
    return out


def verify_paths(emu, pairs: Sequence[tuple[str, str]], count: int = 200,
                 interval_s: float = 0.002, settle_s: float = 0.6, timeout_s: float = 5.0,
                 retries: int = 1, log: Callable[[str], None] = lambda _m: None
                 ) -> list[PathCheck]:
    """Check each (src, dst) host pair of a running Emulation; returns one PathCheck each.
    Pairs found inconclusive (re-routing or background traffic during the probe) are
    measured again, up to `retries` times."""
    if count < 1 or interval_s <= 0:
        raise ValueError("count must be >= 1 and interval_s > 0")
    plan = emu.plan
    site_of = {s.name: s.site for s in plan.switches}
    bridges = [s.name for s in plan.switches]
    adjacency: dict[str, set[str]] = {}
    for ln in plan.links:
        adjacency.setdefault(ln.a, set()).add(ln.b)
        adjacency.setdefault(ln.b, set()).add(ln.a)
    checks: dict[tuple[str, str], PathCheck] = {}
    todo = list(pairs)
    for attempt in range(retries + 1):
        for rnd in schedule_rounds(todo):
            try:
                checks.update(_run_round(emu, rnd, count, interval_s, settle_s, timeout_s,
                                         bridges, site_of, adjacency))
            except PathCheckError as e:
                status = emu.controller_status().get("paths", {})
                for a, b in rnd:
                    checks[(a, b)] = PathCheck(
                        a, b, tuple(status.get(f"{a}>{b}") or ()) or None, None, (), {},
                        count, INCONCLUSIVE, str(e))
            log(f"[paths] {sum(c.status != INCONCLUSIVE for c in checks.values())}/"
                f"{len(pairs)} pairs decided" + (f" (retry {attempt})" if attempt else ""))
        todo = [p for p in pairs if checks[p].status == INCONCLUSIVE]
        if not todo:
            break
    return [checks[p] for p in pairs]


def _run_round(emu, rnd, count, interval_s, settle_s, timeout_s, bridges, site_of, adjacency):
    plan = emu.plan
    pkts = {}
    for i, (a, b) in enumerate(rnd):
        port = PROBE_PORT_BASE + i
        pkts[(a, b)] = ProbePacket(plan.host(a).ip, plan.host(b).ip, 17, port, port)
        # resolve ARP and set up the datapath's flow cache first (before the first snapshot)
        emu.net[a].cmd(f"ping -n -c1 -W1 {plan.host(b).ip} >/dev/null 2>&1")

    def counts() -> dict:
        """pair -> site -> (packets on the counted flows, age of the youngest of them)."""
        snap = dump_flows(bridges)
        return {p: {site_of[br]: (probe_count(fl, pkt), youngest_flow_s(fl, pkt))
                    for br, fl in snap.items()} for p, pkt in pkts.items()}

    def settled() -> tuple[dict, dict, float, float]:
        """Counters once two reads `settle_s` apart agree (userspace OVS pushes datapath
        statistics to the OpenFlow counters in revalidator rounds of ~0.5 s, so earlier
        traffic, e.g. the warm-up or the emulator's calibration, can still arrive); per
        pair, the switches whose counters were still moving at the deadline; and when the
        last read started and ended."""
        deadline = time.monotonic() + timeout_s
        cur = counts()
        while True:
            time.sleep(settle_s)
            t0 = time.monotonic()
            nxt = counts()
            t1 = time.monotonic()
            moving = {p: {s for s in nxt[p] if nxt[p][s][0] != cur[p][s][0]} for p in nxt}
            if not any(moving.values()) or t1 > deadline:
                return nxt, moving, t0, t1
            cur = nxt

    before, moving_before, _t0, before_done = settled()
    status_before = emu.controller_status()
    procs = [emu.net[a].popen([sys.executable, "-c", SENDER, pkt.nw_dst, str(pkt.tp_src),
                               str(pkt.tp_dst), str(count), f"{interval_s:g}"])
             for (a, _b), pkt in pkts.items()]
    try:
        for ((a, b), p) in zip(pkts, procs):
            try:
                _out, err = p.communicate(timeout=count * interval_s + 30)
            except subprocess.TimeoutExpired:
                raise PathCheckError(f"the probe sender on {a} did not finish") from None
            if p.returncode != 0:
                text = err.decode(errors="replace") if isinstance(err, bytes) else str(err)
                raise PathCheckError(f"the probe sender {a}->{b} failed (exit "
                                     f"{p.returncode}): {text.strip()[-200:]}")
    finally:
        for p in procs:  # only ours, by handle
            if p.poll() is None:
                p.kill()
                p.communicate()
    deadline = time.monotonic() + timeout_s  # first wait for both ends to show the count
    while time.monotonic() < deadline:
        now = counts()
        if all(now[(a, b)][s][0] - before[(a, b)][s][0] >= count
               for a, b in rnd for s in (plan.host(a).site, plan.host(b).site)):
            break
        time.sleep(0.1)
    after, moving_after, after_started, _t1 = settled()
    # a counted flow younger than the time between the two reads was installed after the
    # first one: its counter restarted from zero
    between = after_started - before_done
    status = emu.controller_status()
    paths, rerouted = status.get("paths", {}), (status_before.get("routes_version")
                                                != status.get("routes_version"))
    out = {}
    for (a, b), pkt in pkts.items():
        rise = {s: after[(a, b)][s][0] - before[(a, b)][s][0] for s in after[(a, b)]}
        reset = [s for s, (_n, age) in after[(a, b)].items()
                 if age is not None and age < between]
        noisy = moving_before[(a, b)] | moving_after[(a, b)]
        key = f"{a}>{b}"
        check = judge_path(plan.host(a).site, plan.host(b).site, paths.get(key),
                           {s: n for s, n in rise.items() if n}, count, adjacency, noisy,
                           ("udp", pkt.nw_src, pkt.tp_src, pkt.nw_dst, pkt.tp_dst), reset)
        if rerouted and check.status != MATCH:
            check = replace(check, status=INCONCLUSIVE, reason=(
                f"the controller re-routed during the probe (routes "
                f"v{status_before.get('routes_version')} -> v{status.get('routes_version')}, "
                f"this pair {status_before.get('paths', {}).get(key)} -> {paths.get(key)}); "
                f"{check.reason}"))
        out[(a, b)] = check
    return out


def render_checks(checks: Sequence[PathCheck]) -> str:
    lines = []
    for c in checks:
        ann = " > ".join(c.announced) if c.announced else "(none)"
        meas = " > ".join(c.measured) if c.measured else "(" + ", ".join(c.crossed) + ")"
        lines.append(f"{c.status.upper():<12} {c.src} -> {c.dst}")
        lines.append(f"  announced: {ann}")
        lines.append(f"  measured:  {meas}   ({c.count} packets; rises: " + ", ".join(
            f"{s} {n}" for s, n in c.counts.items()) + ")")
        if c.reason:
            lines.append(f"  {c.reason}")
    n_match = sum(c.status == MATCH for c in checks)
    lines.append(f"{n_match}/{len(checks)} pairs: measured path = announced path")
    return "\n".join(lines)


def check_to_dict(c: PathCheck) -> dict:
    return {"src": c.src, "dst": c.dst, "status": c.status, "reason": c.reason,
            "announced": list(c.announced) if c.announced else None,
            "measured": list(c.measured) if c.measured else None, "crossed": list(c.crossed),
            "counts": c.counts, "count": c.count, "noisy": list(c.noisy),
            "probe": list(c.tuple5)}
