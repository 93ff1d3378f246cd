"""softswitch runtime throughput: IPv4 forwarding and K-register read-add-write programs
(K = 64 and 256), in-process (Pipeline.process on one thread), through a UDP tunnel port on
loopback and, as root with iproute2, through an AF_PACKET port on a veth pair inside a
throw-away network namespace (the port path of the Mininet benchmarks).

The K-register program has the shape of the aggregator: one lane control instantiated
K times, each with its own register array and one read-add-write action.
"""

from __future__ import annotations

import os
import shutil
import socket
import struct
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from p4reduce.softswitch.p4 import compile_file, compile_source
from p4reduce.softswitch.runtime import Device, Pipeline
from p4reduce.softswitch.runtime.control import ActionCall, Lpm, TableEntry
from p4reduce.softswitch.runtime.ports import AfPacketPort, UdpPort

ROOT = Path(__file__).resolve().parent.parent
BASIC = ROOT / "tests" / "p4" / "good" / "basic.p4"
K = 64
SOL_PACKET, PACKET_IGNORE_OUTGOING = 263, 23  # Linux; as the client's own constants


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


def client(kind: str, where: str, seconds: float, window: int = 32, k: int = K) -> None:
    """The traffic source of `over_port`, run in its own process so it does not share the
    switch's interpreter lock: sends `window` frames, reads the answers, repeats. `where`
    is the switch's UDP port number, or `af:IFACE` for raw frames on an interface."""
    frames = [ipv4_frame()] if kind == "fwd" else [lanes_frame(i % 1024, k) for i in range(256)]
    if where.startswith("af:"):
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x88B5 if kind != "fwd" else 0x0800))
        sock.bind((where[3:], 0))
        sock.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)  # our own frames are no answers

        def send(frame: bytes) -> None:
            sock.send(frame)
    else:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        dest = ("127.0.0.1", int(where))

        def send(frame: bytes) -> None:
            sock.sendto(frame, dest)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.settimeout(0.5)
    sent = got = 0
    start = time.perf_counter()
    deadline = start + seconds
    i = 0
    while time.perf_counter() < deadline:
        for _ in range(window):
            send(frames[i % len(frames)])
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


def over_port(pipe: Pipeline, kind: str, seconds: float, k: int = K, iface: str | None = None) -> tuple[float, int]:
    """Frames into switch port 1 from a client process, over a loopback UDP tunnel or
    (with `iface`) an AF_PACKET port whose peer interface is `iface`'s veth peer; the
    program sends each back out of port 1, i.e. to the client. Returns (answered
    frames/s, lost)."""
    dev = Device()
    port: UdpPort | AfPacketPort = AfPacketPort(iface) if iface else UdpPort("127.0.0.1", 0)
    where = "af:veth1" if iface else str(port.address[1])  # type: ignore[union-attr]
    dev.add_port(1, port)
    dev.set_pipeline(pipe)
    dev.start()
    try:
        code = f"from bench.bench_runtime import client; client({kind!r}, {where!r}, {seconds}, k={k})"
        res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                             timeout=seconds + 30, check=True)
    finally:
        dev.stop()
    pps, lost = res.stdout.split()
    return float(pps), int(lost)


def over_udp(pipe: Pipeline, kind: str, seconds: float, k: int = K) -> tuple[float, int]:
    return over_port(pipe, kind, seconds, k)


def af_packet_rows(seconds: float) -> list[dict[str, Any]]:
    """The AF_PACKET rows, measured in a child process inside a fresh network namespace
    holding one veth pair (switch on veth0, client on veth1); the namespace is deleted
    whatever happens. Nothing (an empty list) without root or iproute2."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        return []
    ns = f"p4rbench{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", ns], check=True, timeout=30)
    try:
        run = ["ip", "netns", "exec", ns]
        subprocess.run([*run, "ip", "link", "add", "veth0", "type", "veth", "peer", "name", "veth1"],
                       check=True, timeout=30)
        for dev in ("veth0", "veth1", "lo"):
            subprocess.run([*run, "ip", "link", "set", dev, "up"], check=True, timeout=30)
        code = f"from bench.bench_runtime import _af_packet_inside; _af_packet_inside({seconds})"
        res = subprocess.run([*run, sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                             timeout=10 * seconds + 120, check=True)
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False, timeout=30)
    rows: list[dict[str, Any]] = []
    for line in res.stdout.splitlines():
        name, pps, lost = line.rsplit(" ", 2)
        rows.append({"program": name, "ports": "af_packet veth", "pps": float(pps), "lost": int(lost)})
    return rows


def _af_packet_inside(seconds: float) -> None:
    for name, make, kind, k in _cases()[:1] + [c for c in _cases() if "vectorised" in c[0]]:
        pps, lost = over_port(make(), kind, seconds, k, iface="veth0")
        print(f"{name} {pps} {lost}")


def _cases() -> list[tuple[str, Callable[[], Pipeline], str, int]]:
    cases: list[tuple[str, Callable[[], Pipeline], str, int]] = [
        ("ipv4 lpm forwarding", forwarding_pipeline, "fwd", 0)]
    for k in (K, 256):
        ir = compile_source(lanes_source(k))
        cases.append((f"{k} registers, vectorised", lambda ir=ir: Pipeline(ir), "lanes", k))  # type: ignore[misc]
    ir64 = compile_source(lanes_source(K))
    cases.append((f"{K} registers, scalar code", lambda: Pipeline(ir64, vectorize=False), "lanes", K))
    return cases


def run(seconds: float = 3.0) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    cases = _cases()
    for name, make, kind, k in cases:
        frames = [ipv4_frame()] if kind == "fwd" else [lanes_frame(i % 1024, k) for i in range(256)]
        pipe = make()
        assert pipe.process(1, frames[0]), f"{name}: the test frame was dropped"
        rows.append({"program": name, "ports": "in-process", "pps": in_process(pipe, frames, seconds),
                     "lost": 0})
    for name, make, kind, k in cases:
        if "scalar" in name:
            continue
        pps, lost = over_udp(make(), kind, seconds, k)
        rows.append({"program": name, "ports": "udp tunnel", "pps": pps, "lost": lost})
    rows += af_packet_rows(seconds)
    return rows


if __name__ == "__main__":
    secs = float(sys.argv[1]) if len(sys.argv) > 1 else 3.0
    print(f"{'program':<28} {'ports':<15} {'pps':>10} {'lost':>6}")
    for r in run(secs):
        print(f"{r['program']:<28} {r['ports']:<15} {r['pps']:>10,.0f} {r['lost']:>6}")
