"""The relay loop with stand-in sockets: what it queues, when it sends, what it counts.

No root: the sockets are objects with the AF_PACKET socket's ``recvmsg_into`` / ``send``
(and a pipe as ``fileno`` so select() works). The real sockets are covered by
tests/integration/test_delayline_netns.py.
"""

from __future__ import annotations

import json
import os
import socket
import struct
import threading
import time

import pytest

from emulation.delayline import FORMAT, Hop, HopModel, release_time
from emulation.delayline.relay import BATCH, SAMPLE_EVERY, TS_MAX_AGE, HopRelay, Relay
from emulation.delayline.sockets import MSG_TRUNC, PACKET_OUTGOING, SO_TIMESTAMPNS

PACKET_HOST = 0


def stamp(ts: float):
    sec = int(ts)
    return [(socket.SOL_SOCKET, SO_TIMESTAMPNS, struct.pack("=qq", sec, round((ts - sec) * 1e9)))]


class FakeIn:
    """Hands out queued frames like a non-blocking AF_PACKET socket; readable (for
    select) while frames are pending."""

    def __init__(self):
        self.frames: list[tuple[bytes, list, int, int]] = []
        self._r, self._w = os.pipe()
        os.set_blocking(self._r, False)
        self.reads = 0
        self._lock = threading.Lock()  # the loop may run in another thread

    def put(self, data: bytes, anc=None, flags: int = 0, pkttype: int = PACKET_HOST):
        with self._lock:
            if not self.frames:
                os.write(self._w, b"x")
            self.frames.append((data, anc or [], flags, pkttype))

    def fileno(self) -> int:
        return self._r

    def recvmsg_into(self, bufs, ancsize):
        with self._lock:
            if not self.frames:
                try:
                    os.read(self._r, 64)
                except BlockingIOError:
                    pass
                raise BlockingIOError
            self.reads += 1
            data, anc, flags, pkttype = self.frames.pop(0)
        bufs[0][:len(data)] = data
        return len(data), anc, flags, ("ifx", 3, pkttype, 1, b"")

    def close(self):
        os.close(self._r)
        os.close(self._w)


class FakeOut:
    def __init__(self, fail_on: set[int] = frozenset(), on_send=None):
        self.sent: list[tuple[float, bytes]] = []
        self.fail_on = fail_on
        self.on_send = on_send
        self.calls = 0

    def send(self, data: bytes) -> int:
        self.calls += 1
        if self.calls in self.fail_on:
            raise OSError("ENOBUFS")
        self.sent.append((time.time(), data))
        if self.on_send:
            self.on_send(self)
        return len(data)


def hop(**kw):
    h = {"id": "l:a>b", "in_if": "ra", "out_if": "rb", "delay_us": 2000}
    h.update(kw)
    return Hop(**h)


def hop_relay(h: Hop, seed: int = 1, index: int = 0) -> tuple[HopRelay, FakeIn, FakeOut]:
    st = HopRelay(h, index, seed)
    st.in_sock, st.out_sock = FakeIn(), FakeOut()
    return st, st.in_sock, st.out_sock


# ----------------------------------------------------------------- receive

def test_receive_queues_what_the_model_decides():
    """The loop's release times are those of release_time() with the hop's jitter stream."""
    h = hop(delay_us=3000, jitter_us=500, compensation_us=100, loss=0.25)
    st, fin, _ = hop_relay(h, seed=9, index=2)
    ref = HopModel.seeded(hop(delay_us=3000, jitter_us=500, compensation_us=100, loss=0.25),
                          9, 2)
    t0 = time.time()
    stamps = [t0 - 0.001 + i * 1e-5 for i in range(40)]
    for i, ts in enumerate(stamps):
        fin.put(b"frame%02d" % i, stamp(ts))
    st.receive(time.time())
    want = []
    for i, ts in enumerate(stamps):
        rel = ref.admit(ts)
        if rel is not None:
            ref.q.append((rel, b"frame%02d" % i))
            want.append((rel, b"frame%02d" % i))
    got = list(st.q)
    assert [f for _, f in got] == [f for _, f in want]
    assert [r for r, _ in got] == pytest.approx([r for r, _ in want], abs=1e-6)  # ns stamps
    assert st.packets_in == 40 and st.model.dropped_loss == ref.dropped_loss > 0
    assert st.stats()["dropped_loss"] == ref.dropped_loss
    assert st.max_queue == len(want) and st.ts_fallbacks == 0


def test_receive_goes_through_hopmodel_admit():
    calls = []

    class Spy(HopModel):
        __slots__ = ()

        def admit(self, rx_ts):
            calls.append(rx_ts)
            return super().admit(rx_ts)

    h = hop(delay_us=1000)
    st, fin, _ = hop_relay(h)
    st.model = Spy(h, None, None)
    st.q = st.model.q
    t = time.time()
    fin.put(b"a", stamp(t))
    fin.put(b"b", stamp(t + 1e-6))
    st.receive(time.time())
    assert calls == pytest.approx([t, t + 1e-6], abs=1e-6)
    assert [(r, f) for r, f in st.q] == [(release_time(c, h, 0, 0.0), f)
                                         for c, f in zip(calls, (b"a", b"b"))]


def test_receive_stamp_fallbacks_outgoing_and_truncated():
    st, fin, _ = hop_relay(hop(delay_us=0))
    t_wake = time.time()
    fin.put(b"old", stamp(t_wake - TS_MAX_AGE - 0.01))  # stale stamp: clock used
    fin.put(b"none")  # no stamp at all: clock used
    fin.put(b"mine", stamp(t_wake), pkttype=PACKET_OUTGOING)  # our own: skipped
    fin.put(b"big", stamp(t_wake), flags=MSG_TRUNC)  # did not fit the buffer: dropped
    fin.put(b"ok", stamp(t_wake - 0.001))
    before = time.time()
    st.receive(t_wake)
    assert st.ts_fallbacks == 2 and st.skipped_outgoing == 1 and st.dropped_trunc == 1
    assert st.packets_in == 4  # outgoing frames are not counted as received
    frames = dict((f, r) for r, f in st.q)
    assert set(frames) == {b"old", b"none", b"ok"}
    assert frames[b"old"] >= before and frames[b"none"] >= before
    # FIFO: "ok" was stamped before the fallbacks' clock but leaves after them
    assert frames[b"ok"] == max(frames.values())


def test_receive_reads_at_most_one_batch():
    st, fin, _ = hop_relay(hop())
    t = time.time()
    for i in range(BATCH + 10):
        fin.put(b"%d" % i, stamp(t))
    st.receive(t)
    assert fin.reads == BATCH and len(st.q) == BATCH
    st.receive(t)
    assert len(st.q) == BATCH + 10


# ----------------------------------------------------------------- the whole loop

class Loop:
    """Relay.run in a thread with stand-in sockets; ``stop()`` ends it."""

    def __init__(self, relay: Relay):
        self.relay = relay
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        relay._wake_r = self.wake_r
        self.thread = threading.Thread(target=relay.run, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def stop(self):
        self.relay.running = False
        os.write(self.wake_w, b"x")

    def join(self, timeout: float = 10) -> None:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "relay loop did not stop"

    def __exit__(self, *exc):
        self.stop()
        self.thread.join(5)
        os.close(self.wake_r)
        os.close(self.wake_w)


def test_run_sends_due_frames_in_order_with_counters_and_lateness_samples(tmp_path):
    relay = Relay([hop()], 1, str(tmp_path / "s.json"), str(tmp_path / "r"))
    st = relay.states[0]
    st.in_sock = FakeIn()
    loop = Loop(relay)
    st.out_sock = FakeOut(fail_on={3}, on_send=lambda out: len(out.sent) == 19 and loop.stop())
    now = time.time()
    for i in range(20):
        st.q.append((now - 1 + i * 1e-3, b"%02d" % i))
    st.q.append((now + 60, b"later"))
    with loop:
        loop.join()
    fout = st.out_sock
    assert [d for _, d in fout.sent] == [b"%02d" % i for i in range(20) if i != 2]
    assert st.packets_out == 19 and st.send_errors == 1
    assert st.bytes_out == 38 and [d for _, d in st.q] == [b"later"]
    # first frame, then whenever the frames sent so far in the burst are a multiple of
    # SAMPLE_EVERY (8); the failed send of frame 2 does not count: frames 0, 9 and 17
    assert SAMPLE_EVERY == 8
    assert st.late_n == 3 and st.late_i == 3
    assert all(0.9 < x < 2.0 for x in st.late[:3])
    st.in_sock.close()


def test_run_relays_with_the_configured_delay(tmp_path):
    """Every frame leaves at or after its release time, in order, and is counted."""
    relay = Relay([hop(delay_us=3000)], 1, str(tmp_path / "s.json"), str(tmp_path / "r"))
    st = relay.states[0]
    n = 30
    fin = FakeIn()
    loop = Loop(relay)
    st.in_sock = fin
    st.out_sock = FakeOut(on_send=lambda out: len(out.sent) == n and loop.stop())
    stamps = []
    with loop:
        for i in range(n):
            t = time.time()
            stamps.append(t)
            fin.put(b"%02d" % i, stamp(t))
            time.sleep(0.0005)
        loop.join()
    fin.close()
    sent = st.out_sock.sent
    assert [d for _, d in sent] == [b"%02d" % i for i in range(n)]
    for (sent_at, _), t in zip(sent, stamps):
        assert sent_at >= t + 0.003 - 1e-6  # never early
    assert st.packets_in == st.packets_out == n
    assert st.late_n >= 1


def test_reload_takes_the_new_compensation(tmp_path):
    h = hop(delay_us=2000)
    cfg = {"format": FORMAT, "seed": 1, "stats_path": str(tmp_path / "s.json"),
           "ready_path": str(tmp_path / "r"), "hops": [dict(h.to_json(), compensation_us=500)]}
    path = tmp_path / "c.json"
    path.write_text(json.dumps(cfg))
    relay = Relay([h], 1, cfg["stats_path"], cfg["ready_path"])
    relay.config_path = str(path)
    relay.reload_compensation()
    assert relay.reloads == 1 and h.compensation_us == 500
    assert relay.states[0].model.admit(10.0) == pytest.approx(10.0015)
    path.write_text("{broken")
    relay.reload_compensation()  # reported and ignored
    assert relay.reloads == 1 and h.compensation_us == 500
    relay.write_stats()
    st = json.loads((tmp_path / "s.json").read_text())
    assert st["hops"]["l:a>b"]["compensation_us"] == 500 and st["reloads"] == 1
