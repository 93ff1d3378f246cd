"""Reference model of the aggregation switch (docs/WIRE.md, "Switch algorithm"): the test
oracle.

`RefSwitch.handle` is the switch algorithm as a pure function of its state: one packet in,
the packets out. It is deliberately plain Python with one dict of register cells, so that
it can be read next to docs/WIRE.md and `p4src/aggregator.p4` and trusted; the pipeline tests
compare the P4 program with it, and the worker tests use it as their switch.

`RefSwitchServer` serves a `RefSwitch` over UDP tunnel ports on 127.0.0.1 (one UDP socket
per switch port, each datagram one whole Ethernet frame, the peer address learned from
the first frame) with seeded, hence repeatable, drop / duplicate / reorder faults.
"""

from __future__ import annotations

import random
import selectors
import socket
import threading
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from p4reduce.worker import wire
from p4reduce.worker.frames import Endpoint, FrameError, build_frame, parse_frame, udp_payload

# Counter names: the suffixes of controller/p4names.py's per-job counters.
AGGREGATED = "aggregated"
RESULTS = "results"
RESENT = "resent"
DUPLICATES = "duplicates"
STALE = "stale"
BAD_SLOT = "bad_slot"
NOT_MEMBER = "not_member"
UNKNOWN_JOB = "unknown_job"
BAD_WORKER = "bad_worker"


@dataclass(frozen=True)
class RefJob:
    job_id: int
    base: int
    num_slots: int
    num_workers: int
    epoch: int  # 24 bits, changes at every allocation


@dataclass
class Cell:
    """One register index: the tag and the running aggregate of one (slot, round parity)."""

    tag: int
    bitmap: int
    count: int
    exp_max: int
    lanes: npt.NDArray[np.int32]


def _round_is_newer(r: int, stored: int) -> bool:
    """Serial-number comparison mod 256 (RFC 1982): r is ahead of stored."""
    return 0 < (r - stored) % 256 < 128


@dataclass
class RefSwitch:
    """The switch algorithm. Ports are small integers; a member is bound to one port
    (standing for the P4 program's (job, worker, source IPv4) membership check)."""

    k: int = wire.DEFAULT_K
    jobs: dict[int, RefJob] = field(default_factory=dict)
    members: dict[tuple[int, int], int] = field(default_factory=dict)  # (job, worker) -> port
    cells: dict[int, Cell] = field(default_factory=dict)
    counters: Counter[tuple[int, str]] = field(default_factory=Counter)

    def add_job(
        self,
        job_id: int,
        num_slots: int,
        num_workers: int,
        *,
        base: int = 0,
        epoch: int = 1,
        ports: list[int] | None = None,
    ) -> RefJob:
        """Install a job; by default worker w is on port w (the one-job test topology)."""
        job = RefJob(job_id, base, num_slots, num_workers, epoch & 0xFFFFFF)
        self.jobs[job_id] = job
        for w in range(num_workers):
            self.members[(job_id, w)] = w if ports is None else ports[w]
        return job

    def remove_job(self, job_id: int) -> None:
        self.jobs.pop(job_id, None)
        for key in [key for key in self.members if key[0] == job_id]:
            del self.members[key]

    @staticmethod
    def index(job: RefJob, slot: int, rnd: int) -> int:
        return (job.base + slot) * 2 + (rnd & 1)

    def handle(self, port: int, payload: bytes) -> list[tuple[int, bytes]]:
        """Process one aggregation payload arriving on `port`; return (port, payload) out."""
        if len(payload) < wire.agg_payload_len(self.k):
            self.counters[(0, "malformed")] += 1
            return []
        hdr, values = wire.unpack_payload(payload, self.k)
        job = self.jobs.get(hdr.job_id)
        if job is None:
            self.counters[(hdr.job_id, UNKNOWN_JOB)] += 1
            return []
        if hdr.worker_id >= job.num_workers:
            self.counters[(job.job_id, BAD_WORKER)] += 1
            return []
        if hdr.slot >= job.num_slots:
            self.counters[(job.job_id, BAD_SLOT)] += 1
            return []
        if self.members.get((job.job_id, hdr.worker_id)) != port:
            self.counters[(job.job_id, NOT_MEMBER)] += 1
            return []
        i = self.index(job, hdr.slot, hdr.round)
        tag = (job.epoch << 8) | hdr.round
        bit = 1 << hdr.worker_id
        cell = self.cells.get(i)
        if cell is None:  # registers power up as zeros, as on the switch (epoch 0, round 0)
            cell = self.cells[i] = Cell(0, 0, 0, 0, np.zeros(self.k, dtype=np.int32))
        if cell.tag != tag:
            stored_epoch, stored_round = cell.tag >> 8, cell.tag & 0xFF
            if stored_epoch != job.epoch or _round_is_newer(hdr.round, stored_round):
                cell = Cell(tag, bit, 1, hdr.exp, values.copy())
                self.cells[i] = cell
                self.counters[(job.job_id, AGGREGATED)] += 1
                return self._maybe_complete(job, hdr, cell)
            self.counters[(job.job_id, STALE)] += 1
            return []
        if not cell.bitmap & bit:
            cell.bitmap |= bit
            if hdr.flags & wire.FLAG_EXP_ONLY:  # exponent packets: the larger value per lane
                # (lanes order-encoded; the model decodes, takes the maximum, encodes)
                cell.lanes = wire.order_encode(np.maximum(wire.order_decode(cell.lanes),
                                                          wire.order_decode(values)))
            else:
                cell.lanes = cell.lanes + values  # int32 + int32 wraps like the switch's bit<32>
            cell.exp_max = max(cell.exp_max, hdr.exp)
            cell.count += 1
            self.counters[(job.job_id, AGGREGATED)] += 1
            return self._maybe_complete(job, hdr, cell)
        if cell.count == job.num_workers:
            self.counters[(job.job_id, RESENT)] += 1
            return [(port, self._result(hdr, cell))]
        self.counters[(job.job_id, DUPLICATES)] += 1
        return []

    def _maybe_complete(self, job: RefJob, hdr: wire.AggHeader, cell: Cell) -> list[tuple[int, bytes]]:
        if cell.count != job.num_workers:
            return []
        self.counters[(job.job_id, RESULTS)] += 1
        out = self._result(hdr, cell)
        return [(self.members[(job.job_id, w)], out) for w in range(job.num_workers)]

    @staticmethod
    def _result(hdr: wire.AggHeader, cell: Cell) -> bytes:
        res = wire.AggHeader(
            hdr.flags | wire.FLAG_RESULT, hdr.job_id, hdr.worker_id, hdr.slot, hdr.round,
            hdr.offset, cell.exp_max,
        )
        return wire.pack_payload(res, cell.lanes)

    def missing_ranks(self, job_id: int, slot: int, rnd: int) -> list[int]:
        """Ranks whose contribution to (slot, round) the switch has not counted: what a
        controller could read from the bitmap register to name the culprits of a stall."""
        job = self.jobs[job_id]
        cell = self.cells.get(self.index(job, slot, rnd))
        tag = (job.epoch << 8) | (rnd & 0xFF)
        seen = cell.bitmap if cell is not None and cell.tag == tag else 0
        return [w for w in range(job.num_workers) if not seen >> w & 1]

    def counter(self, job_id: int, name: str) -> int:
        return self.counters[(job_id, name)]


@dataclass(frozen=True)
class Faults:
    """Per-port fault injection, applied to frames in both directions.

    `reorder` is the probability that a frame is held back and sent after the next frame
    of the same port (or after a short idle time), which swaps neighbours.
    """

    drop: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0
    seed: int = 0


SWITCH_MAC = "02:00:00:00:00:fe"
SWITCH_IP = "10.0.0.254"


class RefSwitchServer:
    """Serve a RefSwitch on loopback UDP tunnel ports, in a thread.

    Use as a context manager; `addresses[p]` is the (host, port) a worker on switch port p
    sends its frames to.
    """

    def __init__(
        self,
        switch: RefSwitch,
        num_ports: int,
        faults: Faults | None = None,
        *,
        switch_mac: str = SWITCH_MAC,
        switch_ip: str = SWITCH_IP,
    ) -> None:
        self.switch = switch
        self.faults = faults or Faults()
        self._me = Endpoint(switch_mac, switch_ip, wire.AGG_UDP_PORT)
        self._socks: list[socket.socket] = []
        for _ in range(num_ports):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind(("127.0.0.1", 0))
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
            s.setblocking(False)
            self._socks.append(s)
        self.addresses: list[tuple[str, int]] = [s.getsockname() for s in self._socks]
        self._peers: dict[int, tuple[tuple[str, int], Endpoint]] = {}
        self._rngs = [random.Random(self.faults.seed * 1000 + p) for p in range(num_ports)]
        self._held_in: dict[int, bytes] = {}
        self._held_out: dict[int, bytes] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="refswitch", daemon=True)
        self.frames_in = 0
        self.frames_out = 0

    def __enter__(self) -> RefSwitchServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        for s in self._socks:
            s.close()

    def missing_ranks(self, job_id: int, slot: int, rnd: int) -> list[int]:
        with self._lock:
            return self.switch.missing_ranks(job_id, slot, rnd)

    # fault injection: returns the frames to deliver now, in order
    def _faulty(self, port: int, frame: bytes, held: dict[int, bytes]) -> list[bytes]:
        f, rng = self.faults, self._rngs[port]
        if f.drop and rng.random() < f.drop:
            return []
        frames = [frame, frame] if f.duplicate and rng.random() < f.duplicate else [frame]
        if port in held:
            return [*frames, held.pop(port)]
        if f.reorder and rng.random() < f.reorder:
            held[port] = frames.pop(0)
        return frames

    def _send(self, port: int, frame: bytes) -> None:
        peer = self._peers.get(port)
        if peer is None:
            return  # nobody has spoken on this port yet: like a link with no host
        try:
            self._socks[port].sendto(frame, peer[0])
            self.frames_out += 1
        except OSError:
            pass  # a full socket buffer is a dropped frame, as on a wire

    def _ingress(self, port: int, frame: bytes) -> None:
        got = udp_payload(frame)
        if got is None or got[0] != wire.AGG_UDP_PORT:
            return
        with self._lock:
            out = self.switch.handle(port, got[1])
        for out_port, payload in out:
            peer = self._peers.get(out_port)
            if peer is None:
                continue
            full = build_frame(self._me, peer[1], payload)
            for f in self._faulty(out_port, full, self._held_out):
                self._send(out_port, f)

    def _serve(self) -> None:
        sel = selectors.DefaultSelector()
        for p, s in enumerate(self._socks):
            sel.register(s, selectors.EVENT_READ, p)
        try:
            while not self._stop.is_set():
                events = sel.select(timeout=0.02)
                if not events:
                    self._flush_held()
                for key, _ in events:
                    port = int(key.data)
                    sock = self._socks[port]
                    for _ in range(64):
                        try:
                            frame, addr = sock.recvfrom(65535)
                        except (BlockingIOError, InterruptedError):
                            break
                        except OSError:
                            break
                        self.frames_in += 1
                        if self._peers.get(port, (None,))[0] != addr:
                            try:
                                self._peers[port] = (addr, parse_frame(frame).src)
                            except FrameError:
                                continue
                        for f in self._faulty(port, frame, self._held_in):
                            self._ingress(port, f)
        finally:
            sel.close()

    def _flush_held(self) -> None:
        for port in list(self._held_in):
            self._ingress(port, self._held_in.pop(port))
        for port in list(self._held_out):
            self._send(port, self._held_out.pop(port))
