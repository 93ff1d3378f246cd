"""Targets a case runs on. Both install through P4Runtime (tests.pipeline.p4rt) so the
control path is the same; they differ only in how frames get in and out."""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

from pipeline.case import Case, DefaultAction, Entity, Group, mismatch
from pipeline.p4rt import P4RuntimeClient

ROOT = Path(__file__).resolve().parents[2]
P4_MAIN = ROOT / "p4src" / "aggregator.p4"


class Target(Protocol):
    def install(self, entities: Sequence[Entity], *, modify: bool = False) -> None: ...
    def send(self, port: int, frame: bytes) -> list[tuple[int, bytes]]: ...
    def counter(self, name: str, index: int) -> tuple[int, int]: ...
    def close(self) -> None: ...


@functools.lru_cache(maxsize=8)
def _compile(defines: tuple[tuple[str, str], ...]) -> str:
    from softswitch.p4 import compile_file

    return json.dumps(compile_file(P4_MAIN, dict(defines)))


def compile_ir(**defines: int) -> dict[str, Any]:
    """The program's IR for these -D values (cached: compiling is the slow part)."""
    result: dict[str, Any] = json.loads(_compile(tuple(sorted((k, str(v)) for k, v in defines.items()))))
    return result


def p4info_of(ir: dict[str, Any]) -> Any:
    from softswitch.p4.p4info import emit

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
        from softswitch.runtime.control import ActionCall, Exact, Replica, TableEntry

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


class SoftswitchTarget:
    """softswitch in-process: entities go over real gRPC to its P4Runtime server, frames
    straight into `Pipeline.process`. `install="direct"` skips P4Runtime (debugging only)."""

    def __init__(self, install: str = "p4runtime", **defines: int) -> None:
        self.ir = compile_ir(**defines)
        if install == "direct":
            from softswitch.runtime import Pipeline

            self.pipe = Pipeline(self.ir)
            self.client: Any = _DirectInstaller(self.pipe, self.ir)
            self.server: Any = None
            return
        from softswitch.p4runtime import serve

        self.p4info = p4info_of(self.ir)
        self.device = _TestDevice()
        self.server = serve(self.device, "127.0.0.1:0")
        try:
            self.client = P4RuntimeClient(self.server.address, self.p4info)
            self.client.set_pipeline(json.dumps(self.ir).encode())
        except BaseException:
            self.server.stop()
            raise
        assert self.device.pipe is not None, "SetForwardingPipelineConfig loaded no pipeline"
        self.pipe = self.device.pipe

    def install(self, entities: Sequence[Entity], *, modify: bool = False) -> None:
        self.client.write(entities, modify=modify)

    def send(self, port: int, frame: bytes) -> list[tuple[int, bytes]]:
        return [(p, bytes(f)) for p, f in self.pipe.process(port, frame)]

    def counter(self, name: str, index: int) -> tuple[int, int]:
        packets, octets = self.client.counter(name, index)
        return int(packets), int(octets)

    def close(self) -> None:
        self.client.close()
        if self.server is not None:
            self.server.stop()


def bmv2_unavailable() -> str | None:
    """Why the BMv2 target cannot run here, or None."""
    missing = [tool for tool in ("p4c", "simple_switch_grpc", "ip") if shutil.which(tool) is None]
    if missing:
        return f"BMv2 tests need {', '.join(missing)} on PATH"
    if os.geteuid() != 0:
        return "BMv2 tests need root (veth pairs in a network namespace)"
    return None


class Bmv2Target:
    """simple_switch_grpc compiled by p4c, its ports veth pairs whose far ends live in a
    network namespace this target creates; frames go in and out with raw sockets."""

    WAIT = 0.3  # seconds of silence after which a port has no more output

    def __init__(self, ports: Sequence[int], **defines: int) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="p4reduce-bmv2-"))
        self.ns = f"p4rt{os.getpid()}"
        args = ["p4c", "--target", "bmv2", "--arch", "v1model", "-o", str(self.tmp),
                "--p4runtime-files", str(self.tmp / "p4info.txtpb")]
        args += [f"-D{k}={v}" for k, v in defines.items()]
        subprocess.run([*args, str(P4_MAIN)], check=True, capture_output=True, timeout=300)
        from finsy.proto import p4i
        from google.protobuf import text_format  # type: ignore[import-untyped]

        self.p4info = text_format.Parse((self.tmp / "p4info.txtpb").read_text(), p4i.P4Info())
        self.ports = list(ports)
        subprocess.run(["ip", "netns", "add", self.ns], check=True)
        self.proc: subprocess.Popen[bytes] | None = None
        try:
            ifaces = []
            for p in self.ports:
                subprocess.run(["ip", "link", "add", f"sw{p}", "type", "veth", "peer", "name",
                                f"h{p}", "netns", self.ns], check=True)
                subprocess.run(["ip", "link", "set", f"sw{p}", "up"], check=True)
                subprocess.run(["ip", "-n", self.ns, "link", "set", f"h{p}", "up"], check=True)
                ifaces += ["-i", f"{p}@sw{p}"]
            self.proc = subprocess.Popen(
                ["simple_switch_grpc", *ifaces, "--no-p4", "--", "--grpc-server-addr",
                 "127.0.0.1:9559"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
            deadline = time.monotonic() + 30
            while True:
                try:
                    self.client = P4RuntimeClient("127.0.0.1:9559", self.p4info, device_id=0)
                    break
                except Exception:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.2)
            json_files = [f for f in self.tmp.glob("*.json")]
            self.client.set_pipeline(json_files[0].read_bytes())
        except BaseException:
            self.close()
            raise

    def install(self, entities: Sequence[Entity], *, modify: bool = False) -> None:
        self.client.write(entities, modify=modify)

    def _in_ns(self, code: str, *args: str) -> bytes:
        import sys

        return subprocess.run(
            ["ip", "netns", "exec", self.ns, sys.executable, "-c", code, *args],
            check=True, capture_output=True, timeout=60, cwd=ROOT,
        ).stdout

    def send(self, port: int, frame: bytes) -> list[tuple[int, bytes]]:
        # One helper process in the namespace listens on every host end, sends the frame
        # and reports what arrived until WAIT seconds pass without a frame.
        out = self._in_ns(_NS_IO, json.dumps(self.ports), str(port), frame.hex(), str(self.WAIT))
        return [(int(p), bytes.fromhex(f)) for p, f in json.loads(out)]

    def counter(self, name: str, index: int) -> tuple[int, int]:
        return self.client.counter(name, index)

    def close(self) -> None:
        client = getattr(self, "client", None)
        if client is not None:
            client.close()
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        for p in self.ports:
            subprocess.run(["ip", "link", "del", f"sw{p}"], capture_output=True)
        subprocess.run(["ip", "netns", "del", self.ns], capture_output=True)
        shutil.rmtree(self.tmp, ignore_errors=True)


_NS_IO = r"""
import json, select, socket, sys, time
ports = json.loads(sys.argv[1]); port = int(sys.argv[2]); frame = bytes.fromhex(sys.argv[3])
wait = float(sys.argv[4])
socks = {}
for p in ports:
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
    s.bind((f"h{p}", 0)); socks[s] = p
out = next(s for s, p in socks.items() if p == port)
out.send(frame)
got = []
while True:
    ready, _, _ = select.select(list(socks), [], [], wait)
    if not ready:
        break
    for s in ready:
        data, addr = s.recvfrom(65535)
        if addr[2] != socket.PACKET_OUTGOING:
            got.append((socks[s], data.hex()))
print(json.dumps(got))
"""


def run_case(target: Target, case: Case) -> None:
    """Install, send every frame checking its outputs, then check the counters."""
    target.install(case.entities)
    for n, step in enumerate(case.steps):
        problem = mismatch(step, target.send(step.port, step.frame))
        if problem is not None:
            raise AssertionError(f"{case.name}, step {n}: {problem}")
    for (name, index), packets in case.counters.items():
        got, _ = target.counter(name, index)
        assert got == packets, f"{case.name}: {name}[{index}] = {got}, expected {packets}"
