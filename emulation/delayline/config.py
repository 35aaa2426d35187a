"""Delay-line configuration: hops, validation of the config file, the worker split.

Pure: no sockets, no processes. See the package docstring for the config format.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass

FORMAT = "edwc-delayline/1"

MAX_DELAY_US = 60_000_000  # 60 s: anything above is a unit mistake
MAX_LIMIT = 10_000_000


class DelayLineError(Exception):
    """Bad configuration, missing interface, or a relay process that failed."""


@dataclass
class Hop:
    """One direction of one emulated link."""

    id: str
    in_if: str
    out_if: str
    delay_us: float
    jitter_us: float = 0
    loss: float = 0.0
    limit: int = 1000
    compensation_us: float = 0

    def to_json(self) -> dict:
        return asdict(self)


# --------------------------------------------------------------------------- validation

_HOP_FIELDS = {
    "id", "in_if", "out_if", "delay_us", "jitter_us", "loss", "limit", "compensation_us",
}
_REQUIRED = ("id", "in_if", "out_if", "delay_us")


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _check_ifname(name: str, where: str) -> None:
    if not isinstance(name, str) or not name:
        raise DelayLineError(f"{where}: interface name must be a non-empty string, got {name!r}")
    if len(name.encode()) > 15:
        raise DelayLineError(
            f"{where}: interface name {name!r} is longer than 15 bytes (Linux IFNAMSIZ)")
    if any(c in name for c in "/: \t\n\x00") or name in (".", ".."):
        raise DelayLineError(f"{where}: interface name {name!r} contains a forbidden character")


def _validate_hop(i: int, h) -> Hop:
    label = f"hop #{i}"
    if not isinstance(h, dict):
        raise DelayLineError(f"{label}: must be an object, got {type(h).__name__}")
    if isinstance(h.get("id"), str) and h["id"]:
        label = f"hop #{i} ({h['id']!r})"
    for f in _REQUIRED:
        if f not in h:
            raise DelayLineError(f"{label}: missing required field '{f}'")
    unknown = set(h) - _HOP_FIELDS
    if unknown:
        raise DelayLineError(
            f"{label}: unknown field(s) {sorted(unknown)}; allowed: {sorted(_HOP_FIELDS)}")
    if not isinstance(h["id"], str) or not h["id"].strip():
        raise DelayLineError(f"{label}: field 'id' must be a non-empty string")
    _check_ifname(h["in_if"], f"{label} field 'in_if'")
    _check_ifname(h["out_if"], f"{label} field 'out_if'")
    if h["in_if"] == h["out_if"]:
        raise DelayLineError(f"{label}: 'in_if' and 'out_if' are both {h['in_if']!r}")
    vals = {}
    for f, default, lo, hi in (
        ("delay_us", None, 0, MAX_DELAY_US),
        ("jitter_us", 0, 0, MAX_DELAY_US),
        ("compensation_us", 0, 0, MAX_DELAY_US),
        ("loss", 0.0, 0.0, 1.0),
    ):
        v = h.get(f, default)
        if not _is_number(v):
            raise DelayLineError(f"{label}: field '{f}' must be a number, got {v!r}")
        if not math.isfinite(v):
            raise DelayLineError(f"{label}: field '{f}' must be finite, got {v!r}")
        if not lo <= v <= hi:
            raise DelayLineError(f"{label}: field '{f}'={v!r} outside [{lo}, {hi}]")
        vals[f] = v
    limit = h.get("limit", 1000)
    if not isinstance(limit, int) or isinstance(limit, bool):
        raise DelayLineError(f"{label}: field 'limit' must be an integer, got {limit!r}")
    if not 1 <= limit <= MAX_LIMIT:
        raise DelayLineError(f"{label}: field 'limit'={limit} outside [1, {MAX_LIMIT}]")
    return Hop(id=h["id"], in_if=h["in_if"], out_if=h["out_if"], delay_us=vals["delay_us"],
               jitter_us=vals["jitter_us"], loss=float(vals["loss"]), limit=limit,
               compensation_us=vals["compensation_us"])


def validate_hops(hops) -> list[Hop]:
    """Validate a list of hop dicts (or :class:`Hop`) and the cross-hop rules."""
    if not isinstance(hops, list) or not hops:
        raise DelayLineError("field 'hops' must be a non-empty list")
    out = [_validate_hop(i, h.to_json() if isinstance(h, Hop) else h) for i, h in enumerate(hops)]
    seen_id: dict[str, int] = {}
    seen_in: dict[str, str] = {}
    seen_out: dict[str, str] = {}
    for i, h in enumerate(out):
        if h.id in seen_id:
            raise DelayLineError(
                f"hop #{i} ({h.id!r}): duplicate hop id (also hop #{seen_id[h.id]})")
        seen_id[h.id] = i
        if h.in_if in seen_in:
            raise DelayLineError(
                f"hop #{i} ({h.id!r}): interface {h.in_if!r} is already 'in_if' of hop "
                f"{seen_in[h.in_if]!r}; each relay interface is read by exactly one hop")
        seen_in[h.in_if] = h.id
        if h.out_if in seen_out:
            raise DelayLineError(
                f"hop #{i} ({h.id!r}): interface {h.out_if!r} is already 'out_if' of hop "
                f"{seen_out[h.out_if]!r}; each relay interface is written by exactly one hop")
        seen_out[h.out_if] = h.id
    return out


def validate_config(obj) -> list[Hop]:
    """Validate a parsed config object; return its hops or raise :class:`DelayLineError`."""
    if not isinstance(obj, dict):
        raise DelayLineError(f"config must be a JSON object, got {type(obj).__name__}")
    if obj.get("format") != FORMAT:
        raise DelayLineError(f"config field 'format' must be {FORMAT!r}, got {obj.get('format')!r}")
    unknown = set(obj) - {"format", "seed", "stats_path", "ready_path", "hops", "rt_priority"}
    if unknown:
        raise DelayLineError(f"config: unknown field(s) {sorted(unknown)}")
    seed = obj.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise DelayLineError(f"config field 'seed' must be an integer, got {seed!r}")
    rt = obj.get("rt_priority", 0)
    if not isinstance(rt, int) or isinstance(rt, bool) or not 0 <= rt <= 99:
        raise DelayLineError(f"config field 'rt_priority' must be an integer 0-99 (0: no "
                             f"real-time scheduling), got {rt!r}")
    for f in ("stats_path", "ready_path"):
        v = obj.get(f)
        if not isinstance(v, str) or not v:
            raise DelayLineError(f"config field '{f}' must be a non-empty path string, got {v!r}")
        d = os.path.dirname(os.path.abspath(v))
        if not os.path.isdir(d):
            raise DelayLineError(f"config field '{f}': directory {d!r} does not exist")
    if "hops" not in obj:
        raise DelayLineError("config: missing required field 'hops'")
    return validate_hops(obj["hops"])



# --------------------------------------------------------------------------- worker split

def split_links(link_hops: list[tuple[Hop, Hop]], workers: int) -> list[list[Hop]]:
    """Distribute links over ``workers`` processes; both hops of a link stay together.

    Greedy balance by hop count (links processed in the given order, each to the
    currently lightest worker, ties to the lowest index).  Returns
    ``min(workers, len(link_hops))`` non-empty lists (an empty list if there are
    no links).  An element may also be a 1-tuple for a one-way link.
    """
    if not isinstance(workers, int) or workers < 1:
        raise DelayLineError(f"split_links: workers must be a positive integer, got {workers!r}")
    n = min(workers, len(link_hops))
    groups: list[list[Hop]] = [[] for _ in range(n)]
    for link in link_hops:
        k = min(range(n), key=lambda j: (len(groups[j]), j))
        groups[k].extend(link)
    return groups



# --------------------------------------------------------------------------- files

def atomic_write(path: str, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and rename (readers never see
    half a file): the config, ready and stats files."""
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)

