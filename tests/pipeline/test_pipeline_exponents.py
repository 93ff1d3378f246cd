"""Packet tests of the exponent rounds of p4src/aggregator.p4 (docs/WIRE.md): the lanes of
EXP_ONLY packets (order-encoded signed values) are combined by their maximum, a call's
exponent packets carry its descriptor and the packed proposals of its chunks, and ranks
streaming calls of different sizes all fail. On softswitch in-process always, on BMv2 when p4c, simple_switch_grpc and
root are available."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import numpy as np
import pytest

from p4reduce import contract as n
from p4reduce.worker import AllreduceError, quant, wire
from p4reduce.worker.plans import CallPlan, check_descriptor, descriptor
from tests.pipeline.case import Case, Expect, Send
from tests.pipeline.packets import Host, agg_frame, parse_result, result_frame
from tests.pipeline.scenarios import JOB, wrap_sum
from tests.pipeline.targets import Target, run_case
from tests.pipeline.test_pipeline import make_target
from tests.pipeline.topo import base_entities, hosts, job_entities

K = 8
I32 = np.iinfo(np.int32)
EXP = wire.FLAG_EXP_ONLY


@pytest.fixture(params=["softswitch", "bmv2"])
def target(request: pytest.FixtureRequest) -> Iterator[Target]:
    t = make_target(request.param, K)
    yield t
    t.close()


def smax(rows: list[np.ndarray]) -> np.ndarray:
    """Signed maximum per lane, as int32."""
    return np.max(np.asarray(rows, dtype=np.int64), axis=0).astype(np.int32)


def emax(lanes: list[np.ndarray]) -> np.ndarray:
    """What the switch returns for order-encoded lanes: the encoding of the maximum."""
    return wire.order_encode(smax([wire.order_decode(x) for x in lanes]))


def exp_round(ws: list[Host], order: list[int], values: list[np.ndarray], *, slot: int = 0,
              rnd: int = 0, flags: int = EXP, offset: int = 0) -> list[Send]:
    """Each worker in `order` sends its values once (order-encoded in an exponent round);
    the last one gets the result, sent to all."""
    lanes = [wire.order_encode(v) for v in values] if flags & EXP else values
    combined = emax(lanes) if flags & EXP else wrap_sum(lanes)
    steps = []
    for i, w in enumerate(order):
        frame = agg_frame(ws[w], JOB, w, slot, rnd, lanes[w], exp=quant.EXP_ZERO, flags=flags,
                          offset=offset)
        expect: tuple[Expect, ...] = ()
        if i == len(order) - 1:
            expect = tuple(Expect(h.port, result_frame(h, JOB, w, slot, rnd, combined,
                                                       exp=quant.EXP_ZERO, flags=flags,
                                                       offset=offset)) for h in ws)
        steps.append(Send(ws[w].port, frame, expect))
    return steps


SIGNED = [
    np.array([-128, 127, -1, 0, I32.min, I32.max, 5, -128], dtype=np.int32),
    np.array([-127, 126, -2, 1, I32.min + 1, I32.max - 1, -5, -128], dtype=np.int32),
    np.array([127, -128, 3, -1, -7, 0, 5, -128], dtype=np.int32),
]


@pytest.mark.timeout(120)
def test_exponent_lanes_take_the_signed_maximum_in_every_order(target: Target) -> None:
    """-128 (no exponent: an all-zero chunk) loses to everything, 127 (poison) wins, and
    negative lanes are below positive ones, whoever comes first."""
    ws = hosts(3)
    want = smax(SIGNED)
    assert want.tolist() == [127, 127, 3, 1, -7, I32.max, 5, -128]
    for slot, order in enumerate(itertools.permutations(range(3))):
        case = Case(f"order {order}", [], exp_round(ws, list(order), SIGNED, slot=slot))
        if slot == 0:
            case.entities = base_entities() + job_entities(JOB, ws, base=0, num_slots=6)
        run_case(target, case)
    assert target.counter(n.COUNTER_RESULTS, JOB)[0] == 6


@pytest.mark.timeout(120)
def test_the_packets_flags_pick_max_or_sum_round_by_round(target: Target) -> None:
    """One slot alternates exponent rounds and data rounds: each round combines by its own
    packets' flag, and nothing of the previous round leaks into the next."""
    ws = hosts(2)
    rng = np.random.default_rng(3)
    steps: list[Send] = []
    for rnd in range(6):
        lanes = [rng.integers(I32.min, I32.max, size=K, endpoint=True).astype(np.int32)
                 for _ in ws]
        steps += exp_round(ws, [rnd % 2, 1 - rnd % 2], lanes, rnd=rnd,
                           flags=EXP if rnd % 2 == 0 else 0, offset=8 * rnd)
    run_case(target, Case("alternating", base_entities() + job_entities(JOB, ws, base=2,
                                                                         num_slots=1), steps,
                          {(n.COUNTER_RESULTS, JOB): 6, (n.COUNTER_STALE, JOB): 0}))


def rank_plan(n_floats: int, n_ints: int, seed: int) -> CallPlan:
    """A rank's plan of a call (the worker's own code): its exponent packets' lanes."""
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(n_floats) * 10.0 ** rng.integers(-30, 30, n_floats)).astype(np.float32)
    x[8:16] = 0.0  # an all-zero chunk: EXP_ZERO
    return CallPlan(x, np.zeros(n_ints, np.int32), K, quant.shift_for(3))


@pytest.mark.timeout(120)
def test_packed_exponent_round_with_a_loss_and_duplicates(target: Target) -> None:
    """Three ranks, 30 float chunks each: 6 descriptor lanes and 30 proposals make 5
    exponent packets per rank. Rank 1's packet of slot 2 is lost and resent, rank 0 sends
    a duplicate before completion (dropped), rank 2 resends after completion (gets the
    stored result alone). Every rank reads the same agreed exponents: the maximum of the
    three proposals of each chunk."""
    ws = hosts(3)
    plans = [rank_plan(30 * K, 5, seed) for seed in range(3)]
    lanes = [p.lanes for p in plans]
    assert lanes[0].shape == (5, K) and plans[0].n_exp == 5
    agreed = np.max([p.proposals for p in plans], axis=0)
    assert (agreed == quant.EXP_ZERO).sum() == 1  # chunk 1 is all zeros on every rank
    steps: list[Send] = []
    results = []
    for slot in range(5):
        rows = [lanes[r][slot] for r in range(3)]  # as the ranks send them: order-encoded
        combined = emax(rows)
        results.append(combined)

        def send(r: int, flags: int = EXP, to: tuple[Host, ...] = ()) -> Send:
            frame = agg_frame(ws[r], JOB, r, slot, 0, rows[r], exp=quant.EXP_ZERO,  # noqa: B023
                              flags=flags, offset=slot * K)  # noqa: B023
            return Send(ws[r].port, frame, tuple(
                Expect(h.port, result_frame(h, JOB, r, slot, 0, combined,  # noqa: B023
                                            exp=quant.EXP_ZERO, flags=flags,
                                            offset=slot * K))  # noqa: B023
                for h in to))

        retx = EXP | wire.FLAG_RETRANSMIT
        if slot == 2:  # rank 1's first send lost; rank 0 duplicated; rank 1 resends
            steps += [send(0), send(0, retx), send(2), send(1, retx, tuple(ws)),
                      send(2, retx, (ws[2],))]
        else:
            steps += [send(0), send(1), send(2, EXP, tuple(ws))]
    run_case(target, Case("packed exponents", base_entities()
                          + job_entities(JOB, ws, base=10, num_slots=5), steps,
                          {(n.COUNTER_RESULTS, JOB): 5, (n.COUNTER_DUPLICATES, JOB): 1,
                           (n.COUNTER_RESENT, JOB): 1}))
    for plan in plans:  # every rank's plan reads the results: the descriptor holds, and
        # the agreed exponents are the maximum of the ranks' proposals
        idx = np.arange(5)
        plan.on_result(idx, np.full(5, quant.EXP_ZERO, np.int8), np.array(results))
        np.testing.assert_array_equal(plan.agreed, agreed)


@pytest.mark.timeout(120)
@pytest.mark.parametrize(("sizes", "why"), [
    ([(100, 0), (100, 0), (101, 0)], "one rank has one float more"),
    ([(100, 0), (40, 0), (100, 0)], "one rank has fewer floats"),
    ([(64, 3), (64, 3), (64, 4)], "the int32 segments differ"),
    ([(64, 0), (0, 64), (64, 0)], "floats against ints"),
    ([(2**31 + 5, 0), (5, 0), (5, 0)], "counts that agree mod 2^31"),
])
def test_mixed_size_calls_fail_on_every_rank(target: Target, sizes: list[tuple[int, int]],
                                             why: str) -> None:
    """Each rank's first exponent packet carries its descriptor; the switch's maximum
    shows every rank, whatever its own size, that some rank differs."""
    ws = hosts(3)
    rows = [np.concatenate([descriptor(nf, ni), np.full(K - n.DESCRIPTOR_LANES,
                                                          quant.EXP_ZERO)]).astype(np.int32)
            for nf, ni in sizes]
    run_case(target, Case(why, base_entities() + job_entities(JOB, ws, base=0, num_slots=1),
                          exp_round(ws, [0, 1, 2], rows)))
    got = target.send(ws[0].port, agg_frame(ws[0], JOB, 0, 0, 0, wire.order_encode(rows[0]), flags=EXP
                                            | wire.FLAG_RETRANSMIT, exp=quant.EXP_ZERO), 1)
    result = wire.order_decode(parse_result(got[0][1], K)[1][: n.DESCRIPTOR_LANES])
    for nf, ni in sizes:
        with pytest.raises(AllreduceError, match="not reducing tensors of the same size"):
            check_descriptor(nf, ni, result)


def test_order_encoding_ranks_lanes_by_their_lowest_differing_bit() -> None:
    """What the P4 lane action relies on: of two encoded lanes, the one holding the lowest
    bit in which they differ decodes to the larger signed value."""
    rng = np.random.default_rng(1)
    a = np.concatenate([rng.integers(I32.min, I32.max, 2000, endpoint=True),
                        [-128, 127, I32.min, I32.max, 0, -1]]).astype(np.int32)
    b = np.concatenate([rng.integers(I32.min, I32.max, 2000, endpoint=True),
                        [127, -128, I32.max, I32.min, -1, 0]]).astype(np.int32)
    ea, eb = (wire.order_encode(x).view(np.uint32) for x in (a, b))
    d = ea ^ eb
    lowest = d & (np.uint32(0) - d)
    a_wins = (ea & lowest) != 0
    np.testing.assert_array_equal(np.where(a_wins, a, b), np.maximum(a, b))
    assert [n.order_encode(int(v)) for v in a[-6:]] == ea[-6:].tolist()


def test_equal_calls_pass_the_descriptor_check() -> None:
    lanes = [descriptor(1000, 7)] * 3
    check_descriptor(1000, 7, smax(lanes))
    check_descriptor(2**40 + 3, 2**33, descriptor(2**40 + 3, 2**33))
