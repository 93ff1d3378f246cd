"""`torchrun --nproc-per-node 3 examples/train_ddp.py` on the switch, against gloo."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.support.torch_harness import ROOT, Cluster, free_port

TORCHRUN = Path(sys.executable).with_name("torchrun")


def torchrun(backend: str, save: Path, env: dict[str, str]) -> str:
    argv = [str(TORCHRUN), "--nproc-per-node", "3", "--master-addr", "127.0.0.1",
            "--master-port", str(free_port(socket.SOCK_STREAM)),
            str(ROOT / "examples" / "train_ddp.py"), "--backend", backend, "--epochs", "3",
            "--save", str(save)]
    r = subprocess.run(argv, env={**os.environ, "PYTHONPATH": str(ROOT), **env}, cwd=ROOT,
                       capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-8000:]
    return r.stdout


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.skipif(not TORCHRUN.exists(), reason="torchrun is not installed beside python")
def test_example_under_torchrun_matches_gloo(tmp_path: Path) -> None:
    with Cluster(tmp_path, 3) as cluster:
        env = cluster.env()
        del env["P4REDUCE_JOB"]  # the default job name comes from MASTER_ADDR:MASTER_PORT
        out = torchrun("p4reduce", tmp_path / "p4reduce.pt", env)
    losses = [float(x) for x in re.findall(r"^epoch \d+/3 loss ([0-9.e+-]+)$", out, re.M)]
    assert len(losses) == 3, out
    assert losses[-1] < losses[0]
    torchrun("gloo", tmp_path / "gloo.pt", {})
    got = torch.load(tmp_path / "p4reduce.pt")
    want = torch.load(tmp_path / "gloo.pt")
    assert got.keys() == want.keys()
    for name in got:
        torch.testing.assert_close(got[name], want[name], rtol=1e-3, atol=1e-4)
