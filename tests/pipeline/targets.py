"""Targets a case runs on. Both install through P4Runtime (tests.pipeline.p4rt) so the
control path is the same; they differ only in how frames get in and out. softswitch runs
every case on both of its back ends at once and checks they agree frame by frame."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

from tests.pipeline.case import Case, DefaultAction, Entity, Group, mismatch
from tests.pipeline.p4rt import P4RuntimeClient

ROOT = Path(__file__).resolve().parents[2]
P4_MAIN = ROOT / "p4src" / "aggregator.p4"


class Target(Protocol):
    def install(self, entities: Sequence[Entity], *, modify: bool = False) -> None: ...
    # `expected` (how many frames should come out) lets targets on real interfaces stop
    # waiting early; they still collect any extra frame that follows.
    def send(self, port: int, frame: bytes, expected: int = 0) -> list[tuple[int, bytes]]: ...
    def counter(self, name: str, index: int) -> tuple[int, int]: ...
    def close(self) -> None: ...


@functools.lru_cache(maxsize=8)
def _compile(defines: tuple[tuple[str, str], ...]) -> str:
    from p4reduce.softswitch.p4 import compile_file

    return json.dumps(compile_file(P4_MAIN, dict(defines)))


def compile_ir(**defines: int) -> dict[str, Any]:
    """The program's IR for these -D values (cached: compiling is the slow part)."""
    result: dict[str, Any] = json.loads(_compile(tuple(sorted((k, str(v)) for k, v in defines.items()))))
    return result


def p4info_of(ir: dict[str, Any]) -> Any:
    from p4reduce.softswitch.p4.p4info import emit

    return emit(ir)


class _TestDevice:
    """The device half the P4Runtime server drives; the test reaches the pipeline it loads
    directly for packet I/O (no ports, no threads)."""

    device_id = 1
    cpu_port: int | None = None

    def __init__(self) -> None:
        self.pipe: Any = None

    def set_pipeline(self, pipe: Any) -> None:
        self.pipe = pipe

    def inject(self, number: int, frame: bytes) -> None:
        raise NotImplementedError("packet-out is not used by the pipeline tests")

    def set_cpu_sink(self, callback: Callable[[bytes], None] | None) -> None:
        return None


class _DirectInstaller:
    """Installs through the runtime's control surface (softswitch/runtime/control.py),
    bypassing P4Runtime: only for debugging the program while the server path is broken."""

    def __init__(self, pipe: Any, ir: dict[str, Any]) -> None:
        self.pipe = pipe
        self.keys = {t["name"]: [k["name"] for k in t["keys"]] for t in ir["tables"]}
        self.params = {a["name"]: [p["name"] for p in a["params"]] for a in ir["actions"]}

    def write(self, entities: Sequence[Entity], *, modify: bool = False) -> None:
        from p4reduce.softswitch.runtime.control import ActionCall, Exact, Replica, TableEntry

        for e in entities:
            if isinstance(e, Group):
                self.pipe.mc_group_set(e.group_id, tuple(Replica(p, r) for p, r in e.replicas))
                continue
            call = ActionCall(e.action, tuple(e.params[p] for p in self.params[e.action]))
            if isinstance(e, DefaultAction):
                self.pipe.table_set_default(e.table, call)
                continue
            entry = TableEntry(tuple(Exact(e.match[k]) for k in self.keys[e.table]), call)
            if modify:
                self.pipe.table_modify(e.table, entry)
            else:
                self.pipe.table_insert(e.table, entry)

    def counter(self, name: str, index: int) -> tuple[int, int]:
        value = self.pipe.counter_read(name, index)
        return int(value.packets), int(value.bytes)

    def close(self) -> None:
        return None


class _Softswitch:
    """softswitch in-process on one back end: entities go over real gRPC to its P4Runtime
    server, frames straight into the pipeline's `process`. `install="direct"` skips
    P4Runtime (debugging only)."""

    def __init__(self, backend: str, install: str = "p4runtime", **defines: int) -> None:
        from tests.support.backends import make

        self.ir = compile_ir(**defines)
        if install == "direct":
            self.pipe = make(self.ir, backend)
            self.client: Any = _DirectInstaller(self.pipe, self.ir)
            self.server: Any = None
            return
        from p4reduce.softswitch.p4runtime import serve
        from p4reduce.softswitch.runtime.backend import make_pipeline
        from tests.support.backends import skip_unless_available

        skip_unless_available(backend)
        self.p4info = p4info_of(self.ir)
        self.device = _TestDevice()
        self.server = serve(self.device, "127.0.0.1:0", factory=lambda ir: make_pipeline(ir, backend))  # type: ignore[arg-type]
        try:
            self.client = P4RuntimeClient(self.server.address, self.p4info)
            self.client.set_pipeline(json.dumps(self.ir).encode())
        except BaseException:
            self.server.stop()
            raise
        assert self.device.pipe is not None, "SetForwardingPipelineConfig loaded no pipeline"
        assert self.device.pipe.backend == backend, f"asked for {backend}, got {self.device.pipe.backend}"
        self.pipe = self.device.pipe

    def close(self) -> None:
        self.client.close()
        if self.server is not None:
            self.server.stop()


class SoftswitchTarget:
    """softswitch in-process. With `backend="both"` (the default) every case runs on the
    Python and the native back end side by side: each frame's outputs and each counter
    must be identical on both (the native side is left out, not faked, where no C
    compiler exists). `pipe` is the first back end's pipeline."""

    def __init__(self, install: str = "p4runtime", backend: str = "both", **defines: int) -> None:
        from tests.support.backends import native_unavailable

        names = ["python", "native"] if backend == "both" else [backend]
        if backend == "both" and native_unavailable() is not None:
            names = ["python"]
        self.sides: list[_Softswitch] = []
        try:
            for name in names:
                self.sides.append(_Softswitch(name, install, **defines))
        except BaseException:
            self.close()
            raise
        self.ir = self.sides[0].ir
        self.pipe = self.sides[0].pipe
        self.client = self.sides[0].client

    def install(self, entities: Sequence[Entity], *, modify: bool = False) -> None:
        for side in self.sides:
            side.client.write(entities, modify=modify)

    def send(self, port: int, frame: bytes, expected: int = 0) -> list[tuple[int, bytes]]:
        outs = [[(p, bytes(f)) for p, f in side.pipe.process(port, frame)] for side in self.sides]
        for side, out in zip(self.sides[1:], outs[1:], strict=True):
            assert out == outs[0], (f"{side.pipe.backend} back end differs from {self.sides[0].pipe.backend}: "
                                    f"{out} != {outs[0]}")
        return outs[0]

    def counter(self, name: str, index: int) -> tuple[int, int]:
        values = [side.client.counter(name, index) for side in self.sides]
        for v in values[1:]:
            assert v == values[0], f"counter {name}[{index}] differs between back ends: {values}"
        packets, octets = values[0]
        return int(packets), int(octets)

    def close(self) -> None:
        for side in self.sides:
            side.close()


def run_case(target: Target, case: Case) -> None:
    """Install, send every frame checking its outputs, then check the counters."""
    target.install(case.entities)
    for n, step in enumerate(case.steps):
        problem = mismatch(step, target.send(step.port, step.frame, len(step.expect)))
        if problem is not None:
            raise AssertionError(f"{case.name}, step {n}: {problem}")
    for (name, index), packets in case.counters.items():
        got, _ = target.counter(name, index)
        assert got == packets, f"{case.name}: {name}[{index}] = {got}, expected {packets}"
