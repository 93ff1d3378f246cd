"""Malformed P4Runtime input never crashes the server: random Write updates (ids, widths,
bytes, update types, replicas, counter and register entries) and random device configs
are answered with client-error statuses, never INTERNAL or a bare UNKNOWN, and the server
keeps serving the pipeline it had."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from finsy.proto import p4d, p4r, p4r_grpc, rpc_status
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from p4reduce.softswitch.p4runtime import RunningServer, serve
from p4reduce.softswitch.runtime import Device, MemoryPort
from tests.softswitch.test_p4runtime_softswitch import PROGRAM, _install

pytestmark = pytest.mark.timeout(300)

# what a client may be told about its own bad input; INTERNAL or UNKNOWN would be ours
CLIENT_CODES = {grpc.StatusCode[c].value[0] for c in (
    "OK", "INVALID_ARGUMENT", "NOT_FOUND", "ALREADY_EXISTS", "RESOURCE_EXHAUSTED",
    "UNIMPLEMENTED", "PERMISSION_DENIED", "FAILED_PRECONDITION", "OUT_OF_RANGE")}


@pytest.fixture(scope="module")
def live() -> Iterator[tuple[RunningServer, p4r_grpc.P4RuntimeStub, dict[str, int], Any]]:
    from p4reduce.softswitch.p4 import compile_source
    from p4reduce.softswitch.p4.p4info import emit

    ir = compile_source(PROGRAM, "fwd.p4")
    info = emit(ir)
    dev = Device(device_id=0, cpu_port=64)
    dev.add_port(1, MemoryPort())
    srv = serve(dev)
    with grpc.insecure_channel(srv.address) as ch:
        stub = p4r_grpc.P4RuntimeStub(ch)
        ids = _install(stub, (ir, info))
        yield srv, stub, ids, info
    srv.stop()


def _bytes() -> st.SearchStrategy[bytes]:
    return st.binary(min_size=0, max_size=12)


@st.composite
def updates(draw: st.DrawFn, ids: list[int]) -> p4r.Update:
    kind = draw(st.sampled_from(["table", "default", "group", "counter", "register", "empty"]))
    u = p4r.Update(type=draw(st.integers(0, 3)))
    some_id = st.one_of(st.sampled_from(ids), st.integers(0, 2**32 - 1))
    if kind in ("table", "default"):
        te = u.entity.table_entry
        te.table_id = draw(some_id)
        te.is_default_action = kind == "default"
        for _ in range(draw(st.integers(0, 3))):
            fm = te.match.add(field_id=draw(st.integers(0, 4)))
            which = draw(st.sampled_from(["exact", "lpm", "ternary", "range", "optional"]))
            if which == "exact":
                fm.exact.value = draw(_bytes())
            elif which == "lpm":
                fm.lpm.value, fm.lpm.prefix_len = draw(_bytes()), draw(st.integers(-5, 80))
            elif which == "ternary":
                fm.ternary.value, fm.ternary.mask = draw(_bytes()), draw(_bytes())
            elif which == "range":
                fm.range.low, fm.range.high = draw(_bytes()), draw(_bytes())
            else:
                fm.optional.value = draw(_bytes())
        if draw(st.booleans()):
            act = te.action.action
            act.action_id = draw(some_id)
            for _ in range(draw(st.integers(0, 3))):
                act.params.add(param_id=draw(st.integers(0, 4)), value=draw(_bytes()))
        te.priority = draw(st.integers(-3, 3))
    elif kind == "group":
        g = u.entity.packet_replication_engine_entry.multicast_group_entry
        g.multicast_group_id = draw(st.integers(0, 70_000))
        for _ in range(draw(st.integers(0, 4))):
            if draw(st.booleans()):
                g.replicas.add(egress_port=draw(st.integers(0, 2**32 - 1)),
                               instance=draw(st.integers(0, 2**32 - 1)))
            else:
                g.replicas.add(port=draw(_bytes()), instance=draw(st.integers(0, 3)))
    elif kind == "counter":
        ce = u.entity.counter_entry
        ce.counter_id = draw(some_id)
        if draw(st.booleans()):
            ce.index.index = draw(st.integers(-5, 10))
        ce.data.packet_count = draw(st.integers(-5, 2**40))
    elif kind == "register":
        re = u.entity.register_entry
        re.register_id = draw(some_id)
        if draw(st.booleans()):
            re.index.index = draw(st.integers(-5, 10))
        re.data.CopyFrom(p4d.P4Data(bitstring=draw(_bytes())))
    return u


def _codes(err: grpc.RpcError) -> list[int]:
    raw = dict(err.trailing_metadata() or ()).get("grpc-status-details-bin")
    if raw is None:
        return [err.code().value[0]]
    out = []
    for d in rpc_status.Status.FromString(raw).details:
        e = p4r.Error()
        assert d.Unpack(e)
        out.append(e.canonical_code)
    return out


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_random_writes_get_client_error_codes(
        live: tuple[RunningServer, p4r_grpc.P4RuntimeStub, dict[str, int], Any],
        data: st.DataObject) -> None:
    _, stub, ids, _ = live
    batch = data.draw(st.lists(updates(sorted(ids.values())), min_size=1, max_size=5))
    try:
        stub.Write(p4r.WriteRequest(device_id=0, updates=batch), timeout=10)
    except grpc.RpcError as e:
        assert e.code() in (grpc.StatusCode.UNKNOWN, grpc.StatusCode.INVALID_ARGUMENT), e
        codes = _codes(e)
        assert set(codes) <= CLIENT_CODES, (codes, e.details())
    q = p4r.ReadRequest(device_id=0)
    q.entities.add().table_entry.SetInParent()
    list(stub.Read(q, timeout=10))  # still serving


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(config=st.one_of(
    st.binary(max_size=64),
    st.recursive(st.none() | st.integers() | st.text(max_size=5),
                 lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=8), c,
                                                                     max_size=3),
                 max_leaves=20).map(lambda v: json.dumps(v).encode()),
))
def test_random_device_configs_are_invalid_arguments(
        live: tuple[RunningServer, p4r_grpc.P4RuntimeStub, dict[str, int], Any],
        config: bytes) -> None:
    _, stub, _, info = live
    req = p4r.SetForwardingPipelineConfigRequest(
        device_id=0, action=p4r.SetForwardingPipelineConfigRequest.VERIFY,
        config=p4r.ForwardingPipelineConfig(p4info=info, p4_device_config=config))
    with pytest.raises(grpc.RpcError) as exc:
        stub.SetForwardingPipelineConfig(req, timeout=30)
    assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT, exc.value.details()
