"""The P4Runtime gRPC service of softswitch: one device, PI-compatible behaviour.

Threading: gRPC runs handlers on a thread pool; packet-in callbacks come from the device's
port threads. One lock (`_lock`) serialises pipeline changes and writes, so a Write never
sees half a SetForwardingPipelineConfig; a Read holds it too, so it answers from one
consistent state. A long Write is applied WRITE_CHUNK updates at a time, and the lock is
handed over in arrival order (FairLock), so a Read or another call that arrives during a
Write of 20,000 entries is answered between two chunks, not after the whole Write (its
updates are independent: only CONTINUE_ON_ERROR is supported). Packet I/O and digests do
not take it: they only read references that are replaced whole.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, Protocol

import grpc
from finsy.proto import p4d, p4r, p4r_grpc, rpc_code, rpc_status

from p4reduce.softswitch.p4runtime import entities
from p4reduce.softswitch.p4runtime.arbitration import Arbitration, Connection, from_u128
from p4reduce.softswitch.p4runtime.errors import P4RTError, from_control, invalid, no_pipeline
from p4reduce.softswitch.p4runtime.fairlock import FairLock
from p4reduce.softswitch.p4runtime.packetio import build_packet_out, parse_packet_in
from p4reduce.softswitch.p4runtime.pipeline_config import (
    Loaded,
    PipelineFactory,
    default_factory,
    load,
)
from p4reduce.softswitch.p4runtime.schema import encode_bits
from p4reduce.softswitch.runtime.control import ControlError

LOG = logging.getLogger("p4reduce.softswitch.p4runtime")

P4RUNTIME_API_VERSION = "1.3.0"
WRITE_CHUNK = 256  # updates applied per hold of the service lock
_END = object()


class DeviceLike(Protocol):
    """What the service needs of `p4reduce.softswitch.runtime.Device`."""

    device_id: int
    cpu_port: int | None

    def set_pipeline(self, pipe: Any) -> None: ...
    def inject(self, number: int, frame: bytes) -> None: ...
    def set_cpu_sink(self, callback: Callable[[bytes], None] | None) -> None: ...


class _Abort:
    def __init__(self, err: P4RTError) -> None:
        self.err = err


def _abort(context: grpc.ServicerContext, err: P4RTError) -> None:
    context.abort(err.code, err.message)


class P4RuntimeService(p4r_grpc.P4RuntimeServicer):
    """The servicer for one device; `install` loads a pipeline without a client."""

    def __init__(self, device: DeviceLike, factory: PipelineFactory | None = None) -> None:
        self.device = device
        self.device_id = int(device.device_id)
        self._factory = factory or default_factory
        self._lock = FairLock()
        self._current: Loaded | None = None
        self._saved: Loaded | None = None
        self._digest_config: dict[int, p4r.DigestEntry.Config] = {}
        self._digest_list_id = 0
        self.arbitration = Arbitration(self.device_id)
        self._stop = threading.Event()
        device.set_cpu_sink(self._on_cpu_frame)
        self._digest_thread = threading.Thread(
            target=self._digest_loop, name="p4rt-digests", daemon=True
        )
        self._digest_thread.start()

    def close(self) -> None:
        self._stop.set()
        self.device.set_cpu_sink(None)
        self._digest_thread.join(timeout=2)

    # ---------------------------------------------------------------- helpers

    def _check_device(self, device_id: int) -> None:
        if device_id != self.device_id:
            raise P4RTError(grpc.StatusCode.NOT_FOUND, f"Invalid device id {device_id}")

    def _loaded(self) -> Loaded:
        if self._current is None:
            raise no_pipeline()
        return self._current

    def _writer(self, role: str, election: p4r.Uint128 | None) -> None:
        eid = from_u128(election) if election is not None else None
        self.arbitration.check_writer(role, eid)

    # ---------------------------------------------------------------- unary RPCs

    def Capabilities(
        self, request: p4r.CapabilitiesRequest, context: grpc.ServicerContext
    ) -> p4r.CapabilitiesResponse:
        return p4r.CapabilitiesResponse(p4runtime_api_version=P4RUNTIME_API_VERSION)

    def SetForwardingPipelineConfig(
        self, request: p4r.SetForwardingPipelineConfigRequest, context: grpc.ServicerContext
    ) -> p4r.SetForwardingPipelineConfigResponse:
        try:
            self._check_device(request.device_id)
            self._writer(
                request.role, request.election_id if request.HasField("election_id") else None
            )
            with self._lock:
                self._set_config(request)
        except P4RTError as err:
            _abort(context, err)
        except grpc.RpcError:
            raise
        except Exception as err:  # a server bug must not reach the client as a traceback
            LOG.exception("internal error while setting the pipeline")
            _abort(context, P4RTError(grpc.StatusCode.INTERNAL, f"internal error: {err}"))
        return p4r.SetForwardingPipelineConfigResponse()

    def _set_config(self, request: p4r.SetForwardingPipelineConfigRequest) -> None:
        A = p4r.SetForwardingPipelineConfigRequest
        action = request.action
        if action == A.COMMIT:
            if self._saved is None:
                raise P4RTError(
                    grpc.StatusCode.FAILED_PRECONDITION, "COMMIT without a saved config"
                )
            if request.config.HasField("cookie"):
                self._saved.config.cookie.CopyFrom(request.config.cookie)
            self._commit(self._saved)
            return
        if action not in (A.VERIFY, A.VERIFY_AND_SAVE, A.VERIFY_AND_COMMIT, A.RECONCILE_AND_COMMIT):
            raise invalid(f"unsupported SetForwardingPipelineConfig action {action}")
        cfg = p4r.ForwardingPipelineConfig()
        cfg.CopyFrom(request.config)
        loaded = load(cfg, self._factory)
        if action == A.VERIFY:
            return
        if action == A.VERIFY_AND_SAVE:
            self._saved = loaded
            return
        if action == A.RECONCILE_AND_COMMIT and self._current is not None:
            entities.reconcile(self._current, loaded)
        self._commit(loaded)

    def install(self, config: p4r.ForwardingPipelineConfig) -> None:
        """Load a pipeline as VERIFY_AND_COMMIT would, without a client (the CLI's
        --p4/--ir); raises P4RTError with the reason when the config is rejected."""
        with self._lock:
            self._commit(load(config, self._factory))

    def _commit(self, loaded: Loaded) -> None:
        self.device.set_pipeline(loaded.pipeline)
        self._current = loaded
        self._saved = None
        self._digest_config.clear()
        LOG.info("pipeline committed (%d tables)", len(loaded.schema.tables))

    def GetForwardingPipelineConfig(
        self, request: p4r.GetForwardingPipelineConfigRequest, context: grpc.ServicerContext
    ) -> p4r.GetForwardingPipelineConfigResponse:
        R = p4r.GetForwardingPipelineConfigRequest
        out = p4r.ForwardingPipelineConfig()
        try:
            self._check_device(request.device_id)
            with self._lock:
                cfg = self._loaded().config
                if cfg.HasField("cookie"):
                    out.cookie.CopyFrom(cfg.cookie)
                if request.response_type in (R.ALL, R.P4INFO_AND_COOKIE):
                    out.p4info.CopyFrom(cfg.p4info)
                if request.response_type in (R.ALL, R.DEVICE_CONFIG_AND_COOKIE):
                    out.p4_device_config = cfg.p4_device_config
        except P4RTError as err:
            _abort(context, err)
        return p4r.GetForwardingPipelineConfigResponse(config=out)

    def Write(self, request: p4r.WriteRequest, context: grpc.ServicerContext) -> p4r.WriteResponse:
        try:
            self._check_device(request.device_id)
            # PI's order: a non-primary writer is refused before the pipeline is checked
            self._writer(
                request.role, request.election_id if request.HasField("election_id") else None
            )
            with self._lock:
                loaded = self._loaded()
                if request.atomicity != p4r.WriteRequest.CONTINUE_ON_ERROR:
                    raise P4RTError(
                        grpc.StatusCode.UNIMPLEMENTED,
                        "only CONTINUE_ON_ERROR atomicity is supported",
                    )
            updates = request.updates
            errors: list[P4RTError | None] = []
            role = request.role
            eid = request.election_id if request.HasField("election_id") else None
            for start in range(0, len(updates), WRITE_CHUNK):
                with self._lock:
                    if self._current is not loaded:  # a new pipeline arrived meanwhile
                        gone = P4RTError(grpc.StatusCode.ABORTED,
                                         "the forwarding pipeline was replaced during this Write")
                        errors += [gone] * (len(updates) - start)
                        break
                    if start:
                        # another client may have become primary between chunks: from then
                        # on only it writes, and the rest of this Write is refused
                        try:
                            self._writer(role, eid)
                        except P4RTError as demoted:
                            errors += [demoted] * (len(updates) - start)
                            break
                    errors += [self._one_update(loaded, u) for u in updates[start : start + WRITE_CHUNK]]
        except P4RTError as err:
            _abort(context, err)
            return p4r.WriteResponse()
        if any(e is not None for e in errors):
            status = rpc_status.Status(code=rpc_code.UNKNOWN, message="Write failure.")
            for e in errors:
                detail = p4r.Error(canonical_code=rpc_code.OK)
                if e is not None:
                    detail = p4r.Error(canonical_code=e.code.value[0], message=e.message)
                status.details.add().Pack(detail)
            context.set_code(grpc.StatusCode.UNKNOWN)
            context.set_details(status.message)
            context.set_trailing_metadata(
                (("grpc-status-details-bin", status.SerializeToString()),)
            )
        return p4r.WriteResponse()

    def _one_update(self, loaded: Loaded, update: p4r.Update) -> P4RTError | None:
        try:
            entities.write(loaded, self._digest_config, update)
        except P4RTError as err:
            return err
        except ControlError as err:
            return from_control(err)
        except Exception as err:  # a runtime bug must not kill the server
            LOG.exception("internal error while writing")
            return P4RTError(grpc.StatusCode.INTERNAL, f"internal error: {err}")
        return None

    def Read(
        self, request: p4r.ReadRequest, context: grpc.ServicerContext
    ) -> Iterator[p4r.ReadResponse]:
        try:
            self._check_device(request.device_id)
            with self._lock:
                loaded = self._loaded()
                found: list[p4r.Entity] = []
                for ent in request.entities:
                    found.extend(entities.read(loaded, self._digest_config, ent))
        except P4RTError as err:
            _abort(context, err)
            return
        except ControlError as err:
            _abort(context, from_control(err))
            return
        except grpc.RpcError:
            raise
        except Exception as err:  # a runtime bug must not become a bare traceback
            LOG.exception("internal error while reading")
            _abort(context, P4RTError(grpc.StatusCode.INTERNAL, f"internal error: {err}"))
            return
        for i in range(0, max(len(found), 1), 1000):
            yield p4r.ReadResponse(entities=found[i : i + 1000])

    # ---------------------------------------------------------------- stream

    def StreamChannel(
        self, request_iterator: Iterator[p4r.StreamMessageRequest], context: grpc.ServicerContext
    ) -> Iterator[p4r.StreamMessageResponse]:
        conn = Connection(device_id=self.device_id)
        reader = threading.Thread(
            target=self._stream_reader, args=(conn, request_iterator), daemon=True
        )
        context.add_callback(lambda: conn.out.put(_END))
        reader.start()
        try:
            while True:
                item = conn.out.get()
                if item is _END:
                    return
                if isinstance(item, _Abort):
                    _abort(context, item.err)
                    return
                yield item
        finally:
            self.arbitration.remove(conn)

    def _stream_reader(
        self, conn: Connection, requests: Iterator[p4r.StreamMessageRequest]
    ) -> None:
        try:
            for req in requests:
                kind = req.WhichOneof("update")
                if kind == "arbitration":
                    self.arbitration.update(conn, req.arbitration)
                elif kind == "packet":
                    self._packet_out(conn, req.packet)
                elif kind == "digest_ack":
                    pass  # digests are not held back waiting for acks
                elif not conn.registered:
                    raise invalid("the first stream message must be a MasterArbitrationUpdate")
        except P4RTError as err:
            conn.out.put(_Abort(err))
            self.arbitration.remove(conn)
            return
        except grpc.RpcError:
            pass  # the client went away
        except Exception as err:  # malformed stream message: refuse it, never crash
            LOG.exception("stream message refused")
            conn.out.put(_Abort(invalid(f"malformed stream message: {err}")))
            self.arbitration.remove(conn)
            return
        self.arbitration.remove(conn)
        conn.out.put(_END)

    def _packet_out(self, conn: Connection, msg: p4r.PacketOut) -> None:
        if not self.arbitration.is_primary(conn):
            LOG.debug("PacketOut from a backup client dropped")
            return
        try:
            with self._lock:
                loaded = self._loaded()
                if self.device.cpu_port is None:
                    raise invalid("PacketOut: the switch has no --cpu-port")
                frame = build_packet_out(loaded.schema.packet_out, msg)
            self.device.inject(self.device.cpu_port, frame)
        except P4RTError as err:
            error = p4r.StreamError(canonical_code=err.code.value[0], message=err.message)
            error.packet_out.packet_out.CopyFrom(msg)
            conn.out.put(p4r.StreamMessageResponse(error=error))

    def _on_cpu_frame(self, frame: bytes) -> None:
        loaded = self._current
        if loaded is None:
            return
        try:
            pin = parse_packet_in(loaded.schema.packet_in, frame)
        except P4RTError as err:
            LOG.warning("frame to CPU dropped: %s", err.message)
            return
        msg = p4r.StreamMessageResponse(packet=pin)
        for c in self.arbitration.primaries():
            c.out.put(msg)

    def _digest_loop(self) -> None:
        while not self._stop.wait(0.02):
            loaded = self._current
            if loaded is None:
                continue
            take = getattr(loaded.pipeline, "take_digests", None)
            if take is None:
                continue
            try:
                self._send_digests(loaded, take())
            except Exception:
                LOG.exception("digest delivery failed")

    def _send_digests(self, loaded: Loaded, messages: list[Any]) -> None:
        """Group this poll's digests per digest id into DigestLists of at most the
        configured max_list_size entries (0: no limit); lists are not held back for
        acks, so max_timeout_ns and ack_timeout_ns have no effect beyond the poll period."""
        configs = dict(self._digest_config)  # a Write may change it meanwhile
        grouped: dict[int, list[p4d.P4Data]] = {}
        for m in messages:
            info = loaded.schema.digests_by_name.get(m.name)
            if info is None or info.id not in configs:
                continue  # as in PI: digests nobody configured are dropped
            data = p4d.P4Data()
            for v in m.values:
                data.struct.members.add(bitstring=encode_bits(v))
            grouped.setdefault(info.id, []).append(data)
        for digest_id, items in grouped.items():
            size = configs[digest_id].max_list_size or len(items)
            for i in range(0, len(items), size):
                self._digest_list_id += 1
                msg = p4r.StreamMessageResponse(
                    digest=p4r.DigestList(
                        digest_id=digest_id,
                        list_id=self._digest_list_id,
                        data=items[i : i + size],
                        timestamp=time.time_ns(),
                    )
                )
                for c in self.arbitration.primaries():
                    c.out.put(msg)
