"""Type checking and lowering of the AST to the JSON IR (docs/IR.md) in one pass.

One pass, because the IR must carry a type on every expression anyway: computing the type
*is* checking it. Controls and parsers are lowered per instance, which is how nested
control instances get inlined and their objects named by instance path, as p4c names
them in P4Info.

One module per construct (declarations, types, expressions, calls, statements, tables,
controls, parsers, the program), each a class around the shared `context.Lowering`."""

from __future__ import annotations

from p4reduce.softswitch.p4 import ast as A
from p4reduce.softswitch.p4.diag import CompileError, Loc, error
from p4reduce.softswitch.p4.ir import Program
from p4reduce.softswitch.p4.lower.context import Lowering
from p4reduce.softswitch.p4.lower.unused import check_unused


def lower(prog: A.Program, source: str) -> Program:
    try:
        cx = Lowering(prog, source)
        out = cx.program.run()
        check_unused(prog, source, cx)
        return out
    except RecursionError:
        raise error(Loc(source, 1, 1), "program nested too deeply") from None


__all__ = ["CompileError", "lower"]
