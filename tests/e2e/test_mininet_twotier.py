"""`make run TOPO=twotier`: two kernel-bridge leaves of two hosts under the P4 spine.

Both hosts of a leaf share one spine port, so this checks what the star cannot: one
multicast replica per worker down a shared port, each addressed by its replica id, and a
leaf that never sees its own frames come back from the spine. Skipped without root or
Mininet (reasons as in test_mininet_star.py); afterwards nothing the run made is left.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.paths import ROOT
from tests.support.netcheck import alive, host_shells, interfaces, mininet_missing

DEMO = ROOT / "mininet" / "demo.py"


def _why_not_twotier() -> str | None:
    if shutil.which("bridge") is None:  # the leaves' static forwarding entries
        return "iproute2's bridge is not on PATH"
    return mininet_missing()


pytestmark = pytest.mark.skipif(_why_not_twotier() is not None, reason=str(_why_not_twotier()))


@pytest.mark.timeout(300)
def test_twotier_allreduce_through_the_spine_and_nothing_left(tmp_path: Path) -> None:
    out = tmp_path / "summary.json"
    run = tmp_path / "run"
    proc = subprocess.run([sys.executable, str(DEMO), "--mode", "mininet", "--topo", "twotier",
                           "--hosts", "4", "--model", "small", "--steps", "6", "--timeout", "120",
                           "--run-dir", str(run), "--json", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=280)
    summary = json.loads(out.read_text())
    tag = summary.get("tag")
    assert isinstance(tag, str) and tag
    assert interfaces(tag) == []
    assert host_shells(tag) == []
    assert not [p for p in summary["pids"] if alive(p)]
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert summary["ok"] is True
    hosts = json.loads((run / "topology.json").read_text())["hosts"]
    assert [h["port"] for h in hosts] == [1, 1, 2, 2]  # two hosts behind each spine port
    rows = {r["backend"]: r for r in summary["results"]}
    sw, gl = rows["p4reduce"], rows["gloo"]
    assert abs(sw["final_loss"] - gl["final_loss"]) < 0.01
    assert sw["packets_sent"] > 0
    assert gl["switch_rx_packets"] > 0  # the ring between leaves crossed the spine
