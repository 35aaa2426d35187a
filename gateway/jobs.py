"""The job protocol on TCP SERVICE_PORT: request parsing and reply lines (pure).

A client sends ONE request line (JSON object, at most MAX_REQUEST bytes before the "\\n"):
    {"service": "infer-rt", "units": 2, "kinds": ["cuda", "cann"], "duration_s": 1.5}
    service     str, one of the gateway's services                      required
    units       int 1..1000000                                          required
    duration_s  number, 0 < d <= 3600                                   required
    kinds       list of 1..8 distinct kinds; default: every kind here   optional
    id          str, at most 64 printable chars, echoed in replies      optional
The gateway answers with JSON lines and then closes:
    {"ok": true, "gw", "job", "service", "kind", "units", "duration_s", "queued_ms"[, "id"]}
        when the job starts (after waiting in the FIFO queue, if it had to), then
    {"done": true, "gw", "job", "kind", "units", "run_ms"[, "id"]}  when it ends; or
    {"ok": false, "gw", "error": CODE, "detail": text[, "id"]}       instead of the first.
Error codes: see ERRORS. Closing the connection early releases the job's units.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from .protocol import KIND_RE, MAX_KINDS, MAX_UNITS, NAME_RE, AdvertError, parse_body

MAX_REQUEST = 512
MAX_DURATION_S = 3600.0
MAX_ID = 64
REQUEST_KEYS = ("service", "units", "duration_s", "kinds", "id")
ERRORS = {
    "bad-request": "the line is not a valid request (detail names the field)",
    "too-long": f"no newline within {MAX_REQUEST} bytes",
    "timeout": "no complete request line within the request timeout",
    "unknown-service": "this gateway does not serve that service",
    "no-kind": "none of the acceptable kinds is offered here",
    "too-large": "more units than this gateway has of any acceptable kind",
    "busy": "no free units and the queue is full",
    "overloaded": "too many open connections",
    "shutting-down": "the agent is stopping",
}


class RequestError(ValueError):
    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code, self.detail = code, detail


@dataclass(frozen=True)
class JobRequest:
    service: str
    units: int
    duration_s: float
    kinds: tuple[str, ...]
    id: str | None = None


def _bad(detail: str) -> RequestError:
    return RequestError("bad-request", detail)


def parse_request(line: bytes, services: tuple[str, ...],
                  offered: tuple[str, ...]) -> JobRequest:
    """Parse one request line (without its newline). Raises RequestError."""
    if len(line) > MAX_REQUEST:
        raise RequestError("too-long", f"request line is {len(line)} bytes, at most "
                           f"{MAX_REQUEST}")
    try:
        obj = parse_body(line.strip())
    except AdvertError as e:  # the same strict JSON rules as advertisements
        raise _bad(str(e).replace("body: ", "", 1)) from None
    if not isinstance(obj, dict):
        raise _bad("the request must be a JSON object")
    unknown = sorted(k for k in obj if k not in REQUEST_KEYS)
    if unknown:
        raise _bad(f"unknown field(s) {', '.join(map(repr, unknown[:5]))}; "
                   f"allowed: {', '.join(REQUEST_KEYS)}")
    for name in ("service", "units", "duration_s"):
        if name not in obj:
            raise _bad(f"{name}: missing (required field)")
    req_id = obj.get("id")
    if req_id is not None and (not isinstance(req_id, str) or len(req_id) > MAX_ID
                               or not req_id.isprintable()):
        raise _bad(f"id: must be printable text of at most {MAX_ID} characters")
    service = obj["service"]
    if not isinstance(service, str) or NAME_RE.fullmatch(service) is None:
        raise _bad("service: must be a service name such as \"infer-rt\"")
    units = obj["units"]
    if isinstance(units, bool) or not isinstance(units, int) or not 1 <= units <= MAX_UNITS:
        raise _bad(f"units: must be an integer in 1..{MAX_UNITS}")
    dur = obj["duration_s"]
    if (isinstance(dur, bool) or not isinstance(dur, (int, float)) or not math.isfinite(dur)
            or not 0 < dur <= MAX_DURATION_S):
        raise _bad(f"duration_s: must be a number > 0 and <= {MAX_DURATION_S:g}")
    kinds = _kinds(obj.get("kinds"), offered)
    if service not in services:
        raise RequestError("unknown-service", f"{service!r} is not served here "
                           f"(services: {', '.join(services) or 'none'})")
    return JobRequest(service, units, float(dur), kinds, req_id)


def _kinds(v: Any, offered: tuple[str, ...]) -> tuple[str, ...]:
    if v is None:
        return offered
    if (not isinstance(v, list) or not 1 <= len(v) <= MAX_KINDS
            or not all(isinstance(k, str) and KIND_RE.fullmatch(k) for k in v)):
        raise _bad(f"kinds: must be a list of 1..{MAX_KINDS} kinds such as [\"cuda\"]")
    if len(set(v)) != len(v):
        raise _bad("kinds: duplicate kind")
    return tuple(v)


def line(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":"), allow_nan=False).encode() + b"\n"


def error_reply(gw: str, code: str, detail: str = "", req_id: str | None = None) -> bytes:
    obj: dict[str, Any] = {"ok": False, "gw": gw, "error": code,
                           "detail": detail or ERRORS.get(code, "")}
    if req_id is not None:
        obj["id"] = req_id
    return line(obj)
