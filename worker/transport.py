"""Transports: how aggregation payloads reach the switch and results come back.

Both transports move *payloads* (agg header + values): the streaming code never sees
addresses. `UdpTransport` uses the kernel's UDP stack, for real and Mininet networks.
`TunnelTransport` plays NIC for the softswitch's UDP tunnel ports: it wraps payloads in
whole Ethernet/IPv4/UDP frames and unwraps what comes back.
"""

from __future__ import annotations

import select
import socket
from typing import Protocol

from worker import wire
from worker.frames import frame_header, udp_payload
from worker.job import JobSpec
from worker.mmsg import BatchSocket


class Transport(Protocol):
    def send(self, payloads: list[bytes]) -> None: ...

    def recv(self, timeout: float) -> list[bytes]:
        """Payloads received within `timeout` seconds (empty when none came)."""
        ...

    def close(self) -> None: ...


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


class UdpTransport:
    """Kernel UDP: payloads to switch_ip:switch_port from local_ip:local_port."""

    def __init__(self, job: JobSpec, *, use_mmsg: bool = True) -> None:
        self._sock = _udp_socket(job.local_ip, job.local_port)
        self._io = BatchSocket(self._sock, (job.switch_ip, job.switch_port), use_mmsg=use_mmsg)
        self._need = wire.agg_payload_len(job.k)

    @property
    def local_address(self) -> tuple[str, int]:
        host, port = self._sock.getsockname()
        return str(host), int(port)

    def send(self, payloads: list[bytes]) -> None:
        self._io.send(payloads)

    def recv(self, timeout: float) -> list[bytes]:
        got = self._io.recv_ready()
        if not got and _wait_readable(self._sock, timeout):
            got = self._io.recv_ready()
        return [p for p in got if len(p) >= self._need]

    def close(self) -> None:
        self._sock.close()


class TunnelTransport:
    """Ethernet frames over a loopback UDP socket to one softswitch tunnel port."""

    def __init__(self, job: JobSpec, *, bind_host: str = "127.0.0.1", use_mmsg: bool = True) -> None:
        self._sock = _udp_socket(bind_host, 0)
        self._io = BatchSocket(self._sock, (job.tunnel_host, job.tunnel_port),
                               max_datagram=4096, use_mmsg=use_mmsg)
        port = job.local_port or self._sock.getsockname()[1]
        self.local = job.local_endpoint(port)
        self._prefix = frame_header(self.local, job.switch_endpoint, wire.agg_payload_len(job.k))
        self._need = wire.agg_payload_len(job.k)
        self.bad_frames = 0

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
            if got is None or got[0] != self.local.port or len(got[1]) < self._need:
                self.bad_frames += 1
                continue
            out.append(got[1])
        return out

    def close(self) -> None:
        self._sock.close()


def make_transport(job: JobSpec) -> Transport:
    if job.transport == "udp":
        return UdpTransport(job)
    return TunnelTransport(job)
