"""Fuzz the C engine's receive path: run as a script under AddressSanitizer by
test_cstream_fuzz.py (the ASan runtime must be preloaded into Python, which a test
process cannot do to itself).

Garbage, short, truncated, foreign and mutated results are fed to engines in the middle of
calls, both as bare payloads and as tunnel frames, through the queue (cs_feed) and through
the engine's own socket (recvmmsg, datagrams longer than its buffer included). Valid
results are mixed in so that calls make progress and the result paths (dequantization,
exponents, descriptors, errors) run too. Any memory error aborts the process with ASan's
report; the last line printed is "fuzz ok <cases>".

    python tests/worker/fuzz_cstream.py [seconds] [seed]
"""

from __future__ import annotations

import contextlib
import random
import socket
import sys
import time
from collections import Counter
from typing import Any

import numpy as np

from p4reduce.worker import cstream, wire
from p4reduce.worker.frames import Endpoint, build_frame

S, K, JOB, RANK = 8, 8, 5, 1
#: how calls ended, by cs_run status name: the fuzz must reach every path
OUTCOMES: Counter[str] = Counter()
NAMES = {cstream.CS_DONE: "done", cstream.CS_TIMEOUT: "timeout",
         cstream.CS_MISMATCH: "mismatch", cstream.CS_DESCRIPTOR: "descriptor"}
ME = Endpoint("02:00:00:00:00:01", "10.0.0.1", 4000)
SWITCH = Endpoint("02:00:00:00:00:fe", "10.0.0.254", wire.AGG_UDP_PORT)


class Harness:
    def __init__(self, nat: Any, rng: random.Random, framing: int, io: int,
                 fd: int = -1, dest: tuple[str, int] = ("127.0.0.1", 9)) -> None:
        self.ffi, self.lib, self.rng, self.framing = nat.ffi, nat.lib, rng, framing
        cfg = self.ffi.new("cs_config *")
        cfg.io, cfg.fd, cfg.framing, cfg.rx_port = io, fd, framing, ME.port
        self.ffi.memmove(cfg.rx_src_ip, socket.inet_aton(SWITCH.ip), 4)
        cfg.rx_src_port = SWITCH.port
        cfg.job_id, cfg.rank, cfg.slots, cfg.k = JOB, RANK, S, K
        addr = cstream.sockaddr_in(dest)
        self.ffi.memmove(cfg.dest, addr, len(addr))
        cfg.dest_len = len(addr)
        cfg.rto_initial, cfg.rto_min, cfg.rto_max = 0.002, 0.001, 0.004
        self.e = self.ffi.gc(self.lib.cs_new(cfg), self.lib.cs_free)
        self.st = self.lib.cs_state_of(self.e)
        self.rows = np.frombuffer(self.ffi.buffer(self.lib.cs_rows(self.e),
                                                  S * self.lib.cs_row_len(self.e)),
                                  dtype=np.uint8).reshape(S, -1)
        self.call = self.ffi.new("cs_call *")
        self.keep: list[Any] = []
        self.active = False

    def begin(self) -> None:
        """A call of random float and int segments (either may be empty), sometimes with
        non-finite values, a descriptor other ranks disagree with (world > 1) or a short
        timeout."""
        rng, ffi = self.rng, self.ffi
        n_f = rng.choice([0, 0, 1, 7, 8, 9, 63, 64, 200, 1000])
        n_i = rng.choice([0, 0, 1, 8, 9, 100])
        f = np.random.default_rng(rng.randrange(1 << 30)).standard_normal(n_f)
        f = f.astype(rng.choice([np.float32, np.float64]))
        if n_f and rng.random() < 0.2:
            f[rng.randrange(n_f)] = rng.choice([np.nan, np.inf, 1e300])
        wide = rng.random() < 0.5
        f_out = np.empty(n_f, dtype=np.float64 if wide else np.float32)
        ints = np.arange(n_i, dtype=np.int32) * 7 - 3
        i_out = np.empty(n_i, dtype=np.int32)
        chunks = -(-n_f // K)
        props, agreed = np.empty(chunks, np.int8), np.empty(chunks, np.int8)
        self.keep = [f, f_out, ints, i_out, props, agreed]
        c = self.call
        c.f_in_type = cstream.CS_T_F64 if f.dtype == np.float64 else cstream.CS_T_F32
        c.f_out_type = cstream.CS_T_F64 if wide else cstream.CS_T_F32
        c.shift, c.world, c.n_f, c.n_i = 25, rng.choice([1, 1, 1, 2, 32]), n_f, n_i
        c.f_in = ffi.from_buffer(f) if n_f else ffi.NULL
        c.f_out = ffi.from_buffer(f_out) if n_f else ffi.NULL
        c.i_in = ffi.from_buffer("int32_t[]", ints) if n_i else ffi.NULL
        c.i_out = ffi.from_buffer("int32_t[]", i_out) if n_i else ffi.NULL
        c.proposals = ffi.from_buffer("int8_t[]", props) if chunks else ffi.NULL
        c.agreed = ffi.from_buffer("int8_t[]", agreed) if chunks else ffi.NULL
        c.timeout_s = rng.choice([0.005, 0.05, 1.0])
        assert self.lib.cs_begin(self.e, c) == 0
        self.active = True

    def outbox(self) -> list[bytes]:
        n = int(self.st.out_count)
        slots = np.frombuffer(self.ffi.buffer(self.lib.cs_out_slots(self.e), 4 * n),
                              dtype=np.uint32).copy() if n else np.zeros(0, np.uint32)
        self.st.out_count = 0
        return [self.rows[s % S].tobytes() for s in slots]

    def frame(self, payload: bytes) -> bytes:
        return build_frame(SWITCH, ME, payload) if self.framing == cstream.CS_FRAME_ETH else payload

    def mutate(self, sent: list[bytes]) -> list[bytes]:
        """A batch of datagrams: valid results, mutations of them, and garbage."""
        rng = self.rng
        out: list[bytes] = []
        for p in sent:
            r = bytearray(p)
            r[0] |= wire.FLAG_RESULT
            choice = rng.random()
            if choice < 0.5:
                out.append(self.frame(bytes(r)))
                if rng.random() < 0.1:
                    out.append(self.frame(bytes(r)))  # duplicate
                continue
            if choice < 0.6:
                r[rng.randrange(len(r))] = rng.randrange(256)
            elif choice < 0.7:
                r[4:6] = rng.randrange(65536).to_bytes(2, "big")  # any slot
            elif choice < 0.75:
                r[7:11] = rng.randrange(1 << 32).to_bytes(4, "big")  # another offset
            elif choice < 0.8:
                r[0] ^= wire.FLAG_EXP_ONLY
            elif choice < 0.85:
                r[12:] = bytes(rng.randrange(256) for _ in range(len(r) - 12))
            f = bytearray(self.frame(bytes(r)))
            if rng.random() < 0.5:
                del f[rng.randrange(len(f) + 1):]  # truncated anywhere
            elif self.framing == cstream.CS_FRAME_ETH and rng.random() < 0.5:
                at = rng.choice([12, 13, 14, 23, 36, 37, 38, 39])  # ethertype, IHL, proto, UDP
                f[at] = rng.randrange(256)
            out.append(bytes(f))
        for _ in range(rng.randrange(4)):
            out.append(bytes(rng.randrange(256) for _ in range(rng.choice(
                [0, 1, 11, 12, 41, 42, 43, 50, 100, 2000]))))
        rng.shuffle(out)
        return out

    def feed(self, datagrams: list[bytes]) -> None:
        if not datagrams:
            return
        lens = np.array([len(d) for d in datagrams], dtype=np.uint32)
        data = b"".join(datagrams) or b"\0"
        assert self.lib.cs_feed(self.e, self.ffi.from_buffer("uint8_t[]", data),
                                self.ffi.from_buffer("uint32_t[]", lens), len(datagrams)) == 0

    def step(self) -> int:
        if not self.active:
            self.begin()
        rc = self.lib.cs_run(self.e, 0.002)
        if rc in NAMES:
            self.active = False
            OUTCOMES[NAMES[rc]] += 1
        return int(rc)


def queue_cases(nat: Any, rng: random.Random, until: float) -> int:
    cases = 0
    for framing in (cstream.CS_FRAME_NONE, cstream.CS_FRAME_ETH):
        h = Harness(nat, rng, framing, cstream.CS_IO_QUEUE)
        stop = time.monotonic() + (until - time.monotonic()) / 2
        while time.monotonic() < stop:
            rc = h.step()
            if rc == cstream.CS_IO:
                h.feed(h.mutate(h.outbox()))
                cases += 1
    return cases


def socket_cases(nat: Any, rng: random.Random, until: float) -> int:
    """The engine reads its own socket; a peer sends it results and garbage."""
    cases = 0
    for framing in (cstream.CS_FRAME_NONE, cstream.CS_FRAME_ETH):
        me = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        me.bind(("127.0.0.1", 0))
        peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        peer.bind(("127.0.0.1", 0))
        peer.setblocking(False)
        h = Harness(nat, rng, framing, cstream.CS_IO_FD, me.fileno(), peer.getsockname())
        stop = time.monotonic() + (until - time.monotonic()) / 2
        while time.monotonic() < stop:
            h.step()
            sent = []
            while True:
                try:
                    d = peer.recv(4096)
                except BlockingIOError:
                    break
                sent.append(d[42:] if framing == cstream.CS_FRAME_ETH else d)
            batch = h.mutate(sent)
            if rng.random() < 0.2:
                batch.append(bytes(rng.randrange(256) for _ in range(rng.randrange(2049, 4000))))
            for d in batch:
                with contextlib.suppress(OSError):  # a full buffer: a lost datagram
                    peer.sendto(d, me.getsockname())
            cases += 1
        me.close()
        peer.close()
    return cases


def main() -> None:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 10.0
    seed = int(sys.argv[2]) if len(sys.argv) > 2 else 0
    nat = cstream.load(sanitize="--no-asan" not in sys.argv)
    rng = random.Random(seed)
    start = time.monotonic()
    cases = queue_cases(nat, rng, start + seconds * 0.6)
    cases += socket_cases(nat, rng, start + seconds)
    print(f"fuzz ok {cases} " + " ".join(f"{k}={v}" for k, v in sorted(OUTCOMES.items())))


if __name__ == "__main__":
    main()
