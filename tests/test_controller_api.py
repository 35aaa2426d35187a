"""The State API over real HTTP on loopback, against a fake provider."""

from __future__ import annotations

import http.client
import json
import logging
import socket
import threading
import time

import pytest

from controller.api import (
    MAX_BODY,
    RESOURCES,
    ApiServer,
    ApiServerError,
    HttpError,
    host_allowed,
    parse_policy_body,
    parse_query,
)

TIMEOUT = 5.0  # client-side socket timeout: a hang fails the test instead of blocking it


class FakeProvider:
    def __init__(self) -> None:
        self.calls: list[tuple] = []
        self.lock = threading.Lock()
        self.policy = "least-loaded"
        self.slow = 0.0

    def api_get(self, resource: str, query: dict[str, str]) -> object:
        with self.lock:
            self.calls.append(("get", resource, dict(query)))
        if resource == "links":
            raise KeyError(resource)  # not served by this provider
        if resource == "counters":
            raise RuntimeError("provider bug")
        if resource == "services":
            return {"bad": float("nan")}  # not JSON-able
        if resource == "gateways":
            raise ValueError("no gateways configured")
        if resource == "status" and self.slow:
            time.sleep(self.slow)
        if resource == "decisions":
            return [{"i": i} for i in range(int(query.get("limit", "3")))]
        return {"resource": resource, "query": query, "policy": self.policy}

    def api_set_policy(self, spec: str, params: dict) -> dict:
        with self.lock:
            self.calls.append(("set", spec, params))
        if spec == "nope":
            raise ValueError("unknown policy 'nope'; available: least-loaded, lowest-latency")
        if spec == "crash":
            raise ZeroDivisionError("oops")
        self.policy = spec
        return {"policy": spec, "params": params}


@pytest.fixture
def provider():
    return FakeProvider()


@pytest.fixture
def server(provider):
    srv = ApiServer(provider, request_timeout=1.0, max_connections=8)
    srv.start()
    yield srv
    srv.stop()


def request(srv, method, path, body=None, headers=None):
    host, port = srv.address
    conn = http.client.HTTPConnection(host, port, timeout=TIMEOUT)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, dict(resp.getheaders()), (json.loads(data) if data else None)
    finally:
        conn.close()


def put_policy(srv, doc, ctype="application/json", method="PUT"):
    body = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
    return request(srv, method, "/api/v1/policy", body, {"Content-Type": ctype})


def connect(srv) -> socket.socket:
    s = socket.create_connection(srv.address, timeout=TIMEOUT)
    return s


def read_all(s: socket.socket) -> bytes:
    out = b""
    while True:
        try:
            chunk = s.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        out += chunk
    return out


def read_response(s: socket.socket) -> bytes:
    """One keep-alive response: the head, then Content-Length bytes of body."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        assert chunk, f"closed after {data!r}"
        data += chunk
    length = parse_response(data.split(b"\r\n\r\n")[0] + b"\r\n\r\n")[1]["content-length"]
    while len(data.split(b"\r\n\r\n", 1)[1]) < int(length):
        data += s.recv(65536)
    return data


def raw(srv, data: bytes) -> tuple[int, dict, dict | None]:
    """Send bytes, read until the server closes; parse one response."""
    with connect(srv) as s:
        s.sendall(data)
        return parse_response(read_all(s))


def parse_response(data: bytes) -> tuple[int, dict, dict | None]:
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, v in (ln.split(":", 1) for ln in lines[1:])}
    return status, headers, (json.loads(body) if body else None)


# ---- routes ----------------------------------------------------------------------------
@pytest.mark.parametrize("resource", ["topology", "decisions", "policy", "status"])
def test_get_resources(server, provider, resource):
    status, headers, doc = request(server, "GET", f"/api/v1/{resource}")
    assert status == 200
    assert headers["Content-Type"] == "application/json"
    assert headers["Cache-Control"] == "no-store"
    assert provider.calls == [("get", resource, {})]
    if resource == "decisions":
        assert doc == [{"i": 0}, {"i": 1}, {"i": 2}]
    else:
        assert doc == {"resource": resource, "query": {}, "policy": "least-loaded"}


def test_index(server):
    for path in ("/api/v1", "/api/v1/"):
        status, _, doc = request(server, "GET", path)
        assert status == 200 and doc["version"] == 1
        assert sorted(doc["resources"]) == sorted(RESOURCES)
        assert doc["resources"]["policy"]["methods"] == ["GET", "PUT", "POST"]
        assert doc["resources"]["decisions"]["query"] == ["limit"]


def test_head_has_no_body(server):
    host, port = server.address
    conn = http.client.HTTPConnection(host, port, timeout=TIMEOUT)
    conn.request("HEAD", "/api/v1/topology")
    resp = conn.getresponse()
    assert resp.status == 200 and int(resp.getheader("Content-Length")) > 10
    assert resp.read() == b""
    conn.close()


def test_keep_alive_serves_several_requests_on_one_connection(server):
    host, port = server.address
    conn = http.client.HTTPConnection(host, port, timeout=TIMEOUT)
    conn.request("GET", "/api/v1/topology")
    r1 = conn.getresponse()
    r1.read()
    sock = conn.sock
    conn.request("GET", "/api/v1/decisions?limit=2")
    r2 = conn.getresponse()
    assert r1.status == 200 and r2.status == 200 and len(json.loads(r2.read())) == 2
    assert conn.sock is sock  # not reconnected
    conn.close()


def test_query_limit(server, provider):
    status, _, doc = request(server, "GET", "/api/v1/decisions?limit=007")
    assert status == 200 and len(doc) == 7
    assert provider.calls[-1] == ("get", "decisions", {"limit": "7"})
    for bad in ("0", "-1", "abc", "1.5", "", "10001", "%EF%BC%91"):
        status, _, doc = request(server, "GET", f"/api/v1/decisions?limit={bad}")
        assert status == 400 and "limit must be an integer 1..10000" in doc["error"], bad
    status, _, doc = request(server, "GET", "/api/v1/decisions?limit=1&limit=2")
    assert status == 400 and "given twice" in doc["error"]
    status, _, doc = request(server, "GET", "/api/v1/topology?limit=3")
    assert status == 400 and "unknown query parameter 'limit'" in doc["error"]
    assert "allowed: none" in doc["error"]
    status, _, doc = request(server, "GET", "/api/v1/decisions?limit")
    assert status == 400 and "bad query string" in doc["error"]
    assert len(provider.calls) == 1  # the provider never saw a bad query


def test_not_found(server):
    for path in ("/", "/api/v2/topology", "/api/v1/nope", "/api/v1/topology/x",
                 "/api/v1/%74opology", "/api/v1topology"):
        status, headers, doc = request(server, "GET", path)
        assert status == 404 and "GET /api/v1 lists them" in doc["error"], path
        assert headers["Content-Type"] == "application/json"


def test_provider_key_error_is_404(server):
    status, _, doc = request(server, "GET", "/api/v1/links")
    assert status == 404 and doc == {"error": "resource 'links' is not available"}


def test_method_not_allowed(server):
    for method, path in (("DELETE", "/api/v1/topology"), ("PUT", "/api/v1/status"),
                         ("POST", "/api/v1"), ("FROB", "/api/v1/topology")):
        status, headers, doc = request(server, method, path, body=b"")
        assert status == 405, (method, path)
        assert headers["Allow"] == "GET, HEAD"
        assert f"{method} not allowed" in doc["error"]
    status, headers, _ = request(server, "PATCH", "/api/v1/policy", body=b"{}")
    assert status == 405 and headers["Allow"] == "GET, HEAD, PUT, POST"


def test_unknown_path_wins_over_bad_method(server):
    status, _, _ = request(server, "DELETE", "/nowhere")
    assert status == 404


# ---- policy writes ---------------------------------------------------------------------
def test_set_policy(server, provider):
    status, _, doc = put_policy(server, {"policy": "lowest-latency", "params": {"w": 0.5}})
    assert status == 200 and doc == {"policy": "lowest-latency", "params": {"w": 0.5}}
    status, _, doc = put_policy(server, {"policy": "plugins.green:Green"}, method="POST",
                                ctype="application/json; charset=utf-8")
    assert status == 200 and doc == {"policy": "plugins.green:Green", "params": {}}
    assert provider.calls == [("set", "lowest-latency", {"w": 0.5}),
                              ("set", "plugins.green:Green", {})]
    assert request(server, "GET", "/api/v1/policy")[2]["policy"] == "plugins.green:Green"


@pytest.mark.parametrize("body, match", [
    (b"{not json", "not valid JSON"),
    (b"[1, 2]", "must be a JSON object"),
    (b'{"policy": "x", "extra": 1}', "unknown key"),
    (b'{"params": {}}', "'policy' must be a non-empty string"),
    (b'{"policy": ""}', "'policy' must be a non-empty string"),
    (b'{"policy": 3}', "'policy' must be a non-empty string"),
    (b'{"policy": "a\\nb"}', "printable"),
    (b'{"policy": "x", "params": [1]}', "'params' must be a JSON object"),
    (b'{"policy": "x", "params": {"w": NaN}}', "NaN is not allowed"),
    (b'{"policy": "x", "policy": "y"}', "policy: duplicate JSON key"),
    (b"[" * 5000 + b"]" * 5000, "nested too deeply|not valid JSON"),
    (b'{"policy": "\xff"}', "not valid UTF-8"),
    (b"", "not valid JSON"),
])
def test_bad_policy_bodies(server, provider, body, match):
    status, _, doc = put_policy(server, body)
    assert status == 400
    assert __import__("re").search(match, doc["error"]), doc
    assert provider.calls == []


def test_policy_needs_json_content_type(server, provider):
    status, _, doc = put_policy(server, {"policy": "x"}, ctype="text/plain")
    assert status == 415 and "application/json" in doc["error"]
    status, _, doc = raw(server, b"PUT /api/v1/policy HTTP/1.1\r\nHost: localhost\r\n"
                                 b"Content-Length: 2\r\n\r\n{}")
    assert status == 415
    assert provider.calls == []


def test_policy_rejected_by_provider_is_422(server):
    status, _, doc = put_policy(server, {"policy": "nope"})
    assert status == 422
    assert doc == {"error": "unknown policy 'nope'; available: least-loaded, lowest-latency"}


def test_provider_crash_is_500_and_logged(server, caplog):
    with caplog.at_level(logging.ERROR, logger="edwc.api"):
        status, _, doc = put_policy(server, {"policy": "crash"})
        assert status == 500 and "see the controller log" in doc["error"]
        status, _, _ = request(server, "GET", "/api/v1/counters")
        assert status == 500
    tracebacks = [r for r in caplog.records if r.exc_info]
    assert any(r.exc_info[0] is ZeroDivisionError for r in tracebacks)
    assert any(r.exc_info[0] is RuntimeError for r in tracebacks)
    assert request(server, "GET", "/api/v1/topology")[0] == 200  # still serving


def test_non_json_result_is_500(server, caplog):
    with caplog.at_level(logging.ERROR, logger="edwc.api"):
        status, _, doc = request(server, "GET", "/api/v1/services")
    assert status == 500 and "error" in doc
    assert any("not JSON-able" in r.getMessage() for r in caplog.records)


def test_provider_value_error_on_get_is_400(server):
    status, _, doc = request(server, "GET", "/api/v1/gateways")
    assert status == 400 and doc == {"error": "no gateways configured"}


def test_missing_or_bad_content_length(server):
    head = b"PUT /api/v1/policy HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
    status, _, doc = raw(server, head + b"\r\n")
    assert status == 411 and "Content-Length required" in doc["error"]
    status, _, doc = raw(server, head + b"Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n")
    assert status == 411 and "chunked" in doc["error"]
    status, _, doc = raw(server, head + b"Content-Length: 2x\r\n\r\n{}")
    assert status == 400 and "bad Content-Length" in doc["error"]
    status, _, doc = raw(server, head + b"Content-Length: 2\r\nContent-Length: 2\r\n\r\n{}")
    assert status == 400


# ---- limits ----------------------------------------------------------------------------
def test_oversized_body_is_refused_without_reading_it(server, provider):
    head = (b"PUT /api/v1/policy HTTP/1.1\r\nHost: localhost\r\n"
            b"Content-Type: application/json\r\nContent-Length: 100000000\r\n\r\n")
    with connect(server) as s:
        t0 = time.monotonic()
        s.sendall(head + b"{")  # 100 MB announced, 1 byte sent: the answer must not wait
        status, headers, doc = parse_response(read_all(s))
        assert time.monotonic() - t0 < 0.9  # well inside the 1 s request timeout
    assert status == 413 and "over the 16384-byte limit" in doc["error"]
    assert headers["connection"] == "close"
    big = json.dumps({"policy": "x", "params": {"pad": "y" * MAX_BODY}}).encode()
    status, _, _ = put_policy(server, big)
    assert status == 413
    assert provider.calls == []
    ok = json.dumps({"policy": "x", "params": {"pad": "y" * (MAX_BODY - 100)}}).encode()
    assert len(ok) <= MAX_BODY and put_policy(server, ok)[0] == 200


def test_expect_continue(server):
    head = (b"PUT /api/v1/policy HTTP/1.1\r\nHost: localhost\r\nExpect: 100-continue\r\n"
            b"Content-Type: application/json\r\n")
    with connect(server) as s:
        s.sendall(head + b"Content-Length: 50000\r\n\r\n")
        status, _, _ = parse_response(read_all(s))
    assert status == 413  # no 100 Continue first
    body = b'{"policy": "least-loaded"}'
    with connect(server) as s:
        s.sendall(head + b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body))
        first = s.recv(100)
        assert first.startswith(b"HTTP/1.1 100 Continue\r\n")
        s.sendall(body)
        rest = read_all(s)
    final = (first + rest).split(b"\r\n\r\n", 1)[1]
    assert parse_response(final)[0] == 200


def test_long_urls(server):
    status, _, doc = raw(server, b"GET /api/v1/" + b"a" * 3000 + b" HTTP/1.1\r\n\r\n")
    assert status == 414
    status, _, _ = raw(server, b"GET /" + b"a" * 200_000 + b" HTTP/1.1\r\n\r\n")
    assert status == 414
    status, _, _ = request(server, "GET", "/api/v1/" + "a" * 2030)  # 2038 bytes: just fits
    assert status == 404
    status, _, _ = request(server, "GET", "/api/v1/" + "a" * 2041)  # 2049 bytes
    assert status == 414


def test_huge_headers_are_431(server):
    headers = b"".join(b"X-Pad-%d: %s\r\n" % (i, b"p" * 1000) for i in range(40))
    status, _, doc = raw(server, b"GET /api/v1/topology HTTP/1.1\r\n" + headers + b"\r\n")
    assert status == 431


@pytest.mark.parametrize("line, expected", [
    (b"\x00\x01\x02 garbage\r\n\r\n", 400),
    (b"GET\r\n\r\n", 400),
    (b"GET /api/v1 HTTP/1.1 extra\r\n\r\n", 400),
    (b"GET /api/v1 HTTX/1.1\r\n\r\n", 400),
    (b"GET /api/v1 HTTP/2.0\r\n\r\n", 505),
    (b"GET /api/v1\r\n\r\n", 400),  # HTTP/0.9
    (b"\xff\xfe\xfd /api/v1 HTTP/1.1\r\n\r\n", 405),
    (b"GET http://[oops/api/v1 HTTP/1.1\r\n\r\n", 400),
])
def test_garbage_request_lines(server, line, expected):
    status, headers, doc = raw(server, line)
    assert status == expected and "error" in doc
    assert headers["content-type"] == "application/json"
    assert request(server, "GET", "/api/v1")[0] == 200  # the server survived


def test_blank_and_truncated_requests_just_close(server):
    for data in (b"\r\n", b"GET /api/v1 HT"):
        with connect(server) as s:
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
            assert read_all(s) == b""


def test_host_header_guard(server):
    status, _, doc = request(server, "GET", "/api/v1/topology", headers={"Host": "evil.test"})
    assert status == 403 and "not a loopback name" in doc["error"]
    for host in ("localhost:8080", "127.0.0.1", "[::1]:1", "LOCALHOST", "127.3.4.5:9"):
        assert request(server, "GET", "/api/v1/topology", headers={"Host": host})[0] == 200, host


def test_host_allowed_helper():
    assert host_allowed(None) and host_allowed("localhost") and host_allowed("[::1]")
    assert not host_allowed("10.0.0.1:80") and not host_allowed("localhost.evil.test")
    assert not host_allowed("[::2]:80") and not host_allowed("")


# ---- timeouts, concurrency, connection cap ----------------------------------------------
def test_slow_client_does_not_block_others(server):
    slow = connect(server)
    slow.sendall(b"GET /api/v1/status HTTP/1.1\r\n")  # and then nothing
    trickle = connect(server)
    stop = threading.Event()

    def drip():  # a byte every 0.1 s: each read is quick, the request never completes
        for b in b"GET /api/v1/status HTTP/1.1\r\nX-Slow: " + b"z" * 100:
            if stop.wait(0.1):
                return
            try:
                trickle.send(bytes([b]))
            except OSError:
                return
    t = threading.Thread(target=drip, daemon=True)
    t.start()
    try:
        t0 = time.monotonic()
        for _ in range(20):
            assert request(server, "GET", "/api/v1/topology")[0] == 200
        assert time.monotonic() - t0 < 0.8  # 20 requests while two clients stall
        for s in (slow, trickle):  # both cut at the 1 s request deadline with a 408
            status, _, doc = parse_response(read_all(s))
            assert status == 408 and "within 1 s" in doc["error"]
        assert time.monotonic() - t0 < 2.5
    finally:
        stop.set()
        slow.close()
        trickle.close()


def test_idle_keep_alive_is_closed_after_the_timeout(server):
    with connect(server) as s:
        s.sendall(b"GET /api/v1 HTTP/1.1\r\nHost: localhost\r\n\r\n")
        t0 = time.monotonic()
        data = read_all(s)  # the response, then EOF when the idle timeout closes it
        assert parse_response(data)[0] == 200
        assert 0.8 < time.monotonic() - t0 < 2.5


def test_concurrent_requests(server, provider):
    provider.slow = 0.3
    results: list[int] = []
    lock = threading.Lock()

    def worker():
        st = request(server, "GET", "/api/v1/status")[0]
        with lock:
            results.append(st)
    threads = [threading.Thread(target=worker) for _ in range(6)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(TIMEOUT)
    elapsed = time.monotonic() - t0
    assert results == [200] * 6
    assert elapsed < 1.2  # 6 x 0.3 s = 1.8 s if they were served one at a time


def test_many_clients_many_requests(server, provider):
    errors: list[str] = []

    def worker(n):
        for i in range(10):
            st, _, doc = request(server, "GET", f"/api/v1/decisions?limit={n + i + 1}")
            if st != 200 or len(doc) != n + i + 1:
                errors.append(f"{n}/{i}: {st}")
    threads = [threading.Thread(target=worker, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(TIMEOUT * 2)
    assert errors == [] and len(provider.calls) == 60


def _wait_until(cond, timeout=3.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.01)
    return False


def test_connection_cap(provider):
    srv = ApiServer(provider, max_connections=2, request_timeout=3.0)
    srv.start()
    held = []
    try:
        for _ in range(2):
            held.append(connect(srv))
        assert _wait_until(lambda: len(srv._server._conns) == 2)
        with connect(srv) as s:
            status, headers, doc = parse_response(read_all(s))
        assert status == 503 and headers["retry-after"] == "1" and "too many" in doc["error"]
        held.pop().close()
        assert _wait_until(lambda: len(srv._server._conns) < 2)
        assert request(srv, "GET", "/api/v1")[0] == 200
    finally:
        for s in held:
            s.close()
        srv.stop()


# ---- lifecycle ---------------------------------------------------------------------------
def test_stop_releases_the_port_and_closes_connections(provider):
    srv = ApiServer(provider, request_timeout=30.0)
    host, port = srv.start()
    assert host == "127.0.0.1" and port > 0
    idle = connect(srv)
    idle.sendall(b"GET /api/v1 HTTP/1.1\r\nHost: localhost\r\n\r\n")
    assert parse_response(read_response(idle))[0] == 200  # and it stays open (keep-alive)
    t0 = time.monotonic()
    srv.stop()
    assert time.monotonic() - t0 < 1.0
    assert srv.address is None
    assert read_all(idle) == b""  # closed by stop, not by the 30 s timeout
    idle.close()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((host, port), timeout=TIMEOUT)
    again = ApiServer(provider, port=port)
    assert again.start() == (host, port)
    try:
        assert request(again, "GET", "/api/v1")[0] == 200
    finally:
        again.stop()
    again.stop()  # idempotent


def test_context_manager_and_double_start(provider):
    with ApiServer(provider) as srv:
        assert request(srv, "GET", "/api/v1")[0] == 200
        with pytest.raises(ApiServerError, match="already started"):
            srv.start()
    assert srv.address is None


def test_busy_port_is_a_clear_error(provider, server):
    _, port = server.address
    with pytest.raises(ApiServerError, match=rf"cannot listen on 127.0.0.1:{port}.*pick another"):
        ApiServer(provider, port=port).start()


@pytest.mark.parametrize("host", ["0.0.0.0", "10.0.0.1", "::"])
def test_non_loopback_is_refused(provider, host):
    with pytest.raises(ValueError, match="refusing to serve the State API on non-loopback"):
        ApiServer(provider, host=host)


def test_bad_addresses(provider):
    with pytest.raises(ValueError, match="must be an IP address or 'localhost'"):
        ApiServer(provider, host="example.com")
    with pytest.raises(ValueError, match="port must be 0..65535"):
        ApiServer(provider, port=70000)
    with pytest.raises(ValueError, match="request_timeout"):
        ApiServer(provider, request_timeout=0)


def test_localhost_and_ipv6_loopback(provider):
    with ApiServer(provider, host="localhost") as srv:
        assert srv.address[0] == "127.0.0.1"
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        srv6 = ApiServer(provider, host="::1")
        srv6.start()
    except ApiServerError as e:
        pytest.skip(f"no IPv6 loopback: {e}")
    try:
        conn = http.client.HTTPConnection("::1", srv6.address[1], timeout=TIMEOUT)
        conn.request("GET", "/api/v1")
        assert conn.getresponse().status == 200
        conn.close()
    finally:
        srv6.stop()


def test_allow_remote_binds_anywhere(provider):
    with ApiServer(provider, host="0.0.0.0", allow_remote=True) as srv:
        status, _, _ = request(srv, "GET", "/api/v1/topology")
        assert status == 200


# ---- pure helpers ------------------------------------------------------------------------
def test_parse_helpers():
    assert parse_query("decisions", "limit=12") == {"limit": "12"}
    assert parse_query("topology", "") == {}
    assert parse_query("gateways", "site=x", {"gateways": frozenset({"site"})}) == {"site": "x"}
    with pytest.raises(HttpError) as e:
        parse_query("decisions", "&".join(f"limit{i}=1" for i in range(20)))
    assert e.value.status == 400
    assert parse_policy_body(b'{"policy": "least-loaded"}') == ("least-loaded", {})
    with pytest.raises(HttpError, match="'policy' must be printable and at most 200"):
        parse_policy_body(json.dumps({"policy": "x" * 201}).encode())


def test_runs_under_os_kens_native_hub(provider):
    """os-ken 4.2.2 defaults to the "native" hub: plain threads, nothing monkey-patched."""
    from os_ken.lib import hub

    assert hub.HUB_TYPE == "native" and hub.spawn is not None
    assert socket.socket.__module__ == "socket"  # not eventlet's green socket
    before = threading.active_count()
    srv = ApiServer(provider)
    srv.start()
    results: list[int] = []
    t = hub.spawn(lambda: results.append(request(srv, "GET", "/api/v1/status")[0]))
    t.wait(TIMEOUT)
    srv.stop()
    assert results == [200]
    assert _wait_until(lambda: threading.active_count() <= before)  # no threads left behind
