"""Declarations nothing instantiates or calls are type-checked too, as p4c's front end
checks every declaration: a control, parser or function the program never uses is lowered
once more, in a separate context whose output is thrown away, with its parameters bound
to stand-ins (constructor parameters to a neutral constant of their type)."""

from __future__ import annotations

from p4reduce.softswitch.p4 import ast as A
from p4reduce.softswitch.p4.diag import error
from p4reduce.softswitch.p4.ir import Expr
from p4reduce.softswitch.p4.lower.bindings import Ctx, PacketB, Scope, Val
from p4reduce.softswitch.p4.lower.context import Lowering
from p4reduce.softswitch.p4.types import is_data, wrap

_CHECKED = -2  # block index of checked-only code (no P4Info order)


def check_unused(prog: A.Program, source: str, done: Lowering) -> None:
    blocks = [d for d in prog.decls if isinstance(d, A.ControlDecl | A.ParserDecl)
              and not d.is_type and not d.type_params and id(d) not in done.lowered]
    funcs = [d for d in done.function_decls if not d.type_params and id(d) not in done.lowered]
    if not blocks and not funcs:
        return
    cx = Lowering(prog, source)
    for d in prog.decls:
        cx.decls.top_decl(d)
    for fd in funcs:
        cx.functions.check(fd)
    for d in blocks:
        if id(d) not in cx.lowered:  # lowered inside an earlier one
            check_block(cx, d)


def check_block(cx: Lowering, decl: A.ControlDecl | A.ParserDecl) -> None:
    scope = Scope(parent=cx.glob)
    for p in decl.ctor_params:
        pt = cx.typerefs.resolve_type(p.type, {})
        if not is_data(pt):
            return  # instantiated with blocks or externs only p4c's evaluator knows: skip
        value: Expr
        if pt["kind"] == "enum":
            value = {"op": "enum_member", "enum": pt["name"], "member": cx.enums[pt["name"]][0], "type": pt}
        elif pt["kind"] in ("bit", "int", "serenum", "bool", "intlit"):
            value = {"op": "const", "value": wrap(1, pt) if pt["kind"] != "bool" else 0, "type": pt}
        else:
            return
        scope.names[p.name] = Val(value, False, f"constructor parameter '{p.name}'")
    for p in decl.params:
        pt = cx.typerefs.resolve_type(p.type, {})
        if pt["kind"] == "object" and pt["name"] in ("packet_in", "packet_out"):
            scope.names[p.name] = PacketB(pt["name"] == "packet_out")
        elif is_data(pt):
            what = f"'{p.name}': it is an '{p.direction}' parameter" if p.direction != "none" else f"'{p.name}'"
            scope.names[p.name] = Val({"op": "field", "path": ["unused", p.name], "type": pt},
                                      p.direction in ("out", "inout"), what)
        elif pt["kind"] == "typevar":
            raise error(p.loc, f"unknown type '{pt['name']}'")
        else:
            return  # an extern or block parameter: skip, as above
    ctx = Ctx("parser" if isinstance(decl, A.ParserDecl) else "control", decl.name, decl.name + ".",
              scope, [], set(), block=_CHECKED)
    if isinstance(decl, A.ParserDecl):
        cx.parsers.parser_states(decl, ctx, "", "accept", {})
    else:
        cx.controls.control_body(decl, ctx)
