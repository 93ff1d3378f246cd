"""`p4reduce-p4c`: compile a P4_16 v1model program to the softswitch IR and P4Info.

Exit status: 0 success, 1 compile (or I/O) error, 2 usage error, like p4c."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from p4reduce.softswitch.p4.diag import CompileError
from p4reduce.softswitch.p4.frontend import compile_file
from p4reduce.softswitch.p4.ir import Program, dumps


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # usage errors exit 2 without a traceback
        self.print_usage(sys.stderr)
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(2)


def _build_parser() -> _Parser:
    p = _Parser(
        prog="p4reduce-p4c",
        description="Compile a P4_16 v1model program into the softswitch JSON IR "
        "(DIR/PROGRAM.json) and its P4Info (DIR/PROGRAM.p4info.txtpb).",
    )
    p.add_argument("program", help="the P4_16 source file")
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="output directory (created if missing)")
    p.add_argument("-D", dest="defines", action="append", default=[], metavar="NAME[=VAL]",
                   help="define a preprocessor macro (VAL defaults to 1)")
    p.add_argument("-I", dest="includes", action="append", default=[], metavar="DIR",
                   help="add a directory to the #include search path")
    p.add_argument("--p4runtime-files", metavar="F",
                   help="write the P4Info text to F instead of DIR/PROGRAM.p4info.txtpb")
    return p


def _emit_p4info(ir: Program) -> str | None:
    try:
        from p4reduce.softswitch.p4 import (
            p4info,  # written separately; may be absent in a partial checkout
        )
    except ImportError:
        return None
    emit = getattr(p4info, "emit", None)
    to_text = getattr(p4info, "to_text", None)
    if emit is None or to_text is None:
        return None
    return str(to_text(emit(ir)))


def main(argv: list[str] | None = None) -> int:
    args = _build_parser().parse_args(argv)
    defines: dict[str, str] = {}
    for d in args.defines:
        name, _, val = d.partition("=")
        if not name.isidentifier():
            _build_parser().error(f"invalid macro name in -D {d!r}")
        defines[name] = val if "=" in d else "1"
    src = Path(args.program)
    try:
        ir = compile_file(src, defines, [Path(i) for i in args.includes])
    except CompileError as e:
        print(str(e), file=sys.stderr)
        return 1
    out = Path(args.output)
    stem = src.name[:-3] if src.name.endswith(".p4") else src.name
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / f"{stem}.json").write_text(dumps(ir) + "\n", encoding="utf-8")
        try:
            text = _emit_p4info(ir)
        except Exception as e:  # the emitter belongs to another module: report, do not crash
            print(f"p4reduce-p4c: error: P4Info emitter failed: {e}", file=sys.stderr)
            return 1
        if text is None:
            print("p4reduce-p4c: warning: P4Info emitter (p4reduce.softswitch.p4.p4info) is missing; "
                  "wrote the JSON IR only", file=sys.stderr)
        else:
            target = Path(args.p4runtime_files) if args.p4runtime_files else out / f"{stem}.p4info.txtpb"
            target.write_text(text, encoding="utf-8")
    except OSError as e:
        print(f"p4reduce-p4c: error: cannot write output: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
