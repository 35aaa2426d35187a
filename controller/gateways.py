"""The gateway registry: the controller's side of the capacity advertisement protocol (C-SMA).

Pure state: no sockets, no event loop. Every entry point takes the controller's monotonic
clock as ``now``; `GatewayRegistry.accept` also takes the wall clock (``wall``, Unix seconds)
because an advertisement carries its send time and every namespace shares the host's clock.

What it guards against (each rejection is a stable reason code, counted in ``counters``
and kept in a bounded log of recent rejections for the state API):

- floods: a token bucket per source switch port (``rate_limited``), checked first;
- spoofing: a gateway id is bound to the switch port and IP address the plan registered it
  on (``port_mismatch``, ``ip_mismatch``); ids the plan does not know are refused
  (``unregistered``) unless ``allow_unregistered``, in which case the first port and IP an
  id is accepted from are bound (trust on first use) while the gateway stays alive, a port
  already bound to another gateway cannot claim a second id (``port_taken``) and at most
  ``max_gateways`` are held (``too_many_gateways``);
- replays and reordering by ``(epoch, seq)``: an older epoch or a repeated sequence number is
  ``replayed``, an earlier sequence number in the same epoch is ``out_of_order``; a newer
  epoch (the agent restarted) is accepted with any sequence number;
- clocks: sent more than ``clock_skew_s`` in the future (``future``), an agent start time in
  the future (``future_epoch``), or older than the gateway's expiry window, capped at
  ``max_age_s`` (``stale``);
- malformed objects handed in directly (``invalid``): `accept` never raises.

Gateways whose last accepted advertisement is older than ``expiry_intervals`` × their
advertised interval (clamped to ``[min_interval_s, max_interval_s]``) are no longer alive
and `expire` removes them. Between advertisements the controller places flows; `reserve`
records each placement so `effective_free` drops at once, until an advertisement sent after
the placement (less a grace for the job to reach the gateway) reflects it, or
``reservation_intervals`` × interval passes.
"""

from __future__ import annotations

import math
from collections import OrderedDict, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

REASONS = ("invalid", "rate_limited", "unregistered", "port_mismatch", "ip_mismatch",
           "port_taken", "too_many_gateways", "future", "future_epoch", "stale", "replayed",
           "out_of_order")
COUNTERS = ("accepted", "expired", "reservations_dropped", *REASONS)
REJECTION_LOG = 100  # recent rejections kept for the state API
MAX_SOURCES = 4096  # token buckets held at once (one per switch port adverts arrive on)
MAX_RESERVATIONS = 4096  # pending reservations per gateway; the oldest go first
_ID_SHOWN = 40  # characters of an untrusted id copied into the log


@dataclass(frozen=True)
class Verdict:
    ok: bool
    reason: str  # "accepted" or one of REASONS


@dataclass(frozen=True)
class GatewayState:
    gw: str
    advert: Any  # gateway.protocol.Advert, the last accepted one
    dpid: int
    port: int
    ip: str
    first_seen: float  # controller monotonic clock
    last_seen: float
    accepted: int
    registered: bool
    window_s: float  # expiry window: expiry_intervals x clamped advertised interval
    sent_at: float  # estimated send time of the last advert on the monotonic clock


@dataclass
class _Bucket:
    tokens: float
    last: float


@dataclass
class _Reservation:
    made_at: float
    kind: str | None
    units: int
    grace: float  # an advert sent this long after the placement already shows the job


@dataclass
class _Book:
    """Pending reservations of one gateway, oldest first, with running totals per kind so
    that reading them costs O(kinds), not O(reservations) (this runs for every candidate of
    every new flow)."""

    items: deque = field(default_factory=deque)
    totals: dict = field(default_factory=dict)

    def add(self, r: _Reservation) -> None:
        self.items.append(r)
        self.totals[r.kind] = self.totals.get(r.kind, 0) + r.units

    def pop_oldest(self) -> _Reservation:
        r = self.items.popleft()
        left = self.totals.get(r.kind, 0) - r.units
        if left > 0:
            self.totals[r.kind] = left
        else:
            self.totals.pop(r.kind, None)
        return r

    def clear(self) -> None:
        self.items.clear()
        self.totals.clear()

    def rebuild(self, keep) -> None:
        items = [r for r in self.items if keep(r)]
        self.clear()
        for r in items:
            self.add(r)


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _sane(adv: Any) -> bool:
    """The fields this module and the state API rely on have usable types."""
    try:
        units = adv.units
        return (isinstance(adv.gw, str) and 0 < len(adv.gw) <= 64
                and _is_int(adv.epoch) and adv.epoch >= 1 and _is_int(adv.seq) and adv.seq >= 0
                and _finite(adv.ts) and _finite(adv.interval) and adv.interval > 0
                and isinstance(units, dict) and len(units) <= 64
                and all(isinstance(k, str) and isinstance(v, (tuple, list)) and len(v) == 2
                        and _is_int(v[0]) and _is_int(v[1]) and 0 <= v[1] <= v[0]
                        for k, v in units.items())
                and all(_finite(getattr(adv, f)) for f in ("util", "queue", "delay_ms",
                                                           "price", "green"))
                and (adv.pue is None or _finite(adv.pue))
                and (adv.operator is None or isinstance(adv.operator, str))
                and isinstance(adv.services, (tuple, list))
                and all(isinstance(s, str) for s in adv.services))
    except Exception:
        return False


def _shown(adv: Any) -> str:
    try:
        gw = adv.gw
        return gw[:_ID_SHOWN] if isinstance(gw, str) else repr(gw)[:_ID_SHOWN]
    except Exception:
        return "?"


class GatewayRegistry:
    """Accepted gateway advertisements, their bindings, expiry and pending reservations."""

    def __init__(self, registered: dict[str, tuple[int, int, str]],
                 allow_unregistered: bool = False, rate: float = 20.0, burst: int = 40,
                 expiry_intervals: float = 3.0, max_age_s: float = 30.0,
                 max_gateways: int = 256, clock_skew_s: float = 1.0,
                 min_interval_s: float = 0.1, max_interval_s: float = 30.0,
                 reservation_intervals: float = 1.5, reservation_grace_s: float = 0.5) -> None:
        for name, value, zero_ok in (
                ("rate", rate, False), ("expiry_intervals", expiry_intervals, False),
                ("max_age_s", max_age_s, False), ("clock_skew_s", clock_skew_s, True),
                ("min_interval_s", min_interval_s, False),
                ("reservation_intervals", reservation_intervals, False),
                ("reservation_grace_s", reservation_grace_s, True)):
            if not _finite(value) or value < 0 or (value == 0 and not zero_ok):
                raise ValueError(f"GatewayRegistry: {name} must be a number "
                                 f"{'>= 0' if zero_ok else '> 0'}, got {value!r}")
        if not _finite(max_interval_s) or max_interval_s < min_interval_s:
            raise ValueError(f"GatewayRegistry: max_interval_s must be >= min_interval_s "
                             f"({min_interval_s}), got {max_interval_s!r}")
        if not _is_int(burst) or burst < 1:
            raise ValueError(f"GatewayRegistry: burst must be an integer >= 1, got {burst!r}")
        if not _is_int(max_gateways) or max_gateways < 1:
            raise ValueError(f"GatewayRegistry: max_gateways must be an integer >= 1, "
                             f"got {max_gateways!r}")
        self.registered: dict[str, tuple[int, int, str]] = {}
        for gw, binding in registered.items():
            if (not isinstance(gw, str) or not isinstance(binding, tuple) or len(binding) != 3
                    or not _is_int(binding[0]) or not _is_int(binding[1])
                    or not isinstance(binding[2], str)):
                raise ValueError(f"GatewayRegistry: registered[{gw!r}] must be (dpid: int, "
                                 f"port: int, ip: str), got {binding!r}")
            self.registered[gw] = binding
        self.allow_unregistered = allow_unregistered
        self.rate, self.burst = float(rate), burst
        self.expiry_intervals, self.max_age_s = expiry_intervals, max_age_s
        self.max_gateways, self.clock_skew_s = max_gateways, clock_skew_s
        self.min_interval_s, self.max_interval_s = min_interval_s, max_interval_s
        self.reservation_intervals = reservation_intervals
        self.reservation_grace_s = reservation_grace_s
        self.counters: dict[str, int] = dict.fromkeys(COUNTERS, 0)
        self.rejections: deque[dict] = deque(maxlen=REJECTION_LOG)
        self._gws: dict[str, GatewayState] = {}
        # (epoch, seq) last accepted per id; kept after expiry (bounded) so an advert replayed
        # after its gateway expired is still refused.
        self._last: OrderedDict[str, tuple[int, int]] = OrderedDict()
        self._buckets: OrderedDict[tuple[Any, Any], _Bucket] = OrderedDict()
        self._books: dict[str, _Book] = {}

    # ---- advertisements ----------------------------------------------------------------
    def accept(self, adv: Any, dpid: int, in_port: int, src_ip: str, now: float,
               wall: float) -> Verdict:
        """Check one decoded advertisement that arrived on switch port (dpid, in_port)."""
        try:
            reason = self._check(adv, dpid, in_port, src_ip, now, wall)
            if reason is None:
                self._store(adv, dpid, in_port, src_ip, now, wall)
        except Exception:  # never let a hostile object escape into the event loop
            reason = "invalid"
        if reason is not None:
            return self._reject(reason, adv, dpid, in_port, src_ip, now)
        self.counters["accepted"] += 1
        return Verdict(True, "accepted")

    def _check(self, adv: Any, dpid: int, in_port: int, src_ip: str, now: float,
               wall: float) -> str | None:
        if not self._take_token((dpid, in_port), now):
            return "rate_limited"
        if not _sane(adv):
            return "invalid"
        gw = adv.gw
        bound = self.registered.get(gw)
        if bound is None and gw in self._gws:
            st = self._gws[gw]
            bound = (st.dpid, st.port, st.ip)  # trust on first use, bound while alive
        if bound is None:
            if not self.allow_unregistered:
                return "unregistered"
            if any((st.dpid, st.port) == (dpid, in_port) for st in self._gws.values()) or any(
                    (b[0], b[1]) == (dpid, in_port) for b in self.registered.values()):
                return "port_taken"
            if len(self._gws) >= self.max_gateways:
                return "too_many_gateways"
        elif (bound[0], bound[1]) != (dpid, in_port):
            return "port_mismatch"
        elif bound[2] != src_ip:
            return "ip_mismatch"
        if adv.ts - wall > self.clock_skew_s:
            return "future"
        if adv.epoch / 1e9 - wall > self.clock_skew_s:
            return "future_epoch"
        if wall - adv.ts > min(self.max_age_s, self.window(adv.interval)):
            return "stale"
        last = self._last.get(gw)
        if last is not None:
            if adv.epoch < last[0] or (adv.epoch == last[0] and adv.seq == last[1]):
                return "replayed"
            if adv.epoch == last[0] and adv.seq < last[1]:
                return "out_of_order"
        return None

    def _store(self, adv: Any, dpid: int, in_port: int, src_ip: str, now: float,
               wall: float) -> None:
        gw = adv.gw
        sent_at = now - max(0.0, wall - adv.ts)
        old = self._gws.get(gw)
        if old is None:
            self._gws[gw] = GatewayState(gw, adv, dpid, in_port, src_ip, now, now, 1,
                                         gw in self.registered, self.window(adv.interval),
                                         sent_at)
        else:
            self._gws[gw] = replace(old, advert=adv, last_seen=now, accepted=old.accepted + 1,
                                    window_s=self.window(adv.interval), sent_at=sent_at)
        self._settle(gw, old.advert if old is not None else None, adv)
        self._last[gw] = (adv.epoch, adv.seq)
        self._last.move_to_end(gw)
        excess = len(self._last) - (len(self.registered) + 2 * self.max_gateways)
        if excess > 0:  # forget the oldest ids that are neither alive nor registered
            old_ids = [k for k in self._last if k not in self._gws and k not in self.registered]
            for k in old_ids[:excess]:
                del self._last[k]
        self._prune(gw, now)

    def _reject(self, reason: str, adv: Any, dpid: Any, in_port: Any, src_ip: Any,
                now: float) -> Verdict:
        self.counters[reason] = self.counters.get(reason, 0) + 1
        entry = {"t": now, "reason": reason, "gw": _shown(adv), "dpid": dpid,
                 "in_port": in_port, "src_ip": str(src_ip)[:_ID_SHOWN], "count": 1}
        last = self.rejections[-1] if self.rejections else None
        if last is not None and all(last[k] == entry[k] for k in
                                    ("reason", "gw", "dpid", "in_port", "src_ip")):
            last["count"] += 1  # a flood of one kind takes one line, not the whole log
            last["t"] = now
        else:
            self.rejections.append(entry)
        return Verdict(False, reason)

    def _take_token(self, source: tuple[Any, Any], now: float) -> bool:
        b = self._buckets.get(source)
        if b is None:
            if len(self._buckets) >= MAX_SOURCES:
                self._evict_buckets(now)
            b = self._buckets[source] = _Bucket(float(self.burst), now)
        b.tokens = min(float(self.burst), b.tokens + max(0.0, now - b.last) * self.rate)
        b.last = max(b.last, now)
        if b.tokens < 1.0:
            return False
        b.tokens -= 1.0
        return True

    def _evict_buckets(self, now: float) -> None:
        # A full bucket is the same as a fresh one: dropping it loses nothing.
        full = [s for s, b in self._buckets.items()
                if b.tokens + max(0.0, now - b.last) * self.rate >= self.burst]
        for s in full:
            del self._buckets[s]
        while len(self._buckets) >= MAX_SOURCES:
            self._buckets.popitem(last=False)

    # ---- liveness ----------------------------------------------------------------------
    def window(self, interval: float) -> float:
        """Expiry window for an advertised interval: expiry_intervals x clamped interval."""
        return self.expiry_intervals * self.clamp_interval(interval)

    def clamp_interval(self, interval: float) -> float:
        return min(self.max_interval_s, max(self.min_interval_s, interval))

    def _is_alive(self, st: GatewayState, now: float) -> bool:
        return now - st.last_seen <= st.window_s

    def expire(self, now: float) -> list[str]:
        """Remove gateways not advertised within their expiry window; returns their ids."""
        gone = sorted(gw for gw, st in self._gws.items() if not self._is_alive(st, now))
        for gw in gone:
            del self._gws[gw]
            self._books.pop(gw, None)
        self.counters["expired"] += len(gone)
        return gone

    def alive(self, now: float) -> list[GatewayState]:
        """Gateways within their expiry window at ``now`` (even before `expire` runs)."""
        return [st for gw, st in sorted(self._gws.items()) if self._is_alive(st, now)]

    def get(self, gw: str, now: float) -> GatewayState | None:
        st = self._gws.get(gw)
        return st if st is not None and self._is_alive(st, now) else None

    # ---- reservations ------------------------------------------------------------------
    def reserve(self, gw: str, kind: str | None, units: int, now: float,
                grace_s: float | None = None) -> bool:
        """Record a placement on ``gw`` (``kind`` None: kind unknown, counts against all).

        ``grace_s``: how long after the placement the job can have started at the gateway
        (the caller knows the path: about 1.5 round trips for TCP's handshake and the request,
        plus slack); an advert sent later is taken to include it. Default
        ``reservation_grace_s``. Too short briefly under-counts (the gateway queues the
        extra job); too long double-counts (new flows avoid a gateway that has room)."""
        st = self.get(gw, now)
        if st is None or not _is_int(units) or units <= 0:
            return False
        book = self._books.setdefault(gw, _Book())
        self._prune(gw, now)
        if len(book.items) >= MAX_RESERVATIONS:
            book.pop_oldest()
            self.counters["reservations_dropped"] += 1
        grace = self.reservation_grace_s if grace_s is None or not _finite(grace_s) \
            or grace_s < 0 else float(grace_s)
        book.add(_Reservation(now, kind, units, grace))
        return True

    def _settle(self, gw: str, prev: Any, adv: Any) -> None:
        """An advert carrying ``jobs`` (jobs started this epoch) settles exactly the
        reservations it counts: the n oldest, where n is how much ``jobs`` grew. A new
        epoch (the agent restarted) settles them all: its state starts afresh."""
        book = self._books.get(gw)
        jobs = getattr(adv, "jobs", None)
        if book is None or not _is_int(jobs):
            return
        if prev is None or prev.epoch != adv.epoch or not _is_int(getattr(prev, "jobs", None)):
            if prev is not None and prev.epoch != adv.epoch:
                book.clear()
            return
        n = max(0, jobs - prev.jobs)
        for _ in range(min(n, len(book.items))):
            book.pop_oldest()

    def _prune(self, gw: str, now: float) -> None:
        book, st = self._books.get(gw), self._gws.get(gw)
        if book is None or st is None:
            return
        life = self.reservation_intervals * self.clamp_interval(st.advert.interval)
        items = book.items
        while items and now - items[0].made_at > life:  # oldest first: a prefix expires
            book.pop_oldest()
        if not _is_int(getattr(st.advert, "jobs", None)) and items and \
                min(r.made_at + r.grace for r in items) < st.sent_at:
            # an agent without job counts: an advert sent after a placement's grace shows it
            book.rebuild(lambda r: r.made_at + r.grace >= st.sent_at)

    def reserved(self, gw: str, now: float) -> dict[str | None, int]:
        """Pending reserved units per kind (None: kind not known) after pruning."""
        self._prune(gw, now)
        book = self._books.get(gw)
        return dict(book.totals) if book is not None else {}

    def kind_free(self, gw: str, kinds: Sequence[str] | None, now: float
                  ) -> dict[str, tuple[int, int]]:
        """kind -> (total, effective free) for the acceptable kinds. A job runs on ONE kind,
        so feasibility is judged per kind, not on the sum."""
        st = self.get(gw, now)
        if st is None:
            return {}
        res = self.reserved(gw, now)
        unknown = res.get(None, 0)
        return {k: (st.advert.units[k][0],
                    max(0, st.advert.units[k][1] - res.get(k, 0) - unknown))
                for k in self._kinds(st, kinds)}

    def _kinds(self, st: GatewayState, kinds: Sequence[str] | None) -> list[str]:
        have = st.advert.units
        return sorted(have) if not kinds else [k for k in dict.fromkeys(kinds) if k in have]

    def effective_free(self, gw: str, kinds: Sequence[str] | None, now: float) -> int:
        """Advertised free units of the acceptable kinds (empty: any) less pending ones.

        sum over kinds of max(0, free_k - reserved_k), less reservations of unknown kind.
        """
        st = self.get(gw, now)
        if st is None:
            return 0
        res = self.reserved(gw, now)
        free = sum(max(0, st.advert.units[k][1] - res.get(k, 0)) for k in self._kinds(st, kinds))
        return max(0, free - res.get(None, 0))

    def total_units(self, gw: str, kinds: Sequence[str] | None) -> int:
        st = self._gws.get(gw)
        return 0 if st is None else sum(st.advert.units[k][0] for k in self._kinds(st, kinds))

    def pick_kind(self, gw: str, kinds: Sequence[str] | None, now: float) -> str | None:
        """The acceptable kind with the most effective free units (ties: name), to reserve."""
        st = self.get(gw, now)
        if st is None:
            return None
        res = self.reserved(gw, now)
        ks = self._kinds(st, kinds)
        return min(ks, key=lambda k: (-(st.advert.units[k][1] - res.get(k, 0)), k), default=None)

    # ---- state API ---------------------------------------------------------------------
    def snapshot(self, now: float) -> dict:
        gws = {}
        for st in self.alive(now):
            a = st.advert
            gws[st.gw] = {
                "dpid": st.dpid, "port": st.port, "ip": st.ip, "registered": st.registered,
                "first_seen": st.first_seen, "last_seen": st.last_seen,
                "age_s": round(now - st.last_seen, 6), "window_s": st.window_s,
                "accepted": st.accepted,
                "reserved": {("*" if k is None else k): v
                             for k, v in sorted(self.reserved(st.gw, now).items(),
                                                key=lambda kv: (kv[0] is None, kv[0] or ""))},
                "advert": {"epoch": a.epoch, "seq": a.seq, "ts": a.ts, "interval": a.interval,
                           "units": {k: [t, f] for k, (t, f) in sorted(a.units.items())},
                           "util": a.util, "queue": a.queue, "delay_ms": a.delay_ms,
                           "price": a.price, "green": a.green, "pue": a.pue,
                           "operator": a.operator, "services": list(a.services),
                           "authenticated": bool(getattr(a, "authenticated", False))},
            }
        return {"gateways": gws,
                "missing": sorted(set(self.registered) - set(gws)),
                "allow_unregistered": self.allow_unregistered,
                "counters": dict(self.counters),
                "rejections": [dict(r) for r in self.rejections]}


def registered_from_plan(gateways: Iterable[dict]) -> dict[str, tuple[int, int, str]]:
    """plan.extra["gateways"] entries -> {id: (dpid, port, ip)} for `GatewayRegistry`."""
    out: dict[str, tuple[int, int, str]] = {}
    for i, g in enumerate(gateways):
        try:
            gw, dpid, port, ip = g["id"], g["dpid"], g.get("port", 1), g["ip"]
        except (KeyError, TypeError, AttributeError) as e:
            raise ValueError(f"gateways[{i}]: needs id, dpid, port and ip ({e!r})") from None
        if gw in out:
            raise ValueError(f"gateways[{i}]: duplicate gateway id {gw!r}")
        out[gw] = (dpid, port, ip)
    return out
