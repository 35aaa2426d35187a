"""One-way delay and throughput probes on a real emulation (Mininet, OVS, delay line).

Topology (built here): east -- mid -- west with mid-west asymmetric (3 ms west-bound, 6 ms
east-bound), and east -- lossy with 3 % loss per direction; every link 100 Mbit/s. Hosts sit
at east, west and lossy (mid is a hub: no host).

Tolerances (stated):
- one-way p50 within OWD_TOL_MS = 0.5 ms of the configured one-way path delay, each way
  (the calibrated substrate residual is tens of microseconds; the rest is CI load);
- the asymmetry (reverse - forward) within 0.5 ms of the configured 3 ms;
- loss: 2000 probes at 2 ms. Forward loss is Binomial(2000, 0.03): sd 0.38 percentage points;
  reverse Binomial(~1940, 0.03): sd 0.39. Accept 3 % +- 1.5 points (about 4 sd, a false
  failure about 1 in 10,000 runs);
- iperf3: TCP between 5 and 105 Mbit/s received on a 100 Mbit/s path; UDP at 20 Mbit/s
  receives at least 16 Mbit/s with under 5 % loss.
"""

import os
import time

import pytest

from emulation.network import Emulation
from probes.iperf import run_iperf
from probes.owd import measure_owd
from tests.integration.conftest import assert_clean
from topology.model import build_network
from topology.paths import shortest_path

OWD_TOL_MS = 0.5
LOSS_PCT = 3.0
LOSS_TOL_PCT = 1.5
PORT = 6571  # our reflector port: lets the test find (only) its own processes
IPERF_PORT = 5271


def network():
    sites = [
        {"id": "east", "kind": "metro", "region": "east", "lat": 30.00, "lon": 120.00},
        {"id": "mid", "kind": "hub", "region": "central", "lat": 30.00, "lon": 120.05},
        {"id": "west", "kind": "cluster", "region": "west", "hub": "mid", "lat": 30.00,
         "lon": 120.10},
        {"id": "lossy", "kind": "cluster", "region": "east", "hub": "mid", "lat": 30.05,
         "lon": 120.00},
    ]
    links = [
        {"a": "east", "b": "mid", "delay_ms": 4.0, "bandwidth_mbps": 100},
        {"a": "mid", "b": "west", "delay_ms": 3.0, "delay_ms_reverse": 6.0,
         "bandwidth_mbps": 100},
        {"a": "east", "b": "lossy", "delay_ms": 2.0, "loss_pct": LOSS_PCT,
         "bandwidth_mbps": 100},
    ]
    return build_network(sites, links, name="probe-test")


@pytest.fixture(scope="module")
def emu():
    e = Emulation(network(), log=lambda *_: None)
    e.start()
    yield e
    rid = e.run_id
    e.stop()
    assert_clean(rid)


def own_processes(marker: str) -> list[int]:
    """Pids whose command line carries `marker` (our port): ours, never anyone else's."""
    pids = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/cmdline", "rb") as f:
                    if marker.encode() in f.read().replace(b"\0", b" "):
                        pids.append(int(d))
            except OSError:
                pass
    return pids


def wait_gone(marker: str, timeout: float = 5.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while (left := own_processes(marker)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


def test_one_way_delay_each_way_and_asymmetry(emu):
    net = emu.network
    fwd_want = shortest_path(net, "east", "west").delay_ms  # 4 + 3
    rev_want = shortest_path(net, "west", "east").delay_ms  # 6 + 4
    assert (fwd_want, rev_want) == (7.0, 10.0)
    res = measure_owd(emu.net, [("east", "west"), ("west", "east")], count=200,
                      interval_s=0.005, timeout_s=1.0, port=PORT)
    ew, we = res[("east", "west")], res[("west", "east")]
    for r, f, b in ((ew, fwd_want, rev_want), (we, rev_want, fwd_want)):
        assert r.loss_split_known
        assert r.forward.loss_pct == 0 and r.reverse.loss_pct == 0, r.to_dict()
        assert abs(r.forward.p50 - f) <= OWD_TOL_MS, (r.src, r.dst, r.forward.to_dict(), f)
        assert abs(r.reverse.p50 - b) <= OWD_TOL_MS, (r.src, r.dst, r.reverse.to_dict(), b)
        assert r.forward.n_samples == 200 and r.forward.min > 0
        # one way is not RTT/2 on this path: the round trip splits 7 / 10. The RTT also
        # holds the reflector's turnaround (a loaded host adds a millisecond), so it is
        # checked one-sided: never below the two one-way paths.
        assert r.rtt.p50 >= f + b - 2 * OWD_TOL_MS, (r.rtt.p50, f + b)
    asym = ew.reverse.p50 - ew.forward.p50
    assert abs(asym - 3.0) <= OWD_TOL_MS, asym
    assert abs((we.forward.p50 - we.reverse.p50) - 3.0) <= OWD_TOL_MS
    assert wait_gone(f"--port {PORT}") == []


def test_loss_on_a_lossy_link_each_direction(emu):
    res = measure_owd(emu.net, [("east", "lossy")], count=2000, interval_s=0.002,
                      timeout_s=0.5, port=PORT)
    r = res[("east", "lossy")]
    assert r.loss_split_known
    assert abs(r.forward.loss_pct - LOSS_PCT) <= LOSS_TOL_PCT, r.forward.to_dict()
    assert abs(r.reverse.loss_pct - LOSS_PCT) <= LOSS_TOL_PCT, r.reverse.to_dict()
    # both directions: 1 - 0.97^2 = 5.91 %, sd 0.53 points over 2000
    assert abs(r.rtt.loss_pct - 5.91) <= 2.0, r.rtt.to_dict()
    assert r.reverse.sent == r.forward.received
    assert abs(r.forward.p50 - 2.0) <= OWD_TOL_MS and abs(r.reverse.p50 - 2.0) <= OWD_TOL_MS
    assert r.forward.duplicates == 0 and r.reverse.reordered == 0  # the delay line keeps order
    assert wait_gone(f"--port {PORT}") == []


def test_iperf3_tcp_and_udp_and_no_process_left(emu):
    tcp = run_iperf(emu.net, "east", "west", "tcp", seconds=2, port=IPERF_PORT)
    assert tcp.proto == "tcp" and 5 <= tcp.received_mbps <= 105, tcp
    assert tcp.retransmits is not None
    udp = run_iperf(emu.net, "east", "west", "udp", seconds=2, bandwidth=20,
                    port=IPERF_PORT)
    assert udp.proto == "udp" and udp.received_mbps >= 16, udp
    assert udp.lost_pct < 5 and udp.jitter_ms is not None and udp.jitter_ms < 5, udp
    assert wait_gone(f"-p {IPERF_PORT}") == []


def test_iperf3_client_without_server_gives_iperfs_error(emu):
    """The parser turns iperf3's own error (connection refused) into a clear IperfError."""
    from probes.iperf import IperfError, client_command, parse_iperf

    proc = emu.net["east"].popen(client_command(emu.plan.host("west").ip, IPERF_PORT + 1,
                                                "tcp", 1))
    try:
        out, _ = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    with pytest.raises(IperfError, match="iperf3 failed: .*Connection refused"):
        parse_iperf(out)
