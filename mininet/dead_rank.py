"""A rank killed in the middle of a job, on the Mininet star (needs root and Mininet).

    python mininet/dead_rank.py [--hosts 3] [--json OUT] [--run-dir DIR]

Starts the demo's network, switch and controller (mininet/demo.py), then one process per
host that joins a job through the p4reduce torch engine and allreduces over and over; the
last rank kills itself with SIGKILL after a few calls. The others must fail within
seconds, naming the dead rank and when it was last seen. Each rank's outcome and the time
of the kill go to the JSON summary; every process and interface of the run is removed at
the end, whatever happens (by PID and by the run's tag, as the demo does).

Exit status: 0 when every surviving rank failed naming the dead rank; 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any

import demo

ROOT = Path(__file__).resolve().parent.parent
KILL_AFTER_CALLS = 5


def rank_main(out: Path) -> int:
    """Inside a rank's host: allreduce until it fails; the last rank dies after a few."""
    import torch

    from p4reduce.worker.torch.config import from_env
    from p4reduce.worker.torch.engine import SwitchEngine

    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    eng = SwitchEngine(from_env(rank, world), join_timeout_s=60)
    result: dict[str, Any] = {"rank": rank}
    try:
        for i in range(1_000_000):
            t = torch.full((4000,), float(rank + 1))
            eng.submit([t], average=False).wait()
            result["calls"] = i + 1
            if rank == world - 1 and i + 1 == KILL_AFTER_CALLS:
                result.update(kind="killed", at=time.time())
                out.write_text(json.dumps(result))
                os.kill(os.getpid(), signal.SIGKILL)
    except Exception as e:
        result.update(kind=type(e).__name__, message=str(e), at=time.time())
    finally:
        out.write_text(json.dumps(result))
        eng.close()
    return 0


def run(args: argparse.Namespace) -> dict[str, Any]:
    run_dir = args.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    procs = demo.Procs(run_dir)
    tag = f"k{os.getpid() % 10000}"
    summary: dict[str, Any] = {"tag": tag, "hosts": args.hosts, "ok": False}
    try:
        build = demo.compile_p4(run_dir)
        net_args = argparse.Namespace(hosts=args.hosts, topo="star", bw=100.0, delay="1ms",
                                      loss=0.0, switch="softswitch", lanes=None)
        net, env, _ = demo.start_mininet(procs, net_args, build, tag)
        env = {**os.environ, **env, "PYTHONPATH": str(ROOT), "WORLD_SIZE": str(args.hosts),
               "MASTER_PORT": str(demo.free_port(socket.SOCK_STREAM)), "OMP_NUM_THREADS": "1",
               "P4REDUCE_JOB": f"dead-{os.getpid()}", "P4REDUCE_TIMEOUT": "60"}
        outs = [run_dir / f"rank{r}.json" for r in range(args.hosts)]
        ranks = [procs.start(f"rank{r}", [sys.executable, __file__, "--rank-main", str(outs[r])],
                             {**{k: v.replace("{r}", str(r + 1)) for k, v in env.items()},
                              "RANK": str(r), "LOCAL_RANK": str(r)}, net.hosts_in_order[r])
                 for r in range(args.hosts)]
        deadline = time.monotonic() + args.timeout
        while any(p.poll() is None for p in ranks) and time.monotonic() < deadline:
            time.sleep(0.2)
        results = [json.loads(o.read_text()) if o.exists() else {"rank": r, "kind": "none"}
                   for r, o in enumerate(outs)]
        summary["results"] = results
        killed = results[-1]
        dead = args.hosts - 1
        ok = killed.get("kind") == "killed"
        for r in results[:-1]:
            r["after_kill_s"] = r.get("at", 0.0) - killed.get("at", 0.0)
            ok = (ok and r.get("kind") == "AllreduceError"
                  and f"rank {dead} last seen" in r.get("message", "")
                  and r["after_kill_s"] < 5.0)
        summary["ok"] = ok
    except (demo.DemoError, RuntimeError, OSError) as e:
        summary["error"] = f"{type(e).__name__}: {e}"
    finally:
        procs.stop_all()
        summary["pids"] = procs.pids()
    return summary


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--hosts", type=int, default=3)
    p.add_argument("--timeout", type=float, default=120.0, help="seconds for the ranks")
    p.add_argument("--run-dir", type=Path,
                   default=ROOT / "build" / "run" / f"dead-rank-{os.getpid()}")
    p.add_argument("--json", type=Path, help="also write the summary here")
    p.add_argument("--rank-main", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.rank_main is not None:
        return rank_main(args.rank_main)
    if os.geteuid() != 0:
        print("dead_rank.py: needs root (Mininet)", file=sys.stderr)
        return 1
    summary = run(args)
    text = json.dumps(summary, indent=2)
    (args.run_dir / "summary.json").write_text(text)
    if args.json:
        args.json.write_text(text)
    print(text)
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
