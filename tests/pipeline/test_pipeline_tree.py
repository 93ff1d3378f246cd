"""aggregator.p4 in a tree of switches (tests/pipeline/tree.py): two leaves under a spine,
the same program on each, every role from the entries alone (softswitch in-process
always, BMv2 when available). Each leaf sums its workers and sends one partial aggregate
up; the spine sums the partials and multicasts the result down; each leaf stores it and
multicasts it to its workers. Lost partials and lost results at each level are recovered
by the workers' retransmissions alone, and nothing a host sends reaches another job."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from p4reduce import contract as n
from p4reduce.worker import wire
from tests.pipeline import wired
from tests.pipeline.case import Entity, Entry, Group
from tests.pipeline.packets import Host, agg_frame, result_frame
from tests.pipeline.scenarios import wrap_sum
from tests.pipeline.targets import SoftswitchTarget, Target
from tests.pipeline.topo import ip_int, mac_int
from tests.pipeline.tree import Fabric, Hop, Trace

K = 8
JOB, OTHER = 7, 9
LEAF_PORTS = (1, 2, 3, 4, 5)
UPLINK = 9  # every leaf's port to the spine
DOWN = {"leaf1": 1, "leaf2": 2}  # the spine's port to each leaf
SPINE_HOST = 5  # a host port on the spine itself
SPINE_PORTS = (1, 2, SPINE_HOST)

# Every switch has its own aggregation address: its workers send to it, its children's
# partials come to it, its results come from it.
SW = {name: Host(0, f"02:00:00:00:00:f{i}", f"10.0.0.24{i}", wire.AGG_UDP_PORT)
      for i, name in enumerate(("spine", "leaf1", "leaf2"))}


def worker(leaf: int, port: int) -> Host:
    return Host(port, f"02:00:00:00:{leaf:02x}:{port:02x}", f"10.0.{leaf}.{port}",
                40000 + 10 * leaf + port)


# job JOB: ranks 0..2 on leaf1, ranks 3..4 on leaf2
PLACEMENT = {"leaf1": [(0, worker(1, 1)), (1, worker(1, 2)), (2, worker(1, 3))],
             "leaf2": [(3, worker(2, 1)), (4, worker(2, 2))]}
RANKS = {r: (leaf, h) for leaf, placed in PLACEMENT.items() for r, h in placed}


def make_target(kind: str, ports: tuple[int, ...]) -> Target:
    if kind == "bmv2":
        reason = wired.unavailable("simple_switch_grpc")
        if reason is not None:
            pytest.skip(f"BMv2 tests: {reason}")
        return wired.bmv2(ports, NUM_LANES=K)
    return SoftswitchTarget(NUM_LANES=K)


@pytest.fixture(params=["softswitch", "bmv2"])
def fabric(request: pytest.FixtureRequest) -> Iterator[Fabric]:
    targets: dict[str, Target] = {}
    try:
        targets["spine"] = make_target(request.param, SPINE_PORTS)
        for leaf in ("leaf1", "leaf2"):
            targets[leaf] = make_target(request.param, (*LEAF_PORTS, UPLINK))
    except BaseException:
        for t in targets.values():
            t.close()
        raise
    f = Fabric(targets, [((leaf, UPLINK), ("spine", port)) for leaf, port in DOWN.items()])
    f.install({name: base_entities(name) for name in targets})
    yield f
    f.close()


def base_entities(name: str) -> list[Entity]:
    """Flooding and ARP for the switch's address; every switch's address as a switch's
    (no host may send from one); a leaf takes results from its uplink only."""
    ports = SPINE_PORTS if name == "spine" else (*LEAF_PORTS, UPLINK)
    addr = SW[name]
    out: list[Entity] = [
        Group(n.FLOOD_MCAST_GRP, tuple((p, 0) for p in ports)),
        Entry(n.TABLE_ARP.name, {"hdr.arp.tpa": ip_int(addr.ip)}, n.ACTION_ARP_REPLY.name,
              {"mac": mac_int(addr.mac)}),
        *(Entry(n.TABLE_OWN_ADDRESSES.name, {"hdr.ipv4.srcAddr": ip_int(sw.ip)},
                n.ACTION_OWN_ADDRESS.name) for sw in SW.values()),
    ]
    if name != "spine":
        out.append(Entry(n.TABLE_RESULT_PORTS.name, {"standard_metadata.ingress_port": UPLINK},
                         n.ACTION_ALLOW_RESULTS.name))
    return out


def level_entities(job: int, children: list[tuple[int, Host, int]], *, base: int,
                   num_slots: int, epoch: int) -> list[Entity]:
    """One switch's part of a job: children as (worker id, address, port); child i of
    the list is bit i of the bitmap."""
    group = n.JOB_MCAST_BASE + job
    out: list[Entity] = [
        Entry(n.TABLE_JOBS.name, {"hdr.agg.job_id": job}, n.ACTION_SET_JOB.name,
              {"base": base, "num_slots": num_slots, "num_workers": len(children),
               "mcast_grp": group, "epoch": epoch}),
        Group(group, tuple((port, wid) for wid, _, port in children)),
    ]
    for i, (wid, h, port) in enumerate(children):
        out.append(Entry(n.TABLE_MEMBERS.name, {
            "hdr.agg.job_id": job, "hdr.agg.worker_id": wid, "hdr.ipv4.srcAddr": ip_int(h.ip),
            "standard_metadata.ingress_port": port}, n.ACTION_MEMBER_OK.name, {"child": i}))
        out.append(Entry(n.TABLE_RESULT_REWRITE.name, {"hdr.agg.job_id": job, "replica_id": wid},
                         n.ACTION_SET_WORKER_ADDR.name,
                         {"mac": mac_int(h.mac), "ip": ip_int(h.ip), "udp_port": h.udp_port}))
    return out


def uplink(job: int, leaf: str, worker_id: int) -> Entry:
    spine, own = SW["spine"], SW[leaf]
    return Entry(n.TABLE_UPLINK.name, {"hdr.agg.job_id": job}, n.ACTION_SET_PARENT.name,
                 {"port": UPLINK, "worker_id": worker_id, "mac": mac_int(spine.mac),
                  "ip": ip_int(spine.ip), "own_mac": mac_int(own.mac), "own_ip": ip_int(own.ip)})


def leaf_id(leaf: str) -> int:
    """The worker id a leaf sends under at the spine: its smallest rank (unique among the
    spine's children, as every rank is in one subtree only)."""
    return min(r for r, _ in PLACEMENT[leaf])


def tree_entities(job: int = JOB, *, base: int = 0, num_slots: int = 2,
                  epoch: int = 1) -> dict[str, list[Entity]]:
    out: dict[str, list[Entity]] = {}
    for leaf, placed in PLACEMENT.items():
        out[leaf] = [*level_entities(job, [(r, h, h.port) for r, h in placed], base=base,
                                     num_slots=num_slots, epoch=epoch),
                     uplink(job, leaf, leaf_id(leaf))]
    out["spine"] = level_entities(job, [(leaf_id(leaf), SW[leaf], DOWN[leaf]) for leaf in PLACEMENT],
                                  base=base, num_slots=num_slots, epoch=epoch)
    return out


def contribution(rank: int, values: np.ndarray, *, slot: int = 0, rnd: int = 0, exp: int = 0,
                 flags: int = 0, job: int = JOB) -> tuple[str, int, bytes]:
    leaf, h = RANKS[rank]
    return leaf, h.port, agg_frame(h, job, rank, slot, rnd, values, exp=exp, flags=flags,
                                   offset=100 + slot, to=SW[leaf])


def partial(leaf: str, values: np.ndarray, *, slot: int = 0, rnd: int = 0, exp: int = 0,
            flags: int = 0) -> bytes:
    """What a leaf sends up: its sum, from its address to the spine's, as its id there."""
    return agg_frame(SW[leaf], JOB, leaf_id(leaf), slot, rnd, values, exp=exp, flags=flags,
                     offset=100 + slot, to=SW["spine"])


def result_to(dst: Host, via: str, worker_id: int, values: np.ndarray, *, slot: int = 0,
              rnd: int = 0, exp: int = 0, flags: int = 0) -> bytes:
    return result_frame(dst, JOB, worker_id, slot, rnd, values, exp=exp, flags=flags,
                        offset=100 + slot, via=SW[via])


def send(fabric: Fabric, at: tuple[str, int, bytes], drop: set[tuple[str, int]] | None = None,
         ) -> Trace:
    """A frame in, with every frame crossing one of the links in `drop` (named by the
    switch and port it leaves from) lost."""
    lost = drop or set()
    return fabric.send(*at, drop=lambda hop: (hop.switch, hop.port) in lost)


def hop(switch: str, port: int, frame: bytes) -> tuple[str, int, bytes]:
    return (switch, port, frame)


def hops(trace: list[Hop]) -> list[tuple[str, int, bytes]]:
    return [(h.switch, h.port, h.frame) for h in trace]


def same(got: list[tuple[str, int, bytes]], want: list[tuple[str, int, bytes]]) -> None:
    """The same frames in any order, shown readably when not."""
    key = sorted
    if key(got) != key(want):
        lines = ["got:"] + [f"  {s}:{p} {f.hex()}" for s, p, f in key(got)]
        lines += ["want:"] + [f"  {s}:{p} {f.hex()}" for s, p, f in key(want)]
        raise AssertionError("\n".join(lines))


def values_for(seed: int) -> dict[int, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {r: rng.integers(-(2**31), 2**31 - 1, K, endpoint=True).astype(np.int32)
            for r in RANKS}


def lane_max(rows: list[np.ndarray]) -> np.ndarray:
    """The per-lane signed maximum of order-encoded lanes, order-encoded (what the switch
    keeps of exponent packets)."""
    return wire.order_encode(np.max([wire.order_decode(r) for r in rows], axis=0))


def leaf_sum(values: dict[int, np.ndarray], leaf: str) -> np.ndarray:
    return wrap_sum([values[r] for r, _ in PLACEMENT[leaf]])


@pytest.mark.timeout(120)
@pytest.mark.parametrize("flags", [0, wire.FLAG_EXP_ONLY])
def test_two_levels_sum_exactly_with_one_partial_per_uplink(fabric: Fabric, flags: int) -> None:
    """Sums wrap like int32 at every level, the exponent is the signed max over all
    ranks (the reserved -128 included), flags travel through, and each uplink carries one
    partial up and one result down per slot and round."""
    fabric.install(tree_entities())
    v = values_for(1)
    exps = {0: n.EXP_ZERO, 1: -5, 2: 3, 3: 17, 4: n.EXP_ZERO}
    # exponent packets' lanes combine by the signed maximum of their order-decoded values
    combine = lane_max if flags & wire.FLAG_EXP_ONLY else wrap_sum
    total = combine(list(v.values()))
    for r in (3, 0, 1):
        t = send(fabric, contribution(r, v[r], exp=exps[r], flags=flags))
        assert not t.crossed and not t.delivered
    t = send(fabric, contribution(4, v[4], exp=exps[4], flags=flags))  # leaf2 complete
    same(hops(t.crossed), [hop("leaf2", UPLINK, partial("leaf2", combine([v[r] for r, _ in PLACEMENT["leaf2"]]), exp=17,
                                                        flags=flags))])
    assert not t.delivered
    t = send(fabric, contribution(2, v[2], exp=exps[2], flags=flags))  # leaf1, then the spine
    up = partial("leaf1", combine([v[r] for r, _ in PLACEMENT["leaf1"]]), exp=3, flags=flags)
    downs = [hop("spine", DOWN[leaf], result_to(SW[leaf], "spine", leaf_id("leaf1"), total,
                                                  exp=17, flags=flags)) for leaf in DOWN]
    same(hops(t.crossed), [hop("leaf1", UPLINK, up), *downs])
    same(t.to_hosts(), [hop(leaf, h.port, result_to(h, leaf, leaf_id("leaf1"), total, exp=17,
                                                      flags=flags))
                        for r, (leaf, h) in RANKS.items()])
    for leaf in DOWN:
        assert fabric.counter(leaf, n.COUNTER_AGGREGATED, JOB) == len(PLACEMENT[leaf])
        assert fabric.counter(leaf, n.COUNTER_PARTIALS, JOB) == 1
        assert fabric.counter(leaf, n.COUNTER_RESULTS, JOB) == 1
    assert fabric.counter("spine", n.COUNTER_AGGREGATED, JOB) == 2
    assert fabric.counter("spine", n.COUNTER_RESULTS, JOB) == 1
    assert fabric.counter("spine", n.COUNTER_PARTIALS, JOB) == 0


@pytest.mark.timeout(120)
def test_a_lost_partial_is_resent_up_when_a_worker_asks_again(fabric: Fabric) -> None:
    fabric.install(tree_entities())
    v = values_for(2)
    total = wrap_sum(list(v.values()))
    for r in (3, 4, 0):
        send(fabric, contribution(r, v[r]))
    # a resend before the leaf is complete is a duplicate there and goes nowhere
    t = send(fabric, contribution(0, v[0], flags=wire.FLAG_RETRANSMIT))
    assert not t.crossed and not t.delivered
    send(fabric, contribution(1, v[1]))
    t = send(fabric, contribution(2, v[2]), drop={("leaf1", UPLINK)})  # the partial is lost
    assert len(t.dropped) == 1 and not t.delivered
    # rank 1 times out and resends: leaf1 resends its stored partial, lost again
    resent = partial("leaf1", leaf_sum(v, "leaf1"), flags=wire.FLAG_RETRANSMIT)
    t = send(fabric, contribution(1, v[1], flags=wire.FLAG_RETRANSMIT), drop={("leaf1", UPLINK)})
    assert hops(t.crossed) == [hop("leaf1", UPLINK, resent)] and not t.delivered
    # rank 0's resend is only noted (one resend per round of timeouts, not one per
    # worker); rank 1 asking a second time resends it, and the spine completes
    t = send(fabric, contribution(0, v[0], flags=wire.FLAG_RETRANSMIT))
    assert not t.crossed and not t.delivered
    t = send(fabric, contribution(1, v[1], flags=wire.FLAG_RETRANSMIT))
    assert hops(t.crossed)[0] == hop("leaf1", UPLINK, resent)
    same(t.to_hosts(), [hop(leaf, h.port, result_to(h, leaf, leaf_id("leaf1"), total,
                                                      flags=wire.FLAG_RETRANSMIT))
                        for r, (leaf, h) in RANKS.items()])
    # a worker whose result was lost on its own link gets it from its leaf alone
    leaf, h = RANKS[0]
    t = send(fabric, contribution(0, v[0], flags=wire.FLAG_RETRANSMIT))
    assert not t.crossed
    same(t.to_hosts(), [hop(leaf, h.port, result_to(h, leaf, 0, total,
                                                      flags=wire.FLAG_RETRANSMIT))])
    assert fabric.counter("leaf1", n.COUNTER_PARTIALS, JOB) == 3
    assert fabric.counter("leaf1", n.COUNTER_DUPLICATES, JOB) == 2
    assert fabric.counter("leaf1", n.COUNTER_RESENT, JOB) == 1
    assert fabric.counter("spine", n.COUNTER_AGGREGATED, JOB) == 2
    assert fabric.counter("spine", n.COUNTER_RESULTS, JOB) == 1


@pytest.mark.timeout(120)
def test_a_lost_result_is_resent_down_by_the_parent(fabric: Fabric) -> None:
    """The spine's result to leaf2 is lost: a leaf2 worker's resend makes leaf2 resend
    its partial, the spine answers that one leaf with its stored result, and leaf2
    multicasts it to all of its workers; a second copy of it is a duplicate."""
    fabric.install(tree_entities())
    v = values_for(3)
    total = wrap_sum(list(v.values()))
    for r in (0, 1, 2, 3):
        send(fabric, contribution(r, v[r]))
    t = send(fabric, contribution(4, v[4]), drop={("spine", DOWN["leaf2"])})
    assert [h.switch for h in t.delivered] == ["leaf1"] * 3
    t = send(fabric, contribution(4, v[4], flags=wire.FLAG_RETRANSMIT))
    resent_up = partial("leaf2", leaf_sum(v, "leaf2"), flags=wire.FLAG_RETRANSMIT)
    answer = result_to(SW["leaf2"], "spine", leaf_id("leaf2"), total, flags=wire.FLAG_RETRANSMIT)
    same(hops(t.crossed), [hop("leaf2", UPLINK, resent_up), hop("spine", DOWN["leaf2"], answer)])
    same(t.to_hosts(), [hop("leaf2", h.port, result_to(h, "leaf2", leaf_id("leaf2"), total,
                                                         flags=wire.FLAG_RETRANSMIT))
                        for _, h in PLACEMENT["leaf2"]])
    # the same answer again (a parent answering twice) changes nothing and goes nowhere
    t = fabric.send("leaf2", UPLINK, answer)
    assert not t.crossed and not t.delivered
    assert fabric.counter("spine", n.COUNTER_RESENT, JOB) == 1
    assert fabric.counter("spine", n.COUNTER_RESULTS, JOB) == 1
    assert fabric.counter("leaf2", n.COUNTER_PARTIALS, JOB) == 2
    assert fabric.counter("leaf2", n.COUNTER_RESULTS, JOB) == 1
    assert fabric.counter("leaf2", n.COUNTER_DUPLICATES, JOB) == 1
    assert fabric.counter("leaf1", n.COUNTER_PARTIALS, JOB) == 1


@pytest.mark.timeout(120)
def test_results_of_an_older_round_from_the_parent_are_stale(fabric: Fabric) -> None:
    """A delayed result of round 0 reaching a leaf after its slot moved on to round 2
    (the same shadow copy) is dropped; the round in progress is untouched."""
    fabric.install(tree_entities())
    v = values_for(4)
    old_answer = b""
    for rnd in (0, 1, 2):
        for r in RANKS:
            t = send(fabric, contribution(r, v[r], rnd=rnd))
            if rnd == 0:
                old_answer = next((h.frame for h in t.crossed
                                   if (h.switch, h.port) == ("spine", DOWN["leaf1"])), old_answer)
    assert old_answer
    t = fabric.send("leaf1", UPLINK, old_answer)
    assert not t.crossed and not t.delivered
    assert fabric.counter("leaf1", n.COUNTER_STALE, JOB) == 1
    assert fabric.counter("leaf1", n.COUNTER_RESULTS, JOB) == 3


@pytest.mark.timeout(120)
def test_a_job_on_one_leaf_is_rooted_there_and_hosts_cannot_reach_other_jobs(
        fabric: Fabric) -> None:
    """Job OTHER runs on leaf1 alone (no uplink entry: leaf1 is its root) beside JOB on
    the whole tree. A member of OTHER forging JOB's packets, leaf1's partial, or a result
    gets nothing past leaf1; a host on the spine forging leaf1's partial is not a member
    there; a result forged from leaf1's address elsewhere in the tree is dropped where it
    enters. JOB's round then still sums exactly its own ranks' values."""
    ents = tree_entities(base=0)
    mine = [(0, worker(1, 4), 4), (1, worker(1, 5), 5)]
    ents["leaf1"] += level_entities(OTHER, mine, base=1, num_slots=1, epoch=2)
    fabric.install(ents)
    v = values_for(5)
    total = wrap_sum(list(v.values()))
    a, b = mine[0][1], mine[1][1]
    poison = np.full(K, 1 << 20, np.int32)
    # OTHER completes on leaf1 and never crosses the uplink
    send(fabric, ("leaf1", a.port, agg_frame(a, OTHER, 0, 0, 0, v[0], to=SW["leaf1"])))
    t = send(fabric, ("leaf1", b.port, agg_frame(b, OTHER, 1, 0, 0, v[1], to=SW["leaf1"])))
    assert not t.crossed
    assert sorted(h.port for h in t.delivered) == [4, 5]
    spoofs = [
        # as JOB's rank 0, from its own address and port
        ("leaf1", a.port, agg_frame(a, JOB, 0, 0, 0, poison, to=SW["leaf1"])),
        # as leaf1's partial of JOB, from a host port of leaf1
        ("leaf1", a.port, agg_frame(SW["leaf1"], JOB, leaf_id("leaf1"), 0, 0, poison,
                                    to=SW["spine"])),
        # a result of JOB for the leaf's workers, from a host port
        ("leaf1", a.port, result_to(SW["leaf1"], "spine", 0, poison)),
        # a result of OTHER from the uplink: OTHER has no parent
        ("leaf1", UPLINK, result_frame(SW["leaf1"], OTHER, 0, 0, 0, poison, via=SW["spine"])),
        # a host on the spine forging leaf1's partial
        ("spine", SPINE_HOST, agg_frame(SW["leaf1"], JOB, leaf_id("leaf1"), 0, 0, poison,
                                        to=SW["spine"])),
    ]
    # a result from leaf1's address, as its workers take results, sent from leaf2 to a
    # worker of leaf1: plain UDP, forwarded by MAC, it would cross the spine and enter
    # leaf1 from its parent's port; leaf2 knows leaf1's address and drops it
    victim = RANKS[0][1]
    to_worker = result_frame(victim, JOB, 0, 0, 0, poison, via=SW["leaf1"])
    fabric.install({name: [Entry(n.TABLE_L2.name, {"hdr.ethernet.dstAddr": mac_int(victim.mac)},
                                 n.ACTION_FORWARD.name, {"port": port})]
                    for name, port in (("leaf2", UPLINK), ("spine", DOWN["leaf1"]))})
    spoofs += [("leaf2", 3, to_worker), ("spine", SPINE_HOST, to_worker)]
    for at in spoofs:
        t = send(fabric, at)
        assert not t.crossed and not t.delivered, at[:2]
    assert fabric.counter("leaf1", n.COUNTER_REJECTED, n.REJECT_NOT_MEMBER) == 2
    assert fabric.counter("leaf1", n.COUNTER_REJECTED, n.REJECT_FORGED_RESULT) == 2
    assert fabric.counter("leaf2", n.COUNTER_REJECTED, n.REJECT_FORGED_RESULT) == 1
    assert fabric.counter("spine", n.COUNTER_REJECTED, n.REJECT_NOT_MEMBER) == 1
    assert fabric.counter("spine", n.COUNTER_REJECTED, n.REJECT_FORGED_RESULT) == 1
    # JOB's round: exact, although the spoofs named its slot and round
    delivered = []
    for r in RANKS:
        delivered += send(fabric, contribution(r, v[r])).delivered
    assert len(delivered) == len(RANKS)
    for h in delivered:
        got = np.frombuffer(h.frame[42 + wire.AGG_HEADER_LEN:], dtype=">i4")
        assert np.array_equal(got, total)
    assert fabric.counter("spine", n.COUNTER_AGGREGATED, JOB) == 2
    assert fabric.counter("leaf1", n.COUNTER_RESULTS, OTHER) == 1
    assert fabric.counter("leaf1", n.COUNTER_PARTIALS, OTHER) == 0
