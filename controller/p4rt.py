"""The controller's P4Runtime connection to one switch (softswitch or BMv2).

Transport is finsy's generated P4Runtime stubs (`finsy.proto`) used synchronously: the
controller's API is a threaded gRPC server, and finsy's asyncio `Switch` would need its
own event loop thread for every call; the stubs keep one simple blocking path.
Only what BMv2's PI server offers is used: arbitration, pipeline config, table entries,
multicast groups and indexed counters; never registers.
"""

from __future__ import annotations

import hashlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from finsy.proto import p4i, p4r, p4r_grpc
from google.protobuf import text_format  # type: ignore[import-untyped]

from p4reduce import contract as n
from p4reduce.controller.backend import SwitchStatus, Update
from p4reduce.controller.entities import Replicas, Row
from p4reduce.controller.errors import ControllerError, InvalidArgument, NotPrimary, SwitchError

log = logging.getLogger("p4reduce.controller.p4rt")


def encode(value: int) -> bytes:
    """Canonical P4Runtime bytestring: shortest big-endian form, zero as one byte."""
    return value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big")


def to_u128(value: int) -> p4r.Uint128:
    return p4r.Uint128(high=value >> 64, low=value & ((1 << 64) - 1))


def from_u128(msg: p4r.Uint128) -> int:
    return (int(msg.high) << 64) | int(msg.low)


@dataclass(frozen=True)
class TableIds:
    id: int
    field_ids: tuple[int, ...]


@dataclass(frozen=True)
class ActionIds:
    id: int
    param_ids: tuple[int, ...]


class P4InfoIndex:
    """Names to ids and back for the entities the controller touches."""

    def __init__(self, info: p4i.P4Info) -> None:
        self.info = info
        self.tables = {
            t.preamble.name: TableIds(t.preamble.id, tuple(f.id for f in t.match_fields))
            for t in info.tables
        }
        self.actions = {
            a.preamble.name: ActionIds(a.preamble.id, tuple(p.id for p in a.params))
            for a in info.actions
        }
        self.counters = {c.preamble.name: c.preamble.id for c in info.counters}
        self.table_names = {v.id: k for k, v in self.tables.items()}
        self.action_names = {v.id: k for k, v in self.actions.items()}

    def table(self, name: str) -> TableIds:
        try:
            return self.tables[name]
        except KeyError:
            raise InvalidArgument(f"the pipeline's P4Info has no table {name}") from None

    def action(self, name: str) -> ActionIds:
        try:
            return self.actions[name]
        except KeyError:
            raise InvalidArgument(f"the pipeline's P4Info has no action {name}") from None

    def counter(self, name: str) -> int:
        try:
            return int(self.counters[name])
        except KeyError:
            raise InvalidArgument(f"the pipeline's P4Info has no counter {name}") from None


def load_p4info(path: Path) -> p4i.P4Info:
    try:
        data = path.read_bytes()
    except OSError as e:
        raise InvalidArgument(
            f"cannot read P4Info {path}: {e.strerror} (build it with `make p4`, or pass --p4info)"
        ) from None
    info = p4i.P4Info()
    try:
        if path.suffix in (".bin", ".pb"):
            info.ParseFromString(data)
        else:
            text_format.Parse(data.decode(), info)
    except Exception as e:
        raise InvalidArgument(f"{path} is not a P4Info: {e}") from None
    return info


class P4RuntimeSwitch:
    """Primary-or-backup client of one device; implements `SwitchBackend`."""

    def __init__(
        self,
        address: str,
        device_id: int = 0,
        election_id: int = 1,
        connect_timeout: float = 10.0,
    ) -> None:
        self.address = address
        self.device_id = device_id
        self.election_id = election_id
        self._primary = False
        self._primary_id: int | None = None
        self._arbitrated = threading.Event()
        self._closed = False
        self._stream_error: str | None = None
        self._stream_code: grpc.StatusCode | None = None
        # gRPC's reconnect backoff grows to minutes; a restarted switch must be found
        # again within a second or so
        self._channel = grpc.insecure_channel(address, options=[
            ("grpc.initial_reconnect_backoff_ms", 200),
            ("grpc.min_reconnect_backoff_ms", 200),
            ("grpc.max_reconnect_backoff_ms", 1000),
        ])
        self._stub = p4r_grpc.P4RuntimeStub(self._channel)
        self._out: queue.Queue[p4r.StreamMessageRequest | None] = queue.Queue()
        self.index: P4InfoIndex | None = None
        self.cookie: int | None = None
        self.pipeline_note = "none"
        self._pipeline: tuple[p4i.P4Info, bytes] | None = None
        # Arbitration changes and the stream's end bump `generation` and call `on_change`
        # (from the stream thread), so the serve loop reacts at once: a short takeover by
        # another client (primary lost and regained between two looks) is still seen.
        self.generation = 0
        self.on_change: Callable[[], None] | None = None
        # whether the last ensure_pipeline pushed (the switch's registers are then fresh)
        self.pushed = False
        try:
            grpc.channel_ready_future(self._channel).result(timeout=connect_timeout)
        except grpc.FutureTimeoutError:
            self._channel.close()
            raise SwitchError(f"cannot reach the P4Runtime server at {address}") from None
        deadline = time.monotonic() + connect_timeout
        while True:
            err = self._arbitrate(max(0.1, deadline - time.monotonic()))
            if err is None:
                break
            # A restarted controller can race the switch noticing that its previous
            # incarnation (same election id) has gone: retry that case until the deadline.
            clash = self._stream_code == grpc.StatusCode.INVALID_ARGUMENT
            if not clash or time.monotonic() >= deadline:
                self.close()
                raise SwitchError(f"arbitration with {address} failed: {err}")
            time.sleep(0.2)

    def _arbitrate(self, timeout: float) -> str | None:
        """Open the stream and send our election id; None once the switch has answered."""
        self._out = queue.Queue()
        self._arbitrated = threading.Event()
        self._stream_error = None
        self._stream_code = None
        stream = self._stub.StreamChannel(self._requests(self._out))
        self._reader = threading.Thread(
            target=self._read_stream,
            args=(stream, self._arbitrated),
            daemon=True,
            name="p4rt-stream",
        )
        self._reader.start()
        self._out.put(
            p4r.StreamMessageRequest(
                arbitration=p4r.MasterArbitrationUpdate(
                    device_id=self.device_id, election_id=to_u128(self.election_id)
                )
            )
        )
        if not self._arbitrated.wait(timeout):
            return "no arbitration answer"
        if self._stream_error is not None and self._primary_id is None:
            self._out.put(None)
            return self._stream_error
        return None

    # stream ----------------------------------------------------------------------
    @staticmethod
    def _requests(
        out: queue.Queue[p4r.StreamMessageRequest | None],
    ) -> Iterator[p4r.StreamMessageRequest]:
        while True:
            msg = out.get()
            if msg is None:
                return
            yield msg

    def _read_stream(self, stream: Any, arbitrated: threading.Event) -> None:
        try:
            for resp in stream:
                if resp.HasField("arbitration"):
                    arb = resp.arbitration
                    was = (self._primary, self._primary_id)
                    self._primary = arb.status.code == 0
                    self._primary_id = (
                        from_u128(arb.election_id) if arb.HasField("election_id") else None
                    )
                    log.info("arbitration: %s", "primary" if self._primary else "backup")
                    arbitrated.set()
                    if (self._primary, self._primary_id) != was:
                        self._changed()
        except grpc.RpcError as e:
            if not self._closed:
                self._stream_code = e.code()
                self._stream_error = e.details() or str(e.code())
                log.warning("P4Runtime stream to %s ended: %s", self.address, self._stream_error)
        else:
            if not self._closed:
                self._stream_error = "the switch closed the stream"
        self._primary = False
        arbitrated.set()
        if not self._closed:
            self._changed()

    def _changed(self) -> None:
        self.generation += 1
        callback = self.on_change
        if callback is not None:
            callback()

    def close(self) -> None:
        self._closed = True
        self._out.put(None)
        self._channel.close()

    def is_primary(self) -> bool:
        return self._primary

    def _fail(self, what: str, e: grpc.RpcError) -> ControllerError:
        code = e.code()
        if code == grpc.StatusCode.PERMISSION_DENIED:
            return NotPrimary(f"{what} refused by the switch: this controller is not primary")
        return SwitchError(f"{what} failed on switch {self.address}: {code.name}: {e.details()}")

    # pipeline --------------------------------------------------------------------
    def ensure_pipeline(self, info: p4i.P4Info, device_config: bytes, push: bool = True) -> bool:
        """Push the pipeline unless the switch already runs this exact one (same cookie):
        re-pushing would wipe the tables and the aggregation registers of running jobs.
        Returns whether it pushed."""
        cookie = (
            int.from_bytes(
                hashlib.sha256(info.SerializeToString(deterministic=True) + device_config).digest()[
                    :8
                ],
                "big",
            )
            or 1
        )
        self.index = P4InfoIndex(info)
        self.cookie = cookie
        self._pipeline = (info, device_config)
        current = self._current_cookie()
        self.pushed = False
        if current == cookie:
            self.pipeline_note = f"cookie {cookie:#018x} (already installed)"
            return False
        if not push or not self._primary:
            self.pipeline_note = (
                f"switch runs cookie {current:#018x}" if current is not None else "no pipeline"
            ) + " (not pushed: backup)"
            return False
        req = p4r.SetForwardingPipelineConfigRequest(
            device_id=self.device_id,
            election_id=to_u128(self.election_id),
            action=p4r.SetForwardingPipelineConfigRequest.VERIFY_AND_COMMIT,
            config=p4r.ForwardingPipelineConfig(
                p4info=info,
                p4_device_config=device_config,
                cookie=p4r.ForwardingPipelineConfig.Cookie(cookie=cookie),
            ),
        )
        try:
            self._stub.SetForwardingPipelineConfig(req, timeout=60)
        except grpc.RpcError as e:
            raise self._fail("pipeline push", e) from None
        self.pipeline_note = f"cookie {cookie:#018x} (pushed)"
        self.pushed = True
        return True

    def refresh_pipeline(self) -> bool:
        """Re-check the pipeline after a promotion to primary (a backup never pushes)."""
        if self._pipeline is None:
            return False
        return self.ensure_pipeline(*self._pipeline)

    def alive(self) -> bool:
        """False once the stream to the switch has ended (switch restarted or gone)."""
        return self._stream_error is None and not self._closed

    def _current_cookie(self) -> int | None:
        req = p4r.GetForwardingPipelineConfigRequest(
            device_id=self.device_id,
            response_type=p4r.GetForwardingPipelineConfigRequest.COOKIE_ONLY,
        )
        try:
            resp = self._stub.GetForwardingPipelineConfig(req, timeout=10)
        except grpc.RpcError as e:
            if e.code() == grpc.StatusCode.FAILED_PRECONDITION:
                return None
            raise self._fail("reading the pipeline", e) from None
        if not resp.config.HasField("cookie"):
            return None
        return int(resp.config.cookie.cookie)

    def _idx(self) -> P4InfoIndex:
        if self.index is None:
            raise SwitchError("no pipeline: ensure_pipeline() was not called")
        return self.index

    # reads -----------------------------------------------------------------------
    def _read(self, entities: list[p4r.Entity]) -> list[p4r.Entity]:
        req = p4r.ReadRequest(device_id=self.device_id, entities=entities)
        out: list[p4r.Entity] = []
        try:
            for resp in self._stub.Read(req, timeout=30):
                out.extend(resp.entities)
        except grpc.RpcError as e:
            raise self._fail("read", e) from None
        return out

    def read_rows(self, tables: tuple[str, ...]) -> list[Row]:
        idx = self._idx()
        ents = [p4r.Entity(table_entry=p4r.TableEntry(table_id=idx.table(t).id)) for t in tables]
        rows: list[Row] = []
        for e in self._read(ents):
            te = e.table_entry
            if te.is_default_action:
                continue
            name = idx.table_names.get(te.table_id)
            if name is None:
                continue
            order = idx.tables[name].field_ids
            by_id = {m.field_id: int.from_bytes(m.exact.value, "big") for m in te.match}
            keys = tuple(by_id.get(fid, 0) for fid in order)
            act = te.action.action
            aname = idx.action_names.get(act.action_id, f"#{act.action_id}")
            pids = idx.actions[aname].param_ids if aname in idx.actions else ()
            pv = {p.param_id: int.from_bytes(p.value, "big") for p in act.params}
            rows.append(
                Row(name, keys, aname, tuple(pv.get(pid, 0) for pid in pids), bytes(te.metadata))
            )
        return rows

    def read_groups(self) -> dict[int, Replicas]:
        ent = p4r.Entity(
            packet_replication_engine_entry=p4r.PacketReplicationEngineEntry(
                multicast_group_entry=p4r.MulticastGroupEntry()
            )
        )
        out: dict[int, Replicas] = {}
        for e in self._read([ent]):
            g = e.packet_replication_engine_entry.multicast_group_entry
            out[g.multicast_group_id] = frozenset(
                (int.from_bytes(r.port, "big") if r.port else r.egress_port, r.instance)
                for r in g.replicas
            )
        return out

    def read_counters(self, keys: list[tuple[str, int]]) -> dict[tuple[str, int], tuple[int, int]]:
        """(packets, bytes) of many indexed counter cells in one Read request."""
        idx = self._idx()
        names = {idx.counter(name): name for name, _ in keys}
        ents = [
            p4r.Entity(
                counter_entry=p4r.CounterEntry(
                    counter_id=idx.counter(name), index=p4r.Index(index=i)
                )
            )
            for name, i in keys
        ]
        out = dict.fromkeys(keys, (0, 0))
        if not ents:
            return out
        for e in self._read(ents):
            c = e.counter_entry
            key = (names.get(c.counter_id, ""), int(c.index.index))
            if key in out:
                out[key] = (int(c.data.packet_count), int(c.data.byte_count))
        return out

    def read_counter(self, name: str, index: int) -> tuple[int, int]:
        return self.read_counters([(name, index)])[(name, index)]

    def reset_counters(self, keys: list[tuple[str, int]]) -> None:
        """Zero indexed counter cells (a new job's per-job counters), in one Write."""
        if not keys:
            return
        if not self._primary:
            raise NotPrimary("this controller is not the primary client of the switch")
        idx = self._idx()
        updates = [
            p4r.Update(
                type=p4r.Update.MODIFY,
                entity=p4r.Entity(
                    counter_entry=p4r.CounterEntry(
                        counter_id=idx.counter(name),
                        index=p4r.Index(index=i),
                        data=p4r.CounterData(packet_count=0, byte_count=0),
                    )
                ),
            )
            for name, i in keys
        ]
        req = p4r.WriteRequest(
            device_id=self.device_id,
            election_id=to_u128(self.election_id),
            updates=updates,
            atomicity=p4r.WriteRequest.CONTINUE_ON_ERROR,
        )
        try:
            self._stub.Write(req, timeout=30)
        except grpc.RpcError as e:
            raise self._fail(f"reset of {len(keys)} counters", e) from None

    def program_limits(self) -> tuple[int, int] | None:
        """(slots, values per packet) of the program in the P4Info: half the size of the
        tag register (each slot has a shadow pair) and the number of lane registers.
        None when the P4Info lacks them (not the aggregation program)."""
        info = self._pipeline[0] if self._pipeline is not None else None
        if info is None:
            return None
        sizes = {r.preamble.name: int(r.size) for r in info.registers}
        if n.REGISTER_TAG not in sizes:
            return None
        k = 0
        while n.lane_register(k) in sizes:
            k += 1
        return sizes[n.REGISTER_TAG] // 2, k

    # writes ----------------------------------------------------------------------
    def _entity(self, u: Update) -> p4r.Entity:
        idx = self._idx()
        if u.row is not None:
            r = u.row
            t = idx.table(r.table)
            a = idx.action(r.action)
            te = p4r.TableEntry(
                table_id=t.id,
                match=[
                    p4r.FieldMatch(field_id=fid, exact=p4r.FieldMatch.Exact(value=encode(v)))
                    for fid, v in zip(t.field_ids, r.keys, strict=True)
                ],
            )
            if u.kind != "delete" and r.owner:
                te.metadata = r.owner
            if u.kind != "delete":
                te.action.action.CopyFrom(
                    p4r.Action(
                        action_id=a.id,
                        params=[
                            p4r.Action.Param(param_id=pid, value=encode(v))
                            for pid, v in zip(a.param_ids, r.args, strict=True)
                        ],
                    )
                )
            return p4r.Entity(table_entry=te)
        assert u.group is not None
        gid, reps = u.group
        g = p4r.MulticastGroupEntry(multicast_group_id=gid)
        if u.kind != "delete":
            for port, inst in sorted(reps):
                g.replicas.add(egress_port=port, instance=inst)
        return p4r.Entity(
            packet_replication_engine_entry=p4r.PacketReplicationEngineEntry(
                multicast_group_entry=g
            )
        )

    def write(self, updates: list[Update]) -> None:
        if not self._primary:
            raise NotPrimary("this controller is not the primary client of the switch")
        kinds = {
            "insert": p4r.Update.INSERT,
            "modify": p4r.Update.MODIFY,
            "delete": p4r.Update.DELETE,
        }
        # One batch per kind, in order: P4Runtime does not order updates inside a batch.
        for kind in ("delete", "modify", "insert"):
            batch = [
                p4r.Update(type=kinds[kind], entity=self._entity(u))
                for u in updates
                if u.kind == kind
            ]
            if not batch:
                continue
            req = p4r.WriteRequest(
                device_id=self.device_id,
                election_id=to_u128(self.election_id),
                updates=batch,
                atomicity=p4r.WriteRequest.CONTINUE_ON_ERROR,
            )
            try:
                self._stub.Write(req, timeout=30)
            except grpc.RpcError as e:
                raise self._fail(f"{kind} of {len(batch)} entities", e) from None

    def status(self) -> SwitchStatus:
        details = {"connected": "no" if self._stream_error else "yes"}
        if self._stream_error:
            details["stream error"] = self._stream_error
        return SwitchStatus(
            self.address,
            self.device_id,
            self._primary,
            self.election_id,
            self._primary_id,
            self.pipeline_note,
            details,
        )
