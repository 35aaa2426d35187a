"""HopModel: the per-frame decision (loss, queue limit, release time) the relay loop calls.

No root, no sockets. tests/test_delayline.py checks release_time(), which runs
HopModel.admit; these check admit itself over frame sequences.
"""

from __future__ import annotations

import pytest

from emulation.delayline import Hop, HopModel, hop_rngs, release_time


def hop(**kw):
    base = {"id": "h", "in_if": "a", "out_if": "b", "delay_us": 5000}
    base.update(kw)
    return Hop(**base)


def feed(model: HopModel, stamps, pop_every: int | None = None):
    """Admit frames received at ``stamps``, queueing the admitted ones like the relay."""
    out = []
    for i, ts in enumerate(stamps):
        rel = model.admit(ts)
        out.append(rel)
        if rel is not None:
            model.q.append((rel, b"f%d" % i))
        if pop_every and (i + 1) % pop_every == 0:
            model.q.clear()
    return out


def test_admit_equals_release_time_over_a_jittered_sequence():
    h = hop(delay_us=5000, jitter_us=2000, compensation_us=300)
    model = HopModel.seeded(h, 7, 3)
    _, rng = hop_rngs(7, 3)  # the same jitter stream, drawn in microseconds
    prev, t = 0.0, 100.0
    for _ in range(3000):
        t += 0.0001
        rel = model.admit(t)  # not queued: the limit never applies
        want = release_time(t, h, rng.uniform(-2000, 2000), prev)
        assert rel == pytest.approx(want, abs=1e-9)
        assert rel >= t and rel >= prev
        prev = rel
    assert model.prev == prev


def test_no_jitter_exact_offset_and_fifo_clamp():
    model = HopModel.seeded(hop(delay_us=1000, compensation_us=100), 1, 0)
    assert model.admit(10.0) == pytest.approx(10.0009)
    # a frame stamped earlier than the previous one (clock step) is not released before it
    assert model.admit(9.0) == model.prev == pytest.approx(10.0009)


def test_compensation_above_delay_gives_zero_delay():
    model = HopModel.seeded(hop(delay_us=100, compensation_us=150), 1, 0)
    assert model.admit(50.0) == 50.0


def test_loss_is_seeded_bernoulli():
    n, p = 10000, 0.2
    a = feed(HopModel.seeded(hop(loss=p), 42, 0), [i * 1e-4 for i in range(n)], pop_every=10)
    b = feed(HopModel.seeded(hop(loss=p), 42, 0), [i * 1e-4 for i in range(n)], pop_every=10)
    c = feed(HopModel.seeded(hop(loss=p), 43, 0), [i * 1e-4 for i in range(n)], pop_every=10)
    lost = [r is None for r in a]
    assert lost == [r is None for r in b]  # reproducible
    assert lost != [r is None for r in c]  # seed matters
    tol = 4 * (p * (1 - p) / n) ** 0.5
    assert abs(sum(lost) / n - p) <= tol


def test_loss_sequence_does_not_depend_on_jitter():
    stamps = [i * 1e-4 for i in range(2000)]
    a = feed(HopModel.seeded(hop(loss=0.3), 5, 2), stamps, pop_every=10)
    b = feed(HopModel.seeded(hop(loss=0.3, jitter_us=1000), 5, 2), stamps, pop_every=10)
    assert [r is None for r in a] == [r is None for r in b]


def test_queue_limit_drop_tail_and_counters():
    model = HopModel.seeded(hop(limit=3), 1, 0)
    res = feed(model, [1.0, 1.1, 1.2, 1.3, 1.4])
    assert [r is not None for r in res] == [True, True, True, False, False]
    assert model.dropped_queue == 2 and model.dropped_loss == 0
    assert [f for _, f in model.q] == [b"f0", b"f1", b"f2"]
    model.q.popleft()
    assert model.admit(1.5) is not None


def test_loss_is_drawn_before_the_queue_limit():
    model = HopModel.seeded(hop(limit=1, loss=1.0), 1, 0)
    model.q.append((0.0, b"x"))  # queue full
    assert model.admit(1.0) is None
    assert model.dropped_loss == 1 and model.dropped_queue == 0


def test_set_compensation_applies_to_later_frames_only():
    h = hop(delay_us=1000)
    model = HopModel.seeded(h, 1, 0)
    first = model.admit(10.0)
    model.q.append((first, b"a"))
    model.set_compensation(400)
    assert h.compensation_us == 400
    assert model.q[0][0] == pytest.approx(10.001)
    assert model.admit(20.0) == pytest.approx(20.0006)


def test_release_time_ignores_the_sample_without_jitter():
    # like the relay, a hop without jitter draws nothing
    assert release_time(100.0, hop(delay_us=1000), 500, 0.0) == pytest.approx(100.001)


def test_models_need_their_rngs():
    with pytest.raises(ValueError, match="loss RNG"):
        HopModel(hop(loss=0.1), None, None)
    with pytest.raises(ValueError, match="jitter RNG"):
        HopModel(hop(jitter_us=10), None, None)
    assert HopModel(hop(), None, None).admit(1.0) == pytest.approx(1.005)
