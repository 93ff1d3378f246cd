"""Switch ports: where frames come from and go to.

A port is anything with `send(frame)`, `recv(timeout) -> frame | None`, `fileno()` (or -1)
and `close()`. Socket ports also have `recv_nowait()`: their sockets are non-blocking, so
the device can wait on all of them in one poll and then drain each with one syscall per
frame (a blocking receive with a timeout costs a poll and a receive per frame). Three kinds exist: a UDP tunnel (the no-root default: each datagram is one
Ethernet frame; the peer is given, or else learned from the last datagram), AF_PACKET on a Linux
interface (Mininet, needs root) and an in-memory port for tests. `FaultyPort` wraps any of
them to drop, duplicate or reorder received frames with a seeded generator, so a lossy
network is reproducible.
"""

from __future__ import annotations

import contextlib
import math
import queue
import random
import select
import socket
import sys
import threading
from typing import Any, Protocol

ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4
SOL_PACKET = 263
PACKET_IGNORE_OUTGOING = 23  # Linux 4.20+: the kernel keeps our own transmissions from us
MAX_FRAME = 65535
SOL_UDP = 17
UDP_GRO = 104  # Linux 5.0+: the kernel may hand over several datagrams as one buffer
RCVBUF = 4 << 20  # room for bursts while the interpreter is busy with earlier frames
# Room for a burst of results behind a shaped link: frames waiting in the interface's
# queue count against the socket's send buffer, and the default (about 200 KB) is less than
# one job's window of results to one port, so a 100 Mbit/s Mininet link refused them
# (measured: 2-4 % of the results of a 64 MB call at 4 workers, each costing a resend).
SNDBUF = 4 << 20
# SO_SNDBUFFORCE (root) passes net.core.wmem_max; without it SO_SNDBUF is capped there
_SO_SNDBUFFORCE = getattr(socket, "SO_SNDBUFFORCE", 32)
SEND_WAIT = 1.0  # seconds a send waits for buffer space before the frame is dropped


class PortSpecError(ValueError):
    """A malformed `N@...` port specification; the message says what is wrong."""


class Port(Protocol):
    def send(self, frame: bytes) -> None: ...
    def recv(self, timeout: float | None = None) -> bytes | None: ...
    def fileno(self) -> int: ...
    def close(self) -> None: ...


class MemoryPort:
    """Collects sent frames and offers injected ones; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sent: list[bytes] = []
        self._rx: queue.Queue[bytes | None] = queue.Queue()
        self.sent_event = threading.Condition(self._lock)

    def send(self, frame: bytes) -> None:
        with self._lock:
            self._sent.append(bytes(frame))
            self.sent_event.notify_all()

    def put(self, frame: bytes) -> None:
        """Make `frame` arrive at the switch on this port (picked up by `Device.start`)."""
        self._rx.put(bytes(frame))

    def recv(self, timeout: float | None = None) -> bytes | None:
        try:
            return self._rx.get(timeout=timeout)
        except queue.Empty:
            return None

    def fileno(self) -> int:
        return -1

    def close(self) -> None:
        self._rx.put(None)

    def take(self) -> list[bytes]:
        with self._lock:
            sent, self._sent = self._sent, []
        return sent

    def wait_sent(self, count: int, timeout: float) -> list[bytes]:
        """Block until at least `count` frames were sent (or timeout); returns them all."""
        with self._lock:
            self.sent_event.wait_for(lambda: len(self._sent) >= count, timeout)
            sent, self._sent = self._sent, []
        return sent


class _SocketPort:
    """Non-blocking socket plumbing shared by the UDP and AF_PACKET ports."""

    sock: socket.socket

    def _nonblocking(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, _SO_SNDBUFFORCE, SNDBUF)
        except OSError:
            with contextlib.suppress(OSError):
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SNDBUF)
        self.sock.setblocking(False)
        self._poll = select.poll()
        self._poll.register(self.sock.fileno(), select.POLLIN)

    def recv_nowait(self) -> bytes | None:
        raise NotImplementedError

    def recv(self, timeout: float | None = None) -> bytes | None:
        frame = self.recv_nowait()
        while frame is None and self.sock.fileno() >= 0:
            ms = None if timeout is None else math.ceil(timeout * 1000)
            try:
                if not self._poll.poll(ms):
                    return None
            except (OSError, ValueError):  # closed under us
                return None
            frame = self.recv_nowait()
            if timeout is not None:
                break  # one wait per call, as a blocking receive with a timeout
        return frame

    def _send(self, frame: bytes, peer: tuple[str, int] | None = None) -> None:
        """Send, and if the socket buffer is full wait for room rather than drop: a
        blocking socket gave the switch this backpressure, keep it."""
        for _ in range(2):
            try:
                if peer is None:
                    self.sock.send(frame)
                else:
                    self.sock.sendto(frame, peer)
                return
            except BlockingIOError:
                try:
                    select.select([], [self.sock], [], SEND_WAIT)
                except (OSError, ValueError):
                    return
            except OSError:
                return

    def fileno(self) -> int:
        return self.sock.fileno()

    def close(self) -> None:
        self.sock.close()


class UdpPort(_SocketPort):
    """A UDP tunnel: the switch binds host:port. With a `peer`, frames go to it and only
    its datagrams are accepted (others are dropped and counted in `foreign_drops`):
    nobody else on the host can inject frames or redirect the port's output. Without
    one, frames go to whoever sent the last datagram (learning; any local process can
    take the port over)."""

    def __init__(self, host: str, port: int, peer: tuple[str, int] | None = None) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            self.sock.bind((host, port))
        except OSError as exc:
            self.sock.close()
            raise PortSpecError(f"cannot bind UDP {host}:{port}: {exc.strerror or exc}") from exc
        self.fixed_peer = peer is not None
        self._peer: tuple[str, int] | None = None
        if peer is not None:
            try:
                self._peer = (socket.gethostbyname(peer[0]), peer[1])
            except OSError as exc:
                self.sock.close()
                raise PortSpecError(f"cannot resolve tunnel peer {peer[0]!r}: {exc}") from exc
        self.foreign_drops = 0
        self._segments: list[bytes] = []  # the rest of a coalesced buffer, in order
        # while the native port engine serves this port, it holds the learned peer
        self.engine: tuple[Any, int] | None = None
        self.address: tuple[str, int] = self.sock.getsockname()
        self._nonblocking()

    @property
    def peer(self) -> tuple[str, int] | None:
        engine = self.engine
        if engine is not None:
            return engine[0].peer(engine[1])  # type: ignore[no-any-return]
        return self._peer

    @peer.setter
    def peer(self, value: tuple[str, int] | None) -> None:
        self._peer = value

    def send(self, frame: bytes) -> None:
        peer = self.peer
        if peer is None:
            return  # nobody to send to yet: the tunnel learns its peer from traffic
        self._send(frame, peer)

    def recv_nowait(self) -> bytes | None:
        if self._segments:
            return self._segments.pop(0)
        while True:
            try:
                data, anc, _, addr = self.sock.recvmsg(MAX_FRAME, socket.CMSG_SPACE(4))
            except OSError:  # nothing queued (BlockingIOError), or closed
                return None
            if self.fixed_peer and addr != self._peer:
                self.foreign_drops += 1
                continue
            if not self.fixed_peer:
                self._peer = addr
            # The native engine reads with UDP_GRO on; datagrams the kernel coalesced
            # before it handed the port back stay one buffer: one frame per datagram.
            seg = next((int.from_bytes(d[:4], sys.byteorder) for lvl, typ, d in anc
                        if lvl == SOL_UDP and typ == UDP_GRO), 0)
            if 0 < seg < len(data):
                parts = [data[i:i + seg] for i in range(0, len(data), seg)]
                self._segments.extend(parts[1:])
                return parts[0]
            return data


class AfPacketPort(_SocketPort):
    """A raw Linux interface (root only); frames the kernel sends out are skipped."""

    def __init__(self, iface: str) -> None:
        try:
            self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        except PermissionError as exc:
            raise PortSpecError(f"AF_PACKET on {iface} needs root (CAP_NET_RAW)") from exc
        except OSError as exc:
            raise PortSpecError(f"cannot open AF_PACKET socket: {exc}") from exc
        try:
            self.sock.bind((iface, 0))
        except OSError as exc:
            self.sock.close()
            raise PortSpecError(f"cannot bind interface {iface!r}: {exc.strerror or exc}") from exc
        self.iface = iface
        # Without the kernel filter every frame's address is needed to skip our own
        # transmissions; with it a plain recv will do (no address tuple per frame).
        try:
            self.sock.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
            self._filter = False
        except OSError:
            self._filter = True
        self._nonblocking()

    def send(self, frame: bytes) -> None:
        self._send(frame)

    def recv_nowait(self) -> bytes | None:
        try:
            if not self._filter:
                return self.sock.recv(MAX_FRAME)
            while True:
                data, addr = self.sock.recvfrom(MAX_FRAME)
                if addr[2] != PACKET_OUTGOING:
                    return data
        except OSError:  # nothing queued (BlockingIOError), or closed
            return None


class FaultyPort:
    """Receive-side faults: each received frame is dropped with probability `drop`,
    otherwise delivered twice with probability `duplicate`, and held back behind the next
    frame with probability `reorder`. One seeded generator per port: deterministic."""

    def __init__(self, inner: Port, drop: float = 0.0, duplicate: float = 0.0,
                 reorder: float = 0.0, seed: int = 0) -> None:
        for name, p in (("drop", drop), ("duplicate", duplicate), ("reorder", reorder)):
            if not 0.0 <= p <= 1.0:
                raise PortSpecError(f"{name} probability {p} is not in [0, 1]")
        self.inner = inner
        self.drop, self.duplicate, self.reorder = drop, duplicate, reorder
        self._rng = random.Random(seed)
        self._ready: list[bytes] = []
        self._held: bytes | None = None

    def faults(self, frame: bytes) -> list[bytes]:
        """The frames delivered for one received frame (pure function of the RNG state)."""
        rng = self._rng
        if rng.random() < self.drop:
            return []
        out = [frame, frame] if rng.random() < self.duplicate else [frame]
        if self._held is not None:
            out.append(self._held)
            self._held = None
        elif rng.random() < self.reorder:
            self._held = out.pop(0)
        return out

    def send(self, frame: bytes) -> None:
        self.inner.send(frame)

    def recv(self, timeout: float | None = None) -> bytes | None:
        while not self._ready:
            frame = self.inner.recv(timeout)
            if frame is None:
                return None
            self._ready.extend(self.faults(frame))
        return self._ready.pop(0)

    def recv_nowait(self) -> bytes | None:
        """Only for a pollable inner port (see `pollable`)."""
        while not self._ready:
            frame = self.inner.recv_nowait()  # type: ignore[attr-defined]
            if frame is None:
                return None
            self._ready.extend(self.faults(frame))
        return self._ready.pop(0)

    def fileno(self) -> int:
        return self.inner.fileno()

    def close(self) -> None:
        self.inner.close()


def pollable(port: Port) -> bool:
    """Whether the device may wait for `port` in its poll loop: a socket underneath and
    `recv_nowait` all the way down."""
    inner: object = port
    while isinstance(inner, FaultyPort):
        inner = inner.inner
    return isinstance(inner, _SocketPort) and port.fileno() >= 0


def _hostport(text: str, what: str, spec: str) -> tuple[str, int]:
    host, _, p = text.rpartition(":")
    if not host or not p.isdigit() or not 0 <= int(p) < 65536:
        raise PortSpecError(f"port spec {spec!r}: expected {what}")
    return host, int(p)


def parse_port_spec(spec: str, drop: float = 0.0, duplicate: float = 0.0, reorder: float = 0.0,
                    seed: int = 0) -> tuple[int, Port]:
    """`N@IFACE`, `N@udp:HOST:PORT[,peer=HOST:PORT]` (or `N@mem` for tests) into (port
    number, Port)."""
    num, sep, where = spec.partition("@")
    if not sep or not where:
        raise PortSpecError(f"port spec {spec!r}: expected N@IFACE or N@udp:HOST:PORT[,peer=HOST:PORT]")
    try:
        number = int(num)
    except ValueError:
        raise PortSpecError(f"port spec {spec!r}: port number {num!r} is not an integer") from None
    if not 0 <= number < 511:
        raise PortSpecError(f"port spec {spec!r}: port number must be 0..510 (511 is drop)")
    port: Port
    if where.startswith("udp:"):
        local, *options = where[4:].split(",")
        host, p = _hostport(local, "udp:HOST:PORT", spec)
        peer = None
        for opt in options:
            key, eq, value = opt.partition("=")
            if key != "peer" or not eq:
                raise PortSpecError(f"port spec {spec!r}: unknown option {opt!r} (only peer=HOST:PORT)")
            peer = _hostport(value, "peer=HOST:PORT", spec)
            if peer[1] == 0:
                raise PortSpecError(f"port spec {spec!r}: the peer needs a port number other than 0")
        port = UdpPort(host, p, peer)
    elif where == "mem":
        port = MemoryPort()
    else:
        port = AfPacketPort(where)
    if drop or duplicate or reorder:
        port = FaultyPort(port, drop, duplicate, reorder, seed + number)
    return number, port
