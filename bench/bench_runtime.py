"""softswitch runtime throughput, each back end side by side: IPv4 LPM forwarding and
K-register read-add-write programs (K = 64 and 256) in-process (the batch API, no Python
per frame on the native back end), through UDP tunnel ports on loopback, and, as root with
iproute2, through an AF_PACKET port on a veth pair inside a throw-away network namespace
(the port path of the Mininet benchmarks); and the time of one P4Runtime Write of 20,000
table entries.

The K-register program has the shape of the aggregator: one lane control instantiated K
times, each with its own register array and one read-add-write action.

Port rows are driven by a load generator in C (built through p4reduce.native, run in its
own process); a Python sender could not offer the native back end enough frames. Echo rows:
the generator keeps a window of frames in flight with sendmmsg/recvmmsg, the program sends
each frame back out of the port it came in on, and `pps` is answered frames per second of
wall-clock time (request and response both cross the kernel, on the same 2 cores).
Port-to-port rows (veth, as root), the way a tester measures a switch: the generator
offers frames on port 1 as fast as the kernel takes them (`offered pps`), the program
forwards them out of port 2, and `pps` is what the kernel counted arriving at port 2's
far end. `cpu pps` (in-process rows) is per second of the process's CPU time, the figure
that stays comparable on a busy machine. "C reference" rows are minimal C programs (an
echo, a forwarder) with plain socket calls and no pipeline: a reference, not a bound.
"""

from __future__ import annotations

import json
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
from p4reduce.softswitch.runtime import Device
from p4reduce.softswitch.runtime.backend import make_pipeline
from p4reduce.softswitch.runtime.batch import FrameBatch
from p4reduce.softswitch.runtime.control import ActionCall, Lpm, TableEntry
from p4reduce.softswitch.runtime.ports import AfPacketPort, UdpPort

ROOT = Path(__file__).resolve().parent.parent
BASIC = ROOT / "tests" / "p4" / "good" / "basic.p4"
K = 64
BACKENDS = ("python", "native")

LOADGEN_C = r"""
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <sys/socket.h>
#include <time.h>
#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103
#endif
#ifndef UDP_GRO
#define UDP_GRO 104
#endif
#define B 512
#define SEGS 32
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }
/* Keep `window` frames in flight to `fd` (a connected UDP socket, or a bound AF_PACKET
 * one) for `seconds`: out[0] frames sent, out[1] answers received, out[2] the seconds it
 * took. An answer is any frame received; frames not answered within 50 ms are written
 * off. Over UDP, runs of equal-size frames go as one segmentation-offload message and
 * answers are received coalesced (UDP_SEGMENT / UDP_GRO), as a batching client would. */
int lg_run(int fd, const uint8_t *frames, const uint32_t *lens, uint32_t nframes, double seconds,
           uint32_t window, int udp, uint64_t *out) {
    static struct mmsghdr m[B], r[B];
    static struct iovec v[B * SEGS], rv[B];
    static uint8_t rbuf[B][65536];
    static uint8_t sctl[B][CMSG_SPACE(sizeof(uint16_t))], rctl[B][CMSG_SPACE(sizeof(int))];
    uint64_t sent = 0, got = 0, inflight = 0;
    uint32_t next = 0;
    const uint8_t *at[4096];
    uint64_t off = 0;
    int one = 1;
    if (udp) setsockopt(fd, SOL_UDP, UDP_GRO, &one, sizeof one);
    for (uint32_t i = 0; i < nframes && i < 4096; i++) { at[i] = frames + off; off += lens[i]; }
    double start = now(), end = start + seconds, last = start;
    while (now() < end) {
        uint32_t nm = 0, nv = 0, queued = 0;
        while (inflight + queued < window && nm < B) {
            uint32_t seg = udp ? SEGS : 1, k = 0, len = lens[next % nframes];
            struct msghdr *h = &m[nm].msg_hdr;
            memset(h, 0, sizeof *h);
            h->msg_iov = &v[nv];
            while (k < seg && inflight + queued + k < window && lens[next % nframes] == len && (k + 1) * len < 65000) {
                uint32_t f = next++ % nframes;
                v[nv].iov_base = (void *)at[f]; v[nv].iov_len = lens[f];
                nv++; k++;
            }
            h->msg_iovlen = k;
            if (k > 1) {
                h->msg_control = sctl[nm]; h->msg_controllen = sizeof sctl[nm];
                struct cmsghdr *c = CMSG_FIRSTHDR(h);
                c->cmsg_level = SOL_UDP; c->cmsg_type = UDP_SEGMENT; c->cmsg_len = CMSG_LEN(sizeof(uint16_t));
                uint16_t s16 = (uint16_t)len; memcpy(CMSG_DATA(c), &s16, 2);
            }
            m[nm].msg_len = k;
            queued += k;
            nm++;
        }
        uint32_t counts[B];
        for (uint32_t i = 0; i < nm; i++) counts[i] = m[i].msg_len;
        if (nm) {
            int s = sendmmsg(fd, m, nm, MSG_DONTWAIT);
            uint32_t done = 0;
            for (int i = 0; i < s; i++) done += counts[i];
            sent += done; inflight += done; next -= queued - done;
        }
        for (int i = 0; i < B; i++) {
            rv[i].iov_base = rbuf[i]; rv[i].iov_len = sizeof rbuf[i];
            memset(&r[i].msg_hdr, 0, sizeof r[i].msg_hdr);
            r[i].msg_hdr.msg_iov = &rv[i]; r[i].msg_hdr.msg_iovlen = 1;
            r[i].msg_hdr.msg_control = rctl[i]; r[i].msg_hdr.msg_controllen = sizeof rctl[i];
        }
        int k = recvmmsg(fd, r, B, MSG_DONTWAIT, NULL);
        if (k > 0) {
            uint64_t n = 0;
            for (int i = 0; i < k; i++) {
                uint32_t seg = 0;
                for (struct cmsghdr *c = CMSG_FIRSTHDR(&r[i].msg_hdr); c; c = CMSG_NXTHDR(&r[i].msg_hdr, c))
                    if (c->cmsg_level == SOL_UDP && c->cmsg_type == UDP_GRO) { int g; memcpy(&g, CMSG_DATA(c), sizeof g); seg = g; }
                n += seg ? (r[i].msg_len + seg - 1) / seg : 1;
            }
            got += n; inflight = inflight > n ? inflight - n : 0; last = now();
            continue;
        }
        if (inflight >= window || !nm) {
            struct pollfd p = {fd, POLLIN, 0};
            poll(&p, 1, 2);
            if (now() - last > 0.05) { inflight = 0; last = now(); }
        }
    }
    out[0] = sent; out[1] = got;
    double t = now() - start;
    memcpy(&out[2], &t, 8);
    return 0;
}

/* A reference for the port rows (a minimal C program, no pipeline): every frame received on `fd` sent straight back
 * (to its sender for UDP, with the same segmentation offload it came with), batches of
 * B, for `seconds`; returns the frames echoed. */
uint64_t lg_echo(int fd, int udp, double seconds) {
    static struct mmsghdr m[B];
    static struct iovec v[B];
    static uint8_t buf[B][65536];
    static struct sockaddr_storage from[B];
    static uint8_t ctl[B][CMSG_SPACE(sizeof(int))], sctl[B][CMSG_SPACE(sizeof(uint16_t))];
    uint64_t n = 0;
    int one = 1;
    if (udp) setsockopt(fd, SOL_UDP, UDP_GRO, &one, sizeof one);
    double end = now() + seconds;
    while (now() < end) {
        for (int i = 0; i < B; i++) {
            v[i].iov_base = buf[i]; v[i].iov_len = sizeof buf[i];
            memset(&m[i].msg_hdr, 0, sizeof m[i].msg_hdr);
            m[i].msg_hdr.msg_iov = &v[i]; m[i].msg_hdr.msg_iovlen = 1;
            if (udp) {
                m[i].msg_hdr.msg_name = &from[i]; m[i].msg_hdr.msg_namelen = sizeof from[i];
                m[i].msg_hdr.msg_control = ctl[i]; m[i].msg_hdr.msg_controllen = sizeof ctl[i];
            }
        }
        int k = recvmmsg(fd, m, B, MSG_DONTWAIT, NULL);
        if (k <= 0) { struct pollfd p = {fd, POLLIN, 0}; poll(&p, 1, 10); continue; }
        for (int i = 0; i < k; i++) {
            uint32_t seg = 0;
            if (udp)
                for (struct cmsghdr *c = CMSG_FIRSTHDR(&m[i].msg_hdr); c; c = CMSG_NXTHDR(&m[i].msg_hdr, c))
                    if (c->cmsg_level == SOL_UDP && c->cmsg_type == UDP_GRO) { int g; memcpy(&g, CMSG_DATA(c), sizeof g); seg = g; }
            v[i].iov_len = m[i].msg_len;
            n += seg ? (m[i].msg_len + seg - 1) / seg : 1;
            m[i].msg_hdr.msg_control = NULL; m[i].msg_hdr.msg_controllen = 0;
            if (seg && seg < m[i].msg_len) {
                m[i].msg_hdr.msg_control = sctl[i]; m[i].msg_hdr.msg_controllen = sizeof sctl[i];
                struct cmsghdr *c = CMSG_FIRSTHDR(&m[i].msg_hdr);
                c->cmsg_level = SOL_UDP; c->cmsg_type = UDP_SEGMENT; c->cmsg_len = CMSG_LEN(sizeof(uint16_t));
                uint16_t s16 = (uint16_t)seg; memcpy(CMSG_DATA(c), &s16, 2);
            }
        }
        int s = 0;
        while (s < k) { int r = sendmmsg(fd, m + s, k - s, 0); if (r <= 0) break; s += r; }
    }
    return n;
}

#define LB 256
/* Offered load for a port-to-port measurement: `frames` round-robin on `fd` (an AF_PACKET
 * socket bound to an interface) in batches of LB, as fast as the kernel takes them, for
 * `seconds`; out[0] frames sent, out[1] sends refused, out[2] the seconds it took. */
int lg_blast(int fd, const uint8_t *frames, const uint32_t *lens, uint32_t nframes, double seconds, uint64_t *out) {
    static struct mmsghdr m[LB];
    static struct iovec v[LB];
    const uint8_t *at[4096];
    uint64_t off = 0, sent = 0, refused = 0;
    uint32_t next = 0;
    for (uint32_t i = 0; i < nframes && i < 4096; i++) { at[i] = frames + off; off += lens[i]; }
    double start = now(), end = start + seconds;
    while (now() < end) {
        for (int i = 0; i < LB; i++) {
            uint32_t f = next++ % nframes;
            v[i].iov_base = (void *)at[f]; v[i].iov_len = lens[f];
            memset(&m[i].msg_hdr, 0, sizeof m[i].msg_hdr);
            m[i].msg_hdr.msg_iov = &v[i]; m[i].msg_hdr.msg_iovlen = 1;
        }
        int s = sendmmsg(fd, m, LB, MSG_DONTWAIT);
        if (s > 0) sent += s;
        if (s < LB) { refused += LB - (s > 0 ? s : 0); struct pollfd p = {fd, POLLOUT, 0}; poll(&p, 1, 1); }
    }
    out[0] = sent; out[1] = refused;
    double t = now() - start;
    memcpy(&out[2], &t, 8);
    return 0;
}

/* A reference for port-to-port forwarding (a minimal C program): every frame received on `in_fd` sent
 * out of `out_fd` unchanged, batches of B, for `seconds`; returns the frames forwarded. */
uint64_t lg_forward(int in_fd, int out_fd, double seconds) {
    static struct mmsghdr m[B];
    static struct iovec v[B];
    static uint8_t buf[B][2048];
    uint64_t n = 0;
    double end = now() + seconds;
    while (now() < end) {
        for (int i = 0; i < B; i++) {
            v[i].iov_base = buf[i]; v[i].iov_len = sizeof buf[i];
            memset(&m[i].msg_hdr, 0, sizeof m[i].msg_hdr);
            m[i].msg_hdr.msg_iov = &v[i]; m[i].msg_hdr.msg_iovlen = 1;
        }
        int k = recvmmsg(in_fd, m, B, MSG_DONTWAIT, NULL);
        if (k <= 0) { struct pollfd p = {in_fd, POLLIN, 0}; poll(&p, 1, 10); continue; }
        for (int i = 0; i < k; i++) v[i].iov_len = m[i].msg_len;
        int s = 0;
        while (s < k) { int r = sendmmsg(out_fd, m + s, k - s, 0); if (r <= 0) break; s += r; }
        n += k;
    }
    return n;
}
"""
LOADGEN_CDEF = """
int lg_run(int fd, const uint8_t *frames, const uint32_t *lens, uint32_t nframes, double seconds,
           uint32_t window, int udp, uint64_t *out);
uint64_t lg_echo(int fd, int udp, double seconds);
int lg_blast(int fd, const uint8_t *frames, const uint32_t *lens, uint32_t nframes, double seconds, uint64_t *out);
uint64_t lg_forward(int in_fd, int out_fd, double seconds);
"""


def lanes_source(k: int = K, reg_size: int = 1024, out_port: int = 0) -> str:
    """The K-register program; frames leave by the port they came in on, or by `out_port`."""
    egress = str(out_port) if out_port else "std.ingress_port"
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
    apply {{ if (hdr.vals.isValid()) {{ {applies} }} std.egress_spec = {egress}; }}
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


def forwarding_pipeline(backend: str, out_port: int = 1) -> Any:
    """basic.p4 with one route; every frame goes out of `out_port` (by default port 1, where
    it came in)."""
    p = make_pipeline(compile_file(str(BASIC)), backend)  # type: ignore[arg-type]
    p.table_insert("MyIngress.ipv4_lpm",
                   TableEntry((Lpm(0x0A010000, 16),), ActionCall("MyIngress.ipv4_forward", (0x020000000002, out_port))))
    return p


def frames_of(kind: str, k: int) -> list[bytes]:
    return [ipv4_frame()] if kind == "fwd" else [lanes_frame(i % 1024, k) for i in range(256)]


def in_process(pipe: Any, frames: list[bytes], seconds: float) -> tuple[float, float]:
    """(frames/s of wall-clock time, frames/s of CPU time) through `run_batch`."""
    batch = FrameBatch([(1, f) for f in frames] * max(1, 4096 // len(frames)))
    pipe.run_batch(batch, 1)
    n = 0
    start, cpu = time.perf_counter(), time.process_time()
    deadline = start + seconds
    times = 1
    while True:
        pipe.run_batch(batch, times)
        n += batch.n * times
        now = time.perf_counter()
        if now >= deadline:
            return n / (now - start), n / max(time.process_time() - cpu, 1e-9)
        if now - start < seconds / 20:
            times *= 2  # as few calls as possible without overshooting much


def client(kind: str, where: str, seconds: float, k: int = K, window: int = 2048) -> None:
    """The traffic source of `over_port`, run in its own process: prints "pps lost".
    `where` is the switch's UDP port number, or `af:IFACE` for raw frames on an interface."""
    from p4reduce import native

    lg = native.load("loadgen", LOADGEN_C, LOADGEN_CDEF)
    frames = frames_of(kind, k)
    if where.startswith("af:"):
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x88B5 if kind != "fwd" else 0x0800))
        sock.bind((where[3:], 0))
        sock.setsockopt(263, 23, 1)  # PACKET_IGNORE_OUTGOING: our own frames are no answers
    else:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.connect(("127.0.0.1", int(where)))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8 << 20)
    data = b"".join(frames)
    out = lg.ffi.new("uint64_t[3]")
    lg.lib.lg_run(sock.fileno(), data, lg.ffi.new("uint32_t[]", [len(f) for f in frames]), len(frames),
                  seconds, window, int(not where.startswith("af:")), out)
    elapsed = struct.unpack("d", bytes(lg.ffi.buffer(out + 2, 8)))[0]
    print(f"{out[1] / elapsed} {out[0] - out[1]}")


def over_port(pipe: Any, kind: str, seconds: float, k: int = K, iface: str | None = None) -> tuple[float, int]:
    """Frames into switch port 1 from the load generator, over a loopback UDP tunnel or
    (with `iface`) an AF_PACKET port whose peer interface is `iface`'s veth peer; the
    program sends each back out of port 1, to the generator. Returns (answered frames/s,
    frames not answered)."""
    dev = Device()
    port: UdpPort | AfPacketPort = AfPacketPort(iface) if iface else UdpPort("127.0.0.1", 0)
    where = "af:veth1" if iface else str(port.address[1])  # type: ignore[union-attr]
    dev.add_port(1, port)
    dev.set_pipeline(pipe)
    dev.start()
    try:
        code = f"from bench.bench_runtime import client; client({kind!r}, {where!r}, {seconds}, k={k})"
        res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                             timeout=seconds + 120, check=True)
    finally:
        dev.stop()
    pps, lost = res.stdout.split()
    return float(pps), int(lost)


def echo_baseline(kind: str, seconds: float, iface: str | None = None) -> tuple[float, int]:
    """The same load against a minimal C echo (no pipeline, no switch): what plain
    socket calls reach on this machine, a reference for the port rows (not a bound: the
    switch batches more, with rings and segmentation offload, and can pass it)."""
    import threading

    from p4reduce import native

    lg = native.load("loadgen", LOADGEN_C, LOADGEN_CDEF)
    if iface:
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
        sock.bind((iface, 0))
        sock.setsockopt(263, 23, 1)
        where = "af:veth1"
    else:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        where = str(sock.getsockname()[1])
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    echo = threading.Thread(target=lg.lib.lg_echo, args=(sock.fileno(), int(iface is None), seconds + 5))
    echo.start()
    try:
        code = f"from bench.bench_runtime import client; client({kind!r}, {where!r}, {seconds}, k={K})"
        res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                             timeout=seconds + 120, check=True)
    finally:
        echo.join()
        sock.close()
    pps, lost = res.stdout.split()
    return float(pps), int(lost)


def blaster(kind: str, iface: str, sink: str, seconds: float, k: int = K) -> None:
    """The traffic source of `port_to_port`, run in its own process: sends `kind` frames on
    `iface` as fast as the kernel takes them and prints "sent forwarded seconds", where
    forwarded is what interface `sink` received meanwhile (its kernel counter: the frames
    end in the kernel, no process on the far side competes for the two cores)."""
    from p4reduce import native

    lg = native.load("loadgen", LOADGEN_C, LOADGEN_CDEF)
    frames = frames_of(kind, k)
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    sock.bind((iface, 0))
    sock.setsockopt(263, 20, 1)  # PACKET_QDISC_BYPASS: the generator, not the switch, skips the qdisc
    counter = Path(f"/sys/class/net/{sink}/statistics/rx_packets")
    data = b"".join(frames)
    out = lg.ffi.new("uint64_t[3]")
    before = int(counter.read_text())
    lg.lib.lg_blast(sock.fileno(), data, lg.ffi.new("uint32_t[]", [len(f) for f in frames]), len(frames),
                    seconds, out)
    after = int(counter.read_text())
    elapsed = struct.unpack("d", bytes(lg.ffi.buffer(out + 2, 8)))[0]
    print(f"{out[0]} {after - before} {elapsed}")


def port_to_port(pipe: Any, kind: str, seconds: float, k: int = K) -> dict[str, float]:
    """The switch forwarding from AF_PACKET port 1 (veth0) to port 2 (veth2), the way a
    switch's throughput is measured with a tester (frames offered on one port, counted on
    another): the generator offers frames on veth1 as fast as it can, the kernel counts what
    arrives at veth3. Returns forwarded and offered frames/s."""
    dev = Device()
    dev.add_port(1, AfPacketPort("veth0"))
    dev.add_port(2, AfPacketPort("veth2"))
    dev.set_pipeline(pipe)
    dev.start()
    try:
        return _blast(kind, seconds, k)
    finally:
        dev.stop()


def forward_baseline(seconds: float) -> dict[str, float]:
    """The same offered load through a C forwarder (recvmmsg on veth0, sendmmsg on veth2;
    no pipeline, no switch): what plain socket calls reach for port-to-port forwarding on
    this machine, a reference for the switch's rows."""
    import threading

    from p4reduce import native

    lg = native.load("loadgen", LOADGEN_C, LOADGEN_CDEF)
    socks = []
    for iface in ("veth0", "veth2"):
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
        sock.bind((iface, 0))
        sock.setsockopt(263, 23, 1)  # PACKET_IGNORE_OUTGOING
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        socks.append(sock)
    fwd = threading.Thread(target=lg.lib.lg_forward, args=(socks[0].fileno(), socks[1].fileno(), seconds + 5))
    fwd.start()
    try:
        return _blast("lanes", seconds, K)
    finally:
        fwd.join()
        for sock in socks:
            sock.close()


def _blast(kind: str, seconds: float, k: int) -> dict[str, float]:
    code = f"from bench.bench_runtime import blaster; blaster({kind!r}, 'veth1', 'veth3', {seconds}, k={k})"
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         timeout=seconds + 120, check=True)
    sent, forwarded, elapsed = res.stdout.split()
    return {"pps": int(forwarded) / float(elapsed), "offered pps": int(sent) / float(elapsed)}


def _cases(out_port: int = 0) -> list[tuple[str, Callable[[str], Any], str, int]]:
    """(name, pipeline maker, frame kind, K) of each program; frames leave by the port they
    came in on, or by `out_port`."""
    cases: list[tuple[str, Callable[[str], Any], str, int]] = [
        ("ipv4 lpm forwarding", lambda b: forwarding_pipeline(b, out_port or 1), "fwd", 0)]
    for k in (K, 256):
        ir = compile_source(lanes_source(k, out_port=out_port))
        cases.append((f"{k} registers", lambda b, ir=ir: make_pipeline(ir, b), "lanes", k))  # type: ignore[misc]
    return cases


def af_packet_rows(seconds: float) -> list[dict[str, Any]]:
    """The AF_PACKET rows, measured in a child process inside a fresh network namespace
    holding one veth pair (switch on veth0, load generator on veth1); the namespace is
    deleted whatever happens. Nothing (an empty list) without root or iproute2."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        return []
    ns = f"p4rbench{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", ns], check=True, timeout=30)
    try:
        run = ["ip", "netns", "exec", ns]
        for a, b in (("veth0", "veth1"), ("veth2", "veth3")):
            subprocess.run([*run, "ip", "link", "add", a, "type", "veth", "peer", "name", b],
                           check=True, timeout=30)
        for dev in ("veth0", "veth1", "veth2", "veth3", "lo"):
            subprocess.run([*run, "ip", "link", "set", dev, "up"], check=True, timeout=30)
        code = f"from bench.bench_runtime import _af_packet_inside; _af_packet_inside({seconds})"
        res = subprocess.run([*run, sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                             timeout=20 * seconds + 300, check=True)
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False, timeout=30)
    return [json.loads(line) for line in res.stdout.splitlines() if line.startswith("{")]


def _af_packet_inside(seconds: float) -> None:
    pps, lost = echo_baseline("lanes", seconds, iface="veth0")
    print(json.dumps({"program": f"C echo, {K}-register frames", "ports": "af_packet veth",
                      "backend": "C reference", "pps": pps, "lost": lost}), flush=True)
    for name, make, kind, k in _cases():
        for backend in BACKENDS:
            pps, lost = over_port(make(backend), kind, seconds, k, iface="veth0")
            print(json.dumps({"program": name, "ports": "af_packet veth", "backend": backend, "pps": pps,
                              "lost": lost}), flush=True)
    where = "af_packet veth, port to port"
    print(json.dumps({"program": f"C forwarder, {K}-register frames", "ports": where, "backend": "C reference",
                      **forward_baseline(seconds)}), flush=True)
    for name, make, kind, k in _cases(out_port=2):
        for backend in BACKENDS:
            print(json.dumps({"program": name, "ports": where, "backend": backend,
                              **port_to_port(make(backend), kind, seconds, k)}), flush=True)


def table_write_rows() -> list[dict[str, Any]]:
    """One P4Runtime Write of 20,000 exact entries, over gRPC on loopback."""
    import grpc
    from finsy.proto import p4r, p4r_grpc

    from p4reduce.softswitch.p4.p4info import emit
    from p4reduce.softswitch.p4runtime import serve

    src = lanes_source(1).replace(
        "apply { if (hdr.vals.isValid())",
        "action fwd(bit<9> port) { std.egress_spec = port; } "
        "table t { key = { hdr.ethernet.dst: exact; } actions = { fwd; NoAction; } size = 65536; } "
        "apply { t.apply(); if (hdr.vals.isValid())")
    ir = compile_source(src, "bulk.p4")
    info = emit(ir)
    rows = []
    for backend in BACKENDS:
        srv = serve(Device(), "127.0.0.1:0", factory=lambda ir, b=backend: make_pipeline(ir, b))  # type: ignore[misc]
        try:
            with grpc.insecure_channel(srv.address) as ch:
                stub = p4r_grpc.P4RuntimeStub(ch)
                stub.SetForwardingPipelineConfig(p4r.SetForwardingPipelineConfigRequest(
                    device_id=0, action=p4r.SetForwardingPipelineConfigRequest.VERIFY_AND_COMMIT,
                    config=p4r.ForwardingPipelineConfig(p4info=info, p4_device_config=json.dumps(ir).encode())))
                tid = next(t.preamble.id for t in info.tables if t.preamble.name == "I.t")
                aid = next(a.preamble.id for a in info.actions if a.preamble.name == "I.fwd")
                ups = []
                for i in range(20_000):
                    te = p4r.TableEntry(table_id=tid)
                    te.match.add(field_id=1).exact.value = (i + 1).to_bytes(6, "big")
                    te.action.action.action_id = aid
                    te.action.action.params.add(param_id=1, value=b"\x02")
                    ups.append(p4r.Update(type=p4r.Update.INSERT, entity=p4r.Entity(table_entry=te)))
                start, cpu = time.perf_counter(), time.process_time()
                stub.Write(p4r.WriteRequest(device_id=0, updates=ups), timeout=600)
                rows.append({"program": "P4Runtime Write of 20,000 entries", "ports": "gRPC",
                             "backend": backend, "seconds": time.perf_counter() - start,
                             "cpu seconds": time.process_time() - cpu})
        finally:
            srv.stop()
    return rows


def run(seconds: float = 3.0) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    cases = _cases()
    for name, make, kind, k in cases:
        for backend in BACKENDS:
            pipe = make(backend)
            assert pipe.process(1, frames_of(kind, k)[0]), f"{name}: the test frame was dropped"
            pps, cpu = in_process(pipe, frames_of(kind, k), seconds)
            rows.append({"program": name, "ports": "in-process", "backend": backend, "pps": pps,
                         "cpu pps": cpu, "lost": 0})
    pps, lost = echo_baseline("lanes", seconds)
    rows.append({"program": f"C echo, {K}-register frames", "ports": "udp tunnel", "backend": "C reference",
                 "pps": pps, "lost": lost})
    for name, make, kind, k in cases:
        for backend in BACKENDS:
            pps, lost = over_port(make(backend), kind, seconds, k)
            rows.append({"program": name, "ports": "udp tunnel", "backend": backend, "pps": pps, "lost": lost})
    rows += af_packet_rows(seconds)
    rows += table_write_rows()
    return rows


if __name__ == "__main__":
    secs = float(sys.argv[1]) if len(sys.argv) > 1 else 3.0
    for r in run(secs):
        print(r)
