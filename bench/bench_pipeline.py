"""Packets per second of the full aggregation pipeline (p4src/aggregator.p4), each back end
side by side.

In-process: W = 4 workers sum one slot per round; every packet goes through admission,
the tagged state machine and all K lane read-modify-writes, and every fourth one
multicasts the result through egress (4 replicas, each rewritten and checksummed).
Entities are installed over P4Runtime, as in the tests. The frames of 256 rounds over 16
slots run as one batch (the native back end's batch API: no Python per frame), over and
over: rounds are numbered modulo 256, so every replay completes every round again.
`cpu packets/s` is per second of the process's CPU time, the figure that stays comparable
on a busy machine.

Memory: the native back end's resident set size after 1M and after 10M packets.

Wired (root, iproute2): the switch as its own process on veth ports, the C load generator
of bench_runtime in a network namespace on the far end, one worker (every packet
completes a round and comes back): p4reduce-switch on each back end, and BMv2's
simple_switch_grpc (p4c's build of the program) when it is on PATH.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from p4reduce.softswitch.runtime.batch import FrameBatch
from tests.pipeline.packets import agg_frame, host
from tests.pipeline.targets import SoftswitchTarget
from tests.pipeline.topo import base_entities, hosts, job_entities

ROOT = Path(__file__).resolve().parent.parent
WORKERS = 4
SLOTS = 16
ROUNDS = 256
BACKENDS = ("python", "native")
MEMORY_PACKETS = 10_000_000


def _frames(k: int, workers: list[Any]) -> list[tuple[int, bytes]]:
    rng = np.random.default_rng(0)
    values = rng.integers(-(2**20), 2**20, size=k).astype(np.int32)
    return [(workers[w].port, agg_frame(workers[w], 1, w, slot, rnd, values))
            for rnd in range(ROUNDS) for slot in range(SLOTS) for w in range(len(workers))]


def _target(k: int, backend: str) -> tuple[SoftswitchTarget, FrameBatch]:
    target = SoftswitchTarget(backend=backend, NUM_LANES=k)
    ws = hosts(WORKERS)
    target.install(base_entities() + job_entities(1, ws, base=0, num_slots=SLOTS))
    return target, FrameBatch(_frames(k, ws))


def in_process(k: int, backend: str, seconds: float) -> dict[str, Any]:
    target, batch = _target(k, backend)
    try:
        pipe = target.pipe
        # one warm-up replay checks the figure means something: every round completes
        assert pipe.run_batch(batch) == batch.n, "every round must multicast to all workers"
        n = 0
        start, cpu = time.perf_counter(), time.process_time()
        while time.perf_counter() - start < seconds:
            outputs = pipe.run_batch(batch)
            assert outputs == batch.n
            n += batch.n
        wall, used = time.perf_counter() - start, time.process_time() - cpu
        return {"K": k, "workers": WORKERS, "backend": backend, "ports": "in-process", "packets": n,
                "seconds": wall, "packets/s": n / wall, "cpu packets/s": n / used, "values/s": n * k / wall}
    finally:
        target.close()


def _rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def memory(k: int = 64) -> dict[str, Any]:
    """Resident memory of the native back end over MEMORY_PACKETS packets."""
    target, batch = _target(k, "native")
    try:
        pipe = target.pipe
        reps_1m = max(1, 1_000_000 // batch.n)
        pipe.run_batch(batch, reps_1m)
        after_1m = _rss_kib()
        done = reps_1m * batch.n
        while done < MEMORY_PACKETS:
            pipe.run_batch(batch, reps_1m)
            done += reps_1m * batch.n
        after = _rss_kib()
        return {"K": k, "workers": WORKERS, "backend": "native", "ports": "in-process (memory)",
                "packets": done, "RSS after 1M (MiB)": after_1m / 1024, "RSS at the end (MiB)": after / 1024,
                "RSS growth (MiB)": (after - after_1m) / 1024}
    finally:
        target.close()


# ---- wired: switch processes on veth ports, BMv2 included ---------------------------------

def wired_client(iface: str, frames_file: str, seconds: float, window: int = 1024) -> None:
    """Run inside the namespace: the load generator on `iface`; prints JSON."""
    import socket

    from bench.bench_runtime import LOADGEN_C, LOADGEN_CDEF
    from p4reduce import native

    lg = native.load("loadgen", LOADGEN_C, LOADGEN_CDEF)
    frames = [bytes.fromhex(x) for x in Path(frames_file).read_text().split()]
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0800))
    sock.bind((iface, 0))
    sock.setsockopt(263, 23, 1)  # PACKET_IGNORE_OUTGOING
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    out = lg.ffi.new("uint64_t[3]")
    lg.lib.lg_run(sock.fileno(), b"".join(frames), lg.ffi.new("uint32_t[]", [len(f) for f in frames]),
                  len(frames), seconds, window, 0, out)
    import struct

    elapsed = struct.unpack("d", bytes(lg.ffi.buffer(out + 2, 8)))[0]
    print(json.dumps({"pps": out[1] / elapsed, "lost": out[0] - out[1]}))


def _wired_one(make: Any, label: str, k: int, seconds: float, frames_file: str) -> dict[str, Any] | None:
    try:
        target = make()
    except Exception as exc:  # a switch that cannot start is a row that says why
        return {"K": k, "workers": 1, "backend": label, "ports": "af_packet veth", "note": f"did not start: {exc}"}
    try:
        target.install(base_entities(1) + job_entities(1, [host(1)], base=0, num_slots=SLOTS))
        iface = "h1"
        code = f"from bench.bench_pipeline import wired_client; wired_client({iface!r}, {frames_file!r}, {seconds})"
        res = subprocess.run(["ip", "netns", "exec", target.ns, sys.executable, "-c", code], cwd=ROOT,
                             capture_output=True, text=True, timeout=seconds + 120, check=True)
        got = json.loads(res.stdout.strip().splitlines()[-1])
        return {"K": k, "workers": 1, "backend": label, "ports": "af_packet veth", "packets/s": got["pps"],
                "lost": got["lost"]}
    finally:
        target.close()


def wired(k: int, seconds: float) -> list[dict[str, Any]]:
    from tests.pipeline import wired as w
    from tests.pipeline.targets import compile_ir, p4info_of

    if os.geteuid() != 0 or shutil.which("ip") is None:
        return []
    rng = np.random.default_rng(0)
    values = rng.integers(-(2**20), 2**20, size=k).astype(np.int32)
    h = host(1)
    frames = [agg_frame(h, 1, 0, slot, rnd, values) for rnd in range(ROUNDS) for slot in range(SLOTS)]
    rows: list[dict[str, Any]] = []
    with tempfile.NamedTemporaryFile("w", suffix=".hex", delete=False) as f:
        f.write("\n".join(fr.hex() for fr in frames))
        frames_file = f.name
    try:
        ir = compile_ir(NUM_LANES=k)
        for backend in BACKENDS:
            def make(backend: str = backend) -> Any:
                argv = [str(w.SOFTSWITCH), "--backend", backend, "--log-level", "warn", "--grpc-server-addr"]
                return w.WiredTarget(argv, [1], p4info_of(ir), json.dumps(ir).encode())

            row = _wired_one(make, f"softswitch {backend}", k, seconds, frames_file)
            if row:
                rows.append(row)
        reason = w.unavailable("simple_switch_grpc")
        if reason is None:
            row = _wired_one(lambda: w.bmv2([1], NUM_LANES=k), "BMv2 simple_switch_grpc", k, seconds, frames_file)
            if row:
                rows.append(row)
        else:
            rows.append({"K": k, "workers": 1, "backend": "BMv2 simple_switch_grpc", "ports": "af_packet veth",
                         "note": f"not measured: {reason}"})
    finally:
        os.unlink(frames_file)
    return rows


def run(seconds: float = 3.0) -> list[dict[str, Any]]:
    rows = [in_process(k, b, seconds) for k in (64, 256) for b in BACKENDS]
    rows.append(memory())
    rows += wired(64, seconds)
    return rows


if __name__ == "__main__":
    for row in run(float(sys.argv[1]) if len(sys.argv) > 1 else 3.0):
        print(row)
