"""Targets on real Linux interfaces: a switch process (BMv2's simple_switch_grpc, or
softswitch's p4reduce-switch with the same flags) whose ports are veth pairs; the far ends
live in a network namespace this module creates, where one helper process sends and
captures frames with AF_PACKET sockets. Needs root; everything is removed on close."""

from __future__ import annotations

import functools
import itertools
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tests.pipeline.case import Entity
from tests.pipeline.p4rt import P4RuntimeClient
from tests.pipeline.targets import P4_MAIN, ROOT, compile_ir, p4info_of

_serial = itertools.count()
SETTLE = 0.15  # seconds without a frame after which a port is considered quiet
FIRST_FRAME = 5.0  # upper bound on waiting for frames that are expected


SOFTSWITCH = Path(sys.executable).parent / "p4reduce-switch"


def unavailable(switch: str) -> str | None:
    """Why a wired target with `switch` ("simple_switch_grpc" or "p4reduce-switch")
    cannot run here, or None."""
    tools = ["ip"] + (["p4c", switch] if switch == "simple_switch_grpc" else [])
    missing = [t for t in tools if shutil.which(t) is None]
    if switch != "simple_switch_grpc" and not SOFTSWITCH.exists():
        missing.append(str(SOFTSWITCH))
    if missing:
        return f"needs {', '.join(missing)}"
    if os.geteuid() != 0:
        return "needs root (veth pairs in a network namespace)"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _run(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True, timeout=60)


class WiredTarget:
    def __init__(self, switch_argv: list[str], ports: Sequence[int], p4info: Any,
                 device_config: bytes) -> None:
        tag = f"{os.getpid() % 100000}{next(_serial)}"
        self.ns = f"p4rtest{tag}"
        self.ports = list(ports)
        self.ifaces = {p: f"r{tag}s{p}" for p in self.ports}
        self.proc: subprocess.Popen[bytes] | None = None
        self.io: subprocess.Popen[str] | None = None
        self.client: P4RuntimeClient | None = None
        _run("ip", "netns", "add", self.ns)
        try:
            self._wire()
            address = f"127.0.0.1:{_free_port()}"
            ifargs = [arg for p in self.ports for arg in ("-i", f"{p}@{self.ifaces[p]}")]
            self.proc = subprocess.Popen([*switch_argv[:1], *ifargs, *switch_argv[1:], address],
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            deadline = time.monotonic() + 30
            while self.client is None:
                try:
                    self.client = P4RuntimeClient(address, p4info, device_id=0)
                except Exception:
                    if time.monotonic() > deadline or self.proc.poll() is not None:
                        raise RuntimeError(f"{switch_argv[0]} did not serve P4Runtime") from None
                    time.sleep(0.2)
            self.client.set_pipeline(device_config)
            self.io = subprocess.Popen(
                ["ip", "netns", "exec", self.ns, sys.executable, "-c", _NS_IO,
                 json.dumps(self.ports)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT)
            assert self.io.stdout is not None
            if self.io.stdout.readline().strip() != "ready":
                raise RuntimeError("capture helper did not start")
        except BaseException:
            self.close()
            raise

    def _wire(self) -> None:
        # IPv6 off on both ends: otherwise the kernel's own neighbour discovery frames
        # would show up as unexpected output.
        lines = []
        for p, name in self.ifaces.items():
            lines.append(f"link add {name} type veth peer name h{p} netns {self.ns}")
        batch = "\n".join(lines) + "\n"
        subprocess.run(["ip", "-batch", "-"], input=batch.encode(), check=True,
                       capture_output=True, timeout=60)
        _run("ip", "netns", "exec", self.ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1")
        for name in self.ifaces.values():
            subprocess.run(["sysctl", "-qw", f"net.ipv6.conf.{name}.disable_ipv6=1"],
                           capture_output=True, timeout=60)
        up = "".join(f"link set {name} up\n" for name in self.ifaces.values())
        subprocess.run(["ip", "-batch", "-"], input=up.encode(), check=True,
                       capture_output=True, timeout=60)
        up_ns = "".join(f"link set h{p} up\n" for p in self.ports)
        subprocess.run(["ip", "-n", self.ns, "-batch", "-"], input=up_ns.encode(), check=True,
                       capture_output=True, timeout=60)

    def install(self, entities: Sequence[Entity], *, modify: bool = False) -> None:
        assert self.client is not None
        self.client.write(entities, modify=modify)

    def send(self, port: int, frame: bytes, expected: int = 0) -> list[tuple[int, bytes]]:
        assert self.io is not None and self.io.stdin is not None and self.io.stdout is not None
        self.io.stdin.write(json.dumps([port, frame.hex(), expected]) + "\n")
        self.io.stdin.flush()
        return [(int(p), bytes.fromhex(f)) for p, f in json.loads(self.io.stdout.readline())]

    def counter(self, name: str, index: int) -> tuple[int, int]:
        assert self.client is not None
        return self.client.counter(name, index)

    def close(self) -> None:
        if self.io is not None:
            self.io.kill()
            self.io.wait(timeout=10)
        if self.client is not None:
            self.client.close()
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        for name in self.ifaces.values():
            subprocess.run(["ip", "link", "del", name], capture_output=True, timeout=60)
        subprocess.run(["ip", "netns", "del", self.ns], capture_output=True, timeout=60)


@functools.lru_cache(maxsize=8)
def _p4c(defines: tuple[tuple[str, int], ...]) -> tuple[bytes, bytes]:
    """p4c's P4Info (serialized) and BMv2 JSON for these -D values, compiled once per test
    session: a tree of switches starts several BMv2s of one build."""
    from finsy.proto import p4i
    from google.protobuf import text_format  # type: ignore[import-untyped]

    tmp = Path(tempfile.mkdtemp(prefix="p4reduce-p4c-"))
    try:
        argv = ["p4c", "--target", "bmv2", "--arch", "v1model", "-o", str(tmp),
                "--p4runtime-files", str(tmp / "p4info.txtpb")]
        argv += [f"-D{k}={v}" for k, v in defines]
        subprocess.run([*argv, str(P4_MAIN)], check=True, capture_output=True, timeout=600)
        p4info = text_format.Parse((tmp / "p4info.txtpb").read_text(), p4i.P4Info())
        return p4info.SerializeToString(), (tmp / "aggregator.json").read_bytes()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def bmv2(ports: Sequence[int], **defines: int) -> WiredTarget:
    """BMv2 running p4c's build of the program, with p4c's P4Info."""
    from finsy.proto import p4i

    info, config = _p4c(tuple(sorted(defines.items())))
    p4info = p4i.P4Info()
    p4info.ParseFromString(info)
    # Its own Thrift port, so several instances (parallel test runs) can coexist.
    argv = ["simple_switch_grpc", "--thrift-port", str(_free_port()), "--no-p4", "--",
            "--grpc-server-addr"]
    return WiredTarget(argv, ports, p4info, config)


def softswitch(ports: Sequence[int], **defines: int) -> WiredTarget:
    """softswitch as a separate process on the interfaces, configured over P4Runtime."""
    ir = compile_ir(**defines)
    argv = [str(SOFTSWITCH), "--grpc-server-addr"]
    return WiredTarget(argv, ports, p4info_of(ir), json.dumps(ir).encode())


_NS_IO = r"""
import json, select, socket, sys, time
ports = json.loads(sys.argv[1])
socks = {}
for p in ports:
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
    s.bind((f"h{p}", 0))
    socks[s] = p
by_port = {p: s for s, p in socks.items()}
print("ready", flush=True)
for line in sys.stdin:
    port, frame, expected = json.loads(line)
    by_port[port].send(bytes.fromhex(frame))
    got = []
    deadline = time.monotonic() + FIRST
    while True:
        wait = SETTLE if len(got) >= expected else max(0.0, deadline - time.monotonic())
        ready, _, _ = select.select(list(socks), [], [], wait)
        if not ready:
            break
        for s in ready:
            data, addr = s.recvfrom(65535)
            if addr[2] != socket.PACKET_OUTGOING:
                got.append((socks[s], data.hex()))
    print(json.dumps(got), flush=True)
""".replace("FIRST", repr(FIRST_FRAME)).replace("SETTLE", repr(SETTLE))
