"""Constant-rate UDP stream between two hosts: traffic interruptions (fibre-cut failover) and
the one-way delay of every packet.

A sender in the source host's namespace sends `rate` packets per second on an absolute
schedule (packet k leaves at start + k / rate; sends that come late are recorded, never
accumulated); a receiver in the destination's namespace keeps (seq, tx_ns, rx_ns) of every
datagram, rx_ns being the kernel's receive stamp. Mininet hosts share one kernel clock, so
rx_ns - tx_ns is a true one-way delay. Programs, wire and file formats: probes.streamprog.

    python -m probes.stream recv --port P --out FILE [--lifetime S] [--session N]
    python -m probes.stream send --dst IP --port P --rate PPS --duration S [--size B]
        [--start-at UNIX_TS] [--warmup S] [--session N]

Warm-up: before the counted stream the sender sends `warmup_s` (default 0.2 s) of flagged
packets at the same rate; they prime ARP, the controller's flow rules and the delay line, and
the receiver only counts them. So the counted stream needs no "ignore the first 100 ms".

Analysis (probes.streamanalysis.analyze(), pure): t = 0 is the scheduled time of the first
counted packet; packet k is scheduled at k / rate. A packet is late when it arrives more
than late_ms (200 ms) after the stream's median one-way delay: as good as lost to an
application. (The emulated link of a cut holds the frames in flight, in the AF_XDP TX ring
or a queue, and delivers them when the link comes back, seconds late; a real fibre would
lose them.) A gap is a run of consecutive lost-or-late sequence numbers; its duration is
count / rate, in send time: the time the sender's traffic found no working path, independent
of the new path's delay. rx_gap_ms keeps the receiver's silence between the packets around
it, for reference. An event's interruption is the longest gap overlapping [t_cut - 0.5 s,
end], end = (t_restore or t_cut) + window_s, cut short 0.5 s before the next event; 0.0
means no packet was lost ("no loss"). Delay before = median one-way delay of the packets
sent in the second before the cut; after = over [t_cut + 0.5, t_cut + 1.5) s or, when no
packet sent then arrived, the second starting 0.5 s after the interruption ended (so the new
path's delay is measured).

From Python (every program started with host.popen, stopped by pid in close()):
    with StreamRun(emu, "east", "west", rate_pps=500, duration_s=8, port=6620) as run:
        run.mark_cut(); emu.cut_link("east", "mid"); ...; run.mark_restore()
        result = run.wait()  # or run.stop() to end early; events: the marks, or events=[...]
    timeline(result) -> {"t", "one_way_ms", "lost_t", "cuts"} for the fiber-cut plot
"""

from __future__ import annotations

import argparse
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time

from common import procs
from probes.owd import ProbeError
from probes.streamanalysis import EventResult, Gap, StreamResult, analyze, timeline
from probes.streamprog import StreamFormatError, read_records

DEFAULT_PORT = 6600

__all__ = ["Gap", "EventResult", "StreamResult", "StreamRun", "StreamFormatError",
           "ProbeError", "analyze", "timeline", "start_stream", "DEFAULT_PORT"]


# ---------------------------------------------------------------------------- orchestration

PROGRAM = "probes.stream"  # receiver and sender: this module's command line


def recv_args(port: int, out: str, lifetime_s: float, session: int = 0) -> list[str]:
    return ["recv", "--port", str(port), "--out", out,
            "--lifetime", f"{lifetime_s:g}", "--session", str(session)]


def send_args(dst_ip: str, port: int, rate_pps: float, duration_s: float, size: int = 64,
              warmup_s: float = 0.2, session: int = 0, start_at: float | None = None
              ) -> list[str]:
    cmd = ["send", "--dst", dst_ip, "--port", str(port),
           "--rate", f"{rate_pps:g}", "--duration", f"{duration_s:g}", "--size", str(size),
           "--warmup", f"{warmup_s:g}", "--session", str(session)]
    if start_at is not None:
        cmd += ["--start-at", f"{start_at:.6f}"]
    return cmd


def _host_map(hosts):
    """Mininet-host lookup from an Emulation (its .net), a Mininet net or a dict."""
    net = getattr(hosts, "net", None)
    if net is not None and hasattr(hosts, "plan"):
        return net
    return hosts


def _stderr_of(proc: subprocess.Popen) -> str:
    try:
        if proc.poll() is not None and proc.stderr is not None:
            return proc.stderr.read().decode(errors="replace").strip()[-300:]
    except (OSError, ValueError):
        pass
    return ""


class StreamRun:
    """One stream from `src` to `dst` (host names). start() launches the receiver, waits for
    its ready marker, launches the sender and waits for its ready line; wait() lets the
    stream finish, stop() ends it early; both return the StreamResult. Every process is
    stopped by pid (common.procs.stop_all) in close(), which a `with` block calls."""

    def __init__(self, hosts, src: str, dst: str, rate_pps: float, duration_s: float,
                 port: int = DEFAULT_PORT, *, size: int = 64, warmup_s: float = 0.2,
                 start_delay_s: float = 0.3, drain_s: float = 0.5, window_s: float = 5.0,
                 dst_ip: str | None = None, python: str | None = None,
                 ready_timeout_s: float = 15.0) -> None:
        from probes.streamprog import check_options

        if src == dst:
            raise ValueError(f"stream from {src} to itself: give two different hosts")
        if not 1 <= port <= 65535:
            raise ValueError(f"port {port} must be 1..65535")
        check_options(rate_pps, duration_s, size, warmup_s)
        net = _host_map(hosts)
        try:
            self._src, self._dst = net[src], net[dst]
        except KeyError as e:
            raise ValueError(f"unknown host {e.args[0]!r}: give Mininet host names") from None
        self.src, self.dst, self.port = src, dst, port
        self.rate_pps, self.duration_s, self.size = rate_pps, duration_s, size
        self.warmup_s, self.start_delay_s, self.drain_s = warmup_s, start_delay_s, drain_s
        self.window_s, self.python, self.ready_timeout_s = window_s, python, ready_timeout_s
        self.dst_ip = dst_ip or self._dst.IP()
        self.session = int.from_bytes(os.urandom(4), "big") or 1
        self.events: list[list] = []
        self.start_at: float | None = None
        self.result: StreamResult | None = None
        self._dir: str | None = None
        self._recv: subprocess.Popen | None = None
        self._send: subprocess.Popen | None = None
        self._send_out = b""

    # -- lifecycle -------------------------------------------------------------------------
    def __enter__(self) -> StreamRun:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def out(self) -> str:
        assert self._dir is not None
        return os.path.join(self._dir, "records.bin")

    def start(self) -> StreamRun:
        if self._recv is not None:
            raise ProbeError("this stream was already started")
        pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "python": self.python}
        self._dir = tempfile.mkdtemp(prefix=f"edwc-stream-{self.port}-")
        try:
            lifetime = (self.start_delay_s + self.warmup_s + self.duration_s
                        + self.ready_timeout_s * 2 + 60)
            self._recv = procs.start(PROGRAM, recv_args(self.port, self.out, lifetime,
                                                        self.session), host=self._dst, **pipes)
            self._wait_recv_ready(time.monotonic() + self.ready_timeout_s)
            self.start_at = time.time() + self.start_delay_s + self.warmup_s
            self._send = procs.start(PROGRAM, send_args(
                self.dst_ip, self.port, self.rate_pps, self.duration_s, self.size,
                self.warmup_s, self.session, self.start_at), host=self._src, **pipes)
            self._wait_send_ready(time.monotonic() + self.ready_timeout_s)
        except BaseException:
            self.close()
            raise
        return self

    def _wait_recv_ready(self, deadline: float) -> None:
        ready = self.out + ".ready"
        while not os.path.exists(ready):
            if self._recv.poll() is not None:
                raise ProbeError(f"the stream receiver on {self.dst} exited with status "
                                 f"{self._recv.returncode}: {_stderr_of(self._recv)}")
            if time.monotonic() > deadline:
                raise ProbeError(f"the stream receiver on {self.dst} did not become ready "
                                 f"within {self.ready_timeout_s:g} s")
            time.sleep(0.02)

    def _wait_send_ready(self, deadline: float) -> None:
        proc = self._send
        fd = proc.stdout.fileno()
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise ProbeError(f"the stream sender on {self.src} did not start within "
                                 f"{self.ready_timeout_s:g} s")
            chunk = None
            if select.select([fd], [], [], min(left, 0.2))[0]:
                # os.read, not readline: communicate() later reads the same pipe by fd
                chunk = os.read(fd, 65536)
                self._send_out += chunk
                line = self._send_out.split(b"\n", 1)[0]
                if b"\n" in self._send_out and line.startswith(b"{") and b'"ready"' in line:
                    self.start_at = json.loads(line)["start_at_ns"] / 1e9
                    return
            if chunk == b"" or (chunk is None and proc.poll() is not None):
                proc.wait(timeout=5)
                raise ProbeError(f"the stream sender on {self.src} exited with status "
                                 f"{proc.returncode} before starting: {_stderr_of(proc)}")

    def now(self) -> float:
        """Seconds since the stream's scheduled start (negative during the warm-up)."""
        if self.start_at is None:
            raise ProbeError("the stream has not started")
        return time.time() - self.start_at

    def mark_cut(self) -> float:
        t = self.now()
        self.events.append([t, None])
        return t

    def mark_restore(self) -> float:
        if not self.events or self.events[-1][1] is not None:
            raise ProbeError("mark_restore() without a preceding mark_cut()")
        self.events[-1][1] = t = self.now()
        return t

    def wait(self, timeout: float | None = None, events=None) -> StreamResult:
        """Let the sender finish (default timeout: the remaining duration + 30 s), then
        analyse. `events` default: those marked with mark_cut()/mark_restore()."""
        if self._send is None:
            raise ProbeError("the stream has not started")
        if timeout is None:
            timeout = max(0.0, -self.now()) + self.duration_s + 30.0
        try:
            out, err = self._send.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.close()
            raise ProbeError(f"the stream sender on {self.src} did not finish within "
                             f"{timeout:.0f} s") from None
        return self._finish(out, err, events)

    def stop(self, events=None) -> StreamResult:
        """End the stream now (SIGTERM to the sender, by pid) and analyse what was sent."""
        if self._send is None:
            raise ProbeError("the stream has not started")
        if self._send.poll() is None:
            self._send.terminate()
        try:
            out, err = self._send.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self.close()
            raise ProbeError(f"the stream sender on {self.src} ignored SIGTERM") from None
        return self._finish(out, err, events)

    def _finish(self, out: bytes, err: bytes, events) -> StreamResult:
        try:
            summary = None
            out = self._send_out + (out or b"")
            for line in reversed(out.decode(errors="replace").splitlines()):
                if line.startswith("{") and '"edwc-stream-send/1"' in line:
                    summary = json.loads(line)
                    break
            if summary is None:
                raise ProbeError(f"the stream sender on {self.src} failed (exit "
                                 f"{self._send.returncode}): "
                                 f"{(err or b'').decode(errors='replace').strip()[-300:]}")
            time.sleep(self.drain_s)  # packets still in flight on the path
            self._recv.terminate()
            try:
                self._recv.communicate(timeout=15)
            except subprocess.TimeoutExpired:
                raise ProbeError(f"the stream receiver on {self.dst} did not write its "
                                 "records within 15 s of SIGTERM") from None
            rec = read_records(self.out)
            evs = self.events if events is None else events
            self.result = analyze(summary["sent"], rec, self.rate_pps, evs,
                                  t0_ns=summary["start_at_ns"], window_s=self.window_s,
                                  sender=summary, receiver=rec.counters())
            return self.result
        finally:
            self.close()

    def close(self) -> None:
        """Stop both programs by pid (terminate, wait, kill) and remove the work files."""
        procs.stop_all([p for p in (self._send, self._recv) if p is not None], grace_s=2.0)
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None


def start_stream(hosts, src: str, dst: str, rate_pps: float, duration_s: float,
                 port: int = DEFAULT_PORT, **kw) -> StreamRun:
    """Start a stream (see StreamRun for the keyword options); call .wait() or .stop()."""
    return StreamRun(hosts, src, dst, rate_pps, duration_s, port, **kw).start()


# --------------------------------------------------------------------------------- CLI

def main(argv: list[str] | None = None) -> int:
    from probes import streamprog

    ap = argparse.ArgumentParser(prog="python -m probes.stream", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("recv", help="record a stream, write the record file on exit")
    r.add_argument("--port", type=int, default=DEFAULT_PORT)
    r.add_argument("--out", required=True, help="record file (and FILE.ready marker)")
    r.add_argument("--lifetime", type=float, default=None, help="exit after S seconds")
    r.add_argument("--session", type=int, default=0, help="record only this session")
    s = sub.add_parser("send", help="send a constant-rate stream, print a JSON summary")
    s.add_argument("--dst", required=True)
    s.add_argument("--port", type=int, default=DEFAULT_PORT)
    s.add_argument("--rate", type=float, required=True, help="packets per second")
    s.add_argument("--duration", type=float, required=True, help="seconds")
    s.add_argument("--size", type=int, default=64, help="UDP payload bytes (24..1472)")
    s.add_argument("--start-at", type=float, default=None, help="Unix time of packet 0")
    s.add_argument("--warmup", type=float, default=0.2, help="uncounted packets first, s")
    s.add_argument("--session", type=int, default=0, help="session id (0: random)")
    a = ap.parse_args(argv)
    try:
        if not 0 <= a.port <= 65535:
            raise ValueError(f"port {a.port} must be 0..65535")
        if not 0 <= a.session < 2**32:
            raise ValueError(f"session {a.session} must be 0..2^32-1")
        if a.cmd == "recv":
            if a.lifetime is not None and a.lifetime <= 0:
                raise ValueError(f"lifetime {a.lifetime} s must be positive")
            streamprog.receive(a.port, a.out, a.lifetime, a.session)
        else:
            streamprog.send(a.dst, a.port, a.rate, a.duration, a.size, a.start_at, a.warmup,
                            a.session)
    except (ValueError, OSError) as e:
        print(f"probes.stream {a.cmd}: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
