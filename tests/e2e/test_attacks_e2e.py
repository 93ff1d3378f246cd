"""The attacks of issue 17 against a running job: aggregator.p4 on the softswitch, two
ranks streaming allreduces over UDP tunnel ports, and an attacker on a third switch port
sending forged results, contributions as rank 1, and RETRANSMITs as rank 1 throughout.

Every result must be exact, the attacker must receive none of the job's data, and the
switch must count every attack frame under its reject reason."""

from __future__ import annotations

import socket
import threading
import time

import numpy as np
import pytest

from p4reduce import contract as n
from p4reduce.worker import Communicator, wire
from p4reduce.worker.frames import Endpoint, build_frame, udp_payload
from tests.e2e.test_worker_e2e import run_ranks
from tests.support.softswitch_job import SWITCH_IP, SWITCH_MAC, SoftswitchJob

JOB = 9
WORLD = 2
SLOTS = 16


class Attacker:
    """A host on switch port WORLD + 1 that sends attack frames until stopped and keeps
    whatever the switch sends it."""

    def __init__(self, sw: SoftswitchJob) -> None:
        self.sw = sw
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.01)
        self.port_address = sw.extra[0]
        self.sent = {"forged_result": 0, "impersonation": 0, "retransmit": 0}
        self.received: list[bytes] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Attacker:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self.sock.close()

    def _frames(self, rng: np.random.Generator) -> list[tuple[str, bytes]]:
        sw = self.sw
        agg = Endpoint(SWITCH_MAC, SWITCH_IP, wire.AGG_UDP_PORT)
        rank1 = Endpoint(sw.worker_mac(1), sw.worker_ip(1), 40001)
        slot, rnd = int(rng.integers(SLOTS)), int(rng.integers(256))
        values = np.full(wire.DEFAULT_K, 77777, dtype=np.int32)
        out = []
        for r in range(WORLD):  # a result as the switch would send it to rank r
            victim = Endpoint(sw.worker_mac(r), sw.worker_ip(r), 40000 + r)
            hdr = wire.AggHeader(wire.FLAG_RESULT, JOB, 0, slot, rnd, 0, 0)
            out.append(("forged_result", build_frame(agg, victim, wire.pack_payload(hdr, values))))
        hdr = wire.AggHeader(0, JOB, 1, slot, rnd, 0, 0)
        out.append(("impersonation", build_frame(rank1, agg, wire.pack_payload(hdr, values))))
        hdr = wire.AggHeader(wire.FLAG_RETRANSMIT, JOB, 1, slot, rnd, 0, 0)
        out.append(("retransmit", build_frame(rank1, agg, wire.pack_payload(hdr, values))))
        return out

    def _run(self) -> None:
        rng = np.random.default_rng(5)
        while not self._stop.is_set():
            for kind, frame in self._frames(rng):
                self.sock.sendto(frame, self.port_address)
                self.sent[kind] += 1
            try:
                while True:
                    self.received.append(self.sock.recv(4096))
            except (TimeoutError, BlockingIOError):
                pass
            time.sleep(0.002)


@pytest.mark.timeout(120)
def test_attacks_during_a_job_change_no_result_and_are_counted() -> None:
    rng = np.random.default_rng(1)
    ints = [rng.integers(-(2**31), 2**31, 5000, dtype=np.int64).astype(np.int32)
            for _ in range(WORLD)]
    floats = [rng.standard_normal(4000).astype(np.float32) for _ in range(WORLD)]
    want_ints = np.sum(ints, axis=0, dtype=np.int32)
    with SoftswitchJob(JOB, WORLD, SLOTS, extra_ports=1) as sw:
        comms = [Communicator(sw.spec(r), timeout_s=20) for r in range(WORLD)]
        try:
            clean = run_ranks(comms, lambda r, c: c.allreduce(floats[r]))
            with Attacker(sw) as attacker:
                calls = 0  # at least 15 rounds of calls, and until 50 attacks of each kind
                while calls < 15 or (attacker.sent["retransmit"] < 50 and calls < 500):
                    calls += 1
                    got = run_ranks(comms, lambda r, c: (c.allreduce(ints[r]),
                                                         c.allreduce(floats[r])))
                    for res in got:
                        assert not isinstance(res, BaseException), res
                        np.testing.assert_array_equal(res[0], want_ints)
                        np.testing.assert_array_equal(res[1], clean[0])
                time.sleep(0.2)  # the attacker's last frames through the switch
        finally:
            for c in comms:
                c.close()
        forged = sw.pipeline.counter_read(n.COUNTER_REJECTED, n.REJECT_FORGED_RESULT).packets
        not_member = sw.pipeline.counter_read(n.COUNTER_REJECTED, n.REJECT_NOT_MEMBER).packets
        per_job = sw.counter(n.COUNTER_NOT_MEMBER)
    sent = attacker.sent
    assert sent["forged_result"] >= 100 and sent["retransmit"] >= 50
    assert forged == sent["forged_result"]
    assert not_member == per_job == sent["impersonation"] + sent["retransmit"]
    # nothing of the job reached the attacker's port (no result, no resend, no flood)
    leaked = [f for f in attacker.received if (p := udp_payload(f)) is not None
              and len(p[1]) >= wire.AGG_HEADER_LEN and p[1][1:3] == JOB.to_bytes(2, "big")]
    assert leaked == []
