"""A running v1model pipeline: the generated code plus BMv2's traffic manager around it.

The order of events after ingress and egress follows BMv2 `simple_switch`: ingress clone,
digest, resubmit, multicast, drop, unicast; in egress the E2E clone, the drop check on
egress_spec, deparsing, recirculation. Everything for one input frame (replicas, clones,
resubmissions, recirculations) is finished before `process` returns.
"""

from __future__ import annotations

import contextlib
import logging
import random
import threading
from collections import deque
from collections.abc import Sequence
from typing import Any

import numpy as np

from p4reduce.softswitch.p4.ir import Action, Program
from p4reduce.softswitch.p4.ir import Table as IRTable
from p4reduce.softswitch.runtime import hashing
from p4reduce.softswitch.runtime.batch import FrameBatch
from p4reduce.softswitch.runtime.codegen import Codegen, Generated
from p4reduce.softswitch.runtime.control import (
    CloneSession,
    CounterValue,
    DigestMessage,
    InvalidArgumentError,
    NotFoundError,
    Replica,
)
from p4reduce.softswitch.runtime.errors import PipelineError
from p4reduce.softswitch.runtime.frame import (
    DROP_PORT,
    EGRESS_CLONE,
    INGRESS_CLONE,
    RECIRC,
    REPLICATION,
    RESUBMIT,
    ProgramFrame,
)
from p4reduce.softswitch.runtime.runs import packable, packed_conflicts, plan_runs, trimmable
from p4reduce.softswitch.runtime.surface import SharedSurface
from p4reduce.softswitch.runtime.table_setup import build_table
from p4reduce.softswitch.runtime.tables import PyIndex, Table
from p4reduce.softswitch.runtime.unsupported import refuse_unexecutable
from p4reduce.softswitch.runtime.vectorize import VectorPlan, emit_runs

log = logging.getLogger("p4reduce.softswitch.runtime")
p4log = logging.getLogger("p4reduce.softswitch.runtime.p4")

MAX_PASSES = 64  # resubmits + recirculations per input frame (BMv2 has no limit; a loop would hang)
MAX_EGRESS = 4096  # copies per input frame


class _PErr(Exception):
    def __init__(self, code: int, off: int) -> None:
        self.code = code
        self.off = off


class _Exit(Exception):
    pass


def _sx(v: int, w: int) -> int:
    return v - (1 << w) if v >> (w - 1) else v


def _shl(a: int, b: int, w: int) -> int:
    return (a << b) & ((1 << w) - 1) if b < w else 0


def _div(a: int, b: int) -> int:
    return a // b if b else 0


def _mod(a: int, b: int) -> int:
    return a % b if b else 0


def _sat(a: int, b: int, w: int, sign: int) -> int:
    r = _sx(a, w) + sign * _sx(b, w)
    lo, hi = -(1 << (w - 1)), (1 << (w - 1)) - 1
    return max(lo, min(hi, r)) & ((1 << w) - 1)


def _la(data: bytes, off: int, length: int, w: int, too_short: int) -> int:
    n = (w + 7) // 8
    if off + n > length:
        raise _PErr(too_short, off)
    return int.from_bytes(data[off : off + n], "big") >> (n * 8 - w)


def _last_index(next_index: int, off: int, out_of_bounds: int) -> int:
    if next_index == 0:
        raise _PErr(out_of_bounds, off)  # `last` of an empty stack
    return next_index - 1


def _reject(S: list[Any], data: bytes, off: int, length: int) -> tuple[Any, int]:
    raise _PErr(0, off)


def _log_msg(fmt: str, values: tuple[int, ...]) -> None:
    text = fmt
    for v in values:
        text = text.replace("{}", str(v), 1)
    p4log.info("%s", text)


def _log_assert(kind: str) -> None:
    log.error("P4 %s failed; packet processing continues", kind)


def _build(ir: Program, vectorize: bool, pack: bool) -> tuple[VectorPlan, Generated]:
    """The program's code. With vectorisation, lane runs execute as numpy operations
    (`runs.py` decides which, `vectorize.py` writes them); the slots of actions nothing
    can call any more (lane actions replaced by runs: 2 K locals in the aggregator) are
    laid out last and cut off the packet template, which every packet and every
    multicast replica copies. With packing, the header fields of a lane run are one numpy
    array per packet, unless scalar code touches one of them."""
    registers = {r["name"]: r for r in ir.get("registers", [])}
    if not vectorize:
        plan = VectorPlan(registers)
        return plan, _generate(ir, plan, frozenset())
    first = plan_runs(ir, ProgramFrame(ir))
    dead = frozenset(a["name"] for a in ir.get("actions", []) if a["name"] not in first.live_actions)
    frame = ProgramFrame(ir, late=dead)
    runplan = plan_runs(ir, frame) if dead else first
    packed: dict[int, tuple[int, int]] = {}
    if pack:
        packed = packable(frame.lay, runplan, frame.field_lists)
        if packed and packed_conflicts(ir, frame, runplan, packed):
            packed = {}
    plan = VectorPlan(registers, runplan, packed)
    g = _generate(ir, plan, dead)
    if dead and trimmable(ir, frame, runplan):
        del g.layout.init[g.late_start:]
    return plan, g


def _generate(ir: Program, plan: VectorPlan, late: frozenset[str]) -> Generated:
    gen = Codegen(ir, plan, late)
    gen.packed = plan.packed
    for a, (b, w) in plan.packed.items():
        gen.ns[f"_PK{a}"] = a
        gen.ns[f"_be{w}"] = np.dtype(f">u{w // 8}")
        # the template array is shared by every packet: packed arrays are never written in
        # place, only replaced
        gen.lay.init[a] = np.zeros(b - a, dtype=f"u{w // 8}")
    emit_runs(gen, plan)
    plan.allocate()
    return gen.generate()


class Pipeline(SharedSurface):
    """One compiled P4 program with its tables, externs and replication state."""

    backend = "python"

    def __init__(
        self, ir: Program, *, seed: int | None = None, vectorize: bool = True, pack: bool = True
    ) -> None:
        """`vectorize` runs same-shaped lane statements as numpy operations; `pack` (which
        needs it) also keeps the header fields those runs use as one array per packet.
        Both only exist to be switched off by tests comparing against the plain code."""
        if not isinstance(ir, dict):
            raise PipelineError("the IR must be a JSON object")
        self.ir = ir
        refuse_unexecutable(ir)
        try:
            plan, g = _build(ir, vectorize, pack)
        except PipelineError:
            raise
        except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
            raise PipelineError(f"malformed IR: {type(exc).__name__}: {exc}") from exc
        self.generated: Generated = g
        self.source = g.source
        self.plan = plan
        self._lock = threading.RLock()
        self._rng = random.Random(seed)
        self._digests: list[DigestMessage] = []
        self._mc: dict[int, tuple[Replica, ...]] = {}
        self._clones: dict[int, CloneSession] = {}
        self._n_in = self._n_out = self._n_drop = self._n_perr = 0
        self._counters: dict[str, tuple[list[int], list[int]]] = {}
        ns: dict[str, Any] = dict(g.namespace)
        ns.update(plan.namespace())
        for i, c in enumerate(ir.get("counters", [])):
            cp, cb = [0] * int(c["size"]), [0] * int(c["size"])
            self._counters[c["name"]] = (cp, cb)
            ns[f"_CP{i}"], ns[f"_CB{i}"] = cp, cb
        ns.update(
            _PErr=_PErr, _EXIT=_Exit(), _sx=_sx, _shl=_shl, _div=_div, _mod=_mod, _sat=_sat,
            _la=_la, _last_index=_last_index, _reject=_reject, _ExitE=_Exit, _INIT=g.layout.init, _log_msg=_log_msg, _log_assert=_log_assert,
            _Digest=DigestMessage, _pack_valid=hashing.pack_valid, _rng=self._rng,
            _hash_random=lambda data: self._rng.getrandbits(32),
        )
        for name, fn in hashing.ALGORITHMS.items():
            ns[f"_H_{name}"] = fn
        try:
            code = compile(g.source, f"<softswitch:{ir.get('source', 'program')}>", "exec")
        except SyntaxError as exc:  # a bug of the code generator, not of the user's program
            raise PipelineError(f"internal error generating code: {exc}") from exc
        exec(code, ns)
        self._ns = ns
        self._tables: dict[str, Table] = {}
        actions = {a["name"]: a for a in ir.get("actions", [])}
        for t in ir.get("tables", []):
            self._tables[t["name"]] = self._make_table(t, actions, ns, g)
        self._parse = ns["_parse"]
        self._fast = ns["_fast"]
        self._verify = ns["_ctl_verify_checksum"]
        self._ingress = ns["_ctl_ingress"]
        self._egress_pass = ns["_egress_pass"]
        self._compute = ns["_ctl_compute_checksum"]
        self._deparse = ns["_ctl_deparser"]
        self._init = g.layout.init
        self._std = g.std
        self._header_ranges = [(h.start, h.end) for h in g.layout.headers.values()]

    def _make_table(
        self, t: IRTable, actions: dict[str, Action], ns: dict[str, Any], g: Generated
    ) -> Table:
        cell: list[Any] = [None, None]
        ns[f"_TC{g.tables[t['name']]}"] = cell

        def fn(name: str) -> Any:
            return ns[g.action_fns[name]]

        return build_table(t, actions, lambda keys: PyIndex(keys, cell), fn)

    # ---- packets ---------------------------------------------------------------------
    @property
    def stats(self) -> dict[str, int]:
        return {"packets_in": self._n_in, "packets_out": self._n_out, "dropped": self._n_drop,
                "parser_errors": self._n_perr}

    def process(self, port: int, frame: bytes) -> list[tuple[int, bytes]]:
        """Run one frame through the switch; returns every frame it sends, in order."""
        if type(frame) is not bytes:
            frame = bytes(frame)
        if not 0 <= port < 512:
            raise ValueError(f"ingress port {port} out of range 0..511")
        with self._lock:
            self._n_in += 1
            try:
                return self._process(port, frame)
            except Exception:  # a runtime defect must cost one packet, not the switch
                self._n_drop += 1
                log.exception("internal error processing a %d-byte frame from port %d", len(frame), port)
                return []

    def process_batch(self, frames: Sequence[tuple[int, bytes]]) -> list[list[tuple[int, bytes]]]:
        """The outputs of each frame, in order (the native back end's batch API)."""
        return [self.process(port, frame) for port, frame in frames]

    def run_batch(self, batch: FrameBatch, times: int = 1) -> int:
        """The frames of `batch` `times` over; the number of frames sent (benchmarks)."""
        n = 0
        process = self.process
        for _ in range(times):
            for port, frame in batch.frames:
                n += len(process(port, frame))
        return n

    def _process(self, port: int, frame: bytes) -> list[tuple[int, bytes]]:
        kind, a, b, failed = self._fast(port, frame)
        if failed:
            self._n_perr += 1
        if kind == 0:
            self._n_out += 1
            return [(a, b)]
        if kind == 3:
            self._n_drop += 1
            return []
        out: list[tuple[int, bytes]] = []
        work: deque[tuple[int, bytes, int, list[tuple[int, Any]] | None]] = deque()
        if kind == 1:
            self._after_ingress(a, port, frame, b, out, work)
        else:
            rest: deque[tuple[list[Any], bytes]] = deque()
            self._post_egress(a, b, rest, out, work)
            self._run_egress(list(rest), out, work)
        passes = 1
        while work and passes < MAX_PASSES:
            passes += 1
            p, data, itype, preserved = work.popleft()
            self._one_pass(p, data, itype, preserved, out, work)
        self._n_out += len(out)
        return out

    def _one_pass(
        self,
        port: int,
        frame: bytes,
        itype: int,
        preserved: list[tuple[int, Any]] | None,
        out: list[tuple[int, bytes]],
        work: deque[tuple[int, bytes, int, list[tuple[int, Any]] | None]],
    ) -> None:
        std = self._std
        ist = self.generated.internal
        S = self._init[:]
        S[std["ingress_port"]] = port
        S[std["packet_length"]] = len(frame)
        S[std["instance_type"]] = itype
        if preserved:
            for slot, value in preserved:
                S[slot] = value
        off, failed = self._parse(S, frame)
        if failed:
            self._n_perr += 1
        payload = frame[off:]
        S[ist.payload] = payload
        with contextlib.suppress(_Exit):
            self._verify(S)
        with contextlib.suppress(_Exit):
            self._ingress(S)
        self._after_ingress(S, port, frame, payload, out, work)

    def _after_ingress(
        self,
        S: list[Any],
        port: int,
        frame: bytes,
        payload: bytes,
        out: list[tuple[int, bytes]],
        work: deque[tuple[int, bytes, int, list[tuple[int, Any]] | None]],
    ) -> None:
        std = self._std
        ist = self.generated.internal
        jobs: list[tuple[list[Any], bytes]] = []
        clone = S[ist.clone]
        if clone is not None and clone[0] == 0:  # I2E
            jobs.extend(self._clone_copies(S, clone, INGRESS_CLONE, frame, payload))
        digests = S[ist.digests]
        if digests:
            self._digests.extend(digests)
        if S[ist.resubmit] is not None:
            work.append((port, frame, RESUBMIT, self._preserve(S, S[ist.resubmit][0])))
            self._run_egress(jobs, out, work)
            return
        mgrp = S[std["mcast_grp"]] if "mcast_grp" in std else 0
        if mgrp:
            reps = self._mc.get(mgrp, ())
            rid = std.get("egress_rid")
            ep, it = std["egress_port"], std["instance_type"]
            for r in reps:
                c = S[:]  # packed header arrays are shared: nobody writes them in place
                c[ep] = r.egress_port
                if rid is not None:
                    c[rid] = r.instance
                c[it] = REPLICATION
                jobs.append((c, payload))
            if not reps:
                self._n_drop += 1
        elif S[std["egress_spec"]] == DROP_PORT:
            self._n_drop += 1
        else:
            S[std["egress_port"]] = S[std["egress_spec"]]
            jobs.append((S, payload))
        self._run_egress(jobs, out, work)

    def _preserve(self, S: list[Any], index: int | None) -> list[tuple[int, Any]]:
        if index is None:
            return []
        return [(slot, S[slot]) for slot in self.generated.field_lists.get(index, [])]

    def _clone_copies(
        self, S: list[Any], clone: tuple[int, int, int | None], itype: int, frame: bytes | None,
        payload: bytes,
    ) -> list[tuple[list[Any], bytes]]:
        """Copies for a clone session. An ingress clone is the received frame parsed again
        with fresh metadata (BMv2 re-parses rather than copying the PHV); an egress clone
        keeps the headers as egress left them. Both keep the preserved fields."""
        session = self._clones.get(clone[1])
        if session is None:
            return []
        std = self._std
        copies = []
        for r in session.replicas:
            c = self._init[:]
            data = payload
            if frame is not None:
                c[std["ingress_port"]] = S[std["ingress_port"]]
                off, _ = self._parse(c, frame)
                data = frame[off:]
            else:
                for a, b in self._header_ranges:
                    c[a:b] = S[a:b]
            for slot, value in self._preserve(S, clone[2]):
                c[slot] = value
            c[std["instance_type"]] = itype
            c[std["egress_port"]] = r.egress_port
            c[std["ingress_port"]] = S[std["ingress_port"]]
            c[std["packet_length"]] = S[std["packet_length"]]
            if "egress_rid" in std:
                c[std["egress_rid"]] = r.instance
            if session.packet_length_bytes:
                c[self.generated.internal.truncate] = session.packet_length_bytes
            copies.append((c, data))
        return copies

    def _run_egress(
        self,
        jobs: list[tuple[list[Any], bytes]],
        out: list[tuple[int, bytes]],
        work: deque[tuple[int, bytes, int, list[tuple[int, Any]] | None]],
    ) -> None:
        queue = deque(jobs)
        done = 0
        egress_pass = self._egress_pass
        ep = self._std["egress_port"]
        while queue and done < MAX_EGRESS:
            done += 1
            S, payload = queue.popleft()
            kind, data = egress_pass(S, payload)
            if kind == 0:
                out.append((S[ep], data))
            elif kind == 3:
                self._n_drop += 1
            else:  # an egress clone, recirculation or truncation: the general steps
                self._post_egress(S, payload, queue, out, work)

    def _post_egress(
        self,
        S: list[Any],
        payload: bytes,
        queue: deque[tuple[list[Any], bytes]],
        out: list[tuple[int, bytes]],
        work: deque[tuple[int, bytes, int, list[tuple[int, Any]] | None]],
    ) -> None:
        std = self._std
        ist = self.generated.internal
        clone = S[ist.clone]
        if clone is not None and clone[0] == 1:  # E2E
            queue.extend(self._clone_copies(S, clone, EGRESS_CLONE, None, payload))
        if S[std["egress_spec"]] == DROP_PORT:
            self._n_drop += 1
            return
        with contextlib.suppress(_Exit):
            self._compute(S)
        data = self._deparse(S) + payload
        trunc = S[ist.truncate]
        if trunc:
            data = data[:trunc]
        if S[ist.recirc] is not None:
            work.append((S[std["ingress_port"]], data, RECIRC, self._preserve(S, S[ist.recirc][0])))
        else:
            out.append((S[std["egress_port"]], data))

    def take_digests(self) -> list[DigestMessage]:
        with self._lock:
            d, self._digests = self._digests, []
        return d

    # ---- control surface: replication (tables and the reads: surface.SharedSurface) ----
    def mc_group_set(self, group: int, replicas: tuple[Replica, ...]) -> None:
        if not 0 < group < 1 << 16:
            raise InvalidArgumentError(f"multicast group id {group} out of range 1..65535")
        with self._lock:
            self._mc[group] = tuple(replicas)

    def mc_group_delete(self, group: int) -> None:
        with self._lock:
            if group not in self._mc:
                raise NotFoundError(f"no multicast group {group}")
            del self._mc[group]

    def clone_session_set(self, session: CloneSession) -> None:
        if not 0 < session.session_id < 1 << 15:
            raise InvalidArgumentError(f"clone session id {session.session_id} out of range")
        with self._lock:
            self._clones[session.session_id] = session

    def clone_session_delete(self, session_id: int) -> None:
        with self._lock:
            if session_id not in self._clones:
                raise NotFoundError(f"no clone session {session_id}")
            del self._clones[session_id]

    # ---- control surface: indexed externs ------------------------------------------------
    def _counter(self, name: str, index: int) -> tuple[list[int], list[int]]:
        c = self._counters.get(name)
        if c is None:
            raise NotFoundError(f"no counter named {name!r}")
        if not 0 <= index < len(c[0]):
            raise InvalidArgumentError(f"counter {name}: index {index} out of range 0..{len(c[0]) - 1}")
        return c

    def counter_read(self, name: str, index: int) -> CounterValue:
        with self._lock:
            cp, cb = self._counter(name, index)
            return CounterValue(packets=cp[index], bytes=cb[index])

    def counter_write(self, name: str, index: int, value: CounterValue) -> None:
        with self._lock:
            cp, cb = self._counter(name, index)
            cp[index], cb[index] = value.packets, value.bytes

    def counter_size(self, name: str) -> int:
        c = self._counters.get(name)
        if c is None:
            raise NotFoundError(f"no counter named {name!r}")
        return len(c[0])

    def _register(self, name: str, index: int) -> Any:
        arr = self.plan.arrays.get(name)
        if arr is None:
            raise NotFoundError(f"no register named {name!r}")
        if not 0 <= index < len(arr):
            raise InvalidArgumentError(f"register {name}: index {index} out of range 0..{len(arr) - 1}")
        return arr

    def register_read(self, name: str, index: int) -> int:
        with self._lock:
            return int(self._register(name, index)[index])

    def register_write(self, name: str, index: int, value: int) -> None:
        with self._lock:
            arr = self._register(name, index)
            t = self.plan.registers[name]["type"]
            width = int(t.get("width", 1))
            if not 0 <= value < 1 << width:
                raise InvalidArgumentError(f"register {name}: value {value} does not fit in {width} bits")
            arr[index] = value

    def register_size(self, name: str) -> int:
        arr = self.plan.arrays.get(name)
        if arr is None:
            raise NotFoundError(f"no register named {name!r}")
        return len(arr)
