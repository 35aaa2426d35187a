"""Linux plumbing of the relay process: AF_PACKET sockets, timer slack, real-time priority.

Own transmissions are never relayed: ``PACKET_IGNORE_OUTGOING`` is set where the kernel
has it, and the relay also skips every frame whose ``pkttype`` is ``PACKET_OUTGOING``.
Receive stamps come from ``SO_TIMESTAMPNS`` (CLOCK_REALTIME, the clock of ``time.time``).
"""

from __future__ import annotations

import os
import socket

from emulation.delayline.config import DelayLineError

# Linux constants (not all exported by the socket module).
SOL_PACKET = 263
PACKET_IGNORE_OUTGOING = 23
PACKET_OUTGOING = 4
ETH_P_ALL = 0x0003
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
SO_RCVBUFFORCE = 33
SO_SNDBUFFORCE = 32
PR_SET_TIMERSLACK = 29
MSG_TRUNC = 0x20
TIMESTAMP_CMSG_SPACE = socket.CMSG_SPACE(16)  # one struct timespec

SOCK_BUF = 8 * 1024 * 1024  # requested SO_RCVBUF / SO_SNDBUF
SELECT_FD_LIMIT = 1024  # select() takes no fd at or above FD_SETSIZE


def open_packet_socket(ifname: str, read: bool, users: str) -> socket.socket:
    """Non-blocking AF_PACKET socket bound to ``ifname``; ``read``: receive every protocol
    with kernel stamps, else a write-only socket (protocol 0: the kernel delivers nothing).
    ``users`` names the hops that use the interface, for the error messages."""
    try:
        socket.if_nametoindex(ifname)
    except OSError:
        raise DelayLineError(
            f"interface {ifname!r} of hop {users} does not exist in this network namespace; "
            f"create the veth pair (and bring it up) before starting the delay line, or fix "
            f"the name in the config") from None
    proto = ETH_P_ALL if read else 0
    try:
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(proto))
    except PermissionError:
        raise DelayLineError(
            "opening an AF_PACKET socket needs root (CAP_NET_RAW); run as root") from None
    for opt, force, size in ((socket.SO_RCVBUF, SO_RCVBUFFORCE, SOCK_BUF),
                             (socket.SO_SNDBUF, SO_SNDBUFFORCE, SOCK_BUF)):
        try:
            s.setsockopt(socket.SOL_SOCKET, force, size)
        except OSError:
            s.setsockopt(socket.SOL_SOCKET, opt, size)
    try:
        s.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
    except OSError:
        pass  # old kernel: the relay's pkttype check still filters our own frames
    s.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    try:
        s.bind((ifname, proto))
    except OSError as e:
        s.close()
        raise DelayLineError(
            f"cannot bind an AF_PACKET socket to interface {ifname!r}: {e.strerror}; "
            f"check that it exists in this namespace") from None
    s.setblocking(False)
    if s.fileno() >= SELECT_FD_LIMIT:
        fd = s.fileno()
        s.close()
        raise DelayLineError(
            f"socket for {ifname!r} got fd {fd} >= {SELECT_FD_LIMIT} (select() limit); "
            f"split the hops over more delay-line processes (split_links)")
    return s


def set_timer_slack(ns: int = 1000) -> bool:
    """Set this process's timer slack (PR_SET_TIMERSLACK); False if unavailable."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_TIMERSLACK, ctypes.c_ulong(ns), 0, 0, 0) == 0
    except Exception:  # noqa: BLE001 - non-Linux or no libc: report, do not fail
        return False


def set_realtime(priority: int) -> str:
    """SCHED_FIFO at ``priority`` (0: leave the normal scheduler); returns what was set.

    A relay that wakes behind a busy thread (OVS's PMD busy-polls a core) waits up to a
    scheduler slice, milliseconds. Measured on the backbone: RTT minus pair median p90/p99
    0.6/6.7 ms without, 0.14/0.4 ms with. The kernel's RT throttling (sched_rt_runtime_us)
    keeps a saturated relay from locking a core."""
    if priority <= 0:
        return "off"
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))
        return f"SCHED_FIFO {priority}"
    except (OSError, AttributeError) as e:
        return f"not available: {e}"
