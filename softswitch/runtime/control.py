"""The control surface of the softswitch runtime: what a P4Runtime server (or a test) may
change or read on a running pipeline.

This module is the contract between `p4reduce.softswitch.runtime` (which implements it) and
`p4reduce.softswitch.p4runtime` (which translates P4Runtime messages into it). Names are the
P4Info names of the IR (`MyIngress.ipv4_lpm`); ids never appear here, so the runtime does
not depend on P4Info and the server owns the id <-> name mapping.

Errors are raised as `ControlError` subclasses so the server can map them onto the gRPC
status codes BMv2 uses, without string matching.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


class ControlError(Exception):
    """Base of every error the control surface raises; the message is user-facing."""


class NotFoundError(ControlError):
    """Unknown table/action/extern name, missing entry, index out of range of nothing."""


class AlreadyExistsError(ControlError):
    """INSERT of an entry whose match key (and priority) is already present."""


class InvalidArgumentError(ControlError):
    """Malformed request: wrong number of key fields or action arguments, a value wider
    than its field, an action not allowed in this table (or not as default), an index out
    of range, a modification of a const default action."""


class ResourceExhaustedError(ControlError):
    """Table full (more entries than its size)."""


@dataclass(frozen=True)
class Exact:
    value: int


@dataclass(frozen=True)
class Lpm:
    value: int
    prefix_len: int


@dataclass(frozen=True)
class Ternary:
    value: int
    mask: int


@dataclass(frozen=True)
class Range:
    low: int
    high: int


@dataclass(frozen=True)
class OptionalMatch:
    value: int


# One key field of an entry. None means "don't care" and is allowed for
# lpm (prefix 0), ternary (mask 0), range (full range) and optional fields, as in P4Runtime.
FieldMatch = Exact | Lpm | Ternary | Range | OptionalMatch | None


@dataclass(frozen=True)
class ActionCall:
    """An action with its control-plane arguments, in the action's parameter order."""

    action: str
    args: tuple[int, ...] = ()


@dataclass(frozen=True)
class TableEntry:
    """One table entry. `keys` are in the table's key order. `priority` is 0 for tables
    whose keys are all exact/lpm; otherwise higher numbers win (P4Runtime convention)."""

    keys: tuple[FieldMatch, ...]
    action: ActionCall
    priority: int = 0
    is_const: bool = False


@dataclass(frozen=True)
class Replica:
    egress_port: int
    instance: int  # BMv2's egress_rid


@dataclass(frozen=True)
class CloneSession:
    session_id: int
    replicas: tuple[Replica, ...]
    class_of_service: int = 0
    packet_length_bytes: int = 0  # 0 = whole packet


@dataclass(frozen=True)
class CounterValue:
    packets: int = 0
    bytes: int = 0


@dataclass
class DigestMessage:
    """A digest emitted by the pipeline: the digest name and its struct's field values."""

    name: str
    values: tuple[int, ...] = field(default_factory=tuple)


class PipelineControl(Protocol):
    """What a running softswitch pipeline offers to its controller.

    Every method is thread-safe with respect to packet processing: a change is seen by
    whole packets, never by half of one.
    """

    # tables
    def table_insert(self, table: str, entry: TableEntry) -> None: ...
    def table_modify(self, table: str, entry: TableEntry) -> None: ...
    def table_delete(self, table: str, keys: tuple[FieldMatch, ...], priority: int) -> None: ...
    def table_entries(self, table: str) -> list[TableEntry]: ...
    def table_set_default(self, table: str, action: ActionCall) -> None: ...
    def table_reset_default(self, table: str) -> None: ...
    def table_get_default(self, table: str) -> ActionCall: ...
    def table_names(self) -> list[str]: ...

    # direct counters, addressed by the entry's match key
    def direct_counter_read(
        self, table: str, keys: tuple[FieldMatch, ...], priority: int
    ) -> CounterValue: ...
    def direct_counter_write(
        self, table: str, keys: tuple[FieldMatch, ...], priority: int, value: CounterValue
    ) -> None: ...

    # packet replication engine
    def mc_group_set(self, group: int, replicas: tuple[Replica, ...]) -> None: ...
    def mc_group_delete(self, group: int) -> None: ...
    def mc_groups(self) -> dict[int, tuple[Replica, ...]]: ...
    def clone_session_set(self, session: CloneSession) -> None: ...
    def clone_session_delete(self, session_id: int) -> None: ...
    def clone_sessions(self) -> dict[int, CloneSession]: ...

    # indexed externs
    def counter_read(self, name: str, index: int) -> CounterValue: ...
    def counter_write(self, name: str, index: int, value: CounterValue) -> None: ...
    def counter_size(self, name: str) -> int: ...
    def register_read(self, name: str, index: int) -> int: ...
    def register_write(self, name: str, index: int, value: int) -> None: ...
    def register_size(self, name: str) -> int: ...
