"""Every name of controller/p4names.py exists in the compiled P4Info, with the documented
key fields and action parameters (names and widths)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from pipeline.targets import P4_MAIN, compile_ir, p4info_of

from p4reduce.controller import p4names as n
from p4reduce.softswitch.p4.diag import CompileError
from p4reduce.worker import wire

TABLE_KEYS = {
    n.TABLE_JOBS: [("hdr.agg.job_id", 16)],
    n.TABLE_MEMBERS: [("hdr.agg.job_id", 16), ("hdr.agg.worker_id", 8), ("hdr.ipv4.srcAddr", 32)],
    n.TABLE_L2: [("hdr.ethernet.dstAddr", 48)],
    n.TABLE_ARP: [("hdr.arp.tpa", 32)],
    n.TABLE_RESULT_REWRITE: [("hdr.agg.job_id", 16), ("standard_metadata.egress_rid", 16)],
}
ACTION_PARAMS = {
    n.ACTION_SET_JOB: [("base", 32), ("num_slots", 16), ("num_workers", 8), ("mcast_grp", 16),
                       ("epoch", 24)],
    n.ACTION_MEMBER_OK: [],
    n.ACTION_FORWARD: [("port", 9)],
    n.ACTION_FLOOD: [],
    n.ACTION_ARP_REPLY: [("mac", 48)],
    n.ACTION_SET_WORKER_ADDR: [("mac", 48), ("ip", 32), ("udp_port", 16)],
}
TABLE_ACTIONS = {
    n.TABLE_JOBS: n.ACTION_SET_JOB,
    n.TABLE_MEMBERS: n.ACTION_MEMBER_OK,
    n.TABLE_L2: n.ACTION_FORWARD,
    n.TABLE_ARP: n.ACTION_ARP_REPLY,
    n.TABLE_RESULT_REWRITE: n.ACTION_SET_WORKER_ADDR,
}


@pytest.fixture(scope="module")
def p4info() -> Any:
    return p4info_of(compile_ir())


def test_tables_have_the_documented_keys(p4info: Any) -> None:
    tables = {t.preamble.name: t for t in p4info.tables}
    for name, keys in TABLE_KEYS.items():
        assert name in tables, f"{name} missing from P4Info"
        got = [(m.name, m.bitwidth) for m in tables[name].match_fields]
        assert got == keys, name


def test_actions_have_the_documented_params_and_belong_to_their_tables(p4info: Any) -> None:
    actions = {a.preamble.name: a for a in p4info.actions}
    by_id = {a.preamble.id: a.preamble.name for a in p4info.actions}
    for name, params in ACTION_PARAMS.items():
        assert name in actions, f"{name} missing from P4Info"
        assert [(p.name, p.bitwidth) for p in actions[name].params] == params, name
    tables = {t.preamble.name: t for t in p4info.tables}
    for table, action in TABLE_ACTIONS.items():
        assert action in {by_id[ref.id] for ref in tables[table].action_refs}, (table, action)
    assert n.ACTION_FLOOD in {by_id[ref.id] for ref in tables[n.TABLE_L2].action_refs}


def test_counters_have_the_documented_sizes(p4info: Any) -> None:
    counters = {c.preamble.name: c for c in p4info.counters}
    for name in n.PER_JOB_COUNTERS:
        assert counters[name].size == n.MAX_JOBS, name
    assert counters[n.COUNTER_REJECTED].size == 4


def test_control_type_names(p4info: Any) -> None:
    names = [t.preamble.name for t in p4info.tables]
    assert all(x.split(".")[0] in (n.INGRESS, n.EGRESS) for x in names)


@pytest.mark.parametrize("lanes", [8, 64, 256])
def test_agg_header_mirrors_the_wire_format(lanes: int) -> None:
    ir = compile_ir() if lanes == 64 else compile_ir(NUM_LANES=lanes)
    fields = [(f["name"], f["type"]["width"]) for f in ir["types"]["headers"]["agg_t"]["fields"]]
    assert fields == [*wire.AGG_FIELDS, *((f"v{i}", 32) for i in range(lanes))]


def test_lane_count_must_be_a_multiple_of_eight() -> None:
    with pytest.raises(CompileError, match="NUM_LANES must be a multiple of 8"):
        compile_ir(NUM_LANES=12)


@pytest.mark.skipif(shutil.which("p4c") is None, reason="p4c is not on PATH: no P4Info to compare")
def test_p4info_equals_p4c(tmp_path: Path) -> None:
    from google.protobuf import text_format  # type: ignore[import-untyped]

    out = tmp_path / "p4info.txtpb"
    subprocess.run(["p4c", "--target", "bmv2", "--arch", "v1model", "-o", str(tmp_path),
                    "--p4runtime-files", str(out), str(P4_MAIN)], check=True, timeout=600)
    ours = p4info_of(compile_ir())
    theirs = text_format.Parse(out.read_text(), type(ours)())
    assert ours == theirs
