"""`make run` in Mininet mode: a 4-host star whose allreduce goes through softswitch.

Needs root (network namespaces, veth, tc) and Debian's Mininet; without them the test is
skipped with the reason. It checks the demo's JSON summary, then that every process and
interface the run created is gone (interfaces carry the run's tag; hosts' shells are
`bash ... mininet:TAGhN`).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.paths import ROOT
from tests.support.netcheck import alive, host_shells, interfaces, mininet_missing

DEMO = ROOT / "mininet" / "demo.py"


pytestmark = pytest.mark.skipif(mininet_missing() is not None, reason=str(mininet_missing()))


@pytest.mark.timeout(300)
def test_star_allreduce_through_softswitch_and_nothing_left(tmp_path: Path) -> None:
    out = tmp_path / "summary.json"
    proc = subprocess.run([sys.executable, str(DEMO), "--mode", "mininet", "--topo", "star",
                           "--hosts", "4", "--model", "small", "--steps", "6", "--loss", "0.02", "--timeout", "120",
                           "--run-dir", str(tmp_path / "run"), "--json", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=280)
    summary = json.loads(out.read_text())
    tag = summary.get("tag")
    assert isinstance(tag, str) and tag
    # cleanup first: it must hold whether or not the training worked
    assert interfaces(tag) == []
    assert host_shells(tag) == []
    assert not [p for p in summary["pids"] if alive(p)]
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert summary["mode"] == "mininet" and summary["ok"] is True
    rows = {r["backend"]: r for r in summary["results"]}
    sw, gl = rows["p4reduce"], rows["gloo"]
    assert abs(sw["final_loss"] - gl["final_loss"]) < 0.01
    assert sw["packets_sent"] > 0 and sw["retransmitted"] > 0  # 2% of packets were lost
    # gloo ran on the data links: its ring crossed the P4 switch too
    assert gl["switch_rx_packets"] > 0 and sw["switch_rx_packets"] >= sw["packets_sent"] // 2
    assert len(summary["pids"]) == 1 + 1 + 2 * 4  # switch, controller, 4 ranks twice
    assert (tmp_path / "run" / "switch.log").read_text().count("ready") == 1


@pytest.mark.timeout(200)
def test_sigterm_mid_training_removes_the_network(tmp_path: Path) -> None:
    out = tmp_path / "summary.json"
    proc = subprocess.Popen([sys.executable, str(DEMO), "--mode", "mininet", "--hosts", "2",
                             "--model", "small", "--steps", "100000", "--timeout", "150",
                             "--run-dir", str(tmp_path / "run"), "--json", str(out)],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    rank0 = tmp_path / "run" / "p4reduce-rank0.log"
    try:
        # training has started once rank 0 logged a step (bounded by the test's timeout)
        while "step " not in (rank0.read_text(errors="replace") if rank0.exists() else ""):
            assert proc.poll() is None, "the demo ended before training started"
            time.sleep(0.2)
        proc.terminate()
        proc.wait(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130
    summary = json.loads(out.read_text())
    assert summary["error"] == "interrupted"
    assert interfaces(summary["tag"]) == []
    assert host_shells(summary["tag"]) == []
    assert not [p for p in summary["pids"] if alive(p)]
