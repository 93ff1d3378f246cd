"""The front end on p4c's own v1model test programs (`testdata/p4_16_samples/*-bmv2.p4` of a
p4c checkout, named by the P4C_SAMPLES environment variable; those programs are not part
of this project): at least 85 % compile to exactly p4c's P4Info, none to a different one,
nothing crashes, and every refusal is one line at file:line:col saying what is not
supported, or an error p4c reports too. bench/p4c_samples.py writes the full table."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from bench.p4c_samples import ENV, measure

SAMPLES = os.environ.get(ENV, "")

pytestmark = pytest.mark.skipif(
    not SAMPLES or not Path(SAMPLES).is_dir(),
    reason=f"{ENV} is not set to a p4c checkout's testdata/p4_16_samples: no samples to measure",
)


def test_p4c_samples_compile_to_p4cs_p4info() -> None:
    results = measure(Path(SAMPLES))
    assert len(results) > 300, "fewer *-bmv2.p4 programs than p4c ships"
    by = {s: [r for r in results if r.status == s] for s in ("identical", "differs", "refused", "crash")}
    assert not by["crash"], [(r.name, r.detail) for r in by["crash"]]
    assert not by["differs"], [(r.name, r.detail) for r in by["differs"]]
    assert len(by["identical"]) >= 0.85 * len(results), f"{len(by['identical'])} of {len(results)} identical"
    for r in by["refused"]:
        assert re.match(r"^[^:\n]+:\d+:\d+: error: \S", r.detail), r.detail
        assert "not supported: " in r.detail or r.category == "p4c rejects it too", (r.name, r.detail)
