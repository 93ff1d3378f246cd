"""Liveness bookkeeping and job events (controller/liveness.py), and host-only jobs, with
a fake clock and the in-memory switch."""

from __future__ import annotations

from pathlib import Path

import pytest

from p4reduce import contract as n
from p4reduce.controller.errors import Exhausted
from p4reduce.controller.liveness import (
    JOB_DELETED,
    PEER_DOWN,
    PEER_LEFT,
    Liveness,
    dead_after,
)
from tests.controller.test_controller_jobs import Clock, join, make


def test_a_rank_is_down_after_missed_beats_once_and_up_again_when_it_beats() -> None:
    clock = Clock()
    live = Liveness(clock)
    sub = live.subscribe(1)
    live.beat(1, 0, 0.5)
    live.beat(1, 1, 0.5)
    live.beat(1, 2, 0.0)  # lease-only heartbeats are not tracked
    clock.t += dead_after(0.5) - 0.1
    live.beat(1, 0, 0.5)
    assert live.scan() == []
    clock.t += 0.2
    (ev,) = live.scan()
    assert (ev.kind, ev.ranks, ev.last_seen) == (PEER_DOWN, (1,), (1000.0,))
    assert "rank 1 last seen" in ev.message and "2.1 s ago" in ev.message
    assert live.scan() == []  # once per silence
    assert sub.get(0.1) == ev
    live.beat(1, 1, 0.5)
    clock.t += 5
    (again,) = live.scan()
    assert again.ranks == (0, 1)


def test_late_watchers_get_the_job_history_and_deletion_clears_it() -> None:
    clock = Clock()
    live = Liveness(clock)
    live.beat(7, 0, 0.1)
    clock.t += 3
    live.scan()
    late = live.subscribe(7)
    got = late.get(0.1)
    assert got is not None and got.kind == PEER_DOWN
    live.job_gone(7, "job 'x' was deleted")
    gone = late.get(0.1)
    assert gone is not None and gone.kind == JOB_DELETED
    assert live.subscribe(7).get(0.05) is None
    assert live.last_seen(7, 0) is None


def test_leave_tells_the_remaining_ranks(tmp_path: Path) -> None:
    mgr, _, _ = make(tmp_path)
    join(mgr, "a", 0, 2)
    join(mgr, "a", 1, 2)
    sub = mgr.liveness.subscribe(mgr.job("a").job.id)
    mgr.leave("a", 1)
    ev = sub.get(0.1)
    assert ev is not None and ev.kind == PEER_LEFT and ev.ranks == (1,)
    mgr.leave("a", 0)
    ev = sub.get(0.1)
    assert ev is not None and ev.kind == JOB_DELETED


def test_frequent_heartbeats_do_not_write_the_store(tmp_path: Path) -> None:
    mgr, _, clock = make(tmp_path, lease_seconds=60)
    join(mgr, "a", 0, 1)
    first = mgr.job("a").job.lease_until
    clock.t += 1
    assert mgr.heartbeat("a", 0, 0.5) == first  # half the lease is left: kept
    clock.t += 40
    assert mgr.heartbeat("a", 0, 0.5) == clock.t + 60


def test_a_full_switch_gives_a_best_effort_job_host_only(tmp_path: Path) -> None:
    mgr, sw, _ = make(tmp_path, num_slots=100, default_slots=100)
    join(mgr, "big", 0, 1)
    with pytest.raises(Exhausted):
        join(mgr, "small", 0, 2)
    before = dict(sw.rows), dict(sw.groups)
    mgr.join("small", 0, 2, "02:00:00:00:00:02", "10.0.0.2", 5000, best_effort=True)
    mgr.join("small", 1, 2, "02:00:00:00:00:03", "10.0.0.3", 5001, slots=64, best_effort=True)
    v = mgr.job("small")
    assert v.ready and v.job.host_only and v.job.count == 0 and v.job.id >= 1 << 16
    assert (dict(sw.rows), dict(sw.groups)) == before  # nothing of it on the switch
    assert "small" not in mgr.counters(None)
    # slots freeing up does not move it: its ranks decided once, together
    mgr.delete("big")
    assert mgr.job("small").job.host_only
    assert [e.owner for e in mgr.occupancy()] == [""]
    mgr.leave("small", 0)
    mgr.leave("small", 1)
    assert [v.job.name for v in mgr.jobs()] == []
    join(mgr, "after", 0, 1)
    assert not mgr.job("after").job.host_only
    assert any(r.table == n.TABLE_JOBS.name for r in sw.rows.values())
