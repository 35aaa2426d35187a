"""Substrate calibration fit and pair choice (no root)."""

from pathlib import Path

import pytest

from emulation.calibrate import choose_pairs, fit, from_points
from topology.loader import load_topology
from topology.plan import make_plan


def test_fit_recovers_line():
    pts = [(k, 20.0 + 35.0 * k) for k in (2, 3, 5, 7)]
    a, c = fit(pts)
    assert a == pytest.approx(20.0) and c == pytest.approx(35.0)


def test_single_path_length_puts_all_on_switches():
    a, c = fit([(3, 90.0), (3, 120.0), (3, 96.0)])
    assert a == 0.0 and c == pytest.approx(32.0)


def test_compensation_leaves_constant_residual():
    cal = from_points([(2, 90.0), (4, 150.0), (6, 210.0)])
    assert cal.per_switch_us == pytest.approx(30.0)
    assert cal.compensation_us == pytest.approx(30.0)
    for k in (2, 4, 6):  # excess a + c*k minus (k - 1) compensated links
        assert 30.0 + 30.0 * k - 30.0 * (k - 1) == pytest.approx(cal.residual_us)


def test_negative_slope_is_not_applied():
    cal = from_points([(2, 100.0), (5, 40.0)])
    assert cal.compensation_us == 0.0 and "negative" in cal.note


def test_pairs_span_path_lengths():
    net = load_topology("edwc")
    plan = make_plan(net, "cal1")
    pairs = choose_pairs(plan, net.graph(), max_pairs=8)
    lengths = {k for _, _, k in pairs}
    assert len(pairs) == 8 and len(lengths) >= 4
    assert min(lengths) == 2  # includes the shortest paths for leverage
    tiny = load_topology(Path(__file__).parent / "fixtures" / "tiny.yaml")
    assert choose_pairs(make_plan(tiny, "cal2"), tiny.graph()) == [("east", "west", 3)]
