"""The pipeline on real interfaces: p4reduce-switch as its own process, its ports veth
pairs into a network namespace, configured over P4Runtime — the path BMv2 takes, so the
wired plumbing is exercised even where BMv2 is absent. Root only."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from p4reduce import contract as n
from p4reduce.worker import wire
from tests.pipeline import wired
from tests.pipeline.case import Case, Entry, Expect, Send
from tests.pipeline.packets import (
    AGG_IP,
    AGG_MAC,
    agg_frame,
    arp_reply,
    arp_request,
    host,
    result_frame,
    tcp_frame,
)
from tests.pipeline.scenarios import JOB, round_steps, wrap_sum
from tests.pipeline.targets import run_case
from tests.pipeline.topo import base_entities, hosts, job_entities, mac_int

PORTS = 4
K = 8


@pytest.fixture
def target() -> Iterator[wired.WiredTarget]:
    reason = wired.unavailable("p4reduce-switch")
    if reason is not None:
        pytest.skip(f"wired softswitch tests {reason}")
    t = wired.softswitch(range(1, PORTS + 1), NUM_LANES=K)
    yield t
    t.close()


@pytest.mark.timeout(120)
def test_wired_aggregation_with_duplicate_resend_and_rejection(target: wired.WiredTarget) -> None:
    ws = hosts(3)
    rng = np.random.default_rng(3)
    values = [rng.integers(-(2**31), 2**31 - 1, size=K, endpoint=True).astype(np.int32)
              for _ in range(3)]
    steps = round_steps(ws, [1, 2, 0], values, [3, -4, 9], slot=1, rnd=5)
    dup = Send(ws[1].port, agg_frame(ws[1], JOB, 1, 1, 5, values[1], exp=3, offset=101,
                                     flags=wire.FLAG_RETRANSMIT))
    resend = Send(ws[2].port, agg_frame(ws[2], JOB, 2, 1, 5, values[2], offset=101,
                                        flags=wire.FLAG_RETRANSMIT),
                  (Expect(ws[2].port, result_frame(ws[2], JOB, 2, 1, 5, wrap_sum(values), exp=9,
                                                   offset=101, flags=wire.FLAG_RETRANSMIT)),))
    outsider = host(PORTS)
    reject = Send(outsider.port, agg_frame(outsider, JOB, 0, 1, 5, values[0]))
    case = Case("wired", base_entities(PORTS) + job_entities(JOB, ws, base=0, num_slots=2),
                [steps[0], dup, reject, steps[1], steps[2], resend],
                {(n.COUNTER_AGGREGATED, JOB): 3, (n.COUNTER_DUPLICATES, JOB): 1,
                 (n.COUNTER_RESENT, JOB): 1, (n.COUNTER_RESULTS, JOB): 1,
                 (n.COUNTER_NOT_MEMBER, JOB): 1})
    run_case(target, case)


@pytest.mark.timeout(120)
def test_wired_l2_flood_and_arp(target: wired.WiredTarget) -> None:
    h1, h2, h3 = host(1), host(2), host(3)
    known, unknown = tcp_frame(h1, h2), tcp_frame(h3, host(99))
    case = Case(
        "wired l2",
        [*base_entities(PORTS), Entry(n.TABLE_L2.name, {"hdr.ethernet.dstAddr": mac_int(h2.mac)},
                                      n.ACTION_FORWARD.name, {"port": 2})],
        [
            Send(1, known, (Expect(2, known),)),
            Send(3, unknown, tuple(Expect(p, unknown) for p in (1, 2, 4))),
            Send(3, arp_request(h3, AGG_IP), (Expect(3, arp_reply(h3, AGG_MAC, AGG_IP)),)),
        ],
    )
    run_case(target, case)
