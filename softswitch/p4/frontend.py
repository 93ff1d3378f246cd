"""The compiler pipeline: preprocess, parse, check and lower."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from p4reduce.softswitch.p4.diag import CompileError, Diagnostic
from p4reduce.softswitch.p4.ir import Program
from p4reduce.softswitch.p4.lower import lower
from p4reduce.softswitch.p4.parser import parse
from p4reduce.softswitch.p4.preprocess import Preprocessor


def compile_source(text: str, filename: str = "<input>", defines: dict[str, str] | None = None,
                   include_dirs: Sequence[Path] = (), path: Path | None = None) -> Program:
    pp = Preprocessor(defines, include_dirs)
    limit = sys.getrecursionlimit()
    # the parser caps nesting at MAX_NESTING; deep-but-legal programs need more frames than
    # Python's default allows for the recursive descent and the recursive lowering
    sys.setrecursionlimit(max(limit, 20000))
    try:
        toks = pp.run_text(text, filename, path)
        prog = parse(toks)
        return lower(prog, filename)
    except CompileError as e:
        raise CompileError(e.diagnostics, {**pp.sources, **e.sources}) from None
    except RecursionError:
        raise CompileError([Diagnostic(filename, 1, 1, "program nested too deeply")], pp.sources) from None
    finally:
        sys.setrecursionlimit(limit)


def compile_file(path: str | Path, defines: dict[str, str] | None = None,
                 include_dirs: Sequence[Path] = ()) -> Program:
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as e:
        raise CompileError([Diagnostic(str(p), 0, 0, f"cannot read file: {e.strerror or e}")]) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise CompileError([Diagnostic(p.name, line, 1, "file is not valid UTF-8 text")]) from None
    return compile_source(text, p.name, defines, include_dirs, path=p)
