"""Flat slot layout of one packet's state.

Every scalar a P4 program can name (header fields, validity bits, metadata, locals, action
parameters with a direction) gets a fixed index in one Python list. The generated code then
reads `S[17]` instead of walking names, a packet copy (multicast, clone) is `S[:]`, and a
whole-header assignment is one slice copy because a header's slots are contiguous.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from p4reduce.softswitch.p4.ir import Types, TypeT
from p4reduce.softswitch.runtime.errors import PipelineError


@dataclass
class FieldSlot:
    name: str
    slot: int
    width: int
    signed: bool


@dataclass
class HeaderSlots:
    type_name: str
    valid: int
    fields: list[FieldSlot]

    @property
    def start(self) -> int:
        return self.valid

    @property
    def end(self) -> int:
        return self.valid + 1 + len(self.fields)

    @property
    def width(self) -> int:
        return sum(f.width for f in self.fields)


@dataclass
class StackSlots:
    next_index: int
    elems: list[HeaderSlots]


@dataclass
class Layout:
    """Allocates slots for typed paths; `init` is the template every packet copies."""

    types: Types
    init: list[Any] = field(default_factory=list)
    scalars: dict[tuple[str, ...], tuple[int, TypeT]] = field(default_factory=dict)
    headers: dict[tuple[str, ...], HeaderSlots] = field(default_factory=dict)
    stacks: dict[tuple[str, ...], StackSlots] = field(default_factory=dict)
    ranges: dict[tuple[str, ...], tuple[int, int]] = field(default_factory=dict)
    # ordered list of header paths under each struct path (for emit and validity copies)
    struct_headers: dict[tuple[str, ...], list[tuple[str, ...]]] = field(default_factory=dict)
    struct_scalars: dict[tuple[str, ...], list[tuple[int, TypeT]]] = field(default_factory=dict)

    def new_slot(self, value: Any = 0) -> int:
        self.init.append(value)
        return len(self.init) - 1

    def alloc(self, path: tuple[str, ...], t: TypeT) -> None:
        start = len(self.init)
        kind = t["kind"]
        if kind in ("bit", "int", "serenum", "error", "enum"):
            self.scalars[path] = (self.new_slot(0), t)
        elif kind == "bool":
            self.scalars[path] = (self.new_slot(False), t)
        elif kind == "header":
            self.headers[path] = self._alloc_header(path, t["name"])
        elif kind == "struct":
            decl = self.types.get("structs", {}).get(t["name"])
            if decl is None:
                raise PipelineError(f"unknown struct type {t['name']!r} for {'.'.join(path)}")
            for f in decl["fields"]:
                self.alloc((*path, f["name"]), f["type"])
            hdrs: list[tuple[str, ...]] = []
            scal: list[tuple[int, TypeT]] = []
            for f in decl["fields"]:
                sub = (*path, f["name"])
                k = f["type"]["kind"]
                if k == "header":
                    hdrs.append(sub)
                elif k == "stack":
                    hdrs.extend((*sub, str(i)) for i in range(f["type"]["size"]))
                elif k == "struct":
                    hdrs.extend(self.struct_headers[sub])
                if k == "struct":
                    scal.extend(self.struct_scalars[sub])
                elif sub in self.scalars:
                    scal.append(self.scalars[sub])
            self.struct_headers[path] = hdrs
            self.struct_scalars[path] = scal
        elif kind == "stack":
            nxt = self.new_slot(0)
            elems = []
            for i in range(t["size"]):
                sub = (*path, str(i))
                self.headers[sub] = self._alloc_header(sub, t["header"])
                self.ranges[sub] = (self.headers[sub].start, self.headers[sub].end)
                elems.append(self.headers[sub])
            self.stacks[path] = StackSlots(nxt, elems)
        elif kind in ("void", "string", "list"):
            return
        else:
            raise PipelineError(f"unsupported type kind {kind!r} for {'.'.join(path)}")
        self.ranges[path] = (start, len(self.init))

    def _alloc_header(self, path: tuple[str, ...], type_name: str) -> HeaderSlots:
        decl = self.types.get("headers", {}).get(type_name)
        if decl is None:
            raise PipelineError(f"unknown header type {type_name!r} for {'.'.join(path)}")
        valid = self.new_slot(False)
        fields = []
        for f in decl["fields"]:
            ft = f["type"]
            if ft["kind"] not in ("bit", "int", "serenum"):
                raise PipelineError(f"header field {type_name}.{f['name']} has unsupported type")
            slot = self.new_slot(0)
            fs = FieldSlot(f["name"], slot, int(ft["width"]), ft["kind"] == "int")
            fields.append(fs)
            self.scalars[(*path, f["name"])] = (slot, ft)
        hs = HeaderSlots(type_name, valid, fields)
        if hs.width % 8:
            raise PipelineError(f"header type {type_name} is {hs.width} bits, not whole bytes")
        return hs
