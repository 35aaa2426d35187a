"""Path selection policies (the CATS path selector, C-PS): built-ins and the plugin interface.

The controller builds one `Candidate` per gateway that offers the requested service, keeps the
FEASIBLE ones (``latency_ms <= budget_ms`` and ``free_units >= units``), sorts them by gateway
id and, when any remain, asks the policy to choose one. A policy scores candidates (lower is
better) and by default chooses the minimum of ``rank`` = (score, gateway id). It never sees
infeasible candidates, so it cannot break the latency budget or overbook a gateway.

Built-ins (see docs/policies.md for the formulas): ``nearest``, ``least-loaded``,
``greenest``, ``weighted``, ``random``, ``round-robin``. A plugin is any `Policy` subclass,
named as ``module:Class`` or ``path/to/file.py:Class`` (`load_policy`). `safe_choose` runs a
policy so that whatever it does (raise, return a foreign object) becomes an error string the
controller can log and count before falling back. `dampen` wraps a scoring policy with
hysteresis so that small metric changes do not flip a client's gateway back and forth.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import math
import os
import random
import sys
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

DEFAULT_PUE = 1.5  # assumed when a gateway does not advertise its PUE
HYSTERESIS = 0.10  # relative score margin a remembered choice may trail the best by
MAX_REMEMBERED = 65536  # (client, service) choices Dampened remembers (LRU)


class PolicyError(ValueError):
    """A policy could not be loaded or built; the message names the spec and the fix."""


@dataclass(frozen=True)
class Request:
    client: str  # client host name
    service: str
    budget_ms: float
    units: int
    kinds: tuple[str, ...]  # acceptable accelerator kinds (empty: any)
    flow: tuple  # (src_ip, dst_ip, proto, sport, dport)
    service_class: str = ""


@dataclass(frozen=True)
class Candidate:
    gateway: str
    site: str
    hub: str | None
    rtt_ms: float  # round-trip network delay client <-> gateway on the chosen path
    latency_ms: float  # rtt_ms + processing delay_ms (what the budget is checked against)
    free_units: int  # effective free units of the acceptable kinds (advertised - reserved)
    total_units: int
    utilization: float  # 0..1, advertised busy fraction of all units
    queue: int
    delay_ms: float
    price: float | None
    green: float | None
    pue: float | None
    operator: str | None


def load_fraction(cand: Candidate) -> float:
    """1 - free/total of the acceptable kinds, reservations included (1 when total is 0)."""
    if cand.total_units <= 0:
        return 1.0
    return min(1.0, max(0.0, 1.0 - cand.free_units / cand.total_units))


class Policy:
    """Base class of every policy. Subclass it, set ``name`` and implement `score`.

    Override `choose` instead (or too) for policies that are not a per-candidate score;
    set ``dampen = False`` when hysteresis makes no sense for the policy.
    """

    name: str = "base"
    dampen: bool = True  # `dampen` wraps it with hysteresis (needs `score`)
    epsilon: float = 0.0  # absolute hysteresis margin, in this policy's score units

    def score(self, req: Request, cand: Candidate) -> float:
        raise NotImplementedError(f"policy {self.name!r} must implement score() or choose()")

    def rank(self, req: Request, cand: Candidate) -> tuple:
        """Sort key: (score, gateway id); override to add a tie-break before the id."""
        return (self._checked_score(req, cand), cand.gateway)

    def _checked_score(self, req: Request, cand: Candidate) -> float:
        s = self.score(req, cand)
        if isinstance(s, bool) or not isinstance(s, (int, float)) or math.isnan(s):
            raise PolicyError(f"policy {self.name!r} scored gateway {cand.gateway!r} as "
                              f"{s!r}; score() must return a number (inf allowed, not NaN)")
        return float(s)

    def choose(self, req: Request, feasible: Sequence[Candidate], now: float
               ) -> Candidate | None:
        if not feasible:
            return None
        return min(feasible, key=lambda c: self.rank(req, c))

    def describe(self) -> dict:
        return {"name": self.name, "class": f"{type(self).__module__}.{type(self).__qualname__}"}


class Nearest(Policy):
    """Lowest response latency: network RTT plus advertised processing delay."""

    name = "nearest"
    epsilon = 0.5  # ms

    def score(self, req: Request, cand: Candidate) -> float:
        return cand.latency_ms


class LeastLoaded(Policy):
    """Most free capacity, as a fraction of the acceptable kinds; ties by latency."""

    name = "least-loaded"
    epsilon = 0.02

    def score(self, req: Request, cand: Candidate) -> float:
        return load_fraction(cand)

    def rank(self, req: Request, cand: Candidate) -> tuple:
        return (self._checked_score(req, cand), cand.latency_ms, cand.gateway)


class Greenest(Policy):
    """Cheapest non-renewable energy: price x PUE x (1 - green_weight x green); ties by latency.

    ``green_weight`` 1 (default) counts only the energy not covered by renewables;
    0 makes it "cheapest energy". Unknown price or green share ranks last (inf).
    """

    name = "greenest"
    epsilon = 0.01  # CNY/kWh

    def __init__(self, green_weight: float = 1.0) -> None:
        if not _is_number(green_weight) or not 0.0 <= green_weight <= 1.0:
            raise PolicyError(f"greenest: green_weight must be a number in [0, 1], "
                              f"got {green_weight!r}")
        self.green_weight = float(green_weight)

    def score(self, req: Request, cand: Candidate) -> float:
        if cand.price is None or cand.green is None:
            return math.inf
        pue = cand.pue if cand.pue is not None else DEFAULT_PUE
        return cand.price * pue * (1.0 - self.green_weight * cand.green)

    def rank(self, req: Request, cand: Candidate) -> tuple:
        return (self._checked_score(req, cand), cand.latency_ms, cand.gateway)


class Weighted(Policy):
    """An L2 score: a weighted sum of L1-normalised metrics (see docs/policies.md).

    score = latency * latency_ms / budget_ms + load * (1 - free/total)
            + price * price_CNY * pue / price_ref + green * (1 - green_share)
    """

    name = "weighted"
    epsilon = 0.01

    def __init__(self, latency: float = 1.0, load: float = 1.0, price: float = 0.5,
                 green: float = 0.5, price_ref: float = 1.0, latency_ref_ms: float = 100.0
                 ) -> None:
        weights = {"latency": latency, "load": load, "price": price, "green": green}
        for k, w in weights.items():
            if not _is_number(w) or w < 0:
                raise PolicyError(f"weighted: weight {k} must be a finite number >= 0, got {w!r}")
        if not any(weights.values()):
            raise PolicyError("weighted: all weights are 0; give at least one weight > 0")
        for k, v in (("price_ref", price_ref), ("latency_ref_ms", latency_ref_ms)):
            if not _is_number(v) or v <= 0:
                raise PolicyError(f"weighted: {k} must be a finite number > 0, got {v!r}")
        self.weights = {k: float(w) for k, w in weights.items()}
        self.price_ref, self.latency_ref_ms = float(price_ref), float(latency_ref_ms)

    def terms(self, req: Request, cand: Candidate) -> dict[str, float]:
        """The normalised (L1) metrics, each about 0..1 for typical values."""
        ref = req.budget_ms if _is_number(req.budget_ms) and req.budget_ms > 0 \
            else self.latency_ref_ms
        pue = cand.pue if cand.pue is not None else DEFAULT_PUE
        return {"latency": cand.latency_ms / ref,
                "load": load_fraction(cand),
                "price": 1.0 if cand.price is None else cand.price * pue / self.price_ref,
                "green": 1.0 if cand.green is None else 1.0 - cand.green}

    def score(self, req: Request, cand: Candidate) -> float:
        t = self.terms(req, cand)
        return sum(self.weights[k] * t[k] for k in self.weights)

    def describe(self) -> dict:
        return {**super().describe(), "weights": dict(self.weights), "price_ref": self.price_ref}


class RandomChoice(Policy):
    """Uniformly random among the feasible (baseline); reproducible for a given seed."""

    name = "random"
    dampen = False

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed
        self.rng = random.Random(seed)

    def score(self, req: Request, cand: Candidate) -> float:
        return 0.0

    def choose(self, req: Request, feasible: Sequence[Candidate], now: float
               ) -> Candidate | None:
        if not feasible:
            return None
        return self.rng.choice(sorted(feasible, key=lambda c: c.gateway))


class RoundRobin(Policy):
    """Per service, the next feasible gateway id after the last one chosen (cyclic)."""

    name = "round-robin"
    dampen = False

    def __init__(self) -> None:
        self.last: dict[str, str] = {}

    def score(self, req: Request, cand: Candidate) -> float:
        return 0.0

    def choose(self, req: Request, feasible: Sequence[Candidate], now: float
               ) -> Candidate | None:
        if not feasible:
            return None
        ordered = sorted(feasible, key=lambda c: c.gateway)
        prev = self.last.get(req.service)
        pick = next((c for c in ordered if prev is not None and c.gateway > prev), ordered[0])
        self.last[req.service] = pick.gateway
        return pick


BUILTINS: dict[str, type[Policy]] = {cls.name: cls for cls in (
    Nearest, LeastLoaded, Greenest, Weighted, RandomChoice, RoundRobin)}


class Dampened(Policy):
    """Hysteresis around a scoring policy, per (client, service).

    The last gateway chosen for a (client, service) is kept while it is feasible and
    score(kept) <= best + hysteresis * |best| + epsilon, where best is the score of the
    inner policy's choice; otherwise the inner choice is taken and remembered.
    """

    def __init__(self, inner: Policy, hysteresis: float = HYSTERESIS,
                 epsilon: float | None = None, max_remembered: int = MAX_REMEMBERED) -> None:
        if not _is_number(hysteresis) or hysteresis < 0:
            raise PolicyError(f"hysteresis must be a finite number >= 0, got {hysteresis!r}")
        eps = inner.epsilon if epsilon is None else epsilon
        if not _is_number(eps) or eps < 0:
            raise PolicyError(f"hysteresis epsilon must be a finite number >= 0, got {eps!r}")
        self.inner, self.hysteresis, self.epsilon = inner, float(hysteresis), float(eps)
        self.name = inner.name
        self.max_remembered = max_remembered
        self.last: OrderedDict[tuple[str, str], str] = OrderedDict()
        self.kept = 0  # choices where hysteresis kept the previous gateway

    def score(self, req: Request, cand: Candidate) -> float:
        return self.inner.score(req, cand)

    def choose(self, req: Request, feasible: Sequence[Candidate], now: float
               ) -> Candidate | None:
        best = self.inner.choose(req, feasible, now)
        if best is None or not isinstance(best, Candidate):
            return best
        key = (req.client, req.service)
        prev = next((c for c in feasible if c.gateway == self.last.get(key)), None)
        pick = best
        if prev is not None and prev.gateway != best.gateway:
            b = self.inner._checked_score(req, best)
            p = self.inner._checked_score(req, prev)
            if p <= b + self.hysteresis * abs(b) + self.epsilon or (p == b):  # inf == inf
                pick = prev
                self.kept += 1
        self.last[key] = pick.gateway
        self.last.move_to_end(key)
        while len(self.last) > self.max_remembered:
            self.last.popitem(last=False)
        return pick

    def describe(self) -> dict:
        return {**self.inner.describe(), "hysteresis": self.hysteresis, "epsilon": self.epsilon}


def dampen(policy: Policy, hysteresis: float = HYSTERESIS, epsilon: float | None = None
           ) -> Policy:
    """`Dampened` around ``policy`` if it scores and allows it; otherwise ``policy`` itself."""
    if (isinstance(policy, Dampened) or not policy.dampen or hysteresis == 0
            or type(policy).score is Policy.score):
        return policy
    return Dampened(policy, hysteresis, epsilon)


def _is_number(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


_HOW = ("use a built-in name ({names}), module:Class (module importable from PYTHONPATH) "
        "or path/to/file.py:Class")


def _how() -> str:
    return _HOW.format(names=", ".join(sorted(BUILTINS)))


def _import(spec: str, target: str) -> object:
    if target.endswith(".py") or os.sep in target or "/" in target:
        path = os.path.abspath(target)
        if not os.path.isfile(path):
            raise PolicyError(f"policy {spec!r}: file {target!r} not found; give an existing "
                              f"path/to/file.py:Class")
        digest = hashlib.sha1(path.encode()).hexdigest()[:10]
        modname = f"edwc_policy_{digest}"
        if modname in sys.modules:
            return sys.modules[modname]
        mspec = importlib.util.spec_from_file_location(modname, path)
        if mspec is None or mspec.loader is None:
            raise PolicyError(f"policy {spec!r}: cannot load {target!r} as Python; "
                              f"it must be a .py file")
        module = importlib.util.module_from_spec(mspec)
        sys.modules[modname] = module
        try:
            mspec.loader.exec_module(module)
        except BaseException:
            del sys.modules[modname]
            raise
        return module
    return importlib.import_module(target)


def load_policy(spec: str, **kwargs: object) -> Policy:
    """Build the policy ``spec`` names (built-in or plugin), passing ``kwargs`` to it."""
    if not isinstance(spec, str) or not spec.strip():
        raise PolicyError(f"policy {spec!r}: empty policy name; {_how()}")
    spec = spec.strip()
    if spec in BUILTINS:
        cls: object = BUILTINS[spec]
    elif ":" in spec:
        target, _, clsname = spec.rpartition(":")
        if not target or not clsname.isidentifier():
            raise PolicyError(f"policy {spec!r}: expected module:Class or "
                              f"path/to/file.py:Class with a class name after ':'")
        try:
            module = _import(spec, target)
        except PolicyError:
            raise
        except (Exception, SystemExit) as e:
            raise PolicyError(f"policy {spec!r}: importing {target!r} failed: "
                              f"{type(e).__name__}: {e}; check the module exists and imports "
                              f"cleanly ({_how()})") from e
        cls = getattr(module, clsname, None)
        if cls is None:
            raise PolicyError(f"policy {spec!r}: {target!r} has no class {clsname!r}; "
                              f"define it there or fix the name")
    else:
        raise PolicyError(f"unknown policy {spec!r}: {_how()}")
    if not isinstance(cls, type) or not issubclass(cls, Policy):
        raise PolicyError(f"policy {spec!r}: {cls!r} is not a subclass of "
                          f"controller.policy.Policy; subclass it and implement score()")
    try:
        policy = cls(**kwargs)
    except (Exception, SystemExit) as e:
        raise PolicyError(f"policy {spec!r}: constructing {cls.__name__}"
                          f"({', '.join(f'{k}={v!r}' for k, v in kwargs.items())}) failed: "
                          f"{type(e).__name__}: {e}; check its arguments") from e
    if type(policy).name == "base":
        policy.name = spec
    return policy


def safe_choose(policy: Policy, req: Request, feasible: Sequence[Candidate], now: float
                ) -> tuple[Candidate | None, str | None]:
    """(choice, None), (None, None) when the policy declines, or (None, error message)."""
    if not feasible:
        return None, None
    name = str(getattr(policy, "name", type(policy).__name__))[:60]
    try:
        pick = policy.choose(req, feasible, now)
        if pick is None:
            return None, None
        if not isinstance(pick, Candidate):
            return None, (f"policy {name!r} returned {type(pick).__name__}, not a Candidate "
                          f"from the feasible list")
        same = next((c for c in feasible if c is pick), None)
        if same is None:
            same = next((c for c in feasible if c == pick), None)
        if same is None:
            return None, (f"policy {name!r} returned a candidate for gateway "
                          f"{str(pick.gateway)[:40]!r} that is not among the feasible ones")
        return same, None
    except Exception as e:
        return None, f"policy {name!r} raised {type(e).__name__}: {str(e)[:200]}"


def make_policy(spec: str, params: dict | None = None) -> Policy:
    """The policy a controller runs: loaded from its spec and dampened (the only place a
    loaded policy is wrapped in :func:`dampen`)."""
    return dampen(load_policy(spec, **(params or {})))
