"""Which gloo fallbacks warn: DDP's own set-up collectives and barriers only log at debug;
a user's broadcast and a gradient allreduce that cannot use the switch warn, once, at the
user's line.

A p4reduce group that is not the process's first has no switch job and sends everything
through gloo, so a one-rank world exercises every path without a switch. It runs in a
fresh interpreter: process groups are global state.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = '''
import json, logging, sys, warnings
from types import SimpleNamespace
import torch, torch.distributed as dist
from torch._C._distributed_c10d import HashStore
import p4reduce.worker.torch.engine as engine

engine.live_engine = lambda: SimpleNamespace(cfg=SimpleNamespace(rank=0, job="first"))
debug = []
handler = logging.Handler()
handler.emit = lambda record: debug.append(record.getMessage())
logging.getLogger("p4reduce.worker.torch").addHandler(handler)
logging.getLogger("p4reduce.worker.torch").setLevel(logging.DEBUG)
result = {}
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    dist.init_process_group("gloo", store=HashStore(), rank=0, world_size=1)
    group = dist.new_group(backend="p4reduce")
    model = torch.nn.parallel.DistributedDataParallel(torch.nn.Linear(4, 2),
                                                      process_group=group)
    result["after_ddp"] = [str(w.message) for w in caught]
    dist.barrier(group=group)
    result["after_barrier"] = [str(w.message) for w in caught]
    t = torch.ones(3)
    dist.broadcast(t, 0, group=group)  # LINE broadcast
    dist.broadcast(t, 0, group=group)
    model(torch.ones(2, 4)).sum().backward()  # LINE backward
    result["warnings"] = [(str(w.message), w.filename, w.lineno) for w in caught]
result["debug"] = debug
json.dump(result, sys.stdout)
'''


@pytest.mark.timeout(120)
def test_ddp_setup_is_quiet_and_user_fallbacks_warn_at_their_line(tmp_path: Path) -> None:
    script = tmp_path / "ddp_user.py"
    script.write_text(SCRIPT)
    lines = SCRIPT.splitlines()
    line_of = {tag: lines.index(next(ln for ln in lines if f"# LINE {tag}" in ln)) + 1
               for tag in ("broadcast", "backward")}
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                       timeout=100, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads(r.stdout)
    assert res["after_ddp"] == [] and res["after_barrier"] == []
    debug = "\n".join(res["debug"])
    assert "allgather" in debug and "broadcast" in debug and "issued by torch itself" in debug
    assert "barrier" in debug
    warned = res["warnings"]
    assert len(warned) == 2, warned  # once per kind, however often it happens
    (bcast,) = [w for w in warned if "broadcast is not aggregated" in w[0]]
    (grad,) = [w for w in warned if "not the first p4reduce group" in w[0]]
    assert bcast[1:] == [str(script), line_of["broadcast"]]
    assert grad[1:] == [str(script), line_of["backward"]]
