"""The differential fuzzer (difffuzz.py) on every corpus program, a few hundred frames
each: the native back end must agree with the Python one on every frame, every write and
the final counters, registers, entries and digests. `make fuzz` runs a million frames."""

from __future__ import annotations

import zlib
from pathlib import Path

import pytest

from tests.softswitch.difffuzz import programs, run_program
from tests.support.backends import skip_unless_available

FRAMES = 120  # per program: ~7,000 frames over the corpus


@pytest.mark.timeout(300)
@pytest.mark.parametrize("path", programs(), ids=lambda p: p.stem)
def test_backends_agree_on_random_traffic_and_writes(path: Path) -> None:
    skip_unless_available("native")
    from p4reduce.softswitch.p4 import compile_file
    from p4reduce.softswitch.runtime.native.pipeline import NativePipeline

    ir = compile_file(str(path))
    res = run_program(ir, path.name, FRAMES, seed=zlib.crc32(path.name.encode()) % 1000, make_native=NativePipeline)
    if res.skipped:
        pytest.skip(f"the Python back end refuses {path.name}: {res.skipped}")
    assert res.frames == FRAMES
