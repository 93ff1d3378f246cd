"""Kernel-UDP transport and batched I/O, against the reference switch behind plain UDP."""

from __future__ import annotations

import socket
import threading

import numpy as np
import pytest
from refswitch import RefSwitch
from test_worker_e2e import run_ranks

from worker import Communicator, JobSpec, wire
from worker.mmsg import BatchSocket


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
