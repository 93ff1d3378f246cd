"""Job logic against an in-memory switch: entries, groups, limits, leases, persistence."""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from p4reduce import contract as n
from p4reduce.controller.backend import MemorySwitch
from p4reduce.controller.entities import Row
from p4reduce.controller.errors import (
    AlreadyExists,
    ControllerError,
    Exhausted,
    InvalidArgument,
    NotFound,
    NotPrimary,
    Timeout,
)
from p4reduce.controller.jobs import JobManager, Settings
from p4reduce.controller.store import Store
from p4reduce.controller.topology import parse

TOPO = parse(
    {
        "aggregation": {"mac": "02:00:00:00:00:fe", "ipv4": "10.0.0.254"},
        "hosts": [
            {"name": f"h{i}", "mac": f"02:00:00:00:00:{i:02x}", "ipv4": f"10.0.0.{i}", "port": i}
            for i in range(1, 5)
        ],
    }
)


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def make(
    tmp_path: Path, switch: MemorySwitch | None = None, **kw: int | float
) -> tuple[JobManager, MemorySwitch, Clock]:
    sw = switch or MemorySwitch()
    clock = Clock()
    mgr = JobManager(Store(tmp_path / "state.db"), sw, TOPO, Settings(**kw), clock)  # type: ignore[arg-type]
    mgr.start()
    return mgr, sw, clock


def join(
    mgr: JobManager, name: str, rank: int, world: int, host: int | None = None, **kw: int
) -> None:
    h = host if host is not None else rank + 1
    mgr.join(name, rank, world, f"02:00:00:00:00:{h:02x}", f"10.0.0.{h}", 5000 + rank, **kw)


def test_join_installs_job_members_rewrite_and_group(tmp_path: Path) -> None:
    mgr, sw, _ = make(tmp_path)
    join(mgr, "a", 0, 2)
    assert not mgr.job("a").ready
    join(mgr, "a", 1, 2)
    v = mgr.job("a")
    assert v.ready and v.job.id == 1 and v.job.base == 0 and v.job.count == 256
    jobs = [r for r in sw.rows.values() if r.table == n.TABLE_JOBS.name]
    assert jobs == [
        Row(n.TABLE_JOBS.name, (1,), n.ACTION_SET_JOB.name, (0, 256, 2, n.JOB_MCAST_BASE + 1, v.job.epoch))
    ]
    members = sorted(r.keys for r in sw.rows.values() if r.table == n.TABLE_MEMBERS.name)
    assert members == [(1, 0, 0x0A000001, 1), (1, 1, 0x0A000002, 2)]
    rw = sw.rows[(n.TABLE_RESULT_REWRITE.name, (1, 1))]
    assert rw.args == (0x020000000002, 0x0A000002, 5001)
    assert sw.groups[n.JOB_MCAST_BASE + 1] == frozenset({(1, 0), (2, 1)})
    assert sw.groups[n.FLOOD_MCAST_GRP] == frozenset({(p, 0) for p in range(1, 5)})
    assert sw.rows[(n.TABLE_ARP.name, (0x0A0000FE,))].args == (0x0200000000FE,)


def test_epochs_change_at_every_allocation_and_survive_restart(tmp_path: Path) -> None:
    mgr, sw, _ = make(tmp_path)
    e1 = mgr.create("a", 1).job.epoch
    e2 = mgr.create("b", 1).job.epoch
    mgr.delete("a")
    e3 = mgr.create("a", 1).job.epoch
    assert len({e1, e2, e3}) == 3 and 0 not in {e1, e2, e3}
    mgr.store.close()
    mgr2, _, _ = make(tmp_path, sw)
    assert mgr2.create("c", 1).job.epoch not in {e1, e2, e3}


def test_epoch_wraps_past_zero_and_skips_live_epochs(tmp_path: Path) -> None:
    mgr, _, _ = make(tmp_path)
    with mgr.store.transaction():
        mgr.store._db.execute("INSERT OR REPLACE INTO meta VALUES('epoch', ?)", ((1 << 24) - 3,))
    assert mgr.create("a", 1).job.epoch == (1 << 24) - 2
    with mgr.store.transaction():
        mgr.store._db.execute("INSERT OR REPLACE INTO meta VALUES('epoch', ?)", ((1 << 24) - 3,))
    assert mgr.create("b", 1).job.epoch == (1 << 24) - 1  # skips a's
    assert mgr.create("c", 1).job.epoch == 1  # wraps, never 0


@pytest.mark.parametrize(
    ("args", "err", "text"),
    [
        (("a", 0, 0), InvalidArgument, "world size 0"),
        (("a", 0, 33), InvalidArgument, "world size 33"),
        (("a", 2, 2), InvalidArgument, "rank 2 is out of range"),
        (("a", -1, 2), InvalidArgument, "rank -1"),
        (("bad name!", 0, 2), InvalidArgument, "job name"),
    ],
)
def test_bad_join_changes_nothing(
    tmp_path: Path, args: tuple[str, int, int], err: type, text: str
) -> None:
    mgr, sw, _ = make(tmp_path)
    before = dict(sw.rows), dict(sw.groups)
    with pytest.raises(err, match=text):
        mgr.join(args[0], args[1], args[2], "02:00:00:00:00:01", "10.0.0.1", 5000)
    assert (dict(sw.rows), dict(sw.groups)) == before
    assert mgr.jobs() == []


@pytest.mark.parametrize(
    ("mac", "ip", "port"),
    [
        ("zz:00", "10.0.0.1", 5000),
        ("02:00:00:00:00:01", "10.0.0.300", 5000),
        ("02:00:00:00:00:01", "10.0.0.1", 0),
        ("02:00:00:00:00:09", "10.9.9.9", 5000),
    ],
)
def test_malformed_or_unknown_addresses(tmp_path: Path, mac: str, ip: str, port: int) -> None:
    mgr, _, _ = make(tmp_path)
    with pytest.raises(InvalidArgument):
        mgr.join("a", 0, 2, mac, ip, port)
    assert mgr.jobs() == []


def test_worker_mac_must_match_its_topology_host(tmp_path: Path) -> None:
    mgr, _, _ = make(tmp_path)
    with pytest.raises(InvalidArgument, match=r"does not match host h2"):
        mgr.join("a", 0, 1, "02:00:00:00:00:01", "10.0.0.2", 5000)
    with pytest.raises(InvalidArgument, match=r"10.9.9.9 is not a host of the topology"):
        mgr.join("a", 0, 1, "02:00:00:00:00:01", "10.9.9.9", 5000)
    assert mgr.jobs() == []


def test_duplicate_rank_and_world_mismatch(tmp_path: Path) -> None:
    mgr, sw, _ = make(tmp_path)
    join(mgr, "a", 0, 3)
    join(mgr, "a", 0, 3)  # same worker again: idempotent
    snapshot = dict(sw.rows)
    with pytest.raises(AlreadyExists, match="rank 0 of job 'a' is already held"):
        join(mgr, "a", 0, 3, host=2)
    with pytest.raises(InvalidArgument, match="world size 3, not 4"):
        join(mgr, "a", 1, 4)
    assert dict(sw.rows) == snapshot and len(mgr.job("a").members) == 1


def test_full_switch_refuses_clearly_and_changes_nothing(tmp_path: Path) -> None:
    mgr, sw, _ = make(tmp_path, num_slots=100, default_slots=40)
    mgr.create("a", 1)
    mgr.create("b", 1)
    snapshot = dict(sw.rows)
    with pytest.raises(Exhausted, match=r"20 of 100 slots free.*a 40, b 40"):
        mgr.create("c", 1)
    with pytest.raises(Exhausted):
        join(mgr, "c", 0, 1)
    assert dict(sw.rows) == snapshot and [v.job.name for v in mgr.jobs()] == ["a", "b"]
    mgr.delete("a")
    assert mgr.create("c", 1, slots=30).job.base == 0


def test_unknown_job_errors(tmp_path: Path) -> None:
    mgr, _, _ = make(tmp_path)
    with pytest.raises(NotFound, match="unknown job 'nope'"):
        mgr.job("nope")
    with pytest.raises(NotFound, match="unknown job 'nope'"):
        mgr.delete("nope")
    with pytest.raises(NotFound, match="unknown job 'nope'"):
        mgr.leave("nope", 0)


def test_expired_leases_free_slots_and_entries(tmp_path: Path) -> None:
    mgr, sw, clock = make(tmp_path, lease_seconds=10)
    join(mgr, "a", 0, 1)
    join(mgr, "b", 0, 1, host=2)
    clock.t += 8
    mgr.heartbeat("b", 0)
    clock.t += 5
    assert mgr.reap() == ["a"]
    assert [v.job.name for v in mgr.jobs()] == ["b"]
    assert not any(r.keys[0] == 1 for r in sw.rows.values() if r.table == n.TABLE_JOBS.name)
    assert n.JOB_MCAST_BASE + 1 not in sw.groups
    assert [e.owner for e in mgr.occupancy()] == ["", "b", ""]


def test_leave_last_member_deletes_job(tmp_path: Path) -> None:
    mgr, sw, _ = make(tmp_path)
    join(mgr, "a", 0, 2)
    join(mgr, "a", 1, 2)
    mgr.leave("a", 1)
    assert n.JOB_MCAST_BASE + 1 in sw.groups and (n.TABLE_RESULT_REWRITE.name, (1, 1)) not in sw.rows
    mgr.leave("a", 0)
    assert mgr.jobs() == [] and not [r for r in sw.rows.values() if r.table == n.TABLE_JOBS.name]


def test_wait_ready_times_out_naming_missing_ranks(tmp_path: Path) -> None:
    mgr, _, _ = make(tmp_path)
    join(mgr, "a", 1, 3)
    with pytest.raises(Timeout, match=r"missing ranks \[0, 2\]"):
        mgr.wait_ready("a", 0.05)


def test_restart_keeps_jobs_and_repairs_switch(tmp_path: Path) -> None:
    mgr, sw, _ = make(tmp_path)
    join(mgr, "a", 0, 2)
    join(mgr, "a", 1, 2)
    mgr.create("b", 4, slots=100)
    good_rows, good_groups = dict(sw.rows), dict(sw.groups)
    mgr.store.close()
    # behind the controller's back: remove an entry, alter one, add a stray one and a group
    del sw.rows[(n.TABLE_MEMBERS.name, (1, 0, 0x0A000001, 1))]
    k = (n.TABLE_JOBS.name, (1,))
    sw.rows[k] = Row(k[0], k[1], n.ACTION_SET_JOB.name, (9, 9, 9, 9, 9))
    sw.rows[(n.TABLE_JOBS.name, (77,))] = Row(n.TABLE_JOBS.name, (77,), n.ACTION_SET_JOB.name, (0, 1, 1, 1, 1))
    sw.groups[n.JOB_MCAST_BASE + 77] = frozenset({(1, 0)})
    mgr2, _, _ = make(tmp_path, sw)
    assert (dict(sw.rows), dict(sw.groups)) == (good_rows, good_groups)
    assert [(v.job.name, v.job.base, v.job.count, len(v.members)) for v in mgr2.jobs()] == [
        ("a", 0, 256, 2),
        ("b", 256, 100, 0),
    ]


def test_backup_cannot_write(tmp_path: Path) -> None:
    mgr, sw, _ = make(tmp_path, MemorySwitch(primary=False))
    with pytest.raises(NotPrimary, match="backup"):
        mgr.create("a", 1)
    with pytest.raises(ControllerError):
        join(mgr, "a", 0, 1)
    assert sw.writes == 0 and mgr.jobs() == []


def test_job_ids_run_out_clearly_and_are_reused(tmp_path: Path) -> None:
    mgr, _, _ = make(tmp_path, max_jobs=3, default_slots=10)
    assert [mgr.create(f"j{i}", 1).job.id for i in range(2)] == [1, 2]
    with pytest.raises(Exhausted, match="all 2 job ids are in use"):
        mgr.create("j2", 1)
    mgr.delete("j0")
    assert mgr.create("j3", 1).job.id == 1


def test_a_created_job_waits_without_lease_until_its_first_worker(tmp_path: Path) -> None:
    mgr, _, clock = make(tmp_path, lease_seconds=10)
    assert mgr.create("planned", 2).job.lease_until == 0
    clock.t += 1000
    assert mgr.reap() == []
    join(mgr, "planned", 0, 2)
    assert mgr.job("planned").job.lease_until == clock.t + 10
    clock.t += 11
    assert mgr.reap() == ["planned"] and mgr.jobs() == []


def test_jobs_without_workers_are_moved_to_make_room(tmp_path: Path) -> None:
    mgr, sw, _ = make(tmp_path, num_slots=100, default_slots=20)
    mgr.create("a", 1)
    join(mgr, "b", 0, 1)
    mgr.create("c", 1)
    join(mgr, "d", 0, 1, host=2)
    epochs = {v.job.name: v.job.epoch for v in mgr.jobs()}
    mgr.delete("b")  # free: 20..39 and 80..99, largest gap 20
    new = mgr.create("e", 1, slots=30)
    layout = {v.job.name: (v.job.base, v.job.count) for v in mgr.jobs()}
    assert layout == {"a": (80, 20), "c": (40, 20), "d": (60, 20), "e": (0, 30)}
    after = {v.job.name: v.job.epoch for v in mgr.jobs()}
    assert after["d"] == epochs["d"]  # a job with workers never moves
    assert after["c"] == epochs["c"]  # nor one that was not in the way
    assert after["a"] != epochs["a"]
    assert new.job.epoch not in {after["a"], after["c"], after["d"]}
    a_row = sw.rows[(n.TABLE_JOBS.name, (mgr.job("a").job.id,))]
    assert a_row.args[0] == 80 and a_row.args[4] == after["a"]
    with pytest.raises(Exhausted, match="10 of 100 slots free"):
        mgr.create("f", 1, slots=20)
    assert {v.job.name: (v.job.base, v.job.count) for v in mgr.jobs()} == layout


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["create", "join", "delete"]), st.integers(0, 5), st.integers(1, 45)
        ),
        max_size=25,
    )
)
def test_random_jobs_never_overlap_and_busy_jobs_never_move(
    tmp_path_factory: pytest.TempPathFactory, ops: list[tuple[str, int, int]]
) -> None:
    mgr, sw, _ = make(tmp_path_factory.mktemp("h"), num_slots=100)
    for op, who, size in ops:
        name = f"j{who}"
        busy_before = {v.job.name: (v.job.base, v.job.epoch) for v in mgr.jobs() if v.members}
        try:
            if op == "create":
                mgr.create(name, 2, slots=size)
            elif op == "join":
                mgr.join(name, 0, 2, "02:00:00:00:00:01", "10.0.0.1", 5000 + who, slots=size)
            else:
                mgr.delete(name)
        except (AlreadyExists, NotFound, Exhausted, InvalidArgument):
            pass
        views = mgr.jobs()
        spans = sorted((v.job.base, v.job.count) for v in views)
        for (b1, c1), (b2, _) in pairwise(spans):
            assert b1 + c1 <= b2
        assert all(b + c <= 100 for b, c in spans)
        for v in views:
            if v.job.name in busy_before:
                assert (v.job.base, v.job.epoch) == busy_before[v.job.name]
        rows = {r.keys[0]: r.args for r in sw.rows.values() if r.table == n.TABLE_JOBS.name}
        assert rows == {
            v.job.id: (v.job.base, v.job.count, 2, n.JOB_MCAST_BASE + v.job.id, v.job.epoch)
            for v in views
        }
        assert len({v.job.epoch for v in views}) == len(views)
    mgr.store.close()


def test_changes_write_only_their_difference_and_watch_repairs_drift(tmp_path: Path) -> None:
    from p4reduce.controller.serve import Watch

    mgr, sw, _ = make(tmp_path)
    reads = sw.reads
    join(mgr, "a", 0, 2)
    writes = sw.writes
    join(mgr, "a", 1, 2)
    assert sw.reads == reads  # no read-back per change
    assert sw.writes - writes == 3  # member + rewrite inserts, group modify
    good = dict(sw.rows)
    del sw.rows[(n.TABLE_MEMBERS.name, (1, 0, 0x0A000001, 1))]
    Watch(mgr, None, resync_seconds=3600).tick()
    assert dict(sw.rows) != good  # not yet time for a full read-back
    Watch(mgr, None, resync_seconds=0).tick()
    assert dict(sw.rows) == good and sw.reads == reads + 1


def test_unusable_state_file_is_one_line_error(tmp_path: Path) -> None:
    """`serve --state` naming a missing folder or a file that is not a database fails with
    InvalidArgument (one line from the CLI), not an sqlite3 traceback."""
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not a database, but long enough to have a header" * 4)
    for path, why in ((tmp_path / "missing" / "x.db", "unable to open"), (junk, "not a database")):
        with pytest.raises(InvalidArgument, match=f"cannot use state file .*{why}") as err:
            Store(path)
        assert "\n" not in str(err.value)


def test_a_job_id_given_again_inherits_no_restart_generation(tmp_path: Path) -> None:
    """Job ids are reused (the lowest free one): a new job must not accept a resync for
    a restart that happened to the deleted job that held its id before."""
    mgr, _, _ = make(tmp_path)
    join(mgr, "a", 0, 1)
    first = mgr.job("a").job.id
    mgr.switch_restarted("test", None)
    gen = mgr._restarts[first]  # the generation the ranks of "a" were told
    mgr.delete("a")
    join(mgr, "b", 0, 1)
    assert mgr.job("b").job.id == first
    with pytest.raises(InvalidArgument, match="not its latest"):
        mgr.resync("b", 0, gen, 0, 0, 1.0)
