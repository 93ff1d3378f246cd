"""Batched datagram I/O: sendmmsg/recvmmsg through ctypes, plain calls where absent.

A window of S packets per round trip makes per-datagram work the worker's main cost after
quantization. Linux's sendmmsg/recvmmsg move a whole window in one system call; the
standard library does not expose them, so this module binds them with ctypes (which drops
the GIL during the call) and falls back to sendto/recv when libc lacks them.

The message headers and I/O vectors live in numpy arrays allocated once per socket, so a
batch costs a few array operations whatever its size: `send_rows` points the vectors at
rows of the caller's packet buffer (no copy, no object per datagram), and `recv_rows`
receives into one 2-D buffer whose rows the caller reads in place. The list-of-bytes
methods (`send`, `recv_ready`) are kept for callers that hold datagrams as bytes.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import socket
import struct
from typing import Any

import numpy as np
import numpy.typing as npt

log = logging.getLogger(__name__)

MSG_DONTWAIT = 0x40

U8 = npt.NDArray[np.uint8]
IntArray = npt.NDArray[np.intp]


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


# The same C layout as a numpy record, so that a whole batch of headers is filled by array
# assignment; offsets come from ctypes, which knows the platform's padding.
_UINTP = np.dtype(np.uintp)
_MMSG_DTYPE = np.dtype({
    "names": ["name", "namelen", "iov", "iovlen", "len"],
    "formats": [_UINTP, np.uint32, _UINTP, _UINTP, np.uint32],
    "offsets": [_MsgHdr.msg_name.offset, _MsgHdr.msg_namelen.offset, _MsgHdr.msg_iov.offset,
                _MsgHdr.msg_iovlen.offset, _MMsgHdr.msg_len.offset],
    "itemsize": ctypes.sizeof(_MMsgHdr),
})
_IOV_SIZE = ctypes.sizeof(_IoVec)
assert 2 * _UINTP.itemsize == _IOV_SIZE


def _load() -> tuple[Any, Any] | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name, use_errno=True)
        send, recv = libc.sendmmsg, libc.recvmmsg
    except (OSError, AttributeError):
        return None
    send.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int]
    send.restype = ctypes.c_int
    recv.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int, ctypes.c_void_p]
    recv.restype = ctypes.c_int
    return send, recv


_FUNCS = _load()


def _sockaddr_in(addr: tuple[str, int]) -> U8:
    raw = struct.pack("=H", socket.AF_INET) + struct.pack("!H", addr[1]) + socket.inet_aton(addr[0])
    return np.frombuffer(raw + b"\0" * 8, dtype=np.uint8).copy()


def _address(arr: npt.NDArray[Any]) -> int:
    return int(arr.__array_interface__["data"][0])


class BatchSocket:
    """A non-blocking UDP socket that sends to one fixed address and receives in batches.

    `prefix`, when given, is put in front of every datagram `send_rows` sends, as a
    second I/O vector (the tunnel transport's Ethernet/IPv4/UDP header), so the packet
    rows are never copied to prepend it.
    """

    def __init__(self, sock: socket.socket, dest: tuple[str, int], *, batch: int = 256,
                 max_datagram: int = 2048, use_mmsg: bool = True, prefix: bytes = b"") -> None:
        self.sock = sock
        self.dest = dest
        sock.setblocking(False)
        self._fd = sock.fileno()
        self._batch = batch
        self._size = max_datagram
        self._prefix = prefix
        self.mmsg = use_mmsg and _FUNCS is not None and sock.family == socket.AF_INET
        # receive side: one row per datagram, read in place by recv_rows' caller
        self._rbuf = np.zeros((batch, max_datagram), dtype=np.uint8)
        if not self.mmsg:
            return
        self._name = _sockaddr_in(dest)
        riov = np.zeros((batch, 2), dtype=_UINTP)
        riov[:, 0] = _address(self._rbuf) + np.arange(batch, dtype=_UINTP) * max_datagram
        riov[:, 1] = max_datagram
        self._rmsgs = np.zeros(batch, dtype=_MMSG_DTYPE)
        self._rmsgs["iov"] = _address(riov) + np.arange(batch, dtype=_UINTP) * _IOV_SIZE
        self._rmsgs["iovlen"] = 1
        self._riov = riov
        self._rmsgs_at = _address(self._rmsgs)
        # send side: vector 0 is the prefix (if any), the last one the packet row
        self._niov = 2 if prefix else 1
        self._prefix_arr = np.frombuffer(prefix or b"\0", dtype=np.uint8).copy()
        siov = np.zeros((batch, self._niov, 2), dtype=_UINTP)
        if prefix:
            siov[:, 0, 0] = _address(self._prefix_arr)
            siov[:, 0, 1] = len(prefix)
        self._smsgs = np.zeros(batch, dtype=_MMSG_DTYPE)
        self._smsgs["name"] = _address(self._name)
        self._smsgs["namelen"] = self._name.size
        self._smsgs["iov"] = _address(siov) + np.arange(batch, dtype=_UINTP) * (self._niov * _IOV_SIZE)
        self._smsgs["iovlen"] = self._niov
        self._siov = siov
        self._smsgs_at = _address(self._smsgs)
        self._sbuf: U8 | None = None
        self._sbuf_at = 0

    def send_rows(self, buf: U8, rows: IntArray, length: int) -> int:
        """Send the first `length` bytes of rows `rows` of the C-contiguous 2-D `buf`, in
        that order (after the prefix, if any). Returns how many the kernel took; a full
        buffer drops the rest, which the retransmission timer covers like any loss."""
        n = len(rows)
        if n == 0:
            return 0
        if not self.mmsg:
            pre = self._prefix
            return self._send_plain([pre + buf[r, :length].tobytes() for r in rows.tolist()])
        if buf is not self._sbuf:  # the streamer sends from one buffer: look its address up once
            if not buf.flags.c_contiguous or buf.ndim != 2:
                raise ValueError("send_rows needs a C-contiguous 2-D buffer")
            self._sbuf, self._sbuf_at = buf, _address(buf)
        addrs = self._sbuf_at + rows.astype(_UINTP) * buf.shape[1]
        took = self._sendv(addrs, length, True)
        if took < n:  # the rest one by one: each is either taken or logged as lost
            pre = self._prefix
            took += self._send_plain([pre + buf[r, :length].tobytes() for r in rows[took:].tolist()])
        return took

    def send(self, datagrams: list[bytes]) -> int:
        """Send datagrams held as bytes, as they are (no prefix); returns how many the
        kernel took."""
        if not datagrams:
            return 0
        if not self.mmsg:
            return self._send_plain(datagrams)
        joined = np.frombuffer(b"".join(datagrams), dtype=np.uint8)
        lens = np.fromiter(map(len, datagrams), dtype=_UINTP, count=len(datagrams))
        starts = np.cumsum(lens) - lens
        took = self._sendv(_address(joined) + starts, lens, False)
        if took < len(datagrams):
            took += self._send_plain(datagrams[took:])
        return took

    def _sendv(self, addrs: npt.NDArray[np.uintp], lens: npt.NDArray[np.uintp] | int,
               prefixed: bool) -> int:
        """sendmmsg of the datagrams at `addrs`, one batch per call; stops at the first
        datagram the kernel refuses and returns how many went."""
        assert _FUNCS is not None
        body = self._niov - 1
        if body:
            self._siov[:, 0, 1] = len(self._prefix) if prefixed else 0
        sent = 0
        for start in range(0, len(addrs), self._batch):
            k = min(self._batch, len(addrs) - start)
            self._siov[:k, body, 0] = addrs[start : start + k]
            self._siov[:k, body, 1] = lens if isinstance(lens, int) else lens[start : start + k]
            got = _FUNCS[0](self._fd, self._smsgs_at, k, MSG_DONTWAIT)
            sent += max(got, 0)
            if got < k:
                break
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

    def recv_rows(self) -> tuple[U8, npt.NDArray[np.uint32]]:
        """Every datagram already queued (up to one batch), never blocking, as (rows,
        lengths): datagram i is rows[i, :lengths[i]]. The rows are this socket's receive
        buffer, valid until the next receive call."""
        if self.mmsg and _FUNCS is not None:
            got = _FUNCS[1](self._fd, self._rmsgs_at, self._batch, MSG_DONTWAIT, None)
            if got <= 0:
                return self._rbuf[:0], np.zeros(0, dtype=np.uint32)
            return self._rbuf[:got], self._rmsgs["len"][:got]
        lengths: list[int] = []
        for i in range(self._batch):
            try:
                n = self.sock.recv_into(self._rbuf[i], self._size)
            except OSError:  # nothing queued (or an ICMP error report): no datagram
                break
            lengths.append(n)
        return self._rbuf[: len(lengths)], np.array(lengths, dtype=np.uint32)

    def recv_ready(self) -> list[bytes]:
        """Every datagram already queued (up to one batch), as bytes; never blocks."""
        rows, lengths = self.recv_rows()
        return [rows[i, :n].tobytes() for i, n in enumerate(lengths.tolist())]
