"""C-style preprocessor over tokens. Working on tokens rather than text keeps every token's
original file/line/column, so errors after `#include` or macro expansion still point at
the right place; no pcpp dependency is needed for the subset P4 programs use."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from p4reduce.softswitch.p4.diag import CompileError, error
from p4reduce.softswitch.p4.lexer import Token, tokenize

INCLUDE_DIR = Path(__file__).parent / "include"
# Architecture files of p4c's other targets: a program including one is not v1model.
OTHER_ARCHITECTURES = {
    "psa.p4": "PSA", "pna.p4": "PNA", "ebpf_model.p4": "eBPF", "ubpf_model.p4": "uBPF",
    "xdp_model.p4": "XDP", "tna.p4": "TNA", "t2na.p4": "T2NA", "dpdk/psa.p4": "PSA",
}
MAX_INCLUDE_DEPTH = 50
MAX_EXPANSION_DEPTH = 200


@dataclass
class Macro:
    name: str
    params: list[str] | None  # None: object-like
    body: list[Token]
    variadic: bool = False


class Preprocessor:
    def __init__(self, defines: dict[str, str] | None, include_dirs: Sequence[Path]):
        self.macros: dict[str, Macro] = {}
        self.include_dirs = [Path(p) for p in include_dirs] + [INCLUDE_DIR]
        self.sources: dict[str, list[str]] = {}
        self.once: set[str] = set()
        for name, val in (defines or {}).items():
            body = tokenize(val, "<command line>")
            self.macros[name] = Macro(name, None, body)

    # -- files -------------------------------------------------------------------------
    def run_text(self, text: str, filename: str, path: Path | None, depth: int = 0) -> list[Token]:
        self.sources[filename] = text.splitlines()
        toks = tokenize(text, filename)
        return self._process(toks, path, depth)

    def _include(self, tok: Token, name: str, angled: bool, cur: Path | None, depth: int) -> list[Token]:
        if depth >= MAX_INCLUDE_DEPTH:
            raise error(tok.loc, f"#include nested too deeply (more than {MAX_INCLUDE_DEPTH} levels)")
        cands: list[Path] = []
        if not angled and cur is not None:
            cands.append(cur.parent / name)
        cands += [d / name for d in self.include_dirs]
        for c in cands:
            if c.is_file():
                key = str(c.resolve())
                if key in self.once:
                    return []
                try:
                    text = c.read_text(encoding="utf-8")
                except (OSError, UnicodeDecodeError) as e:
                    raise error(tok.loc, f"cannot read included file '{name}': {e}") from None
                if name in ("core.p4", "v1model.p4"):
                    self.once.add(key)
                disp = name if c.parent == INCLUDE_DIR else str(c)
                return self.run_text(text, disp, c, depth + 1)
        arch = OTHER_ARCHITECTURES.get(name.rsplit("/", 1)[-1])
        if arch is not None:
            raise error(tok.loc, f"not supported: the {arch} architecture ({name}); this compiler implements v1model")
        raise error(tok.loc, f"cannot find included file '{name}'")

    # -- directives ----------------------------------------------------------------------
    def _process(self, toks: list[Token], path: Path | None, depth: int) -> list[Token]:
        out: list[Token] = []
        # stack of (taking, any_taken, seen_else, loc)
        conds: list[tuple[bool, bool, bool, Token]] = []
        i, n = 0, len(toks)
        pending: list[Token] = []

        def active() -> bool:
            return all(c[0] for c in conds)

        def flush() -> None:
            if pending:
                out.extend(self.expand(pending, set(), 0))
                pending.clear()

        while i < n:
            t = toks[i]
            if t.bol and t.kind == "punct" and t.text == "#":
                j = i + 1
                while j < n and toks[j].lline == t.lline and toks[j].loc.file == t.loc.file:
                    j += 1
                line = toks[i + 1 : j]
                i = j
                flush()
                if not line:
                    continue
                d = line[0].text
                args = line[1:]
                if d in ("ifdef", "ifndef"):
                    if not args or args[0].kind != "id":
                        raise error(t.loc, f"#{d} expects a macro name")
                    val = (args[0].text in self.macros) == (d == "ifdef")
                    val = val and active()
                    conds.append((val, val, False, t))
                elif d == "if":
                    val = active() and self.eval_cond(args, line[0])
                    conds.append((val, val, False, t))
                elif d == "elif":
                    if not conds or conds[-1][2]:
                        raise error(t.loc, "#elif without #if")
                    _, taken, _, st = conds.pop()
                    val = (not taken) and active() and self.eval_cond(args, line[0])
                    conds.append((val, taken or val, False, st))
                elif d == "else":
                    if not conds or conds[-1][2]:
                        raise error(t.loc, "#else without #if")
                    _, taken, _, st = conds.pop()
                    val = (not taken) and active()
                    conds.append((val, True, True, st))
                elif d == "endif":
                    if not conds:
                        raise error(t.loc, "#endif without #if")
                    conds.pop()
                elif not active():
                    continue
                elif d == "define":
                    self.define(line)
                elif d == "undef":
                    if not args or args[0].kind != "id":
                        raise error(t.loc, "#undef expects a macro name")
                    self.macros.pop(args[0].text, None)
                elif d == "include":
                    name, angled = self.include_name(line)
                    out.extend(self._include(t, name, angled, path, depth))
                elif d == "error":
                    msg = " ".join(a.text for a in args)
                    raise error(t.loc, f"#error {msg}")
                elif d in ("pragma", "line", "warning"):
                    continue
                else:
                    raise error(t.loc, f"unknown preprocessor directive '#{d}'")
                continue
            if active():
                pending.append(t)
            i += 1
        flush()
        if conds:
            raise error(conds[-1][3].loc, "unterminated conditional directive (missing #endif)")
        return out

    def include_name(self, line: list[Token]) -> tuple[str, bool]:
        args = line[1:]
        if args and args[0].kind == "str":
            return args[0].text[1:-1], False
        if args and args[0].text == "<":
            parts: list[str] = []
            for a in args[1:]:
                if a.text == ">":
                    return "".join(parts), True
                parts.append(a.text)
        raise error(line[0].loc, '#include expects "FILE" or <FILE>')

    def define(self, line: list[Token]) -> None:
        if len(line) < 2 or line[1].kind != "id":
            raise error(line[0].loc, "#define expects a macro name")
        name = line[1].text
        rest = line[2:]
        params: list[str] | None = None
        variadic = False
        if rest and rest[0].text == "(" and not rest[0].space_before:
            params = []
            k = 1
            while True:
                if k >= len(rest):
                    raise error(line[1].loc, f"unterminated parameter list of macro '{name}'")
                a = rest[k]
                if a.text == ")":
                    k += 1
                    break
                if a.text == "...":
                    variadic = True
                    params.append("__VA_ARGS__")
                elif a.kind == "id":
                    params.append(a.text)
                elif a.text != ",":
                    raise error(a.loc, f"invalid token '{a.text}' in macro parameter list")
                k += 1
            rest = rest[k:]
        self.macros[name] = Macro(name, params, rest, variadic)

    # -- expansion ------------------------------------------------------------------------
    def expand(self, toks: list[Token], hide: set[str], depth: int) -> list[Token]:
        if depth > MAX_EXPANSION_DEPTH:
            raise error(toks[0].loc, "macro expansion nested too deeply")
        out: list[Token] = []
        i, n = 0, len(toks)
        while i < n:
            t = toks[i]
            m = self.macros.get(t.text) if t.kind == "id" else None
            if m is None or t.text in hide:
                out.append(t)
                i += 1
                continue
            if m.params is None:
                obody = [replace(b, loc=t.loc, bol=False) for b in m.body]
                out.extend(self.expand(self.paste(obody, t), hide | {m.name}, depth + 1))
                i += 1
                continue
            if i + 1 >= n or toks[i + 1].text != "(":
                out.append(t)
                i += 1
                continue
            args, i = self.collect_args(toks, i + 1, t)
            if len(m.params) == 0 and args == [[]]:
                args = []
            if m.variadic and len(args) >= len(m.params):
                fixed = len(m.params) - 1
                va: list[Token] = []
                for k, a in enumerate(args[fixed:]):
                    if k:
                        va.append(replace(t, kind="punct", text=","))
                    va.extend(a)
                args = [*args[:fixed], va]
            if len(args) != len(m.params):
                raise error(t.loc, f"macro '{m.name}' expects {len(m.params)} argument(s), got {len(args)}")
            amap = dict(zip(m.params, args, strict=True))
            body: list[Token] = []
            k = 0
            while k < len(m.body):
                b = m.body[k]
                if b.text == "#" and k + 1 < len(m.body) and m.body[k + 1].text in amap:
                    s = " ".join(x.text for x in amap[m.body[k + 1].text]).replace("\\", "\\\\").replace('"', '\\"')
                    body.append(replace(b, kind="str", text=f'"{s}"', loc=t.loc, bol=False))
                    k += 2
                    continue
                if b.kind == "id" and b.text in amap:
                    pasting = (k + 1 < len(m.body) and m.body[k + 1].text == "##") or (
                        k > 0 and m.body[k - 1].text == "##")
                    arg = amap[b.text] if pasting else self.expand(amap[b.text], hide, depth + 1)
                    body.extend(replace(a, loc=t.loc, bol=False) for a in arg)
                else:
                    body.append(replace(b, loc=t.loc, bol=False))
                k += 1
            out.extend(self.expand(self.paste(body, t), hide | {m.name}, depth + 1))
        return out

    def collect_args(self, toks: list[Token], i: int, at: Token) -> tuple[list[list[Token]], int]:
        args: list[list[Token]] = [[]]
        level = 0
        i += 1
        while i < len(toks):
            a = toks[i]
            if a.text in ("(", "[", "{"):
                level += 1
            elif a.text in (")", "]", "}"):
                if level == 0 and a.text == ")":
                    return args, i + 1
                level -= 1
            elif a.text == "," and level == 0:
                args.append([])
                i += 1
                continue
            args[-1].append(a)
            i += 1
        raise error(at.loc, f"unterminated argument list invoking macro '{at.text}'")

    def paste(self, body: list[Token], at: Token) -> list[Token]:
        if not any(b.text == "##" for b in body):
            return body
        out: list[Token] = []
        k = 0
        while k < len(body):
            b = body[k]
            if b.text == "##" and out and k + 1 < len(body):
                left = out.pop()
                text = left.text + body[k + 1].text
                new = tokenize(text, at.loc.file)
                if len(new) != 1:
                    raise error(at.loc, f"pasting '{left.text}' and '{body[k + 1].text}' does not give a valid token")
                out.append(replace(new[0], loc=at.loc, bol=False))
                k += 2
                continue
            out.append(b)
            k += 1
        return out

    # -- #if expressions --------------------------------------------------------------------
    def eval_cond(self, args: list[Token], at: Token) -> bool:
        resolved: list[Token] = []
        k = 0
        while k < len(args):
            a = args[k]
            if a.kind == "id" and a.text == "defined":
                if k + 1 < len(args) and args[k + 1].text == "(":
                    if k + 3 >= len(args) or args[k + 3].text != ")":
                        raise error(a.loc, "malformed defined() in #if")
                    name = args[k + 2].text
                    k += 4
                elif k + 1 < len(args):
                    name = args[k + 1].text
                    k += 2
                else:
                    raise error(a.loc, "defined without a macro name in #if")
                resolved.append(replace(a, kind="int", text="1", value=int(name in self.macros)))
                continue
            resolved.append(a)
            k += 1
        if not resolved:
            raise error(at.loc, "#if with no expression")
        expanded = self.expand(resolved, set(), 0)
        return CondEval(expanded, at).run() != 0


_BIN_PREC = {
    "||": 1, "&&": 2, "|": 3, "^": 4, "&": 5, "==": 6, "!=": 6, "<": 7, ">": 7, "<=": 7,
    ">=": 7, "<<": 8, ">>": 8, "+": 9, "-": 9, "*": 10, "/": 10, "%": 10,
}


class CondEval:
    """Integer expression evaluator for `#if`; unknown identifiers are 0, as in C."""

    def __init__(self, toks: list[Token], at: Token):
        # merge adjacent '>' '>' into a shift
        merged: list[Token] = []
        for t in toks:
            if t.text == ">" and merged and merged[-1].text == ">" and not t.space_before:
                merged[-1] = replace(merged[-1], text=">>")
            else:
                merged.append(t)
        self.toks = merged
        self.i = 0
        self.at = at

    def fail(self, msg: str) -> CompileError:
        t = self.toks[self.i] if self.i < len(self.toks) else self.at
        return error(t.loc, msg)

    def peek(self) -> str | None:
        return self.toks[self.i].text if self.i < len(self.toks) else None

    def run(self) -> int:
        v = self.ternary()
        if self.i != len(self.toks):
            raise self.fail(f"unexpected '{self.toks[self.i].text}' in #if expression")
        return v

    def ternary(self) -> int:
        c = self.binary(1)
        if self.peek() == "?":
            self.i += 1
            a = self.ternary()
            if self.peek() != ":":
                raise self.fail("expected ':' in #if expression")
            self.i += 1
            b = self.ternary()
            return a if c else b
        return c

    def binary(self, prec: int) -> int:
        left = self.unary()
        while True:
            op = self.peek()
            p = _BIN_PREC.get(op or "")
            if p is None or p < prec:
                return left
            self.i += 1
            right = self.binary(p + 1)
            left = self.apply(op or "", left, right)

    def apply(self, op: str, a: int, b: int) -> int:
        if op in ("/", "%") and b == 0:
            raise self.fail("division by zero in #if expression")
        if op in ("<<", ">>") and b < 0:
            raise self.fail("negative shift in #if expression")
        res: int = {
            "||": lambda: int(bool(a) or bool(b)), "&&": lambda: int(bool(a) and bool(b)),
            "|": lambda: a | b, "^": lambda: a ^ b, "&": lambda: a & b,
            "==": lambda: int(a == b), "!=": lambda: int(a != b), "<": lambda: int(a < b),
            ">": lambda: int(a > b), "<=": lambda: int(a <= b), ">=": lambda: int(a >= b),
            "<<": lambda: a << min(b, 4096), ">>": lambda: a >> b, "+": lambda: a + b,
            "-": lambda: a - b, "*": lambda: a * b,
            "/": lambda: int(a / b), "%": lambda: a - int(a / b) * b,
        }[op]()
        return res

    def unary(self) -> int:
        t = self.peek()
        if t is None:
            raise self.fail("unexpected end of #if expression")
        tok = self.toks[self.i]
        self.i += 1
        if t == "!":
            return int(not self.unary())
        if t == "-":
            return -self.unary()
        if t == "+":
            return self.unary()
        if t == "~":
            return ~self.unary()
        if t == "(":
            v = self.ternary()
            if self.peek() != ")":
                raise self.fail("expected ')' in #if expression")
            self.i += 1
            return v
        if tok.kind == "int":
            return tok.value
        if tok.kind == "id":
            return 0
        self.i -= 1
        raise self.fail(f"unexpected '{t}' in #if expression")


def preprocess(text: str, filename: str, path: Path | None, defines: dict[str, str] | None,
               include_dirs: Sequence[Path]) -> tuple[list[Token], dict[str, list[str]]]:
    pp = Preprocessor(defines, include_dirs)
    try:
        return pp.run_text(text, filename, path), pp.sources
    except CompileError as e:
        raise CompileError(e.diagnostics, pp.sources) from None
