"""The controller's control path against BMv2 (simple_switch_grpc with p4c's build of
p4src/aggregator.p4): pipeline push, joins, read-back equal to the desired state,
counters, and reconciliation after a change behind the controller's back. Packet paths on
BMv2 need interfaces and are covered by the wired pipeline tests; this needs no root.

Skipped where p4c or simple_switch_grpc is not installed (this machine has neither)."""

from __future__ import annotations

import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from p4reduce.controller.backend import Update
from p4reduce.controller.entities import OWNED_TABLES, desired
from p4reduce.controller.jobs import JobManager, Settings
from p4reduce.controller.p4rt import P4RuntimeSwitch, load_p4info
from p4reduce.controller.store import Store
from p4reduce.controller.topology import parse
from tests.paths import ROOT

pytestmark = [
    pytest.mark.timeout(180),
    pytest.mark.skipif(
        shutil.which("simple_switch_grpc") is None or shutil.which("p4c") is None,
        reason="BMv2 (simple_switch_grpc) and p4c are not installed",
    ),
]
REPO = ROOT  # the checkout
TOPO = parse(
    {
        "aggregation": {"mac": "02:00:00:00:00:fe", "ipv4": "10.0.0.254"},
        "hosts": [
            {"name": f"h{i}", "mac": f"02:00:00:00:00:0{i}", "ipv4": f"10.0.0.{i}", "port": i}
            for i in (1, 2, 3)
        ],
    }
)


def _free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def p4c_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("p4c")
    subprocess.run(
        [
            "p4c",
            "--target",
            "bmv2",
            "--arch",
            "v1model",
            "-o",
            str(out),
            "--p4runtime-files",
            str(out / "aggregator.p4info.txtpb"),
            str(REPO / "p4src" / "aggregator.p4"),
        ],
        check=True,
        timeout=170,
    )
    return out


@pytest.fixture
def bmv2(tmp_path: Path) -> Iterator[str]:
    grpc_addr = f"127.0.0.1:{_free_tcp_port()}"
    proc = subprocess.Popen(
        [
            "simple_switch_grpc",
            "--no-p4",
            "--device-id",
            "0",
            "--thrift-port",
            str(_free_tcp_port()),
            "--",
            "--grpc-server-addr",
            grpc_addr,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    yield grpc_addr
    proc.terminate()
    proc.wait(10)


def test_controller_configures_bmv2_and_reconciles(
    p4c_build: Path, bmv2: str, tmp_path: Path
) -> None:
    info = load_p4info(p4c_build / "aggregator.p4info.txtpb")
    config = (p4c_build / "aggregator.json").read_bytes()
    sw = P4RuntimeSwitch(bmv2, 0, 5, connect_timeout=30)
    try:
        assert sw.ensure_pipeline(info, config)
        mgr = JobManager(Store(tmp_path / "s.db"), sw, TOPO, Settings())
        mgr.start()
        mgr.join("j", 0, 2, "02:00:00:00:00:01", "10.0.0.1", 7000)
        mgr.join("j", 1, 2, "02:00:00:00:00:02", "10.0.0.2", 7001)
        want = desired(TOPO, mgr.store.jobs(), mgr.store.members())
        assert {r.ident: r for r in sw.read_rows(OWNED_TABLES)} == want.rows
        assert sw.read_groups() == want.groups
        # PI keeps TableEntry.metadata: the owner tag that --takeover checks comes back
        jobs_rows = sw.read_rows((OWNED_TABLES[0],))
        assert [r.owner for r in jobs_rows] == [mgr.owner]
        assert sw.program_limits() == (16384, 64)  # what --num-slots and --k are held to
        job_id = mgr.job("j").job.id
        assert mgr.counters("j")["j"]
        member = next(r for r in want.rows.values() if r.table.endswith("members"))
        sw.write([Update("delete", row=member)])
        assert mgr.start().summary() == {"insert": 1, "modify": 0, "delete": 0}
        assert {r.ident: r for r in sw.read_rows(OWNED_TABLES)} == want.rows
        assert job_id == 1
    finally:
        sw.close()
    again = P4RuntimeSwitch(bmv2, 0, 6, connect_timeout=30)
    try:
        assert not again.ensure_pipeline(info, config)  # same cookie: not pushed again
    finally:
        again.close()
