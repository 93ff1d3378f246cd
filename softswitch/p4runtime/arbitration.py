"""Primary election among StreamChannel clients, per (device, role), as PI does it.

The client with the highest election id of a role is its primary. When the primary of a
role changes (a higher id arrives, or the primary leaves and the next highest takes over),
every client of that role hears about it; otherwise only the client that spoke does. The
update carries the primary's election id, with status OK for the primary and
ALREADY_EXISTS for backups. Only the primary may write, set the pipeline, or exchange
packets.
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass, field
from typing import Any

import grpc
from finsy.proto import p4r, rpc_code

from p4reduce.softswitch.p4runtime.errors import P4RTError, invalid

# PI's limit of stream clients per device; the gRPC pool is sized above it.
MAX_CONNECTIONS = 16


def u128(value: int) -> p4r.Uint128:
    return p4r.Uint128(high=value >> 64, low=value & ((1 << 64) - 1))


def from_u128(msg: p4r.Uint128) -> int:
    return (int(msg.high) << 64) | int(msg.low)


@dataclass(eq=False)
class Connection:
    """One StreamChannel: what it announced, and the queue of messages to send it."""

    device_id: int
    role: str = ""
    role_msg: p4r.Role | None = None
    election_id: int | None = None
    out: queue.Queue[Any] = field(default_factory=queue.Queue)
    registered: bool = False


class Arbitration:
    def __init__(self, device_id: int) -> None:
        self._device_id = device_id
        self._lock = threading.Lock()
        self._conns: list[Connection] = []

    def _primary(self, role: str) -> Connection | None:
        cands = [c for c in self._conns if c.role == role and c.election_id is not None]
        if not cands:
            return None
        return max(cands, key=lambda c: c.election_id or 0)

    def _notify(self, conn: Connection, primary: Connection | None) -> None:
        upd = p4r.MasterArbitrationUpdate(device_id=self._device_id)
        if conn.role_msg is not None:
            upd.role.CopyFrom(conn.role_msg)
        if primary is not None and primary.election_id is not None:
            upd.election_id.CopyFrom(u128(primary.election_id))
        if conn is primary:
            upd.status.code = rpc_code.OK
            upd.status.message = "Is primary"
        else:
            upd.status.code = rpc_code.ALREADY_EXISTS
            upd.status.message = "Is backup"
        conn.out.put(p4r.StreamMessageResponse(arbitration=upd))

    def update(self, conn: Connection, msg: p4r.MasterArbitrationUpdate) -> None:
        """Apply a client's MasterArbitrationUpdate; raises P4RTError to end the stream."""
        if msg.device_id != self._device_id:
            if conn.registered:
                raise P4RTError(
                    grpc.StatusCode.FAILED_PRECONDITION,
                    f"Device id {msg.device_id} differs from this stream's device id",
                )
            raise P4RTError(grpc.StatusCode.NOT_FOUND, f"Invalid device id {msg.device_id}")
        role = msg.role.name if msg.HasField("role") else ""
        eid = from_u128(msg.election_id) if msg.HasField("election_id") else None
        with self._lock:
            for other in self._conns:
                if (
                    other is not conn
                    and other.role == role
                    and eid is not None
                    and (other.election_id == eid)
                ):
                    raise invalid(f"Election id {eid} is already used by another connection")
            if not conn.registered and len(self._conns) >= MAX_CONNECTIONS:
                raise P4RTError(grpc.StatusCode.RESOURCE_EXHAUSTED, "Too many connections")
            old_primaries = {r: self._primary(r) for r in {role, conn.role}}
            if not conn.registered:
                self._conns.append(conn)
                conn.registered = True
            conn.role = role
            conn.role_msg = None
            if msg.HasField("role"):
                conn.role_msg = p4r.Role()
                conn.role_msg.CopyFrom(msg.role)
            conn.election_id = eid
            self._announce(old_primaries, conn)

    def _announce(self, old: dict[str, Connection | None], speaker: Connection | None) -> None:
        for role, before in old.items():
            now = self._primary(role)
            if now is not before:
                for c in self._conns:
                    if c.role == role:
                        self._notify(c, now)
            elif speaker is not None and speaker.role == role:
                self._notify(speaker, now)

    def remove(self, conn: Connection) -> None:
        with self._lock:
            if conn not in self._conns:
                return
            before = self._primary(conn.role)
            self._conns.remove(conn)
            if before is conn:
                self._announce({conn.role: before}, None)

    def is_primary(self, conn: Connection) -> bool:
        with self._lock:
            return conn.registered and self._primary(conn.role) is conn

    def primaries(self) -> list[Connection]:
        with self._lock:
            prims = (self._primary(r) for r in {c.role for c in self._conns})
            return [p for p in prims if p is not None]

    def check_writer(self, role: str, election_id: int | None) -> None:
        """PERMISSION_DENIED unless (role, election_id) is the role's primary. As in PI,
        a request without election id is accepted while no client holds the role, so
        scripts and tests can write without opening a stream."""
        with self._lock:
            primary = self._primary(role)
            no_clients = not any(c.role == role for c in self._conns)
            if primary is None and no_clients and not election_id:
                return
            if primary is None or primary.election_id != election_id:
                raise P4RTError(grpc.StatusCode.PERMISSION_DENIED, "Not primary")
