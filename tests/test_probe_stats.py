"""common.stats: percentiles, RFC 3550 jitter, reordering/duplicates, Summary edge cases."""

import math

import pytest

from common.stats import Summary, percentile, rfc3550_jitter, sequence_stats, summarize

CONTRACT_FIELDS = {"sent", "received", "lost", "loss_pct", "min", "p50", "p95", "p99", "max",
                   "mean", "jitter", "reordered", "duplicates"}


def test_percentile_linear_interpolation_type7():
    xs = [4.0, 1.0, 3.0, 2.0]
    assert percentile(xs, 50) == 2.5  # between the 2nd and 3rd ranks
    assert percentile(xs, 0) == 1.0 and percentile(xs, 100) == 4.0
    assert percentile(xs, 25) == pytest.approx(1.75)  # pos 0.75
    assert percentile([7.0], 99) == 7.0
    assert percentile([], 50) is None


def test_percentile_exact_ties():
    xs = [5.0, 5.0, 5.0, 5.0, 9.0]
    assert percentile(xs, 50) == 5.0
    assert percentile(xs, 75) == 5.0  # pos 3.0: exactly the last tied value
    assert percentile(xs, 95) == pytest.approx(5.0 + 0.8 * 4.0)  # pos 3.8
    assert percentile([2.0, 2.0], 50) == 2.0


@pytest.mark.parametrize("p", [-1, 100.5, 1000])
def test_percentile_outside_range_is_an_error(p):
    with pytest.raises(ValueError, match="outside"):
        percentile([1.0, 2.0], p)


def test_rfc3550_jitter_recurrence():
    # J1 = (|12-10| - 0)/16; J2 = J1 + (|11-12| - J1)/16
    j1 = 2 / 16
    assert rfc3550_jitter([10.0, 12.0, 11.0]) == pytest.approx(j1 + (1 - j1) / 16)
    assert rfc3550_jitter([5.0]) == 0.0
    assert rfc3550_jitter([]) is None
    assert rfc3550_jitter([3.0] * 50) == 0.0


def test_rfc3550_jitter_converges_to_mean_abs_difference():
    # alternating 0/1 ms transits: |D| = 1 every packet, J -> 1
    j = rfc3550_jitter([float(i % 2) for i in range(400)])
    assert j == pytest.approx(1.0, abs=1e-6)


def test_sequence_stats_reordering_and_duplicates():
    s = sequence_stats([0, 1, 3, 2, 2, 4, 0])
    assert s.first_copies == (0, 1, 3, 2, 4)
    assert s.reordered == 1  # 2 arrived after 3
    assert s.duplicates == 2  # the second 2 and the second 0
    assert sequence_stats([]).first_copies == ()
    # a late packet counts once however far it is displaced
    assert sequence_stats([1, 2, 3, 4, 0]).reordered == 1
    assert sequence_stats([4, 3, 2, 1, 0]).reordered == 4


def test_summary_no_samples():
    s = summarize([], sent=10)
    assert (s.sent, s.received, s.lost, s.loss_pct) == (10, 0, 10, 100.0)
    assert all(getattr(s, k) is None for k in ("min", "p50", "p95", "p99", "max", "mean",
                                                "jitter"))
    assert s.percentile(50) is None and s.n_samples == 0


def test_summary_nothing_sent():
    s = summarize([], sent=0)
    assert (s.sent, s.received, s.lost, s.loss_pct) == (0, 0, 0, 0.0)
    assert s.p50 is None


def test_summary_one_sample():
    s = summarize([3.25], sent=4)
    assert s.min == s.p50 == s.p95 == s.p99 == s.max == s.mean == 3.25
    assert s.jitter == 0.0
    assert (s.received, s.lost, s.loss_pct) == (1, 3, 75.0)


def test_summary_fields_and_dict():
    s = summarize([1.0, 2.0, 3.0, 4.0, 100.0], sent=6, reordered=1, duplicates=2)
    assert s.p50 == 3.0 and s.max == 100.0 and s.mean == pytest.approx(22.0)
    assert s.p95 == pytest.approx(4.0 + 0.8 * 96.0)
    assert s.loss_pct == pytest.approx(100 / 6)
    d = s.to_dict()
    assert CONTRACT_FIELDS <= set(d) and d["samples"] == 5
    assert d["reordered"] == 1 and d["duplicates"] == 2
    assert s.percentile(50) == 3.0
    assert isinstance(s, Summary)


def test_jitter_uses_arrival_order_series_when_given():
    s = summarize([1.0, 2.0, 3.0], sent=3, arrival_transits_ms=[1.0, 3.0, 2.0])
    assert s.jitter == pytest.approx(rfc3550_jitter([1.0, 3.0, 2.0]))
    assert s.jitter != pytest.approx(rfc3550_jitter([1.0, 2.0, 3.0]))


def test_received_can_exceed_samples_for_forward_series():
    s = summarize([1.0, 2.0], sent=10, received=8)
    assert (s.received, s.lost, s.n_samples) == (8, 2, 2)
    with pytest.raises(ValueError, match="below"):
        summarize([1.0, 2.0], sent=10, received=1)


def test_bad_inputs_are_clear_errors():
    with pytest.raises(ValueError, match="duplicates"):
        summarize([1.0, 1.0, 1.0], sent=2)
    with pytest.raises(ValueError, match="finite"):
        summarize([1.0, math.nan], sent=2)
    with pytest.raises(ValueError, match="sent"):
        summarize([], sent=-1)
    with pytest.raises(ValueError, match="reordered"):
        summarize([1.0], sent=1, reordered=-2)


def test_all_lost_with_samples_zero_and_large_counts():
    s = summarize([], sent=2000)
    assert s.loss_pct == 100.0 and s.lost == 2000
    big = summarize([float(i) for i in range(10001)], sent=10001)
    assert big.p50 == 5000.0 and big.p99 == 9900.0 and big.p95 == 9500.0
