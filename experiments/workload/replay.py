"""Replay files: a recorded workload as CSV or JSON lines, read back into the `Request`s of
experiments.workload.generator (pure, no root).

    save_replay(requests, "wl.csv")           # .csv, or .jsonl / .json / .ndjson
    requests = load_replay("wl.csv", network)  # validated, sorted by t, idx renumbered

Columns (CSV header) or keys (one JSON object per line): t, metro, service, and optionally
units, duration_s, deferrable, arrival_t (see `load_replay` for their defaults). Every
error names the file, the line and the fix. A saved workload replays identically.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from experiments.workload.generator import (
    BATCH_CLASS,
    DEFAULT_MIX,
    Request,
    WorkloadError,
    _svc_map,
)

MAX_REPLAY_ROWS = 100_000
REPLAY_KEYS = ("t", "metro", "service", "units", "duration_s", "deferrable", "arrival_t")


def save_replay(requests: Iterable[Request], path: str | Path) -> None:
    """Write requests as CSV (.csv) or JSON lines (.jsonl, .json, .ndjson)."""
    p = Path(path)
    rows = [{"t": r.t, "metro": r.metro, "service": r.service, "units": r.units,
             "duration_s": r.duration_s, "deferrable": r.deferrable, "arrival_t": r.arrival_t}
            for r in requests]
    fmt = _format_of(p)
    with open(p, "w", newline="", encoding="utf-8") as f:
        if fmt == "csv":
            w = csv.writer(f)
            w.writerow(REPLAY_KEYS)
            for row in rows:
                w.writerow([repr(v) if isinstance(v, float) else
                            str(v).lower() if isinstance(v, bool) else v
                            for v in (row[k] for k in REPLAY_KEYS)])
        else:
            for row in rows:
                f.write(json.dumps(row, separators=(",", ":")) + "\n")


def _format_of(p: Path) -> str:
    suffix = p.suffix.lower()
    if suffix == ".csv":
        return "csv"
    if suffix in (".jsonl", ".json", ".ndjson"):
        return "jsonl"
    raise WorkloadError(f"{p}: unknown replay format {suffix!r}; name the file .csv "
                        "(header t,metro,service[,units,duration_s,deferrable,arrival_t]) "
                        "or .jsonl (one JSON object per line with the same keys)")


def load_replay(path: str | Path, services, metros: Iterable[str] | None = None, *,
                mix: dict[str, tuple[float, float]] | None = None,
                max_rows: int = MAX_REPLAY_ROWS) -> list[Request]:
    """Read and validate a replay file; the requests sorted by t (stable), idx renumbered.

    ``services`` is a list of services, or a topology.model.Network: then its services
    (or the built-in ones) and, unless ``metros`` is given, its metro sites are used.
    Missing columns: units = the service's units, duration_s = the mix's mean for the
    service (DEFAULT_MIX unless `mix` is given), deferrable = service class "batch",
    arrival_t = t."""
    p = Path(path)
    fmt = _format_of(p)
    if hasattr(services, "sites"):  # a Network
        net = services
        if metros is None:
            metros = [s.id for s in net.sites if s.kind == "metro"]
        if net.services:
            services = net.services
        else:
            from topology.services import default_services
            services = default_services()
    if metros is None:
        raise WorkloadError("load_replay: give the metros (client site ids) or a network")
    svc = _svc_map(services)
    metro_set = set(metros)
    mix = DEFAULT_MIX if mix is None else mix
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise WorkloadError(f"{p}: cannot read the replay file ({e.strerror})") from None
    except UnicodeDecodeError:
        raise WorkloadError(f"{p}: not UTF-8 text; save it as UTF-8 CSV or JSON lines") \
            from None
    rows = _csv_rows(p, text) if fmt == "csv" else _jsonl_rows(p, text)
    out: list[tuple[float, float, str, str, int, float, bool]] = []
    for line, row in rows:
        if len(out) >= max_rows:
            raise WorkloadError(f"{p}, line {line}: more than {max_rows} requests; split the "
                                "file or shorten the workload")
        out.append(_row(p, line, row, svc, metro_set, mix))
    if not out:
        raise WorkloadError(f"{p}: no requests; add rows (t,metro,service)")
    out.sort(key=lambda r: r[0])
    return [Request(i, t, a, m, s, u, d, df) for i, (t, a, m, s, u, d, df) in enumerate(out)]


def _csv_rows(p: Path, text: str):
    lines = [(i + 1, ln) for i, ln in enumerate(text.splitlines())
             if ln.strip() and not ln.lstrip().startswith("#")]
    if not lines:
        return
    hline, header = lines[0]
    cols = [c.strip() for c in next(csv.reader([header]))]
    unknown = [c for c in cols if c not in REPLAY_KEYS]
    if unknown or len(set(cols)) != len(cols):
        raise WorkloadError(f"{p}, line {hline}: header {cols} has unknown or repeated "
                            f"column(s) {unknown}; allowed: {list(REPLAY_KEYS)}")
    missing = [c for c in ("t", "metro", "service") if c not in cols]
    if missing:
        raise WorkloadError(f"{p}, line {hline}: header lacks {missing}; the first line "
                            "must name the columns, e.g. t,metro,service,units,duration_s")
    for n, ln in lines[1:]:
        cells = next(csv.reader([ln]))
        if len(cells) != len(cols):
            raise WorkloadError(f"{p}, line {n}: {len(cells)} fields, the header has "
                                f"{len(cols)}; give one value per column")
        yield n, {c: v.strip() for c, v in zip(cols, cells) if v.strip() != ""}


def _jsonl_rows(p: Path, text: str):
    for i, ln in enumerate(text.splitlines()):
        if not ln.strip():
            continue
        try:
            obj = json.loads(ln)
        except ValueError as e:
            raise WorkloadError(f"{p}, line {i + 1}: not valid JSON ({e.msg}); write one "
                                "JSON object per line") from None
        if not isinstance(obj, dict):
            raise WorkloadError(f"{p}, line {i + 1}: expected a JSON object like "
                                '{"t": 1.5, "metro": "shanghai", "service": "infer"}')
        unknown = sorted(set(obj) - set(REPLAY_KEYS))
        if unknown:
            raise WorkloadError(f"{p}, line {i + 1}: unknown key(s) {unknown}; allowed: "
                                f"{list(REPLAY_KEYS)}")
        yield i + 1, {k: v for k, v in obj.items() if v is not None}


def _num(p: Path, line: int, key: str, v: Any, lo: float, fix: str,
         integer: bool = False) -> float:
    where = f"{p}, line {line}"
    if isinstance(v, str):
        try:
            v = int(v) if integer else float(v)
        except ValueError:
            raise WorkloadError(f"{where}: {key} = {v!r} is not a"
                                f"{'n integer' if integer else ' number'}; {fix}") from None
    if isinstance(v, bool) or not isinstance(v, int if integer else (int, float)):
        raise WorkloadError(f"{where}: {key} = {v!r} is not a"
                            f"{'n integer' if integer else ' number'}; {fix}")
    if not math.isfinite(v) or v < lo:
        raise WorkloadError(f"{where}: {key} = {v!r} is out of range (>= {lo:g}); {fix}")
    return v


def _row(p: Path, line: int, row: dict, svc: dict, metros: set[str],
         mix: dict) -> tuple[float, float, str, str, int, float, bool]:
    where = f"{p}, line {line}"
    for key in ("t", "metro", "service"):
        if key not in row:
            raise WorkloadError(f"{where}: missing {key!r}; every request needs t, metro "
                                "and service")
    t = float(_num(p, line, "t", row["t"], 0.0, "give seconds from the workload start, >= 0"))
    metro, name = row["metro"], row["service"]
    if metro not in metros:
        raise WorkloadError(f"{where}: metro {metro!r} is not a client site of this "
                            f"topology; use one of {sorted(metros)}")
    if name not in svc:
        raise WorkloadError(f"{where}: service {name!r} is unknown; use one of {sorted(svc)}")
    units = int(_num(p, line, "units", row.get("units", svc[name].units), 1,
                     "give the compute units, an integer >= 1", integer=True))
    if units > 1_000_000:
        raise WorkloadError(f"{where}: units = {units} is more than 1000000; lower it")
    if "duration_s" in row:
        dur = float(_num(p, line, "duration_s", row["duration_s"], 0.0,
                         "give the job duration in seconds, > 0"))
        if dur <= 0 or dur > 3600:
            raise WorkloadError(f"{where}: duration_s = {dur:g} must be > 0 and <= 3600 "
                                "(the gateway's limit); fix the value")
    elif name in mix:
        dur = float(mix[name][1])
    else:
        raise WorkloadError(f"{where}: no duration_s and the mix has no default for "
                            f"{name!r}; add a duration_s column")
    deferrable = row.get("deferrable", svc[name].service_class == BATCH_CLASS)
    if isinstance(deferrable, str):
        low = deferrable.lower()
        if low not in ("true", "false", "1", "0", "yes", "no"):
            raise WorkloadError(f"{where}: deferrable = {deferrable!r}; write true or false")
        deferrable = low in ("true", "1", "yes")
    if not isinstance(deferrable, bool):
        raise WorkloadError(f"{where}: deferrable = {deferrable!r}; write true or false")
    arrival = float(_num(p, line, "arrival_t", row.get("arrival_t", t), 0.0,
                         "give seconds from the workload start, >= 0"))
    if arrival > t:
        raise WorkloadError(f"{where}: arrival_t = {arrival:g} is after t = {t:g}; a request "
                            "is submitted at or after it arises: fix arrival_t or drop it")
    return t, arrival, metro, name, units, dur, deferrable
