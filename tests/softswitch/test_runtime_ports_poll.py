"""The device's poll loop over socket ports: every frame of every port is processed,
in order per port, including frames a FaultyPort holds beyond one drain batch; and the
non-blocking ports still honour recv(timeout)."""

from __future__ import annotations

import socket
import struct
import time
from typing import Any

import pytest

from p4reduce.softswitch.runtime import Device, MemoryPort
from p4reduce.softswitch.runtime.device import BATCH
from p4reduce.softswitch.runtime.ports import FaultyPort, UdpPort, pollable
from tests.support.backends import make
from tests.support.runtime_ir import assign, f, program


def _reflect(backend: str) -> Any:
    return make(program(ingress=[assign(f("std.egress_spec", 9), f("std.ingress_port", 9))]), backend)


def _frame(port: int, i: int) -> bytes:
    return bytes(6) * 2 + b"\x12\x34" + port.to_bytes(2, "big") + i.to_bytes(4, "big") + bytes(40)


def _client() -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    s.bind(("127.0.0.1", 0))
    s.settimeout(5)
    return s


def test_pollable_ports() -> None:
    udp = UdpPort("127.0.0.1", 0)
    try:
        assert pollable(udp) and pollable(FaultyPort(udp, duplicate=0.5))
        assert not pollable(MemoryPort()) and not pollable(FaultyPort(MemoryPort()))
    finally:
        udp.close()
    assert not pollable(udp)  # closed: fileno -1


@pytest.mark.timeout(30)
def test_udp_ports_reflect_everything_in_order(backend: str) -> None:
    dev = Device()
    ports = {n: UdpPort("127.0.0.1", 0) for n in (1, 2, 3)}
    for n, p in ports.items():
        dev.add_port(n, p)
    dev.set_pipeline(_reflect(backend))
    dev.start()
    clients = {n: _client() for n in ports}
    try:
        count = 3 * BATCH + 5  # more than one batch per port while others are busy too
        for i in range(count):
            for n, c in clients.items():
                c.sendto(_frame(n, i), ports[n].address)
        for n, c in clients.items():
            got = [c.recv(2048) for _ in range(count)]
            assert got == [_frame(n, i) for i in range(count)]
    finally:
        dev.stop()
        for c in clients.values():
            c.close()


@pytest.mark.timeout(30)
def test_duplicates_beyond_a_batch_are_not_stranded(monkeypatch: pytest.MonkeyPatch, backend: str) -> None:
    """Each received frame becomes two. With an odd batch the cut falls between the two
    copies of the last frame, which then is only in the FaultyPort, not in the socket:
    the loop must come back for it without waiting for the socket."""
    import p4reduce.softswitch.runtime.device as device

    monkeypatch.setattr(device, "BATCH", 3)
    dev = Device()
    udp = UdpPort("127.0.0.1", 0)
    out = MemoryPort()
    dev.add_port(1, FaultyPort(udp, duplicate=1.0))
    dev.add_port(2, out)
    dev.set_pipeline(make(program(ingress=[assign(f("std.egress_spec", 9), {"op": "const", "value": 2,
                                                                               "type": {"kind": "bit", "width": 9}})]), backend))
    c = _client()
    try:
        n = 2
        for i in range(n):
            c.sendto(_frame(1, i), udp.address)
        time.sleep(0.2)  # all queued before the loop starts: a full batch at once
        dev.start()
        got = out.wait_sent(2 * n, 10)
        assert got == [fr for i in range(n) for fr in (_frame(1, i), _frame(1, i))]
    finally:
        dev.stop()
        c.close()


@pytest.mark.timeout(20)
def test_nonblocking_udp_port_recv_timeout_and_close() -> None:
    p = UdpPort("127.0.0.1", 0)
    c = _client()
    try:
        t0 = time.monotonic()
        assert p.recv(0.05) is None
        assert 0.04 <= time.monotonic() - t0 < 2
        assert p.recv_nowait() is None
        c.sendto(b"x" * 30, p.address)
        assert p.recv(2) == b"x" * 30
        assert p.peer == c.getsockname()
        p.send(b"back")
        assert c.recv(100) == b"back"
    finally:
        p.close()
        c.close()
    assert p.recv(0.01) is None and p.recv_nowait() is None


@pytest.mark.timeout(20)
def test_udp_port_splits_datagrams_the_kernel_coalesced() -> None:
    """The native engine turns UDP_GRO on and leaves it on when it hands the port back
    (datagrams already coalesced stay one buffer): the Python port gives one frame per
    datagram, in order."""
    from p4reduce.softswitch.runtime.ports import SOL_UDP, UDP_GRO

    p = UdpPort("127.0.0.1", 0)
    c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        p.sock.setsockopt(SOL_UDP, UDP_GRO, 1)
        frames = [bytes([i]) * 40 for i in range(5)] + [b"\x09" * 13]  # the last one shorter
        c.connect(p.address)
        c.sendmsg([b"".join(frames)], [(SOL_UDP, 103, struct.pack("=H", 40))])  # UDP_SEGMENT
        got = []
        for _ in range(20):
            f = p.recv(1.0)
            if f is None:
                break
            got.append(f)
            if len(got) == len(frames):
                break
        assert got == frames
    finally:
        c.close()
        p.close()
