"""A non-editable `pip install .` into a fresh venv, used from an empty directory the way a
new user would: no checkout on the path, no build/ folder, no path arguments.

Two flows, both training the shipped example on 3 ranks:
- `p4reduce examples`, then `p4reduce up --ranks 3 -- torchrun --nproc-per-node 3
  examples/train_ddp.py` (issue 18's "done when");
- by hand: `p4reduce-switch` with the shipped loopback topology's tunnel ports,
  `p4reduce-ctl serve` with no path argument (it compiles the shipped program into the
  cache), `torchrun -m p4reduce.examples.train_ddp` with only P4REDUCE_CONTROLLER set.

The venv gets torch 2.13.0 from pip like any dependency (the machine's pip finds its
wheel on local disk), so the test also proves the dependencies are declared.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.paths import ROOT

SYSTEM_PYTHON = Path(os.environ.get("SYSTEM_PYTHON", "/usr/bin/python3"))
#: the shipped loopback topology's tunnel ports (examples/topologies/loopback.yaml)
LOOPBACK_TUNNELS = (9001, 9002, 9003)
SKIP_IN_COPY = {".venv", ".git", "build", "__pycache__", ".mypy_cache", ".ruff_cache",
                ".pytest_cache", "results"}


def _free_tcp() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _udp_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _run(argv: list[str], cwd: Path, env: dict[str, str], timeout: float
         ) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def _wait_line(path: Path, marker: str, proc: subprocess.Popen[bytes]) -> str:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for line in path.read_text(errors="replace").splitlines():
            if marker in line:
                return line
        assert proc.poll() is None, path.read_text()
        time.sleep(0.1)
    raise AssertionError(f"no {marker!r} in {path}: {path.read_text()}")


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.skipif(not SYSTEM_PYTHON.exists(), reason=f"{SYSTEM_PYTHON} is not installed "
                    "(set SYSTEM_PYTHON to a Python 3.11)")
def test_installed_package_trains_from_an_empty_directory(tmp_path: Path) -> None:
    src = tmp_path / "src"
    shutil.copytree(ROOT, src, ignore=lambda d, names: [
        n for n in names if n in SKIP_IN_COPY or n.endswith(".egg-info")])
    venv = tmp_path / "venv"
    subprocess.run([str(SYSTEM_PYTHON), "-m", "venv", "--system-site-packages", str(venv)],
                   check=True, timeout=120)
    bin_dir = venv / "bin"
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("P4REDUCE_", "PYTHON", "VIRTUAL_ENV"))}
    env.update(PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}",
               P4REDUCE_CACHE=str(tmp_path / "cache"))
    r = _run([str(bin_dir / "pip"), "install", "--quiet", "torch==2.13.0", str(src)],
             tmp_path, env, 600)
    assert r.returncode == 0, r.stderr[-3000:]
    work = tmp_path / "work"
    work.mkdir()
    r = _run(["python", "-c", "import p4reduce, p4reduce.p4src as s; print(p4reduce.__file__);"
              "print(s.AGGREGATOR_P4.is_file())"], work, env, 60)
    where, has_p4 = r.stdout.split()
    assert where.startswith(str(venv)) and has_p4 == "True", r.stdout + r.stderr

    # 1. p4reduce up, with the example copied into the empty directory
    r = _run(["p4reduce", "examples"], work, env, 60)
    assert r.returncode == 0 and (work / "examples" / "train_ddp.py").is_file(), r.stderr
    r = _run(["p4reduce", "up", "--ranks", "3", "--", "torchrun", "--nproc-per-node", "3",
              "examples/train_ddp.py", "--epochs", "1"], work, env, 300)
    assert r.returncode == 0, r.stderr[-4000:]
    assert "epoch 1/1 loss" in r.stdout
    assert sorted(p.name for p in work.iterdir()) == ["examples"]
    compiled = list((tmp_path / "cache" / "p4").glob("aggregator-k64-*/aggregator.json"))
    assert len(compiled) == 1

    # 2. by hand: the switch, then the controller with no path argument, then torchrun
    taken = [p for p in LOOPBACK_TUNNELS if not _udp_free(p)]
    if taken:
        pytest.skip(f"UDP ports {taken} of the shipped loopback topology are in use here")
    p4rt, api = _free_tcp(), _free_tcp()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        with (tmp_path / "switch.log").open("wb") as log:
            procs.append(subprocess.Popen(
                ["p4reduce-switch", "--grpc-server-addr", f"127.0.0.1:{p4rt}",
                 *[a for i, p in enumerate(LOOPBACK_TUNNELS, 1)
                   for a in ("-i", f"{i}@udp:127.0.0.1:{p}")]],
                cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT))
        _wait_line(tmp_path / "switch.log", "ready", procs[0])
        with (tmp_path / "ctl.log").open("wb") as log:
            procs.append(subprocess.Popen(
                ["p4reduce-ctl", "serve", "--switch", f"127.0.0.1:{p4rt}",
                 "--listen", f"127.0.0.1:{api}", "--metrics", "127.0.0.1:0"],
                cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT))
        line = _wait_line(tmp_path / "ctl.log", "controller API on", procs[1])
        assert f"127.0.0.1:{api}" in line and "as primary" in line
        metrics = line.split("metrics on http://", 1)[1].split("/", 1)[0]
        r = _run(["torchrun", "--nproc-per-node", "3", "-m", "p4reduce.examples.train_ddp",
                  "--epochs", "1"], work, {**env, "P4REDUCE_CONTROLLER": f"127.0.0.1:{api}"},
                 300)
        assert r.returncode == 0, r.stderr[-4000:]
        assert "epoch 1/1 loss" in r.stdout and "RuntimeWarning" not in r.stderr
        r = _run(["p4reduce-ctl", "top", "--once", "--metrics", metrics], work, env, 60)
        assert r.returncode == 0 and "slots 0/16384 in use" in r.stdout, r.stderr
    finally:
        for proc in reversed(procs):
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    assert [p.returncode for p in procs] == [0, 0]
    # the controller's state file is the only thing written here (its documented default)
    assert sorted(p.name for p in work.iterdir()) == ["examples", "p4reduce-controller.db"]
