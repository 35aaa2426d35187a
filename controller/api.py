"""The State API: a small HTTP/1.1 JSON server on loopback over the controller's state.

    server = ApiServer(provider, host="127.0.0.1", port=0)
    host, port = server.start()        # binds, serves from one daemon thread
    ...
    server.stop()                      # closes the socket and open connections, joins

Routes (docs/state-api.md has examples and every error code):
    GET  /api/v1                       the resource list
    GET  /api/v1/<resource>[?query]    provider.api_get(resource, query)
    PUT|POST /api/v1/policy            {"policy": "least-loaded" | "module:Class",
                                        "params": {...}} -> provider.api_set_policy

The provider is called from this server's connection threads, not from os-ken's: it must take
the controller's lock itself, hold it briefly, and return copies, not live structures (they are
serialised after the lock is released). It works unchanged under os-ken 4.2.2's default
"native" hub, which runs plain ``threading`` threads and patches nothing.

Defences: loopback only unless ``allow_remote``; the Host header must name loopback
(DNS-rebinding guard); per-request deadline (``request_timeout``, not just per read, so a
trickling client cannot pin a thread); at most ``max_connections`` connections (more get 503);
bounded request line, headers and body; a failing provider gives 500 and a logged traceback.
"""

from __future__ import annotations

import io
import ipaddress
import json
import logging
import socket
import socketserver
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlsplit

from common import strictjson

LOG = logging.getLogger("edwc.api")

API_PREFIX = "/api/v1"
RESOURCES = ("topology", "gateways", "services", "decisions", "counters", "links", "policy",
             "status")
WRITABLE = frozenset({"policy"})
QUERY_PARAMS: dict[str, frozenset[str]] = {"decisions": frozenset({"limit"})}
MAX_URL = 2048  # bytes of request target
MAX_REQUEST_LINE = MAX_URL + 64
MAX_HEAD = 32 * 1024  # request line + headers
MAX_BODY = 16 * 1024
MAX_LIMIT = 10_000
MAX_POLICY_SPEC = 200
MAX_REQUESTS_PER_CONNECTION = 100
POLL_SECONDS = 0.1  # how often the accept loop checks for stop(); bounds stop() latency
LINGER_SECONDS = 0.5  # after a response, drain unread input this long before closing
LINGER_BYTES = 256 * 1024
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})

_BUSY_BODY = b'{"error": "too many connections; retry shortly"}\n'
_BUSY = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
         b"Cache-Control: no-store\r\nRetry-After: 1\r\nConnection: close\r\n"
         b"Content-Length: %d\r\n\r\n" % len(_BUSY_BODY)) + _BUSY_BODY


class StateProvider(Protocol):
    def api_get(self, resource: str, query: dict[str, str]) -> object:
        """JSON-able state; raises KeyError for a resource it does not serve."""

    def api_set_policy(self, spec: str, params: dict) -> dict:
        """Switch policy; raises ValueError (message shown to the client) on a bad one."""


class ApiServerError(RuntimeError):
    """The server cannot start (bad address, port busy); the message says what to change."""


class HttpError(Exception):
    def __init__(self, status: int, message: str, headers: tuple = ()) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


# ---- pure request parsing ------------------------------------------------------------------
def parse_query(resource: str, query: str,
                allowed: dict[str, frozenset[str]] = QUERY_PARAMS) -> dict[str, str]:
    """Validate a query string for ``resource``; HttpError(400) names the problem."""
    if not query:
        return {}
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=True,
                          errors="strict", max_num_fields=16)
    except ValueError as e:
        raise HttpError(400, f"bad query string: {e}") from None
    ok = allowed.get(resource, frozenset())
    out: dict[str, str] = {}
    for k, v in pairs:
        if k not in ok:
            names = ", ".join(sorted(ok)) or "none"
            raise HttpError(400, f"unknown query parameter {k!r} for {API_PREFIX}/{resource} "
                                 f"(allowed: {names})")
        if k in out:
            raise HttpError(400, f"query parameter {k!r} given twice")
        out[k] = v
    if "limit" in out:
        v = out["limit"]
        if not (v.isascii() and v.isdigit() and len(v) <= 6 and 1 <= int(v) <= MAX_LIMIT):
            raise HttpError(400, f"limit must be an integer 1..{MAX_LIMIT}, got {v!r}")
        out["limit"] = str(int(v))
    return out


def parse_policy_body(body: bytes) -> tuple[str, dict]:
    """``{"policy": str, "params": {...}}`` -> (spec, params); HttpError(400) otherwise."""
    try:
        doc = strictjson.loads(body, where="body")
    except ValueError as e:
        raise HttpError(400, str(e)) from None
    if not isinstance(doc, dict):
        raise HttpError(400, 'body must be a JSON object {"policy": ..., "params": {...}}')
    unknown = sorted(set(doc) - {"policy", "params"})
    if unknown:
        raise HttpError(400, f"unknown key(s) {unknown}; expected 'policy' and optional "
                             f"'params'")
    spec = doc.get("policy")
    if not isinstance(spec, str) or not spec.strip():
        raise HttpError(400, "'policy' must be a non-empty string, e.g. \"least-loaded\" or "
                             "\"module:Class\"")
    if len(spec) > MAX_POLICY_SPEC or not spec.isprintable():
        raise HttpError(400, f"'policy' must be printable and at most {MAX_POLICY_SPEC} "
                             f"characters")
    params = doc.get("params", {})
    if not isinstance(params, dict):
        raise HttpError(400, "'params' must be a JSON object")
    return spec, params


def host_allowed(host_header: str | None) -> bool:
    """True for a missing Host or one naming loopback (with or without a port)."""
    if host_header is None:
        return True
    h = host_header.strip().lower()
    if h.startswith("["):
        name = h[1:h.find("]")] if "]" in h else h
    else:
        name = h.rsplit(":", 1)[0] if h.count(":") == 1 else h
    if name in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


# ---- sockets -----------------------------------------------------------------------------
class _GuardedReader(io.RawIOBase):
    """Socket reads under one deadline and a byte budget per request (slow-loris guard)."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self.deadline = float("inf")
        self.budget = 0
        self.exhausted = False
        self.received = 0

    def arm(self, deadline: float, budget: int) -> None:
        self.deadline, self.budget, self.exhausted = deadline, budget, False
        self.received = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buf) -> int:
        if self.budget <= 0:
            self.exhausted = True
            return 0
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("request deadline passed")
        self._sock.settimeout(left)
        n = self._sock.recv_into(memoryview(buf)[:self.budget])
        self.budget -= n
        self.received += n
        return n


class _Writer:
    def __init__(self, sock: socket.socket, timeout: float) -> None:
        self._sock, self._timeout = sock, timeout

    def write(self, data: bytes) -> int:
        self._sock.settimeout(self._timeout)
        self._sock.sendall(data)
        return len(data)

    def flush(self) -> None:
        pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    default_request_version = "HTTP/1.0"  # so errors on a version-less line carry headers
    server_version = "edwc-state-api/1"

    def version_string(self) -> str:
        return self.server_version
    server: _Server

    def setup(self) -> None:
        self.connection = self.request
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._reader = _GuardedReader(self.connection)
        self.rfile = io.BufferedReader(self._reader, 8192)
        self.wfile = _Writer(self.connection, self.server.api.request_timeout)
        self._served = 0

    def finish(self) -> None:
        self.rfile.close()

    def handle(self) -> None:
        self.close_connection = True
        while True:
            try:
                self.handle_one_request()
            except OSError as e:  # reset, broken pipe, timeout, or closed by stop()
                LOG.debug("state API: connection from %s ended: %s", self.client_address, e)
                return
            self._served += 1
            if self.close_connection or self.server.stopping:
                return

    def handle_one_request(self) -> None:
        api = self.server.api
        self._reader.arm(time.monotonic() + api.request_timeout, MAX_HEAD)
        self.command, self.request_version, self.requestline = "", "", ""
        try:
            line = self.rfile.readline(MAX_REQUEST_LINE + 1)
        except TimeoutError:  # a silent or idle keep-alive client is just closed
            if self._reader.received:
                self._timed_out()
            self.close_connection = True
            return
        if not line:
            self.close_connection = True
            return
        try:
            if len(line) > MAX_REQUEST_LINE:
                self.send_error(414, f"request line longer than {MAX_REQUEST_LINE} bytes")
                return
            if not line.endswith(b"\n"):  # EOF or budget in the middle of the line
                self.close_connection = True
                return
            self.raw_requestline = line
            if not self.parse_request():
                self.close_connection = True
                return
            if len(self.requestline.split()) < 3:
                self.send_error(400, "HTTP/0.9 requests are not supported")
                return
            if self._reader.exhausted:
                self.send_error(431, f"request head larger than {MAX_HEAD} bytes")
                return
            self._dispatch()
        except TimeoutError:
            self._timed_out()

    def _timed_out(self) -> None:
        try:
            self.send_error(408, f"request not complete within "
                                 f"{self.server.api.request_timeout:g} s")
        except OSError:
            pass
        self.close_connection = True

    def handle_expect_100(self) -> bool:
        length = self.headers.get("Content-Length", "")
        if length.isdigit() and int(length) > MAX_BODY:
            return True  # answer 413 straight away instead of inviting the body
        return super().handle_expect_100()

    # ---- routing ---------------------------------------------------------------------
    def _dispatch(self) -> None:
        try:
            status, payload = self._route()
            self._send_json(status, payload)
        except HttpError as e:
            self._send_json(e.status, {"error": e.message}, close=True, headers=e.headers)
        except OSError:
            raise
        except Exception:  # a bug here must cost one response, not the connection thread
            LOG.exception("state API: %s %s failed", self.command, self.path)
            self._send_json(500, {"error": "internal error; see the controller log"}, close=True)

    def _route(self) -> tuple[int, object]:
        api = self.server.api
        if len(self.path) > MAX_URL:
            raise HttpError(414, f"URL longer than {MAX_URL} bytes")
        try:
            url = urlsplit(self.path)
        except ValueError as e:
            raise HttpError(400, f"bad request target: {e}") from None
        path = url.path.rstrip("/") or "/"
        if path == API_PREFIX:
            resource = ""
        elif path.startswith(API_PREFIX + "/") and path[len(API_PREFIX) + 1:] in RESOURCES:
            resource = path[len(API_PREFIX) + 1:]
        else:
            raise HttpError(404, f"no such resource {path!r}; GET {API_PREFIX} lists them")
        methods = ("GET", "HEAD") + (("PUT", "POST") if resource in WRITABLE else ())
        if self.command not in methods:
            raise HttpError(405, f"{self.command} not allowed on {path}; use "
                                 f"{', '.join(methods)}", headers=(("Allow", ", ".join(methods)),))
        if not api.allow_remote and not host_allowed(self.headers.get("Host")):
            raise HttpError(403, f"Host {self.headers.get('Host')!r} is not a loopback name; "
                                 "the State API only answers requests addressed to localhost")
        if self.command in ("GET", "HEAD"):
            if self.headers.get("Content-Length", "0") != "0" or "Transfer-Encoding" in \
                    self.headers:
                self.close_connection = True  # a body we do not read: do not reuse the stream
            query = parse_query(resource, url.query, api.query_params)
            if not resource:
                return 200, index(api.query_params)
            return 200, self._call(resource, 400, api.provider.api_get, resource, query)
        spec, params = parse_policy_body(self._read_body())
        return 200, self._call(resource, 422, api.provider.api_set_policy, spec, params)

    def _read_body(self) -> bytes:
        if "Transfer-Encoding" in self.headers:
            raise HttpError(411, "chunked bodies are not supported; send Content-Length")
        lengths = self.headers.get_all("Content-Length") or []
        if not lengths:
            raise HttpError(411, "Content-Length required")
        if len(lengths) > 1 or not (lengths[0].isascii() and lengths[0].isdigit()):
            raise HttpError(400, f"bad Content-Length {lengths!r}")
        n = int(lengths[0])
        if n > MAX_BODY:
            raise HttpError(413, f"body of {n} bytes is over the {MAX_BODY}-byte limit")
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if ctype != "application/json":
            raise HttpError(415, f"Content-Type must be application/json, got {ctype!r}")
        self._reader.budget += n
        body = self.rfile.read(n)
        if len(body) != n:
            raise ConnectionError("client closed the connection inside the body")
        return body

    def _call(self, resource: str, value_error_status: int, fn, *args) -> object:
        try:
            return fn(*args)
        except KeyError:
            raise HttpError(404, f"resource {resource!r} is not available") from None
        except ValueError as e:
            raise HttpError(value_error_status, str(e) or type(e).__name__) from None
        except Exception:
            LOG.exception("state API: %s %s failed in the provider", self.command, self.path)
            raise HttpError(500, "internal error; see the controller log") from None

    # ---- responses -------------------------------------------------------------------
    def _send_json(self, status: int, payload: object, close: bool = False,
                   headers: tuple = ()) -> None:
        try:
            body = (json.dumps(payload, allow_nan=False, separators=(",", ":")) + "\n").encode()
        except (TypeError, ValueError):
            LOG.exception("state API: %s %s returned a value that is not JSON-able",
                          self.command, self.path)
            status, close = 500, True
            body = b'{"error":"internal error; see the controller log"}\n'
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        for k, v in headers:
            self.send_header(k, v)
        if close or self.close_connection or self._served + 1 >= MAX_REQUESTS_PER_CONNECTION:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def send_error(self, code: int, message: str | None = None,
                   explain: str | None = None) -> None:
        self._send_json(int(code), {"error": message or HTTPStatus(code).phrase}, close=True)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (stdlib name)
        LOG.debug("state API %s: %s", self.client_address[0], format % args)


def index(query_params: dict[str, frozenset[str]] = QUERY_PARAMS) -> dict:
    return {"api": "edwc-state", "version": 1,
            "resources": {r: {"path": f"{API_PREFIX}/{r}",
                              "methods": ["GET", "PUT", "POST"] if r in WRITABLE else ["GET"],
                              "query": sorted(query_params.get(r, ()))}
                          for r in RESOURCES}}


def _linger_close(sock: socket.socket) -> None:
    """Half-close, then discard what the client still sends for a moment before closing.

    Closing with unread input makes the kernel send a reset, which can destroy an error
    response (413, 414) before the client has read it.
    """
    try:
        sock.shutdown(socket.SHUT_WR)
        deadline = time.monotonic() + LINGER_SECONDS
        drained = 0
        while drained < LINGER_BYTES:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            sock.settimeout(left)
            data = sock.recv(8192)
            if not data:
                break
            drained += len(data)
    except OSError:
        pass
    finally:
        sock.close()


class _Server(socketserver.TCPServer):
    allow_reuse_address = True
    request_queue_size = 64

    def __init__(self, addr: tuple, family: int, api: ApiServer) -> None:
        self.address_family = family
        self.api = api
        self.stopping = False
        self._slots = threading.BoundedSemaphore(api.max_connections)
        self._conns: dict[socket.socket, threading.Thread] = {}
        self._conns_lock = threading.Lock()
        super().__init__(addr, _Handler)

    def process_request(self, request, client_address) -> None:
        if self.stopping or not self._slots.acquire(blocking=False):
            LOG.warning("state API: refusing %s: %d connections open", client_address,
                        self.api.max_connections)
            try:
                request.settimeout(0.2)
                request.sendall(_BUSY)
            except OSError:
                pass
            self.shutdown_request(request)
            return
        t = threading.Thread(target=self._serve, args=(request, client_address),
                             name="state-api-conn", daemon=True)
        with self._conns_lock:
            self._conns[request] = t
        t.start()

    def _serve(self, request, client_address) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:
            self.handle_error(request, client_address)
        finally:
            _linger_close(request)
            with self._conns_lock:
                self._conns.pop(request, None)
            self._slots.release()

    def handle_error(self, request, client_address) -> None:
        LOG.exception("state API: connection from %s failed", client_address)

    def close_connections(self) -> list[threading.Thread]:
        with self._conns_lock:
            conns = dict(self._conns)
        for sock in conns:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        return list(conns.values())


class ApiServer:
    """The State API server; ``start()`` returns the bound (host, port)."""

    def __init__(self, provider: StateProvider, host: str = "127.0.0.1", port: int = 0, *,
                 allow_remote: bool = False, request_timeout: float = 5.0,
                 max_connections: int = 32,
                 query_params: dict[str, frozenset[str]] | None = None) -> None:
        if not isinstance(port, int) or not 0 <= port <= 65535:
            raise ValueError(f"State API port must be 0..65535 (0 picks a free one), got {port!r}")
        try:
            addr = ipaddress.ip_address("127.0.0.1" if host == "localhost" else host)
        except ValueError:
            raise ValueError(f"State API host must be an IP address or 'localhost', "
                             f"got {host!r}") from None
        if not addr.is_loopback and not allow_remote:
            raise ValueError(f"refusing to serve the State API on non-loopback address {host}: "
                             "it has no authentication. Use 127.0.0.1, or pass "
                             "allow_remote=True if you really mean it")
        if not request_timeout > 0 or not max_connections >= 1:
            raise ValueError("request_timeout must be > 0 and max_connections >= 1")
        self.provider = provider
        self.host = str(addr)
        self.port = port
        self.family = socket.AF_INET6 if addr.version == 6 else socket.AF_INET
        self.allow_remote = allow_remote
        self.request_timeout = float(request_timeout)
        self.max_connections = max_connections
        self.query_params = dict(QUERY_PARAMS if query_params is None else query_params)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> tuple[str, int] | None:
        if self._server is None:
            return None
        return self.host, self._server.server_address[1]

    def start(self) -> tuple[str, int]:
        if self._server is not None:
            raise ApiServerError("State API server already started")
        try:
            self._server = _Server((self.host, self.port), self.family, self)
        except OSError as e:
            raise ApiServerError(f"State API cannot listen on {self.host}:{self.port}: "
                                 f"{e.strerror or e}; pick another port (0 = any free)") from None
        self._thread = threading.Thread(target=self._server.serve_forever, args=(POLL_SECONDS,),
                                        name="state-api", daemon=True)
        self._thread.start()
        addr = self.address
        assert addr is not None
        LOG.info("State API listening on http://%s:%d%s", addr[0], addr[1], API_PREFIX)
        return addr

    def stop(self, timeout: float = 2.0) -> None:
        """Stop accepting, close the listening socket and every open connection; join."""
        srv, thread = self._server, self._thread
        if srv is None or thread is None:
            return
        srv.stopping = True
        srv.shutdown()
        srv.server_close()
        conns = srv.close_connections()
        deadline = time.monotonic() + timeout
        for t in [thread, *conns]:
            t.join(max(0.0, deadline - time.monotonic()))
        self._server = self._thread = None
        LOG.info("State API stopped")

    def __enter__(self) -> ApiServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
