"""The load generator a metro host runs inside its network namespace: it submits one
metro's share of the workload as real jobs (gateway.client.request_job) on schedule.

    python -m experiments.workload.loadgen --schedule FILE --start-at UNIX_TS --out FILE \\
        [--timeout S] [--max-inflight N] [--grace S]

Schedule (JSON, written by the runner with `make_schedule`):
    {"requests": [{"idx": 0, "t": 0.25, "service": "infer", "address": "10.0.255.2",
                   "port": 7000, "units": 2, "kinds": ["cuda", "cann"],
                   "duration_s": 1.7}, ...]}
``idx`` is unique; ``t`` is seconds after --start-at. Other keys are ignored. Run it with
the project root as the working directory (or on PYTHONPATH) and the project's python.

Protocol with the runner (in the root namespace):
- Bad arguments or an invalid schedule: a message on stderr, exit status 2, no marker.
- Once the schedule is valid it writes the marker ``OUT.ready`` (JSON: pid, requests,
  start_at) and says "loadgen: ready" on stderr; the runner waits for the marker.
- At start_at + t each request runs request_job in its own thread. With --max-inflight
  jobs already in flight, the request is NOT sent and gets error "overload" at once (the
  schedule never waits). Each finished request appends one JSON line to OUT at once
  (flushed): idx, t, t_start (actual send, s after start_at), ok, done, error, gw, kind,
  connect_ms, start_ms, queued_ms, total_ms, detail. Use `read_results` to read it.
- SIGTERM or SIGINT: stop launching, give in-flight jobs --grace s (1) to finish, write a
  line with error "interrupted" for each still in flight, exit 0. Requests not yet due get
  no line.
- stdout carries exactly one line at the end: a JSON summary of counts.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from gateway.client import request_job

MAX_SCHEDULE = 100_000
RESULT_KEYS = ("idx", "t", "t_start", "ok", "done", "error", "gw", "kind", "connect_ms",
               "start_ms", "queued_ms", "total_ms", "detail")


class ScheduleError(ValueError):
    """An invalid schedule file; the message names the entry and the fix."""


def make_schedule(requests: Iterable, services: Iterable) -> dict:
    """A schedule dict for the given experiments.workload.Requests (typically one metro's),
    addresses, ports and kinds from the plan's services."""
    svc = {s.name: s for s in services}
    return {"requests": [
        {"idx": r.idx, "t": r.t, "service": r.service, "address": svc[r.service].address,
         "port": svc[r.service].port, "units": r.units, "kinds": list(svc[r.service].kinds),
         "duration_s": r.duration_s, "metro": r.metro} for r in requests]}


def read_results(path: str | Path) -> list[dict]:
    """The result lines of OUT ([] if it does not exist). A truncated or unparsable LAST
    line (the writer was killed mid-line) is skipped; a bad line elsewhere raises
    ValueError naming it."""
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return []
    lines = text.split("\n")
    out = []
    for i, ln in enumerate(lines):
        if not ln.strip():
            continue
        last = i == len(lines) - 1 or all(not x.strip() for x in lines[i + 1:])
        try:
            obj = json.loads(ln)
        except ValueError:
            if last:
                break
            raise ValueError(f"{path}, line {i + 1}: not a JSON result line") from None
        if isinstance(obj, dict):
            out.append(obj)
        elif not last:
            raise ValueError(f"{path}, line {i + 1}: not a JSON object")
    return out


def load_schedule(path: str) -> list[dict]:
    try:
        with open(path, encoding="utf-8") as f:
            raw = json.load(f)
    except OSError as e:
        raise ScheduleError(f"{path}: cannot read ({e.strerror})") from None
    except ValueError as e:
        raise ScheduleError(f"{path}: not valid JSON ({e}); write it with make_schedule") \
            from None
    reqs = raw.get("requests") if isinstance(raw, dict) else None
    if not isinstance(reqs, list):
        raise ScheduleError(f'{path}: expected {{"requests": [...]}}')
    if len(reqs) > MAX_SCHEDULE:
        raise ScheduleError(f"{path}: {len(reqs)} requests, at most {MAX_SCHEDULE}; split it")
    seen: set[int] = set()
    for i, r in enumerate(reqs):
        where = f"{path}: requests[{i}]"
        if not isinstance(r, dict):
            raise ScheduleError(f"{where}: expected an object")
        for key, types in (("idx", int), ("t", (int, float)), ("service", str),
                           ("address", str), ("port", int), ("units", int),
                           ("duration_s", (int, float))):
            v = r.get(key)
            if isinstance(v, bool) or not isinstance(v, types):
                raise ScheduleError(f"{where}: '{key}' is missing or has the wrong type "
                                    f"({v!r})")
        if r["idx"] in seen:
            raise ScheduleError(f"{where}: idx {r['idx']} repeats; idx must be unique")
        seen.add(r["idx"])
        if not math.isfinite(r["t"]) or r["t"] < 0:
            raise ScheduleError(f"{where}: t = {r['t']!r} must be >= 0 s")
        if not math.isfinite(r["duration_s"]) or r["duration_s"] <= 0 or r["units"] < 1 \
                or not 0 < r["port"] < 65536:
            raise ScheduleError(f"{where}: needs duration_s > 0, units >= 1, port 1..65535")
        kinds = r.get("kinds")
        if kinds is not None and not (isinstance(kinds, list)
                                      and all(isinstance(k, str) for k in kinds)):
            raise ScheduleError(f"{where}: 'kinds' must be a list of strings")
    return sorted(reqs, key=lambda r: (r["t"], r["idx"]))


class LoadGen:
    """Runs a schedule; the signal handler calls stop()."""

    def __init__(self, reqs: list[dict], start_at: float, out: str, timeout_s: float,
                 max_inflight: int, grace_s: float) -> None:
        self.reqs, self.out_path = reqs, out
        self.timeout_s, self.max_inflight, self.grace_s = timeout_s, max_inflight, grace_s
        # monotonic clock reading at start_at (the wall clock may step during the run)
        self.t0 = time.monotonic() + (start_at - time.time())
        self.stop_event = threading.Event()
        self.cond = threading.Condition()
        self.inflight: dict[int, tuple[dict, float]] = {}
        self.written: set[int] = set()
        self.counts: dict[str, Any] = {"requests": len(reqs), "sent": 0, "ok": 0, "done": 0,
                                       "overload": 0, "interrupted": 0, "errors": {},
                                       "late_max_ms": 0.0}
        self.out = open(out, "a", encoding="utf-8")  # noqa: SIM115 (closed in run)

    def stop(self) -> None:
        self.stop_event.set()
        with self.cond:
            self.cond.notify_all()

    def _write(self, req: dict, t_start: float | None, res: dict) -> None:
        """Append one result line (under self.cond); each idx at most once."""
        if req["idx"] in self.written or self.out.closed:
            return
        self.written.add(req["idx"])
        line = {"idx": req["idx"], "t": req["t"],
                "t_start": None if t_start is None else round(t_start, 6)}
        for k in RESULT_KEYS[3:]:
            line[k] = res.get(k)
        line["ok"], line["done"] = bool(line["ok"]), bool(line["done"])
        self.out.write(json.dumps(line, separators=(",", ":")) + "\n")
        self.out.flush()
        c = self.counts
        c["ok"] += line["ok"]
        c["done"] += line["done"]
        if line["error"]:
            c["errors"][line["error"]] = c["errors"].get(line["error"], 0) + 1

    def _job(self, req: dict, t_start: float) -> None:
        try:
            reply = request_job(req["address"], req["port"], req["service"], req["units"],
                                req.get("kinds"), float(req["duration_s"]), self.timeout_s)
            res = asdict(reply)
        except Exception as e:  # never lose a line to a bug or a bad value
            res = {"ok": False, "done": False, "error": "client-error", "detail": str(e)[:200]}
        with self.cond:
            self._write(req, t_start, res)
            self.inflight.pop(req["idx"], None)
            self.cond.notify_all()

    def run(self) -> dict:
        try:
            for req in self.reqs:
                due = self.t0 + float(req["t"])
                while not self.stop_event.is_set():
                    left = due - time.monotonic()
                    if left <= 0:
                        break
                    self.stop_event.wait(min(left, 0.5))
                if self.stop_event.is_set():
                    break
                self._launch(req)
            with self.cond:
                while self.inflight and not self.stop_event.is_set():
                    self.cond.wait(0.2)
                if self.inflight:
                    deadline = time.monotonic() + self.grace_s
                    while self.inflight and (left := deadline - time.monotonic()) > 0:
                        self.cond.wait(left)
                    for req, t_start in list(self.inflight.values()):
                        self._write(req, t_start, {"error": "interrupted",
                                                   "detail": "the run stopped while the job "
                                                             "was in flight"})
                        self.counts["interrupted"] += 1
                    self.inflight.clear()
                self.out.close()
        finally:
            if not self.out.closed:
                self.out.close()
        c = self.counts
        c["not_sent"] = c["requests"] - len(self.written)
        c["late_max_ms"] = round(c["late_max_ms"], 3)
        return c

    def _launch(self, req: dict) -> None:
        now = time.monotonic()
        t_start = now - self.t0
        self.counts["late_max_ms"] = max(self.counts["late_max_ms"],
                                         (t_start - float(req["t"])) * 1000.0)
        with self.cond:
            if len(self.inflight) >= self.max_inflight:
                self.counts["overload"] += 1
                self._write(req, t_start, {"error": "overload",
                                           "detail": f"{self.max_inflight} jobs already in "
                                                     "flight (--max-inflight); not sent"})
                return
            self.inflight[req["idx"]] = (req, t_start)
            self.counts["sent"] += 1
        threading.Thread(target=self._job, args=(req, t_start), daemon=True,
                         name=f"job-{req['idx']}").start()


def _positive(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        v = float("nan")
    if not v > 0 or not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"{text!r} is not a number > 0")
    return v


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m experiments.workload.loadgen",
                                description=__doc__.split("\n")[0])
    p.add_argument("--schedule", required=True, help="schedule JSON (see the docstring)")
    p.add_argument("--start-at", required=True, type=_positive,
                   help="UNIX time of the workload's t = 0")
    p.add_argument("--out", required=True, help="result lines are appended here")
    p.add_argument("--timeout", type=_positive, default=5.0,
                   help="request_job timeout per step, s (5)")
    p.add_argument("--max-inflight", type=int, default=256,
                   help="jobs in flight at most; more are counted as 'overload' (256)")
    p.add_argument("--grace", type=float, default=1.0,
                   help="on SIGTERM, s to let in-flight jobs finish (1)")
    args = p.parse_args(argv)
    if args.max_inflight < 1 or not 0 <= args.grace <= 60:
        p.error("--max-inflight must be >= 1 and --grace in 0..60")
    try:
        reqs = load_schedule(args.schedule)
    except ScheduleError as e:
        p.error(str(e))
    threading.stack_size(512 * 1024)  # many idle job threads: keep their stacks small
    try:
        gen = LoadGen(reqs, args.start_at, args.out, args.timeout, args.max_inflight,
                      args.grace)
    except OSError as e:
        p.error(f"--out {args.out}: cannot open ({e.strerror})")
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: gen.stop())
    ready = {"pid": os.getpid(), "requests": len(reqs), "start_at": args.start_at}
    tmp = f"{args.out}.ready.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(ready, f)
    os.replace(tmp, f"{args.out}.ready")
    print(f"loadgen: ready, {len(reqs)} requests, t=0 at {args.start_at:.3f}",
          file=sys.stderr, flush=True)
    counts = gen.run()
    print(json.dumps(counts, separators=(",", ":"), sort_keys=True), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
