"""P4Runtime ids and aliases, assigned the way p4c assigns them.

Controllers cache ids, and a P4Info that p4c and softswitch describe differently
would make a program's table entries non-portable between BMv2 and softswitch.
So every rule here mirrors p4c's control-plane symbol table:

* an id is ``(prefix << 24) | (hash & 0xFFFFFF)`` where ``hash`` is Bob Jenkins'
  one-at-a-time hash of the control-plane name (no leading dot);
* ``@id`` values are reserved first (a bare value gets the resource prefix ORed
  in; a value carrying another resource's prefix is an error);
* the remaining names of one resource type are hashed in byte order of their
  names, and a collision moves on to the next value (linear probing on the
  32-bit hash, so the low 24 bits wrap inside the prefix);
* an alias is the shortest dotted suffix that no other symbol of *any* resource
  type shares.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import IntEnum

_MASK32 = 0xFFFFFFFF
_LOW24 = 0xFFFFFF


class P4IdError(ValueError):
    """A symbol table problem p4c also rejects (bad or duplicate ``@id``, id space full)."""


class Prefix(IntEnum):
    """The 8-bit resource-type prefixes of P4Runtime's ``P4Ids.Prefix``."""

    ACTION = 0x01
    TABLE = 0x02
    VALUE_SET = 0x03
    CONTROLLER_HEADER = 0x04
    ACTION_PROFILE = 0x11
    COUNTER = 0x12
    DIRECT_COUNTER = 0x13
    METER = 0x14
    DIRECT_METER = 0x15
    REGISTER = 0x16
    DIGEST = 0x17


def jenkins_one_at_a_time(data: bytes) -> int:
    """Bob Jenkins' one-at-a-time hash over bytes, as a 32-bit unsigned value."""
    h = 0
    for byte in data:
        h = (h + byte) & _MASK32
        h = (h + (h << 10)) & _MASK32
        h ^= h >> 6
    h = (h + (h << 3)) & _MASK32
    h ^= h >> 11
    h = (h + (h << 15)) & _MASK32
    return h


def hashed_id(prefix: Prefix, name: str) -> int:
    """The id a name gets when nothing collides with it."""
    return (int(prefix) << 24) | (jenkins_one_at_a_time(name.encode()) & _LOW24)


def control_plane_name(name: str) -> str:
    """Drop the leading dot that marks a global ``@name`` ("".foo"" names ``foo``)."""
    return name[1:] if name.startswith(".") else name


@dataclass
class _SuffixNode:
    instances: int = 0
    edges: dict[str, _SuffixNode] = field(default_factory=dict)


class SuffixSet:
    """Dotted-suffix counts over every symbol, to compute p4c's aliases."""

    def __init__(self) -> None:
        self._root = _SuffixNode()
        self._seen: set[str] = set()

    def add(self, symbol: str) -> None:
        if symbol in self._seen:  # one name shared by two resource types counts once
            return
        self._seen.add(symbol)
        node = self._root
        for component in reversed(symbol.split(".")):
            node = node.edges.setdefault(component, _SuffixNode())
            node.instances += 1

    def shortest_unique_suffix(self, symbol: str) -> str:
        components = symbol.split(".")
        node = self._root
        needed = 0
        for component in reversed(components):
            node = node.edges[component]
            needed += 1
            if node.instances < 2:
                break
        return ".".join(components[len(components) - needed :])


class SymbolTable:
    """Collects (type, name, @id) triples, then assigns every id at once.

    Ids depend on the whole set of names (probing order), which is why they can
    only be read after :meth:`compute_ids`.
    """

    def __init__(self) -> None:
        self._symbols: dict[Prefix, dict[str, int | None]] = {}
        self._assigned: set[int] = set()
        self._suffixes = SuffixSet()
        self._computed = False

    def add(self, prefix: Prefix, name: str, user_id: int | None = None) -> None:
        """Register a symbol; adding the same (type, name) again is a no-op, as in p4c."""
        if self._computed:
            raise RuntimeError("symbols added after ids were computed")
        if not name:
            raise P4IdError(f"empty control-plane name for a {prefix.name.lower()}")
        table = self._symbols.setdefault(prefix, {})
        if name in table:
            return
        table[name] = self._reserve(prefix, name, user_id)
        self._suffixes.add(name)

    def _reserve(self, prefix: Prefix, name: str, user_id: int | None) -> int | None:
        if user_id is None:
            return None
        if not 0 <= user_id <= _MASK32:
            raise P4IdError(f"{name}: @id should be an unsigned 32-bit integer, got {user_id}")
        type_prefix = int(prefix) << 24
        if user_id & ~_LOW24 & _MASK32 not in (0, type_prefix):
            raise P4IdError(
                f"{name}: @id {user_id:#010x} has the wrong 8-bit prefix for a "
                f"{prefix.name.lower()} (expected {int(prefix):#04x})"
            )
        full = user_id | type_prefix
        if full in self._assigned:
            raise P4IdError(f"{name}: @id {full} is assigned to multiple declarations")
        self._assigned.add(full)
        return full

    def compute_ids(self) -> None:
        for prefix in sorted(self._symbols):
            table = self._symbols[prefix]
            for name in sorted((n for n, i in table.items() if i is None), key=str.encode):
                table[name] = self._probe(prefix, name)
        self._computed = True

    def _probe(self, prefix: Prefix, name: str) -> int:
        start = jenkins_one_at_a_time(name.encode())
        value = start
        while True:
            candidate = (int(prefix) << 24) | (value & _LOW24)
            if candidate not in self._assigned:
                self._assigned.add(candidate)
                return candidate
            value = (value + 1) & _MASK32
            # The low 24 bits cycle every 2**24 steps: one full cycle means no free id.
            if (value - start) & _LOW24 == 0:
                raise P4IdError(f"no available id to represent {name} in P4Runtime")

    def id_of(self, prefix: Prefix, name: str) -> int:
        if not self._computed:
            raise RuntimeError("ids read before compute_ids()")
        try:
            found = self._symbols[prefix][name]
        except KeyError:
            raise P4IdError(f"unknown {prefix.name.lower()} {name!r}") from None
        assert found is not None
        return found

    def has(self, prefix: Prefix, name: str) -> bool:
        return name in self._symbols.get(prefix, {})

    def alias(self, name: str) -> str:
        return self._suffixes.shortest_unique_suffix(name)

    def names(self, prefix: Prefix) -> Iterable[str]:
        return iter(self._symbols.get(prefix, {}))
