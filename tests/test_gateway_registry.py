"""GatewayRegistry: every rejection path, expiry, reservations and a never-raises fuzz."""

from __future__ import annotations

import json
import math
import random
from dataclasses import replace

import pytest

from controller.gateways import (
    COUNTERS,
    MAX_SOURCES,
    REASONS,
    REJECTION_LOG,
    GatewayRegistry,
    Verdict,
    registered_from_plan,
)
from gateway.protocol import Advert, decode_advert, encode_advert

WALL0 = 1_700_000_000.0  # wall clock at monotonic 0 (all namespaces share one clock)
EPOCH = int((WALL0 - 100.0) * 1e9)  # agent started 100 s before
ZW = (7, 1, "10.0.0.9")
GA = (8, 1, "10.0.0.10")
REG = {"zhongwei": ZW, "guian": GA}


def adv(gw="zhongwei", seq=1, now=0.0, epoch=EPOCH, interval=1.0, units=None, **kw) -> Advert:
    fields = dict(gw=gw, epoch=epoch, seq=seq, ts=WALL0 + now, interval=interval,
                  units=units if units is not None else {"cuda": (16, 10), "cann": (8, 8)},
                  util=0.25, queue=0, delay_ms=2.0, price=0.32, green=0.6,
                  services=("infer-rt",), pue=1.15, operator="China Telecom")
    fields.update(kw)
    return Advert(**fields)


def feed(reg, a, now, src=ZW, wall=None) -> Verdict:
    dpid, port, ip = src
    return reg.accept(a, dpid, port, ip, now=now, wall=WALL0 + now if wall is None else wall)


def registry(**kw) -> GatewayRegistry:
    return GatewayRegistry(dict(REG), **kw)


# ---- acceptance and identity --------------------------------------------------------------
def test_a_valid_advert_is_accepted_and_recorded():
    reg = registry()
    a = decode_advert(encode_advert(adv(seq=5, now=10.0)))  # through the wire format
    assert feed(reg, a, now=10.0) == Verdict(True, "accepted")
    [st] = reg.alive(10.0)
    assert (st.gw, st.dpid, st.port, st.ip, st.accepted, st.registered) == (
        "zhongwei", 7, 1, "10.0.0.9", 1, True)
    assert st.first_seen == st.last_seen == 10.0 and st.advert is a
    assert feed(reg, adv(seq=6, now=11.0), now=11.0).ok
    [st] = reg.alive(11.0)
    assert (st.first_seen, st.last_seen, st.accepted, st.advert.seq) == (10.0, 11.0, 2, 6)
    assert reg.counters["accepted"] == 2 and not any(reg.counters[r] for r in REASONS)


def test_unregistered_gateway_is_refused_by_default():
    reg = registry()
    v = feed(reg, adv(gw="rogue"), now=0.0, src=(9, 1, "10.0.0.30"))
    assert v == Verdict(False, "unregistered")
    assert reg.alive(0.0) == [] and reg.counters["unregistered"] == 1
    assert reg.rejections[-1]["reason"] == "unregistered" and reg.rejections[-1]["gw"] == "rogue"


@pytest.mark.parametrize("src,reason", [
    ((7, 2, "10.0.0.9"), "port_mismatch"),  # right switch, another port
    ((8, 1, "10.0.0.9"), "port_mismatch"),  # another switch
    (GA, "port_mismatch"),  # the guian host claiming to be zhongwei
    ((7, 1, "10.0.0.99"), "ip_mismatch"),  # right port, wrong source address
])
def test_spoofed_advert_from_another_port_or_ip_is_rejected(src, reason):
    reg = registry()
    assert feed(reg, adv(seq=1), now=0.0).ok
    # The spoofer uses a huge seq and a newer epoch: had it been accepted, the real gateway's
    # next advert would be refused as a replay.
    spoof = adv(seq=10**9, epoch=EPOCH + 1, now=0.5, units={"cuda": (1000, 1000)})
    assert feed(reg, spoof, now=0.5, src=src) == Verdict(False, reason)
    assert reg.counters[reason] == 1
    [st] = reg.alive(0.5)
    assert st.advert.seq == 1 and st.last_seen == 0.0
    assert feed(reg, adv(seq=2, now=1.0), now=1.0).ok


def test_epoch_restart_is_accepted_and_old_epoch_replay_rejected():
    reg = registry()
    assert feed(reg, adv(seq=500), now=0.0).ok
    assert feed(reg, adv(seq=0, epoch=EPOCH + 5 * 10**9, now=1.0), now=1.0).ok  # restarted
    assert reg.get("zhongwei", 1.0).advert.seq == 0
    old = adv(seq=501, now=2.0)  # the old epoch, even with a higher seq
    assert feed(reg, old, now=2.0) == Verdict(False, "replayed")
    assert feed(reg, adv(seq=1, epoch=EPOCH + 5 * 10**9, now=2.0), now=2.0).ok


def test_duplicate_is_replayed_and_earlier_seq_is_out_of_order():
    reg = registry()
    assert feed(reg, adv(seq=7), now=0.0).ok
    assert feed(reg, adv(seq=7), now=0.1) == Verdict(False, "replayed")
    assert feed(reg, adv(seq=6, now=0.1), now=0.1) == Verdict(False, "out_of_order")
    assert feed(reg, adv(seq=9, now=0.2), now=0.2).ok  # a gap (lost datagram) is fine
    assert feed(reg, adv(seq=8, now=0.1), now=0.3) == Verdict(False, "out_of_order")
    assert (reg.counters["replayed"], reg.counters["out_of_order"]) == (1, 2)


# ---- clocks -----------------------------------------------------------------------------
def test_stale_advert_is_rejected_beyond_the_expiry_window():
    reg = registry()  # interval 1 s x 3 = 3 s window
    assert feed(reg, adv(seq=1, now=7.1), now=10.0).ok  # 2.9 s old
    assert feed(reg, adv(seq=2, now=6.9), now=10.0) == Verdict(False, "stale")  # 3.1 s old


def test_max_age_caps_the_staleness_window_for_long_intervals():
    reg = registry(max_age_s=30.0)
    assert feed(reg, adv(seq=1, interval=30.0, now=0.0), now=29.0).ok  # window 90, cap 30
    assert feed(reg, adv(seq=2, interval=30.0, now=0.0), now=31.0) == Verdict(False, "stale")


def test_future_timestamp_beyond_clock_skew_is_rejected():
    reg = registry(clock_skew_s=1.0)
    assert feed(reg, adv(seq=1, now=10.9), now=10.0).ok  # 0.9 s ahead: tolerated
    assert feed(reg, adv(seq=2, now=11.2), now=10.0) == Verdict(False, "future")


def test_agent_epoch_in_the_future_is_rejected():
    # Accepting it would lock the real agent out until it outlived that start time.
    reg = registry()
    late = int((WALL0 + 3600.0) * 1e9)
    assert feed(reg, adv(seq=1, epoch=late), now=0.0) == Verdict(False, "future_epoch")
    assert feed(reg, adv(seq=1), now=0.0).ok


# ---- rate limit -------------------------------------------------------------------------
def test_rate_limit_per_source_port_refills_with_injected_time():
    reg = registry(rate=20.0, burst=40)
    results = [feed(reg, adv(seq=i), now=0.0).ok for i in range(1, 42)]
    assert results == [True] * 40 + [False]
    assert reg.counters["rate_limited"] == 1
    assert feed(reg, adv(seq=100, now=0.0), now=0.02).reason == "rate_limited"  # 0.4 token
    assert feed(reg, adv(seq=101, now=0.05), now=0.05).ok  # 1 token after 50 ms at 20/s
    assert feed(reg, adv(seq=102, now=0.05), now=0.05).reason == "rate_limited"
    # another source port has its own bucket
    assert feed(reg, adv(gw="guian", seq=1, now=0.05), now=0.05, src=GA).ok
    # a full refill after burst/rate = 2 s: 40 more in one instant, not 41
    results = [feed(reg, adv(seq=200 + i, now=3.0), now=3.0).ok for i in range(41)]
    assert results.count(True) == 40


def test_rate_limit_is_checked_before_anything_else():
    reg = registry(rate=1.0, burst=2)
    src = (9, 4, "10.0.0.77")
    reasons = [feed(reg, adv(gw="rogue", seq=i), now=0.0, src=src).reason for i in range(5)]
    assert reasons == ["unregistered"] * 2 + ["rate_limited"] * 3


def test_token_buckets_are_bounded():
    reg = registry(rate=1.0, burst=1)
    for port in range(MAX_SOURCES + 500):
        feed(reg, adv(gw="rogue"), now=0.0, src=(9, port, "10.0.0.77"))
    assert len(reg._buckets) <= MAX_SOURCES


# ---- trust on first use -----------------------------------------------------------------
def test_unregistered_gateway_is_bound_to_its_first_port_when_allowed():
    reg = registry(allow_unregistered=True)
    home = (9, 1, "10.0.0.20")
    assert feed(reg, adv(gw="newdc", seq=1), now=0.0, src=home).ok
    st = reg.get("newdc", 0.0)
    assert (st.dpid, st.port, st.ip, st.registered) == (9, 1, "10.0.0.20", False)
    assert feed(reg, adv(gw="newdc", seq=2), now=0.1, src=(9, 2, "10.0.0.20")).reason == \
        "port_mismatch"
    assert feed(reg, adv(gw="newdc", seq=2), now=0.1, src=(9, 1, "10.0.0.21")).reason == \
        "ip_mismatch"
    # one host, one id: the bound port cannot claim a second, nor a registered gateway's port
    assert feed(reg, adv(gw="other", seq=1), now=0.1, src=home).reason == "port_taken"
    assert feed(reg, adv(gw="other", seq=1), now=0.1, src=ZW).reason == "port_taken"
    assert feed(reg, adv(gw="newdc", seq=2, now=0.2), now=0.2, src=home).ok
    # registered ids keep their plan binding even with allow_unregistered
    assert feed(reg, adv(gw="zhongwei"), now=0.2, src=(9, 3, "10.0.0.9")).reason == \
        "port_mismatch"


def test_unregistered_binding_ends_with_expiry():
    reg = registry(allow_unregistered=True)
    assert feed(reg, adv(gw="newdc", seq=1), now=0.0, src=(9, 1, "10.0.0.20")).ok
    assert reg.expire(3.5) == ["newdc"]
    moved = adv(gw="newdc", seq=0, epoch=EPOCH + 10**9, now=4.0)
    assert feed(reg, moved, now=4.0, src=(9, 2, "10.0.0.20")).ok


def test_max_gateways_bounds_unregistered_ones():
    reg = registry(allow_unregistered=True, max_gateways=3)
    for i in range(3):
        assert feed(reg, adv(gw=f"g{i}"), now=0.0, src=(10 + i, 1, f"10.0.1.{i}")).ok
    assert feed(reg, adv(gw="g3"), now=0.0, src=(13, 1, "10.0.1.3")).reason == \
        "too_many_gateways"
    assert len(reg.alive(0.0)) == 3
    reg.expire(10.0)
    assert feed(reg, adv(gw="g3", now=10.0), now=10.0, src=(13, 1, "10.0.1.3")).ok


def test_replay_memory_of_forgotten_gateways_is_bounded():
    reg = registry(allow_unregistered=True, max_gateways=4)
    for i in range(100):
        now = 10.0 * i
        assert feed(reg, adv(gw=f"g{i}", now=now), now=now, src=(20, 1, "10.0.2.1")).ok
        reg.expire(now + 5.0)
    assert len(reg._last) <= len(REG) + 2 * 4


# ---- expiry -----------------------------------------------------------------------------
def test_gateway_expires_after_about_three_intervals():
    reg = registry()
    assert feed(reg, adv(seq=1, interval=1.0), now=0.0).ok
    assert feed(reg, adv(gw="guian", seq=1, interval=2.0), now=0.0, src=GA).ok
    assert reg.expire(2.9) == []
    assert [s.gw for s in reg.alive(3.1)] == ["guian"]  # filtered before expire() runs
    assert reg.expire(3.1) == ["zhongwei"]
    assert reg.expire(5.9) == []
    assert reg.expire(6.1) == ["guian"]
    assert reg.counters["expired"] == 2 and reg.alive(6.1) == []
    assert reg.snapshot(6.1)["missing"] == ["guian", "zhongwei"]


@pytest.mark.parametrize("interval,window", [(0.05, 0.3), (1.0, 3.0), (60.0, 90.0)])
def test_expiry_uses_the_advertised_interval_clamped(interval, window):
    reg = registry()  # clamp to [0.1, 30] s
    assert feed(reg, adv(seq=1, interval=interval), now=0.0).ok
    assert reg.get("zhongwei", 0.0).window_s == pytest.approx(window)
    assert reg.expire(window * 0.98) == []
    assert reg.expire(window * 1.02) == ["zhongwei"]


def test_replayed_advert_after_expiry_is_still_rejected():
    reg = registry()
    a = adv(seq=3, now=1.0)  # sent 1 s ahead of the controller's view: within skew
    assert feed(reg, a, now=0.0).ok
    assert reg.expire(3.05) == ["zhongwei"]
    assert feed(reg, a, now=3.1) == Verdict(False, "replayed")  # 2.1 s old: not stale yet


# ---- reservations -----------------------------------------------------------------------
def test_reservations_lower_effective_free_at_once():
    reg = registry()
    assert feed(reg, adv(units={"cuda": (16, 10), "cann": (8, 8)}), now=0.0).ok
    assert reg.effective_free("zhongwei", ("cuda",), 0.1) == 10
    assert reg.reserve("zhongwei", "cuda", 4, 0.1)
    assert reg.effective_free("zhongwei", ("cuda",), 0.1) == 6
    assert reg.effective_free("zhongwei", ("cuda", "cann"), 0.1) == 14
    assert reg.effective_free("zhongwei", (), 0.1) == 14  # empty: any kind
    assert reg.reserve("zhongwei", None, 3, 0.1)  # kind unknown: counts against any set
    assert reg.effective_free("zhongwei", ("cann",), 0.1) == 5
    assert reg.effective_free("zhongwei", ("cuda", "cann"), 0.1) == 11
    assert reg.reserve("zhongwei", "cuda", 100, 0.1)
    assert reg.effective_free("zhongwei", ("cuda",), 0.1) == 0  # never negative
    assert reg.effective_free("zhongwei", ("ascend",), 0.1) == 0  # kind not offered
    assert reg.total_units("zhongwei", ("cuda", "cann")) == 24
    assert reg.total_units("zhongwei", ("cuda", "npu")) == 16
    assert reg.total_units("nowhere", ("cuda",)) == 0
    assert reg.reserved("zhongwei", 0.1) == {"cuda": 104, None: 3}


def test_reservation_on_unknown_or_expired_gateway_is_refused():
    reg = registry()
    assert not reg.reserve("zhongwei", "cuda", 1, 0.0)
    assert feed(reg, adv(), now=0.0).ok
    assert not reg.reserve("zhongwei", "cuda", 0, 0.0)
    assert not reg.reserve("zhongwei", "cuda", 1, 5.0)  # expired by then
    assert reg.effective_free("guian", ("cuda",), 0.0) == 0


def test_reservations_expire_after_one_and_a_half_intervals():
    reg = registry()
    assert feed(reg, adv(seq=1), now=0.0).ok
    reg.reserve("zhongwei", "cuda", 4, 0.2)
    assert reg.effective_free("zhongwei", ("cuda",), 1.6) == 6  # 1.4 s old: kept
    assert reg.effective_free("zhongwei", ("cuda",), 1.8) == 10  # 1.6 s > 1.5 x 1 s


def test_a_later_advert_supersedes_reservations_it_reflects():
    reg = registry(reservation_grace_s=0.5)
    assert feed(reg, adv(seq=1), now=0.0).ok
    reg.reserve("zhongwei", "cuda", 4, 0.1)
    # sent 0.3 s after the placement: the job may not have arrived, keep the reservation
    assert feed(reg, adv(seq=2, now=0.4), now=0.41).ok
    assert reg.effective_free("zhongwei", ("cuda",), 0.41) == 6
    # sent 0.6 s after (more than the grace): the advert reflects it
    assert feed(reg, adv(seq=3, now=0.7, units={"cuda": (16, 6), "cann": (8, 8)}),
                now=0.71).ok
    assert reg.effective_free("zhongwei", ("cuda",), 0.71) == 6  # not 2: not double counted


def test_pick_kind_prefers_the_kind_with_most_effective_free_units():
    reg = registry()
    assert feed(reg, adv(units={"cuda": (16, 10), "cann": (8, 8)}), now=0.0).ok
    assert reg.pick_kind("zhongwei", ("cuda", "cann"), 0.0) == "cuda"
    reg.reserve("zhongwei", "cuda", 3, 0.0)
    assert reg.pick_kind("zhongwei", ("cuda", "cann"), 0.0) == "cann"
    assert reg.pick_kind("zhongwei", ("npu",), 0.0) is None
    assert reg.pick_kind("guian", ("cuda",), 0.0) is None


def test_reservations_per_gateway_are_bounded():
    reg = registry()
    assert feed(reg, adv(units={"cuda": (1_000_000, 1_000_000)}), now=0.0).ok
    for _ in range(5000):
        reg.reserve("zhongwei", "cuda", 1, 0.1)
    assert reg.reserved("zhongwei", 0.1)["cuda"] <= 4096
    assert reg.counters["reservations_dropped"] > 0


# ---- state API --------------------------------------------------------------------------
def test_snapshot_is_json_and_shows_advert_fields_and_age():
    reg = registry()
    assert feed(reg, adv(seq=4), now=1.0).ok
    reg.reserve("zhongwei", "cuda", 2, 1.0)
    reg.reserve("zhongwei", None, 1, 1.0)
    feed(reg, adv(gw="rogue"), now=1.0, src=(9, 1, "10.0.0.1"))
    snap = json.loads(json.dumps(reg.snapshot(1.5)))
    g = snap["gateways"]["zhongwei"]
    assert g["age_s"] == pytest.approx(0.5) and g["accepted"] == 1
    assert g["advert"]["seq"] == 4 and g["advert"]["units"] == {"cann": [8, 8], "cuda": [16, 10]}
    assert g["advert"]["price"] == 0.32 and g["advert"]["services"] == ["infer-rt"]
    assert g["reserved"] == {"cuda": 2, "*": 1}
    assert snap["missing"] == ["guian"]
    assert snap["counters"]["unregistered"] == 1 and set(COUNTERS) <= set(snap["counters"])
    assert snap["rejections"][0]["reason"] == "unregistered"


def test_rejection_log_is_bounded_and_collapses_repeats():
    reg = registry(rate=1e9, burst=10**6)
    for _ in range(50):  # one flood: one line with a count
        feed(reg, adv(gw="rogue"), now=0.0, src=(9, 1, "10.0.0.1"))
    assert len(reg.rejections) == 1 and reg.rejections[0]["count"] == 50
    for i in range(300):
        feed(reg, adv(gw=f"r{i}"), now=0.0, src=(9, 1, "10.0.0.1"))
    assert len(reg.rejections) == REJECTION_LOG
    assert reg.rejections[-1]["gw"] == "r299"
    assert reg.counters["unregistered"] == 350


# ---- robustness -------------------------------------------------------------------------
class _Hostile:
    def __getattr__(self, name):
        raise RuntimeError("boom")


_WEIRD = [None, True, -1, 0, 2**70, -2**70, 1e308, math.nan, math.inf, -math.inf, "x", "",
          "a" * 500, b"bytes", [], {}, (1,), {"cuda": (1, 2)}, {"cuda": [5, 1]}, {1: (1, 1)},
          {"cuda": ("a", "b")}, {"cuda": (1,)}, ("s", 1), object()]
_FIELDS = ["gw", "epoch", "seq", "ts", "interval", "units", "util", "queue", "delay_ms",
           "price", "green", "services", "pue", "operator"]


def test_fuzz_never_raises_and_only_sane_adverts_get_in():
    rnd = random.Random(1234)
    reg = registry(rate=1e9, burst=10**6, allow_unregistered=True)
    verdicts = []
    for i in range(3000):
        a = adv(seq=i + 1, now=i * 0.01)
        for name in rnd.sample(_FIELDS, rnd.randint(0, 3)):
            a = replace(a, **{name: rnd.choice(_WEIRD)})
        now = i * 0.01
        v = reg.accept(a, 7, 1, "10.0.0.9", now=now, wall=WALL0 + now)
        assert isinstance(v, Verdict) and (v.ok or v.reason in REASONS), v
        verdicts.append(v)
    for junk in (None, 42, "advert", _Hostile(), object()):
        v = reg.accept(junk, 7, 1, "10.0.0.9", now=31.0, wall=WALL0 + 31.0)
        assert v == Verdict(False, "invalid")
    assert any(v.ok for v in verdicts) and reg.counters["invalid"] > 100
    json.dumps(reg.snapshot(31.0))  # whatever got in is still JSON-able
    for st in reg.alive(31.0):
        assert reg.effective_free(st.gw, ("cuda",), 31.0) >= 0


def test_nan_or_bool_fields_are_invalid():
    reg = registry()
    assert feed(reg, adv(ts=math.nan), now=0.0).reason == "invalid"
    assert feed(reg, adv(seq=True), now=0.0).reason == "invalid"
    assert feed(reg, adv(interval=0.0), now=0.0).reason == "invalid"
    assert feed(reg, adv(units={"cuda": (4, 5)}), now=0.0).reason == "invalid"  # free > total
    assert feed(reg, adv(), now=0.0).ok


# ---- construction -----------------------------------------------------------------------
@pytest.mark.parametrize("kw,needle", [
    ({"rate": 0}, "rate"), ({"burst": 0}, "burst"), ({"expiry_intervals": -1}, "expiry"),
    ({"max_gateways": 0}, "max_gateways"), ({"clock_skew_s": math.nan}, "clock_skew_s"),
    ({"max_interval_s": 0.01}, "max_interval_s"),
])
def test_bad_parameters_are_named(kw, needle):
    with pytest.raises(ValueError, match=needle):
        registry(**kw)


def test_bad_registration_is_named():
    with pytest.raises(ValueError, match=r"registered\['zhongwei'\]"):
        GatewayRegistry({"zhongwei": (7, "1", "10.0.0.9")})


def test_registered_from_plan():
    gws = [{"id": "zhongwei", "site": "zhongwei", "ip": "10.0.0.9", "dpid": 7, "port": 1},
           {"id": "guian", "ip": "10.0.0.10", "dpid": 8}]
    assert registered_from_plan(gws) == {"zhongwei": ZW, "guian": GA}
    with pytest.raises(ValueError, match=r"gateways\[1\].*duplicate"):
        registered_from_plan([gws[0], gws[0]])
    with pytest.raises(ValueError, match=r"gateways\[0\]: needs id"):
        registered_from_plan([{"id": "x"}])
