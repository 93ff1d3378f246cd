"""`p4reduce-switch` as a subprocess: flags, errors without tracebacks, ready line,
P4Runtime service, clean stop on SIGTERM and SIGINT."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from finsy.proto import p4r, p4r_grpc
from google.protobuf import text_format

from tests.paths import ROOT
from tests.softswitch.test_p4runtime_fakes import DEVICE_CONFIG, make_p4info

REPO = ROOT  # the checkout

# Runs the real CLI code with the fake device and pipeline (the runtime is tested elsewhere).
FAKE_RUNNER = f"""
import sys
sys.path.insert(0, {str(ROOT)!r})
from tests.softswitch.test_p4runtime_fakes import FakeDevice, FakePipeline
from p4reduce.softswitch import cli

class Dev(FakeDevice):
    def start(self): pass
    def stop(self): print("device stopped", flush=True)

def factory(args):
    return Dev(device_id=args.device_id, cpu_port=args.cpu_port)

try:
    code = cli.run(sys.argv[1:], device_factory=factory, pipeline_factory=FakePipeline)
except cli.CliError as err:
    print(f"p4reduce-switch: error: {{err}}", file=sys.stderr)
    code = 1
sys.exit(code)
"""


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "p4reduce.softswitch.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=_env(),
        cwd=REPO,
    )


@pytest.mark.timeout(60)
def test_help_lists_simple_switch_grpc_flags() -> None:
    r = _cli("--help")
    assert r.returncode == 0
    for flag in (
        "--device-id",
        "--grpc-server-addr",
        "--cpu-port",
        "--log-level",
        "--p4",
        "--ir",
        "--p4info",
        "-D",
        "--drop",
        "--duplicate",
        "--reorder",
        "--seed",
        "-i",
        "--backend",
        "peer=",
    ):
        assert flag in r.stdout
    assert "127.0.0.1:9559" in r.stdout


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("args", "code", "needle"),
    [
        (["--drop", "1.5"], 2, "not in [0, 1]"),
        (["--ir", "/nonexistent/x.json"], 1, "No such file"),
        (["--p4", "/nonexistent/x.p4"], 1, "no such file"),
        (["--p4", "a.p4", "--ir", "b.json"], 2, "not allowed with"),
        (["--p4info", "x.txt"], 1, "--p4info needs --ir"),
    ],
)
def test_bad_input_is_one_clear_line(args: list[str], code: int, needle: str) -> None:
    r = _cli(*args)
    assert r.returncode == code
    assert needle in r.stderr
    assert "Traceback" not in r.stderr


@pytest.fixture
def switch(
    tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[tuple[subprocess.Popen[str], str]]:
    ir = tmp_path / "prog.json"
    ir.write_bytes(DEVICE_CONFIG)
    info = tmp_path / "prog.p4info.txtpb"
    info.write_text(text_format.MessageToString(make_p4info()))
    extra: list[str] = getattr(request, "param", [])
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            FAKE_RUNNER,
            "--grpc-server-addr",
            "127.0.0.1:0",
            "--ir",
            str(ir),
            "--p4info",
            str(info),
            "--device-id",
            "3",
            "--log-level",
            "warn",
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.startswith("p4reduce-switch: ready, P4Runtime on 127.0.0.1:"), line
    address = line.rsplit(" ", 1)[1].strip()
    try:
        yield proc, address
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=10)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_serves_the_program_and_stops_cleanly(
    switch: tuple[subprocess.Popen[str], str], sig: signal.Signals
) -> None:
    proc, address = switch
    with grpc.insecure_channel(address) as ch:
        stub = p4r_grpc.P4RuntimeStub(ch)
        cfg = stub.GetForwardingPipelineConfig(
            p4r.GetForwardingPipelineConfigRequest(
                device_id=3, response_type=p4r.GetForwardingPipelineConfigRequest.ALL
            ),
            timeout=10,
        ).config
    assert cfg.p4info == make_p4info()
    assert b"MyIngress.fwd" in cfg.p4_device_config
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert "device stopped" in out
    assert "Traceback" not in err


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.mark.timeout(90)
@pytest.mark.parametrize("backend", ["native", "python", "auto-without-compiler"])
def test_real_switch_over_udp_tunnel_ports(tmp_path: Path, backend: str) -> None:
    """--p4 compiles at start; -i N@udp ports carry frames; P4Runtime installs the entry.
    On each back end; `auto` where no C compiler exists runs Python, saying so once."""
    from tests.softswitch.test_p4runtime_softswitch import DST, FRAME, PROGRAM
    from tests.support.backends import skip_unless_available

    env = _env()
    if backend == "auto-without-compiler":
        env["CC"] = str(tmp_path / "no-such-cc")
    else:
        skip_unless_available(backend)
    src = tmp_path / "fwd.p4"
    src.write_text(PROGRAM)
    p1, p2 = _free_udp_port(), _free_udp_port()
    host1 = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    host1.bind(("127.0.0.1", 0))
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "p4reduce.softswitch.cli",
            "--p4",
            str(src),
            "--cpu-port",
            "64",
            "-i",
            f"1@udp:127.0.0.1:{p1},peer=127.0.0.1:{host1.getsockname()[1]}",
            "-i",
            f"2@udp:127.0.0.1:{p2}",
            "--grpc-server-addr",
            "127.0.0.1:0",
            "--log-level",
            "warn",
            "--backend",
            backend.split("-")[0],
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=REPO,
    )
    host2 = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert "ready, P4Runtime on 127.0.0.1:" in line, proc.stderr.read() if proc.stderr else ""
        address = line.rsplit(" ", 1)[1].strip()
        with grpc.insecure_channel(address) as ch:
            stub = p4r_grpc.P4RuntimeStub(ch)
            info = stub.GetForwardingPipelineConfig(
                p4r.GetForwardingPipelineConfigRequest(
                    device_id=0,
                    response_type=p4r.GetForwardingPipelineConfigRequest.P4INFO_AND_COOKIE,
                ),
                timeout=10,
            ).config.p4info
            ids = {o.preamble.name: o.preamble.id for o in (*info.tables, *info.actions)}
            te = p4r.TableEntry(table_id=ids["I.fwd"])
            te.match.add(field_id=1).exact.value = DST
            te.action.action.action_id = ids["I.set_port"]
            te.action.action.params.add(param_id=1, value=b"\x02")
            stub.Write(
                p4r.WriteRequest(
                    device_id=0,
                    updates=[p4r.Update(type=p4r.Update.INSERT, entity=p4r.Entity(table_entry=te))],
                ),
                timeout=10,
            )
        host2.settimeout(10)
        host2.sendto(b"\xff" * 20, ("127.0.0.1", p2))  # teaches port 2 its peer; dropped
        # the switch learns port 2's peer from that datagram; resend until it arrives
        for _ in range(50):
            host1.sendto(FRAME, ("127.0.0.1", p1))
            host2.settimeout(0.2)
            try:
                data, _ = host2.recvfrom(2048)
                break
            except TimeoutError:
                continue
        else:
            pytest.fail("no frame came out of port 2")
        assert data == FRAME
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
        assert proc.returncode == 0, err
        assert "Traceback" not in err
        warnings = [ln for ln in err.splitlines() if "WARNING" in ln]
        if backend == "auto-without-compiler":
            assert len(warnings) == 1 and "no-such-cc not found" in warnings[0], err
            assert "running the Python backend" in warnings[0]
        else:
            assert warnings == [], err
    finally:
        host1.close()
        host2.close()
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=10)


@pytest.mark.timeout(60)
def test_program_that_does_not_compile(tmp_path: Path) -> None:
    src = tmp_path / "bad.p4"
    src.write_text("#include <core.p4>\ncontrol C( { apply { } }\n")
    r = _cli("--p4", str(src), "--grpc-server-addr", "127.0.0.1:0")
    assert r.returncode == 1
    assert r.stderr.startswith("p4reduce-switch: error: ")
    assert "bad.p4" in r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.timeout(60)
def test_port_spec_errors_are_reported(tmp_path: Path) -> None:
    from tests.softswitch.test_p4runtime_softswitch import PROGRAM

    src = tmp_path / "fwd.p4"
    src.write_text(PROGRAM)
    r = _cli("--p4", str(src), "-i", "nonsense", "--grpc-server-addr", "127.0.0.1:0")
    assert r.returncode == 1
    assert "-i nonsense" in r.stderr
    assert "Traceback" not in r.stderr
    r = _cli("--p4", str(src), "-i", "1@udp:127.0.0.1:0,peer=nowhere", "--grpc-server-addr", "127.0.0.1:0")
    assert r.returncode == 1
    assert "peer=HOST:PORT" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.timeout(60)
def test_native_backend_without_a_compiler_is_one_clear_error(tmp_path: Path) -> None:
    from tests.softswitch.test_p4runtime_softswitch import PROGRAM

    src = tmp_path / "fwd.p4"
    src.write_text(PROGRAM)
    env = _env()
    env["CC"] = str(tmp_path / "no-such-cc")
    r = subprocess.run([sys.executable, "-m", "p4reduce.softswitch.cli", "--p4", str(src), "--backend", "native",
                        "--grpc-server-addr", "127.0.0.1:0"], capture_output=True, text=True, timeout=60,
                       env=env, cwd=REPO)
    assert r.returncode == 1
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("p4reduce-switch: error: ")
    assert "native backend is unavailable" in r.stderr and "no-such-cc" in r.stderr


def test_port_drops_are_reported_at_exit(capsys: pytest.CaptureFixture[str]) -> None:
    """A port whose frames were dropped outside the pipeline gets one line on stderr at
    exit (where a benchmark's resends came from); quiet ports say nothing there."""
    from p4reduce.softswitch.cli import report_port_drops

    stats = {1: {"received": 10, "sent": 9, "foreign_dropped": 0, "send_dropped": 3,
                 "receive_dropped": 2},
             2: {"received": 5, "sent": 5, "foreign_dropped": 0, "send_dropped": 0,
                 "receive_dropped": 0}}

    class Engine:
        def port_stats(self, number: int) -> dict[str, int]:
            return stats[number]

    class Device:
        def __init__(self) -> None:
            self.engine = Engine()
            self.ports = {2: object(), 1: object()}

    report_port_drops(Device())
    err = capsys.readouterr().err.splitlines()
    assert err == ["p4reduce-switch: port 1: received 10, sent 9, dropped 2 at receive "
                   "(ring full) and 3 at send (queue full)"]
