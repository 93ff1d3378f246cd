"""P4_16 compiler front end of softswitch: `compile_file`/`compile_source` give the JSON IR
described in docs/IR.md."""

from p4reduce.softswitch.p4.diag import CompileError, Diagnostic
from p4reduce.softswitch.p4.frontend import compile_file, compile_source

__all__ = ["CompileError", "Diagnostic", "compile_file", "compile_source"]
