"""Transports: how aggregation payloads reach the switch and results come back.

Both transports move *payloads* (agg header + values): the streaming code never sees
addresses. `UdpTransport` uses the kernel's UDP stack, for real and Mininet networks.
`TunnelTransport` plays NIC for the softswitch's UDP tunnel ports: it wraps payloads in
whole Ethernet/IPv4/UDP frames and unwraps what comes back.

Results are accepted from the aggregation address only: both sockets are connected to
their one peer (the kernel then drops datagrams from any other address), and the tunnel
also checks that each frame's IPv4 source and UDP source port are the aggregation
address's, so another local process or host cannot hand a worker a forged result.
"""

from __future__ import annotations

import select
import socket
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from p4reduce.worker import wire
from p4reduce.worker.frames import (
    ETH_HEADER_LEN,
    FRAME_OVERHEAD,
    IPPROTO_UDP,
    frame_header,
    ipv4_bytes,
    udp_payload,
)
from p4reduce.worker.job import JobSpec
from p4reduce.worker.mmsg import BatchSocket

U8 = npt.NDArray[np.uint8]


class Transport(Protocol):
    def send(self, payloads: list[bytes]) -> None: ...

    def recv(self, timeout: float) -> list[bytes]:
        """Payloads received within `timeout` seconds (empty when none came)."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class RowTransport(Protocol):
    """The streamer's fast path, offered by the socket transports: whole batches of
    fixed-size payloads as rows of 2-D byte arrays, with no bytes object per packet.
    Transports that only have `send`/`recv` (test doubles) still work, through an adapter
    in the streamer."""

    def send_rows(self, buf: U8, rows: npt.NDArray[np.intp], length: int) -> None:
        """Send buf[r, :length] for r in rows, in that order; buf is C-contiguous."""
        ...

    def recv_rows(self, timeout: float, length: int) -> U8:
        """Payloads of at least `length` bytes received within `timeout` seconds, cut to
        `length`, as a C-contiguous (n, length) array (shorter ones are dropped). Valid
        until the next call."""
        ...


@dataclass(frozen=True)
class NativeIo:
    """What the C engine (`cstream`) needs to move a transport's packets itself.

    mode "fd": it sends to `dest` on socket `fd` (borrowed: the transport owns and closes
    it), putting `prefix` in front of every payload, and reads Ethernet frames addressed to
    UDP port `rx_port` from `rx_src` (the aggregation address: IPv4 and UDP port) when
    there is a prefix, bare payloads otherwise. mode "echo": no
    socket; every packet comes back as its own result (benchmarks of the worker alone).
    """

    mode: Literal["fd", "echo"]
    fd: int = -1
    dest: tuple[str, int] = ("0.0.0.0", 0)
    prefix: bytes = b""
    rx_port: int = 0
    rx_src: tuple[str, int] = ("0.0.0.0", 0)


def _wait_readable(sock: socket.socket, timeout: float) -> bool:
    r, _, _ = select.select([sock], [], [], max(0.0, timeout))
    return bool(r)


def _udp_socket(host: str, port: int) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    try:
        s.bind((host, port))
    except OSError as exc:
        s.close()
        raise OSError(f"cannot bind the worker's UDP socket to {host}:{port}: {exc.strerror}") from exc
    return s


def _connect(sock: socket.socket, peer: tuple[str, int]) -> None:
    """Receive from `peer` only (a connected UDP socket filters by source address)."""
    try:
        sock.connect(peer)
    except OSError as exc:
        sock.close()
        raise OSError(f"cannot connect the worker's UDP socket to {peer[0]}:{peer[1]}: "
                      f"{exc.strerror}") from exc


class UdpTransport:
    """Kernel UDP: payloads to switch_ip:switch_port from local_ip:local_port."""

    def __init__(self, job: JobSpec, *, use_mmsg: bool = True) -> None:
        self._sock = _udp_socket(job.local_ip, job.local_port)
        _connect(self._sock, (job.switch_ip, job.switch_port))
        self._io = BatchSocket(self._sock, (job.switch_ip, job.switch_port), use_mmsg=use_mmsg)
        self._need = wire.agg_payload_len(job.k)

    @property
    def local_address(self) -> tuple[str, int]:
        host, port = self._sock.getsockname()
        return str(host), int(port)

    def native_io(self) -> NativeIo:
        return NativeIo("fd", self._sock.fileno(), self._io.dest)

    def send(self, payloads: list[bytes]) -> None:
        self._io.send(payloads)

    def recv(self, timeout: float) -> list[bytes]:
        got = self._io.recv_ready()
        if not got and _wait_readable(self._sock, timeout):
            got = self._io.recv_ready()
        return [p for p in got if len(p) >= self._need]

    def send_rows(self, buf: U8, rows: npt.NDArray[np.intp], length: int) -> None:
        self._io.send_rows(buf, rows, length)

    def recv_rows(self, timeout: float, length: int) -> U8:
        rows, lengths = self._io.recv_rows()
        if not len(rows) and _wait_readable(self._sock, timeout):
            rows, lengths = self._io.recv_rows()
        if lengths.size and lengths.min() >= length:
            return np.ascontiguousarray(rows[:, :length])
        return rows[lengths >= length, :length]

    def close(self) -> None:
        self._sock.close()


class TunnelTransport:
    """Ethernet frames over a loopback UDP socket to one softswitch tunnel port."""

    def __init__(self, job: JobSpec, *, bind_host: str = "127.0.0.1", use_mmsg: bool = True) -> None:
        self._sock = _udp_socket(bind_host, 0)
        _connect(self._sock, (job.tunnel_host, job.tunnel_port))
        port = job.local_port or self._sock.getsockname()[1]
        self.local = job.local_endpoint(port)
        # a result's IPv4 source and UDP source port: the aggregation address
        self._switch_ip = job.switch_ip
        self._src_ip = np.frombuffer(ipv4_bytes(job.switch_ip), dtype=np.uint8)
        self._src_port = job.switch_port
        self._prefix = frame_header(self.local, job.switch_endpoint, wire.agg_payload_len(job.k))
        self._io = BatchSocket(self._sock, (job.tunnel_host, job.tunnel_port),
                               max_datagram=4096, use_mmsg=use_mmsg, prefix=self._prefix)
        self._need = wire.agg_payload_len(job.k)
        self.bad_frames = 0

    def native_io(self) -> NativeIo:
        return NativeIo("fd", self._sock.fileno(), self._io.dest, self._prefix, self.local.port,
                        (self._switch_ip, self._src_port))

    def send(self, payloads: list[bytes]) -> None:
        prefix = self._prefix
        self._io.send([prefix + p for p in payloads])

    def recv(self, timeout: float) -> list[bytes]:
        frames = self._io.recv_ready()
        if not frames and _wait_readable(self._sock, timeout):
            frames = self._io.recv_ready()
        out = []
        for frame in frames:
            got = udp_payload(frame)
            if (got is None or got[0] != self.local.port or len(got[1]) < self._need
                    or not self._from_switch(frame)):
                self.bad_frames += 1
                continue
            out.append(got[1])
        return out

    def _from_switch(self, frame: bytes) -> bool:
        """IPv4 source and UDP source port are the aggregation address (a frame that
        `udp_payload` accepted, so both headers are there)."""
        at = ETH_HEADER_LEN + (frame[ETH_HEADER_LEN] & 0x0F) * 4
        return (frame[26:30] == self._src_ip.tobytes()
                and (frame[at] << 8 | frame[at + 1]) == self._src_port)

    def send_rows(self, buf: U8, rows: npt.NDArray[np.intp], length: int) -> None:
        self._io.send_rows(buf, rows, length)  # the socket puts the frame header in front

    def recv_rows(self, timeout: float, length: int) -> U8:
        frames, lengths = self._io.recv_rows()
        if not len(frames) and _wait_readable(self._sock, timeout):
            frames, lengths = self._io.recv_rows()
        if not len(frames):
            return frames[:, :length]
        # what udp_payload checks, for the whole batch: IPv4 without options, UDP to this
        # worker's port, a UDP length that covers `length` bytes and fits in the frame;
        # frames with IP options (not sent by any switch here) take the per-frame path
        at = ETH_HEADER_LEN + 20
        ulen = frames[:, at + 4].astype(np.intp) << 8 | frames[:, at + 5]
        plain = frames[:, ETH_HEADER_LEN] == 0x45
        ok = (
            plain
            & (frames[:, 12] == 0x08) & (frames[:, 13] == 0x00)
            & (frames[:, 23] == IPPROTO_UDP)
            & ((frames[:, at + 2].astype(np.intp) << 8 | frames[:, at + 3]) == self.local.port)
            & (ulen >= 8 + length) & (at + ulen <= lengths)
            & (frames[:, 26:30] == self._src_ip).all(axis=1)
            & ((frames[:, at].astype(np.intp) << 8 | frames[:, at + 1]) == self._src_port)
        )
        if ok.all():
            return np.ascontiguousarray(frames[:, FRAME_OVERHEAD : FRAME_OVERHEAD + length])
        out = frames[ok, FRAME_OVERHEAD : FRAME_OVERHEAD + length]
        odd = np.flatnonzero(~ok & ~plain).tolist()
        self.bad_frames += int((~ok & plain).sum())
        if odd:
            extra = []
            for i in odd:
                frame = frames[i, : lengths[i]].tobytes()
                got = udp_payload(frame)
                if (got is None or got[0] != self.local.port or len(got[1]) < length
                        or not self._from_switch(frame)):
                    self.bad_frames += 1
                    continue
                extra.append(np.frombuffer(got[1], dtype=np.uint8, count=length))
            if extra:
                out = np.concatenate([out, np.stack(extra)])
        return out

    def close(self) -> None:
        self._sock.close()


def make_transport(job: JobSpec) -> Transport:
    if job.transport == "udp":
        return UdpTransport(job)
    return TunnelTransport(job)
