"""The controller against softswitch's P4Runtime server over real gRPC on 127.0.0.1:
pipeline push, entries and groups on the switch, backup refusal, SIGKILL and restart
with reconciliation, and the API's error statuses."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from p4reduce import contract as n
from p4reduce.controller.api import ApiServer
from p4reduce.controller.client import ControllerCallError, ControllerClient
from p4reduce.controller.errors import NotPrimary, SwitchError
from p4reduce.controller.jobs import JobManager, Settings
from p4reduce.controller.p4rt import P4RuntimeSwitch, load_p4info
from p4reduce.controller.serve import Watch
from p4reduce.controller.store import Store
from p4reduce.controller.topology import load as load_topology
from p4reduce.softswitch.runtime.control import ActionCall, CounterValue, Exact, Replica, TableEntry
from tests.controller.test_controller_fakes import FakeSwitch, host, start_switch, write_topology
from tests.paths import ROOT

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[FakeSwitch]:
    sw = start_switch(tmp_path)
    yield sw
    sw.stop()


def connect(fake: FakeSwitch, election: int = 10) -> P4RuntimeSwitch:
    sw = P4RuntimeSwitch(fake.server.address, 0, election)
    sw.ensure_pipeline(load_p4info(fake.p4info_path), fake.config_path.read_bytes())
    return sw


class Controller:
    def __init__(
        self,
        fake: FakeSwitch,
        tmp: Path,
        election: int = 10,
        clock: Callable[[], float] = time.time,
        state: str = "",
        **kw: Any,
    ) -> None:
        self.switch = connect(fake, election)
        self.mgr = JobManager(
            Store(tmp / (state or f"state{election}.db")),
            self.switch,
            load_topology(write_topology(tmp)),
            Settings(**kw),
            clock,
        )
        self.mgr.start()
        self.api = ApiServer(self.mgr, "127.0.0.1:0")
        self.client = ControllerClient(self.api.address)

    def close(self) -> None:
        self.client.close()
        self.api.stop()
        self.switch.close()
        self.mgr.store.close()


def switch_rows(pipe: Any) -> set[tuple[str, tuple[int, ...], str, tuple[int, ...]]]:
    return {
        (t, tuple(k.value for k in e.keys), e.action.action, e.action.args)
        for t, entries in pipe.entries.items()
        for e in entries.values()
    }


def test_join_over_grpc_installs_entries_groups_and_reads_counters(
    fake: FakeSwitch, tmp_path: Path
) -> None:
    c = Controller(fake, tmp_path)
    try:
        mac0, ip0 = host(1)
        mac1, ip1 = host(2)
        first = c.client.join("train", 0, 2, mac0, ip0, 6000, slots=64)
        assert not first.ready and first.slot_count == 64 and first.k == n.DEFAULT_K
        assert first.aggregation.ipv4 == "10.0.0.254" and first.aggregation.udp_port == 48879
        second = c.client.join("train", 1, 2, mac1, ip1, 6001, wait_ready_timeout=5)
        assert second.ready and second.job_id == first.job_id and second.epoch == first.epoch
        jid = first.job_id
        rows = switch_rows(fake.pipe)
        assert (
            n.TABLE_JOBS.name,
            (jid,),
            n.ACTION_SET_JOB.name,
            (0, 64, 2, n.JOB_MCAST_BASE + jid, first.epoch),
        ) in rows
        assert (n.TABLE_MEMBERS.name, (jid, 1, 0x0A000002, 2), n.ACTION_MEMBER_OK.name, (1,)) in rows
        assert (
            n.TABLE_RESULT_REWRITE.name,
            (jid, 0),
            n.ACTION_SET_WORKER_ADDR.name,
            (0x020000000001, 0x0A000001, 6000),
        ) in rows
        assert (n.TABLE_ARP.name, (0x0A0000FE,), n.ACTION_ARP_REPLY.name, (0x0200000000FE,)) in rows
        assert (n.TABLE_L2.name, (0x020000000003,), n.ACTION_FORWARD.name, (3,)) in rows
        groups = fake.pipe.groups
        assert set(groups[n.JOB_MCAST_BASE + jid]) == {Replica(1, 0), Replica(2, 1)}
        assert len(groups[n.FLOOD_MCAST_GRP]) == 8
        fake.pipe.counters[n.COUNTER_RESULTS][jid] = CounterValue(7, 700)
        r = c.client.counters("train")
        got = {x.name: (x.packets, x.bytes) for x in r.jobs[0].counters}
        assert got["results"] == (7, 700) and got["aggregated"] == (0, 0)
        c.client.leave("train", 0)
        c.client.leave("train", 1)
        assert c.client.jobs() == []
        assert not fake.pipe.entries[n.TABLE_JOBS.name] and n.JOB_MCAST_BASE + jid not in groups
    finally:
        c.close()


@pytest.mark.parametrize(
    ("kw", "code", "text"),
    [
        ({"world_size": 0}, grpc.StatusCode.INVALID_ARGUMENT, "world size 0"),
        ({"world_size": 33}, grpc.StatusCode.INVALID_ARGUMENT, "world size 33"),
        ({"rank": 5}, grpc.StatusCode.INVALID_ARGUMENT, "rank 5"),
        ({"mac": "02:00:00:00:01"}, grpc.StatusCode.INVALID_ARGUMENT, "MAC"),
        ({"ipv4": "10.0.0"}, grpc.StatusCode.INVALID_ARGUMENT, "IPv4"),
        ({"udp_port": 70000}, grpc.StatusCode.INVALID_ARGUMENT, "UDP port"),
        ({"job": ""}, grpc.StatusCode.INVALID_ARGUMENT, "job name"),
    ],
)
def test_bad_join_over_api_is_refused_and_changes_nothing(
    fake: FakeSwitch, tmp_path: Path, kw: dict[str, Any], code: grpc.StatusCode, text: str
) -> None:
    c = Controller(fake, tmp_path)
    try:
        c.client.join("ok", 0, 2, *host(1), 6000)
        before = switch_rows(fake.pipe), dict(fake.pipe.groups)
        args = {
            "job": "ok",
            "rank": 1,
            "world_size": 2,
            "mac": host(2)[0],
            "ipv4": host(2)[1],
            "udp_port": 6001,
            **kw,
        }
        with pytest.raises(ControllerCallError) as e:
            c.client.join(**args)
        assert e.value.code == code and text in e.value.message
        assert (switch_rows(fake.pipe), dict(fake.pipe.groups)) == before
        assert [len(j.members) for j in c.client.jobs()] == [1]
        with pytest.raises(ControllerCallError) as e2:
            c.client.join("ok", 0, 2, *host(3), 6002)
        assert e2.value.code == grpc.StatusCode.ALREADY_EXISTS and "rank 0" in e2.value.message
        with pytest.raises(ControllerCallError) as e3:
            c.client.job("missing")
        assert (
            e3.value.code == grpc.StatusCode.NOT_FOUND
            and "unknown job 'missing'" in e3.value.message
        )
    finally:
        c.close()


def test_second_controller_is_backup_and_cannot_write(fake: FakeSwitch, tmp_path: Path) -> None:
    primary = Controller(fake, tmp_path, election=10)
    backup = Controller(fake, tmp_path, election=5)
    try:
        assert primary.switch.is_primary() and not backup.switch.is_primary()
        info = backup.client.switch()
        assert not info.primary and info.primary_election_id == "10" and info.election_id == "5"
        with pytest.raises(ControllerCallError) as e:
            backup.client.create_job("j", 2)
        assert e.value.code == grpc.StatusCode.FAILED_PRECONDITION and "backup" in e.value.message
        assert backup.client.jobs() == [] and not fake.pipe.entries[n.TABLE_JOBS.name]
        # even bypassing the controller's own check, the switch refuses its writes
        backup.switch._primary = True
        with pytest.raises(NotPrimary):
            backup.mgr.create("j", 2)
        assert backup.mgr.jobs() == []
        primary.client.create_job("j", 2)
        assert len(fake.pipe.entries[n.TABLE_JOBS.name]) == 1
    finally:
        backup.close()
        primary.close()


def test_full_switch_refuses_over_api(fake: FakeSwitch, tmp_path: Path) -> None:
    c = Controller(fake, tmp_path, num_slots=1000)
    try:
        c.client.create_job("big", 4, slots=900)
        with pytest.raises(ControllerCallError) as e:
            c.client.create_job("more", 4, slots=200)
        assert e.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "100 of 1000 slots free" in e.value.message and "big 900" in e.value.message
        assert [j.name for j in c.client.jobs()] == ["big"]
        assert len(fake.pipe.entries[n.TABLE_JOBS.name]) == 1
    finally:
        c.close()


@settings(
    max_examples=4, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.lists(
        st.tuples(st.booleans(), st.integers(0, 5), st.integers(1, 300)), min_size=1, max_size=15
    )
)
def test_random_create_delete_over_grpc_never_overlaps(
    fake: FakeSwitch, tmp_path: Path, ops: list[tuple[bool, int, int]]
) -> None:
    c = Controller(fake, tmp_path, num_slots=1000)
    try:
        for j in c.client.jobs():
            c.client.delete_job(j.name)
        for create, who, slots in ops:
            name = f"j{who}"
            try:
                if create:
                    c.client.create_job(name, 2, slots=slots)
                else:
                    c.client.delete_job(name)
            except ControllerCallError as e:
                assert e.code in (
                    grpc.StatusCode.ALREADY_EXISTS,
                    grpc.StatusCode.NOT_FOUND,
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                )
            ranges = sorted(
                (e.action.args[0], e.action.args[1])
                for e in fake.pipe.entries[n.TABLE_JOBS.name].values()
            )
            for (b1, c1), (b2, _) in itertools.pairwise(ranges):
                assert b1 + c1 <= b2
            assert all(b + cnt <= 1000 for b, cnt in ranges)
            assert len(ranges) == len(c.client.jobs())
    finally:
        c.close()


def _serve(fake: FakeSwitch, tmp: Path, *extra: str) -> tuple[subprocess.Popen[str], str]:
    cmd = [
        sys.executable,
        "-m",
        "p4reduce.controller.cli",
        "serve",
        "--switch",
        fake.server.address,
        "--election-id",
        "7",
        "--p4info",
        str(fake.p4info_path),
        "--device-config",
        str(fake.config_path),
        "--topology",
        str(write_topology(tmp)),
        "--state",
        str(tmp / "ctl.db"),
        "--listen",
        "127.0.0.1:0",
        *extra,
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if "controller API on" not in line:
        proc.kill()
        raise AssertionError(
            f"serve did not start: {line!r} {proc.stderr.read() if proc.stderr else ''}"
        )
    addr = line.split("controller API on ")[1].split(";")[0]
    return proc, addr


def test_sigkill_restart_keeps_jobs_and_reconciles_switch(fake: FakeSwitch, tmp_path: Path) -> None:
    proc, addr = _serve(fake, tmp_path)
    try:
        with ControllerClient(addr) as cl:
            cl.join("a", 0, 2, *host(1), 6000)
            cl.join("a", 1, 2, *host(2), 6001)
            b = cl.create_job("b", 3, slots=100)
            before_jobs = [
                (j.name, j.job_id, j.slot_base, j.slot_count, j.epoch, len(j.members))
                for j in cl.jobs()
            ]
        good = switch_rows(fake.pipe), dict(fake.pipe.groups)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        # behind the controller's back: drop a member, corrupt a job, add strays
        pipe = fake.pipe
        members = pipe.entries[n.TABLE_MEMBERS.name]
        del members[next(iter(members))]
        jobs = pipe.entries[n.TABLE_JOBS.name]
        k = next(k for k, e in jobs.items() if e.keys[0] == Exact(b.job_id))
        jobs[k] = TableEntry(k[0], ActionCall(n.ACTION_SET_JOB.name, (5, 5, 5, 5, 5)))
        jobs[((Exact(99),), 0)] = TableEntry(
            (Exact(99),), ActionCall(n.ACTION_SET_JOB.name, (0, 1, 1, 1, 1))
        )
        pipe.groups[n.JOB_MCAST_BASE + 99] = (Replica(1, 0),)
        proc, addr = _serve(fake, tmp_path)
        with ControllerClient(addr) as cl:
            after = [
                (j.name, j.job_id, j.slot_base, j.slot_count, j.epoch, len(j.members))
                for j in cl.jobs()
            ]
            assert after == before_jobs
            assert (switch_rows(fake.pipe), dict(fake.pipe.groups)) == good
            assert "already installed" in cl.switch().pipeline
    finally:
        proc.kill()
        proc.wait(10)


def test_expired_lease_frees_slots_and_switch_state(fake: FakeSwitch, tmp_path: Path) -> None:
    now = [1000.0]
    c = Controller(fake, tmp_path, clock=lambda: now[0], lease_seconds=30, num_slots=1000)
    try:
        a = c.client.join("a", 0, 1, *host(1), 6000, slots=400)
        c.client.join("b", 0, 1, *host(2), 6001, slots=400)
        with pytest.raises(ControllerCallError) as e:
            c.client.create_job("c", 1, slots=400)
        assert e.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
        now[0] += 20
        assert c.client.heartbeat("b", 0) == now[0] + 30
        now[0] += 20
        assert c.mgr.reap() == ["a"]
        assert [j.name for j in c.client.jobs()] == ["b"]
        assert not any(
            e.keys[0] == Exact(a.job_id) for e in fake.pipe.entries[n.TABLE_JOBS.name].values()
        )
        assert n.JOB_MCAST_BASE + a.job_id not in fake.pipe.groups
        assert c.client.create_job("c", 1, slots=400).slot_base == 0
        with pytest.raises(ControllerCallError) as e2:
            c.client.heartbeat("a", 0)
        assert e2.value.code == grpc.StatusCode.NOT_FOUND
    finally:
        c.close()


def test_serve_reclaims_expired_jobs_by_itself(fake: FakeSwitch, tmp_path: Path) -> None:
    proc, addr = _serve(fake, tmp_path, "--lease", "0.5")
    try:
        with ControllerClient(addr) as cl:
            cl.join("short", 0, 2, *host(1), 6000)
            deadline = time.monotonic() + 30
            while cl.jobs() and time.monotonic() < deadline:
                time.sleep(0.1)
            assert cl.jobs() == []
            assert not fake.pipe.entries[n.TABLE_JOBS.name]
    finally:
        proc.terminate()
        assert proc.wait(10) == 0


def _until(cond: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 20
    while not cond() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert cond()


def test_backup_sharing_the_state_file_takes_over_without_losing_jobs(
    fake: FakeSwitch, tmp_path: Path
) -> None:
    primary = Controller(fake, tmp_path, election=10, state="shared.db")
    backup = Controller(fake, tmp_path, election=5, state="shared.db")
    try:
        primary.client.join("keep", 0, 2, *host(1), 6000)
        primary.client.join("keep", 1, 2, *host(2), 6001)
        good = switch_rows(fake.pipe), dict(fake.pipe.groups)
        assert [j.name for j in backup.client.jobs()] == ["keep"]  # it reads the shared state
        watch = Watch(backup.mgr, None)
        primary.close()
        _until(backup.switch.is_primary)
        watch.tick()
        assert (switch_rows(fake.pipe), dict(fake.pipe.groups)) == good
        extra = backup.client.create_job("more", 2)
        assert extra.slot_base == 256  # the allocator knows the primary's allocation
        assert backup.client.switch().primary
    finally:
        backup.close()


def test_watch_reconnects_and_restores_a_restarted_switch(fake: FakeSwitch, tmp_path: Path) -> None:
    from p4reduce.softswitch.p4runtime import serve
    from tests.controller.test_controller_fakes import AggFakePipeline
    from tests.softswitch.test_p4runtime_fakes import FakeDevice

    c = Controller(fake, tmp_path)
    try:
        c.client.join("j", 0, 1, *host(1), 6000)
        good = switch_rows(fake.pipe), dict(fake.pipe.groups)
        address = fake.server.address
        fake.server.stop()
        _until(lambda: not c.switch.alive())
        fake.device = FakeDevice()
        fake.server = serve(fake.device, address, factory=AggFakePipeline)
        watch = Watch(c.mgr, lambda name: connect(fake))
        watch.tick()
        assert c.mgr.switch is not c.switch and c.mgr.switch.is_primary()
        assert (switch_rows(fake.pipe), dict(fake.pipe.groups)) == good
        c.switch = c.mgr.switch  # type: ignore[assignment]
    finally:
        c.close()


def test_same_election_id_as_the_primary_is_refused_clearly(
    fake: FakeSwitch, tmp_path: Path
) -> None:
    first = connect(fake, election=3)
    try:
        with pytest.raises(SwitchError, match="already used"):
            P4RuntimeSwitch(fake.server.address, 0, 3, connect_timeout=1)
        assert first.is_primary() and first.alive()
    finally:
        first.close()
