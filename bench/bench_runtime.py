"""softswitch runtime throughput: IPv4 forwarding and a 64-register read-add-write program,
in-process (Pipeline.process on one thread) and through UDP tunnel ports on loopback.

The 64-register program has the shape of the aggregator: one lane control instantiated
64 times, each with its own register array and one read-add-write action.
"""

from __future__ import annotations

import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from softswitch.p4 import compile_file, compile_source
from softswitch.runtime import Device, Pipeline
from softswitch.runtime.control import ActionCall, Lpm, TableEntry
from softswitch.runtime.ports import UdpPort

ROOT = Path(__file__).resolve().parent.parent
BASIC = ROOT / "tests" / "p4" / "good" / "basic.p4"
K = 64


def lanes_source(k: int = K, reg_size: int = 1024) -> str:
    fields = "".join(f"bit<32> v{i}; " for i in range(k))
    insts = "".join(f"Lane() lane{i}; " for i in range(k))
    applies = "".join(f"lane{i}.apply(hdr.vals.v{i}, hdr.vals.idx); " for i in range(k))
    return f"""#include <core.p4>
#include <v1model.p4>
header ethernet_t {{ bit<48> dst; bit<48> src; bit<16> etherType; }}
header vals_t {{ bit<32> idx; {fields} }}
struct headers {{ ethernet_t ethernet; vals_t vals; }}
struct metadata {{ bit<8> unused; }}
parser P(packet_in pkt, out headers hdr, inout metadata meta, inout standard_metadata_t std) {{
    state start {{ pkt.extract(hdr.ethernet);
        transition select(hdr.ethernet.etherType) {{ 0x88B5: parse_vals; default: accept; }} }}
    state parse_vals {{ pkt.extract(hdr.vals); transition accept; }}
}}
control Lane(inout bit<32> value, in bit<32> idx) {{
    register<bit<32>>({reg_size}) r;
    action add() {{ bit<32> x; r.read(x, idx); x = x + value; r.write(idx, x); value = x; }}
    apply {{ add(); }}
}}
control I(inout headers hdr, inout metadata meta, inout standard_metadata_t std) {{
    {insts}
    apply {{ if (hdr.vals.isValid()) {{ {applies} }} std.egress_spec = std.ingress_port; }}
}}
control E(inout headers hdr, inout metadata meta, inout standard_metadata_t std) {{ apply {{ }} }}
control V(inout headers hdr, inout metadata meta) {{ apply {{ }} }}
control C(inout headers hdr, inout metadata meta) {{ apply {{ }} }}
control D(packet_out pkt, in headers hdr) {{ apply {{ pkt.emit(hdr.ethernet); pkt.emit(hdr.vals); }} }}
V1Switch(P(), V(), I(), E(), C(), D()) main;
"""


def lanes_frame(idx: int, k: int = K) -> bytes:
    return bytes(12) + b"\x88\xb5" + struct.pack(f"!I{k}I", idx, *range(k))


def ipv4_frame() -> bytes:
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + 8 + 32, 0, 0, 64, 17, 0,
                     bytes([10, 0, 0, 1]), bytes([10, 1, 2, 3]))
    return bytes(12) + b"\x08\x00" + ip + struct.pack("!HHHH", 1, 2, 40, 0) + bytes(32)


def forwarding_pipeline() -> Pipeline:
    p = Pipeline(compile_file(str(BASIC)))
    p.table_insert("MyIngress.ipv4_lpm",
                   TableEntry((Lpm(0x0A010000, 16),), ActionCall("MyIngress.ipv4_forward", (0x020000000002, 1))))
    return p


def in_process(pipe: Pipeline, frames: list[bytes], seconds: float) -> float:
    n = 0
    process = pipe.process
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        for f in frames:
            process(1, f)
        n += len(frames)
        now = time.perf_counter()
        if now >= deadline:
            return n / (now - start)


def client(kind: str, port: int, seconds: float, window: int = 32) -> None:
    """The traffic source of `over_udp`, run in its own process so it does not share the
    switch's interpreter lock: sends `window` frames, reads the answers, repeats."""
    frames = [ipv4_frame()] if kind == "fwd" else [lanes_frame(i % 1024) for i in range(256)]
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.settimeout(0.5)
    sent = got = 0
    start = time.perf_counter()
    deadline = start + seconds
    i = 0
    while time.perf_counter() < deadline:
        for _ in range(window):
            sock.sendto(frames[i % len(frames)], ("127.0.0.1", port))
            i += 1
            sent += 1
        for _ in range(window):
            try:
                sock.recv(65535)
                got += 1
            except TimeoutError:
                break
    elapsed = time.perf_counter() - start
    print(f"{got / elapsed} {sent - got}")


def over_udp(pipe: Pipeline, kind: str, seconds: float) -> tuple[float, int]:
    """Frames into switch port 1 over a loopback tunnel from a client process; the program
    sends each back out of port 1, i.e. to the client. Returns (answered frames/s, lost)."""
    dev = Device()
    port = UdpPort("127.0.0.1", 0)
    dev.add_port(1, port)
    dev.set_pipeline(pipe)
    dev.start()
    try:
        code = f"from bench.bench_runtime import client; client({kind!r}, {port.address[1]}, {seconds})"
        res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                             timeout=seconds + 30, check=True)
    finally:
        dev.stop()
    pps, lost = res.stdout.split()
    return float(pps), int(lost)


def run(seconds: float = 3.0) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    fwd = [ipv4_frame()]
    lanes_ir = compile_source(lanes_source())
    lanes = [lanes_frame(i % 1024) for i in range(256)]
    cases: list[tuple[str, Callable[[], Pipeline], list[bytes]]] = [
        ("ipv4 lpm forwarding", forwarding_pipeline, fwd),
        ("64 registers, vectorised", lambda: Pipeline(lanes_ir), lanes),
        ("64 registers, scalar code", lambda: Pipeline(lanes_ir, vectorize=False), lanes),
    ]
    for name, make, frames in cases:
        pipe = make()
        assert pipe.process(1, frames[0]), f"{name}: the test frame was dropped"
        rows.append({"program": name, "ports": "in-process", "pps": in_process(pipe, frames, seconds),
                     "lost": 0})
    for (name, make, _), kind in zip(cases[:2], ("fwd", "lanes"), strict=True):
        pps, lost = over_udp(make(), kind, seconds)
        rows.append({"program": name, "ports": "udp tunnel", "pps": pps, "lost": lost})
    return rows


if __name__ == "__main__":
    secs = float(sys.argv[1]) if len(sys.argv) > 1 else 3.0
    print(f"{'program':<28} {'ports':<12} {'pps':>10} {'lost':>6}")
    for r in run(secs):
        print(f"{r['program']:<28} {r['ports']:<12} {r['pps']:>10,.0f} {r['lost']:>6}")
