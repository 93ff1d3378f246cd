"""The controller driving a real softswitch (`p4reduce-switch` running the compiled
p4src/aggregator.p4) over P4Runtime: it pushes the pipeline, two workers join through the
controller API, and their aggregation packets over the UDP tunnel ports come back summed,
addressed to each worker, and counted in the counters the CLI reads."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from p4reduce import contract as n
from p4reduce.controller.api import ApiServer
from p4reduce.controller.cli import main as ctl_main
from p4reduce.controller.client import ControllerClient
from p4reduce.controller.jobs import JobManager, Settings
from p4reduce.controller.p4rt import P4RuntimeSwitch, load_p4info
from p4reduce.controller.store import Store
from p4reduce.controller.topology import parse
from p4reduce.worker.frames import Endpoint, build_frame, parse_frame
from p4reduce.worker.wire import FLAG_RESULT, AggHeader, pack_payload, unpack_payload
from tests.paths import ROOT

pytestmark = pytest.mark.timeout(120)
REPO = ROOT  # the checkout
K = 8


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("build")
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "p4reduce.softswitch.p4.cli",
            str(REPO / "p4src" / "aggregator.p4"),
            "-o",
            str(out),
            "-D",
            f"NUM_LANES={K}",
            "-D",
            "NUM_SLOTS=1024",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    assert r.returncode == 0, r.stderr
    return out


@pytest.fixture
def switch(build: Path) -> Iterator[tuple[str, dict[int, int]]]:
    ports = {1: _free_udp_port(), 2: _free_udp_port()}
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "p4reduce.softswitch.cli",
            "--grpc-server-addr",
            "127.0.0.1:0",
            "--log-level",
            "warn",
            *[a for p, u in ports.items() for a in ("-i", f"{p}@udp:127.0.0.1:{u}")],
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if "ready" not in line:
        proc.kill()
        pytest.fail(f"switch did not start: {line!r} {proc.stderr.read() if proc.stderr else ''}")
    yield line.rsplit(" ", 1)[1].strip(), ports
    proc.terminate()
    proc.wait(10)


TOPO = parse(
    {
        "aggregation": {"mac": "02:00:00:00:00:fe", "ipv4": "10.0.0.254"},
        "hosts": [
            {"name": "h1", "mac": "02:00:00:00:00:01", "ipv4": "10.0.0.1", "port": 1},
            {"name": "h2", "mac": "02:00:00:00:00:02", "ipv4": "10.0.0.2", "port": 2},
        ],
    }
)


def test_two_workers_aggregate_through_controller_installed_state(
    build: Path,
    switch: tuple[str, dict[int, int]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    address, ports = switch
    sw = P4RuntimeSwitch(address, 0, 3)
    assert sw.ensure_pipeline(
        load_p4info(build / "aggregator.p4info.txtpb"), (build / "aggregator.json").read_bytes()
    )
    mgr = JobManager(Store(tmp_path / "s.db"), sw, TOPO, Settings(num_slots=1024, k=K))
    mgr.start()
    api = ApiServer(mgr, "127.0.0.1:0")
    socks = []
    try:
        with ControllerClient(api.address) as cl:
            cl.join("demo", 0, 2, "02:00:00:00:00:01", "10.0.0.1", 7000, slots=16)
            info = cl.join(
                "demo", 1, 2, "02:00:00:00:00:02", "10.0.0.2", 7001, wait_ready_timeout=5
            )
        assert info.ready and info.k == K
        agg = Endpoint(info.aggregation.mac, info.aggregation.ipv4, info.aggregation.udp_port)
        for rank in (0, 1):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind(("127.0.0.1", 0))
            s.settimeout(10)
            socks.append(s)
            me = Endpoint(f"02:00:00:00:00:0{rank + 1}", f"10.0.0.{rank + 1}", 7000 + rank)
            vals = np.arange(K, dtype=np.int32) * (rank + 1) - 3
            hdr = AggHeader(0, info.job_id, rank, 5, 0, 0, 0)
            s.sendto(build_frame(me, agg, pack_payload(hdr, vals)), ("127.0.0.1", ports[rank + 1]))
        expected = np.arange(K, dtype=np.int32) * 3 - 6
        for rank, s in enumerate(socks):
            frame = parse_frame(s.recv(4096))
            assert frame.dst.ip == f"10.0.0.{rank + 1}" and frame.dst.port == 7000 + rank
            h, v = unpack_payload(frame.payload, K)
            assert h.flags & FLAG_RESULT and h.job_id == info.job_id and h.slot == 5
            assert v.tolist() == expected.tolist()
        assert mgr.counters("demo")["demo"][n.COUNTER_RESULTS][0] == 1
        os.environ["P4REDUCE_CONTROLLER"] = api.address
        try:
            assert ctl_main(["--json", "counters", "demo"]) == 0
        finally:
            del os.environ["P4REDUCE_CONTROLLER"]
        got = json.loads(capsys.readouterr().out)
        counts = {k: v["packets"] for k, v in got["jobs"][0]["counters"].items()}
        assert counts["aggregated"] == 2 and counts["results"] == 1 and counts["not_member"] == 0
    finally:
        for s in socks:
            s.close()
        api.stop()
        sw.close()
        mgr.store.close()


def test_serve_pushes_the_default_build_files_to_p4reduce_switch(
    build: Path, switch: tuple[str, dict[int, int]], tmp_path: Path
) -> None:
    import shutil
    import signal

    address, _ = switch
    (tmp_path / "build").mkdir()
    for f in ("aggregator.json", "aggregator.p4info.txtpb"):
        shutil.copy(build / f, tmp_path / "build" / f)
    (tmp_path / "topo.json").write_text(
        json.dumps(
            {
                "aggregation": {"mac": "02:00:00:00:00:fe", "ipv4": "10.0.0.254"},
                "hosts": [
                    {"name": "h1", "mac": "02:00:00:00:00:01", "ipv4": "10.0.0.1", "port": 1}
                ],
            }
        )
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "p4reduce.controller.cli",
            "serve",
            "--switch",
            address,
            "--topology",
            "topo.json",
            "--listen",
            "127.0.0.1:0",
            "--num-slots",
            "1024",
        ],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        # the first start on a machine also says where it compiled the shipped program
        line = proc.stdout.readline()
        if line.startswith("p4reduce-ctl serve: compiled"):
            line = proc.stdout.readline()
        assert "as primary" in line, line
        api = line.split("controller API on ")[1].split(";")[0]
        r = subprocess.run(
            [sys.executable, "-m", "p4reduce.controller.cli", "--controller", api, "--json", "switch"],
            capture_output=True,
            text=True,
            timeout=30,
            env=env,
        )
        assert r.returncode == 0, r.stderr
        info = json.loads(r.stdout)
        assert info["primary"] and "(pushed)" in info["pipeline"]
        assert (tmp_path / "p4reduce-controller.db").exists()
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(20) == 0
