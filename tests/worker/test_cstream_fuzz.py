"""The C engine's receive path under AddressSanitizer (tests/worker/fuzz_cstream.py).

ASan's runtime has to be the first library of the process, so the fuzz runs in a Python
started with it preloaded; any invalid read or write aborts that process with a report,
which this test shows."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from p4reduce import native

HERE = Path(__file__).resolve().parent


def asan_runtime() -> str | None:
    try:
        cc = native.compiler()
    except native.NativeUnavailable:
        return None
    out = subprocess.run([*cc, "-print-file-name=libasan.so"], capture_output=True,
                         text=True).stdout.strip()
    return out if os.path.isabs(out) and os.path.exists(out) else None


@pytest.mark.timeout(300)
@pytest.mark.parametrize("seed", [1, 2])
def test_receive_path_survives_malformed_short_and_foreign_packets(seed: int) -> None:
    runtime = asan_runtime()
    if runtime is None:
        pytest.skip("no C compiler with an AddressSanitizer runtime (libasan.so)")
    env = {**os.environ, "LD_PRELOAD": runtime, "ASAN_OPTIONS": "detect_leaks=0:abort_on_error=1"}
    r = subprocess.run([sys.executable, "-W", "ignore", str(HERE / "fuzz_cstream.py"), "6",
                        str(seed)], capture_output=True, text=True, env=env, timeout=280,
                       cwd=HERE.parents[1])
    report = "\n".join(r.stderr.splitlines()[-60:])
    assert r.returncode == 0 and "AddressSanitizer" not in r.stderr, report
    m = re.search(r"^fuzz ok (\d+) (.*)$", r.stdout, re.M)
    assert m is not None, r.stdout + report
    outcomes = dict(kv.split("=") for kv in m.group(2).split())
    assert int(m.group(1)) > 1000
    # the fuzz reached completed calls and every way a call fails
    assert {k for k, v in outcomes.items() if int(v) > 0} == {
        "done", "timeout", "mismatch", "descriptor"}, outcomes
