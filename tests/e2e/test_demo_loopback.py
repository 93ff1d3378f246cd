"""`make run` in loopback mode, shortened: the summary it writes and the processes it leaves.

The demo is run as a script (mininet/ is not a package: it would shadow Mininet), with few
steps so that both trainings together take seconds.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.paths import ROOT
from tests.support.netcheck import alive

DEMO = ROOT / "mininet" / "demo.py"


def _run(tmp_path: Path, *extra: str) -> tuple[subprocess.CompletedProcess[str], dict[str, object]]:
    out = tmp_path / "summary.json"
    proc = subprocess.run([sys.executable, str(DEMO), "--mode", "loopback", "--hosts", "3",
                           "--model", "small", "--steps", "8", "--run-dir", str(tmp_path / "run"), "--json", str(out),
                           *extra], cwd=ROOT, capture_output=True, text=True, timeout=150)
    return proc, json.loads(out.read_text())


@pytest.mark.timeout(180)
def test_short_demo_trains_on_both_backends_and_cleans_up(tmp_path: Path) -> None:
    proc, summary = _run(tmp_path, "--loss", "0.02")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert summary["ok"] is True and summary["losses_agree"] is True
    rows = {r["backend"]: r for r in summary["results"]}  # type: ignore[attr-defined]
    assert set(rows) == {"p4reduce", "gloo"}
    sw, gl = rows["p4reduce"], rows["gloo"]
    assert abs(sw["final_loss"] - gl["final_loss"]) < 0.01
    assert 0.0 <= sw["accuracy"] <= 1.0
    assert sw["packets_sent"] > 0 and gl["packets_sent"] == 0
    # 2% drops on the switch ports: some packets of 8 steps x 3 ranks must have been resent
    assert sw["retransmitted"] > 0
    assert sw["allreduce_ms"] > 0 and gl["step_ms"] > 0
    assert "p4reduce" in proc.stdout and "gloo" in proc.stdout and "final loss" in proc.stdout
    run = tmp_path / "run"
    for name in ("switch.log", "controller.log", "p4reduce-rank0.log", "gloo-rank2.log"):
        assert (run / name).is_file(), name
    pids = summary["pids"]
    assert isinstance(pids, list) and len(pids) == 2 + 2 * 3
    assert not [p for p in pids if alive(p)]


@pytest.mark.timeout(60)
def test_a_failing_training_is_one_line_and_leaves_nothing(tmp_path: Path) -> None:
    # a training that overruns its time limit (0 s here) fails while ranks are running
    proc, summary = _run(tmp_path, "--timeout", "0")
    assert proc.returncode == 1
    assert summary["ok"] is False and "did not finish" in str(summary["error"])
    assert "Traceback" not in proc.stdout + proc.stderr
    assert not [p for p in summary["pids"] if alive(p)]  # type: ignore[attr-defined]


@pytest.mark.timeout(90)
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupt_stops_every_process(tmp_path: Path, sig: int) -> None:
    out = tmp_path / "summary.json"
    proc = subprocess.Popen([sys.executable, str(DEMO), "--mode", "loopback", "--hosts", "2",
                             "--model", "small", "--steps", "100000", "--run-dir", str(tmp_path / "run"),
                             "--json", str(out)], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        assert proc.stdout is not None
        for line in proc.stdout:  # the switch and controller are up: ranks start next
            if "switch and controller up" in line:
                break
        rank0 = tmp_path / "run" / "p4reduce-rank0.log"
        while "step " not in (rank0.read_text() if rank0.exists() else ""):
            assert proc.poll() is None
            time.sleep(0.2)
        proc.send_signal(sig)
        rest = proc.communicate(timeout=60)[0]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, rest
    summary = json.loads(out.read_text())
    assert summary["error"] == "interrupted"
    assert len(summary["pids"]) == 4
    assert not [p for p in summary["pids"] if alive(p)]


@pytest.mark.parametrize(("argv", "text"), [
    (["--hosts", "1"], "HOSTS (--hosts) must be 2..32, not 1"),
    (["--topo", "foo"], "TOPO (--topo): invalid choice: 'foo'"),
    (["--bw", "-5"], "BW (--bw) is a link rate in Mbit/s"),
    (["--delay", "abc"], "DELAY (--delay) must be a time"),
    (["--loss", "2"], "LOSS (--loss) is a drop probability"),
])
def test_bad_arguments_are_one_line_usage_errors(argv: list[str], text: str) -> None:
    proc = subprocess.run([sys.executable, str(DEMO), *argv], cwd=ROOT,
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and text in proc.stderr, proc.stderr
