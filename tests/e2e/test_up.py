"""`p4reduce up`: a real softswitch and controller for N ranks, started from an empty
directory; a training run under it while its metrics are read; Ctrl-C leaving no process
and no port behind; the command's exit status passed through."""

from __future__ import annotations

import itertools
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from p4reduce.controller.metrics import ScrapeError, scrape
from tests.support.netcheck import alive

UP = [sys.executable, "-m", "p4reduce.cli", "up"]


def _env(tmp_path: Path) -> dict[str, str]:
    """No P4REDUCE_* of the caller's; the cache (compiled program, run folders) in tmp."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("P4REDUCE_")}
    return {**env, "P4REDUCE_CACHE": str(tmp_path / "cache")}


def _workdir(tmp_path: Path) -> Path:
    (tmp_path / "work").mkdir()
    return tmp_path / "work"


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def _bindable(port: int, kind: int) -> bool:
    with socket.socket(socket.AF_INET, kind) as s:
        if kind == socket.SOCK_STREAM:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@pytest.mark.timeout(240)
def test_training_under_up_exits_0_while_metrics_rise(tmp_path: Path) -> None:
    """The issue's own command, with the example run from the installed package; the
    metrics endpoint is parsed during the job and its counters must rise."""
    proc = subprocess.Popen(
        [*UP, "--ranks", "2", "--", sys.executable, "-m", "torch.distributed.run",
         "--nproc-per-node", "2", "-m", "p4reduce.examples.train_ddp", "--epochs", "12"],
        cwd=_workdir(tmp_path), env=_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        metrics = ""
        for line in proc.stderr:
            m = re.search(r"P4REDUCE_METRICS=(\S+)", line)
            if m:
                metrics = m.group(1)
                break
        assert metrics, "p4reduce up did not say where its metrics are"
        seen: list[float] = []
        deadline = time.monotonic() + 200
        while proc.poll() is None and time.monotonic() < deadline:
            try:
                snap = scrape(metrics, timeout=5)
            except ScrapeError:
                break  # the run ended between two reads
            for job in snap.jobs.values():
                value = job.packets.get("aggregated", 0.0)
                if not seen or value != seen[-1]:
                    seen.append(value)
                assert job.world_size == 2 and job.slots == 256
            time.sleep(0.2)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err[-3000:]
    assert "epoch 12/12 loss" in out
    assert "RuntimeWarning" not in err  # DDP's own set-up collectives are not warnings
    rising = [b for a, b in itertools.pairwise(seen) if b > a]
    assert len(rising) >= 2 and seen == sorted(seen), seen
    assert list((tmp_path / "work").iterdir()) == []  # nothing written into the current dir
    assert not list((tmp_path / "cache" / "up").iterdir())  # the run folder is removed


@pytest.mark.timeout(120)
def test_ctrl_c_stops_everything_and_frees_every_port(tmp_path: Path) -> None:
    proc = subprocess.Popen([*UP, "--ranks", "3"], cwd=tmp_path, env=_env(tmp_path),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stderr is not None
        env = dict(re.findall(r"^export (\w+)=(\S+)$", "".join(
            proc.stdout.readline() for _ in range(3)), re.M))
        assert set(env) == {"P4REDUCE_CONTROLLER", "P4REDUCE_TOPOLOGY", "P4REDUCE_METRICS"}
        said = [proc.stderr.readline() for _ in range(2)]  # compiled into the cache; ready
        assert "compiled the shipped aggregator.p4" in said[0]
        p4rt = int(re.search(r"P4Runtime 127\.0\.0\.1:(\d+)", said[1]).group(1))  # type: ignore[union-attr]
        topo = yaml.safe_load(Path(env["P4REDUCE_TOPOLOGY"]).read_text())
        tunnels = [int(h["tunnel"].rsplit(":", 1)[1]) for h in topo["hosts"]]
        assert [h["port"] for h in topo["hosts"]] == [1, 2, 3] and len(set(tunnels)) == 3
        tcp = [p4rt, int(env["P4REDUCE_CONTROLLER"].rsplit(":", 1)[1]),
               int(env["P4REDUCE_METRICS"].rsplit(":", 1)[1])]
        children = _children(proc.pid)
        assert len(children) == 2 and all(alive(p) for p in children)
        assert not any(_bindable(p, socket.SOCK_DGRAM) for p in tunnels)
        assert scrape(env["P4REDUCE_METRICS"]).primary
        run_dir = Path(env["P4REDUCE_TOPOLOGY"]).parent
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert "stopped the switch and the controller" in err and "Traceback" not in err
    deadline = time.monotonic() + 10
    while any(alive(p) for p in children) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [p for p in children if alive(p)]
    assert all(_bindable(p, socket.SOCK_DGRAM) for p in tunnels)
    assert all(_bindable(p, socket.SOCK_STREAM) for p in tcp)
    assert not run_dir.exists()


@pytest.mark.timeout(120)
def test_the_commands_status_is_ups_and_a_failure_keeps_the_logs(tmp_path: Path) -> None:
    check = ("import os, sys; sys.exit(3 if os.environ['P4REDUCE_CONTROLLER'] and "
             "os.path.exists(os.environ['P4REDUCE_TOPOLOGY']) else 9)")
    r = subprocess.run([*UP, "--ranks", "1", "--", sys.executable, "-c", check], cwd=tmp_path,
                       env=_env(tmp_path), capture_output=True, text=True, timeout=100)
    assert r.returncode == 3, r.stderr
    kept = re.search(r"logs kept in (\S+)", r.stderr)
    assert kept and (Path(kept.group(1)) / "controller.log").is_file()
    r = subprocess.run([*UP, "--ranks", "1", "--", "no-such-command-p4reduce"], cwd=tmp_path,
                       env=_env(tmp_path), capture_output=True, text=True, timeout=100)
    assert r.returncode == 127 and "command not found: no-such-command-p4reduce" in r.stderr
