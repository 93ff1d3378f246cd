"""The project's own aggregation program compiles, and its lane count follows -D."""

from __future__ import annotations

import pytest

from p4reduce.softswitch.p4 import CompileError, compile_file
from p4reduce.softswitch.p4.ir import dumps
from tests.paths import ROOT

SRC = ROOT / "p4src" / "aggregator.p4"


def lane_registers(ir: dict[str, object]) -> list[str]:
    regs = ir["registers"]
    assert isinstance(regs, list)
    return [r["name"] for r in regs if ".lane_" in r["name"]]


def test_default_lanes_inlined_with_instance_paths() -> None:
    ir = compile_file(SRC)
    lanes = lane_registers(ir)
    assert lanes[0] == "AggIngress.aggregation.lane_0.sum"
    assert len(lanes) == len(set(lanes)) >= 8
    assert "AggIngress.aggregation.lane_0.update" in [a["name"] for a in ir["actions"]]


def test_num_lanes_define() -> None:
    ir = compile_file(SRC, {"NUM_LANES": "8"})
    assert len(lane_registers(ir)) == 8
    assert dumps(ir) == dumps(compile_file(SRC, {"NUM_LANES": "8"}))


def test_bad_num_lanes_is_a_clean_error() -> None:
    with pytest.raises(CompileError) as e:
        compile_file(SRC, {"NUM_LANES": "7"})
    assert e.value.diagnostics[0].file.endswith("config.p4")
    assert "#error" in e.value.diagnostics[0].message
