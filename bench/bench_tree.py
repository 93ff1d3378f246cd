"""Jobs through a tree of switches: up to 256 ranks on 8 leaves under a spine.

Everything runs in this process (tests/support/tree_fabric.py): the controller drives
every switch over its own P4Runtime connection, aggregator.p4 runs on each softswitch
device, leaves link to the spine in memory, and every rank is a Communicator thread on a
UDP tunnel into its leaf. Each row checks the results (int32 bit-exact against numpy's
wrapping sum, float32 within the documented bound) and measures what crossed the
uplinks: a leaf sends one partial aggregate per slot and round, so its uplink carries
1/fan-in of the bytes its workers sent it, where flat aggregation (leaves as L2 bridges,
the spine summing) would carry all of them. Times are those of Python switches and
Python workers sharing one interpreter on a shared machine: compare rows of one run.

    python -m bench.bench_tree                       # 64 and 256 ranks, as `make bench`
    python -m bench.bench_tree --leaves 8 --per-leaf 32 --elements 65536 --calls 3
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from p4reduce import contract as n
from p4reduce.worker import Communicator, quant

ROOT = Path(__file__).resolve().parent.parent
#: (initial, min, max) retransmission timeout of the ranks, seconds (see run_tree)
RTO = (1.0, 0.5, 10.0)
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def run_tree(leaves: int, per_leaf: int, elements: int, calls: int, *, k: int = 64,
             slots: int = 32, say: Any = print) -> dict[str, Any]:
    from tests.e2e.test_worker_e2e import run_ranks
    from tests.support.tree_fabric import TreeFabric

    world = leaves * per_leaf
    rng = np.random.default_rng(world)
    ints = [rng.integers(-(2**31), 2**31, elements, dtype=np.int64).astype(np.int32)
            for _ in range(world)]
    floats = [(rng.standard_normal(elements) * 10.0 ** rng.integers(-3, 4, elements))
              .astype(np.float32) for _ in range(world)]
    with TreeFabric(leaves, per_leaf, k=k, num_slots=max(64, slots)) as fab, \
            tempfile.TemporaryDirectory() as tmp:
        say(f"  {world} ranks: {leaves} leaves x {per_leaf}, controller connecting ...")
        mgr = fab.manager(Path(tmp) / "state.db")
        t0 = time.perf_counter()
        for r in range(world):
            h = fab.host(r)
            mgr.join("bench", r, world, h["mac"], h["ipv4"], 40000 + r, slots=slots)
        joined = time.perf_counter() - t0
        # Retransmission timers sized for this run, not for a network: hundreds of Python
        # ranks and switches share one interpreter on a few cores, so a round takes far
        # longer than the default 1 s RTO ceiling, and default timers would resend every
        # outstanding packet each second, a storm that only adds to the load.
        comms = [Communicator(fab.spec(mgr, "bench", r, fab.host(r)), timeout_s=120,
                              initial_rto_s=RTO[0], min_rto_s=RTO[1], max_rto_s=RTO[2])
                 for r in range(world)]
        try:
            say(f"  joined in {joined:.1f} s; warm-up call ...")
            run_ranks(comms, lambda r, c: c.allreduce(ints[r][:k]))
            before = fab.uplink_bytes()
            leaf_bytes0 = _leaf_ingress(mgr)
            times = []
            exact = True
            for call in range(calls):
                t = time.perf_counter()
                got = run_ranks(comms, lambda r, c: c.allreduce(ints[r]))
                times.append(time.perf_counter() - t)
                want = np.sum(ints, axis=0, dtype=np.int32)
                for res in got:
                    if isinstance(res, BaseException):
                        raise res
                    exact &= bool(np.array_equal(res, want))
                say(f"  int32 call {call + 1}/{calls}: {times[-1]:.2f} s, exact={exact}")
            got = run_ranks(comms, lambda r, c: c.allreduce(floats[r]))
            within = _within_bound(got, floats, k)
            say(f"  float32 call: within the documented bound={within}")
            after = fab.uplink_bytes()
            leaf_bytes1 = _leaf_ingress(mgr)
        finally:
            for c in comms:
                c.close()
        counters = mgr.counters_by_switch("bench")["bench"]
        fab.release(mgr)
    up = sum(after[leaf][0] - before[leaf][0] for leaf in after)
    down = sum(after[leaf][1] - before[leaf][1] for leaf in after)
    ingress = leaf_bytes1 - leaf_bytes0
    partials = sum(counters[leaf][n.COUNTER_PARTIALS][0] for leaf in counters if leaf != "spine")
    first = counters["spine"][n.COUNTER_AGGREGATED][0] if "spine" in counters else 0
    return {
        "ranks": world, "leaves": leaves, "per leaf": per_leaf, "elements": elements,
        "int32 exact": exact, "float32 within bound": within,
        "s/call (int32)": float(np.median(times)),
        "MB from workers into leaves": ingress / 1e6,
        "MB up the uplinks": up / 1e6,
        "MB down the uplinks": down / 1e6,
        "uplink / leaf ingress": up / ingress if ingress else 0.0,
        "1/fan-in": 1 / per_leaf,
        "partials resent": partials - first,
        "rank RTO s (initial/min/max)": "/".join(f"{x:g}" for x in RTO),
    }


def _leaf_ingress(mgr: Any) -> int:
    """Bytes of the contributions the leaves counted (what flat aggregation would have
    sent up the uplinks)."""
    by = mgr.counters_by_switch("bench")["bench"]
    return sum(cs[n.COUNTER_AGGREGATED][1] for name, cs in by.items() if name != "spine")


def _within_bound(results: list[Any], arrays: list[np.ndarray], k: int) -> bool:
    flat = np.stack([a.astype(np.float64) for a in arrays])
    exact = flat.sum(axis=0)
    chunk_max = np.abs(quant.to_blocks(np.abs(flat).max(axis=0), k)).max(axis=1)
    bound = np.repeat(quant.error_bound(len(arrays), chunk_max), k)[:exact.size]
    eps = float(np.finfo(np.float32).eps)
    ok = True
    for res in results:
        if isinstance(res, BaseException):
            raise res
        ok &= bool(np.array_equal(res, results[0]))
        ok &= bool(np.all(np.abs(res.astype(np.float64) - exact) <= bound + eps * np.abs(exact)))
    return ok


def run() -> list[dict[str, Any]]:
    """`make bench`: 64 ranks (2 leaves x 32) and 256 ranks (8 leaves x 32)."""
    return [run_tree(2, 32, 16384, 3), run_tree(8, 32, 16384, 2)]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--leaves", type=int, default=8, help="leaves under the spine (default 8)")
    p.add_argument("--per-leaf", type=int, default=32, help="ranks per leaf, 1..32 (default 32)")
    p.add_argument("--elements", type=int, default=16384, help="values per call (default 16384)")
    p.add_argument("--calls", type=int, default=2, help="timed int32 calls (default 2)")
    p.add_argument("--out", type=Path, help="also append the row as markdown to this file")
    a = p.parse_args(argv)
    if not 1 <= a.per_leaf <= n.MAX_WORKERS or not 1 <= a.leaves <= n.MAX_WORKERS \
            or a.leaves * a.per_leaf > n.MAX_WORLD_SIZE:
        p.error(f"--per-leaf and --leaves are 1..{n.MAX_WORKERS} and their product at most"
                f" {n.MAX_WORLD_SIZE}")
    row = run_tree(a.leaves, a.per_leaf, a.elements, a.calls)
    for key, value in row.items():
        print(f"{key:>28}: {value}")
    if a.out is not None:
        from bench.run import _markdown

        a.out.write_text(_markdown([row]))
    return 0 if row["int32 exact"] and row["float32 within bound"] else 1


if __name__ == "__main__":
    sys.exit(main())
