"""Packet tests of p4src/aggregator.p4, target-neutral (tests/pipeline): on softswitch
in-process always, on BMv2 when p4c, simple_switch_grpc and root are available.

Entities always go through P4Runtime; P4REDUCE_TEST_INSTALL=direct installs through the
runtime's control surface instead, to tell a P4Runtime-path bug from a program bug."""

from __future__ import annotations

import itertools
import os
import random
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
from tests.pipeline.targets import SoftswitchTarget, Target, run_case
from tests.pipeline.topo import NUM_PORTS, base_entities, hosts, ip_int, job_entities, mac_int

INSTALL = os.environ.get("P4REDUCE_TEST_INSTALL", "p4runtime")
K = 8  # lanes of the test build: the same program, fewer copies of the lane control
I32 = np.iinfo(np.int32)


def make_target(kind: str, lanes: int | None) -> Target:
    """A fresh switch of `kind`; lanes None is the program's default build (K = 64)."""
    defines = {} if lanes is None else {"NUM_LANES": lanes}
    if kind == "bmv2":
        reason = wired.unavailable("simple_switch_grpc")
        if reason is not None:
            pytest.skip(f"BMv2 tests: {reason}")
        return wired.bmv2(range(1, NUM_PORTS + 1), **defines)
    return SoftswitchTarget(install=INSTALL, **defines)


@pytest.fixture(params=["softswitch", "bmv2"])
def target(request: pytest.FixtureRequest) -> Iterator[Target]:
    t = make_target(request.param, K)
    yield t
    t.close()


@pytest.fixture(params=["softswitch", "bmv2"])
def target64(request: pytest.FixtureRequest) -> Iterator[Target]:
    t = make_target(request.param, None)
    yield t
    t.close()


def random_values(rng: np.random.Generator, count: int) -> list[np.ndarray]:
    return [rng.integers(I32.min, I32.max, size=K, endpoint=True).astype(np.int32) for _ in range(count)]


def completion_case(w_count: int, order: list[int], seed: int = 0) -> Case:
    rng = np.random.default_rng(seed)
    ws = hosts(w_count)
    values = random_values(rng, w_count)
    exps = [int(x) for x in rng.integers(-20, 20, size=w_count)]
    return Case(
        f"W={w_count} order={order[:6]}",
        base_entities() + job_entities(JOB, ws, base=3, num_slots=4),
        round_steps(ws, order, values, exps, slot=2),
        {(n.COUNTER_AGGREGATED, JOB): w_count, (n.COUNTER_RESULTS, JOB): 1,
         (n.COUNTER_DUPLICATES, JOB): 0},
    )


@pytest.mark.timeout(120)
@pytest.mark.parametrize("w_count", [1, 2, 8, 32])
def test_every_worker_count_completes_with_the_exact_sum(target: Target, w_count: int) -> None:
    order = list(range(w_count))
    random.Random(w_count).shuffle(order)
    run_case(target, completion_case(w_count, order, seed=w_count))


@pytest.mark.timeout(120)
def test_three_workers_in_every_order(target: Target) -> None:
    for slot, order in enumerate(itertools.permutations(range(3))):
        ws = hosts(3)
        rng = np.random.default_rng(slot)
        values = random_values(rng, 3)
        case = Case(f"order {order}", [], round_steps(ws, list(order), values, [1, -2, 3], slot=slot))
        if slot == 0:
            case.entities = base_entities() + job_entities(JOB, ws, base=0, num_slots=6)
        run_case(target, case)
    assert target.counter(n.COUNTER_RESULTS, JOB)[0] == 6
    assert target.counter(n.COUNTER_AGGREGATED, JOB)[0] == 18


@pytest.mark.timeout(60)
def test_duplicate_before_completion_is_dropped_and_not_counted_twice(target: Target) -> None:
    ws = hosts(3)
    values = [np.full(K, v, dtype=np.int32) for v in (10, 20, 30)]
    steps = round_steps(ws, [0, 1, 2], values, [0, 0, 0])
    dup = Send(ws[0].port, agg_frame(ws[0], JOB, 0, 0, 0, values[0], flags=wire.FLAG_RETRANSMIT,
                                     offset=100))
    case = Case("duplicate", base_entities() + job_entities(JOB, ws, base=0, num_slots=1),
                [steps[0], dup, steps[1], dup, steps[2]],
                {(n.COUNTER_DUPLICATES, JOB): 2, (n.COUNTER_AGGREGATED, JOB): 3,
                 (n.COUNTER_RESULTS, JOB): 1})
    run_case(target, case)


@pytest.mark.timeout(60)
def test_retransmission_after_completion_gets_the_stored_result_alone(target: Target) -> None:
    ws = hosts(3)
    values = [np.array([I32.max, I32.min, -1, 1, 0, 5, 6, 7], dtype=np.int32)] * 3
    total = wrap_sum(values)
    steps = round_steps(ws, [2, 0, 1], values, [4, -9, 2], slot=1, rnd=41)
    again = agg_frame(ws[2], JOB, 2, 1, 41, np.zeros(K, np.int32), exp=0,
                      flags=wire.FLAG_RETRANSMIT, offset=101)
    resent = result_frame(ws[2], JOB, 2, 1, 41, total, exp=4, flags=wire.FLAG_RETRANSMIT,
                          offset=101)
    case = Case("resend", base_entities() + job_entities(JOB, ws, base=0, num_slots=2),
                [*steps, Send(ws[2].port, again, (Expect(ws[2].port, resent),))],
                {(n.COUNTER_RESENT, JOB): 1, (n.COUNTER_RESULTS, JOB): 1,
                 (n.COUNTER_DUPLICATES, JOB): 0})
    run_case(target, case)


@pytest.mark.timeout(60)
def test_exponent_maximum_is_signed(target: Target) -> None:
    ws = hosts(3)
    zero = [np.zeros(K, np.int32)] * 3
    steps = round_steps(ws, [0, 1, 2], zero, [-5, 3, -128], slot=0)
    steps += round_steps(ws, [1, 2, 0], zero, [-5, -3, -100], slot=1)
    steps += round_steps(ws, [0, 2, 1], zero, [127, -1, 0], slot=2)
    run_case(target, Case("exp", base_entities() + job_entities(JOB, ws, base=0, num_slots=3),
                          steps))


@pytest.mark.timeout(60)
def test_two_jobs_interleaved_on_disjoint_ranges_with_equal_slots(target: Target) -> None:
    a, b = hosts(2, first=1), hosts(3, first=3)
    rng = np.random.default_rng(5)
    va, vb = random_values(rng, 2), random_values(rng, 3)
    sa = round_steps(a, [0, 1], va, [0, 1], job=1, slot=0)
    sb = round_steps(b, [2, 0, 1], vb, [2, 0, 0], job=2, slot=0)
    steps = [sb[0], sa[0], sb[1], sa[1], sb[2]]
    case = Case("two jobs",
                base_entities() + job_entities(1, a, base=0, num_slots=2)
                + job_entities(2, b, base=2, num_slots=2),
                steps,
                {(n.COUNTER_RESULTS, 1): 1, (n.COUNTER_RESULTS, 2): 1,
                 (n.COUNTER_AGGREGATED, 1): 2, (n.COUNTER_AGGREGATED, 2): 3})
    run_case(target, case)


@pytest.mark.timeout(60)
def test_every_rejection_reason_is_dropped_and_counted(target: Target) -> None:
    ws = hosts(3)
    outsider = host(NUM_PORTS)
    v = np.ones(K, np.int32)
    rejects = [
        Send(1, agg_frame(ws[0], 99, 0, 0, 0, v)),  # unknown job
        Send(1, agg_frame(ws[0], 2000, 0, 0, 0, v)),  # beyond MAX_JOBS: unknown too
        Send(1, agg_frame(ws[0], JOB, 0, 2, 0, v)),  # slot == num_slots
        Send(outsider.port, agg_frame(outsider, JOB, 1, 0, 0, v)),  # not a member
        Send(1, agg_frame(ws[0], JOB, 1, 0, 0, v)),  # worker 1's id from worker 0's address
        Send(1, agg_frame(ws[0], JOB, 3, 0, 0, v)),  # worker_id == W: nobody's
        Send(1, agg_frame(ws[0], JOB, 31, 0, 0, v)),
        # a member whose child index is beyond the 32-bit bitmap (an entry error)
        Send(outsider.port, agg_frame(outsider, JOB, 200, 0, 0, v)),
    ]
    beyond = Entry(n.TABLE_MEMBERS.name, {"hdr.agg.job_id": JOB, "hdr.agg.worker_id": 200,
                                          "hdr.ipv4.srcAddr": ip_int(outsider.ip),
                                          "standard_metadata.ingress_port": outsider.port},
                   n.ACTION_MEMBER_OK.name, {"child": n.MAX_WORKERS})
    # Nothing rejected touched the registers: the round still sums exactly three ones.
    steps = rejects + round_steps(ws, [0, 1, 2], [v, v, v], [0, 0, 0])
    case = Case("rejections",
                [*base_entities(), *job_entities(JOB, ws, base=0, num_slots=2), beyond], steps,
                {(n.COUNTER_REJECTED, n.REJECT_UNKNOWN_JOB): 2,
                 (n.COUNTER_REJECTED, n.REJECT_BAD_SLOT): 1,
                 (n.COUNTER_REJECTED, n.REJECT_NOT_MEMBER): 4,
                 (n.COUNTER_REJECTED, n.REJECT_BAD_WORKER): 1,
                 (n.COUNTER_BAD_SLOT, JOB): 1, (n.COUNTER_NOT_MEMBER, JOB): 4,
                 (n.COUNTER_AGGREGATED, JOB): 3, (n.COUNTER_RESULTS, JOB): 1})
    run_case(target, case)


@pytest.mark.timeout(60)
def test_packet_of_an_older_round_is_stale(target: Target) -> None:
    ws = hosts(2)
    v = [np.full(K, 3, np.int32), np.full(K, 4, np.int32)]
    steps = round_steps(ws, [0, 1], v, [0, 0], rnd=0) + round_steps(ws, [1, 0], v, [0, 0], rnd=1)
    steps.append(Send(ws[0].port, agg_frame(ws[0], JOB, 0, 0, 2, v[0])))  # opens round 2
    late = Send(ws[1].port, agg_frame(ws[1], JOB, 1, 0, 0, v[1], flags=wire.FLAG_RETRANSMIT))
    steps.append(late)
    steps.append(Send(ws[1].port, agg_frame(ws[1], JOB, 1, 0, 1, v[1], flags=wire.FLAG_RETRANSMIT),
                      (Expect(ws[1].port, result_frame(ws[1], JOB, 1, 0, 1, wrap_sum(v),
                                                      flags=wire.FLAG_RETRANSMIT)),)))
    steps += round_steps(ws, [1], v, [0, 0], rnd=2)
    case = Case("stale", base_entities() + job_entities(JOB, ws, base=0, num_slots=1), steps,
                {(n.COUNTER_STALE, JOB): 1, (n.COUNTER_RESENT, JOB): 1,
                 (n.COUNTER_RESULTS, JOB): 3})
    run_case(target, case)


@pytest.mark.timeout(60)
def test_new_epoch_ignores_leftover_state_of_the_slot_range(target: Target) -> None:
    old, new = hosts(3, first=1), hosts(2, first=5)
    junk = np.full(K, 1000, np.int32)
    leftovers = [
        Send(old[0].port, agg_frame(old[0], 1, 0, 0, 0, junk)),  # half-done round 0
        Send(old[1].port, agg_frame(old[1], 1, 1, 1, 5, junk)),  # round 5 on slot 1's shadow 1
    ]
    run_case(target, Case("old job", base_entities() + job_entities(1, old, base=8, num_slots=2,
                                                                    epoch=1), leftovers))
    rng = np.random.default_rng(9)
    v = random_values(rng, 2)
    steps = round_steps(new, [0, 1], v, [1, 2], job=2, slot=0, rnd=0)
    steps += round_steps(new, [1, 0], v, [1, 2], job=2, slot=1, rnd=1)
    run_case(target, Case("new job", job_entities(2, new, base=8, num_slots=2, epoch=2), steps,
                          {(n.COUNTER_RESULTS, 2): 2, (n.COUNTER_STALE, 2): 0}))


@pytest.mark.timeout(60)
def test_l2_forwarding_flooding_and_arp_reply(target: Target) -> None:
    h1, h2, h3 = host(1), host(2), host(3)
    from tests.pipeline.case import Entry

    known = tcp_frame(h1, h2)
    unknown = tcp_frame(h2, host(77))
    ask_agg = arp_request(h3, AGG_IP)
    ask_host = arp_request(h1, h2.ip)

    def flood(frame: bytes, port: int) -> tuple[Expect, ...]:
        return tuple(Expect(p, frame) for p in range(1, NUM_PORTS + 1) if p != port)
    case = Case(
        "l2",
        [*base_entities(), Entry(n.TABLE_L2.name, {"hdr.ethernet.dstAddr": mac_int(h2.mac)},
                                 n.ACTION_FORWARD.name, {"port": h2.port})],
        [
            Send(1, known, (Expect(2, known),)),
            Send(2, unknown, flood(unknown, 2)),
            Send(3, ask_agg, (Expect(3, arp_reply(h3, AGG_MAC, AGG_IP)),)),
            Send(1, ask_host, flood(ask_host, 1)),
        ],
    )
    run_case(target, case)


@pytest.mark.timeout(60)
def test_default_build_sums_sixty_four_lanes(target64: Target) -> None:
    ws = hosts(4)
    rng = np.random.default_rng(64)
    values = [rng.integers(I32.min, I32.max, size=64, endpoint=True).astype(np.int32)
              for _ in range(4)]
    steps = round_steps(ws, [3, 1, 0, 2], values, [5, -3, 7, 0], slot=9, rnd=200)
    again = agg_frame(ws[1], JOB, 1, 9, 200, values[1], flags=wire.FLAG_RETRANSMIT, offset=109)
    steps.append(Send(ws[1].port, again, (Expect(ws[1].port, result_frame(
        ws[1], JOB, 1, 9, 200, wrap_sum(values), exp=7, flags=wire.FLAG_RETRANSMIT,
        offset=109)),)))
    run_case(target64, Case("K=64", base_entities() + job_entities(JOB, ws, base=16000,
                                                                   num_slots=10), steps,
                            {(n.COUNTER_RESULTS, JOB): 1, (n.COUNTER_RESENT, JOB): 1}))


@pytest.mark.timeout(60)
def test_traffic_that_is_not_a_contribution_is_never_aggregated(target: Target) -> None:
    """Short agg packets are dropped; a result from a host port is dropped as forged; other
    UDP ports and IPv4 with options are ordinary traffic; none of them touches the job's
    state or per-job counters."""
    from scapy.layers.inet import IP, UDP, IPOption_NOP
    from scapy.layers.l2 import Ether

    ws = hosts(2)
    v = [np.full(K, 2, np.int32), np.full(K, 5, np.int32)]
    full = agg_frame(ws[0], JOB, 0, 0, 0, v[0])
    short = full[:-4]
    as_result = agg_frame(ws[0], JOB, 0, 0, 0, v[0], flags=wire.FLAG_RESULT)
    other_port = bytes(Ether(src=ws[0].mac, dst=AGG_MAC) / IP(src=ws[0].ip, dst=AGG_IP)
                       / UDP(sport=1, dport=wire.AGG_UDP_PORT + 1) / full[42:])
    with_options = bytes(Ether(src=ws[0].mac, dst=AGG_MAC)
                         / IP(src=ws[0].ip, dst=AGG_IP, options=[IPOption_NOP()] * 4)
                         / UDP(sport=ws[0].udp_port, dport=wire.AGG_UDP_PORT, chksum=0)
                         / full[42:])
    from tests.pipeline.case import Entry

    forward_agg = Entry(n.TABLE_L2.name, {"hdr.ethernet.dstAddr": mac_int(AGG_MAC)}, n.ACTION_FORWARD.name,
                        {"port": 30})
    steps = [
        Send(1, short),
        Send(1, as_result),
        Send(1, other_port, (Expect(30, other_port),)),
        Send(1, with_options, (Expect(30, with_options),)),
        *round_steps(ws, [1, 0], v, [0, 0]),
    ]
    run_case(target, Case("not contributions",
                          [*base_entities(), forward_agg,
                           *job_entities(JOB, ws, base=0, num_slots=1)], steps,
                          {(n.COUNTER_AGGREGATED, JOB): 2, (n.COUNTER_DUPLICATES, JOB): 0,
                           (n.COUNTER_REJECTED, n.REJECT_UNKNOWN_JOB): 0,
                           (n.COUNTER_REJECTED, n.REJECT_FORGED_RESULT): 1}))


@pytest.mark.timeout(60)
def test_replica_without_an_address_is_dropped(target: Target) -> None:
    from tests.pipeline.case import Entry, Group

    ws = hosts(3)
    entities = [e for e in job_entities(JOB, ws, base=0, num_slots=1)
                if not (isinstance(e, Entry) and e.table == n.TABLE_RESULT_REWRITE.name
                        and e.match["replica_id"] == 1)]
    assert any(isinstance(e, Group) for e in entities)
    v = [np.full(K, i, np.int32) for i in range(3)]
    steps = round_steps(ws, [0, 1, 2], v, [0, 0, 0])
    last = steps[-1]
    steps[-1] = Send(last.port, last.frame, tuple(e for e in last.expect if e.port != ws[1].port))
    run_case(target, Case("no rewrite", base_entities() + entities, steps))


@pytest.mark.timeout(60)
def test_slot_beyond_the_register_space_is_rejected(target: Target) -> None:
    """A job whose range the controller let run past NUM_SLOTS cannot index outside the
    registers: its last in-range slot works, the next one is a bad slot."""
    ws = hosts(1)
    last = n.DEFAULT_SLOT_PAIRS - 1
    v = [np.full(K, 9, np.int32)]
    steps = round_steps(ws, [0], v, [0], slot=0)
    steps.append(Send(ws[0].port, agg_frame(ws[0], JOB, 0, 1, 0, v[0])))
    case = Case("register space", base_entities() + job_entities(JOB, ws, base=last,
                                                                 num_slots=4), steps,
                {(n.COUNTER_RESULTS, JOB): 1, (n.COUNTER_BAD_SLOT, JOB): 1,
                 (n.COUNTER_REJECTED, n.REJECT_BAD_SLOT): 1})
    run_case(target, case)
