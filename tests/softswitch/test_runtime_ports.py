"""Ports and the Device: port specs, memory and UDP tunnel ports, fault injection,
pipeline swaps, the CPU port, and AF_PACKET inside a throw-away network namespace."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from typing import Any

import pytest

from p4reduce.softswitch.runtime import Device, MemoryPort, PortSpecError, parse_port_spec
from p4reduce.softswitch.runtime.ports import FaultyPort, UdpPort
from tests.paths import ROOT
from tests.support.backends import make
from tests.support.runtime_ir import assign, c, f, program


def fixed_port_program(port: int, backend: str) -> Any:
    return make(program(ingress=[assign(f("std.egress_spec", 9), c(port, 9))]), backend)


def reflect_program(backend: str) -> Any:
    return make(program(ingress=[assign(f("std.egress_spec", 9), f("std.ingress_port", 9))]), backend)


FRAME = bytes(range(6)) * 2 + b"\x12\x34" + b"payload"


@pytest.mark.parametrize("spec, message", [
    ("1", "expected N@IFACE"),
    ("x@udp:127.0.0.1:1", "not an integer"),
    ("511@mem", "0..510"),
    ("1@udp:127.0.0.1", "udp:HOST:PORT"),
    ("1@udp:127.0.0.1:99999", "udp:HOST:PORT"),
])
def test_bad_port_specs(spec: str, message: str) -> None:
    with pytest.raises(PortSpecError, match=message):
        parse_port_spec(spec)


def test_bad_fault_probability() -> None:
    with pytest.raises(PortSpecError, match="drop probability"):
        parse_port_spec("1@mem", drop=1.5)


def test_udp_bind_failure_is_a_clear_error() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        taken = s.getsockname()[1]
        with pytest.raises(PortSpecError, match="cannot bind"):
            parse_port_spec(f"1@udp:127.0.0.1:{taken}")


@pytest.mark.timeout(20)
def test_device_memory_ports_forward_and_swap_pipeline(backend: str) -> None:
    dev = Device()
    p1, p2, p3 = MemoryPort(), MemoryPort(), MemoryPort()
    dev.add_port(1, p1)
    dev.add_port(2, p2)
    dev.add_port(3, p3)
    dev.set_pipeline(fixed_port_program(2, backend))
    dev.start()
    try:
        p1.put(FRAME)
        assert p2.wait_sent(1, 5) == [FRAME]
        dev.set_pipeline(fixed_port_program(3, backend))  # ports survive the swap
        p1.put(FRAME)
        assert p3.wait_sent(1, 5) == [FRAME]
        dev.set_pipeline(None)
        dev.inject(1, FRAME)  # no pipeline: nothing happens
        assert p2.take() == [] and p3.take() == []
    finally:
        dev.stop()


def test_device_cpu_port_sink_and_unknown_port(backend: str) -> None:
    dev = Device(cpu_port=64)
    got: list[bytes] = []
    dev.set_cpu_sink(got.append)
    dev.set_pipeline(fixed_port_program(64, backend))
    dev.inject(1, FRAME)
    assert got == [FRAME]
    dev.set_pipeline(fixed_port_program(9, backend))
    dev.inject(1, FRAME)
    assert dev.unknown_port_drops == 1


@pytest.mark.timeout(20)
def test_udp_tunnel_learns_peers(backend: str) -> None:
    n1, port1 = parse_port_spec("1@udp:127.0.0.1:0")
    n2, port2 = parse_port_spec("2@udp:127.0.0.1:0")
    assert isinstance(port1, UdpPort) and isinstance(port2, UdpPort)
    dev = Device()
    dev.add_port(n1, port1)
    dev.add_port(n2, port2)
    # port 1 <-> port 2
    dev.set_pipeline(make(program(ingress=[
        assign(f("std.egress_spec", 9), {"op": "-", "left": c(3, 9), "right": f("std.ingress_port", 9),
                                         "type": {"kind": "bit", "width": 9}})]), backend))
    dev.start()
    a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        a.bind(("127.0.0.1", 0))
        b.bind(("127.0.0.1", 0))
        a.settimeout(5)
        b.settimeout(5)
        b.sendto(b"B" * 20, port2.address)  # port 1 has no peer yet: dropped quietly
        deadline = time.monotonic() + 5
        while port2.peer is None and time.monotonic() < deadline:
            time.sleep(0.01)  # wait until port 2's thread has learned b as its peer
        a.sendto(b"A" * 20, port1.address)
        assert b.recv(2048) == b"A" * 20
        b.sendto(b"C" * 20, port2.address)
        assert a.recv(2048) == b"C" * 20
    finally:
        a.close()
        b.close()
        dev.stop()


def _delivered(port: FaultyPort, frames: list[bytes]) -> list[bytes]:
    out = []
    for fr in frames:
        out.extend(port.faults(fr))
    return out


def test_faults_are_deterministic_per_seed() -> None:
    frames = [bytes([i]) for i in range(200)]
    runs = [_delivered(FaultyPort(MemoryPort(), 0.1, 0.1, 0.1, seed=5), frames) for _ in range(2)]
    assert runs[0] == runs[1]
    other = _delivered(FaultyPort(MemoryPort(), 0.1, 0.1, 0.1, seed=6), frames)
    assert other != runs[0]


def test_fault_kinds() -> None:
    frames = [bytes([i]) for i in range(100)]
    assert _delivered(FaultyPort(MemoryPort(), drop=1.0), frames) == []
    assert _delivered(FaultyPort(MemoryPort(), duplicate=1.0), frames) == [x for fr in frames for x in (fr, fr)]
    reordered = _delivered(FaultyPort(MemoryPort(), reorder=0.5, seed=1), frames)
    assert reordered != frames
    assert len(set(reordered)) == len(reordered) and set(reordered) <= set(frames)
    assert len(reordered) >= 99  # at most the last frame is still held back
    dropped = _delivered(FaultyPort(MemoryPort(), drop=0.3, seed=2), frames)
    assert 50 < len(dropped) < 90


@pytest.mark.timeout(20)
def test_faulty_port_on_receive_path(backend: str) -> None:
    inner = MemoryPort()
    fp = FaultyPort(inner, duplicate=1.0)
    dev = Device()
    out = MemoryPort()
    dev.add_port(1, fp)
    dev.add_port(2, out)
    dev.set_pipeline(fixed_port_program(2, backend))
    dev.start()
    try:
        inner.put(FRAME)
        assert out.wait_sent(2, 5) == [FRAME, FRAME]
    finally:
        dev.stop()


AF_PACKET_SCRIPT = textwrap.dedent("""
    import socket, sys, time
    sys.path.insert(0, sys.argv[1])
    from tests.support.runtime_ir import assign, f, program
    from p4reduce.softswitch.runtime import Device, parse_port_spec
    from p4reduce.softswitch.runtime.backend import make_pipeline
    dev = Device()
    n, port = parse_port_spec("1@veth0")
    if sys.argv[2] == "userspace":
        port._filter = True  # as on kernels without PACKET_IGNORE_OUTGOING
    dev.add_port(n, port)
    dev.set_pipeline(make_pipeline(program(ingress=[assign(f("std.egress_spec", 9), f("std.ingress_port", 9))]),
                                   sys.argv[3]))
    dev.start()
    assert (dev.engine is not None) == (sys.argv[3] == "native")
    peer = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
    peer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)  # a whole burst of answers
    peer.bind(("veth1", 0))
    peer.settimeout(0.5)
    frame = bytes.fromhex("02aabbccddee02112233445588b5") + b"reflect-me" * 5
    # a burst of small frames first: one receive ring block then holds more frames than
    # one batch of the native engine, which must come back for the rest of the block
    small = [bytes.fromhex("02aabbccddee0211223344558800") + i.to_bytes(4, "big") + bytes(42) for i in range(600)]
    for f in small:
        peer.send(f)
    back = set()
    deadline = time.time() + 10
    while time.time() < deadline and len(back) < len(small):
        try:
            data, addr = peer.recvfrom(65535)
        except TimeoutError:
            continue
        if addr[2] != 4 and data in small:
            back.add(data)
    print("BURST", len(back))
    got = []
    deadline = time.time() + 5
    peer.send(frame)
    while time.time() < deadline and len(got) < 2:
        try:
            data, addr = peer.recvfrom(65535)
        except TimeoutError:
            if got:
                break
            continue
        if addr[2] != 4 and data == frame:
            got.append(data)
    dev.stop()
    # exactly one reflection: the switch ignored its own outgoing copy, so no loop
    print("REFLECTED", len(got))
""")


@pytest.mark.timeout(60)
@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("ip") is None,
                    reason="AF_PACKET ports need root and iproute2 (network namespace + veth)")
@pytest.mark.parametrize("skip_own", ["kernel", "userspace"])
def test_af_packet_port_in_network_namespace(skip_own: str, backend: str) -> None:
    ns = f"p4rt{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        run = ["ip", "netns", "exec", ns]
        subprocess.run([*run, "ip", "link", "add", "veth0", "type", "veth", "peer", "name", "veth1"], check=True)
        for dev in ("veth0", "veth1", "lo"):
            subprocess.run([*run, "ip", "link", "set", dev, "up"], check=True)
        res = subprocess.run([*run, sys.executable, "-c", AF_PACKET_SCRIPT, str(ROOT), skip_own, backend],
                             capture_output=True, text=True, timeout=45)
        assert "REFLECTED 1" in res.stdout, res.stdout + res.stderr
        assert "BURST 600" in res.stdout, res.stdout + res.stderr
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)


def test_af_packet_bad_interface_is_a_clear_error() -> None:
    if os.geteuid() != 0:
        with pytest.raises(PortSpecError, match="root"):
            parse_port_spec("1@nosuchif0")
    else:
        with pytest.raises(PortSpecError, match="nosuchif0"):
            parse_port_spec("1@nosuchif0")


def _udp_client() -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)  # all answers fit unread
    s.bind(("127.0.0.1", 0))
    s.settimeout(0.5)
    return s


def _recv_all(s: socket.socket, quiet: float = 0.5) -> list[bytes]:
    got = []
    s.settimeout(quiet)
    while True:
        try:
            got.append(s.recv(65535))
        except TimeoutError:
            return got


@pytest.mark.parametrize("spec, message", [
    ("1@udp:127.0.0.1:0,peer=127.0.0.1", "peer=HOST:PORT"),
    ("1@udp:127.0.0.1:0,peer=127.0.0.1:0", "other than 0"),
    ("1@udp:127.0.0.1:0,to=127.0.0.1:5", "unknown option"),
])
def test_bad_tunnel_peer_specs(spec: str, message: str) -> None:
    with pytest.raises(PortSpecError, match=message):
        parse_port_spec(spec)


@pytest.mark.timeout(30)
def test_tunnel_bound_to_its_peer_ignores_everyone_else(backend: str) -> None:
    """A port with peer= sends only to its peer and drops (and counts) frames from any
    other source: another local process cannot inject frames or take the port over."""
    worker, intruder = _udp_client(), _udp_client()
    dev = Device()
    try:
        wport = worker.getsockname()[1]
        n, port = parse_port_spec(f"1@udp:127.0.0.1:0,peer=127.0.0.1:{wport}")
        assert isinstance(port, UdpPort) and port.peer == ("127.0.0.1", wport)
        dev.add_port(n, port)
        dev.set_pipeline(reflect_program(backend))
        dev.start()
        for i in range(5):
            intruder.sendto(b"evil%d" % i + bytes(20), port.address)
        worker.sendto(b"good" + bytes(20), port.address)
        assert _recv_all(worker) == [b"good" + bytes(20)]
        assert _recv_all(intruder, 0.2) == []
        assert port.peer == ("127.0.0.1", wport)
        foreign = dev.engine.port_stats(1)["foreign_dropped"] if dev.engine is not None else port.foreign_drops
        assert foreign == 5
    finally:
        dev.stop()
        worker.close()
        intruder.close()


@pytest.mark.timeout(30)
def test_native_engine_faults_match_python_faults() -> None:
    """The C engine draws from the same generator as FaultyPort, in the same order: the
    same seed drops, duplicates and reorders the same frames."""
    from tests.support.backends import skip_unless_available

    skip_unless_available("native")
    frames = [b"%04d" % i + bytes(30) for i in range(300)]
    expect = FaultyPort(MemoryPort(), 0.1, 0.15, 0.2, seed=42)
    want = [x for fr in frames for x in expect.faults(fr)]
    client = _udp_client()
    dev = Device()
    try:
        n, port = parse_port_spec("1@udp:127.0.0.1:0", drop=0.1, duplicate=0.15, reorder=0.2, seed=41)
        assert isinstance(port, FaultyPort)  # seed + port number = 42
        dev.add_port(n, port)
        dev.set_pipeline(reflect_program("native"))
        dev.start()
        assert dev.engine is not None
        for fr in frames:
            client.sendto(fr, port.inner.address)  # type: ignore[attr-defined]
            time.sleep(0.0005)
        got = _recv_all(client)
        assert got == want
    finally:
        dev.stop()
        client.close()


@pytest.mark.timeout(30)
def test_pipeline_swaps_between_back_ends_keep_ports_and_peers() -> None:
    from tests.support.backends import skip_unless_available

    skip_unless_available("native")
    client = _udp_client()
    cpu: list[bytes] = []
    dev = Device(cpu_port=100)
    dev.set_cpu_sink(cpu.append)
    mem = MemoryPort()
    try:
        n, port = parse_port_spec("1@udp:127.0.0.1:0")
        dev.add_port(n, port)
        dev.add_port(2, mem)
        dev.set_pipeline(reflect_program("native"))
        dev.start()
        assert dev.engine is not None
        client.sendto(b"one" + bytes(20), port.address)
        assert _recv_all(client) == [b"one" + bytes(20)]
        dev.set_pipeline(reflect_program("python"))  # the Python loop takes the ports over
        assert dev.engine is None
        assert port.peer == client.getsockname()  # learned by the engine, kept
        dev.inject(2, b"x" * 20)  # memory port 2 reflects to itself
        assert mem.wait_sent(1, 5) == [b"x" * 20]
        dev.set_pipeline(fixed_port_program(1, "native"))  # and back; port 2's frames go to the tunnel
        assert dev.engine is not None
        mem.put(b"from-mem" + bytes(20))
        assert _recv_all(client) == [b"from-mem" + bytes(20)]
        dev.set_pipeline(fixed_port_program(100, "native"))  # to the CPU port, through the bridge
        client.sendto(b"to-cpu" + bytes(20), port.address)
        deadline = time.monotonic() + 5
        while not cpu and time.monotonic() < deadline:
            time.sleep(0.01)
        assert cpu == [b"to-cpu" + bytes(20)]
    finally:
        dev.stop()
        client.close()


@pytest.mark.timeout(30)
def test_segmentation_offload_senders_are_frame_by_frame(backend: str) -> None:
    """A client that sends many frames as one UDP segmentation-offload message (as the
    native engine itself does) is served frame by frame, in order."""
    import struct

    client = _udp_client()
    dev = Device()
    frames = [b"%03d" % i + bytes(61) for i in range(40)]
    try:
        n, port = parse_port_spec("1@udp:127.0.0.1:0")
        dev.add_port(n, port)
        dev.set_pipeline(reflect_program(backend))
        dev.start()
        try:
            client.sendmsg([b"".join(frames)], [(socket.SOL_UDP, 103, struct.pack("=H", 64))],  # UDP_SEGMENT
                           0, port.address)  # type: ignore[attr-defined]
        except OSError as exc:
            pytest.skip(f"no UDP segmentation offload here: {exc}")
        assert _recv_all(client) == frames
    finally:
        dev.stop()
        client.close()


@pytest.mark.timeout(60)
def test_engine_batches_and_python_frames_do_not_mix() -> None:
    """The C engine's batches and frames Python injects (memory ports, PacketOut) run on
    the same native pipeline at the same time; each frame comes out intact where it
    should, none is lost or taken for another."""
    import threading

    from tests.support.backends import skip_unless_available

    skip_unless_available("native")
    client = _udp_client()
    mem = MemoryPort()
    dev = Device()
    try:
        n, port = parse_port_spec("1@udp:127.0.0.1:0")
        dev.add_port(n, port)
        dev.add_port(2, mem)
        dev.set_pipeline(reflect_program("native"))
        dev.start()
        assert dev.engine is not None
        udp = [b"u%05d" % i + bytes(50) for i in range(3000)]
        inj = [b"m%05d" % i + bytes(50) for i in range(3000)]

        def inject() -> None:
            for f in inj:
                dev.inject(2, f)

        t = threading.Thread(target=inject)
        t.start()
        for i, f in enumerate(udp):
            client.sendto(f, port.address)
            if i % 64 == 0:
                time.sleep(0.001)
        t.join()
        got = _recv_all(client, 1.0)
        assert got == udp
        assert mem.wait_sent(len(inj), 5) == inj
    finally:
        dev.stop()
        client.close()
