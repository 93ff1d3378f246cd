"""p4reduce-ctl against an in-process controller (in-memory switch) over real gRPC:
every command, --json, --help, global flags on either side of the command, bad input of
every command (exit 2, one line naming the flag), and the documented exit codes."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from p4reduce import contract as n
from p4reduce.controller.api import ApiServer
from p4reduce.controller.backend import MemorySwitch
from p4reduce.controller.cli import main
from p4reduce.controller.jobs import JobManager, Settings
from p4reduce.controller.store import Store
from p4reduce.controller.topology import parse

pytestmark = pytest.mark.timeout(60)

TOPO = {
    "aggregation": {"mac": "02:00:00:00:00:fe", "ipv4": "10.0.0.254"},
    "hosts": [
        {"name": f"h{i}", "mac": f"02:00:00:00:00:{i:02x}", "ipv4": f"10.0.0.{i}", "port": i}
        for i in range(1, 5)
    ],
}


@pytest.fixture
def ctl(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[JobManager, MemorySwitch]]:
    sw = MemorySwitch()
    mgr = JobManager(Store(tmp_path / "s.db"), sw, parse(TOPO), Settings(num_slots=1024))
    mgr.start()
    api = ApiServer(mgr, "127.0.0.1:0")
    monkeypatch.setenv("P4REDUCE_CONTROLLER", api.address)
    monkeypatch.setenv("COLUMNS", "200")
    yield mgr, sw
    api.stop()
    mgr.store.close()


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as e:
        code = int(e.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    code, out, err = run(capsys, "--json", *argv)
    assert code == 0, err
    return json.loads(out)


HELP_COMMANDS = [
    [],
    ["serve"],
    ["jobs"],
    ["job"],
    ["job", "create"],
    ["job", "show"],
    ["job", "delete"],
    ["slots"],
    ["counters"],
    ["workers"],
    ["switch"],
    ["top"],
]


@pytest.mark.parametrize("cmd", HELP_COMMANDS, ids=lambda c: " ".join(c) or "top")
def test_every_command_has_help(capsys: pytest.CaptureFixture[str], cmd: list[str]) -> None:
    code, out, _ = run(capsys, *cmd, "--help")
    assert code == 0 and out.startswith("usage: p4reduce-ctl")
    if cmd not in ([], ["job"], ["serve"]):
        assert "exit codes" in out


def test_job_lifecycle_tables_and_json(
    ctl: tuple[JobManager, MemorySwitch], capsys: pytest.CaptureFixture[str]
) -> None:
    mgr, sw = ctl
    code, out, _ = run(capsys, "job", "create", "alpha", "--workers", "2", "--slots", "100")
    assert code == 0 and "alpha" in out and "0..99" in out
    created = run_json(capsys, "job", "create", "beta", "--workers", "3")
    assert (
        created["slot_base"] == 100 and created["slot_count"] == 256 and created["world_size"] == 3
    )
    mgr.join("alpha", 1, 2, "02:00:00:00:00:02", "10.0.0.2", 7001)
    shown = run_json(capsys, "job", "show", "alpha")
    assert [m["rank"] for m in shown["members"]] == [1] and not shown["ready"]
    code, out, _ = run(capsys, "job", "show", "alpha")
    assert code == 0 and "10.0.0.2" in out and "7001" in out and "10.0.0.254" in out
    jobs = run_json(capsys, "jobs")
    assert [j["name"] for j in jobs] == ["alpha", "beta"]
    code, out, _ = run(capsys, "jobs")
    assert code == 0 and "1/2" in out and "0/3" in out
    workers = run_json(capsys, "workers")
    assert workers == [
        {**workers[0], "job": "alpha", "rank": 1, "ipv4": "10.0.0.2", "switch_port": 2}
    ]
    code, out, _ = run(capsys, "workers")
    assert code == 0 and "alpha" in out and "02:00:00:00:00:02" in out
    slots = run_json(capsys, "slots")
    assert slots["free"] == 1024 - 356
    assert [(e["base"], e["count"], e["job"]) for e in slots["extents"]] == [
        (0, 100, "alpha"),
        (100, 256, "beta"),
        (356, 668, ""),
    ]
    code, out, _ = run(capsys, "slots")
    assert code == 0 and "668 of 1024 slots free" in out
    assert "map: [" + "A" * 7 + "B" * 16 + "." * 41 + "]" in out and "A=alpha  B=beta" in out
    sw.counters[(n.COUNTER_AGGREGATED, created["job_id"])] = (42, 4200)
    sw.counters[(n.COUNTER_REJECTED, n.REJECT_NOT_MEMBER)] = (3, 300)
    c = run_json(capsys, "counters", "beta")
    assert c["jobs"][0]["counters"]["aggregated"] == {"packets": 42, "bytes": 4200}
    assert c["jobs"][0]["job"] == "beta" and c["rejected"] == {}
    c_all = run_json(capsys, "counters")
    assert c_all["rejected"]["not_member"] == {"packets": 3, "bytes": 300}
    assert [j["job"] for j in c_all["jobs"]] == ["alpha", "beta"]
    code, out, _ = run(capsys, "counters")
    assert code == 0 and "42" in out and "not_member" in out
    sw_info = run_json(capsys, "switch")
    assert sw_info["primary"] is True
    code, out, _ = run(capsys, "switch")
    assert code == 0 and "primary" in out
    code, out, _ = run(capsys, "job", "delete", "alpha")
    assert code == 0 and "deleted job alpha" in out
    assert [j["name"] for j in run_json(capsys, "jobs")] == ["beta"]


@pytest.mark.parametrize(
    ("argv", "text"),
    [
        (["job", "show", "ghost"], "unknown job 'ghost'"),
        (["job", "delete", "ghost"], "unknown job 'ghost'"),
        (["counters", "ghost"], "unknown job 'ghost'"),
        (["job", "create", "x", "--workers", "2", "--slots", "5000"], "slot count 5000"),
        (["job", "create", "bad/name", "--workers", "2"], "job name"),
    ],
)
def test_controller_errors_exit_1_with_message_and_change_nothing(
    ctl: tuple[JobManager, MemorySwitch],
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    text: str,
) -> None:
    mgr, sw = ctl
    before = dict(sw.rows)
    code, out, err = run(capsys, *argv)
    assert code == 1 and text in err and "Traceback" not in err and out == ""
    assert err.count("\n") == 1 and err.startswith("p4reduce-ctl: error: ")
    assert dict(sw.rows) == before and mgr.jobs() == []


def test_duplicate_job_exit_1(
    ctl: tuple[JobManager, MemorySwitch], capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(capsys, "job", "create", "x", "--workers", "2")[0] == 0
    code, _, err = run(capsys, "job", "create", "x", "--workers", "4")
    assert code == 1 and "already exists" in err
    assert [v.job.world_size for v in ctl[0].jobs()] == [2]


BAD_INPUT = [
    # global flags, before and after the command
    (["--controller", "127.0.0.1:99999", "jobs"], "--controller", "port 99999"),
    (["jobs", "--controller", "localhost"], "--controller", "not host:port"),
    (["--controller", "300.1.2.3:50051", "slots"], "--controller", "not an IPv4 address"),
    (["workers", "--controller", "[::1:50051"], "--controller", "[v6 address]:port"),
    (["--controller", "bad_host!:50051", "switch"], "--controller", "not a host name"),
    (["--controller", "127.0.0.1:", "jobs"], "--controller", "not a number"),
    (["--timeout", "0", "jobs"], "--timeout", "more than 0"),
    (["switch", "--timeout", "-1"], "--timeout", "more than 0"),
    (["counters", "--timeout", "nan"], "--timeout", "more than 0"),
    (["slots", "--timeout", "soon"], "--timeout", "not a number"),
    # job
    (["job", "create", "x", "--workers", "-1"], "--workers", "out of range 1..256"),
    (["job", "create", "x", "--workers", "0"], "--workers", "out of range 1..256"),
    (["job", "create", "x", "--workers", "257"], "--workers", "out of range 1..256"),
    (["job", "create", "x", "--workers", "two"], "--workers", "not a whole number"),
    (["job", "create", "x", "--workers", "2", "--slots", "-5"], "--slots", "out of range"),
    (["job", "create", "x", "--workers", "2", "--slots", str(1 << 40)], "--slots", "out of range"),
    (["job", "create", "x"], "--workers", "required"),
    (["job", "show"], "name", "required"),
    (["job", "delete"], "name", "required"),
    (["job"], "ACTION", "required"),
    (["job", "rename", "x"], "ACTION", "invalid choice"),
    ([], "COMMAND", "required"),
    (["nonsense"], "COMMAND", "invalid choice"),
    (["slots", "--bogus"], "--bogus", "unrecognized"),
    (["counters", "a", "b"], "b", "unrecognized"),
    # top
    (["top", "--metrics", "127.0.0.1:0"], "--metrics", "out of range 1..65535"),
    (["top", "--metrics", "metrics"], "--metrics", "not host:port"),
    (["top", "--interval", "0"], "--interval", "more than 0"),
    # serve
    (["serve", "--switch", "127.0.0.1:99999"], "--switch", "out of range"),
    (["serve", "--listen", "1.2.3:5"], "--listen", "not an IPv4 address"),
    (["serve", "--listen", "127.0.0.1:-1"], "--listen", "not a number"),
    (["serve", "--metrics", "127.0.0.1:70000"], "--metrics", "out of range 0..65535"),
    (["serve", "--lease", "0"], "--lease", "more than 0"),
    (["serve", "--resync", "-1"], "--resync", "more than 0"),
    (["serve", "--connect-timeout", "0"], "--connect-timeout", "more than 0"),
    (["serve", "--k", "-1"], "--k", "out of range"),
    (["serve", "--num-slots", "-3"], "--num-slots", "out of range"),
    (["serve", "--default-slots", "0"], "--default-slots", "out of range"),
    (["serve", "--election-id", "-1"], "--election-id", "out of range"),
    (["serve", "--device-id", "-1"], "--device-id", "out of range"),
    (["serve", "--target", "tofino"], "--target", "invalid choice"),
]


@pytest.mark.parametrize(("argv", "flag", "why"), BAD_INPUT, ids=lambda x: " ".join(x)
                         if isinstance(x, list) else None)
def test_bad_input_is_one_line_naming_the_flag_and_exit_2(
    capsys: pytest.CaptureFixture[str], argv: list[str], flag: str, why: str
) -> None:
    code, out, err = run(capsys, *argv)
    assert code == 2, err
    assert out == "" and err.count("\n") == 1 and err.endswith("\n"), err
    assert err.startswith("p4reduce-ctl") and ": error: " in err
    assert flag in err and why in err, err


def test_a_malformed_controller_variable_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("P4REDUCE_CONTROLLER", "127.0.0.1:99999")
    code, out, err = run(capsys, "jobs")
    assert code == 2 and out == "" and err.count("\n") == 1
    assert "$P4REDUCE_CONTROLLER" in err and "port 99999" in err


def test_global_flags_go_before_or_after_the_command(
    ctl: tuple[JobManager, MemorySwitch],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import os

    assert run(capsys, "job", "create", "alpha", "--workers", "2")[0] == 0
    address = os.environ["P4REDUCE_CONTROLLER"]
    monkeypatch.delenv("P4REDUCE_CONTROLLER")
    outputs = set()
    for argv in (
        ["--json", "--controller", address, "jobs"],
        ["jobs", "--json", "--controller", address],
        ["--controller", address, "jobs", "--json", "--timeout", "5"],
        ["--timeout", "5", "--json", "jobs", "--controller", address],
    ):
        code, out, err = run(capsys, *argv)
        assert code == 0, err
        outputs.add(out)
    (only,) = outputs
    assert [j["name"] for j in json.loads(only)] == ["alpha"]
    code, out, err = run(capsys, "job", "show", "alpha", "--controller", address, "--json")
    assert code == 0 and json.loads(out)["name"] == "alpha"


def test_tables_are_never_cut_when_stdout_is_not_a_terminal(
    ctl: tuple[JobManager, MemorySwitch],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    mgr, sw = ctl
    monkeypatch.setenv("COLUMNS", "30")  # a narrow terminal would have to cut or wrap
    name = "a-rather-long-job-name-that-no-narrow-table-could-hold-whole"
    assert run(capsys, "job", "create", name, "--workers", "3", "--slots", "1000")[0] == 0
    sw.counters[(n.COUNTER_AGGREGATED, mgr.job(name).job.id)] = (123456789012, 1)
    for argv in (["jobs"], ["slots"], ["counters"], ["job", "show", name]):
        code, out, _ = run(capsys, *argv)
        assert code == 0
        assert name in out, out  # whole, on one line
        assert "…" not in out and "│" not in out  # plain columns, not a rich table
    code, out, _ = run(capsys, "counters")
    assert "123456789012" in out
    header, row = out.splitlines()[1:3]
    assert header.split()[:2] == ["job", "id"] and row.split()[0] == name


def test_serve_help_shows_the_api_and_metrics_addresses(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = run(capsys, "serve", "--help")
    text = " ".join(out.split())
    assert code == 0 and "127.0.0.1:50051" in text and "127.0.0.1:9464" in text
    assert "loopback topology" in text


def test_grpc_core_log_lines_only_with_verbose(tmp_path: Path) -> None:
    """A port already taken makes gRPC's C core log its own error line; only --verbose
    lets it through, the controller's one line is there either way."""
    import subprocess
    import sys

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        taken = s.getsockname()[1]
        env = {k: v for k, v in __import__("os").environ.items() if k != "GRPC_VERBOSITY"}
        base = [sys.executable, "-m", "p4reduce.controller.cli", "serve", "--memory-switch",
                "--listen", f"127.0.0.1:{taken}", "--metrics", "off",
                "--state", str(tmp_path / "s.db")]
        quiet = subprocess.run(base, capture_output=True, text=True, env=env, timeout=60)
        loud = subprocess.run([*base, "-v"], capture_output=True, text=True, env=env, timeout=60)
    assert quiet.returncode == loud.returncode == 1
    assert quiet.stderr.count("\n") == 1 and "cannot listen on" in quiet.stderr
    assert len(loud.stderr.splitlines()) > 1 and "cannot listen on" in loud.stderr


def test_unreachable_controller_exits_3(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.delenv("P4REDUCE_CONTROLLER", raising=False)
    code, _, err = run(capsys, "--controller", f"127.0.0.1:{port}", "--timeout", "2", "jobs")
    assert code == 3 and "cannot reach the controller" in err
    assert err.count("\n") == 1 and f"127.0.0.1:{port}" in err
    code, _, err = run(capsys, "--controller", "no-such-host.invalid:50051", "--timeout", "5",
                       "jobs")
    assert code == 3 and "cannot resolve no-such-host.invalid" in err and err.count("\n") == 1


def test_serve_with_bad_topology_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    topo = tmp_path / "t.yaml"
    topo.write_text("aggregation: {mac: nope, ipv4: 10.0.0.254}\nhosts: []\n")
    code, _, err = run(
        capsys,
        "serve",
        "--memory-switch",
        "--topology",
        str(topo),
        "--state",
        str(tmp_path / "s.db"),
        "--listen",
        "127.0.0.1:0",
    )
    assert code == 1 and "aggregation MAC 'nope' is malformed" in err
    code, _, err = run(
        capsys,
        "serve",
        "--memory-switch",
        "--topology",
        str(tmp_path / "missing.yaml"),
        "--state",
        str(tmp_path / "s.db"),
        "--listen",
        "127.0.0.1:0",
    )
    assert code == 1 and "cannot read topology" in err


def test_serve_without_pipeline_files_or_switch_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    topo = tmp_path / "t.json"
    topo.write_text(json.dumps(TOPO))
    base = [
        "serve",
        "--topology",
        str(topo),
        "--state",
        str(tmp_path / "s.db"),
        "--listen",
        "127.0.0.1:0",
    ]
    code, _, err = run(capsys, *base, "--p4info", str(tmp_path / "none.txtpb"))
    assert code == 1 and "cannot read P4Info" in err and "make p4" in err
    info = tmp_path / "p.txtpb"
    info.write_text("")
    code, _, err = run(
        capsys, *base, "--p4info", str(info), "--device-config", str(tmp_path / "x.json")
    )
    assert code == 1 and "cannot read device config" in err
    (tmp_path / "x.json").write_text("{}")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code, _, err = run(
        capsys,
        *base,
        "--p4info",
        str(info),
        "--device-config",
        str(tmp_path / "x.json"),
        "--switch",
        f"127.0.0.1:{port}",
        "--connect-timeout",
        "1",
    )
    assert code == 1 and "cannot reach the P4Runtime server" in err and "Traceback" not in err
    assert not (tmp_path / "s.db").exists()


def test_client_keepalive_renews_the_lease(ctl: tuple[JobManager, MemorySwitch]) -> None:
    from p4reduce.controller.client import ControllerClient, KeepAlive

    mgr, _ = ctl
    with ControllerClient() as cl:
        info = cl.join("kept", 0, 1, "02:00:00:00:00:01", "10.0.0.1", 7000)
        ka = KeepAlive(cl, "kept", 0, interval=0.01)
        try:
            deadline = time.monotonic() + 20
            while ka.beats < 2 and time.monotonic() < deadline:
                time.sleep(0.01)
        finally:
            ka.stop()
        assert ka.beats >= 2 and ka.last_error is None
        assert mgr.job("kept").job.lease_until >= info.lease_until
        bad = KeepAlive(cl, "kept", 5, interval=0.01)
        try:
            deadline = time.monotonic() + 20
            while bad.last_error is None and time.monotonic() < deadline:
                time.sleep(0.01)
        finally:
            bad.stop()
        assert bad.last_error is not None and "rank 5 is not a member" in bad.last_error.message


def test_32_workers_joining_with_wait_all_get_in(tmp_path: Path) -> None:
    import threading

    topo = parse(
        {
            "aggregation": {"mac": "02:00:00:00:00:fe", "ipv4": "10.0.0.254"},
            "hosts": [
                {
                    "name": f"h{i}",
                    "mac": f"02:00:00:00:01:{i:02x}",
                    "ipv4": f"10.0.1.{i}",
                    "port": i,
                }
                for i in range(1, 34)
            ],
        }
    )
    mgr = JobManager(Store(tmp_path / "big.db"), MemorySwitch(), topo, Settings())
    api = ApiServer(mgr, "127.0.0.1:0")
    results: dict[int, Any] = {}

    def worker(rank: int) -> None:
        from p4reduce.controller.client import ControllerClient

        with ControllerClient(api.address, timeout=30) as cl:
            results[rank] = cl.join(
                "wide",
                rank,
                32,
                f"02:00:00:00:01:{rank + 1:02x}",
                f"10.0.1.{rank + 1}",
                9000,
                wait_ready_timeout=30,
            )

    try:
        threads = [threading.Thread(target=worker, args=(r,)) for r in range(32)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert sorted(results) == list(range(32))
        assert all(r.ready and len(r.members) == 32 for r in results.values())
        assert len({r.epoch for r in results.values()}) == 1
        from p4reduce.controller.client import ControllerCallError, ControllerClient

        with ControllerClient(api.address) as cl, pytest.raises(ControllerCallError) as e:
            cl.join("wide", 32, 33, "02:00:00:00:01:21", "10.0.1.33", 9000)
        assert "world size 33" in e.value.message
    finally:
        api.stop()
        mgr.store.close()


def test_client_refuses_values_the_api_cannot_carry(ctl: tuple[JobManager, MemorySwitch]) -> None:
    import grpc

    from p4reduce.controller.client import ControllerCallError, ControllerClient

    with ControllerClient() as cl:
        with pytest.raises(ControllerCallError) as e:
            cl.join("j", 0, -2, "02:00:00:00:00:01", "10.0.0.1", 7000)
        assert (
            e.value.code == grpc.StatusCode.INVALID_ARGUMENT and "world_size=-2" in e.value.message
        )
        with pytest.raises(ControllerCallError):
            cl.join("j", 0, 2, "02:00:00:00:00:01", "10.0.0.1", -7000)
    assert ctl[0].jobs() == []


def test_wait_ready_returns_a_typed_assignment_or_names_missing_ranks(
    ctl: tuple[JobManager, MemorySwitch],
) -> None:
    import grpc

    from p4reduce.controller.client import ControllerCallError, ControllerClient, JobAssignment

    with ControllerClient() as cl:
        first = cl.join("w", 0, 3, "02:00:00:00:00:01", "10.0.0.1", 7000)
        assert isinstance(first, JobAssignment) and first.members == (0,) and not first.ready
        with pytest.raises(ControllerCallError) as e:
            cl.wait_ready("w", 0.05)
        assert e.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
        assert "missing ranks [1, 2]" in e.value.message
        cl.join("w", 1, 3, "02:00:00:00:00:02", "10.0.0.2", 7001)
        cl.join("w", 2, 3, "02:00:00:00:00:03", "10.0.0.3", 7002)
        done = cl.wait_ready("w", 5)
        assert done.ready and done.members == (0, 1, 2) and done.job_id == first.job_id
        assert (done.slot_base, done.slot_count, done.k) == (0, 256, 64)
        assert done.aggregation.ipv4 == "10.0.0.254" and done.epoch == first.epoch


def test_jobs_shows_a_host_only_job(
    ctl: tuple[JobManager, MemorySwitch], capsys: pytest.CaptureFixture[str]
) -> None:
    mgr, _ = ctl
    mgr.create("full", 1, slots=1024)
    mgr.join("late", 0, 1, "02:00:00:00:00:02", "10.0.0.2", 7001, best_effort=True)
    code, out, _ = run(capsys, "jobs")
    assert code == 0
    (line,) = [ln for ln in out.splitlines() if "late" in ln]
    assert "host-only" in line
    (late,) = [j for j in run_json(capsys, "jobs") if j["name"] == "late"]
    assert late["host_only"] is True and late["slot_count"] == 0


def test_long_lived_calls_beyond_the_pool_share_are_refused_and_heartbeats_still_answer(
        tmp_path: Path) -> None:
    """Watch streams and waiting joins hold an API thread each; beyond the pool's share
    (all but SHORT_CALL_THREADS) they are refused with RESOURCE_EXHAUSTED, so heartbeats
    always find a thread."""
    from p4reduce.controller.api import SHORT_CALL_THREADS
    from p4reduce.controller.client import ControllerCallError, ControllerClient

    sw = MemorySwitch()
    mgr = JobManager(Store(tmp_path / "s.db"), sw, parse(TOPO), Settings(num_slots=1024))
    mgr.start()
    api = ApiServer(mgr, "127.0.0.1:0", workers=SHORT_CALL_THREADS + 1)  # room for one
    client = ControllerClient(api.address)
    try:
        mgr.create("j", 2)
        first = client.watch("j", 0)
        deadline = time.monotonic() + 10
        while api.servicer.long_lived < 1:  # the server has started the first stream
            assert time.monotonic() < deadline, "the first watch never started"
            time.sleep(0.01)
        with pytest.raises(ControllerCallError) as err:
            next(iter(client.watch("j", 1)))
        assert err.value.code.name == "RESOURCE_EXHAUSTED" and "watch streams" in err.value.message
        mgr.join("j", 0, 2, "02:00:00:00:00:01", "10.0.0.1", 7000)
        assert client.heartbeat("j", 0, 1.0) > 0  # a short call still answers
        first.cancel()
    finally:
        client.close()
        api.stop()
        mgr.store.close()
