"""A small synchronous P4Runtime client on finsy's raw stubs: the one install path of the
pipeline tests, used unchanged against softswitch's server and against BMv2."""

from __future__ import annotations

import queue
from collections.abc import Iterator, Sequence
from typing import Any

import grpc
from finsy import (
    P4CounterEntry,
    P4MulticastGroupEntry,
    P4Schema,
    P4TableAction,
    P4TableEntry,
    P4TableMatch,
)
from finsy.p4entity import P4Replica
from finsy.proto import p4i, p4r, p4r_grpc

from tests.pipeline.case import DefaultAction, Entity, Entry, Group

_ELECTION = p4r.Uint128(high=0, low=1)


class P4RuntimeClient:
    """Primary controller of one device: arbitration, pipeline push, writes, counter reads."""

    def __init__(self, address: str, p4info: p4i.P4Info, device_id: int = 1) -> None:
        self.device_id = device_id
        self.schema = P4Schema(p4info)
        self._p4info = p4info
        self._channel = grpc.insecure_channel(address)
        self._stub = p4r_grpc.P4RuntimeStub(self._channel)
        self._requests: queue.Queue[p4r.StreamMessageRequest | None] = queue.Queue()
        self._stream = self._stub.StreamChannel(self._request_iter())
        self._requests.put(
            p4r.StreamMessageRequest(
                arbitration=p4r.MasterArbitrationUpdate(device_id=device_id, election_id=_ELECTION)
            )
        )
        reply = next(self._stream)
        if reply.arbitration.status.code != 0:
            raise RuntimeError(f"not primary on {address}: {reply.arbitration.status.message}")

    def _request_iter(self) -> Iterator[p4r.StreamMessageRequest]:
        while (item := self._requests.get()) is not None:
            yield item

    def set_pipeline(self, device_config: bytes) -> None:
        self._stub.SetForwardingPipelineConfig(
            p4r.SetForwardingPipelineConfigRequest(
                device_id=self.device_id,
                election_id=_ELECTION,
                action=p4r.SetForwardingPipelineConfigRequest.VERIFY_AND_COMMIT,
                config=p4r.ForwardingPipelineConfig(
                    p4info=self._p4info, p4_device_config=device_config
                ),
            ),
            timeout=30,
        )

    def encode(self, entity: Entity) -> tuple[Any, p4r.Entity]:
        """(update type, entity) of one case entity, by P4Info name."""
        if isinstance(entity, Entry):
            msg = P4TableEntry(
                entity.table,
                match=P4TableMatch(entity.match),
                action=P4TableAction(entity.action, **entity.params),
            ).encode(self.schema)
            return p4r.Update.INSERT, msg
        if isinstance(entity, DefaultAction):
            msg = P4TableEntry(
                entity.table,
                action=P4TableAction(entity.action, **entity.params),
                is_default_action=True,
            ).encode(self.schema)
            return p4r.Update.MODIFY, msg
        group = P4MulticastGroupEntry(
            entity.group_id,
            replicas=[P4Replica(port, instance=rid) for port, rid in entity.replicas],
        ).encode(self.schema)
        return p4r.Update.INSERT, group

    def write(self, entities: Sequence[Entity], *, modify: bool = False) -> None:
        updates = []
        for entity in entities:
            kind, msg = self.encode(entity)
            if modify and not isinstance(entity, Group | DefaultAction):
                kind = p4r.Update.MODIFY
            updates.append(p4r.Update(type=kind, entity=msg))
        if updates:
            self._stub.Write(
                p4r.WriteRequest(device_id=self.device_id, election_id=_ELECTION, updates=updates),
                timeout=30,
            )

    def counter(self, name: str, index: int) -> tuple[int, int]:
        """(packets, bytes) of one counter cell."""
        entity = P4CounterEntry(name, index=index).encode(self.schema)
        for reply in self._stub.Read(
            p4r.ReadRequest(device_id=self.device_id, entities=[entity]), timeout=30
        ):
            for got in reply.entities:
                data = got.counter_entry.data
                return int(data.packet_count), int(data.byte_count)
        raise LookupError(f"counter {name}[{index}] not returned by the device")

    def close(self) -> None:
        self._requests.put(None)
        self._stream.cancel()
        self._channel.close()
