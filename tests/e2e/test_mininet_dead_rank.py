"""A rank killed mid-job on the Mininet star (mininet/dead_rank.py): the other ranks'
pending allreduce fails within 5 s naming the dead rank and when it was last seen, and
the run leaves nothing behind. Skipped without root or Mininet (reasons as in
test_mininet_star.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.paths import ROOT
from tests.support.netcheck import alive, host_shells, interfaces, mininet_missing

SCRIPT = ROOT / "mininet" / "dead_rank.py"

pytestmark = pytest.mark.skipif(mininet_missing() is not None, reason=str(mininet_missing()))


@pytest.mark.timeout(300)
def test_a_killed_rank_is_named_to_its_peers_within_five_seconds(tmp_path: Path) -> None:
    out = tmp_path / "summary.json"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--hosts", "3", "--run-dir",
                           str(tmp_path / "run"), "--json", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=280)
    summary = json.loads(out.read_text())
    tag = summary["tag"]
    assert interfaces(tag) == []
    assert host_shells(tag) == []
    assert not [p for p in summary["pids"] if alive(p)]
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    *survivors, killed = summary["results"]
    assert killed["kind"] == "killed"
    for r in survivors:
        assert r["kind"] == "AllreduceError", r
        assert "rank 2 last seen" in r["message"] and "tensor size" not in r["message"]
        assert r["after_kill_s"] < 5.0, r
