"""Batched datagram I/O: sendmmsg/recvmmsg through ctypes, plain calls where absent.

A window of S packets per round trip makes per-datagram system calls the worker's main
cost after quantization; Linux's sendmmsg/recvmmsg move a whole window in one call. The
standard library does not expose them, so this module binds them with ctypes (which
drops the GIL during the call) and falls back to sendto/recv when libc lacks them.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import socket
import struct
from typing import Any

log = logging.getLogger(__name__)

MSG_DONTWAIT = 0x40


class _IoVec(ctypes.Structure):
    _fields_ = [("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t)]


class _MsgHdr(ctypes.Structure):
    _fields_ = [
        ("msg_name", ctypes.c_void_p),
        ("msg_namelen", ctypes.c_uint32),
        ("msg_iov", ctypes.POINTER(_IoVec)),
        ("msg_iovlen", ctypes.c_size_t),
        ("msg_control", ctypes.c_void_p),
        ("msg_controllen", ctypes.c_size_t),
        ("msg_flags", ctypes.c_int),
    ]


class _MMsgHdr(ctypes.Structure):
    _fields_ = [("msg_hdr", _MsgHdr), ("msg_len", ctypes.c_uint)]


def _load() -> tuple[Any, Any] | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name, use_errno=True)
        send, recv = libc.sendmmsg, libc.recvmmsg
    except (OSError, AttributeError):
        return None
    send.argtypes = [ctypes.c_int, ctypes.POINTER(_MMsgHdr), ctypes.c_uint, ctypes.c_int]
    send.restype = ctypes.c_int
    recv.argtypes = [ctypes.c_int, ctypes.POINTER(_MMsgHdr), ctypes.c_uint, ctypes.c_int, ctypes.c_void_p]
    recv.restype = ctypes.c_int
    return send, recv


_FUNCS = _load()


def _sockaddr_in(addr: tuple[str, int]) -> ctypes.Array[ctypes.c_char]:
    raw = struct.pack("=H", socket.AF_INET) + struct.pack("!H", addr[1]) + socket.inet_aton(addr[0])
    return ctypes.create_string_buffer(raw + b"\0" * 8, 16)


class BatchSocket:
    """A non-blocking UDP socket that sends to one fixed address and receives in batches."""

    def __init__(self, sock: socket.socket, dest: tuple[str, int], *, batch: int = 256,
                 max_datagram: int = 2048, use_mmsg: bool = True) -> None:
        self.sock = sock
        self.dest = dest
        sock.setblocking(False)
        self._batch = batch
        self._size = max_datagram
        self.mmsg = use_mmsg and _FUNCS is not None and sock.family == socket.AF_INET
        if self.mmsg:
            self._name = _sockaddr_in(dest)
            self._rbufs = [ctypes.create_string_buffer(max_datagram) for _ in range(batch)]
            self._riov = (_IoVec * batch)()
            self._rmsgs = (_MMsgHdr * batch)()
            for i, buf in enumerate(self._rbufs):
                self._riov[i].iov_base = ctypes.cast(buf, ctypes.c_void_p)
                self._riov[i].iov_len = max_datagram
                self._rmsgs[i].msg_hdr.msg_iov = ctypes.pointer(self._riov[i])
                self._rmsgs[i].msg_hdr.msg_iovlen = 1

    def send(self, datagrams: list[bytes]) -> int:
        """Send all datagrams; returns how many the kernel took (a full buffer drops the
        rest, which the retransmission timer covers like any loss)."""
        if not datagrams:
            return 0
        if not self.mmsg:
            return self._send_plain(datagrams)
        sent = 0
        for start in range(0, len(datagrams), self._batch):
            part = datagrams[start : start + self._batch]
            n = len(part)
            iov = (_IoVec * n)()
            msgs = (_MMsgHdr * n)()
            keep = [ctypes.create_string_buffer(d, len(d)) for d in part]
            for i, buf in enumerate(keep):
                iov[i].iov_base = ctypes.cast(buf, ctypes.c_void_p)
                iov[i].iov_len = len(part[i])
                hdr = msgs[i].msg_hdr
                hdr.msg_name = ctypes.cast(self._name, ctypes.c_void_p)
                hdr.msg_namelen = 16
                hdr.msg_iov = ctypes.pointer(iov[i])
                hdr.msg_iovlen = 1
            got = _FUNCS[0](self.sock.fileno(), msgs, n, MSG_DONTWAIT) if _FUNCS else -1
            if got < 0:
                return sent + self._send_plain(part)
            sent += got
            if got < n:
                sent += self._send_plain(part[got:])
        return sent

    def _send_plain(self, datagrams: list[bytes]) -> int:
        sent = 0
        for d in datagrams:
            try:
                self.sock.sendto(d, self.dest)
                sent += 1
            except OSError as exc:
                # a full buffer or an unreachable network is a lost packet: the streamer
                # resends, and its progress timeout reports a network that stays down
                log.debug("send to %s failed: %s", self.dest, exc)
        return sent

    def recv_ready(self) -> list[bytes]:
        """Every datagram already queued (up to one batch); never blocks."""
        if self.mmsg and _FUNCS is not None:
            got = _FUNCS[1](self.sock.fileno(), self._rmsgs, self._batch, MSG_DONTWAIT, None)
            if got <= 0:
                return []
            return [self._rbufs[i].raw[: self._rmsgs[i].msg_len] for i in range(got)]
        out: list[bytes] = []
        for _ in range(self._batch):
            try:
                out.append(self.sock.recv(self._size))
            except OSError:  # nothing queued (or an ICMP error report): no datagram
                break
        return out
