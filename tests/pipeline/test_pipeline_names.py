"""Every P4 name of p4reduce.contract exists in the compiled P4Info, with the contract's
key fields and action parameters (names, widths and order)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from p4reduce import contract as n
from p4reduce.softswitch.p4.diag import CompileError
from p4reduce.worker import wire
from tests.pipeline.targets import P4_MAIN, compile_ir, p4info_of


@pytest.fixture(scope="module")
def p4info() -> Any:
    return p4info_of(compile_ir())


def test_tables_have_the_contract_keys(p4info: Any) -> None:
    tables = {t.preamble.name: t for t in p4info.tables}
    for table in n.TABLES:
        assert table.name in tables, f"{table.name} missing from P4Info"
        got = [(m.name, m.bitwidth) for m in tables[table.name].match_fields]
        assert got == [(k.name, k.bits) for k in table.keys], table.name


def test_actions_have_the_contract_params_and_belong_to_their_tables(p4info: Any) -> None:
    actions = {a.preamble.name: a for a in p4info.actions}
    by_id = {a.preamble.id: a.preamble.name for a in p4info.actions}
    tables = {t.preamble.name: t for t in p4info.tables}
    for table in n.TABLES:
        refs = {by_id[ref.id] for ref in tables[table.name].action_refs}
        for action in (table.action, *table.other_actions):
            assert action.name in actions, f"{action.name} missing from P4Info"
            got = [(p.name, p.bitwidth) for p in actions[action.name].params]
            assert got == [(p.name, p.bits) for p in action.params], action.name
            assert action.name in refs, (table.name, action.name)


def test_registers_have_the_contract_names(p4info: Any) -> None:
    regs = {r.preamble.name for r in p4info.registers}
    for name in (n.REGISTER_TAG, n.REGISTER_BITMAP, n.REGISTER_COUNT, n.REGISTER_EXP_MAX,
                 n.REGISTER_HAS_RESULT, n.REGISTER_ASKED,
                 n.lane_register(0), n.lane_register(n.DEFAULT_K - 1)):
        assert name in regs, name


def test_no_object_is_renamed_with_a_name_annotation() -> None:
    """One naming convention: instance paths, as p4c names objects by default."""
    for f in P4_MAIN.parent.glob("*.p4"):
        assert "@name" not in f.read_text(), f.name


def test_counters_have_the_documented_sizes(p4info: Any) -> None:
    counters = {c.preamble.name: c for c in p4info.counters}
    for name in n.PER_JOB_COUNTERS:
        assert counters[name].size == n.MAX_JOBS, name
    assert counters[n.COUNTER_REJECTED].size == len(n.REJECT_REASONS)


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
    assert _in_id_order(ours) == _in_id_order(theirs)


def _in_id_order(info: Any) -> Any:
    """The P4Info with its entities sorted by id: the order of the repeated fields carries
    no meaning (a controller finds entities by id or name), and p4c versions differ in it."""
    out = type(info)()
    out.CopyFrom(info)
    for field in out.DESCRIPTOR.fields:
        if not field.is_repeated or field.message_type is None:
            continue
        items = list(getattr(out, field.name))
        if items and all(hasattr(x, "preamble") for x in items):
            items.sort(key=lambda x: x.preamble.id)
            del getattr(out, field.name)[:]
            getattr(out, field.name).extend(items)
    return out
