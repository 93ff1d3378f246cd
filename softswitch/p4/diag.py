"""Diagnostics: every user-facing compiler error goes through `CompileError`, so the CLI
and callers never see a Python traceback for bad input."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Loc:
    file: str
    line: int
    col: int


@dataclass(frozen=True)
class Diagnostic:
    file: str
    line: int
    col: int
    message: str


class CompileError(Exception):
    """Raised with one or more diagnostics; `str()` renders them as compilers do, with the
    offending source line and a caret, because that is what a P4 author expects to read."""

    def __init__(self, diagnostics: list[Diagnostic], sources: dict[str, list[str]] | None = None):
        self.diagnostics = diagnostics
        self.sources = sources or {}
        super().__init__(self.render())

    def render(self) -> str:
        out: list[str] = []
        for d in self.diagnostics:
            out.append(f"{d.file}:{d.line}:{d.col}: error: {d.message}")
            lines = self.sources.get(d.file)
            if lines is not None and 1 <= d.line <= len(lines):
                src = lines[d.line - 1].rstrip("\n").expandtabs(1)
                out.append(src)
                out.append(" " * max(d.col - 1, 0) + "^")
        return "\n".join(out)


def error(loc: Loc, message: str) -> CompileError:
    """Build a single-diagnostic error; the front end attaches sources before raising out."""
    return CompileError([Diagnostic(loc.file, loc.line, loc.col, message)])
