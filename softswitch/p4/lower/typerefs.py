"""Type references resolved to the checker's type values (typedefs, headers, enums,
widths), and compile-time integer constants."""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING

from p4reduce.softswitch.p4 import ast as A
from p4reduce.softswitch.p4.diag import error
from p4reduce.softswitch.p4.ir import FieldDecl
from p4reduce.softswitch.p4.lower.bindings import Ctx, ival
from p4reduce.softswitch.p4.types import (
    BOOL,
    ERROR,
    INTLIT,
    STRING,
    VOID,
    AnyT,
    T,
    bit,
    is_data,
    show,
    signed_value,
    sint,
)

if TYPE_CHECKING:
    from p4reduce.softswitch.p4.lower.context import Lowering


class TypeRefs:
    def __init__(self, cx: Lowering) -> None:
        self.cx = cx

    def resolve_type(self, t: A.TypeRef, env: dict[str, AnyT]) -> AnyT:
        if isinstance(t, A.BitsType):
            w = self.const_int(t.width, self.cx.global_ctx(), "a width")
            if w < 0 or (t.signed and w < 1) or w > 2048:
                raise error(t.width.loc, f"invalid width {w}: widths must be between {int(t.signed)} and 2048")
            return sint(w) if t.signed else bit(w)
        if isinstance(t, A.BoolType):
            return BOOL.copy()
        if isinstance(t, A.VarbitType):
            w = self.const_int(t.width, self.cx.global_ctx(), "a width")
            if not 0 < w <= 65536:
                raise error(t.width.loc, f"invalid varbit width {w}")
            return {"kind": "varbit", "width": w}
        if isinstance(t, A.StackType):
            et = self.resolve_type(t.elem, env)
            if et["kind"] != "header" and et["kind"] != "header_union":
                raise error(t.loc, f"header stack elements must be headers or header unions, not {show(et)}")
            n = self.const_int(t.size, self.cx.global_ctx(), "a stack size")
            if n <= 0:
                raise error(t.size.loc, "a header stack needs a positive size")
            st: T = {"kind": "stack", "header": et["name"], "size": n}
            if et["kind"] == "header_union":
                st["union"] = True
            return st
        assert isinstance(t, A.NamedType)
        nm = t.name
        if nm in env:
            return env[nm]
        if nm in self.cx.typedefs:
            return copy.deepcopy(self.cx.typedefs[nm])
        if nm in self.cx.headers:
            hd = self.cx.headers[nm]
            return {"kind": "struct" if hd.is_struct else "header_union" if hd.is_union else "header", "name": nm}
        if nm in self.cx.enums:
            return {"kind": "enum", "name": nm}
        if nm in self.cx.serenums:
            return {"kind": "serenum", "name": nm, "width": self.cx.serenums[nm]["type"]["width"]}
        if nm == "int":
            return INTLIT.copy()
        if nm == "tuple":
            items = [self.resolve_type(a, env) for a in t.args]
            data = [x for x in items if is_data(x)]
            if len(data) != len(items):
                raise error(t.loc, "tuple elements must be types of values")
            return {"kind": "tuple", "types": data}
        if nm == "error":
            return ERROR.copy()
        if nm == "string":
            return STRING.copy()
        if nm == "void":
            return VOID.copy()
        if nm in self.cx.externs or nm in self.cx.control_decls or nm in self.cx.parser_decls or nm in self.cx.packages:
            return {"kind": "object", "name": nm, "args": [self.resolve_type(a, env) for a in t.args]}
        return {"kind": "typevar", "name": nm}

    def data_type(self, t: A.TypeRef, env: dict[str, AnyT] | None = None) -> T:
        """`t` resolved, where only a type of values (not an extern, control or parser
        type, nor an unbound type parameter) makes sense."""
        rt = self.resolve_type(t, env or {})
        if not is_data(rt):
            raise error(t.loc, f"'{show(rt)}' is not a type of values")
        return rt

    def fields(self, name: str) -> list[FieldDecl]:
        """The fields of a declared header or struct type, with their resolved types."""
        types = self.cx.out.types
        decl = types["headers"].get(name) or types["structs"].get(name)
        if decl is None:
            decl = types["header_unions"][name]
        return decl["fields"]

    def element(self, stack: T) -> T:
        """The element type of a header stack."""
        return {"kind": "header_union" if stack.get("union") else "header", "name": stack["header"]}

    def const_int(self, e: A.Expr, ctx: Ctx, what: str) -> int:
        v = self.cx.exprs.expr(e, ctx, None)
        if v["op"] != "const" or v["type"]["kind"] not in ("intlit", "bit", "int"):
            raise error(e.loc, f"{what} must be a compile-time integer constant")
        return int(signed_value(ival(v), v["type"]))
