"""The gateway agent's event loop: job service on TCP, advertisements on UDP, state file.

One thread, one selector: the listening socket, every client connection, and a wake-up
socket (stop() and SIGTERM write to it) are registered; job ends, request deadlines and
advertisements are timers on the monotonic clock. Capacity bookkeeping is gateway.pool,
the job protocol gateway.jobs, the advertisement gateway.protocol.

Advertisements go out every ``interval`` and, coalesced by a minimum gap, as soon as free
units change significantly (pool.significant_change). delay_ms is pool.expected_wait for a
new 1-unit job on its best kind (pool.advertised_wait), in ms, capped at 600000.
"""

from __future__ import annotations

import heapq
import itertools
import json
import logging
import math
import os
import resource
import selectors
import socket
import time
from typing import Any

from .config import GatewayConfig
from .jobs import MAX_REQUEST, RequestError, error_reply, line, parse_request
from .pool import BUSY, QUEUED, STARTED, Job, Pool, significant_change
from .protocol import Advert, encode_advert

LOG = logging.getLogger("edwc.gateway")

COUNTERS = ("connections", "jobs_started", "jobs_served", "jobs_queued", "jobs_refused",
            "jobs_cancelled", "bad_requests", "timeouts", "overloaded", "adverts_sent",
            "advert_errors")
MAX_DELAY_MS = 600_000.0
STATE_MIN_GAP_S = 0.1  # the state file is rewritten at most this often
FLUSH_TIMEOUT_S = 5.0  # a client that does not read its last reply is dropped after this
READ_CHUNK = 4096


class _Conn:
    __slots__ = ("id", "sock", "peer", "buf", "out", "state", "job", "req_id", "deadline")

    def __init__(self, cid: int, sock: socket.socket, peer: Any, deadline: float) -> None:
        self.id, self.sock, self.peer = cid, sock, peer
        self.buf, self.out = bytearray(), bytearray()
        self.state = "reading"  # -> queued -> running -> closing
        self.job: int | None = None
        self.req_id: str | None = None
        self.deadline: float | None = deadline


class Agent:
    def __init__(self, cfg: GatewayConfig) -> None:
        self.cfg = cfg
        self.pool = Pool(cfg.units, cfg.max_queue)
        self.offered = tuple(cfg.units)
        self.counters = dict.fromkeys(COUNTERS, 0)
        self.epoch = time.time_ns()
        self.seq = 0
        self.service_port = cfg.service_port
        self.conns: dict[int, _Conn] = {}
        self.job_conn: dict[int, int] = {}
        self._ids = itertools.count(1)
        self._timers: list[tuple[float, int, str, int]] = []
        self._stopping = False
        self._last_units: dict[str, tuple[int, int]] | None = None
        self._last_sent = -math.inf
        self._last_queue = 0
        self._next_advert = 0.0
        self._dirty = True
        self._next_state = 0.0
        self._max_conns = cfg.max_connections
        self._sel: selectors.BaseSelector | None = None

    # -- lifecycle ---------------------------------------------------------------------
    def start(self) -> None:
        """Open the sockets (raises OSError, e.g. port in use); serve() runs the loop."""
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        if soft != resource.RLIM_INFINITY:
            self._max_conns = max(1, min(self._max_conns, soft - 32))
        self._sel = selectors.DefaultSelector()
        self._listen = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listen.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listen.bind((self.cfg.bind, self.cfg.service_port))
        self._listen.listen(1024)
        self._listen.setblocking(False)
        self.service_port = self._listen.getsockname()[1]
        self._udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._udp.setblocking(False)
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._sel.register(self._listen, selectors.EVENT_READ, "listen")
        self._sel.register(self._wake_r, selectors.EVENT_READ, "wake")
        self._next_advert = time.monotonic()
        LOG.info("gateway %s serving %s on %s:%d, advertising to %s:%d every %gs%s",
                 self.cfg.gw, ",".join(self.cfg.services), self.cfg.bind, self.service_port,
                 self.cfg.adv_addr, self.cfg.adv_port, self.cfg.interval,
                 " with HMAC" if self.cfg.key else "")

    def stop(self) -> None:
        """Ask serve() to return (safe from a signal handler or another thread)."""
        self._stopping = True
        try:
            self._wake_w.send(b"x")
        except (OSError, AttributeError):
            pass

    def run(self) -> None:
        self.start()
        self.serve()

    def serve(self) -> None:
        assert self._sel is not None, "start() first"
        try:
            while not self._stopping:
                now = time.monotonic()
                self._fire_timers(now)
                if now >= self._next_advert:
                    self._advertise(now)
                if self._dirty and now >= self._next_state:
                    self._write_state(running=True)
                    self._next_state = now + STATE_MIN_GAP_S
                wake = min(self._next_advert, self._timers[0][0] if self._timers else math.inf,
                           self._next_state if self._dirty else math.inf)
                timeout = min(max(0.0, wake - time.monotonic()), 1.0)
                for key, mask in self._sel.select(timeout):
                    self._dispatch(key, mask)
        finally:
            self._shutdown()

    def _dispatch(self, key: selectors.SelectorKey, mask: int) -> None:
        now = time.monotonic()
        if key.data == "listen":
            self._accept(now)
        elif key.data == "wake":
            try:
                self._wake_r.recv(64)
            except OSError:
                pass
        else:
            conn: _Conn = key.data
            try:
                if mask & selectors.EVENT_WRITE:
                    self._flush(conn)
                if mask & selectors.EVENT_READ and conn.id in self.conns:
                    self._readable(conn, now)
            except Exception:  # one bad connection must not stop the agent
                LOG.exception("connection %s failed; dropping it", conn.peer)
                self._client_gone(conn, now)

    def _shutdown(self) -> None:
        for conn in list(self.conns.values()):
            if conn.state in ("reading", "queued"):
                try:
                    conn.sock.send(error_reply(self.cfg.gw, "shutting-down", req_id=conn.req_id))
                except OSError:
                    pass
            self._close(conn)
        for s in (self._listen, self._udp, self._wake_r, self._wake_w):
            s.close()
        if self._sel is not None:
            self._sel.close()
        self._write_state(running=False)
        LOG.info("gateway %s stopped: %s", self.cfg.gw, self.counters)

    # -- timers ------------------------------------------------------------------------
    def _timer(self, when: float, what: str, ident: int) -> None:
        heapq.heappush(self._timers, (when, next(self._ids), what, ident))

    def _fire_timers(self, now: float) -> None:
        while self._timers and self._timers[0][0] <= now:
            when, _, what, ident = heapq.heappop(self._timers)
            if what == "end":
                self._job_end(ident, now)
                continue
            conn = self.conns.get(ident)
            if conn is None or conn.deadline is None or conn.deadline > when:
                continue
            if conn.state == "reading":
                self.counters["timeouts"] += 1
                self._refuse(conn, "timeout", f"no request line within "
                             f"{self.cfg.request_timeout_s:g} s", now)
            elif conn.state == "closing":
                self._close(conn)

    # -- connections -------------------------------------------------------------------
    def _accept(self, now: float) -> None:
        assert self._sel is not None
        for _ in range(64):
            try:
                sock, peer = self._listen.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                LOG.warning("accept failed: %s", e)
                return
            sock.setblocking(False)
            self.counters["connections"] += 1
            if len(self.conns) >= self._max_conns:
                self.counters["overloaded"] += 1
                try:
                    sock.send(error_reply(self.cfg.gw, "overloaded"))
                except OSError:
                    pass
                sock.close()
                continue
            conn = _Conn(next(self._ids), sock, peer, now + self.cfg.request_timeout_s)
            self.conns[conn.id] = conn
            self._sel.register(sock, selectors.EVENT_READ, conn)
            self._timer(conn.deadline, "deadline", conn.id)  # type: ignore[arg-type]

    def _readable(self, conn: _Conn, now: float) -> None:
        try:
            data = conn.sock.recv(READ_CHUNK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._client_gone(conn, now)
            return
        if conn.state != "reading":
            return  # one request per connection: later bytes are ignored
        conn.buf += data
        nl = conn.buf.find(b"\n")
        if nl > MAX_REQUEST or (nl < 0 and len(conn.buf) > MAX_REQUEST):
            self.counters["bad_requests"] += 1
            self._refuse(conn, "too-long", f"no newline within {MAX_REQUEST} bytes", now)
        elif nl >= 0:
            self._request(conn, bytes(conn.buf[:nl]), now)

    def _request(self, conn: _Conn, raw: bytes, now: float) -> None:
        conn.buf.clear()
        try:
            req = parse_request(raw, self.cfg.services, self.offered)
        except RequestError as e:
            self.counters["bad_requests"] += 1
            self._refuse(conn, e.code, e.detail, now)
            return
        conn.req_id = req.id
        why = self.pool.check(req.units, req.kinds)
        if why is not None:
            self.counters["bad_requests"] += 1
            detail = (f"none of {', '.join(req.kinds)} offered here (offered: "
                      f"{', '.join(self.offered)})" if why == "no-kind" else
                      f"{req.units} units never fit (totals: {self.pool.totals})")
            self._refuse(conn, why, detail, now)
            return
        job = Job(next(self._ids), req.service, req.units, req.kinds, req.duration_s, now)
        outcome = self.pool.submit(job, now)
        if outcome == BUSY:
            self.counters["jobs_refused"] += 1
            self._refuse(conn, "busy", f"no free units and {len(self.pool.queue)} jobs "
                         "already queued", now)
            return
        conn.job, conn.deadline = job.id, None
        self.job_conn[job.id] = conn.id
        if outcome == QUEUED:
            self.counters["jobs_queued"] += 1
            conn.state = "queued"
        else:
            assert outcome == STARTED
            self._started([job])
        self._changed(now)

    def _started(self, jobs: list[Job]) -> None:
        for job in jobs:
            self.counters["jobs_started"] += 1
            self._timer(job.ends, "end", job.id)
            conn = self.conns.get(self.job_conn.get(job.id, -1))
            if conn is None:
                continue
            conn.state = "running"
            reply = {"ok": True, "gw": self.cfg.gw, "job": job.id, "service": job.service,
                     "kind": job.kind, "units": job.units, "duration_s": job.duration_s,
                     "queued_ms": round(job.queued_s * 1000.0, 3)}
            if conn.req_id is not None:
                reply["id"] = conn.req_id
            self._send(conn, line(reply))

    def _job_end(self, job_id: int, now: float) -> None:
        job = self.pool.running.get(job_id)
        if job is None:  # its client left earlier
            return
        started = self.pool.release(job_id, now)
        self.counters["jobs_served"] += 1
        conn = self.conns.get(self.job_conn.pop(job_id, -1))
        if conn is not None:
            done = {"done": True, "gw": self.cfg.gw, "job": job.id, "kind": job.kind,
                    "units": job.units, "run_ms": round((now - job.started) * 1000.0, 3)}
            if conn.req_id is not None:
                done["id"] = conn.req_id
            conn.job = None
            self._closing(conn, now)
            self._send(conn, line(done))
        self._started(started)
        self._changed(now)

    def _client_gone(self, conn: _Conn, now: float) -> None:
        if conn.job is not None:
            job_id, conn.job = conn.job, None
            self.job_conn.pop(job_id, None)
            if job_id in self.pool.running or job_id in self.pool.queue:
                self.counters["jobs_cancelled"] += 1
                self._started(self.pool.release(job_id, now))
                self._changed(now)
        self._close(conn)

    def _refuse(self, conn: _Conn, code: str, detail: str, now: float) -> None:
        self._closing(conn, now)
        self._send(conn, error_reply(self.cfg.gw, code, detail, conn.req_id))

    def _closing(self, conn: _Conn, now: float) -> None:
        conn.state, conn.deadline = "closing", now + FLUSH_TIMEOUT_S
        self._timer(conn.deadline, "deadline", conn.id)

    def _send(self, conn: _Conn, data: bytes) -> None:
        conn.out += data
        self._flush(conn)

    def _flush(self, conn: _Conn) -> None:
        assert self._sel is not None
        while conn.out:
            try:
                n = conn.sock.send(conn.out)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:  # peer gone; the read side reports it (or we are closing)
                conn.out.clear()
                break
            del conn.out[:n]
        if not conn.out and conn.state == "closing":
            self._close(conn)
            return
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if conn.out else 0)
        if self._sel.get_key(conn.sock).events != events:
            self._sel.modify(conn.sock, events, conn)

    def _close(self, conn: _Conn) -> None:
        if self.conns.pop(conn.id, None) is None:
            return
        assert self._sel is not None
        try:
            self._sel.unregister(conn.sock)
        except (KeyError, ValueError):
            pass
        conn.sock.close()

    # -- advertisements and state ------------------------------------------------------
    def _changed(self, now: float) -> None:
        self._dirty = True
        if significant_change(self._last_units, self.pool.snapshot(), self._last_queue,
                              len(self.pool.queue)):
            self._next_advert = min(self._next_advert,
                                    max(now, self._last_sent + self.cfg.min_gap_s))

    def advert(self, now: float) -> Advert:
        wait_ms = self.pool.advertised_wait(now) * 1000.0
        cfg = self.cfg
        return Advert(gw=cfg.gw, epoch=self.epoch, seq=self.seq, ts=time.time(),
                      interval=cfg.interval, units=self.pool.snapshot(),
                      util=round(self.pool.utilization(), 6), queue=len(self.pool.queue),
                      delay_ms=round(min(wait_ms, MAX_DELAY_MS), 3), price=cfg.price,
                      green=cfg.green, services=cfg.services, pue=cfg.pue,
                      operator=cfg.operator, jobs=self.counters["jobs_started"])

    def _advertise(self, now: float) -> None:
        adv = self.advert(now)
        self.seq += 1
        self._last_units, self._last_sent, self._last_queue = adv.units, now, adv.queue
        self._next_advert = now + self.cfg.interval
        self._dirty = True
        try:
            self._udp.sendto(encode_advert(adv, self.cfg.key),
                             (self.cfg.adv_addr, self.cfg.adv_port))
            self.counters["adverts_sent"] += 1
        except OSError as e:
            self.counters["advert_errors"] += 1
            if self.counters["advert_errors"] % 100 == 1:
                LOG.warning("advertisement to %s:%d failed (%s); %d failures so far",
                            self.cfg.adv_addr, self.cfg.adv_port, e,
                            self.counters["advert_errors"])

    def state(self, running: bool) -> dict[str, Any]:
        now = time.monotonic()
        return {
            "gw": self.cfg.gw, "pid": os.getpid(), "running": running, "updated": time.time(),
            "epoch": self.epoch, "next_seq": self.seq, "bind": self.cfg.bind,
            "service_port": self.service_port, "services": list(self.cfg.services),
            "units": {k: {"total": t, "free": f, "busy": t - f}
                      for k, (t, f) in self.pool.snapshot().items()},
            "util": self.pool.utilization(), "queue": len(self.pool.queue),
            "running_jobs": len(self.pool.running), "connections": len(self.conns),
            "delay_ms": min(self.pool.advertised_wait(now) * 1000.0, MAX_DELAY_MS),
            "counters": dict(self.counters),
        }

    def _write_state(self, running: bool) -> None:
        self._dirty = False
        path = self.cfg.state_file
        if not path:
            return
        tmp = f"{path}.tmp{os.getpid()}"
        try:
            with open(tmp, "w") as f:
                json.dump(self.state(running), f, indent=1, sort_keys=True)
            os.replace(tmp, path)
        except OSError as e:
            LOG.warning("cannot write state file %s: %s", path, e)
