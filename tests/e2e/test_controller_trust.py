"""The controller's side of issue 17 over real gRPC on 127.0.0.1 (softswitch's P4Runtime
server with the controller tests' fake pipeline): a short takeover by another client is
repaired as soon as primary is back, another state file's controller refuses a switch
running someone else's jobs unless --takeover, the API port is not shared, the program's
slots and K bound --num-slots and --k, a new job's counters start at zero, and a silent
rank is reported to its job's watchers within seconds."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from google.protobuf import text_format  # type: ignore[import-untyped]

from p4reduce import contract as n
from p4reduce.controller.api import ApiServer
from p4reduce.controller.backend import Update
from p4reduce.controller.client import ControllerCallError, ControllerClient, JobEvent
from p4reduce.controller.entities import Row
from p4reduce.controller.errors import ControllerError
from p4reduce.controller.jobs import ForeignJobs, JobManager, Settings
from p4reduce.controller.p4rt import P4RuntimeSwitch, load_p4info
from p4reduce.controller.store import Store
from p4reduce.controller.topology import load as load_topology
from p4reduce.softswitch.runtime.control import CounterValue, Exact
from tests.controller.test_controller_fakes import FakeSwitch, host, start_switch, write_topology
from tests.e2e.test_controller_e2e import Controller, _serve, connect, switch_rows
from tests.paths import ROOT

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[FakeSwitch]:
    sw = start_switch(tmp_path)
    yield sw
    sw.stop()


def _state(fake: FakeSwitch) -> tuple[object, dict[int, object]]:
    return switch_rows(fake.pipe), dict(fake.pipe.groups)


def test_a_short_takeover_that_deletes_entries_is_repaired_within_two_seconds(
        fake: FakeSwitch, tmp_path: Path) -> None:
    proc, addr = _serve(fake, tmp_path)  # election id 7, resync every 60 s
    try:
        with ControllerClient(addr) as cl:
            cl.join("victim", 0, 2, *host(1), 6000)
            info = cl.join("victim", 1, 2, *host(2), 6001)
        good = _state(fake)
        member = next(r for r in _rows(fake) if r.table == n.TABLE_MEMBERS.name)
        group = n.JOB_MCAST_BASE + info.job_id
        rogue = P4RuntimeSwitch(fake.server.address, 0, 100)
        try:
            assert rogue.is_primary()
            rogue.ensure_pipeline(load_p4info(fake.p4info_path), fake.config_path.read_bytes())
            rogue.write([Update("delete", row=member),
                         Update("delete", group=(group, frozenset()))])
            assert _state(fake) != good
            time.sleep(0.1)
        finally:
            left = time.monotonic()
            rogue.close()  # it leaves within 0.2 s; the controller is primary again
        while _state(fake) != good and time.monotonic() - left < 10:
            time.sleep(0.01)
        repaired = time.monotonic() - left
        assert _state(fake) == good
        assert repaired < 2.0, f"repaired {repaired:.2f} s after primary came back"
    finally:
        proc.kill()
        proc.wait(10)


def _rows(fake: FakeSwitch) -> list[Row]:
    out = []
    for table, entries in fake.pipe.entries.items():
        for e in entries.values():
            keys = tuple(k.value for k in e.keys if isinstance(k, Exact))
            out.append(Row(table, keys, e.action.action, e.action.args))
    return out


def _manager(fake: FakeSwitch, tmp: Path, state: str, election: int,
             **settings: object) -> tuple[JobManager, P4RuntimeSwitch]:
    sw = connect(fake, election)
    mgr = JobManager(Store(tmp / state), sw, load_topology(write_topology(tmp)),
                     Settings(**settings))  # type: ignore[arg-type]
    return mgr, sw


def test_another_state_file_refuses_the_switch_unless_takeover(
        fake: FakeSwitch, tmp_path: Path) -> None:
    first, sw = _manager(fake, tmp_path, "first.db", 10)
    first.start()
    first.join("theirs", 0, 1, *host(1), 6000)
    theirs = _state(fake)
    first.store.close()
    sw.close()

    second, sw2 = _manager(fake, tmp_path, "second.db", 11)
    try:
        with pytest.raises(ForeignJobs, match="--takeover"):
            second.start()
        assert _state(fake) == theirs  # nothing written
        with pytest.raises(ForeignJobs):  # and no change through the API either
            second.create("mine", 1)
        assert second.reap() == []
    finally:
        second.store.close()
        sw2.close()

    third, sw3 = _manager(fake, tmp_path, "second.db", 12, takeover=True)
    try:
        third.start()
        third.join("mine", 0, 1, *host(2), 6001)
        assert [r.owner for r in third.switch.read_rows((n.TABLE_JOBS.name,))] == [third.owner]
    finally:
        third.store.close()
        sw3.close()
    again, sw4 = _manager(fake, tmp_path, "second.db", 13)  # its own state file: no refusal
    try:
        again.start()
        assert [v.job.name for v in again.jobs()] == ["mine"]
    finally:
        again.store.close()
        sw4.close()


def test_primary_regained_after_another_controller_wrote_checks_ownership_again(
        fake: FakeSwitch, tmp_path: Path) -> None:
    """A controller that loses primary to one started with --takeover and another state
    file, then becomes primary again, must not delete that controller's jobs without
    --takeover itself: the serve loop's `unclaim` makes its next write check again."""
    first, sw = _manager(fake, tmp_path, "first.db", 10)
    try:
        first.start()
        first.join("mine", 0, 1, *host(1), 6000)
        other, sw2 = _manager(fake, tmp_path, "other.db", 20, takeover=True)
        try:
            other.start()
            other.join("theirs", 0, 1, *host(2), 6001)
            theirs = _state(fake)
        finally:
            other.store.close()
            sw2.close()
        deadline = time.monotonic() + 10
        while not sw.is_primary():  # the switch hands primary back to the highest left
            assert time.monotonic() < deadline, "primary never came back"
            time.sleep(0.05)
        first.unclaim(list(first.switches))
        with pytest.raises(ForeignJobs, match="--takeover"):
            first.start()
        assert _state(fake) == theirs  # nothing of the other controller's was touched
    finally:
        first.store.close()
        sw.close()


def test_serve_refuses_a_foreign_switch_in_one_line(fake: FakeSwitch, tmp_path: Path) -> None:
    mgr, sw = _manager(fake, tmp_path, "other.db", 10)
    mgr.start()
    mgr.join("theirs", 0, 1, *host(1), 6000)
    mgr.store.close()
    sw.close()
    with pytest.raises(AssertionError, match="--takeover"):
        _serve(fake, tmp_path)
    proc, addr = _serve(fake, tmp_path, "--takeover")
    try:
        with ControllerClient(addr) as cl:
            assert cl.jobs() == []
        assert not fake.pipe.entries[n.TABLE_JOBS.name]
    finally:
        proc.kill()
        proc.wait(10)


def test_the_api_port_is_not_shared(fake: FakeSwitch, tmp_path: Path) -> None:
    c = Controller(fake, tmp_path)
    try:
        with pytest.raises(ControllerError, match="cannot listen"):
            ApiServer(c.mgr, c.api.address)
        assert c.client.jobs() == []
    finally:
        c.close()


def _program_p4info(tmp: Path) -> Path:
    from tests.pipeline.targets import compile_ir, p4info_of

    path = tmp / "real.p4info.txtpb"
    path.write_text(text_format.MessageToString(p4info_of(compile_ir())))
    return path


def _serve_cmd(fake: FakeSwitch, tmp: Path, p4info: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "p4reduce.controller.cli", "serve", "--switch",
           fake.server.address, "--p4info", str(p4info), "--device-config",
           str(fake.config_path), "--topology", str(write_topology(tmp)), "--state",
           str(tmp / "limits.db"), "--listen", "127.0.0.1:0", *extra]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=ROOT)


@pytest.mark.parametrize(("flags", "message"), [
    (("--num-slots", "20000"), "--num-slots 20000 does not fit the program: it has 16384 slots"),
    (("--k", "32"), "--k 32 is not the program's 64 values per packet"),
])
def test_num_slots_and_k_are_checked_against_the_program(
        fake: FakeSwitch, tmp_path: Path, flags: tuple[str, ...], message: str) -> None:
    got = _serve_cmd(fake, tmp_path, _program_p4info(tmp_path), *flags)
    assert got.returncode == 1
    assert message in got.stderr and "Traceback" not in got.stderr
    assert len(got.stderr.strip().splitlines()) == 1


def test_the_program_limits_are_read_from_its_p4info(fake: FakeSwitch, tmp_path: Path) -> None:
    sw = P4RuntimeSwitch(fake.server.address, 0, 3)
    try:
        sw.ensure_pipeline(load_p4info(_program_p4info(tmp_path)), fake.config_path.read_bytes())
        assert sw.program_limits() == (n.DEFAULT_SLOT_PAIRS, n.DEFAULT_K)
    finally:
        sw.close()


def test_a_new_job_counts_only_its_own_packets(fake: FakeSwitch, tmp_path: Path) -> None:
    c = Controller(fake, tmp_path)
    try:
        old = c.client.create_job("old", 1)
        for name in n.PER_JOB_COUNTERS:  # traffic of the job that held this id before
            fake.pipe.counters[name][old.job_id] = CounterValue(50, 5000)
        c.client.delete_job("old")
        new = c.client.create_job("new", 1)
        assert new.job_id == old.job_id
        reply = c.client.counters("new")
        (job,) = reply.jobs
        assert [(v.packets, v.bytes) for v in job.counters] == [(0, 0)] * len(n.PER_JOB_COUNTERS)
    finally:
        c.close()


def test_names_with_a_trailing_newline_are_refused(fake: FakeSwitch, tmp_path: Path) -> None:
    c = Controller(fake, tmp_path)
    try:
        for bad in ("job\n", "job\n\n"):
            with pytest.raises(ControllerCallError) as e:
                c.client.create_job(bad, 1)
            assert e.value.code == grpc.StatusCode.INVALID_ARGUMENT
        with pytest.raises(ControllerCallError) as e:
            c.client.join("j", 0, 1, "02:00:00:00:00:01\n", "10.0.0.1", 6000)
        assert e.value.code == grpc.StatusCode.INVALID_ARGUMENT
        assert c.client.jobs() == []
    finally:
        c.close()


def test_a_silent_rank_is_reported_to_the_watchers_within_seconds(
        fake: FakeSwitch, tmp_path: Path) -> None:
    c = Controller(fake, tmp_path)
    try:
        for r in range(3):
            c.client.join("w", r, 3, *host(r + 1), 6000 + r)
        events: list[JobEvent] = []
        stream = c.client.watch("w", 0)
        reader = threading.Thread(target=lambda: events.extend(stream), daemon=True)
        reader.start()
        stop = threading.Event()

        def beat(rank: int, until: threading.Event) -> None:
            while not until.wait(0.2):
                c.client.heartbeat("w", rank, interval=0.2)

        rank2_stops = threading.Event()
        beaters = [threading.Thread(target=beat, args=(0, stop)),
                   threading.Thread(target=beat, args=(1, stop)),
                   threading.Thread(target=beat, args=(2, rank2_stops))]
        for t in beaters:
            t.start()
        time.sleep(1.0)
        rank2_stops.set()
        silent_since = time.monotonic()
        while not events and time.monotonic() - silent_since < 10:
            time.sleep(0.02)
        took = time.monotonic() - silent_since
        stop.set()
        for t in beaters:
            t.join()
        stream.cancel()
        reader.join(5)
        (ev,) = events
        assert ev.kind == "peer_down" and ev.ranks == (2,) and ev.last_seen[0] > 0
        assert "rank 2 last seen" in ev.message and "job 'w'" in ev.message
        assert took < 5.0
        # a watcher that connects later hears it too
        late = c.client.watch("w", 1)
        first = next(iter(late))
        late.cancel()
        assert first == ev
    finally:
        c.close()


def test_a_taken_tcp_port_is_also_refused_by_serve(fake: FakeSwitch, tmp_path: Path) -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        got = subprocess.run(
            [sys.executable, "-m", "p4reduce.controller.cli", "serve", "--memory-switch",
             "--topology", str(write_topology(tmp_path)), "--state", str(tmp_path / "m.db"),
             "--listen", f"127.0.0.1:{port}"],
            capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert got.returncode == 1 and "cannot listen" in got.stderr
