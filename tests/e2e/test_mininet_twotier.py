"""`make run TOPO=twotier`: two leaves of two hosts under a spine, aggregator.p4 on all three.

Every switch aggregates: each leaf sums its two hosts and sends one partial aggregate per
slot and round up its uplink, so the uplinks carry half of what the hosts sent (fan-in
2), while gloo's ring crosses the same uplinks between the leaves. Skipped without root or
Mininet (reasons as in test_mininet_star.py); afterwards nothing the run made is left.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests.paths import ROOT
from tests.support.netcheck import alive, host_shells, interfaces, mininet_missing

DEMO = ROOT / "mininet" / "demo.py"

pytestmark = pytest.mark.skipif(mininet_missing() is not None, reason=str(mininet_missing()))


@pytest.mark.timeout(300)
def test_twotier_aggregates_at_every_switch_and_halves_the_uplink_bytes(tmp_path: Path) -> None:
    import subprocess

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
    assert len(summary["pids"]) >= 3 + 4 + 4 + 1  # three switches, both trainings, controller
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert summary["ok"] is True
    topo = json.loads((run / "topology.json").read_text())
    assert [(s["name"], s.get("parent", "")) for s in topo["switches"]] == [
        ("spine", ""), ("leaf1", "spine"), ("leaf2", "spine")]
    assert [(h["switch"], h["port"]) for h in topo["hosts"]] == [
        ("leaf1", 1), ("leaf1", 2), ("leaf2", 1), ("leaf2", 2)]
    rows = {r["backend"]: r for r in summary["results"]}
    sw, gl = rows["p4reduce"], rows["gloo"]
    assert abs(sw["final_loss"] - gl["final_loss"]) < 0.01
    assert sw["packets_sent"] > 0
    assert gl["switch_rx_packets"] > 0  # the ring between leaves crossed the spine
    # what p4reduce sent up the uplinks is about half of what its hosts sent the leaves
    # (one partial per two contributions; plus a little: resends, ARP, the rendezvous)
    share = sw["uplink_up_bytes"] / sw["host_tx_bytes"]
    assert 0.4 < share < 0.65, share
    assert gl["uplink_up_bytes"] > 0
