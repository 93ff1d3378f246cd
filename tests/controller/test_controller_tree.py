"""The controller for a tree of switches, against in-memory switches: the topology file's
tree form, a job's tree (root, children, ids), per-level entries on every switch, the
same slot range and epoch across a job's switches, clear refusals for jobs that do not
fit, and recovery of any one switch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from p4reduce import contract as n
from p4reduce.controller.api import job_info
from p4reduce.controller.backend import MemorySwitch
from p4reduce.controller.entities import desired_all
from p4reduce.controller.errors import Exhausted, InvalidArgument
from p4reduce.controller.jobs import JobManager, Settings
from p4reduce.controller.liveness import SWITCH_RESTARTED
from p4reduce.controller.store import Member, Store
from p4reduce.controller.topology import Topology, parse
from p4reduce.controller.tree import capacity, job_tree
from p4reduce.controller.validate import ipv4_to_int, mac_to_int


def switch(name: str, i: int, parent: str = "", uplink: int = 0, parent_port: int = 0,
           ) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name, "aggregation": {"mac": f"02:00:00:00:00:{0xf0 + i:02x}",
                                                          "ipv4": f"10.255.0.{i}"}}
    if parent:
        out.update(parent=parent, uplink=uplink, parent_port=parent_port)
    return out


def hosts_on(leaf: int, count: int) -> list[dict[str, Any]]:
    return [{"name": f"h{leaf}-{j}", "mac": f"02:00:00:00:{leaf:02x}:{j:02x}",
             "ipv4": f"10.{leaf}.1.{j}", "switch": f"leaf{leaf}", "port": j}
            for j in range(1, count + 1)]


def leaf_spine(leaves: int = 2, per_leaf: int = 4) -> dict[str, Any]:
    """Leaves 1..N under a spine; leaf i's port 100 goes to spine port i."""
    return {"switches": [switch("spine", 1)] + [switch(f"leaf{i}", i + 1, "spine", 100, i)
                                                for i in range(1, leaves + 1)],
            "hosts": [h for i in range(1, leaves + 1) for h in hosts_on(i, per_leaf)]}


def host_addr(leaf: int, j: int) -> tuple[str, str]:
    return f"02:00:00:00:{leaf:02x}:{j:02x}", f"10.{leaf}.1.{j}"


@pytest.fixture
def tree(tmp_path: Path) -> tuple[JobManager, dict[str, MemorySwitch], Topology]:
    topo = parse(leaf_spine(3, 33), "t")
    sws = {s.name: MemorySwitch() for s in topo.switches}
    mgr = JobManager(Store(tmp_path / "s.db"), sws, topo, Settings(num_slots=64, default_slots=8))
    mgr.start()
    return mgr, sws, topo


def rows(sw: MemorySwitch, table: str) -> dict[tuple[int, ...], tuple[int, ...]]:
    return {r.keys: r.args for r in sw.rows.values() if r.table == table}


# -- topology file -------------------------------------------------------------------

def test_tree_topology_parses_with_ports_towards_every_host() -> None:
    topo = parse(leaf_spine(2, 2), "t")
    assert topo.root.name == "spine" and [c.name for c in topo.children("spine")] == [
        "leaf1", "leaf2"]
    assert topo.port_towards("spine", "leaf2") == 2
    assert topo.port_towards("leaf1", "leaf2") == 100
    assert topo.subtree("spine") == {"spine", "leaf1", "leaf2"}
    assert capacity(topo) == 64  # 32 per leaf: a host may run several ranks


@pytest.mark.parametrize(("change", "message"), [
    (lambda d: d["switches"][1].pop("parent"), "exactly one switch must have no parent"),
    (lambda d: d["switches"][0].update(parent="leaf1", uplink=7, parent_port=7), "cycle"),
    (lambda d: d["switches"][1].update(parent="nope"), "parent 'nope' is not a switch"),
    (lambda d: d["switches"][2].update(parent_port=1), "lead to more than one switch"),
    (lambda d: d["hosts"][0].update(port=100), "leads to another switch"),
    (lambda d: d["hosts"][0].pop("switch"), "'switch' is missing"),
    (lambda d: d["hosts"][0].update(switch="leaf9"), "switch 'leaf9' is not in 'switches'"),
    (lambda d: d["hosts"][0].update(ipv4="10.255.0.2"), "switch leaf1 and host h1-1 have the"),
    (lambda d: d["switches"][2]["aggregation"].update(mac="02:00:00:00:00:f2"),
     "have the same aggregation address"),
    (lambda d: d.update(aggregation={"mac": "02:00:00:00:00:fe", "ipv4": "10.0.0.254"}),
     "not both"),
    (lambda d: d["switches"][1].pop("uplink"), "uplink (its port to spine) None"),
])
def test_tree_topology_mistakes_are_named(change: Any, message: str) -> None:
    data = leaf_spine(2, 2)
    change(data)
    with pytest.raises(InvalidArgument, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse(data, "t")


def test_capacity_is_32_children_per_switch_up_to_256_ranks() -> None:
    assert capacity(parse(leaf_spine(8, 40), "t")) == 256
    assert capacity(parse(leaf_spine(2, 40), "t")) == 64
    one = parse({"aggregation": {"mac": "02:00:00:00:00:fe", "ipv4": "10.0.0.254"},
                 "hosts": [{"name": "h", "mac": "02:00:00:00:01:01", "ipv4": "10.0.1.1",
                            "port": 1}]}, "t")
    assert capacity(one) == n.MAX_WORKERS


# -- a job's tree --------------------------------------------------------------------

def members(topo: Topology, placed: dict[int, tuple[int, int]]) -> list[Member]:
    """rank -> (leaf, host j)"""
    out = []
    for rank, (leaf, j) in placed.items():
        mac, ip = host_addr(leaf, j)
        out.append(Member(1, rank, mac_to_int(mac), ipv4_to_int(ip), 40000 + rank, j, 0.0))
    return out


def test_job_tree_levels_ids_and_indices() -> None:
    topo = parse(leaf_spine(3, 4), "t")
    one_leaf = job_tree(topo, members(topo, {0: (2, 1), 1: (2, 3)}))
    assert one_leaf.root == "leaf2" and one_leaf.switches == {"leaf2"}
    assert not one_leaf.levels["leaf2"].parent
    t = job_tree(topo, members(topo, {0: (3, 1), 1: (1, 2), 2: (3, 2), 3: (1, 1), 4: (3, 4)}))
    assert t.root == "spine" and t.switches == {"spine", "leaf1", "leaf3"}
    leaf3 = t.levels["leaf3"]
    assert [(c.worker_id, c.index, c.port) for c in leaf3.children] == [(0, 0, 1), (2, 1, 2),
                                                                         (4, 2, 4)]
    assert (leaf3.parent, leaf3.worker_id) == ("spine", 0)
    assert t.levels["leaf1"].worker_id == 1
    spine = t.levels["spine"]
    assert [(c.worker_id, c.index, c.port, c.switch) for c in spine.children] == [
        (0, 0, 3, "leaf3"), (1, 1, 1, "leaf1")]
    assert spine.children[0].ipv4 == ipv4_to_int("10.255.0.4")  # leaf3's own address


def test_a_switch_with_33_children_is_refused_by_name() -> None:
    topo = parse(leaf_spine(2, 40), "t")
    with pytest.raises(InvalidArgument, match="switch leaf1 would have 33 children"):
        job_tree(topo, members(topo, {r: (1, r + 1) for r in range(33)}), "job 'x'")


# -- the manager -----------------------------------------------------------------------

def join(mgr: JobManager, job: str, rank: int, world: int, leaf: int, j: int,
         slots: int = 0) -> Any:
    mac, ip = host_addr(leaf, j)
    return mgr.join(job, rank, world, mac, ip, 40000 + rank, slots=slots)


def test_entries_per_level_with_one_range_and_epoch(
        tree: tuple[JobManager, dict[str, MemorySwitch], Topology]) -> None:
    mgr, sws, topo = tree
    join(mgr, "j", 0, 4, 1, 1)
    # one member so far: the job lives on leaf1, whose count holds the 3 still missing
    assert rows(sws["leaf1"], n.TABLE_JOBS.name)[(1,)][2] == 4
    assert not rows(sws["spine"], n.TABLE_JOBS.name)
    join(mgr, "j", 1, 4, 2, 1)
    join(mgr, "j", 2, 4, 1, 2)
    join(mgr, "j", 3, 4, 2, 2)
    job = mgr.job("j").job
    want = {"leaf1": 2, "leaf2": 2, "spine": 2}
    for name, count in want.items():
        base, slots, workers, grp, epoch = rows(sws[name], n.TABLE_JOBS.name)[(job.id,)]
        assert (base, slots, workers, grp, epoch) == (job.base, job.count, count,
                                                      n.JOB_MCAST_BASE + job.id, job.epoch)
    assert not rows(sws["leaf3"], n.TABLE_JOBS.name)
    l1, spine = topo.switch("leaf1"), topo.switch("spine")
    assert rows(sws["leaf1"], n.TABLE_MEMBERS.name) == {
        (job.id, 0, ipv4_to_int("10.1.1.1"), 1): (0,), (job.id, 2, ipv4_to_int("10.1.1.2"), 2): (1,)}
    assert rows(sws["leaf1"], n.TABLE_UPLINK.name) == {
        (job.id,): (100, 0, spine.agg_mac, spine.agg_ipv4, l1.agg_mac, l1.agg_ipv4)}
    assert rows(sws["leaf2"], n.TABLE_UPLINK.name)[(job.id,)][:2] == (100, 1)
    assert not rows(sws["spine"], n.TABLE_UPLINK.name)
    assert rows(sws["spine"], n.TABLE_MEMBERS.name) == {
        (job.id, 0, l1.agg_ipv4, 1): (0,),
        (job.id, 1, topo.switch("leaf2").agg_ipv4, 2): (1,)}
    assert rows(sws["spine"], n.TABLE_RESULT_REWRITE.name)[(job.id, 0)] == (
        l1.agg_mac, l1.agg_ipv4, n.AGG_UDP_PORT)
    assert sws["spine"].groups[n.JOB_MCAST_BASE + job.id] == {(1, 0), (2, 1)}
    assert sws["leaf2"].groups[n.JOB_MCAST_BASE + job.id] == {(1, 1), (2, 3)}
    # results come from the parent's port only; forwarding reaches every host
    assert rows(sws["leaf1"], n.TABLE_RESULT_PORTS.name) == {(100,): ()}
    assert not rows(sws["spine"], n.TABLE_RESULT_PORTS.name)
    l2 = rows(sws["leaf1"], n.TABLE_L2.name)
    assert l2[(mac_to_int("02:00:00:00:01:02"),)] == (2,)
    assert l2[(mac_to_int("02:00:00:00:03:02"),)] == (100,)
    assert rows(sws["spine"], n.TABLE_L2.name)[(mac_to_int("02:00:00:00:03:02"),)] == (3,)
    # each rank is told its own leaf's aggregation address
    info = job_info(mgr, mgr.job("j"), 1)
    assert info.aggregation.ipv4 == "10.255.0.3" and info.root == "spine"
    assert {m.rank: m.switch for m in info.members} == {0: "leaf1", 1: "leaf2", 2: "leaf1",
                                                        3: "leaf2"}


def test_jobs_on_disjoint_leaves_share_registers_and_a_growing_job_moves(
        tree: tuple[JobManager, dict[str, MemorySwitch], Topology]) -> None:
    mgr, sws, _ = tree
    join(mgr, "a", 0, 1, 1, 1, slots=8)
    join(mgr, "b", 0, 1, 2, 1, slots=8)
    a, b = mgr.job("a").job, mgr.job("b").job
    assert a.base == b.base == 0  # leaf1 and leaf2 each hold their own job's registers
    # c joins on leaf2 first (slots 8.. there), then on leaf1: still free on both
    join(mgr, "c", 0, 2, 2, 2, slots=8)
    c0 = mgr.job("c").job
    assert c0.base == 8
    join(mgr, "c", 1, 2, 1, 2, slots=8)
    c = mgr.job("c").job
    assert (c.base, c.epoch) == (c0.base, c0.epoch)
    # d starts on leaf3 at 0, then grows onto leaf1, where 0..7 is a's: it moves, with
    # a new epoch, to the first range free on leaf3, leaf1 and the spine
    join(mgr, "d", 0, 2, 3, 1, slots=8)
    d0 = mgr.job("d").job
    assert d0.base == 0
    join(mgr, "d", 1, 2, 1, 3, slots=8)
    d = mgr.job("d").job
    assert d.base == 16 and d.epoch != d0.epoch
    for name in ("leaf1", "leaf3", "spine"):
        assert rows(sws[name], n.TABLE_JOBS.name)[(d.id,)][0] == 16
    ext = {e.owner: e.base for e in mgr.occupancy("leaf1") if e.owner}
    assert ext == {"a": 0, "c": 8, "d": 16}
    assert {e.owner for e in mgr.occupancy("leaf2") if e.owner} == {"b", "c"}


def test_free_slots_metric_counts_the_fullest_switch_once(
        tree: tuple[JobManager, dict[str, MemorySwitch], Topology]) -> None:
    """Jobs on separate leaves share register ranges: the free-slot gauge is what the
    fullest switch has left, never the space minus every job (which went negative)."""
    from p4reduce.controller.metrics import MetricsServer, scrape

    mgr, _, _ = tree
    join(mgr, "a", 0, 1, 1, 1, slots=40)
    join(mgr, "b", 0, 1, 2, 1, slots=40)
    server = MetricsServer(mgr, "127.0.0.1", 0)
    try:
        snap = scrape(server.address)
    finally:
        server.stop()
    assert (snap.slot_space, snap.slots_free) == (64, 64 - 40)


def test_a_best_effort_job_whose_tree_grows_into_a_full_range_becomes_host_only(
        tree: tuple[JobManager, dict[str, MemorySwitch], Topology]) -> None:
    """A job placed on one leaf grows, at a later join, onto a leaf where its range is
    taken and no other range is free: with best effort (the torch backend's joins) it
    becomes host-only with its members, its switch entries go, and its ranks are told
    at readiness; without, the join is refused as before."""
    mgr, sws, _ = tree
    join(mgr, "a", 0, 1, 1, 1, slots=40)  # leaf1 0..39
    join(mgr, "strict", 0, 2, 2, 1, slots=40)  # leaf2 0..39 (a is on leaf1 only)
    with pytest.raises(Exhausted):
        join(mgr, "strict", 1, 2, 1, 2, slots=40)  # onto leaf1: 24 slots free there
    mac, ip = host_addr(3, 1)
    mgr.join("g", 0, 2, mac, ip, 40000, slots=40, best_effort=True)  # leaf3 0..39
    g0 = mgr.job("g").job
    assert not g0.host_only and rows(sws["leaf3"], n.TABLE_JOBS.name)[(g0.id,)][0] == 0
    mac, ip = host_addr(1, 3)
    view = mgr.join("g", 1, 2, mac, ip, 40001, slots=40, best_effort=True)
    assert view.job.host_only and view.ready
    assert sorted(m.rank for m in view.members) == [0, 1]
    assert all((g0.id,) not in rows(sw, n.TABLE_JOBS.name) for sw in sws.values())
    assert job_info(mgr, view, 1).host_only


def test_a_topology_that_puts_two_placed_jobs_on_one_switch_is_refused_clearly(
        tree: tuple[JobManager, dict[str, MemorySwitch], Topology], tmp_path: Path) -> None:
    """Jobs on separate leaves share a register range; if the topology then moves one
    job's host onto the other's leaf, they would share registers: the controller says so
    in one line with what to do, rather than moving a running job silently."""
    mgr, _, _ = tree
    join(mgr, "a", 0, 1, 1, 1, slots=8)
    join(mgr, "b", 0, 1, 2, 1, slots=8)
    assert mgr.job("a").job.base == mgr.job("b").job.base == 0
    mgr.store.close()
    moved = leaf_spine(3, 33)
    for h in moved["hosts"]:
        if h["name"] == "h2-1":
            h.update(switch="leaf1", port=50)
    topo = parse(moved, "t")
    sws = {s.name: MemorySwitch() for s in topo.switches}
    with pytest.raises(InvalidArgument, match=r"overlaps .* puts both jobs on one switch") as err:
        JobManager(Store(tmp_path / "s.db"), sws, topo, Settings(num_slots=64)).start()
    assert "\n" not in err.value.message and "p4reduce-ctl delete" in err.value.message


def test_jobs_that_do_not_fit_the_tree_are_refused_clearly(
        tree: tuple[JobManager, dict[str, MemorySwitch], Topology]) -> None:
    mgr, sws, _ = tree
    with pytest.raises(InvalidArgument, match=r"world size 97 is out of range 1\.\.96"):
        join(mgr, "big", 0, 97, 1, 1)
    for r in range(32):
        join(mgr, "wide", r, 40, 1, r + 1)
    before = {name: dict(sw.rows) for name, sw in sws.items()}
    with pytest.raises(InvalidArgument, match="switch leaf1 would have 33 children"):
        join(mgr, "wide", 32, 40, 1, 33)
    assert {name: dict(sw.rows) for name, sw in sws.items()} == before
    assert len(mgr.job("wide").members) == 32
    join(mgr, "wide", 32, 40, 2, 1)  # on another leaf it fits


def test_any_switch_is_restored_and_only_its_jobs_are_told(
        tree: tuple[JobManager, dict[str, MemorySwitch], Topology]) -> None:
    mgr, _, topo = tree
    join(mgr, "both", 0, 2, 1, 1)
    join(mgr, "both", 1, 2, 2, 1)
    join(mgr, "alone", 0, 1, 3, 1)
    want = desired_all(topo, mgr.store.jobs(), mgr.store.members(), mgr.owner)
    fresh = MemorySwitch()
    mgr.replace_switch(fresh, "leaf2")
    plan = mgr.start()
    assert plan.summary()["insert"] == len(want["leaf2"].rows) + len(want["leaf2"].groups)
    assert fresh.rows == want["leaf2"].rows and fresh.groups == want["leaf2"].groups
    subs = {name: mgr.liveness.subscribe(mgr.job(name).job.id) for name in ("both", "alone")}
    assert mgr.switch_restarted("it restarted", "leaf2") == ["both"]
    event = subs["both"].get(1.0)
    assert event is not None and event.kind == SWITCH_RESTARTED and "leaf2" in event.message
    assert subs["alone"].get(0.1) is None


def test_a_wide_job_before_its_first_member_counts_beyond_any_bitmap(
        tree: tuple[JobManager, dict[str, MemorySwitch], Topology]) -> None:
    """A job made by hand has no tree yet: its admission entry sits on the root with a
    count no round can reach (the 8-bit field cannot hold 96), and its first member
    moves it to that member's leaf."""
    mgr, sws, _ = tree
    job = mgr.create("wide", 96).job
    assert rows(sws["spine"], n.TABLE_JOBS.name)[(job.id,)][2] == n.MAX_WORKERS + 1
    join(mgr, "wide", 5, 96, 2, 1)
    assert not rows(sws["spine"], n.TABLE_JOBS.name)
    assert rows(sws["leaf2"], n.TABLE_JOBS.name)[(job.id,)][2] == n.MAX_WORKERS + 1


def test_three_levels_root_at_the_lowest_common_ancestor() -> None:
    """spine -> agg1 -> (leaf1, leaf2), spine -> leaf3: a job under agg1 is rooted there;
    one spanning leaf1 and leaf3 goes through agg1 (one child there) up to the spine."""
    data = {"switches": [switch("spine", 1), switch("agg1", 2, "spine", 50, 1),
                         switch("leaf1", 3, "agg1", 100, 1), switch("leaf2", 4, "agg1", 100, 2),
                         switch("leaf3", 5, "spine", 100, 2)],
            "hosts": hosts_on(1, 2) + hosts_on(2, 2) + hosts_on(3, 2)}
    topo = parse(data, "t")
    under_agg = job_tree(topo, members(topo, {0: (1, 1), 1: (2, 1), 2: (2, 2)}))
    assert under_agg.root == "agg1" and under_agg.switches == {"agg1", "leaf1", "leaf2"}
    assert [(c.worker_id, c.switch) for c in under_agg.levels["agg1"].children] == [
        (0, "leaf1"), (1, "leaf2")]
    across = job_tree(topo, members(topo, {0: (3, 1), 1: (1, 2), 2: (1, 1)}))
    assert across.root == "spine"
    assert across.switches == {"spine", "agg1", "leaf1", "leaf3"}
    agg = across.levels["agg1"]
    assert (agg.parent, agg.worker_id) == ("spine", 1)
    assert [(c.worker_id, c.port, c.switch) for c in agg.children] == [(1, 1, "leaf1")]
    assert [(c.worker_id, c.port) for c in across.levels["spine"].children] == [(0, 2), (1, 1)]
    assert topo.port_towards("leaf3", "leaf1") == 100 and topo.port_towards("spine", "leaf2") == 1
    sws = {s.name: MemorySwitch() for s in topo.switches}
    want = desired_all(topo, [], [], b"")
    assert {r.keys[0] for r in want["leaf2"].rows.values()
            if r.table == n.TABLE_OWN_ADDRESSES.name} == {s.agg_ipv4 for s in topo.switches}
    assert set(sws) == set(want)
