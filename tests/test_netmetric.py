"""The network-metric estimator (C-NMA) on a synthetic control channel with injected times."""

from __future__ import annotations

import json
import math
import random
from statistics import mean

import pytest

from controller.netmetric import (
    LinkDelayEstimator,
    compare,
    link_key,
    parse_link_key,
    percentile,
)

EXACT = 1e-6  # ms; float round-off only

# One-way control-channel latency per switch (s) and one-way link delays (ms).
CHANNEL = {1: 0.0004, 2: 0.0011, 3: 0.0025}
DELAYS = {(1, 2, 2, 1): 5.0, (2, 1, 1, 2): 5.0, (2, 3, 3, 1): 12.5, (3, 1, 2, 3): 12.5,
          (1, 3, 3, 2): 0.8}


class Channel:
    """Drives an estimator like the controller would, with a fake clock."""

    def __init__(self, est: LinkDelayEstimator, channel=CHANNEL, delays=DELAYS) -> None:
        self.est, self.channel, self.delays = est, dict(channel), dict(delays)
        self.now = 100.0
        self.xid = 0x4000

    def echo(self, dpid: int, extra: float = 0.0) -> float | None:
        self.xid += 1
        self.est.echo_sent(dpid, self.xid, self.now)
        return self.est.echo_reply(dpid, self.xid, self.now + 2 * self.channel[dpid] + extra)

    def probe(self, link, extra: float = 0.0, jitter_ms: float = 0.0) -> None:
        a, _, b, _ = link
        rx = (self.now + self.channel[a] + (self.delays[link] + jitter_ms) / 1000.0
              + self.channel[b] + extra)
        self.est.probe_seen(link, self.now, rx)

    def round(self, echo_extra=None, probe_extra=None) -> None:
        """One probe interval: an echo to every switch, then a probe over every link."""
        for dpid in sorted(self.channel):
            self.echo(dpid, echo_extra(dpid) if echo_extra else 0.0)
        for link in sorted(self.delays):
            self.probe(link, probe_extra(link) if probe_extra else 0.0)
        self.now += 1.0


def test_exact_recovery_on_a_clean_channel():
    est = LinkDelayEstimator(window=8, min_samples=3)
    ch = Channel(est)
    for _ in range(3):
        ch.round()
    for link, d in DELAYS.items():
        assert est.delay_ms(link) == pytest.approx(d, abs=EXACT), link
    snap = est.snapshot()
    s = snap["links"]["2:3->3:1"]
    assert s["samples"] == 3 and s["link"] == [2, 3, 3, 1]
    assert s["min_ms"] == pytest.approx(12.5, abs=1e-3)
    assert s["median_ms"] == pytest.approx(12.5, abs=1e-3)
    # raw includes both half-channels: 1.1 + 12.5 + 2.5 ms
    assert s["last_raw_ms"] == pytest.approx(16.1, abs=1e-3)
    assert s["echo_rtt_ms"] == [pytest.approx(2.2, abs=1e-3), pytest.approx(5.0, abs=1e-3)]


def test_uncorrected_raw_would_be_wrong():
    """The channel correction matters: raw delays are off by the half-RTTs (test can fail)."""
    est = LinkDelayEstimator(min_samples=1)
    ch = Channel(est)
    ch.round()
    raw = est.snapshot()["links"]["2:3->3:1"]["last_raw_ms"]
    assert raw - 12.5 == pytest.approx(3.6, abs=1e-3)
    assert est.delay_ms((2, 3, 3, 1)) == pytest.approx(12.5, abs=EXACT)


def test_needs_min_samples_and_both_echoes():
    est = LinkDelayEstimator(min_samples=3)
    ch = Channel(est)
    link = (1, 2, 2, 1)
    ch.echo(1)
    for _ in range(3):
        ch.probe(link)
    assert est.delay_ms(link) is None  # no echo from switch 2 yet
    assert est.snapshot()["links"][link_key(link)]["estimate_ms"] is None
    ch.echo(2)  # samples taken before the echo are corrected at read time
    assert est.delay_ms(link) == pytest.approx(5.0, abs=EXACT)
    est2 = LinkDelayEstimator(min_samples=3)
    ch2 = Channel(est2)
    ch2.echo(1), ch2.echo(2)
    ch2.probe(link), ch2.probe(link)
    assert est2.delay_ms(link) is None
    ch2.probe(link)
    assert est2.delay_ms(link) == pytest.approx(5.0, abs=EXACT)


def test_queueing_noise_is_ignored():
    """6 of 16 probe samples and 10 of 16 echoes get 0.5..20 ms of queueing: still exact."""
    rng = random.Random(7)
    est = LinkDelayEstimator(window=16, echo_window=16)
    ch = Channel(est)
    hit_probe = {lk: set(rng.sample(range(16), 6)) for lk in DELAYS}
    hit_echo = {d: set(rng.sample(range(16), 10)) for d in CHANNEL}
    for i in range(16):
        ch.round(echo_extra=lambda d, i=i: rng.uniform(0.0005, 0.02) if i in hit_echo[d] else 0,
                 probe_extra=lambda lk, i=i: rng.uniform(0.0005, 0.02)
                 if i in hit_probe[lk] else 0)
    snap = est.snapshot()
    for link, d in DELAYS.items():
        assert est.delay_ms(link) == pytest.approx(d, abs=EXACT), link
        s = snap["links"][link_key(link)]
        assert s["min_ms"] == pytest.approx(d, abs=1e-3)
        # the naive mean of echo-corrected samples is far off: the test can fail
        ra, rb = CHANNEL[link[0]] * 2e3, CHANNEL[link[2]] * 2e3
        assert s["raw_min_ms"] - (ra + rb) / 2 == pytest.approx(d, abs=1e-3)
    corrected_mean = _mean_corrected(est, (2, 3, 3, 1))
    assert corrected_mean - 12.5 > 1.0


def _mean_corrected(est: LinkDelayEstimator, link) -> float:
    vals = est._corrected(link)
    assert vals is not None
    return mean(vals) * 1000.0


def test_median_beats_min_on_a_jittery_link():
    rng = random.Random(11)
    link = (1, 2, 2, 1)
    med = LinkDelayEstimator(window=64)
    mn = LinkDelayEstimator(window=64, statistic="min")
    chs = [Channel(med), Channel(mn)]
    for _ in range(64):
        j = rng.uniform(-1.0, 1.0)  # +-1 ms symmetric jitter around 5 ms
        for ch in chs:
            ch.echo(1), ch.echo(2)
            ch.probe(link, jitter_ms=j)
            ch.now += 1.0
    # median of 64 uniform samples: sd ~0.09 ms, tolerance ~4 sd
    assert med.delay_ms(link) == pytest.approx(5.0, abs=0.35)
    assert mn.delay_ms(link) < 5.0 - 0.8  # the minimum chases the jitter floor


def test_window_rolls_over_after_a_channel_change():
    est = LinkDelayEstimator(window=4, echo_window=4, min_samples=2)
    ch = Channel(est)
    for _ in range(4):
        ch.round()
    ch.channel[3] = 0.0100  # switch 3's channel gets 7.5 ms slower one way
    ch.round()
    assert est.delay_ms((2, 3, 3, 1)) == pytest.approx(12.5, abs=EXACT)  # median holds
    ch.round(), ch.round()
    # 3 of 4 probe samples are slower, but one old fast echo still sets the minimum:
    # the estimate is off by the whole one-way change until the echo window rolls over
    assert est.delay_ms((2, 3, 3, 1)) == pytest.approx(12.5 + 7.5, abs=1e-6)
    ch.round()
    assert est.delay_ms((2, 3, 3, 1)) == pytest.approx(12.5, abs=EXACT)
    assert est.channel_rtt(3) == pytest.approx(0.02, abs=1e-12)


def test_bias_and_clamping():
    est = LinkDelayEstimator(min_samples=1, bias_ms=0.3)
    ch = Channel(est)
    ch.round()
    assert est.delay_ms((1, 2, 2, 1)) == pytest.approx(4.7, abs=EXACT)
    assert est.delay_ms((1, 3, 3, 2)) == pytest.approx(0.5, abs=EXACT)
    est2 = LinkDelayEstimator(min_samples=1, bias_ms=2.0)
    ch2 = Channel(est2)
    ch2.round()
    assert est2.delay_ms((1, 3, 3, 2)) == 0.0  # 0.8 - 2.0 clamps at 0 for routing
    assert est2.snapshot()["links"]["1:3->3:2"]["median_ms"] == pytest.approx(-1.2, abs=1e-3)


def test_echo_matching():
    est = LinkDelayEstimator()
    assert est.echo_reply(9, 1, 1.0) is None  # unknown switch: ignored, no state created
    assert est.snapshot()["switches"] == {}
    est.echo_sent(1, 10, 1.0)
    est.echo_sent(1, 11, 1.1)
    assert est.echo_reply(1, 99, 1.2) is None  # os-ken's own keepalive echo, say
    assert est.echo_reply(1, 11, 1.103) == pytest.approx(3.0, abs=EXACT)
    assert est.echo_reply(1, 11, 1.2) is None  # duplicate reply
    assert est.echo_reply(1, 10, 1.004) == pytest.approx(4.0, abs=EXACT)
    sw = est.snapshot()["switches"]["1"]
    assert sw == {"rtt_min_ms": 3.0, "rtt_last_ms": 4.0, "rtt_samples": 2, "sent": 2,
                  "received": 2, "lost": 0, "unmatched": 2, "outstanding": 0}
    assert est.channel_rtt(1) == pytest.approx(0.003)
    est.echo_sent(1, 12, 2.0)
    est.echo_sent(1, 12, 2.5)  # a reused xid restarts its clock
    assert est.echo_reply(1, 12, 2.501) == pytest.approx(1.0, abs=EXACT)


def test_echo_timeouts_and_bounds():
    est = LinkDelayEstimator(max_outstanding=3, echo_timeout=2.0, echo_window=4)
    for i in range(5):  # 5 unanswered: the 2 oldest are pushed out by the cap
        est.echo_sent(1, i, 10.0 + i * 0.1)
    sw = est.snapshot()["switches"]["1"]
    assert sw["outstanding"] == 3 and sw["lost"] == 2
    est.expire(12.25)  # xid 2 (sent 10.2) is older than 2 s, 3 and 4 are not
    sw = est.snapshot()["switches"]["1"]
    assert sw["outstanding"] == 2 and sw["lost"] == 3
    assert est.echo_reply(1, 2, 12.26) is None  # expired: unmatched now
    assert est.echo_reply(1, 3, 12.29) == pytest.approx(1990.0, abs=1e-6)
    assert est.echo_reply(1, 4, 14.41) is None  # answered 2.01 s late: lost, not a sample
    sw = est.snapshot()["switches"]["1"]
    assert sw["lost"] == 4 and sw["outstanding"] == 0 and sw["rtt_samples"] == 1
    for i in range(10):  # the RTT window keeps echo_window samples
        est.echo_sent(1, 100 + i, 20.0 + i)
        est.echo_reply(1, 100 + i, 20.0 + i + 0.001 * (i + 1))
    sw = est.snapshot()["switches"]["1"]
    assert sw["rtt_samples"] == 4 and sw["rtt_min_ms"] == pytest.approx(7.0)
    assert est.echo_reply(1, 5000, -1.0) is None


def test_switch_cap():
    est = LinkDelayEstimator(max_switches=2)
    for d in (1, 2, 3):
        est.echo_sent(d, 1, 0.0)
    assert sorted(est.snapshot()["switches"]) == ["1", "2"]
    assert est.echo_reply(3, 1, 0.001) is None


def test_bad_probe_samples_are_rejected():
    est = LinkDelayEstimator(max_raw=1.0)
    link = (1, 2, 2, 1)
    est.probe_seen(link, 10.0, 9.9)  # negative: clock confusion or forged send time
    est.probe_seen(link, 10.0, 11.5)  # older than max_raw
    est.probe_seen(link, float("nan"), 10.0)
    est.probe_seen(link, float("-inf"), 10.0)
    assert est.rejected_samples == 4 and est.links() == []
    est.probe_seen(link, 10.0, 10.01)
    assert est.links() == [link] and est.rejected_samples == 4
    for bad in [(1, 2, 3), [1, 2, 2, 1], (1, 2, 2, "1"), (1, True, 2, 1), (-1, 2, 2, 1)]:
        with pytest.raises(ValueError, match="tuple of 4 non-negative ints"):
            est.probe_seen(bad, 10.0, 10.01)


def test_link_cap_evicts_least_recently_seen():
    est = LinkDelayEstimator(max_links=3)
    for i, t in enumerate([5.0, 1.0, 3.0]):
        est.probe_seen((1, i + 1, 2, 1), t, t + 0.01)
    est.probe_seen((1, 9, 2, 1), 6.0, 6.01)
    assert est.links() == [(1, 1, 2, 1), (1, 3, 2, 1), (1, 9, 2, 1)]
    assert est.evicted_links == 1


def test_window_bounds_samples():
    est = LinkDelayEstimator(window=5, min_samples=1)
    for i in range(50):
        est.probe_seen((1, 2, 2, 1), float(i), i + 0.01)
    s = est.snapshot()["links"]["1:2->2:1"]
    assert s["samples"] == 5 and s["total_samples"] == 50


def test_forgetting():
    est = LinkDelayEstimator(min_samples=1)
    ch = Channel(est)
    ch.round()
    est.forget_link((1, 3, 3, 2))
    assert (1, 3, 3, 2) not in est.links() and est.delay_ms((1, 3, 3, 2)) is None
    est.forget_switch(2)
    assert est.links() == []  # every remaining link touched switch 2... except none left
    ch.round()
    est.forget_switch(3)
    assert est.links() == [(1, 2, 2, 1), (2, 1, 1, 2)]
    assert "3" not in est.snapshot()["switches"]
    assert est.channel_rtt(3) is None
    est.forget_switch(42)  # unknown: no error
    est.forget_link((9, 9, 9, 9))


def test_snapshot_is_json():
    est = LinkDelayEstimator()
    ch = Channel(est)
    ch.round()
    est.echo_sent(1, 5, ch.now)
    snap = est.snapshot()
    again = json.loads(json.dumps(snap, allow_nan=False))
    assert again == snap
    assert set(snap) == {"params", "links", "switches", "rejected_samples", "evicted_links"}
    assert snap["params"]["statistic"] == "median"
    assert snap["links"]["1:2->2:1"]["estimate_ms"] is None  # 1 sample < min_samples 3


@pytest.mark.parametrize("kwargs, match", [
    ({"window": 0}, "window must be an int >= 1"),
    ({"echo_window": 2.5}, "echo_window must be an int"),
    ({"min_samples": 20, "window": 16}, "min_samples .* must be <= window"),
    ({"statistic": "mean"}, "statistic must be one of"),
    ({"echo_timeout": 0}, "echo_timeout must be"),
    ({"max_raw": float("inf")}, "max_raw must be"),
    ({"bias_ms": float("nan")}, "bias_ms must be a finite number"),
    ({"max_links": True}, "max_links must be an int"),
])
def test_bad_parameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LinkDelayEstimator(**kwargs)


def test_link_keys():
    assert link_key((1, 2, 30, 4)) == "1:2->30:4"
    assert parse_link_key("1:2->30:4") == (1, 2, 30, 4)
    for bad in ("1:2-30:4", "a:2->3:4", "1:2->3"):
        with pytest.raises(ValueError, match="DPID:PORT->DPID:PORT"):
            parse_link_key(bad)


def test_percentile():
    assert percentile([], 50) is None
    assert percentile([3.0], 95) == 3.0
    assert percentile([1, 2, 3, 4], 50) == 2.5
    assert percentile(range(101), 95) == pytest.approx(95.0)
    assert percentile([0, 10], 95) == pytest.approx(9.5)
    with pytest.raises(ValueError, match="0..100"):
        percentile([1], 101)


def test_compare_against_configured():
    est = LinkDelayEstimator(min_samples=1)
    errs = {(1, 2, 2, 1): 0.2, (2, 1, 1, 2): -0.1, (2, 3, 3, 1): 0.5, (3, 1, 2, 3): 0.0}
    measured = {lk: DELAYS[lk] + e for lk, e in errs.items()}
    ch = Channel(est, delays=measured)
    ch.round()
    configured = dict(DELAYS)
    configured[(9, 1, 8, 1)] = 3.0  # never measured
    del configured[(3, 1, 2, 3)]  # measured but not in the plan
    configured_with_str = {link_key(k) if k == (1, 2, 2, 1) else k: v
                           for k, v in configured.items()}
    out = compare(est.snapshot(), configured_with_str)
    assert out["missing"] == ["1:3->3:2", "9:1->8:1"]  # 1:3->3:2 was not probed here
    assert out["unexpected"] == ["3:1->2:3"]
    assert out["links"]["1:2->2:1"] == {"configured_ms": 5.0, "measured_ms":
                                        pytest.approx(5.2, abs=1e-3),
                                        "error_ms": pytest.approx(0.2, abs=1e-3),
                                        "abs_error_ms": pytest.approx(0.2, abs=1e-3)}
    s = out["summary"]
    assert s["n"] == 3
    assert s["mean_error_ms"] == pytest.approx((0.2 - 0.1 + 0.5) / 3, abs=1e-3)
    assert s["median_abs_error_ms"] == pytest.approx(0.2, abs=1e-3)
    assert s["p95_abs_error_ms"] == pytest.approx(0.2 + 0.9 * 0.3, abs=1e-3)
    assert s["max_abs_error_ms"] == pytest.approx(0.5, abs=1e-3)
    json.dumps(out, allow_nan=False)
    by_min = compare(est.snapshot(), configured, field_name="min_ms")
    assert by_min["field"] == "min_ms" and by_min["summary"]["n"] == 3
    empty = compare({"links": {}}, {})
    assert empty["summary"] == {"n": 0, "mean_error_ms": None, "median_abs_error_ms": None,
                                "p95_abs_error_ms": None, "max_abs_error_ms": None}
    assert math.isclose(out["links"]["2:3->3:1"]["error_ms"], 0.5, abs_tol=1e-3)
