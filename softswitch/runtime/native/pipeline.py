"""`NativePipeline`: a P4 program compiled to C, behind the same control surface and
packet interface as the Python back end's `Pipeline`.

The generated C (`cgen`) is compiled together with the fixed runtime (`c/*.c`) into one
shared object by `p4reduce.native.load`, cached by a hash of the source, and opened with
cffi in ABI mode, so every call releases the interpreter lock. The tables' entries are
validated and kept for read-back by the same `Table` as in the Python back end; only
their lookup structure lives in C (`NativeIndex`).
"""

from __future__ import annotations

import logging
import struct
import threading
from collections.abc import Callable, Sequence
from importlib import resources
from typing import Any

from p4reduce import native
from p4reduce.softswitch.p4.ir import Program
from p4reduce.softswitch.runtime.batch import FrameBatch
from p4reduce.softswitch.runtime.control import (
    CloneSession,
    CounterValue,
    DigestMessage,
    InvalidArgumentError,
    NotFoundError,
    Replica,
    ResourceExhaustedError,
)
from p4reduce.softswitch.runtime.errors import PipelineError
from p4reduce.softswitch.runtime.frame import ProgramFrame
from p4reduce.softswitch.runtime.native.cgen import (
    GEN_VERSION,
    CGen,
    CProgram,
    CTable,
    NativeUnsupported,
)
from p4reduce.softswitch.runtime.runs import RunPlan, lane_arrays, plan_runs
from p4reduce.softswitch.runtime.surface import SharedSurface
from p4reduce.softswitch.runtime.table_setup import build_table
from p4reduce.softswitch.runtime.tables import Ident, KeySpec, Resolved, Table
from p4reduce.softswitch.runtime.unsupported import refuse_unexecutable

log = logging.getLogger("p4reduce.softswitch.runtime")
p4log = logging.getLogger("p4reduce.softswitch.runtime.p4")

CDEF = """
typedef struct sw sw_t;
sw_t *sw_new(uint64_t seed);
void sw_free(sw_t *sw);
uint32_t sw_pkt_size(void);
uint64_t sw_run(sw_t *sw, const uint8_t *buf, const uint64_t *offs, const uint32_t *lens,
                const uint16_t *ports, uint32_t n, int keep);
void sw_lock(sw_t *sw);
void sw_unlock(sw_t *sw);
uint64_t sw_run_unlocked(sw_t *sw, const uint8_t *buf, const uint64_t *offs, const uint32_t *lens,
                         const uint16_t *ports, uint32_t n, int keep);
uint64_t sw_run_repeat(sw_t *sw, const uint8_t *buf, const uint64_t *offs, const uint32_t *lens,
                       const uint16_t *ports, uint32_t n, uint32_t times);
const uint32_t *sw_out_recs(sw_t *sw);
const uint8_t *sw_out_data(sw_t *sw);
void sw_stats(sw_t *sw, uint64_t *out);
void *sw_tbl_insert(sw_t *sw, uint32_t tid, const uint64_t *key, const uint64_t *mask,
                    const uint64_t *rng, uint32_t plen, int64_t prio, uint64_t seq, int32_t aid,
                    const uint64_t *args, uint32_t nw);
void sw_tbl_delete(sw_t *sw, uint32_t tid, void *e);
int sw_tbl_modify(sw_t *sw, uint32_t tid, void *e, int32_t aid, const uint64_t *args, uint32_t nw);
int sw_tbl_set_default(sw_t *sw, uint32_t tid, int32_t aid, const uint64_t *args, uint32_t nw);
void sw_ent_counter(void *e, uint64_t *out);
void sw_ent_set_counter(sw_t *sw, void *e, uint64_t pk, uint64_t by);
int sw_reg_read(sw_t *sw, uint32_t rid, uint32_t idx, uint64_t *out);
int sw_reg_write(sw_t *sw, uint32_t rid, uint32_t idx, uint64_t lo, uint64_t hi);
int sw_ctr_read(sw_t *sw, uint32_t cid, uint32_t idx, uint64_t *out);
int sw_ctr_write(sw_t *sw, uint32_t cid, uint32_t idx, uint64_t pk, uint64_t by);
int sw_mc_set(sw_t *sw, uint32_t grp, const uint32_t *ports, const uint32_t *rids, uint32_t n);
int sw_cs_set(sw_t *sw, uint32_t sess, const uint32_t *ports, const uint32_t *rids, uint32_t n,
              uint32_t trunc);
uint32_t sw_ev_take(sw_t *sw, uint8_t *buf, uint32_t cap);
uint32_t sw_ev_len(sw_t *sw);
"""

EV_DIGEST, EV_LOG, EV_ASSERT, EV_PACKET = 1, 2, 3, 4
# the generated code is warning-free except for what P4 itself allows (unused labels of
# parser states, variables of unused branches)
EXTRA_FLAGS = ("-Wno-unused-label", "-Wno-unused-variable", "-Wno-unused-but-set-variable")
_M64 = (1 << 64) - 1


def runtime_source(name: str) -> str:
    """One of the runtime's C files (package data under native/c/)."""
    return resources.files("p4reduce.softswitch.runtime.native").joinpath("c", name).read_text()


def build_source(prog: CProgram) -> str:
    return "\n".join([
        f"/* softswitch native pipeline, generator v{GEN_VERSION} */",
        runtime_source("base.c"), prog.source, runtime_source("tm.c"),
    ])


def native_plan(ir: Program) -> RunPlan:
    """The vector runs (shared with the Python back end) and their lane arrays."""
    fr = ProgramFrame(ir)
    plan = plan_runs(ir, fr)
    plan.arrays = lane_arrays(fr, plan)
    return plan


def compile_program(ir: Program, plan: RunPlan | None = None, *, sanitize: bool = False) -> tuple[CProgram, native.Native]:
    """Generate and build (or find in the cache) the program's shared object. Raises
    NativeUnsupported or native.NativeUnavailable when the C path cannot be used."""
    plan = native_plan(ir) if plan is None else plan
    prog = CGen(ir, plan).generate()
    # programs with vector runs: -O3 makes the compiler vectorise their loops
    flags = (*EXTRA_FLAGS, "-O3") if plan.runs else EXTRA_FLAGS
    return prog, native.load("softswitch", build_source(prog), CDEF, sanitize=sanitize, extra_flags=flags)


def _to_words(value: int, n: int) -> list[int]:
    return [value & _M64] if n == 1 else [(value >> 64) & _M64, value & _M64]


def _mask(width: int) -> int:
    return (1 << width) - 1


class NativeIndex:
    """A table's lookup structure in C; handles are the C entries."""

    def __init__(self, pipe: NativePipeline, ct: CTable, keys: list[KeySpec]) -> None:
        self.pipe = pipe
        self.ct = ct
        self.keys = keys
        self.ffi = pipe.ffi
        self.lib = pipe.lib
        self.exact = ct.kind == "exact" and all(n == 1 for n in ct.words) and \
            all(k.match_kind == "exact" for k in keys)

    def _encode(self, ident: Ident) -> tuple[list[int], list[int], list[int], int]:
        key: list[int] = []
        msk: list[int] = []
        rng: list[int] = []
        plen = 0
        for spec, n, c in zip(self.keys, self.ct.words, ident[:-1], strict=True):
            full = _mask(spec.width)
            kind = spec.match_kind
            if kind == "exact":
                v, m = c, full
            elif kind == "lpm":
                v, plen = c
                m = full ^ _mask(spec.width - plen)
            elif kind == "ternary":
                v, m = c
            elif kind == "range":
                v, m = 0, 0
                rng += [c[0], c[1]]
            elif c is None:  # optional, don't care
                v, m = 0, 0
            else:
                v, m = c, full
            key += _to_words(v, n)
            msk += _to_words(m, n)
        return key, msk, rng, plen

    def _args(self, action: Resolved) -> list[int]:
        widths = action.info.param_widths
        if all(w <= 64 for w in widths):
            return list(action.args)
        words: list[int] = []
        for v, w in zip(action.args, widths, strict=True):
            words += _to_words(v, 1 if w <= 64 else 2)
        return words

    def add(self, ident: Ident, action: Resolved, seq: int) -> Any:
        if self.exact:  # the common case, kept short: every field exact, one word each
            key = list(ident[:-1])
            msk: list[int] = []
            rng: list[int] = []
            plen = 0
        else:
            key, msk, rng, plen = self._encode(ident)
        args = self._args(action)
        # one array: key, mask, range bounds, action arguments
        words = self.ffi.new("uint64_t[]", [*key, *msk, *rng, *args, 0])
        k, m = len(key), len(msk)
        r = k + m
        e = self.lib.sw_tbl_insert(self.pipe.sw, self.ct.tid, words, words + k if m else words,
                                   words + r, plen, ident[-1], seq, action.info.aid, words + r + len(rng),
                                   len(args))
        if e == self.ffi.NULL:
            raise ResourceExhaustedError("out of memory for a table entry")
        return e

    def replace(self, ident: Ident, handle: Any, action: Resolved, seq: int) -> Any:
        args = self._args(action)
        if self.lib.sw_tbl_modify(self.pipe.sw, self.ct.tid, handle, action.info.aid,
                                  self.ffi.new("uint64_t[]", args or [0]), len(args)):
            raise ResourceExhaustedError("out of memory for a table entry")
        return handle

    def remove(self, ident: Ident, handle: Any) -> None:
        self.lib.sw_tbl_delete(self.pipe.sw, self.ct.tid, handle)

    def set_default(self, action: Resolved) -> None:
        args = self._args(action)
        if self.lib.sw_tbl_set_default(self.pipe.sw, self.ct.tid, action.info.aid,
                                       self.ffi.new("uint64_t[]", args or [0]), len(args)):
            raise ResourceExhaustedError("out of memory for a default action")

    def read_counter(self, handle: Any) -> tuple[int, int]:
        out = self.ffi.new("uint64_t[2]")
        self.lib.sw_ent_counter(handle, out)
        return int(out[0]), int(out[1])

    def write_counter(self, handle: Any, packets: int, octets: int) -> None:
        self.lib.sw_ent_set_counter(self.pipe.sw, handle, packets & _M64, octets & _M64)


def _nothing(*_: Any) -> None:
    return None


class NativePipeline(SharedSurface):
    """One compiled P4 program running in C, with its tables, externs and replication."""

    backend = "native"

    def __init__(self, ir: Program, *, seed: int | None = None, sanitize: bool = False,
                 plan: RunPlan | None = None) -> None:
        if not isinstance(ir, dict):
            raise PipelineError("the IR must be a JSON object")
        self.ir = ir
        refuse_unexecutable(ir)
        try:
            self.program, lib = compile_program(ir, plan, sanitize=sanitize)
        except (PipelineError, native.NativeUnavailable):
            raise
        except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
            raise PipelineError(f"malformed IR: {type(exc).__name__}: {exc}") from exc
        self.native = lib
        self.ffi = lib.ffi
        self.lib = lib.lib
        raw = self.lib.sw_new(seed or 0)
        if raw == self.ffi.NULL:
            raise PipelineError("out of memory creating the native pipeline")
        self.sw = self.ffi.gc(raw, self.lib.sw_free)
        self._lock = threading.Lock()
        self._digests: list[DigestMessage] = []
        self._mc: dict[int, tuple[Replica, ...]] = {}
        self._clones: dict[int, CloneSession] = {}
        self._one = (self.ffi.new("uint64_t[1]"), self.ffi.new("uint32_t[1]"), self.ffi.new("uint16_t[1]"))
        actions = {a["name"]: a for a in ir.get("actions", [])}
        self._tables: dict[str, Table] = {}
        for t in ir.get("tables", []):
            self._tables[t["name"]] = build_table(t, actions, self._index_maker(t["name"]), lambda _n: _nothing)

    def _index_maker(self, table: str) -> Callable[[list[KeySpec]], NativeIndex]:
        ct = self.program.tables[table]
        return lambda keys: NativeIndex(self, ct, keys)

    # ---- packets ---------------------------------------------------------------------
    @property
    def stats(self) -> dict[str, int]:
        out = self.ffi.new("uint64_t[5]")
        self.lib.sw_stats(self.sw, out)
        return {"packets_in": int(out[0]), "packets_out": int(out[1]), "dropped": int(out[2]),
                "parser_errors": int(out[3])}

    def process(self, port: int, frame: bytes) -> list[tuple[int, bytes]]:
        """Run one frame through the switch; returns every frame it sends, in order."""
        if type(frame) is not bytes:
            frame = bytes(frame)
        if not 0 <= port < 512:
            raise ValueError(f"ingress port {port} out of range 0..511")
        with self._lock:
            offs, lens, ports = self._one
            lens[0] = len(frame)
            ports[0] = port
            outs = [(p, data) for _, p, data in self._run(frame, offs, lens, ports, 1)]
        self.drain()
        return outs

    def _run(self, buf: Any, offs: Any, lens: Any, ports: Any, n: int) -> list[tuple[int, int, bytes]]:
        """Run frames and read what they sent, holding the C lock throughout: the port
        engine's batches run on the same pipeline and reuse the output buffer."""
        lib, sw = self.lib, self.sw
        lib.sw_lock(sw)
        try:
            return self._outputs(lib.sw_run_unlocked(sw, buf, offs, lens, ports, n, 1))
        finally:
            lib.sw_unlock(sw)

    def process_batch(self, frames: Sequence[tuple[int, bytes]]) -> list[list[tuple[int, bytes]]]:
        """Many frames in one call into C; the outputs of each frame, in order."""
        result: list[list[tuple[int, bytes]]] = [[] for _ in frames]
        if not frames:
            return result
        c = FrameBatch(frames).arrays()
        with self._lock:
            for idx, p, data in self._run(c.buf, c.offs, c.lens, c.ports, len(frames)):
                result[idx].append((p, data))
        self.drain()
        return result

    def run_batch(self, batch: FrameBatch, times: int = 1) -> int:
        """The frames of `batch` `times` over without any Python per frame (benchmarks):
        outputs are produced and counted, not returned."""
        c = batch.arrays()
        with self._lock:
            n = int(self.lib.sw_run_repeat(self.sw, c.buf, c.offs, c.lens, c.ports, batch.n, times))
        self.drain()
        return n

    def _outputs(self, n: int) -> list[tuple[int, int, bytes]]:
        if not n:
            return []
        recs = self.ffi.unpack(self.lib.sw_out_recs(self.sw), 4 * n)
        total = recs[-2] + recs[-1]
        data = bytes(self.ffi.buffer(self.lib.sw_out_data(self.sw), total))
        return [(recs[i], recs[i + 1], data[recs[i + 2] : recs[i + 2] + recs[i + 3]])
                for i in range(0, 4 * n, 4)]

    def drain(self) -> None:
        """Digests, log messages and failed assertions the C side queued."""
        size = self.lib.sw_ev_len(self.sw)
        if not size:
            return
        buf = self.ffi.new("uint8_t[]", size)
        got = self.lib.sw_ev_take(self.sw, buf, size)
        data = bytes(self.ffi.buffer(buf, got))
        at = 0
        digests: list[DigestMessage] = []
        while at + 16 <= len(data):
            kind, ident, n, _ = struct.unpack_from("<4I", data, at)
            at += 16
            if kind == EV_PACKET:
                at += (n + 7) & ~7
                continue
            vals = struct.unpack_from(f"<{2 * n}Q", data, at)
            at += 16 * n
            values = tuple(vals[i] | (vals[i + 1] << 64) for i in range(0, 2 * n, 2))
            if kind == EV_DIGEST:
                names = self.program.digests
                digests.append(DigestMessage(names[ident] if ident < len(names) else f"digest_{ident}", values))
            elif kind == EV_LOG:
                text = self.program.log_formats[ident]
                for v in values:
                    text = text.replace("{}", str(v), 1)
                p4log.info("%s", text)
            elif kind == EV_ASSERT:
                log.error("P4 %s failed; packet processing continues", "assume" if ident else "assert")
        if digests:
            with self._lock:
                self._digests.extend(digests)

    def take_digests(self) -> list[DigestMessage]:
        self.drain()
        with self._lock:
            d, self._digests = self._digests, []
        return d

    # ---- control surface: replication (tables and the reads: surface.SharedSurface) ----
    def _reps(self, replicas: tuple[Replica, ...]) -> tuple[Any, Any]:
        ports = self.ffi.new("uint32_t[]", [r.egress_port & 0xFFFFFFFF for r in replicas] or [0])
        rids = self.ffi.new("uint32_t[]", [r.instance & 0xFFFFFFFF for r in replicas] or [0])
        return ports, rids

    def mc_group_set(self, group: int, replicas: tuple[Replica, ...]) -> None:
        if not 0 < group < 1 << 16:
            raise InvalidArgumentError(f"multicast group id {group} out of range 1..65535")
        with self._lock:
            ports, rids = self._reps(replicas)
            if self.lib.sw_mc_set(self.sw, group, ports, rids, len(replicas)):
                raise ResourceExhaustedError("out of memory for a multicast group")
            self._mc[group] = tuple(replicas)

    def mc_group_delete(self, group: int) -> None:
        with self._lock:
            if group not in self._mc:
                raise NotFoundError(f"no multicast group {group}")
            self.lib.sw_mc_set(self.sw, group, self.ffi.NULL, self.ffi.NULL, 0)
            del self._mc[group]

    def clone_session_set(self, session: CloneSession) -> None:
        if not 0 < session.session_id < 1 << 15:
            raise InvalidArgumentError(f"clone session id {session.session_id} out of range")
        with self._lock:
            ports, rids = self._reps(session.replicas)
            if self.lib.sw_cs_set(self.sw, session.session_id, ports, rids, len(session.replicas),
                                  session.packet_length_bytes & 0xFFFFFFFF):
                raise ResourceExhaustedError("out of memory for a clone session")
            self._clones[session.session_id] = session

    def clone_session_delete(self, session_id: int) -> None:
        with self._lock:
            if session_id not in self._clones:
                raise NotFoundError(f"no clone session {session_id}")
            self.lib.sw_cs_set(self.sw, session_id, self.ffi.NULL, self.ffi.NULL, 0, 0)
            del self._clones[session_id]

    # ---- control surface: indexed externs ------------------------------------------------
    def _counter(self, name: str, index: int) -> int:
        c = self.program.counters.get(name)
        if c is None:
            raise NotFoundError(f"no counter named {name!r}")
        if not 0 <= index < c[1]:
            raise InvalidArgumentError(f"counter {name}: index {index} out of range 0..{c[1] - 1}")
        return c[0]

    def counter_read(self, name: str, index: int) -> CounterValue:
        cid = self._counter(name, index)
        out = self.ffi.new("uint64_t[2]")
        self.lib.sw_ctr_read(self.sw, cid, index, out)
        return CounterValue(packets=int(out[0]), bytes=int(out[1]))

    def counter_write(self, name: str, index: int, value: CounterValue) -> None:
        cid = self._counter(name, index)
        self.lib.sw_ctr_write(self.sw, cid, index, value.packets & _M64, value.bytes & _M64)

    def counter_size(self, name: str) -> int:
        c = self.program.counters.get(name)
        if c is None:
            raise NotFoundError(f"no counter named {name!r}")
        return c[1]

    def _register(self, name: str, index: int) -> tuple[int, int]:
        r = self.program.registers.get(name)
        if r is None:
            raise NotFoundError(f"no register named {name!r}")
        if not 0 <= index < r[2]:
            raise InvalidArgumentError(f"register {name}: index {index} out of range 0..{r[2] - 1}")
        return r[0], r[1]

    def register_read(self, name: str, index: int) -> int:
        rid, _ = self._register(name, index)
        out = self.ffi.new("uint64_t[2]")
        self.lib.sw_reg_read(self.sw, rid, index, out)
        return int(out[0]) | (int(out[1]) << 64)

    def register_write(self, name: str, index: int, value: int) -> None:
        rid, width = self._register(name, index)
        if not 0 <= value < 1 << width:
            raise InvalidArgumentError(f"register {name}: value {value} does not fit in {width} bits")
        self.lib.sw_reg_write(self.sw, rid, index, value & _M64, (value >> 64) & _M64)

    def register_size(self, name: str) -> int:
        r = self.program.registers.get(name)
        if r is None:
            raise NotFoundError(f"no register named {name!r}")
        return r[2]


__all__ = ["NativePipeline", "NativeUnsupported"]
