"""Attacks on the aggregation path, as packet tests of p4src/aggregator.p4 (softswitch
always, BMv2 when available): forged results from a host port, a member impersonated from
another port, and a stored result asked for by someone else. None may change a result or
reach another host, and each is counted under its own reject reason."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import numpy as np
import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether

from p4reduce import contract as n
from p4reduce.worker import wire
from tests.pipeline.case import Case, Entry, Expect, Send
from tests.pipeline.packets import AGG_IP, AGG_MAC, agg_frame, result_frame
from tests.pipeline.scenarios import JOB, round_steps, wrap_sum
from tests.pipeline.targets import Target, run_case
from tests.pipeline.test_pipeline import K, make_target
from tests.pipeline.topo import NUM_PORTS, base_entities, hosts, job_entities, mac_int

ATTACKER = NUM_PORTS  # a host port with no member on it
PARENT = NUM_PORTS - 1  # the port a parent switch would sit on


@pytest.fixture(params=["softswitch", "bmv2"])
def target(request: pytest.FixtureRequest) -> Iterator[Target]:
    t = make_target(request.param, K)
    yield t
    t.close()


def _l2(h_mac: str, port: int) -> Entry:
    return Entry(n.TABLE_L2.name, {"hdr.ethernet.dstAddr": mac_int(h_mac)},
                 n.ACTION_FORWARD.name, {"port": port})


@pytest.mark.timeout(60)
def test_forged_results_from_a_host_port_are_dropped_and_counted(target: Target) -> None:
    ws = hosts(2)
    v = [np.full(K, 3, np.int32), np.full(K, 4, np.int32)]
    bogus = np.full(K, 1_000_000, np.int32)
    # what a worker would accept: from the aggregation address and port, to its own port
    to_worker = result_frame(ws[0], JOB, 1, 0, 0, bogus)
    # a RESULT-flagged agg header sent to the switch, and any frame from the switch's address
    flagged = agg_frame(ws[1], JOB, 1, 0, 0, bogus, flags=wire.FLAG_RESULT)
    from_agg_ip = bytes(Ether(src=AGG_MAC, dst=ws[0].mac) / IP(src=AGG_IP, dst=ws[0].ip)
                        / TCP(sport=1, dport=2))
    steps = [
        Send(ATTACKER, to_worker),
        Send(ws[1].port, flagged),  # even from a member's own port
        Send(ATTACKER, from_agg_ip),
        *round_steps(ws, [0, 1], v, [0, 0]),
        Send(ATTACKER, result_frame(ws[1], JOB, 0, 0, 0, bogus)),  # after completion, too
    ]
    run_case(target, Case(
        "forged results",
        [*base_entities(), _l2(ws[0].mac, ws[0].port), _l2(ws[1].mac, ws[1].port),
         *job_entities(JOB, ws, base=0, num_slots=1)],
        steps,
        {(n.COUNTER_REJECTED, n.REJECT_FORGED_RESULT): 4, (n.COUNTER_RESULTS, JOB): 1,
         (n.COUNTER_AGGREGATED, JOB): 2, (n.COUNTER_STALE, JOB): 0}))


@pytest.mark.timeout(60)
def test_the_parent_port_sends_this_switch_results_only(target: Target) -> None:
    """A tree of switches: the parent's answers are aggregation packets to this switch
    (tests/pipeline/test_pipeline_tree.py). A result-looking frame from the parent's
    port addressed to a worker is not one, and is as forged there as from a host port;
    ordinary traffic from the parent's port passes."""
    ws = hosts(1)
    result = result_frame(ws[0], JOB, 0, 0, 0, np.full(K, 9, np.int32))
    parent = Entry(n.TABLE_RESULT_PORTS.name, {"standard_metadata.ingress_port": PARENT},
                   n.ACTION_ALLOW_RESULTS.name)
    other = bytes(Ether(src="02:00:00:00:09:09", dst=ws[0].mac) / IP(src="10.0.9.9",
                                                                      dst=ws[0].ip)
                  / TCP(sport=1, dport=2))
    run_case(target, Case(
        "parent port",
        [*base_entities(), _l2(ws[0].mac, ws[0].port), parent],
        [Send(PARENT, result), Send(ATTACKER, result),
         Send(PARENT, other, (Expect(ws[0].port, other),))],
        {(n.COUNTER_REJECTED, n.REJECT_FORGED_RESULT): 2}))


@pytest.mark.timeout(60)
def test_member_impersonated_from_another_port_is_not_a_member(target: Target) -> None:
    """Rank 1's job, worker id, addresses and UDP port, from the attacker's port and from
    the port of another job's member: both rejected as not_member, and the round still
    sums exactly the real contributions."""
    a, b = hosts(2, first=1), hosts(2, first=3)
    rng = np.random.default_rng(17)
    va = [rng.integers(-1000, 1000, K).astype(np.int32) for _ in range(2)]
    poison = np.full(K, 12345, np.int32)
    spoof = replace(a[1], port=ATTACKER)
    steps = [
        Send(ATTACKER, agg_frame(spoof, 1, 1, 0, 0, poison)),
        Send(b[0].port, agg_frame(a[1], 1, 1, 0, 0, poison)),  # job 2's member port
        Send(ATTACKER, agg_frame(spoof, 1, 1, 0, 0, poison, flags=wire.FLAG_RETRANSMIT)),
        *round_steps(a, [0, 1], va, [0, 0], job=1),
    ]
    run_case(target, Case(
        "impersonation",
        [*base_entities(), *job_entities(1, a, base=0, num_slots=1),
         *job_entities(2, b, base=1, num_slots=1)],
        steps,
        {(n.COUNTER_REJECTED, n.REJECT_NOT_MEMBER): 3, (n.COUNTER_NOT_MEMBER, 1): 3,
         (n.COUNTER_AGGREGATED, 1): 2, (n.COUNTER_RESULTS, 1): 1}))


@pytest.mark.timeout(60)
def test_retransmission_never_sends_a_stored_result_to_anyone_but_the_member(
        target: Target) -> None:
    """After a round completes, RETRANSMIT as rank 2 from another port gets nothing; from
    rank 2's own port but another MAC and UDP port (another process on its host), the
    stored result still goes to rank 2's registered address only."""
    ws = hosts(3)
    rng = np.random.default_rng(23)
    v = [rng.integers(-(2**31), 2**31 - 1, K, endpoint=True).astype(np.int32) for _ in range(3)]
    steps = round_steps(ws, [0, 1, 2], v, [1, 2, 3], slot=1, rnd=7)
    zeros = np.zeros(K, np.int32)
    elsewhere = replace(ws[2], port=ATTACKER)
    same_port_other_process = replace(ws[2], mac="02:00:00:00:0a:0a", udp_port=31337)
    ask = dict(flags=wire.FLAG_RETRANSMIT, offset=101)
    stored = result_frame(ws[2], JOB, 2, 1, 7, wrap_sum(v), exp=3, **ask)
    steps += [
        Send(ATTACKER, agg_frame(elsewhere, JOB, 2, 1, 7, zeros, **ask)),
        Send(ws[0].port, agg_frame(ws[2], JOB, 2, 1, 7, zeros, **ask)),  # rank 0's port
        Send(ws[2].port, agg_frame(same_port_other_process, JOB, 2, 1, 7, zeros, **ask),
             (Expect(ws[2].port, stored),)),
    ]
    run_case(target, Case(
        "leak by retransmit",
        [*base_entities(), *job_entities(JOB, ws, base=0, num_slots=2)],
        steps,
        {(n.COUNTER_REJECTED, n.REJECT_NOT_MEMBER): 2, (n.COUNTER_NOT_MEMBER, JOB): 2,
         (n.COUNTER_RESENT, JOB): 1, (n.COUNTER_RESULTS, JOB): 1}))
