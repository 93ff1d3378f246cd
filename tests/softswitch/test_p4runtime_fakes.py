"""Shared helpers for the P4Runtime tests (no tests here): a dict-backed fake pipeline
implementing the control.py Protocol, a fake device, and a hand-written P4Info. They let
the server be tested on its own, independently of the compiler and the runtime."""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any

import grpc
from finsy.proto import p4i, p4r, p4r_grpc

from p4reduce.softswitch.runtime.control import (
    ActionCall,
    AlreadyExistsError,
    CloneSession,
    CounterValue,
    DigestMessage,
    FieldMatch,
    InvalidArgumentError,
    NotFoundError,
    Replica,
    TableEntry,
)

TABLES = {"MyIngress.fwd": "NoAction", "MyIngress.acl": "NoAction"}
COUNTERS = {"MyIngress.pkts": 4}
REGISTERS = {"MyIngress.r": 8}


class FakePipeline:
    def __init__(self, ir: dict[str, Any]) -> None:
        if ir.get("fail"):
            raise ValueError("IR rejected on purpose")
        self.names: list[str] = list(ir.get("tables", TABLES))
        self.entries: dict[str, dict[tuple[Any, ...], TableEntry]] = {n: {} for n in self.names}
        self.defaults = {n: ActionCall("NoAction") for n in self.names}
        self.direct: dict[tuple[Any, ...], CounterValue] = {}
        self.groups: dict[int, tuple[Replica, ...]] = {}
        self.sessions: dict[int, CloneSession] = {}
        self.counters = {n: [CounterValue()] * s for n, s in COUNTERS.items()}
        self.registers = {n: [0] * s for n, s in REGISTERS.items()}
        self.digests: list[DigestMessage] = []
        self.lock = threading.Lock()

    def _t(self, table: str) -> dict[tuple[Any, ...], TableEntry]:
        if table not in self.entries:
            raise NotFoundError(f"no table {table}")
        return self.entries[table]

    def table_insert(self, table: str, entry: TableEntry) -> None:
        t = self._t(table)
        k = (entry.keys, entry.priority)
        if k in t:
            raise AlreadyExistsError("entry exists")
        if entry.action.action == "MyIngress.bad":
            raise InvalidArgumentError("bad action")
        t[k] = entry

    def table_modify(self, table: str, entry: TableEntry) -> None:
        t = self._t(table)
        k = (entry.keys, entry.priority)
        if k not in t:
            raise NotFoundError("no such entry")
        t[k] = entry

    def table_delete(self, table: str, keys: tuple[FieldMatch, ...], priority: int) -> None:
        t = self._t(table)
        if (keys, priority) not in t:
            raise NotFoundError("no such entry")
        del t[(keys, priority)]

    def table_entries(self, table: str) -> list[TableEntry]:
        return list(self._t(table).values())

    def table_set_default(self, table: str, action: ActionCall) -> None:
        self._t(table)
        self.defaults[table] = action

    def table_reset_default(self, table: str) -> None:
        self.defaults[table] = ActionCall("NoAction")

    def table_get_default(self, table: str) -> ActionCall:
        return self.defaults[table]

    def table_names(self) -> list[str]:
        return list(self.names)

    def direct_counter_read(
        self, table: str, keys: tuple[FieldMatch, ...], priority: int
    ) -> CounterValue:
        if (keys, priority) not in self._t(table):
            raise NotFoundError("no such entry")
        return self.direct.get((table, keys, priority), CounterValue())

    def direct_counter_write(
        self, table: str, keys: tuple[FieldMatch, ...], priority: int, value: CounterValue
    ) -> None:
        if (keys, priority) not in self._t(table):
            raise NotFoundError("no such entry")
        self.direct[(table, keys, priority)] = value

    def mc_group_set(self, group: int, replicas: tuple[Replica, ...]) -> None:
        self.groups[group] = replicas

    def mc_group_delete(self, group: int) -> None:
        del self.groups[group]

    def mc_groups(self) -> dict[int, tuple[Replica, ...]]:
        return dict(self.groups)

    def clone_session_set(self, session: CloneSession) -> None:
        self.sessions[session.session_id] = session

    def clone_session_delete(self, session_id: int) -> None:
        del self.sessions[session_id]

    def clone_sessions(self) -> dict[int, CloneSession]:
        return dict(self.sessions)

    def counter_read(self, name: str, index: int) -> CounterValue:
        return self.counters[name][index]

    def counter_write(self, name: str, index: int, value: CounterValue) -> None:
        self.counters[name][index] = value

    def counter_size(self, name: str) -> int:
        return len(self.counters[name])

    def register_read(self, name: str, index: int) -> int:
        return self.registers[name][index]

    def register_write(self, name: str, index: int, value: int) -> None:
        self.registers[name][index] = value

    def register_size(self, name: str) -> int:
        return len(self.registers[name])

    def take_digests(self) -> list[DigestMessage]:
        with self.lock:
            out, self.digests = self.digests, []
        return out


class FakeDevice:
    def __init__(self, device_id: int = 0, cpu_port: int | None = 64) -> None:
        self.device_id = device_id
        self.cpu_port = cpu_port
        self.pipeline: Any = None
        self.injected: queue.Queue[tuple[int, bytes]] = queue.Queue()
        self.sink: Callable[[bytes], None] | None = None

    def set_pipeline(self, pipe: Any) -> None:
        self.pipeline = pipe

    def inject(self, number: int, frame: bytes) -> None:
        self.injected.put((number, frame))

    def set_cpu_sink(self, callback: Callable[[bytes], None] | None) -> None:
        self.sink = callback


def _preamble(obj: Any, id_: int, name: str) -> None:
    obj.preamble.id = id_
    obj.preamble.name = name
    obj.preamble.alias = name.split(".")[-1]


# ids with the P4Runtime type prefixes (p4info P4Ids)
FWD, ACL = 0x02000001, 0x02000002
NOACTION, SET_PORT, DROP = 0x01000001, 0x01000002, 0x01000003
PKTS, R, DC = 0x12000001, 0x16000001, 0x13000001
PIN, POUT = 0x04000001, 0x04000002
LEARN = 0x17000001


def make_p4info() -> p4i.P4Info:
    info = p4i.P4Info()
    info.pkg_info.arch = "v1model"
    a = info.actions.add()
    _preamble(a, NOACTION, "NoAction")
    a = info.actions.add()
    _preamble(a, SET_PORT, "MyIngress.set_port")
    a.params.add(id=1, name="port", bitwidth=9)
    a = info.actions.add()
    _preamble(a, DROP, "MyIngress.drop")
    t = info.tables.add()
    _preamble(t, FWD, "MyIngress.fwd")
    t.match_fields.add(id=1, name="hdr.eth.dst", bitwidth=48, match_type=p4i.MatchField.EXACT)
    t.action_refs.add(id=SET_PORT)
    t.action_refs.add(id=DROP)
    t.action_refs.add(id=NOACTION, scope=p4i.ActionRef.DEFAULT_ONLY)
    t.direct_resource_ids.append(DC)
    t.size = 1024
    t = info.tables.add()
    _preamble(t, ACL, "MyIngress.acl")
    t.match_fields.add(id=1, name="hdr.ip.dst", bitwidth=32, match_type=p4i.MatchField.LPM)
    t.match_fields.add(id=2, name="hdr.udp.dport", bitwidth=16, match_type=p4i.MatchField.TERNARY)
    t.action_refs.add(id=DROP)
    t.action_refs.add(id=NOACTION)
    t.size = 64
    dc = info.direct_counters.add()
    _preamble(dc, DC, "MyIngress.fwd_counter")
    dc.spec.unit = p4i.CounterSpec.BOTH
    dc.direct_table_id = FWD
    c = info.counters.add()
    _preamble(c, PKTS, "MyIngress.pkts")
    c.spec.unit = p4i.CounterSpec.BOTH
    c.size = 4
    r = info.registers.add()
    _preamble(r, R, "MyIngress.r")
    r.type_spec.bitstring.bit.bitwidth = 32
    r.size = 8
    for id_, name in ((PIN, "packet_in"), (POUT, "packet_out")):
        m = info.controller_packet_metadata.add()
        _preamble(m, id_, name)
        m.metadata.add(id=1, name="port", bitwidth=9)
        m.metadata.add(id=2, name="_pad", bitwidth=7)
    d = info.digests.add()
    _preamble(d, LEARN, "learn_t")
    d.type_spec.struct.name = "learn_t"
    st = info.type_info.structs["learn_t"]
    mem = st.members.add(name="mac")
    mem.type_spec.bitstring.bit.bitwidth = 48
    mem = st.members.add(name="port")
    mem.type_spec.bitstring.bit.bitwidth = 9
    return info


DEVICE_CONFIG = json.dumps({"tables": list(TABLES)}).encode()


def pipeline_config(cookie: int = 7) -> p4r.ForwardingPipelineConfig:
    cfg = p4r.ForwardingPipelineConfig(p4info=make_p4info(), p4_device_config=DEVICE_CONFIG)
    cfg.cookie.cookie = cookie
    return cfg


def set_pipeline(stub: p4r_grpc.P4RuntimeStub, election: int = 0) -> None:
    req = p4r.SetForwardingPipelineConfigRequest(
        device_id=0,
        action=p4r.SetForwardingPipelineConfigRequest.VERIFY_AND_COMMIT,
        config=pipeline_config(),
    )
    if election:
        req.election_id.low = election
    stub.SetForwardingPipelineConfig(req, timeout=5)


class Stream:
    """A StreamChannel client: send() messages, recv() responses (bounded wait)."""

    def __init__(self, stub: p4r_grpc.P4RuntimeStub) -> None:
        self._q: queue.Queue[p4r.StreamMessageRequest | None] = queue.Queue()
        self.responses = stub.StreamChannel(self._gen())
        self._in: queue.Queue[Any] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _gen(self) -> Iterator[p4r.StreamMessageRequest]:
        while (m := self._q.get()) is not None:
            yield m

    def _pump(self) -> None:
        try:
            for r in self.responses:
                self._in.put(r)
        except grpc.RpcError as err:
            self._in.put(err)

    def send(self, msg: p4r.StreamMessageRequest) -> None:
        self._q.put(msg)

    def arbitrate(self, election: int, device_id: int = 0) -> None:
        m = p4r.StreamMessageRequest()
        m.arbitration.device_id = device_id
        m.arbitration.election_id.low = election
        self.send(m)

    def recv(self, timeout: float = 5.0) -> Any:
        return self._in.get(timeout=timeout)

    def close(self) -> None:
        self._q.put(None)
        self.responses.cancel()
