"""Path selection policies: built-ins, plugin loading, safe_choose and hysteresis."""

from __future__ import annotations

import math
import textwrap
from dataclasses import replace

import pytest

from controller.policy import (
    BUILTINS,
    DEFAULT_PUE,
    Candidate,
    Dampened,
    Greenest,
    Nearest,
    Policy,
    PolicyError,
    Request,
    Weighted,
    dampen,
    load_policy,
    safe_choose,
)


def req(client="beijing", service="infer-rt", budget_ms=50.0, units=1, kinds=("cuda",)):
    return Request(client=client, service=service, budget_ms=budget_ms, units=units,
                   kinds=kinds, flow=("10.0.0.1", "10.0.255.1", 6, 40000, 7000))


def cand(gw, latency=10.0, free=50, total=100, price=0.5, green=0.5, pue=1.2, **kw):
    fields = dict(gateway=gw, site=gw, hub=None, rtt_ms=latency, latency_ms=latency,
                  free_units=free, total_units=total, utilization=1 - free / total, queue=0,
                  delay_ms=0.0, price=price, green=green, pue=pue, operator=None)
    fields.update(kw)
    return Candidate(**fields)


def feasible(r: Request, cands):
    """What the controller does before calling a policy."""
    return sorted((c for c in cands if c.latency_ms <= r.budget_ms and c.free_units >= r.units),
                  key=lambda c: c.gateway)


def pick(policy, cands, r=None, now=0.0):
    r = r or req()
    c, err = safe_choose(policy, r, feasible(r, cands), now)
    assert err is None, err
    return c.gateway if c else None


# ---- built-ins ----------------------------------------------------------------------------
def test_builtins_are_registered_by_name():
    assert set(BUILTINS) == {"nearest", "least-loaded", "greenest", "weighted", "random",
                             "round-robin"}
    for name in BUILTINS:
        assert load_policy(name).name == name


def test_nearest_uses_latency_only():
    cs = [cand("a", latency=12.0, free=99), cand("b", latency=8.0, free=1, price=9, green=0),
          cand("c", latency=9.0)]
    assert pick(load_policy("nearest"), cs) == "b"
    tie = [cand("z", latency=5.0), cand("y", latency=5.0)]
    assert pick(load_policy("nearest"), tie) == "y"  # ties: gateway id


def test_least_loaded_uses_the_free_fraction_not_absolute_units():
    cs = [cand("big", free=40, total=200, latency=5.0),  # 20 % free
          cand("small", free=30, total=40, latency=30.0)]  # 75 % free
    assert pick(load_policy("least-loaded"), cs) == "small"
    tie = [cand("a", free=10, total=20, latency=9.0), cand("b", free=5, total=10, latency=4.0)]
    assert pick(load_policy("least-loaded"), tie) == "b"  # ties: latency, not id


def test_greenest_formula_and_tie_by_latency():
    g = Greenest()
    r = req()
    assert g.score(r, cand("a", price=0.4, pue=1.25, green=0.6)) == pytest.approx(0.2)
    assert g.score(r, cand("a", price=0.4, pue=None, green=0.0)) == pytest.approx(
        0.4 * DEFAULT_PUE)
    assert g.score(r, cand("a", price=None)) == math.inf
    cs = [cand("east", price=0.8, pue=1.4, green=0.2, latency=3.0),  # 0.896
          cand("west", price=0.3, pue=1.15, green=0.6, latency=40.0),  # 0.138
          cand("hydro", price=0.35, pue=1.2, green=0.7, latency=30.0)]  # 0.126
    assert pick(g, cs) == "hydro"
    allgreen = [cand("x", green=1.0, latency=30.0), cand("y", green=1.0, latency=20.0)]
    assert pick(g, allgreen) == "y"
    # green_weight 0: cheapest energy (price x PUE), renewables ignored
    assert pick(load_policy("greenest", green_weight=0.0), cs) == "west"


def test_greenest_stays_within_the_budget_because_only_feasible_are_passed():
    cs = [cand("hydro", price=0.2, green=0.9, latency=45.0),
          cand("coal", price=0.6, green=0.1, latency=8.0),
          cand("wind", price=0.3, green=0.5, latency=14.0)]
    assert pick(load_policy("greenest"), cs, req(budget_ms=50.0)) == "hydro"
    assert pick(load_policy("greenest"), cs, req(budget_ms=20.0)) == "wind"
    assert pick(load_policy("greenest"), cs, req(budget_ms=10.0)) == "coal"
    assert pick(load_policy("greenest"), cs, req(budget_ms=5.0)) is None  # refusal


def test_weighted_score_matches_the_documented_formula():
    w = Weighted(latency=1.0, load=2.0, price=0.5, green=0.25, price_ref=0.8)
    c = cand("a", latency=20.0, free=30, total=120, price=0.4, pue=1.2, green=0.7)
    expected = (1.0 * 20.0 / 50.0 + 2.0 * (1 - 30 / 120) + 0.5 * 0.4 * 1.2 / 0.8
                + 0.25 * (1 - 0.7))
    assert w.score(req(budget_ms=50.0), c) == pytest.approx(expected, rel=1e-12)
    # unknown price/green count as the reference price and no renewables
    u = cand("u", latency=20.0, free=30, total=120, price=None, green=None)
    assert w.terms(req(budget_ms=50.0), u) == pytest.approx(
        {"latency": 0.4, "load": 0.75, "price": 1.0, "green": 1.0})
    # a budget that is not a positive finite number falls back to latency_ref_ms
    assert w.terms(req(budget_ms=math.inf), c)["latency"] == pytest.approx(20.0 / 100.0)


def test_weighted_weights_steer_the_choice():
    cs = [cand("near", latency=5.0, free=10, price=0.9, green=0.1),
          cand("green", latency=40.0, free=10, price=0.3, green=0.9),
          cand("idle", latency=30.0, free=95, price=0.6, green=0.3)]
    assert pick(load_policy("weighted", latency=10, load=0, price=0, green=0), cs) == "near"
    assert pick(load_policy("weighted", latency=0, load=0, price=1, green=1), cs) == "green"
    assert pick(load_policy("weighted", latency=0, load=1, price=0, green=0), cs) == "idle"


@pytest.mark.parametrize("kw,needle", [({"latency": -1}, "latency"), ({"load": math.nan}, "load"),
                                       ({"latency": 0, "load": 0, "price": 0, "green": 0},
                                        "all weights"),
                                       ({"price_ref": 0}, "price_ref"),
                                       ({"price": True}, "price")])
def test_weighted_rejects_bad_weights(kw, needle):
    with pytest.raises(PolicyError, match=needle):
        load_policy("weighted", **kw)


def test_random_is_reproducible_per_seed_and_covers_the_feasible():
    cs = [cand(g) for g in "abcd"]

    def draws(seed):
        p = load_policy("random", seed=seed)
        return [pick(p, cs) for _ in range(60)]

    assert draws(7) == draws(7)
    assert draws(7) != draws(8)  # P(equal) = 4**-60
    assert set(draws(7)) == set("abcd")
    # order of the feasible list does not matter, only the seed
    p1, p2 = load_policy("random", seed=3), load_policy("random", seed=3)
    assert [p1.choose(req(), cs, 0).gateway for _ in range(20)] == \
        [p2.choose(req(), cs[::-1], 0).gateway for _ in range(20)]


def test_round_robin_cycles_per_service_and_survives_set_changes():
    rr = load_policy("round-robin")
    cs = [cand(g) for g in "abc"]
    assert [pick(rr, cs) for _ in range(7)] == list("abcabca")
    other = req(service="train-batch")
    assert pick(rr, cs, other) == "a"  # its own cycle
    assert pick(rr, [cs[0], cs[2]]) == "c"  # b gone: the next id after a
    assert pick(rr, cs) == "a"


# ---- plugins ------------------------------------------------------------------------------
PLUGIN = """
from controller.policy import Policy

class CheapestQueue(Policy):
    name = "cheapest-queue"
    def __init__(self, factor=1.0):
        self.factor = factor
    def score(self, req, cand):
        return cand.queue * self.factor

class Unnamed(Policy):
    def score(self, req, cand):
        return -cand.free_units

class NotAPolicy:
    def score(self, req, cand):
        return 0.0

class Raises(Policy):
    def __init__(self):
        raise RuntimeError("needs a database")

CONSTANT = 3
"""


@pytest.fixture
def plugin_dir(tmp_path, monkeypatch):
    (tmp_path / "myplugins_tp.py").write_text(textwrap.dedent(PLUGIN))
    (tmp_path / "brokenplugin_tp.py").write_text("import does_not_exist_anywhere\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def test_load_plugin_by_module_and_class(plugin_dir):
    p = load_policy("myplugins_tp:CheapestQueue", factor=2.0)
    assert p.name == "cheapest-queue" and p.factor == 2.0
    cs = [cand("a", queue=5), cand("b", queue=1), cand("c", queue=3)]
    assert pick(p, cs) == "b"


def test_load_plugin_by_file_path(plugin_dir):
    path = plugin_dir / "myplugins_tp.py"
    p = load_policy(f"{path}:Unnamed")
    assert p.name == f"{path}:Unnamed"  # no name of its own: the spec names it
    assert pick(p, [cand("a", free=5), cand("b", free=9)]) == "b"


@pytest.mark.parametrize("spec,needles", [
    ("no_such_module_xyz:Foo", ["no_such_module_xyz:Foo", "importing", "ModuleNotFoundError"]),
    ("brokenplugin_tp:Foo", ["brokenplugin_tp", "does_not_exist_anywhere"]),
    ("myplugins_tp:Missing", ["has no class 'Missing'", "define it"]),
    ("myplugins_tp:NotAPolicy", ["not a subclass", "controller.policy.Policy"]),
    ("myplugins_tp:CONSTANT", ["not a subclass"]),
    ("myplugins_tp:Raises", ["constructing Raises", "needs a database", "check its arguments"]),
    ("greenestt", ["unknown policy 'greenestt'", "nearest", "module:Class"]),
    ("", ["empty"]),
    ("myplugins_tp:", ["class name after ':'"]),
    ("/nonexistent/dir/p.py:X", ["not found"]),
])
def test_bad_policy_specs_raise_policy_error_naming_spec_and_fix(plugin_dir, spec, needles):
    with pytest.raises(PolicyError) as e:
        load_policy(spec)
    for needle in needles:
        assert needle in str(e.value)


def test_bad_arguments_to_a_builtin_raise_policy_error():
    with pytest.raises(PolicyError, match=r"nearest.*Nearest\(speed=3\) failed: TypeError"):
        load_policy("nearest", speed=3)
    with pytest.raises(PolicyError, match="green_weight"):
        load_policy("greenest", green_weight=2)


# ---- safe_choose --------------------------------------------------------------------------
class _Raises(Policy):
    name = "raises"

    def score(self, req, cand):
        raise KeyError("gpu")


class _Foreign(Policy):
    name = "foreign"

    def choose(self, req, feasible, now):
        return replace(feasible[0], free_units=10**6)


class _NotCandidate(Policy):
    name = "stringy"

    def choose(self, req, feasible, now):
        return feasible[0].gateway


class _NaN(Policy):
    name = "nan"

    def score(self, req, cand):
        return math.nan


class _Declines(Policy):
    name = "declines"

    def choose(self, req, feasible, now):
        return None


class _Copies(Policy):
    name = "copies"

    def choose(self, req, feasible, now):
        return replace(feasible[-1])  # an equal copy is the same candidate


@pytest.mark.parametrize("policy,needle", [
    (_Raises(), "raised KeyError"), (_Foreign(), "not among the feasible"),
    (_NotCandidate(), "returned str"), (_NaN(), "NaN"),
])
def test_safe_choose_turns_misbehaviour_into_an_error(policy, needle):
    cs = [cand("a"), cand("b")]
    c, err = safe_choose(policy, req(), cs, 0.0)
    assert c is None and needle in err and repr(policy.name) in err


def test_safe_choose_passes_through_a_good_choice_and_a_refusal():
    cs = [cand("a"), cand("b")]
    c, err = safe_choose(_Copies(), req(), cs, 0.0)
    assert c is cs[1] and err is None
    assert safe_choose(_Declines(), req(), cs, 0.0) == (None, None)
    assert safe_choose(_Raises(), req(), [], 0.0) == (None, None)  # not even called


# ---- hysteresis ---------------------------------------------------------------------------
def test_latency_jitter_does_not_flap_but_a_big_change_switches():
    p = dampen(load_policy("nearest"), hysteresis=0.10)
    assert isinstance(p, Dampened) and p.name == "nearest"
    r = req()
    first = pick(p, [cand("a", latency=10.0), cand("b", latency=10.4)], r)
    assert first == "a"
    for i in range(100):  # +-4 % jitter around 10.2 ms, the order flips every round
        a, b = (10.6, 9.8) if i % 2 else (9.8, 10.6)
        assert pick(p, [cand("a", latency=a), cand("b", latency=b)], r) == "a"
    assert p.kept == 50
    assert pick(p, [cand("a", latency=14.0), cand("b", latency=10.0)], r) == "b"  # 40 % worse
    # another client is not held by this one's history
    assert pick(p, [cand("a", latency=9.9), cand("b", latency=10.0)], req(client="shanghai")) \
        == "a"


def test_capacity_jitter_does_not_flap_least_loaded():
    p = dampen(load_policy("least-loaded"), hysteresis=0.10)
    r = req()
    picks = []
    for i in range(50):  # two gateways near 50 % free, each +-2 units of 100
        d = 2 if i % 2 else -2
        picks.append(pick(p, [cand("a", free=50 + d), cand("b", free=50 - d)], r))
    assert len(set(picks)) == 1
    held = picks[0]
    other = "b" if held == "a" else "a"
    big = [cand(held, free=20), cand(other, free=70)]  # load 0.8 vs 0.3
    assert pick(p, big, r) == other


def test_undampened_policy_does_flap_on_the_same_jitter():
    p = load_policy("least-loaded")
    picks = {pick(p, [cand("a", free=50 + d), cand("b", free=50 - d)]) for d in (2, -2)}
    assert picks == {"a", "b"}  # the control: without hysteresis the jitter flips it


def test_kept_choice_is_dropped_when_it_becomes_infeasible():
    p = dampen(load_policy("nearest"))
    r = req(budget_ms=20.0)
    assert pick(p, [cand("a", latency=10.0), cand("b", latency=10.5)], r) == "a"
    assert pick(p, [cand("a", latency=10.0, free=0), cand("b", latency=10.5)], r) == "b"
    assert pick(p, [cand("a", latency=25.0), cand("b", latency=10.5)], r) == "b"


def test_dampen_leaves_baselines_and_choose_only_plugins_alone():
    for name in ("random", "round-robin"):
        p = load_policy(name)
        assert dampen(p) is p
    p = _NotCandidate()
    assert dampen(p) is p  # no score(): nothing to compare
    n = Nearest()
    assert dampen(n, hysteresis=0) is n
    d = dampen(n)
    assert dampen(d) is d and d.describe()["hysteresis"] == pytest.approx(0.10)
    with pytest.raises(PolicyError, match="hysteresis"):
        Dampened(n, hysteresis=-0.1)


def test_dampened_memory_is_bounded():
    p = Dampened(Nearest(), max_remembered=10)
    for i in range(100):
        pick(p, [cand("a"), cand("b")], req(client=f"h{i}"))
    assert len(p.last) == 10
