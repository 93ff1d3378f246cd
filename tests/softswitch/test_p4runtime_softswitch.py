"""The P4Runtime server driving the real softswitch: a P4 program compiled by the front end,
P4Info from the emitter, the runtime Pipeline and Device with in-memory ports."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest
from finsy.proto import p4d, p4r, p4r_grpc

from p4reduce.softswitch.p4 import compile_source
from p4reduce.softswitch.p4.p4info import emit
from p4reduce.softswitch.p4runtime import RunningServer, serve
from p4reduce.softswitch.runtime import Device, MemoryPort
from tests.softswitch.test_p4runtime_fakes import Stream

pytestmark = pytest.mark.timeout(60)

PROGRAM = r"""
#include <core.p4>
#include <v1model.p4>

@controller_header("packet_in")
header packet_in_t { bit<9> ingress_port; bit<7> _pad; }
@controller_header("packet_out")
header packet_out_t { bit<9> egress_port; bit<7> _pad; }
header ethernet_t { bit<48> dst; bit<48> src; bit<16> etype; }
struct headers { packet_in_t packet_in; packet_out_t packet_out; ethernet_t eth; }
struct metadata { }
struct learn_t { bit<48> src; bit<9> port; }

parser P(packet_in pkt, out headers hdr, inout metadata meta, inout standard_metadata_t std) {
    state start {
        transition select(std.ingress_port) { 64: parse_out; default: parse_eth; }
    }
    state parse_out { pkt.extract(hdr.packet_out); transition parse_eth; }
    state parse_eth { pkt.extract(hdr.eth); transition accept; }
}
control VC(inout headers hdr, inout metadata meta) { apply { } }
control I(inout headers hdr, inout metadata meta, inout standard_metadata_t std) {
    counter(4, CounterType.packets_and_bytes) pkts;
    register<bit<32>>(8) r;
    direct_counter(CounterType.packets_and_bytes) fwd_c;
    action set_port(bit<9> port) { std.egress_spec = port; }
    action to_cpu() {
        std.egress_spec = 64;
        hdr.packet_in.setValid();
        hdr.packet_in.ingress_port = std.ingress_port;
        hdr.packet_in._pad = 0;
    }
    action drop() { mark_to_drop(std); }
    table fwd {
        key = { hdr.eth.dst: exact; }
        actions = { set_port; to_cpu; drop; }
        default_action = drop();
        counters = fwd_c;
    }
    apply {
        if (hdr.packet_out.isValid()) {
            std.egress_spec = hdr.packet_out.egress_port;
            hdr.packet_out.setInvalid();
        } else {
            fwd.apply();
            pkts.count(0);
            digest<learn_t>(1, {hdr.eth.src, std.ingress_port});
        }
    }
}
control E(inout headers hdr, inout metadata meta, inout standard_metadata_t std) { apply { } }
control CC(inout headers hdr, inout metadata meta) { apply { } }
control D(packet_out pkt, in headers hdr) {
    apply { pkt.emit(hdr.packet_in); pkt.emit(hdr.eth); }
}
V1Switch(P(), VC(), I(), E(), CC(), D()) main;
"""

DST = bytes.fromhex("0a0000000002")
FRAME = DST + bytes.fromhex("0a0000000001") + b"\x08\x00" + b"payload"


@pytest.fixture(scope="module")
def program() -> tuple[dict[str, object], object]:
    ir = compile_source(PROGRAM, "fwd.p4")
    return ir, emit(ir)


@pytest.fixture
def ports() -> dict[int, MemoryPort]:
    return {1: MemoryPort(), 2: MemoryPort()}


@pytest.fixture
def server(ports: dict[int, MemoryPort]) -> Iterator[RunningServer]:
    dev = Device(device_id=0, cpu_port=64)
    for n, p in ports.items():
        dev.add_port(n, p)
    srv = serve(dev)
    yield srv
    srv.stop()


def _ids(info: object) -> dict[str, int]:
    out: dict[str, int] = {}
    for kind in ("tables", "actions", "counters", "registers"):
        for obj in getattr(info, kind):
            out[obj.preamble.name] = obj.preamble.id
    return out


def _install(
    stub: p4r_grpc.P4RuntimeStub, program: tuple[dict[str, object], object]
) -> dict[str, int]:
    ir, info = program
    cfg = p4r.ForwardingPipelineConfig(p4info=info, p4_device_config=json.dumps(ir).encode())
    stub.SetForwardingPipelineConfig(
        p4r.SetForwardingPipelineConfigRequest(
            device_id=0,
            action=p4r.SetForwardingPipelineConfigRequest.VERIFY_AND_COMMIT,
            config=cfg,
        ),
        timeout=30,
    )
    return _ids(info)


def _entry(ids: dict[str, int], action: str, *args: bytes) -> p4r.Update:
    te = p4r.TableEntry(table_id=ids["I.fwd"])
    te.match.add(field_id=1).exact.value = DST
    te.action.action.action_id = ids[action]
    for i, a in enumerate(args, start=1):
        te.action.action.params.add(param_id=i, value=a)
    return p4r.Update(type=p4r.Update.INSERT, entity=p4r.Entity(table_entry=te))


def test_forwarding_counters_and_registers(
    stub: p4r_grpc.P4RuntimeStub,
    server: RunningServer,
    ports: dict[int, MemoryPort],
    program: tuple[dict[str, object], object],
) -> None:
    ids = _install(stub, program)
    stub.Write(
        p4r.WriteRequest(device_id=0, updates=[_entry(ids, "I.set_port", b"\x02")]), timeout=10
    )
    server.service.device.inject(1, FRAME)
    assert ports[2].wait_sent(1, 5) == [FRAME]
    # the counter saw the packet
    req = p4r.ReadRequest(device_id=0)
    req.entities.add().counter_entry.counter_id = ids["I.pkts"]
    got = [e.counter_entry for r in stub.Read(req, timeout=10) for e in r.entities]
    assert got[0].index.index == 0 and got[0].data.packet_count == 1
    assert got[0].data.byte_count == len(FRAME)
    # registers: the extension BMv2 lacks
    re = p4r.RegisterEntry(
        register_id=ids["I.r"], index=p4r.Index(index=5), data=p4d.P4Data(bitstring=b"\x2a")
    )
    stub.Write(
        p4r.WriteRequest(
            device_id=0,
            updates=[p4r.Update(type=p4r.Update.MODIFY, entity=p4r.Entity(register_entry=re))],
        ),
        timeout=10,
    )
    rq = p4r.ReadRequest(device_id=0)
    rq.entities.add().register_entry.CopyFrom(
        p4r.RegisterEntry(register_id=ids["I.r"], index=p4r.Index(index=5))
    )
    (val,) = [
        e.register_entry.data.bitstring for r in stub.Read(rq, timeout=10) for e in r.entities
    ]
    assert val == b"\x2a"
    # a duplicate insert comes back as a batch error from the runtime's AlreadyExistsError
    with pytest.raises(grpc.RpcError) as exc:
        stub.Write(
            p4r.WriteRequest(device_id=0, updates=[_entry(ids, "I.set_port", b"\x02")]), timeout=10
        )
    assert exc.value.code() == grpc.StatusCode.UNKNOWN


def test_packet_in_and_out_through_the_pipeline(
    stub: p4r_grpc.P4RuntimeStub,
    server: RunningServer,
    ports: dict[int, MemoryPort],
    program: tuple[dict[str, object], object],
) -> None:
    ids = _install(stub, program)
    s = Stream(stub)
    try:
        s.arbitrate(1)
        assert s.recv().arbitration.status.code == 0
        w = p4r.WriteRequest(device_id=0, updates=[_entry(ids, "I.to_cpu")])
        w.election_id.low = 1
        stub.Write(w, timeout=10)
        server.service.device.inject(1, FRAME)
        pin = s.recv().packet
        assert pin.payload == FRAME
        assert {m.metadata_id: m.value for m in pin.metadata}[1] == b"\x01"  # ingress_port 1
        out = p4r.StreamMessageRequest()
        out.packet.payload = FRAME
        out.packet.metadata.add(metadata_id=1, value=b"\x02")
        out.packet.metadata.add(metadata_id=2, value=b"\x00")
        s.send(out)
        assert ports[2].wait_sent(1, 5) == [FRAME]
    finally:
        s.close()


def test_default_action_direct_counter_and_multicast(
    stub: p4r_grpc.P4RuntimeStub,
    server: RunningServer,
    ports: dict[int, MemoryPort],
    program: tuple[dict[str, object], object],
) -> None:
    ids = _install(stub, program)
    # the default action (drop) is replaced by set_port(1): unknown destinations go to port 1
    d = p4r.TableEntry(table_id=ids["I.fwd"], is_default_action=True)
    d.action.action.action_id = ids["I.set_port"]
    d.action.action.params.add(param_id=1, value=b"\x01")
    g = p4r.MulticastGroupEntry(multicast_group_id=1)
    g.replicas.add(egress_port=1, instance=0)
    g.replicas.add(egress_port=2, instance=1)
    stub.Write(
        p4r.WriteRequest(
            device_id=0,
            updates=[
                p4r.Update(type=p4r.Update.MODIFY, entity=p4r.Entity(table_entry=d)),
                _entry(ids, "I.set_port", b"\x02"),
                p4r.Update(
                    type=p4r.Update.INSERT,
                    entity=p4r.Entity(
                        packet_replication_engine_entry=p4r.PacketReplicationEngineEntry(
                            multicast_group_entry=g
                        )
                    ),
                ),
            ],
        ),
        timeout=10,
    )
    other = bytes.fromhex("0a0000000009") + FRAME[6:]
    server.service.device.inject(2, other)
    assert ports[1].wait_sent(1, 5) == [other]
    server.service.device.inject(1, FRAME)
    server.service.device.inject(1, FRAME)
    assert ports[2].wait_sent(2, 5) == [FRAME, FRAME]
    q = p4r.ReadRequest(device_id=0)
    te = q.entities.add().table_entry
    te.table_id = ids["I.fwd"]
    te.counter_data.SetInParent()
    (got,) = [e.table_entry for r in stub.Read(q, timeout=10) for e in r.entities]
    assert got.counter_data.packet_count == 2
    assert got.counter_data.byte_count == 2 * len(FRAME)
    q = p4r.ReadRequest(device_id=0)
    q.entities.add().packet_replication_engine_entry.multicast_group_entry.SetInParent()
    (mg,) = [
        e.packet_replication_engine_entry for r in stub.Read(q, timeout=10) for e in r.entities
    ]
    assert mg.multicast_group_entry == g


def test_digests_from_the_pipeline(
    stub: p4r_grpc.P4RuntimeStub,
    server: RunningServer,
    program: tuple[dict[str, object], object],
) -> None:
    _install(stub, program)
    _, info = program
    (digest,) = info.digests  # type: ignore[attr-defined]
    s = Stream(stub)
    try:
        s.arbitrate(1)
        s.recv()
        w = p4r.WriteRequest(
            device_id=0,
            updates=[
                p4r.Update(
                    type=p4r.Update.INSERT,
                    entity=p4r.Entity(digest_entry=p4r.DigestEntry(digest_id=digest.preamble.id)),
                )
            ],
        )
        w.election_id.low = 1
        stub.Write(w, timeout=10)
        server.service.device.inject(2, FRAME)
        msg = s.recv()
        assert msg.digest.digest_id == digest.preamble.id
        (data,) = msg.digest.data
        assert [m.bitstring for m in data.struct.members] == [FRAME[6:12].lstrip(b"\0"), b"\x02"]
    finally:
        s.close()


def _push(stub: p4r_grpc.P4RuntimeStub, info: object, device_config: bytes) -> grpc.RpcError:
    """A push that must be refused; returns the error."""
    cfg = p4r.ForwardingPipelineConfig(p4info=info, p4_device_config=device_config)
    with pytest.raises(grpc.RpcError) as exc:
        stub.SetForwardingPipelineConfig(
            p4r.SetForwardingPipelineConfigRequest(
                device_id=0,
                action=p4r.SetForwardingPipelineConfigRequest.VERIFY_AND_COMMIT,
                config=cfg,
            ),
            timeout=30,
        )
    return exc.value


def _mutated(info: object, change: Callable[[Any], None]) -> object:
    out = type(info)()  # type: ignore[operator]
    out.CopyFrom(info)
    change(out)
    return out


def _widen_key(info: Any) -> None:
    info.tables[0].match_fields[0].bitwidth = 99


def _drop_table(info: Any) -> None:
    del info.tables[0]


def _extra_action_param(info: Any) -> None:
    info.actions[-1].params.add(id=9, name="extra", bitwidth=8)


def _resize_counter(info: Any) -> None:
    info.counters[0].size = 5


def _duplicate_id(info: Any) -> None:
    info.counters[0].preamble.id = info.tables[0].preamble.id


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda info: info.Clear(), "lacks table"),
        (_widen_key, "keys"),
        (_drop_table, "lacks table 'I.fwd'"),
        (_extra_action_param, "parameters"),
        (_resize_counter, "(size, unit)"),
        (_duplicate_id, "unique"),
    ],
)
def test_a_p4info_that_disagrees_with_the_device_config_is_refused(
    stub: p4r_grpc.P4RuntimeStub,
    server: RunningServer,
    program: tuple[dict[str, object], object],
    change: Callable[[Any], None],
    message: str,
) -> None:
    ir, info = program
    err = _push(stub, _mutated(info, change), json.dumps(ir).encode())
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in (err.details() or "")
    _install(stub, program)  # the server is fine and takes the matching pair


def test_a_deeply_nested_device_config_is_invalid_not_a_crash(
    stub: p4r_grpc.P4RuntimeStub,
    server: RunningServer,
    program: tuple[dict[str, object], object],
) -> None:
    _, info = program
    for deep in (b"[" * 100_000 + b"]" * 100_000, b'{"a":' * 100_000 + b"1" + b"}" * 100_000):
        err = _push(stub, info, deep)
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, err.details()
        assert "Traceback" not in (err.details() or "")
    _install(stub, program)


@pytest.mark.parametrize(("port", "instance"), [(600, 0), (511, 0), (1, 70_000)])
def test_replicas_outside_the_port_and_rid_ranges_are_refused(
    stub: p4r_grpc.P4RuntimeStub,
    server: RunningServer,
    program: tuple[dict[str, object], object],
    port: int,
    instance: int,
) -> None:
    from tests.softswitch.test_p4runtime import batch_errors

    _install(stub, program)
    g = p4r.MulticastGroupEntry(multicast_group_id=1)
    g.replicas.add(egress_port=2, instance=0)
    g.replicas.add(egress_port=port, instance=instance)
    pre = p4r.PacketReplicationEngineEntry(multicast_group_entry=g)
    update = p4r.Update(type=p4r.Update.INSERT, entity=p4r.Entity(packet_replication_engine_entry=pre))
    with pytest.raises(grpc.RpcError) as exc:
        stub.Write(p4r.WriteRequest(device_id=0, updates=[update]), timeout=10)
    ((code, message),) = batch_errors(exc.value)
    assert code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert ("port" in message) if port != 1 else ("egress_rid" in message)
    q = p4r.ReadRequest(device_id=0)
    q.entities.add().packet_replication_engine_entry.multicast_group_entry.SetInParent()
    assert [e for r in stub.Read(q, timeout=10) for e in r.entities] == []


BIG = PROGRAM.replace("counters = fwd_c;", "counters = fwd_c; size = 32768;")


@pytest.mark.timeout(120)
def test_bulk_write_with_reads_answered_meanwhile(backend: str) -> None:
    """One Write of 20,000 inserts: every entry lands (the tables change entry by entry),
    and Reads sent while it runs are answered before it ends, not after."""
    import threading

    from p4reduce.softswitch.runtime.backend import make_pipeline

    ir = compile_source(BIG, "big.p4")
    info = emit(ir)
    dev = Device(device_id=0, cpu_port=64)
    out = MemoryPort()
    dev.add_port(2, out)
    srv = serve(dev, factory=lambda ir: make_pipeline(ir, backend))  # type: ignore[arg-type]
    try:
        with grpc.insecure_channel(srv.address) as ch:
            stub = p4r_grpc.P4RuntimeStub(ch)
            ids = _install(stub, (ir, info))
            updates = []
            for i in range(20_000):
                te = p4r.TableEntry(table_id=ids["I.fwd"])
                te.match.add(field_id=1).exact.value = (i + 1).to_bytes(6, "big")
                te.action.action.action_id = ids["I.set_port"]
                te.action.action.params.add(param_id=1, value=b"\x02")
                updates.append(p4r.Update(type=p4r.Update.INSERT, entity=p4r.Entity(table_entry=te)))
            done = threading.Event()
            failed: list[BaseException] = []

            def write() -> None:
                try:
                    stub.Write(p4r.WriteRequest(device_id=0, updates=updates), timeout=100)
                except BaseException as exc:
                    failed.append(exc)
                done.set()

            writer = threading.Thread(target=write)
            writer.start()
            answered_during = 0
            req = p4r.ReadRequest(device_id=0)
            req.entities.add().counter_entry.counter_id = ids["I.pkts"]
            while not done.is_set():
                got = [e for r in stub.Read(req, timeout=100) for e in r.entities]
                assert len(got) == 4
                answered_during += not done.is_set()
            writer.join()
            assert not failed, failed
            assert answered_during >= 1
            read = p4r.ReadRequest(device_id=0)
            read.entities.add().table_entry.table_id = ids["I.fwd"]
            assert sum(len(r.entities) for r in stub.Read(read, timeout=100)) == 20_000
            frame = (20_000).to_bytes(6, "big") + bytes(6) + b"\x08\x00" + b"x"
            srv.service.device.inject(1, frame)
            assert out.wait_sent(1, 5) == [frame]
    finally:
        srv.stop()
