"""`CEngine`: the worker's packet engine in C (`cstream.c`), the same calls as `PythonEngine`.

The C code is compiled once per machine by `p4reduce.native` and runs a whole call without
the GIL: packet rows are quantized in place, results dequantized straight into the output,
and the window's loss detection is the same as `window.Window`'s. Control comes back to
Python every `SLICE_S` seconds at most, so that Ctrl-C and the `abort` hook are served.

Sockets stay Python's: a transport that offers `native_io()` (the UDP and tunnel
transports) lends its socket to the engine, which then does its own sendmmsg/recvmmsg
(sending up to 64 datagrams per message with UDP segmentation offload where the kernel
has it: one pass through the network stack per message instead of per datagram);
any other transport (test doubles, in-memory switches) works through a queue, with Python
moving the packets the engine asks to send and feeding it what comes back.
"""

from __future__ import annotations

import functools
import importlib.resources
import os
import socket
import struct
import time
from typing import Any

import numpy as np
import numpy.typing as npt

from p4reduce import native
from p4reduce.contract import DESCRIPTOR_LANES
from p4reduce.worker import quant
from p4reduce.worker.errors import AllreduceError
from p4reduce.worker.job import JobSpec
from p4reduce.worker.plans import Outcome, check_descriptor
from p4reduce.worker.stats import CallStats
from p4reduce.worker.stream import (
    Abort,
    AbortPoll,
    MissingRanks,
    RtoEstimator,
    check_usable,
    mismatch_error,
    timeout_error,
)
from p4reduce.worker.transport import NativeIo, Transport

_NO_FLOATS = np.zeros(0, dtype=np.float32)
_NO_INTS = np.zeros(0, dtype=np.int32)
#: P4REDUCE_GSO=0 sends one datagram per message instead of with UDP segmentation
#: offload (which the engine turns off by itself where the kernel refuses it)
GSO_ENV = "P4REDUCE_GSO"
#: the longest the C loop runs before Python gets control back, seconds
SLICE_S = 0.05

_API_BEGIN, _API_END = "/* API begin */", "/* API end */"
# constants of cstream.c's API (checked against the C file's #defines by the tests)
CS_IO_FD, CS_IO_QUEUE, CS_IO_ECHO = 0, 1, 2
CS_FRAME_NONE, CS_FRAME_ETH = 0, 1
CS_DONE, CS_SLICE, CS_IO, CS_TIMEOUT, CS_MISMATCH, CS_DESCRIPTOR = 0, 1, 2, 3, 4, 5
CS_T_I32, CS_T_F32, CS_T_F64 = 0, 1, 2
CS_DESCRIPTOR_LANES = DESCRIPTOR_LANES


def source() -> str:
    return importlib.resources.files("p4reduce.worker").joinpath("cstream.c").read_text()


def api(src: str) -> str:
    """The declarations Python calls (the C file's API block), for cffi's cdef."""
    return src[src.index(_API_BEGIN) + len(_API_BEGIN): src.index(_API_END)]


@functools.cache
def load(sanitize: bool = False, baseline: bool = False) -> native.Native:
    """The compiled engine (cached by content); NativeUnavailable when it cannot be.
    `baseline` leaves out the AVX2 clones of the per-value loops (for tests)."""
    src = source()
    flags: tuple[str, ...] = ("-fno-math-errno",) if sanitize else ("-O3", "-fno-math-errno")
    if baseline:
        flags += ("-DCS_BASELINE",)
    return native.load("cstream", src, api(src), sanitize=sanitize, extra_flags=flags)


def sockaddr_in(addr: tuple[str, int]) -> bytes:
    """struct sockaddr_in of an IPv4 address, as the kernel takes it (16 bytes)."""
    host, port = addr
    return (struct.pack("=H", socket.AF_INET) + struct.pack("!H", port)
            + socket.inet_aton(socket.gethostbyname(host)) + b"\0" * 8)


class CEngine:
    """One job's packet engine in C. Calls run one at a time (the communicator's lock)."""

    name = "c"

    def __init__(self, job: JobSpec, transport: Transport, *, timeout_s: float,
                 rto: RtoEstimator, missing_ranks: MissingRanks | None,
                 abort: Abort | None, sanitize: bool = False) -> None:
        nat = load(sanitize)
        self._ffi, self._lib = ffi, lib = nat.ffi, nat.lib
        self.job = job
        self.transport = transport
        self.timeout_s = timeout_s
        self.missing_ranks = missing_ranks
        self.abort = abort
        self.broken: str | None = None
        io: NativeIo | None = getattr(transport, "native_io", lambda: None)()
        cfg = ffi.new("cs_config *")
        if io is None:
            cfg.io = CS_IO_QUEUE
        elif io.mode == "echo":
            cfg.io = CS_IO_ECHO
        else:
            cfg.io, cfg.fd = CS_IO_FD, io.fd
            dest = sockaddr_in(io.dest)
            ffi.memmove(cfg.dest, dest, len(dest))
            cfg.dest_len = len(dest)
            if io.prefix:
                ffi.memmove(cfg.prefix, io.prefix, len(io.prefix))
                cfg.prefix_len = len(io.prefix)
                cfg.framing, cfg.rx_port = CS_FRAME_ETH, io.rx_port
                ffi.memmove(cfg.rx_src_ip, socket.inet_aton(io.rx_src[0]), 4)
                cfg.rx_src_port = io.rx_src[1]
        cfg.job_id, cfg.rank, cfg.slots, cfg.k = job.job_id, job.rank, job.num_slots, job.k
        cfg.rto_initial, cfg.rto_min, cfg.rto_max = rto.initial_s, rto.min_s, rto.max_s
        cfg.gso = os.environ.get(GSO_ENV, "1") != "0"
        ptr = lib.cs_new(cfg)
        if ptr == ffi.NULL:
            raise MemoryError(f"p4reduce: cannot allocate the C engine of job {job.job_id}")
        self._e: Any = ffi.gc(ptr, lib.cs_free)
        self._st = lib.cs_state_of(ptr)
        rows, length = job.num_slots, lib.cs_row_len(ptr)
        self._rows = np.frombuffer(ffi.buffer(lib.cs_rows(ptr), rows * length),
                                   dtype=np.uint8).reshape(rows, length)
        self._call = ffi.new("cs_call *")
        # the pointer types of cs_call's arrays, resolved once (a small call's Python cost)
        self._ctypes = [ffi.typeof(t) for t in ("char[]", "char[]", "int32_t[]", "int32_t[]",
                                                "int8_t[]", "int8_t[]")]
        self._shift = quant.shift_for(job.world_size)

    @property
    def seq(self) -> int:
        if self._e is None:  # the state lived in the engine's memory, freed by close()
            raise ValueError("p4reduce: the C engine was closed")
        return int(self._st.seq)

    @property
    def high(self) -> int:
        """One past the highest packet index any call so far may have sent."""
        if self._e is None:  # the state lived in the engine's memory, freed by close()
            raise ValueError("p4reduce: the C engine was closed")
        return int(self._st.high)

    def restart_at(self, seq: int) -> None:
        """Go on at packet index `seq` after a switch restart (`Communicator.restart_at`),
        and accept calls again."""
        if self._e is None:
            raise ValueError("p4reduce: the C engine was closed")
        self._st.seq = self._st.high = seq
        self.broken = None

    def reduce(self, floats: npt.NDArray[np.floating] | None,
               ints: npt.NDArray[np.int32] | None, nbytes: int, *, wide: bool) -> Outcome:
        """The same as PythonEngine.reduce, in C."""
        check_usable(self.broken, self.job)
        if self._e is None:
            raise ValueError("p4reduce: the C engine was closed")
        ffi, lib, e, call = self._ffi, self._lib, self._e, self._call
        n_f = 0 if floats is None else floats.size
        n_i = 0 if ints is None else ints.size
        f_in = np.ascontiguousarray(floats) if floats is not None and n_f else _NO_FLOATS
        i_in = np.ascontiguousarray(ints) if ints is not None and n_i else _NO_INTS
        f_out: npt.NDArray[np.floating] = np.empty(n_f, dtype=np.float64 if wide else np.float32)
        i_out = np.empty(n_i, dtype=np.int32)
        chunks = -(-n_f // self.job.k)
        proposals = np.empty(chunks, dtype=np.int8)
        agreed = np.empty(chunks, dtype=np.int8)
        keep = [ffi.from_buffer(t, a) if a.size else ffi.NULL
                for t, a in zip(self._ctypes, (f_in, f_out, i_in, i_out, proposals, agreed),
                                strict=True)]
        call.f_in_type = CS_T_F64 if f_in.dtype == np.float64 else CS_T_F32
        call.f_out_type = CS_T_F64 if wide else CS_T_F32
        call.shift, call.world = self._shift, self.job.world_size
        call.n_f, call.n_i, call.timeout_s = n_f, n_i, self.timeout_s
        call.f_in, call.f_out, call.i_in, call.i_out, call.proposals, call.agreed = keep
        began = lib.cs_begin(e, call)
        if began == -2:
            raise MemoryError(f"p4reduce: no memory for the packet state of a call of {n_f}"
                              f" float and {n_i} int32 elements")
        if began != 0:
            raise ValueError(f"p4reduce: the C engine refused a call of {n_f} float and "
                             f"{n_i} int32 elements")
        aborting = AbortPoll(self.abort, time.monotonic())
        try:
            while True:
                rc = lib.cs_run(e, SLICE_S)
                if rc == CS_DONE:
                    break
                if rc == CS_IO:
                    self._pump()
                elif rc != CS_SLICE:
                    raise self._error(rc, n_f, n_i)
                aborting.poll(time.monotonic())
        except BaseException as exc:  # any interruption mid-stream desynchronizes the rounds
            self.broken = str(exc) or type(exc).__name__
            raise
        finally:
            del keep
        st = self._st
        stats = CallStats(int(st.sent), int(st.retransmitted), int(st.duplicates),
                          float(st.elapsed), nbytes)
        return Outcome(f_out, i_out, agreed, proposals, stats)

    def _pump(self) -> None:
        """Queue mode: send what the engine asks to, feed it what came back."""
        ffi, lib, st = self._ffi, self._lib, self._st
        n = int(st.out_count)
        if n:
            slots = np.frombuffer(ffi.buffer(lib.cs_out_slots(self._e), 4 * n), dtype=np.uint32)
            rows = self._rows[slots]
            st.out_count = 0
            self.transport.send([r.tobytes() for r in rows])
        got = self.transport.recv(float(st.wait_s))
        if got:
            lens = np.fromiter(map(len, got), dtype=np.uint32, count=len(got))
            data = b"".join(got) or b"\0"
            if lib.cs_feed(self._e, ffi.from_buffer("uint8_t[]", data),
                           ffi.from_buffer("uint32_t[]", lens), len(got)) != 0:
                raise MemoryError("p4reduce: the C engine could not buffer received packets")

    def _error(self, rc: int, n_f: int, n_i: int) -> Exception:
        st, job = self._st, self.job
        if rc == CS_TIMEOUT:
            cap = job.num_slots
            slots = np.empty(cap, dtype=np.int32)
            rounds = np.empty(cap, dtype=np.int32)
            got = self._lib.cs_stuck(self._e, self._ffi.from_buffer("int32_t[]", slots),
                                     self._ffi.from_buffer("int32_t[]", rounds), cap)
            stuck = list(zip(slots[:got].tolist(), rounds[:got].tolist(), strict=True))
            return timeout_error(job, stuck, float(st.waited), self.missing_ranks)
        if rc == CS_MISMATCH:
            return mismatch_error(job, int(st.err_slot), int(st.err_round), int(st.err_offset),
                                  bool(st.err_exp_only), int(st.err_want_offset),
                                  bool(st.err_want_exp_only))
        if rc == CS_DESCRIPTOR:
            try:
                check_descriptor(n_f, n_i, list(st.desc_got))
            except AllreduceError as e:
                return e
        return RuntimeError(f"p4reduce: the C engine returned status {rc}")

    def close(self) -> None:
        """Free the engine now (it borrows the transport's socket, closed after this)."""
        if self._e is not None:
            self._ffi.gc(self._e, None)  # detach the destructor, then free here
            self._lib.cs_free(self._e)
            self._e = None
