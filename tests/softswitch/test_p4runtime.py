"""P4Runtime server over real gRPC on 127.0.0.1, against a fake pipeline."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from finsy.proto import p4d, p4r, p4r_grpc, rpc_code, rpc_status

from p4reduce.softswitch.p4runtime import P4RUNTIME_API_VERSION, RunningServer, serve
from p4reduce.softswitch.runtime.control import (
    ActionCall,
    CounterValue,
    DigestMessage,
    Exact,
    Lpm,
    Replica,
    Ternary,
)
from tests.softswitch.test_p4runtime_fakes import (
    ACL,
    DROP,
    FWD,
    LEARN,
    NOACTION,
    PKTS,
    SET_PORT,
    FakeDevice,
    FakePipeline,
    R,
    Stream,
    pipeline_config,
    set_pipeline,
)

pytestmark = pytest.mark.timeout(30)
U = p4r.Update
SET = p4r.SetForwardingPipelineConfigRequest
GET = p4r.GetForwardingPipelineConfigRequest


@pytest.fixture
def device() -> FakeDevice:
    return FakeDevice()


@pytest.fixture
def server(device: FakeDevice) -> Iterator[RunningServer]:
    srv = serve(device, factory=FakePipeline)
    yield srv
    srv.stop()


@pytest.fixture
def ready(stub: p4r_grpc.P4RuntimeStub, device: FakeDevice) -> FakePipeline:
    set_pipeline(stub)
    pipe: FakePipeline = device.pipeline
    return pipe


def fwd_entry(mac: int, port: int | bytes = 3) -> p4r.TableEntry:
    te = p4r.TableEntry(table_id=FWD)
    te.match.add(field_id=1).exact.value = mac.to_bytes(max(6, (mac.bit_length() + 7) // 8), "big")
    te.action.action.action_id = SET_PORT
    pv = port if isinstance(port, bytes) else port.to_bytes(2, "big")
    te.action.action.params.add(param_id=1, value=pv)
    return te


def write(stub: p4r_grpc.P4RuntimeStub, *updates: p4r.Update, election: int = 0) -> None:
    req = p4r.WriteRequest(device_id=0, updates=list(updates))
    if election:
        req.election_id.low = election
    stub.Write(req, timeout=5)


def upd(kind: int, **entity: object) -> p4r.Update:
    return p4r.Update(type=kind, entity=p4r.Entity(**entity))  # type: ignore[arg-type]


def read(stub: p4r_grpc.P4RuntimeStub, **entity: object) -> list[p4r.Entity]:
    req = p4r.ReadRequest(device_id=0, entities=[p4r.Entity(**entity)])  # type: ignore[arg-type]
    return [e for resp in stub.Read(req, timeout=5) for e in resp.entities]


def batch_errors(err: grpc.RpcError) -> list[tuple[int, str]]:
    """The per-update p4.v1.Error list from the status details."""
    assert err.code() == grpc.StatusCode.UNKNOWN
    raw = dict(err.trailing_metadata())["grpc-status-details-bin"]
    status = rpc_status.Status.FromString(raw)
    out = []
    for d in status.details:
        e = p4r.Error()
        assert d.Unpack(e)
        out.append((e.canonical_code, e.message))
    return out


def test_capabilities(stub: p4r_grpc.P4RuntimeStub) -> None:
    resp = stub.Capabilities(p4r.CapabilitiesRequest(), timeout=5)
    assert resp.p4runtime_api_version == P4RUNTIME_API_VERSION


def test_everything_needs_a_pipeline_first(stub: p4r_grpc.P4RuntimeStub) -> None:
    for call in (
        lambda: write(stub, upd(U.INSERT, table_entry=fwd_entry(1))),
        lambda: read(stub, table_entry=p4r.TableEntry()),
        lambda: stub.GetForwardingPipelineConfig(GET(device_id=0), timeout=5),
    ):
        with pytest.raises(grpc.RpcError) as exc:
            call()
        assert exc.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "forwarding pipeline config" in exc.value.details()


def test_wrong_device_id(stub: p4r_grpc.P4RuntimeStub, ready: FakePipeline) -> None:
    with pytest.raises(grpc.RpcError) as exc:
        stub.Write(p4r.WriteRequest(device_id=9), timeout=5)
    assert exc.value.code() == grpc.StatusCode.NOT_FOUND


def test_get_pipeline_config_response_types(
    stub: p4r_grpc.P4RuntimeStub, ready: FakePipeline
) -> None:
    def get(rt: int) -> p4r.ForwardingPipelineConfig:
        return stub.GetForwardingPipelineConfig(
            GET(device_id=0, response_type=rt), timeout=5
        ).config

    full = pipeline_config()
    c = get(GET.ALL)
    assert c == full
    c = get(GET.COOKIE_ONLY)
    assert c.cookie.cookie == 7 and not c.HasField("p4info") and not c.p4_device_config
    c = get(GET.P4INFO_AND_COOKIE)
    assert c.p4info == full.p4info and not c.p4_device_config
    c = get(GET.DEVICE_CONFIG_AND_COOKIE)
    assert c.p4_device_config == full.p4_device_config and not c.HasField("p4info")


def test_verify_save_commit(stub: p4r_grpc.P4RuntimeStub, device: FakeDevice) -> None:
    def setp(action: int, cfg: p4r.ForwardingPipelineConfig | None = None) -> None:
        req = SET(device_id=0, action=action)
        if cfg is not None:
            req.config.CopyFrom(cfg)
        stub.SetForwardingPipelineConfig(req, timeout=5)

    setp(SET.VERIFY, pipeline_config())
    assert device.pipeline is None
    with pytest.raises(grpc.RpcError) as exc:
        setp(SET.COMMIT)
    assert exc.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    setp(SET.VERIFY_AND_SAVE, pipeline_config())
    assert device.pipeline is None
    setp(SET.COMMIT)
    assert isinstance(device.pipeline, FakePipeline)


def test_reconcile_keeps_entries(
    stub: p4r_grpc.P4RuntimeStub, ready: FakePipeline, device: FakeDevice
) -> None:
    write(stub, upd(U.INSERT, table_entry=fwd_entry(5)))
    ready.mc_group_set(3, (Replica(1, 0),))
    stub.SetForwardingPipelineConfig(
        SET(device_id=0, action=SET.RECONCILE_AND_COMMIT, config=pipeline_config(8)), timeout=5
    )
    assert device.pipeline is not ready
    assert len(device.pipeline.table_entries("MyIngress.fwd")) == 1
    assert device.pipeline.mc_groups() == {3: (Replica(1, 0),)}


@pytest.mark.parametrize(
    ("config", "needle"),
    [
        (p4r.ForwardingPipelineConfig(p4_device_config=b"{}"), "p4info"),
        (
            pipeline_config().__class__(p4info=pipeline_config().p4info, p4_device_config=b"\xff{"),
            "IR",
        ),
        (
            pipeline_config().__class__(
                p4info=pipeline_config().p4info, p4_device_config=b'{"fail": 1}'
            ),
            "rejected on purpose",
        ),
        (
            pipeline_config().__class__(
                p4info=pipeline_config().p4info, p4_device_config=b'{"tables": ["MyIngress.fwd"]}'
            ),
            "MyIngress.acl",
        ),
        (
            pipeline_config().__class__(
                p4info=p4r.ForwardingPipelineConfig().p4info, p4_device_config=b"{}"
            ),
            "describes none",
        ),
    ],
)
def test_bad_pipeline_configs(
    stub: p4r_grpc.P4RuntimeStub,
    device: FakeDevice,
    config: p4r.ForwardingPipelineConfig,
    needle: str,
) -> None:
    with pytest.raises(grpc.RpcError) as exc:
        stub.SetForwardingPipelineConfig(
            SET(device_id=0, action=SET.VERIFY_AND_COMMIT, config=config), timeout=5
        )
    assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert needle in exc.value.details()
    assert device.pipeline is None


def test_table_insert_read_modify_delete(stub: p4r_grpc.P4RuntimeStub, ready: FakePipeline) -> None:
    mac = 0x0000AABBCCDD
    write(stub, upd(U.INSERT, table_entry=fwd_entry(mac, 3)))
    (entry,) = ready.table_entries("MyIngress.fwd")
    assert entry.keys == (Exact(mac),) and entry.action == ActionCall("MyIngress.set_port", (3,))
    got = read(stub, table_entry=p4r.TableEntry(table_id=FWD))
    assert len(got) == 1
    # canonical bytestrings on the way back: no leading zero bytes
    assert got[0].table_entry.match[0].exact.value == b"\xaa\xbb\xcc\xdd"
    assert got[0].table_entry.action.action.params[0].value == b"\x03"
    write(stub, upd(U.MODIFY, table_entry=fwd_entry(mac, 7)))
    assert ready.table_entries("MyIngress.fwd")[0].action.args == (7,)
    write(stub, upd(U.DELETE, table_entry=fwd_entry(mac)))
    assert ready.table_entries("MyIngress.fwd") == []


def test_wildcard_read_all_tables(stub: p4r_grpc.P4RuntimeStub, ready: FakePipeline) -> None:
    acl = p4r.TableEntry(table_id=ACL, priority=10)
    m = acl.match.add(field_id=1)
    m.lpm.value = bytes([10, 0, 0, 0])
    m.lpm.prefix_len = 8
    m = acl.match.add(field_id=2)
    m.ternary.value = b"\x00\x50"
    m.ternary.mask = b"\xff\xff"
    acl.action.action.action_id = DROP
    write(stub, upd(U.INSERT, table_entry=fwd_entry(1)), upd(U.INSERT, table_entry=acl))
    (stored,) = ready.table_entries("MyIngress.acl")
    assert stored.keys == (Lpm(0x0A000000, 8), Ternary(0x50, 0xFFFF)) and stored.priority == 10
    got = read(stub, table_entry=p4r.TableEntry())
    assert sorted(e.table_entry.table_id for e in got) == [FWD, ACL]
    # a read naming the match returns that entry only
    only = read(stub, table_entry=fwd_entry(1))
    assert len(only) == 1 and only[0].table_entry.table_id == FWD


def test_batch_errors_one_per_update(stub: p4r_grpc.P4RuntimeStub, ready: FakePipeline) -> None:
    write(stub, upd(U.INSERT, table_entry=fwd_entry(1)))
    with pytest.raises(grpc.RpcError) as exc:
        write(
            stub,
            upd(U.INSERT, table_entry=fwd_entry(1)),  # duplicate
            upd(U.INSERT, table_entry=fwd_entry(2)),  # fine
            upd(U.DELETE, table_entry=fwd_entry(99)),  # missing
        )
    codes = [c for c, _ in batch_errors(exc.value)]
    assert codes == [rpc_code.ALREADY_EXISTS, rpc_code.OK, rpc_code.NOT_FOUND]
    # CONTINUE_ON_ERROR: the good update in the middle was applied
    assert len(ready.table_entries("MyIngress.fwd")) == 2


def _bad(te: p4r.TableEntry, **changes: object) -> p4r.TableEntry:
    for k, v in changes.items():
        setattr(te, k, v)
    return te


def _acl(value: bytes, mask: bytes, plen: int = 8, prio: int = 1) -> p4r.TableEntry:
    te = p4r.TableEntry(table_id=ACL, priority=prio)
    m = te.match.add(field_id=1)
    m.lpm.value = bytes([10, 0, 0, 0])
    m.lpm.prefix_len = plen
    m = te.match.add(field_id=2)
    m.ternary.value = value
    m.ternary.mask = mask
    te.action.action.action_id = DROP
    return te


@pytest.mark.parametrize(
    ("entry", "needle"),
    [
        (fwd_entry(1 << 48), "does not fit within 48 bits"),
        (fwd_entry(1, b"\x02\x00"), "does not fit within 9 bits"),
        (_bad(fwd_entry(1), table_id=0x02000099), "table id"),
        (p4r.TableEntry(table_id=FWD), "missing exact match field"),
        (_acl(b"\x00\x51", b"\x00\xf0"), "don't care"),
        (_acl(b"\x00\x50", b"\x00\x00"), "mask is 0"),
        (_acl(b"\x00\x50", b"\xff\xff", plen=33), "prefix length"),
        (_acl(b"\x00\x50", b"\xff\xff", prio=0), "priority"),
        (_bad(fwd_entry(1), priority=3), "priority must be 0"),
    ],
)
def test_malformed_entries_are_invalid_argument(
    stub: p4r_grpc.P4RuntimeStub, ready: FakePipeline, entry: p4r.TableEntry, needle: str
) -> None:
    with pytest.raises(grpc.RpcError) as exc:
        write(stub, upd(U.INSERT, table_entry=entry))
    ((code, msg),) = batch_errors(exc.value)
    assert code == rpc_code.INVALID_ARGUMENT
    assert needle in msg


def test_action_checks(stub: p4r_grpc.P4RuntimeStub, ready: FakePipeline) -> None:
    te = fwd_entry(1)
    te.action.action.action_id = NOACTION  # default-only in fwd
    te.action.action.ClearField("params")
    unknown = fwd_entry(2)
    unknown.action.action.action_id = 0x01000099
    missing = fwd_entry(3)
    missing.action.action.ClearField("params")
    with pytest.raises(grpc.RpcError) as exc:
        write(stub, *(upd(U.INSERT, table_entry=e) for e in (te, unknown, missing)))
    errs = batch_errors(exc.value)
    assert [c for c, _ in errs] == [rpc_code.INVALID_ARGUMENT] * 3
    assert "default-only" in errs[0][1] and "action id" in errs[1][1] and "missing" in errs[2][1]


def test_default_entry(stub: p4r_grpc.P4RuntimeStub, ready: FakePipeline) -> None:
    d = p4r.TableEntry(table_id=FWD, is_default_action=True)
    d.action.action.action_id = DROP
    write(stub, upd(U.MODIFY, table_entry=d))
    assert ready.table_get_default("MyIngress.fwd") == ActionCall("MyIngress.drop")
    (got,) = read(stub, table_entry=p4r.TableEntry(table_id=FWD, is_default_action=True))
    assert got.table_entry.is_default_action and got.table_entry.action.action.action_id == DROP
    write(stub, upd(U.MODIFY, table_entry=p4r.TableEntry(table_id=FWD, is_default_action=True)))
    assert ready.table_get_default("MyIngress.fwd") == ActionCall("NoAction")
    with pytest.raises(grpc.RpcError) as exc:
        write(stub, upd(U.INSERT, table_entry=d))
    assert batch_errors(exc.value)[0][0] == rpc_code.INVALID_ARGUMENT


def test_runtime_errors_are_translated(stub: p4r_grpc.P4RuntimeStub, ready: FakePipeline) -> None:
    with pytest.raises(grpc.RpcError) as exc:
        write(stub, upd(U.MODIFY, table_entry=fwd_entry(42)))
    assert batch_errors(exc.value) == [(rpc_code.NOT_FOUND, "no such entry")]


def test_multicast_groups_and_clone_sessions(
    stub: p4r_grpc.P4RuntimeStub, ready: FakePipeline
) -> None:
    def mg(gid: int, *ports: int) -> p4r.PacketReplicationEngineEntry:
        g = p4r.MulticastGroupEntry(multicast_group_id=gid)
        for i, p in enumerate(ports):
            g.replicas.add(egress_port=p, instance=i)
        return p4r.PacketReplicationEngineEntry(multicast_group_entry=g)

    write(stub, upd(U.INSERT, packet_replication_engine_entry=mg(1, 1, 2)))
    write(stub, upd(U.INSERT, packet_replication_engine_entry=mg(2, 3)))
    assert ready.mc_groups()[1] == (Replica(1, 0), Replica(2, 1))
    # P4Runtime 1.4 `port` bytes are accepted too
    g = mg(2)
    g.multicast_group_entry.replicas.add(port=b"\x05", instance=9)
    write(stub, upd(U.MODIFY, packet_replication_engine_entry=g))
    assert ready.mc_groups()[2] == (Replica(5, 9),)
    every = read(stub, packet_replication_engine_entry=mg(0))
    assert [
        e.packet_replication_engine_entry.multicast_group_entry.multicast_group_id for e in every
    ] == [1, 2]
    with pytest.raises(grpc.RpcError) as exc:
        write(
            stub,
            upd(U.INSERT, packet_replication_engine_entry=mg(1, 1)),
            upd(U.DELETE, packet_replication_engine_entry=mg(7)),
            upd(U.INSERT, packet_replication_engine_entry=mg(0, 1)),
        )
    codes = [c for c, _ in batch_errors(exc.value)]
    assert codes == [rpc_code.ALREADY_EXISTS, rpc_code.NOT_FOUND, rpc_code.INVALID_ARGUMENT]
    write(stub, upd(U.DELETE, packet_replication_engine_entry=mg(1)))
    assert list(ready.mc_groups()) == [2]
    cs = p4r.CloneSessionEntry(session_id=5, packet_length_bytes=64)
    cs.replicas.add(egress_port=64, instance=1)
    write(
        stub,
        upd(
            U.INSERT,
            packet_replication_engine_entry=p4r.PacketReplicationEngineEntry(
                clone_session_entry=cs
            ),
        ),
    )
    assert ready.clone_sessions()[5].packet_length_bytes == 64
    (got,) = read(
        stub,
        packet_replication_engine_entry=p4r.PacketReplicationEngineEntry(
            clone_session_entry=p4r.CloneSessionEntry()
        ),
    )
    assert got.packet_replication_engine_entry.clone_session_entry == cs


def test_counters(stub: p4r_grpc.P4RuntimeStub, ready: FakePipeline) -> None:
    ready.counters["MyIngress.pkts"][2] = CounterValue(5, 500)
    got = read(stub, counter_entry=p4r.CounterEntry(counter_id=PKTS))
    assert [(e.counter_entry.index.index, e.counter_entry.data.packet_count) for e in got] == [
        (0, 0),
        (1, 0),
        (2, 5),
        (3, 0),
    ]
    assert len(read(stub, counter_entry=p4r.CounterEntry())) == 4  # counter_id 0: all counters
    ce = p4r.CounterEntry(counter_id=PKTS, index=p4r.Index(index=2))
    write(stub, upd(U.MODIFY, counter_entry=ce))  # data unset: reset to zero
    assert ready.counter_read("MyIngress.pkts", 2) == CounterValue(0, 0)
    with pytest.raises(grpc.RpcError) as exc:
        write(
            stub,
            upd(U.INSERT, counter_entry=ce),
            upd(
                U.MODIFY, counter_entry=p4r.CounterEntry(counter_id=PKTS, index=p4r.Index(index=4))
            ),
        )
    assert [c for c, _ in batch_errors(exc.value)] == [rpc_code.INVALID_ARGUMENT] * 2


def test_direct_counters(stub: p4r_grpc.P4RuntimeStub, ready: FakePipeline) -> None:
    write(stub, upd(U.INSERT, table_entry=fwd_entry(1)))
    de = p4r.DirectCounterEntry(table_entry=fwd_entry(1))
    de.table_entry.ClearField("action")
    de.data.packet_count = 9
    de.data.byte_count = 900
    write(stub, upd(U.MODIFY, direct_counter_entry=de))
    q = p4r.TableEntry(table_id=FWD)
    q.counter_data.SetInParent()
    (got,) = read(stub, table_entry=q)
    assert got.table_entry.counter_data.packet_count == 9
    (dgot,) = read(
        stub, direct_counter_entry=p4r.DirectCounterEntry(table_entry=p4r.TableEntry(table_id=FWD))
    )
    assert dgot.direct_counter_entry.data.byte_count == 900
    (plain,) = read(stub, table_entry=p4r.TableEntry(table_id=FWD))
    assert not plain.table_entry.HasField("counter_data")


def test_registers_extension(stub: p4r_grpc.P4RuntimeStub, ready: FakePipeline) -> None:
    re = p4r.RegisterEntry(
        register_id=R, index=p4r.Index(index=3), data=p4d.P4Data(bitstring=b"\x01\x02")
    )
    write(stub, upd(U.MODIFY, register_entry=re))
    assert ready.register_read("MyIngress.r", 3) == 0x102
    (got,) = read(stub, register_entry=p4r.RegisterEntry(register_id=R, index=p4r.Index(index=3)))
    assert got.register_entry.data.bitstring == b"\x01\x02"
    assert len(read(stub, register_entry=p4r.RegisterEntry(register_id=R))) == 8
    big = p4r.RegisterEntry(
        register_id=R, index=p4r.Index(index=0), data=p4d.P4Data(bitstring=b"\x01" * 5)
    )
    with pytest.raises(grpc.RpcError) as exc:
        write(stub, upd(U.MODIFY, register_entry=big))
    assert batch_errors(exc.value)[0][0] == rpc_code.INVALID_ARGUMENT


def test_unsupported_atomicity(stub: p4r_grpc.P4RuntimeStub, ready: FakePipeline) -> None:
    req = p4r.WriteRequest(device_id=0, atomicity=p4r.WriteRequest.ROLLBACK_ON_ERROR)
    with pytest.raises(grpc.RpcError) as exc:
        stub.Write(req, timeout=5)
    assert exc.value.code() == grpc.StatusCode.UNIMPLEMENTED


# ------------------------------------------------------------------ stream channel


def _status(msg: p4r.StreamMessageResponse) -> tuple[int, int]:
    a = msg.arbitration
    return a.status.code, a.election_id.low


def test_arbitration_primary_backup_and_failover(
    stub: p4r_grpc.P4RuntimeStub, ready: FakePipeline
) -> None:
    s10, s20 = Stream(stub), Stream(stub)
    try:
        s10.arbitrate(10)
        assert _status(s10.recv()) == (rpc_code.OK, 10)
        s20.arbitrate(20)  # takes over: both hear about it
        assert _status(s20.recv()) == (rpc_code.OK, 20)
        assert _status(s10.recv()) == (rpc_code.ALREADY_EXISTS, 20)
        with pytest.raises(grpc.RpcError) as exc:
            write(stub, upd(U.INSERT, table_entry=fwd_entry(1)), election=10)
        assert exc.value.code() == grpc.StatusCode.PERMISSION_DENIED
        with pytest.raises(grpc.RpcError) as exc:
            write(stub, upd(U.INSERT, table_entry=fwd_entry(1)))  # no election id
        assert exc.value.code() == grpc.StatusCode.PERMISSION_DENIED
        write(stub, upd(U.INSERT, table_entry=fwd_entry(1)), election=20)
        s20.close()  # the primary leaves: the backup is promoted
        assert _status(s10.recv()) == (rpc_code.OK, 10)
        write(stub, upd(U.INSERT, table_entry=fwd_entry(2)), election=10)
    finally:
        s10.close()
        s20.close()


def test_arbitration_errors(stub: p4r_grpc.P4RuntimeStub, ready: FakePipeline) -> None:
    a, b, c = Stream(stub), Stream(stub), Stream(stub)
    try:
        a.arbitrate(5)
        assert _status(a.recv())[0] == rpc_code.OK
        b.arbitrate(5)
        err = b.recv()
        assert isinstance(err, grpc.RpcError)
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "already used" in err.details()
        c.arbitrate(1, device_id=3)
        err = c.recv()
        assert isinstance(err, grpc.RpcError) and err.code() == grpc.StatusCode.NOT_FOUND
    finally:
        for s in (a, b, c):
            s.close()


def test_packet_out_and_in(
    stub: p4r_grpc.P4RuntimeStub, ready: FakePipeline, device: FakeDevice
) -> None:
    s = Stream(stub)
    try:
        s.arbitrate(1)
        s.recv()
        m = p4r.StreamMessageRequest()
        m.packet.payload = b"hello"
        m.packet.metadata.add(metadata_id=1, value=b"\x01\x05")  # port 261
        m.packet.metadata.add(metadata_id=2, value=b"\x00")
        s.send(m)
        port, frame = device.injected.get(timeout=5)
        assert port == 64
        assert frame == ((261 << 7).to_bytes(2, "big") + b"hello")
        # a frame that egresses on the CPU port becomes a PacketIn
        assert device.sink is not None
        device.sink((7 << 7).to_bytes(2, "big") + b"payload")
        pin = s.recv().packet
        assert pin.payload == b"payload"
        assert {md.metadata_id: md.value for md in pin.metadata} == {1: b"\x07", 2: b"\x00"}
        # malformed PacketOut: a StreamError comes back, nothing is injected
        bad = p4r.StreamMessageRequest()
        bad.packet.payload = b"x"
        bad.packet.metadata.add(metadata_id=1, value=b"\xff\xff")
        s.send(bad)
        err = s.recv().error
        assert err.canonical_code == rpc_code.INVALID_ARGUMENT
        assert err.packet_out.packet_out.payload == b"x"
        assert device.injected.empty()
    finally:
        s.close()


def test_digests_after_configuration(stub: p4r_grpc.P4RuntimeStub, ready: FakePipeline) -> None:
    s = Stream(stub)
    try:
        s.arbitrate(1)
        s.recv()
        write(stub, upd(U.INSERT, digest_entry=p4r.DigestEntry(digest_id=LEARN)), election=1)
        with ready.lock:
            ready.digests.append(DigestMessage("learn_t", (0xAABB, 3)))
        dl = s.recv().digest
        assert dl.digest_id == LEARN
        (data,) = dl.data
        assert [m.bitstring for m in data.struct.members] == [b"\xaa\xbb", b"\x03"]
        ack = p4r.StreamMessageRequest()
        ack.digest_ack.digest_id = LEARN
        ack.digest_ack.list_id = dl.list_id
        s.send(ack)
        (cfg,) = read(stub, digest_entry=p4r.DigestEntry())
        assert cfg.digest_entry.digest_id == LEARN
    finally:
        s.close()


def test_packet_out_from_backup_is_dropped(
    stub: p4r_grpc.P4RuntimeStub, ready: FakePipeline, device: FakeDevice
) -> None:
    p, b = Stream(stub), Stream(stub)
    try:
        p.arbitrate(2)
        p.recv()
        b.arbitrate(1)
        assert _status(b.recv()) == (rpc_code.ALREADY_EXISTS, 2)
        m = p4r.StreamMessageRequest()
        m.packet.payload = b"z"
        m.packet.metadata.add(metadata_id=1, value=b"\x01")
        m.packet.metadata.add(metadata_id=2, value=b"\x00")
        b.send(m)
        p.send(m)  # the primary's copy is injected; the backup's was dropped before it
        assert device.injected.get(timeout=5)[1].endswith(b"z")
        assert device.injected.empty()
    finally:
        p.close()
        b.close()


def test_wildcard_read_of_kinds_without_objects(
    stub: p4r_grpc.P4RuntimeStub, ready: FakePipeline
) -> None:
    assert read(stub, meter_entry=p4r.MeterEntry()) == []
    with pytest.raises(grpc.RpcError) as exc:
        read(stub, meter_entry=p4r.MeterEntry(meter_id=0x14000001))
    assert exc.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_entry_metadata_is_kept(stub: p4r_grpc.P4RuntimeStub, ready: FakePipeline) -> None:
    te = fwd_entry(1)
    te.metadata = b"cookie-1"
    write(stub, upd(U.INSERT, table_entry=te))
    (got,) = read(stub, table_entry=p4r.TableEntry(table_id=FWD))
    assert got.table_entry.metadata == b"cookie-1"
    write(stub, upd(U.MODIFY, table_entry=fwd_entry(1)))
    (got,) = read(stub, table_entry=p4r.TableEntry(table_id=FWD))
    assert got.table_entry.metadata == b""


def test_connection_limit(stub: p4r_grpc.P4RuntimeStub, ready: FakePipeline) -> None:
    streams = [Stream(stub) for _ in range(17)]
    try:
        for i, s in enumerate(streams[:16]):
            s.arbitrate(i + 1)
            assert s.recv().HasField("arbitration")
        streams[16].arbitrate(100)
        err = streams[16].recv()
        assert isinstance(err, grpc.RpcError)
        assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    finally:
        for s in streams:
            s.close()


def test_const_default_action_cannot_change(
    stub: p4r_grpc.P4RuntimeStub, device: FakeDevice
) -> None:
    cfg = pipeline_config()
    for t in cfg.p4info.tables:
        if t.preamble.id == ACL:
            t.const_default_action_id = NOACTION
    stub.SetForwardingPipelineConfig(
        SET(device_id=0, action=SET.VERIFY_AND_COMMIT, config=cfg), timeout=5
    )
    d = p4r.TableEntry(table_id=ACL, is_default_action=True)
    d.action.action.action_id = DROP
    with pytest.raises(grpc.RpcError) as exc:
        write(stub, upd(U.MODIFY, table_entry=d))
    assert batch_errors(exc.value)[0][0] == rpc_code.PERMISSION_DENIED
    assert device.pipeline.table_get_default("MyIngress.acl") == ActionCall("NoAction")


def test_only_the_primary_sets_the_pipeline(stub: p4r_grpc.P4RuntimeStub) -> None:
    s = Stream(stub)
    try:
        s.arbitrate(5)
        s.recv()
        with pytest.raises(grpc.RpcError) as exc:
            set_pipeline(stub, election=4)
        assert exc.value.code() == grpc.StatusCode.PERMISSION_DENIED
        set_pipeline(stub, election=5)
    finally:
        s.close()


def test_digest_lists_respect_max_list_size(
    stub: p4r_grpc.P4RuntimeStub, ready: FakePipeline
) -> None:
    s = Stream(stub)
    try:
        s.arbitrate(1)
        s.recv()
        de = p4r.DigestEntry(digest_id=LEARN)
        de.config.max_list_size = 2
        write(stub, upd(U.INSERT, digest_entry=de), election=1)
        with ready.lock:
            ready.digests.extend(DigestMessage("learn_t", (i, 1)) for i in range(3))
        first, second = s.recv().digest, s.recv().digest
        assert [len(first.data), len(second.data)] == [2, 1]
        assert second.list_id == first.list_id + 1
        values = [
            int.from_bytes(d.struct.members[0].bitstring, "big")
            for d in (*first.data, *second.data)
        ]
        assert values == [0, 1, 2]
        write(stub, upd(U.DELETE, digest_entry=p4r.DigestEntry(digest_id=LEARN)), election=1)
        assert read(stub, digest_entry=p4r.DigestEntry()) == []
    finally:
        s.close()


def test_p4info_with_dangling_digest_type_is_rejected(stub: p4r_grpc.P4RuntimeStub) -> None:
    cfg = pipeline_config()
    del cfg.p4info.type_info.structs["learn_t"]
    with pytest.raises(grpc.RpcError) as exc:
        stub.SetForwardingPipelineConfig(
            SET(device_id=0, action=SET.VERIFY_AND_COMMIT, config=cfg), timeout=5
        )
    assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "learn_t" in exc.value.details()


def test_a_write_stops_where_its_client_stops_being_primary(
    stub: p4r_grpc.P4RuntimeStub, ready: FakePipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Write is applied in chunks (so Reads answer during a large one); a client that
    loses primary between two chunks must not write the rest: those updates fail with
    PERMISSION_DENIED and only the new primary writes from then on."""
    from p4reduce.softswitch.p4runtime import service

    chunk = 8  # small chunks: every update's error fits in the status trailer
    monkeypatch.setattr(service, "WRITE_CHUNK", chunk)

    s10, s20 = Stream(stub), Stream(stub)
    insert = ready.table_insert
    taken = threading.Event()

    def insert_then_lose_primary(table: str, entry: Any) -> None:
        insert(table, entry)
        if not taken.is_set() and sum(len(t) for t in ready.entries.values()) == chunk:
            taken.set()  # after the first chunk's last update: another client takes over
            s20.arbitrate(20)
            assert _status(s20.recv()) == (rpc_code.OK, 20)

    try:
        s10.arbitrate(10)
        assert _status(s10.recv()) == (rpc_code.OK, 10)
        ready.table_insert = insert_then_lose_primary  # type: ignore[method-assign]
        n = 2 * chunk + 3
        with pytest.raises(grpc.RpcError) as exc:
            write(stub, *[upd(U.INSERT, table_entry=fwd_entry(i + 1)) for i in range(n)], election=10)
        codes = [code for code, _ in batch_errors(exc.value)]
        assert codes == [rpc_code.OK] * chunk + [rpc_code.PERMISSION_DENIED] * (n - chunk)
        assert sum(len(t) for t in ready.entries.values()) == chunk
    finally:
        s10.close()
        s20.close()
