"""The real aggregator program, vectorised and scalar, on the same random traffic: every
output frame and every lane register must agree, and complete rounds must carry sums. The
vectorised side runs on each back end in turn (the scalar Python code is the reference)."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether

from p4reduce import contract as n
from p4reduce.softswitch.p4 import compile_file
from p4reduce.softswitch.runtime import Pipeline
from p4reduce.softswitch.runtime.control import ActionCall, Exact, Replica, TableEntry
from p4reduce.worker.wire import AGG_UDP_PORT, FLAG_RESULT, AggHeader, pack_payload, unpack_payload
from tests.paths import ROOT
from tests.support.backends import BACKENDS, make

W = 3
JOB = 1


def _setup(p: Any) -> None:
    p.table_insert(n.TABLE_JOBS.name, TableEntry((Exact(JOB),), ActionCall(n.ACTION_SET_JOB.name, (0, 4, W, 1, 5))))
    for w in range(W):
        p.table_insert(n.TABLE_MEMBERS.name, TableEntry(
            (Exact(JOB), Exact(w), Exact(0x0A000001 + w), Exact(w + 1)),
            ActionCall(n.ACTION_MEMBER_OK.name, (w,))))
        p.table_insert(n.TABLE_RESULT_REWRITE.name, TableEntry(
            (Exact(JOB), Exact(w)), ActionCall(n.ACTION_SET_WORKER_ADDR.name, (0x020000000001 + w, 0x0A000001 + w, 40000 + w))))
    p.mc_group_set(1, tuple(Replica(w + 1, w) for w in range(W)))


_PREFIX: dict[int, bytes] = {}


def _frame(worker: int, slot: int, rnd: int, values: np.ndarray) -> bytes:
    payload = pack_payload(AggHeader(0, JOB, worker, slot, rnd, 0, 0), values)
    if worker not in _PREFIX:  # every payload has the same length: headers are reusable
        _PREFIX[worker] = bytes(Ether(src=f"02:00:00:00:00:0{worker + 1}", dst="02:00:00:00:00:ff")
                                / IP(src=f"10.0.0.{worker + 1}", dst="10.0.0.100")
                                / UDP(sport=40000 + worker, dport=AGG_UDP_PORT, chksum=0) / payload)[:42]
    return _PREFIX[worker] + payload


@pytest.fixture(scope="module")
def agg_ir() -> dict[str, object]:
    return compile_file(str(ROOT / "p4src" / "aggregator.p4"))


@pytest.mark.timeout(120)
@pytest.mark.parametrize("backend", BACKENDS)
def test_aggregator_vectorised_equals_scalar(agg_ir: dict[str, object], backend: str) -> None:
    vec, sca = make(agg_ir, backend), Pipeline(agg_ir, vectorize=False)
    assert not sca.plan.runs
    assert backend != "python" or vec.plan.runs
    for p in (vec, sca):
        _setup(p)
    rng = random.Random(3)
    nrng = np.random.default_rng(3)
    results = 0
    rounds = [0] * 4
    for _ in range(150):
        slot = rng.randrange(4)
        rnd = rounds[slot]
        order = list(range(W))
        rng.shuffle(order)
        sums = np.zeros(64, dtype=np.int64)
        for w in order:
            values = nrng.integers(-2**31, 2**31, size=64, dtype=np.int64).astype(np.int32)
            sums += values
            frame = _frame(w, slot, rnd, values)
            for _ in range(2 if rng.random() < 0.2 else 1):  # some retransmissions
                out_v, out_s = vec.process(w + 1, frame), sca.process(w + 1, frame)
                assert out_v == out_s
                for _, data in out_v:
                    hdr, vals = unpack_payload(data[42:])
                    if hdr.flags & FLAG_RESULT:
                        results += 1
                        wrapped = ((sums + 2**31) % 2**32 - 2**31).astype(np.int32)
                        assert np.array_equal(vals, wrapped)
        rounds[slot] = (rnd + 1) % 256
    assert results >= 150 * W  # every round completed and was multicast to all workers
    assert vec.stats == sca.stats
    for lane in (0, 17, 63):
        name = f"AggIngress.aggregation.lane_{lane}.sum"
        assert [vec.register_read(name, i) for i in range(16)] == [sca.register_read(name, i) for i in range(16)]
