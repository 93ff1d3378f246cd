"""Differential fuzzer of the softswitch back ends: a program's IR on the Python back end
(the reference) and on the native one, fed the same random control-plane writes and the
same random and mutated frames; every output frame and port, every error of a write, and
at the end the statistics, counters, registers and digests must be identical.

Frames come from a parser-guided generator (it walks the program's parser, builds the
headers it extracts and sets the fields a `select` looks at to a case's value, so deep
states are reached), then are mutated: truncated, bit-flipped, overwritten, extended up
to jumbo size (9,000 bytes), or replaced by random bytes of random length.

`tests/softswitch/test_runtime_differential.py` runs a few thousand frames per program;
`make fuzz` runs this module for a million frames with the native side built with
AddressSanitizer (`python -m tests.softswitch.difffuzz --help`).
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from p4reduce.softswitch.runtime.control import (
    ActionCall,
    CloneSession,
    ControlError,
    CounterValue,
    Exact,
    FieldMatch,
    Lpm,
    OptionalMatch,
    Range,
    Replica,
    TableEntry,
    Ternary,
)
from p4reduce.softswitch.runtime.frame import Ctx, ProgramFrame, width_of

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT / "tests" / "p4" / "good"
JUMBO = 9000
# values that make table keys, select cases and frames meet each other often
POOL = [0, 1, 2, 3, 5, 7, 8, 9, 0x0800, 0x0806, 0x86DD, 0x8100, 0x8847, 0x88B5, 0x1234, 0x9999,
        0x0A000001, 0x0A000002, 0x0A010203, 17, 6, 64, 255]


def programs() -> list[Path]:
    """The corpus: every program of tests/p4/good and the aggregator."""
    return [*sorted(CORPUS.glob("*.p4")), ROOT / "p4src" / "aggregator.p4"]


def uses_randomness(ir: dict[str, Any]) -> bool:
    """Programs whose outputs depend on a random generator (the back ends draw from
    different ones): run for crashes, not compared."""
    text = repr(ir)
    return "'name': 'random'" in text or "'member': 'random'" in text


def _value(rng: random.Random, width: int) -> int:
    full = (1 << width) - 1
    r = rng.random()
    if r < 0.5:
        return rng.choice(POOL) & full
    if r < 0.6:
        return full
    return rng.getrandbits(width)


# ---- frames ---------------------------------------------------------------------------

class FrameGen:
    """Frames that follow the program's parser: each extracted header is random bytes with
    the fields a select looks at set to the value of a randomly chosen case."""

    def __init__(self, ir: dict[str, Any]) -> None:
        self.frame = ProgramFrame(ir)  # type: ignore[arg-type]
        pipe = ir["pipeline"]
        self.parser = ir["parsers"][pipe["parser"]]

    def structured(self, rng: random.Random) -> bytes:
        fr = self.frame
        out = bytearray()
        where: dict[tuple[str, ...], int] = {}  # header path -> byte offset in `out`
        last: dict[tuple[str, ...], tuple[str, ...]] = {}  # stack -> its last element path
        nxt: dict[tuple[str, ...], int] = {}
        state = self.parser.get("start", "start")
        ctx = Ctx(in_parser=True)
        for _ in range(24):
            st = self.parser["states"].get(state)
            if st is None:
                break
            for s in st.get("body", []):
                if s["stmt"] == "extract":
                    target = s["header"]
                    try:
                        if target["op"] == "stack_next":
                            stack = fr.path_key(target["stack"], ctx)
                            i = nxt.get(stack, 0)
                            if i >= len(fr.lay.stacks[stack].elems):
                                break
                            nxt[stack] = i + 1
                            key = (*stack, str(i))
                            last[stack] = key
                        else:
                            key = fr.path_key(target, ctx)
                        h = fr.lay.headers[key]
                    except Exception:
                        continue
                    where[key] = len(out)
                    out += rng.randbytes(h.width // 8)
                elif s["stmt"] == "advance":
                    out += rng.randbytes(rng.choice([0, 1, 2, 4, 8]))
            tr = st.get("transition", {"kind": "direct", "next": "accept"})
            if tr["kind"] == "direct":
                state = tr["next"]
                continue
            cases = tr["cases"]
            if not cases:
                break
            case = rng.choice(cases)
            for k, ks in zip(tr["keys"], case["keysets"], strict=False):
                self._set(out, where, last, k, ks, rng)
            state = case["next"]
            if state in ("accept", "reject"):
                break
        return bytes(out) + rng.randbytes(rng.choice([0, 0, 1, 8, 32, 100]))

    def _set(self, out: bytearray, where: dict[tuple[str, ...], int], last: dict[tuple[str, ...], tuple[str, ...]],
             key: dict[str, Any], ks: dict[str, Any], rng: random.Random) -> None:
        """Make select key `key` take a value of keyset `ks` (only for plain header fields)."""
        if key.get("op") != "field":
            return
        try:
            if "base" in key:
                base = key["base"]
                if base.get("op") != "stack_last":
                    return
                stack = self.frame.path_key(base["stack"], Ctx(in_parser=True))
                hkey = last.get(stack)
                if hkey is None:
                    return
                fname = str(key["path"][-1])
            else:
                path = tuple(str(p) for p in key["path"])
                hkey, fname = path[:-1], path[-1]
            h = self.frame.lay.headers[hkey]
        except Exception:
            return
        if hkey not in where:
            return
        bit = 0
        for f in h.fields:
            if f.name == fname:
                break
            bit += f.width
        else:
            return
        w = width_of(key["type"])
        kind = ks["kind"]
        if kind == "value":
            v = int(ks["value"])
        elif kind == "mask":
            v = (int(ks["value"]) & int(ks["mask"])) | (rng.getrandbits(w) & ~int(ks["mask"]))
        elif kind == "range":
            lo, hi = int(ks["lo"]), int(ks["hi"])
            v = rng.randint(min(lo, hi), max(lo, hi))
        else:
            return
        v &= (1 << w) - 1
        start = where[hkey] * 8 + bit
        total = len(out) * 8
        if start + w > total:
            return
        acc = int.from_bytes(out, "big")
        shift = total - start - w
        acc = (acc & ~(((1 << w) - 1) << shift)) | (v << shift)
        out[:] = acc.to_bytes(len(out), "big")

    def frame_(self, rng: random.Random) -> bytes:
        r = rng.random()
        if r < 0.1:
            return rng.randbytes(rng.randrange(0, 200))
        base = bytearray(self.structured(rng))
        r = rng.random()
        if r < 0.45:
            return bytes(base)
        if r < 0.6 and base:  # truncated: every header boundary and in between
            return bytes(base[: rng.randrange(len(base))])
        if r < 0.8 and base:
            for _ in range(rng.randrange(1, 6)):
                i = rng.randrange(len(base))
                if rng.random() < 0.5:
                    base[i] ^= 1 << rng.randrange(8)
                else:
                    base[i] = rng.choice([0, 0xFF, 0x80, 0x01, rng.getrandbits(8)])
            return bytes(base)
        if r < 0.93:
            return bytes(base) + rng.randbytes(rng.randrange(0, 600))
        return bytes(base) + rng.randbytes(rng.randrange(0, JUMBO - len(base) + 1)) if len(base) < JUMBO else bytes(base)


# ---- control plane ------------------------------------------------------------------------

def _match(rng: random.Random, kind: str, width: int) -> FieldMatch:
    full = (1 << width) - 1
    if kind == "exact":
        return Exact(_value(rng, width))
    if kind == "lpm":
        if rng.random() < 0.1:
            return None
        plen = rng.randint(0, width)
        return Lpm(_value(rng, width) & (full ^ ((1 << (width - plen)) - 1)), plen)
    if kind == "ternary":
        if rng.random() < 0.15:
            return None
        m = rng.choice([full, 0, _value(rng, width), full ^ 0xFF & full])
        return Ternary(_value(rng, width) & m, m)
    if kind == "range":
        if rng.random() < 0.15:
            return None
        a, b = _value(rng, width), _value(rng, width)
        return Range(min(a, b), max(a, b))
    if kind == "optional":
        return None if rng.random() < 0.3 else OptionalMatch(_value(rng, width))
    return Exact(_value(rng, width))


@dataclass
class Ops:
    """Random control-plane operations of one program (applied to both back ends)."""

    ir: dict[str, Any]
    rng: random.Random
    installed: dict[str, list[TableEntry]] = field(default_factory=dict)

    def _call(self, t: dict[str, Any], default: bool) -> ActionCall:
        acts = {a["name"]: a for a in self.ir["actions"]}
        refs = [r for r in t.get("actions", [])
                if r.get("scope", "table_and_default") != ("table_only" if default else "default_only")]
        if not refs:
            refs = t.get("actions", []) or [{"name": "NoAction"}]
        name = self.rng.choice(refs)["name"]
        a = acts.get(name)
        params = [p for p in (a["params"] if a else []) if p.get("dir", "none") == "none"]
        args = tuple(_value(self.rng, int(p["type"].get("width", 1))) for p in params)
        if self.rng.random() < 0.03 and params:  # an argument too wide: both must refuse
            args = (1 << int(params[0]["type"].get("width", 1)), *args[1:])
        return ActionCall(name, args)

    def table_op(self) -> Callable[[Any], Any] | None:
        tables = self.ir.get("tables", [])
        if not tables:
            return None
        t = self.rng.choice(tables)
        name = t["name"]
        keys = t.get("keys", [])
        kinds = {k["match_kind"] for k in keys}
        prio_needed = bool(kinds & {"ternary", "range", "optional"}) or sum(k["match_kind"] == "lpm" for k in keys) > 1
        r = self.rng.random()
        have = self.installed.setdefault(name, [])
        if r < 0.08:
            call = self._call(t, default=True)
            return lambda p: p.table_set_default(name, call)
        if r < 0.1:
            return lambda p: p.table_reset_default(name)
        if have and r < 0.25:
            old = self.rng.choice(have)
            new = TableEntry(old.keys, self._call(t, default=False), old.priority)
            return lambda p: p.table_modify(name, new)
        if have and r < 0.35:
            old = self.rng.choice(have)
            have.remove(old)
            return lambda p: p.table_delete(name, old.keys, old.priority)
        matches = tuple(_match(self.rng, k["match_kind"], width_of(k["expr"]["type"])) for k in keys)
        prio = self.rng.randint(1, 20) if prio_needed else 0
        if self.rng.random() < 0.02:
            prio = 0 if prio_needed else 1  # a wrong priority: both must refuse
        entry = TableEntry(matches, self._call(t, default=False), prio)
        have.append(entry)
        return lambda p: p.table_insert(name, entry)

    def other_op(self) -> Callable[[Any], Any]:
        r = self.rng.random()
        rng = self.rng
        if r < 0.3:
            grp = rng.randint(1, 4)
            reps = tuple(Replica(rng.randint(0, 7), rng.randint(0, 3)) for _ in range(rng.randint(0, 4)))
            return lambda p: p.mc_group_set(grp, reps)
        if r < 0.5:
            sess = rng.randint(1, 5)  # clone_resubmit.p4 clones to session 5
            reps = tuple(Replica(rng.randint(0, 7), rng.randint(0, 3)) for _ in range(rng.randint(0, 3)))
            trunc = rng.choice([0, 0, 20, 64])
            return lambda p: p.clone_session_set(CloneSession(sess, reps, packet_length_bytes=trunc))
        regs = self.ir.get("registers", [])
        if regs and r < 0.8:
            reg = rng.choice(regs)
            idx = rng.randrange(int(reg["size"]) + 1)
            t = reg["type"]
            w = int(t.get("width", 1)) if t["kind"] != "bool" else 1
            v = _value(rng, w)
            return lambda p: p.register_write(reg["name"], idx, v)
        ctrs = self.ir.get("counters", [])
        if ctrs:
            c = rng.choice(ctrs)
            idx = rng.randrange(int(c["size"]) + 1)
            value = CounterValue(rng.randint(0, 9), rng.randint(0, 999))
            return lambda p: p.counter_write(c["name"], idx, value)
        return lambda p: p.mc_groups()


def same_outcome(op: Callable[[Any], Any], pipes: list[Any]) -> None:
    """Run a control operation on every pipeline: all must succeed, or fail alike."""
    results: list[tuple[str, str]] = []
    for p in pipes:
        try:
            op(p)
            results.append(("ok", ""))
        except ControlError as exc:
            results.append((type(exc).__name__, str(exc)))
    assert all(r == results[0] for r in results), f"control operation differs: {results}"


# ---- the aggregator: a configured job and its traffic --------------------------------------

class AggScenario:
    """aggregator.p4 with the test topology's ARP answer, flood group and one job of four
    workers over 8 slots; frames are those workers' contributions (small slot and round
    numbers, so rounds complete, resends and stale rounds happen), mutated like others."""

    JOB = 1

    def __init__(self) -> None:
        from tests.pipeline.packets import agg_frame
        from tests.pipeline.topo import base_entities, hosts, job_entities

        self.ws = hosts(4)
        self.entities = base_entities(8) + job_entities(self.JOB, self.ws, base=0, num_slots=8)
        self.prefix = {w: agg_frame(h, self.JOB, w, 0, 0, [0] * 64)[:42] for w, h in enumerate(self.ws)}

    def setup(self, pipes: list[Any], ir: dict[str, Any]) -> None:
        from tests.pipeline.targets import _DirectInstaller

        for p in pipes:
            _DirectInstaller(p, ir).write(self.entities)

    def frame(self, rng: random.Random) -> tuple[int, bytes]:
        import struct

        from p4reduce.contract import HEADER_FORMAT

        w = rng.randrange(4)
        flags = rng.choice([0, 0, 0, 1, 2])
        hdr = struct.pack(HEADER_FORMAT, flags, self.JOB if rng.random() < 0.95 else rng.randrange(4),
                          w if rng.random() < 0.95 else rng.randrange(8), rng.randrange(10),
                          rng.randrange(4), 0, rng.randrange(-20, 20))
        values = bytes(rng.getrandbits(8) for _ in range(256)) if rng.random() < 0.2 else rng.randbytes(256)
        return self.ws[w].port, self.prefix[w] + hdr + values


# ---- one program ---------------------------------------------------------------------------

def state_of(p: Any, ir: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """What must agree at the end: statistics, counters, registers, entries, digests."""
    out: dict[str, Any] = {"stats": p.stats}
    for c in ir.get("counters", []):
        size = int(c["size"])
        idx = sorted(set(range(min(size, 64))) | {size - 1})
        out[c["name"]] = [p.counter_read(c["name"], i) for i in idx]
    for r in ir.get("registers", []):
        size = int(r["size"])
        idx = sorted(set(range(min(size, 32))) | {size - 1})
        out[r["name"]] = [p.register_read(r["name"], i) for i in idx]
    for t in ir.get("tables", []):
        out[t["name"]] = sorted(map(repr, p.table_entries(t["name"])))
        if t.get("direct_counter"):
            out[t["name"] + "/counters"] = sorted(
                repr(p.direct_counter_read(t["name"], e.keys, e.priority)) for e in p.table_entries(t["name"]))
    out["digests"] = p.take_digests()
    return out


@dataclass
class Result:
    program: str
    frames: int = 0
    outputs: int = 0
    compared: bool = True
    seconds: float = 0.0
    skipped: str = ""


def run_program(ir: dict[str, Any], name: str, frames: int, seed: int, make_native: Callable[[dict[str, Any]], Any],
                batch: int = 256) -> Result:
    """Fuzz one program; raises AssertionError at the first difference (with what differs)."""
    from p4reduce.softswitch.runtime.errors import PipelineError
    from p4reduce.softswitch.runtime.pipeline import Pipeline

    start = time.perf_counter()
    rng = random.Random(seed)
    try:
        ref = Pipeline(ir, seed=seed)  # type: ignore[arg-type]
    except PipelineError as exc:  # the reference refuses it: nothing to compare
        return Result(name, compared=False, skipped=str(exc))
    nat = make_native(ir)
    pipes = [ref, nat]
    compare = not uses_randomness(ir)
    ops = Ops(ir, rng)
    gen = FrameGen(ir)
    res = Result(name, compared=compare)
    agg = AggScenario() if name == "aggregator.p4" else None
    if agg is not None:
        agg.setup(pipes, ir)
    for _ in range(rng.randint(3, 40)):
        op = ops.table_op() or ops.other_op()
        same_outcome(op, pipes)
    done = 0
    while done < frames:
        n = min(batch, frames - done)
        chunk = [agg.frame(rng) if agg is not None and rng.random() < 0.8 else (rng.randrange(0, 8), gen.frame_(rng))
                 for _ in range(n)]
        got = nat.process_batch(chunk)
        if compare:
            for (port, frame), out in zip(chunk, got, strict=True):
                want = ref.process(port, frame)
                if out != want:
                    raise AssertionError(f"{name}: frame {frame.hex()} on port {port}: native {out} != python {want}")
        res.outputs += sum(len(o) for o in got)
        done += n
        for _ in range(rng.randint(0, 3)):  # the control plane keeps changing between batches
            op = ops.table_op() if rng.random() < 0.7 else ops.other_op()
            same_outcome(op or ops.other_op(), pipes)
    res.frames = done
    if compare:
        a, b = state_of(ref, ir, rng), state_of(nat, ir, rng)
        for key in a:
            assert a[key] == b[key], f"{name}: {key} differs: python {a[key]} != native {b[key]}"
    res.seconds = time.perf_counter() - start
    return res


def corpus_irs() -> Iterator[tuple[str, dict[str, Any]]]:
    from p4reduce.softswitch.p4 import compile_file

    for path in programs():
        yield path.name, compile_file(str(path))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.softswitch.difffuzz", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=1_000_000, help="frames in total, spread over the corpus")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--asan", action="store_true",
                    help="build the native side with AddressSanitizer (needs LD_PRELOAD of libasan; make fuzz does it)")
    args = ap.parse_args(argv)
    from p4reduce.softswitch.runtime.errors import PipelineError
    from p4reduce.softswitch.runtime.native.pipeline import NativePipeline
    from p4reduce.softswitch.runtime.pipeline import Pipeline

    irs = list(corpus_irs())
    runnable = []
    for name, ir in irs:
        try:
            Pipeline(ir)  # type: ignore[arg-type]
        except PipelineError as exc:
            print(f"{name}: skipped: the Python back end refuses it: {exc}", flush=True)
            continue
        runnable.append((name, ir))
    per = -(-args.frames // len(runnable))  # at least --frames in total
    total = 0
    start = time.perf_counter()
    for i, (name, ir) in enumerate(runnable):
        res = run_program(ir, name, per, args.seed + i,
                          lambda ir: NativePipeline(ir, sanitize=args.asan))  # type: ignore[arg-type]
        total += res.frames
        note = "" if res.compared else " (random numbers: not compared, crash check only)"
        print(f"[{i + 1}/{len(runnable)}] {name}: {res.frames} frames, {res.outputs} out, {res.seconds:.1f} s{note}",
              flush=True)
    print(f"difffuzz: {total} frames over {len(runnable)} programs, no difference, no crash "
          f"({time.perf_counter() - start:.0f} s{', AddressSanitizer' if args.asan else ''})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
