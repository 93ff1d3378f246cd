"""Kernel-UDP transport and batched I/O, against the reference switch behind plain UDP."""

from __future__ import annotations

import socket
import threading

import numpy as np
import pytest

from p4reduce.worker import Communicator, JobSpec, wire
from p4reduce.worker.mmsg import BatchSocket
from tests.e2e.test_worker_e2e import run_ranks
from tests.support.refswitch import RefSwitch


class UdpRefSwitch:
    """RefSwitch on one kernel UDP socket: what a host sees of a real switch's address.
    The port of a worker is its worker_id; its address is learned from its packets."""

    def __init__(self, switch: RefSwitch) -> None:
        self.switch = switch
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.05)
        self.port = self.sock.getsockname()[1]
        self.peers: dict[int, tuple[str, int]] = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        while not self.stop.is_set():
            try:
                payload, addr = self.sock.recvfrom(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            worker = payload[3]
            self.peers[worker] = addr
            for port, out in self.switch.handle(worker, payload):
                if port in self.peers:
                    self.sock.sendto(out, self.peers[port])

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=5)
        self.sock.close()


@pytest.mark.timeout(60)
def test_allreduce_over_kernel_udp() -> None:
    sw = RefSwitch()
    sw.add_job(3, 8, 2)
    srv = UdpRefSwitch(sw)
    comms = [Communicator(JobSpec(3, r, 2, 8, switch_ip="127.0.0.1", switch_port=srv.port,
                                  local_ip="127.0.0.1", transport="udp"), timeout_s=10)
             for r in range(2)]
    try:
        ints = [np.arange(1000, dtype=np.int32) * (r + 1) for r in range(2)]
        res = run_ranks(comms, lambda r, c: c.allreduce(ints[r]))
        for got in res:
            np.testing.assert_array_equal(got, ints[0] + ints[1])
    finally:
        for c in comms:
            c.close()
        srv.close()


@pytest.mark.timeout(30)
@pytest.mark.parametrize("use_mmsg", [True, False])
def test_batch_socket_moves_every_datagram_in_order(use_mmsg: bool) -> None:
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", 0))
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tx.bind(("127.0.0.1", 0))
    try:
        out = BatchSocket(tx, rx.getsockname(), use_mmsg=use_mmsg, batch=8)
        inp = BatchSocket(rx, tx.getsockname(), use_mmsg=use_mmsg, batch=8)
        assert out.mmsg is use_mmsg  # Linux glibc has sendmmsg/recvmmsg
        grams = [bytes([i]) * (wire.AGG_HEADER_LEN + i) for i in range(20)]
        assert out.send(grams) == 20
        got: list[bytes] = []
        for _ in range(1000):
            got += inp.recv_ready()
            if len(got) == 20:
                break
        assert got == grams
        assert inp.recv_ready() == []
    finally:
        tx.close()
        rx.close()


def _drain(sock: BatchSocket, want: int) -> list[bytes]:
    got: list[bytes] = []
    for _ in range(1000):
        rows, lengths = sock.recv_rows()
        got += [rows[i, :n].tobytes() for i, n in enumerate(lengths.tolist())]
        if len(got) >= want:
            break
    return got


@pytest.mark.timeout(30)
@pytest.mark.parametrize("use_mmsg", [True, False])
@pytest.mark.parametrize("prefix", [b"", b"FRAMEHDR"])
def test_send_rows_sends_buffer_rows_in_the_given_order(use_mmsg: bool, prefix: bytes) -> None:
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", 0))
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tx.bind(("127.0.0.1", 0))
    try:
        out = BatchSocket(tx, rx.getsockname(), use_mmsg=use_mmsg, batch=4, prefix=prefix)
        inp = BatchSocket(rx, tx.getsockname(), use_mmsg=use_mmsg, batch=4)
        buf = np.arange(10 * 16, dtype=np.uint8).reshape(10, 16)
        order = np.array([7, 0, 3, 9, 1, 2], dtype=np.intp)  # more than one batch of 4
        assert out.send_rows(buf, order, 12) == 6
        assert _drain(inp, 6) == [prefix + buf[r, :12].tobytes() for r in order]
        # bytes datagrams on the same socket go as they are, without the prefix
        assert out.send([b"plain", b"datagrams!"]) == 2
        assert _drain(inp, 2) == [b"plain", b"datagrams!"]
        rows, lengths = inp.recv_rows()
        assert len(rows) == 0 and lengths.size == 0
    finally:
        tx.close()
        rx.close()


@pytest.mark.timeout(30)
def test_tunnel_recv_rows_keeps_only_aggregation_payloads_for_this_worker() -> None:
    from p4reduce.worker.frames import Endpoint, build_frame
    from p4reduce.worker.transport import TunnelTransport

    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    peer.bind(("127.0.0.1", 0))
    job = JobSpec(1, 0, 2, 4, local_port=40000, tunnel_port=peer.getsockname()[1])
    t = TunnelTransport(job)
    try:
        need = wire.agg_payload_len(job.k)
        me = job.local_endpoint(40000)
        sw = job.switch_endpoint
        good = [bytes([wire.FLAG_RESULT, i]) * (need // 2) for i in range(3)]
        ip_options = bytearray(build_frame(sw, me, good[2]))
        # the same frame with 4 bytes of IP options (IHL 6): handled off the fast path
        ip_options[14] = 0x46
        ip_options[16:18] = (len(ip_options) - 14 + 4).to_bytes(2, "big")
        ip_options[34:34] = b"\x01\x01\x01\x00"
        frames = [
            build_frame(sw, me, good[0]),
            build_frame(sw, Endpoint(me.mac, me.ip, 40001), good[1]),  # another worker's port
            build_frame(sw, me, good[1][: need - 1]),  # one byte short
            b"\xff" * 60,  # not IPv4
            build_frame(sw, me, good[1] + b"longer"),  # longer payloads are cut to `need`
            bytes(ip_options),
            build_frame(Endpoint(sw.mac, "10.0.0.66", sw.port), me, good[0]),  # not the switch
            build_frame(Endpoint(sw.mac, sw.ip, 4444), me, good[0]),  # nor its UDP port
        ]
        for f in frames:
            peer.sendto(f, t._sock.getsockname())
        got: list[bytes] = []
        for _ in range(100):
            rows = t.recv_rows(0.05, need)
            assert rows.flags.c_contiguous and rows.shape[1:] == (need,)
            got += [r.tobytes() for r in rows]
            if len(got) >= 3:
                break
        assert got == [good[0], good[1], good[2]]
        assert t.bad_frames == 5
        # another local process sending to the worker's socket is not the tunnel peer
        intruder = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        intruder.sendto(frames[0], t._sock.getsockname())
        intruder.close()
        assert len(t.recv_rows(0.2, need)) == 0 and t.recv(0.05) == []
    finally:
        t.close()
        peer.close()


@pytest.mark.timeout(30)
def test_udp_transport_takes_datagrams_from_the_aggregation_address_only() -> None:
    from p4reduce.worker.transport import UdpTransport

    switch = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    switch.bind(("127.0.0.1", 0))
    job = JobSpec(1, 0, 2, 4, switch_ip="127.0.0.1", switch_port=switch.getsockname()[1],
                  local_ip="127.0.0.1", transport="udp")
    t = UdpTransport(job)
    intruder = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        need = wire.agg_payload_len(job.k)
        forged, real = b"\x01" * need, b"\x03" * need
        intruder.sendto(forged, t.local_address)
        switch.sendto(real, t.local_address)
        got: list[bytes] = []
        for _ in range(20):
            got += [r.tobytes() for r in t.recv_rows(0.05, need)]
            if got:
                break
        assert got == [real]
    finally:
        t.close()
        switch.close()
        intruder.close()
