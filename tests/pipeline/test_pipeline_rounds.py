"""In-process pipeline properties of p4src/aggregator.p4 on softswitch: long runs of
rounds on the same slots and random interleavings with duplicates."""

from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tests.support.refswitch as refswitch
from p4reduce import contract as n
from p4reduce.worker import wire
from tests.pipeline.packets import agg_frame, parse_result
from tests.pipeline.targets import SoftswitchTarget
from tests.pipeline.topo import base_entities, hosts, job_entities

K = 8
JOB = 3


@pytest.fixture(scope="module")
def soft() -> Iterator[SoftswitchTarget]:
    t = SoftswitchTarget(install=os.environ.get("P4REDUCE_TEST_INSTALL", "p4runtime"), NUM_LANES=K)
    yield t
    t.close()


def wrap(total: np.ndarray) -> np.ndarray:
    return (total.astype(np.int64) & 0xFFFFFFFF).astype(np.uint32).view(np.int32)


@pytest.mark.timeout(120)
def test_thousand_rounds_alternate_shadow_sets_and_wrap_int32(soft: SoftswitchTarget) -> None:
    ws = hosts(2)
    soft.install(base_entities() + job_entities(JOB, ws, base=100, num_slots=2, epoch=77))
    big = np.array([2**31 - 1, -(2**31), 2**30, -1, 1, 7, -7, 2**31 - 2], dtype=np.int64)
    for r in range(1000):
        slot = r % 2
        rnd = (r // 2) % 256
        a = np.roll(big, r).astype(np.int32)
        b = np.roll(big, -r).astype(np.int32) if r % 3 else a
        assert soft.send(ws[0].port, agg_frame(ws[0], JOB, 0, slot, rnd, a)) == []
        out = soft.send(ws[1].port, agg_frame(ws[1], JOB, 1, slot, rnd, b))
        assert sorted(p for p, _ in out) == [ws[0].port, ws[1].port], f"round {r}"
        want = wrap(a.astype(np.int64) + b)
        for _, frame in out:
            hdr, values = parse_result(frame, K)
            assert (hdr.slot, hdr.round, hdr.flags & wire.FLAG_RESULT) == (slot, rnd, 1)
            np.testing.assert_array_equal(values, want, err_msg=f"round {r}")
    assert soft.counter(n.COUNTER_RESULTS, JOB)[0] == 1000
    assert soft.counter(n.COUNTER_STALE, JOB)[0] == 0


_epoch = iter(range(1000, 2**24))
_installed: set[int] = set()


@st.composite
def schedules(draw: st.DrawFn) -> tuple[int, int, list[tuple[int, int, bool]], list[list[int]]]:
    """(workers, slots, sends as (worker, slot, is_duplicate), per-send seeds)."""
    w = draw(st.integers(2, 5))
    s = draw(st.integers(1, 3))
    firsts = [(wk, sl) for wk in range(w) for sl in range(s)]
    order = draw(st.permutations(firsts))
    sends: list[tuple[int, int, bool]] = []
    for wk, sl in order:
        sends.append((wk, sl, False))
    dups = draw(st.lists(st.tuples(st.integers(0, len(sends) - 1), st.sampled_from(firsts)),
                         max_size=6))
    for pos, (wk, sl) in sorted(dups, reverse=True):
        # a duplicate may only follow the original: insert it after the first send
        first = sends.index((wk, sl, False))
        sends.insert(max(pos, first) + 1, (wk, sl, True))
    values = draw(st.lists(st.lists(st.integers(-(2**31), 2**31 - 1), min_size=K, max_size=K),
                           min_size=w * s, max_size=w * s))
    return w, s, sends, values


@pytest.mark.timeout(240)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(schedules())
def test_random_interleavings_with_duplicates_give_exact_sums(
    soft: SoftswitchTarget, schedule: tuple[int, int, list[tuple[int, int, bool]], list[list[int]]]
) -> None:
    w, s, sends, values = schedule
    ws = hosts(w)
    job = 40 + w  # one job per worker count; a fresh epoch makes every example start clean
    entities = job_entities(job, ws, base=200, num_slots=s, epoch=next(_epoch))
    if job in _installed:
        soft.install(entities[:1], modify=True)  # the jobs entry: new epoch and slot count
    else:
        soft.install(entities)
        _installed.add(job)
    vals = {(wk, sl): np.array(values[wk * s + sl], dtype=np.int32) for wk in range(w)
            for sl in range(s)}
    want = {sl: wrap(np.sum([vals[(wk, sl)].astype(np.int64) for wk in range(w)], axis=0))
            for sl in range(s)}
    seen = {sl: 0 for sl in range(s)}
    results = {sl: 0 for sl in range(s)}
    for wk, sl, dup in sends:
        out = soft.send(ws[wk].port, agg_frame(ws[wk], job, wk, sl, 0, vals[(wk, sl)],
                                              flags=wire.FLAG_RETRANSMIT if dup else 0))
        if not dup:
            seen[sl] += 1
        complete = seen[sl] == w
        if not dup and complete:
            assert sorted(p for p, _ in out) == [h.port for h in ws]
            results[sl] += 1
        elif dup and complete:
            assert [p for p, _ in out] == [ws[wk].port]  # the stored result, to it alone
        else:
            assert out == []
        for _, frame in out:
            np.testing.assert_array_equal(parse_result(frame, K)[1], want[sl])
    assert all(count == 1 for count in results.values())


COUNTERS = {n.COUNTER_AGGREGATED: refswitch.AGGREGATED, n.COUNTER_RESULTS: refswitch.RESULTS,
            n.COUNTER_RESENT: refswitch.RESENT, n.COUNTER_DUPLICATES: refswitch.DUPLICATES,
            n.COUNTER_STALE: refswitch.STALE}


@pytest.mark.timeout(240)
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(w=st.integers(1, 4), slots=st.integers(1, 2), data=st.data())
def test_pipeline_agrees_with_the_reference_model(
    soft: SoftswitchTarget, w: int, slots: int, data: st.DataObject
) -> None:
    """Random packets of several rounds (including stale and duplicate ones, random
    exponents, exponent packets whose lanes take the maximum and data packets whose lanes
    add up) give the same frames out and the same counters as tests/refswitch.py."""
    ws = hosts(w)
    job = 60 + w
    epoch = next(_epoch)
    entities = job_entities(job, ws, base=300, num_slots=slots, epoch=epoch)
    if job in _installed:
        soft.install(entities[:1], modify=True)
    else:
        soft.install(entities)
        _installed.add(job)
    ref = refswitch.RefSwitch(k=K)
    ref.add_job(job, slots, w, base=300, epoch=epoch, ports=[h.port for h in ws])
    before = {name: soft.counter(name, job)[0] for name in COUNTERS}
    packets = data.draw(st.lists(st.tuples(
        st.integers(0, w - 1), st.integers(0, slots - 1), st.integers(0, 3),
        st.integers(-128, 127),
        st.sampled_from([0, wire.FLAG_RETRANSMIT, wire.FLAG_EXP_ONLY,
                         wire.FLAG_EXP_ONLY | wire.FLAG_RETRANSMIT]),
        st.lists(st.integers(-(2**31), 2**31 - 1), min_size=K, max_size=K)),
        min_size=1, max_size=40))
    for wk, sl, rnd, exp, flags, vals in packets:
        frame = agg_frame(ws[wk], job, wk, sl, rnd, vals, exp=exp, flags=flags)
        got = sorted((p, f[42:]) for p, f in soft.send(ws[wk].port, frame))
        want = sorted(ref.handle(ws[wk].port, frame[42:]))
        assert got == want, (wk, sl, rnd)
    for name, ref_name in COUNTERS.items():
        assert soft.counter(name, job)[0] - before[name] == ref.counter(job, ref_name), name
