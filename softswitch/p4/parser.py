"""Recursive-descent parser for P4_16. It tracks declared type names, as p4c's grammar
does, to tell `T x;` (a declaration) from `x = e;` and `(T) e` (a cast) from `(e)`."""

from __future__ import annotations

from typing import ClassVar

from p4reduce.softswitch.p4 import ast as A
from p4reduce.softswitch.p4.diag import CompileError, Loc, error
from p4reduce.softswitch.p4.lexer import Token, int_base

BUILTIN_TYPES = {"bit", "int", "bool", "varbit", "error", "string", "void", "match_kind", "tuple", "value_set"}
DIRECTIONS: dict[str, A.Direction] = {"in": "in", "out": "out", "inout": "inout"}
MAX_NESTING = 500


class Parser:
    def __init__(self, toks: list[Token]):
        self.toks = toks
        self.i = 0
        last = toks[-1].loc if toks else Loc("<input>", 1, 1)
        self.eof = Token("eof", "<end of file>", last)
        self.type_names: set[str] = set()
        self.type_params: list[set[str]] = []
        self.depth = 0

    # ---- token helpers ----------------------------------------------------------------
    def peek(self, k: int = 0) -> Token:
        j = self.i + k
        return self.toks[j] if j < len(self.toks) else self.eof

    def at(self, text: str, k: int = 0) -> bool:
        t = self.peek(k)
        return t.text == text and t.kind in ("punct", "id")

    def next(self) -> Token:
        t = self.peek()
        self.i += 1
        return t

    def accept(self, text: str) -> bool:
        if self.at(text):
            self.i += 1
            return True
        return False

    def expect(self, text: str, what: str | None = None) -> Token:
        t = self.peek()
        if not self.at(text):
            raise error(t.loc, f"expected '{text}'{' ' + what if what else ''}, found '{t.text}'")
        self.i += 1
        return t

    def ident(self, what: str = "an identifier") -> Token:
        t = self.peek()
        if t.kind != "id":
            raise error(t.loc, f"expected {what}, found '{t.text}'")
        self.i += 1
        return t

    def is_type_name(self, name: str) -> bool:
        return name in self.type_names or name in BUILTIN_TYPES or any(name in s for s in self.type_params)

    def enter(self, loc: Loc) -> None:
        self.depth += 1
        if self.depth > MAX_NESTING:
            raise error(loc, f"program nested too deeply (more than {MAX_NESTING} levels)")

    # ---- program -------------------------------------------------------------------------
    def program(self) -> A.Program:
        decls: list[A.Decl] = []
        while self.peek().kind != "eof":
            if self.accept(";"):
                continue
            decls.append(self.declaration(top=True))
        return A.Program(decls)

    def annotations(self) -> list[A.Annotation]:
        out: list[A.Annotation] = []
        while self.at("@"):
            at = self.next()
            name = self.ident("an annotation name")
            body = ""
            s: str | None = None
            iv: int | None = None
            if self.at("("):
                self.next()
                level = 0
                parts: list[Token] = []
                while True:
                    t = self.next()
                    if t.kind == "eof":
                        raise error(at.loc, "unterminated annotation body")
                    if t.text == "(" and t.kind == "punct":
                        level += 1
                    elif t.text == ")" and t.kind == "punct":
                        if level == 0:
                            break
                        level -= 1
                    parts.append(t)
                body = " ".join(p.text for p in parts)
                if len(parts) == 1 and parts[0].kind == "str":
                    s = parts[0].text[1:-1]
                if len(parts) == 1 and parts[0].kind == "int":
                    iv = parts[0].value
            elif self.at("["):
                self.next()
                parts = []
                while not self.at("]"):
                    t = self.next()
                    if t.kind == "eof":
                        raise error(at.loc, "unterminated annotation body")
                    parts.append(t)
                self.next()
                body = " ".join(p.text for p in parts)
            out.append(A.Annotation(name.text, body, at.loc, s, iv))
        return out

    def declaration(self, top: bool = False) -> A.Decl:
        annos = self.annotations()
        t = self.peek()
        kw = t.text if t.kind == "id" else ""
        if kw in ("header", "struct", "header_union"):
            return self.header_decl(annos)
        if kw == "typedef" or kw == "type":
            self.next()
            ty = self.type_ref()
            name = self.ident("a type name")
            self.expect(";")
            self.type_names.add(name.text)
            return A.TypedefDecl(name.loc, name.text, annos, ty, kw == "type")
        if kw == "enum":
            return self.enum_decl(annos)
        if kw in ("error", "match_kind") and self.at("{", 1):
            self.next()
            self.next()
            members: list[tuple[str, Loc]] = []
            while not self.at("}"):
                m = self.ident("a member name")
                members.append((m.text, m.loc))
                if not self.accept(","):
                    break
            self.expect("}")
            return A.ErrorDecl(t.loc, kw, annos, members, kw == "match_kind")
        if kw == "const":
            self.next()
            ty = self.type_ref()
            name = self.ident("a constant name")
            self.expect("=")
            val = self.expression()
            self.expect(";")
            return A.ConstDecl(name.loc, name.text, annos, ty, val)
        if kw == "extern":
            return self.extern_decl(annos)
        if kw == "parser":
            return self.parser_decl(annos)
        if kw == "control":
            return self.control_decl(annos)
        if kw == "action":
            return self.action_decl(annos)
        if kw == "table":
            return self.table_decl(annos)
        if kw == "package":
            self.next()
            name = self.ident("a package name")
            self.type_names.add(name.text)
            tps = self.opt_type_params()
            self.type_params.append(set(tps))
            params = self.params()
            self.type_params.pop()
            self.expect(";")
            return A.PackageDecl(name.loc, name.text, annos, tps, params)
        if top and self.looks_like_function():
            return self.function_decl(annos)
        # instantiation or variable
        ty = self.type_ref()
        if self.at("("):
            args = self.args()
            name = self.ident("an instance name")
            self.expect(";")
            return A.InstanceDecl(name.loc, name.text, annos, ty, args)
        name = self.ident("a variable name")
        init = None
        if self.accept("="):
            init = self.expression()
        self.expect(";")
        if top:
            raise error(name.loc, f"variable '{name.text}' cannot be declared at the top level; use const")
        return A.VarDecl(name.loc, name.text, annos, ty, init)

    def looks_like_function(self) -> bool:
        """`T name(` or `T name<` after the return type: a function declaration."""
        save = self.i
        try:
            self.type_params.append(self.early_type_params())
            try:
                self.type_ref()
            finally:
                self.type_params.pop()
            return self.peek().kind == "id" and self.peek(1).text in ("(", "<")
        except CompileError:
            return False
        finally:
            self.i = save

    def early_type_params(self) -> set[str]:
        """Type parameters declared after the name (`T f<T>(...)`), already in scope in the
        return type: the identifiers between the `<` `>` closing just before the first `(`."""
        j = self.i
        while self.peek(j - self.i).text not in ("(", ";", "{") and self.peek(j - self.i).kind != "eof":
            j += 1
        early: set[str] = set()
        if j - 1 > self.i and self.toks[j - 1].text == ">":
            k = j - 2
            while k > self.i and self.toks[k].text != "<":
                if self.toks[k].kind == "id":
                    early.add(self.toks[k].text)
                k -= 1
        return early

    def function_decl(self, annos: list[A.Annotation]) -> A.Decl:
        self.type_params.append(self.early_type_params())
        try:
            ret = self.type_ref()
            name = self.ident("a function name")
            tps = self.opt_type_params()
            self.type_params.append(set(tps))
            try:
                params = self.params()
                body = self.block()
            finally:
                self.type_params.pop()
        finally:
            self.type_params.pop()
        return A.FunctionDecl(name.loc, name.text, annos, tps, ret, params, body)

    def header_decl(self, annos: list[A.Annotation]) -> A.Decl:
        kw = self.next()
        name = self.ident("a type name")
        self.type_names.add(name.text)
        self.expect("{")
        fields: list[A.Field] = []
        while not self.at("}"):
            fa = self.annotations()
            ty = self.type_ref()
            fname = self.ident("a field name")
            self.expect(";")
            fields.append(A.Field(fname.text, ty, fa, fname.loc))
        self.expect("}")
        return A.HeaderDecl(name.loc, name.text, annos, fields, kw.text == "struct", kw.text == "header_union")

    def enum_decl(self, annos: list[A.Annotation]) -> A.Decl:
        self.next()
        under = None
        if not (self.peek().kind == "id" and self.at("{", 1)):
            under = self.type_ref()
        name = self.ident("an enum name")
        self.type_names.add(name.text)
        self.expect("{")
        members: list[tuple[str, A.Expr | None, Loc]] = []
        while not self.at("}"):
            m = self.ident("an enum member")
            val = self.expression() if self.accept("=") else None
            members.append((m.text, val, m.loc))
            if not self.accept(","):
                break
        self.expect("}")
        return A.EnumDecl(name.loc, name.text, annos, members, under)

    def opt_type_params(self) -> list[str]:
        out: list[str] = []
        if self.accept("<"):
            while True:
                out.append(self.ident("a type parameter").text)
                if not self.accept(","):
                    break
            self.expect(">")
        return out

    def params(self) -> list[A.Param]:
        self.expect("(")
        out: list[A.Param] = []
        if self.accept(")"):
            return out
        while True:
            pa = self.annotations()
            d: A.Direction = "none"
            if self.peek().kind == "id" and self.peek().text in DIRECTIONS:
                d = DIRECTIONS[self.next().text]
            ty = self.type_ref()
            name = self.ident("a parameter name")
            dflt = self.expression() if self.accept("=") else None
            out.append(A.Param(d, ty, name.text, pa, name.loc, dflt))
            if not self.accept(","):
                break
        self.expect(")")
        return out

    def method_decl(self, annos: list[A.Annotation], ext: str | None) -> A.MethodDecl:
        abstract = self.accept("abstract")
        t = self.peek()
        if ext is not None and t.text == ext and self.at("(", 1):
            self.next()
            params = self.params()
            self.expect(";")
            return A.MethodDecl(t.loc, ext, annos, [], None, params)
        # type parameters (`T lookahead<T>()`) are in scope in the return type already
        self.type_params.append(self.early_type_params())
        ret = self.type_ref()
        name = self.ident("a method name")
        tps = self.opt_type_params()
        params = self.params()
        self.type_params.pop()
        self.expect(";")
        return A.MethodDecl(name.loc, name.text, annos, tps, ret, params, abstract)

    def extern_decl(self, annos: list[A.Annotation]) -> A.Decl:
        self.next()
        # `extern Name {` / `extern Name<T> {` declare objects; anything else is a function
        first, second = self.peek(), self.peek(1)
        is_object = second.text == "{" or (second.text == "<" and first.text not in ("bit", "int", "varbit"))
        if not is_object:
            m = self.method_decl(annos, None)
            return A.FunctionExternDecl(m.loc, m.name, annos, m)
        name = self.ident("an extern name")
        self.type_names.add(name.text)
        tps = self.opt_type_params()
        self.type_params.append(set(tps))
        self.expect("{")
        methods: list[A.MethodDecl] = []
        while not self.at("}"):
            ma = self.annotations()
            methods.append(self.method_decl(ma, name.text))
        self.expect("}")
        self.type_params.pop()
        return A.ExternDecl(name.loc, name.text, annos, tps, methods)

    def block_header(self) -> tuple[Token, list[str], list[A.Param], list[A.Param]]:
        self.next()
        name = self.ident("a name")
        self.type_names.add(name.text)
        tps = self.opt_type_params()
        self.type_params.append(set(tps))
        params = self.params()
        ctor: list[A.Param] = []
        if self.at("("):
            ctor = self.params()
        return name, tps, params, ctor

    def parser_decl(self, annos: list[A.Annotation]) -> A.Decl:
        name, tps, params, ctor = self.block_header()
        try:
            if self.accept(";"):
                return A.ParserDecl(name.loc, name.text, annos, tps, params, ctor, is_type=True)
            self.expect("{")
            locals_: list[A.Decl] = []
            states: list[A.ParserState] = []
            while not self.at("}"):
                sa = self.annotations()
                if self.at("state"):
                    st = self.next()
                    sname = self.ident("a state name")
                    self.expect("{")
                    body: list[A.Stmt | A.Decl] = []
                    trans: A.Expr | None = None
                    while not self.at("}"):
                        if self.at("transition"):
                            tt = self.next()
                            trans = self.transition(tt)
                            if not self.at("}"):
                                raise error(self.peek().loc, "transition must be the last statement of a state")
                            break
                        body.append(self.statement_or_decl())
                    self.expect("}")
                    states.append(A.ParserState(sname.text, body, trans, sa, st.loc))
                else:
                    locals_.append(self.declaration_with(sa))
            self.expect("}")
            return A.ParserDecl(name.loc, name.text, annos, tps, params, ctor, locals_, states)
        finally:
            self.type_params.pop()

    def declaration_with(self, annos: list[A.Annotation]) -> A.Decl:
        d = self.declaration()
        d.annotations = annos + d.annotations
        return d

    def transition(self, tt: Token) -> A.Expr:
        if self.at("select"):
            s = self.next()
            self.expect("(")
            keys: list[A.Expr] = []
            if not self.at(")"):
                keys.append(self.expression())
                while self.accept(","):
                    keys.append(self.expression())
            self.expect(")")
            self.expect("{")
            cases: list[A.SelectCase] = []
            while not self.at("}"):
                kl = self.peek().loc
                if self.at("("):
                    # a tuple keyset, or a parenthesized single keyset
                    save = self.i
                    self.next()
                    items = [self.keyset()]
                    while self.accept(","):
                        items.append(self.keyset())
                    self.expect(")")
                    if self.at(":") and len(items) > 1:
                        ks: A.Expr = A.ListExpr(kl, items)
                    else:
                        self.i = save
                        ks = self.keyset()
                else:
                    ks = self.keyset()
                self.expect(":")
                nxt = self.ident("a state name")
                self.expect(";")
                cases.append(A.SelectCase(ks, nxt.text, kl))
            self.expect("}")
            return A.Select(s.loc, keys, cases)
        nxt = self.ident("a state name")
        self.expect(";")
        return A.Name(nxt.loc, nxt.text)

    def keyset(self) -> A.Expr:
        t = self.peek()
        if self.at("default") or self.at("_"):
            self.next()
            return A.Default(t.loc)
        e = self.expression()
        if self.at("&&&"):
            op = self.next()
            return A.Mask(op.loc, e, self.expression())
        if self.at(".."):
            op = self.next()
            return A.Range(op.loc, e, self.expression())
        return e

    def control_decl(self, annos: list[A.Annotation]) -> A.Decl:
        name, tps, params, ctor = self.block_header()
        try:
            if self.accept(";"):
                return A.ControlDecl(name.loc, name.text, annos, tps, params, ctor, is_type=True)
            self.expect("{")
            locals_: list[A.Decl] = []
            while not self.at("apply"):
                if self.at("}"):
                    raise error(self.peek().loc, f"control '{name.text}' has no apply block")
                locals_.append(self.declaration())
            self.next()
            body = self.block()
            self.expect("}")
            return A.ControlDecl(name.loc, name.text, annos, tps, params, ctor, locals_, body)
        finally:
            self.type_params.pop()

    def action_decl(self, annos: list[A.Annotation]) -> A.Decl:
        self.next()
        name = self.ident("an action name")
        params = self.params()
        body = self.block()
        return A.ActionDecl(name.loc, name.text, annos, params, body)

    def action_ref(self) -> A.ActionRef:
        annos = self.annotations()
        t = self.peek()
        dot = self.accept(".")
        name = self.ident("an action name")
        args = self.args() if self.at("(") else []
        return A.ActionRef(("." if dot else "") + name.text, args, annos, t.loc)

    def table_decl(self, annos: list[A.Annotation]) -> A.Decl:
        self.next()
        name = self.ident("a table name")
        tbl = A.TableDecl(name.loc, name.text, annos)
        self.expect("{")
        while not self.at("}"):
            pa = self.annotations()
            const = self.accept("const")
            p = self.ident("a table property")
            if p.text == "key":
                self.expect("=")
                self.expect("{")
                tbl.keys_loc = p.loc
                while not self.at("}"):
                    start = self.i
                    e = self.expression()
                    text = self.source_text(start, self.i)
                    self.expect(":")
                    mk = self.ident("a match kind")
                    ka = self.annotations()
                    self.expect(";")
                    tbl.keys.append(A.KeyElem(e, mk.text, ka, e.loc, text))
            elif p.text == "actions":
                tbl.has_actions = True
                self.expect("=")
                self.expect("{")
                while not self.at("}"):
                    tbl.actions.append(self.action_ref())
                    self.expect(";")
                self.expect("}")
                self.accept(";")
                continue
            elif p.text == "default_action":
                self.expect("=")
                tbl.default_action = self.action_ref()
                tbl.default_const = const
            elif p.text == "entries":
                self.expect("=")
                self.expect("{")
                tbl.entries = []
                tbl.entries_const = const
                while not self.at("}"):
                    tbl.entries.append(self.entry())
                self.expect("}")
                self.accept(";")
                continue
            else:
                self.expect("=")
                e = self.expression()
                tbl.props[p.text] = (e, p.loc)
                tbl.prop_annotations[p.text] = pa
            if p.text == "key":
                self.expect("}")
                self.accept(";")
            else:
                self.expect(";")
        self.expect("}")
        return tbl

    def entry(self) -> A.Entry:
        annos = self.annotations()
        self.accept("const")  # P4 1.2.4 per-entry const: the P4Info does not show it
        loc = self.peek().loc
        prio = None
        if self.accept("priority"):
            self.expect("=")
            prio = self.expression()
            self.expect(":")
        if self.at("("):
            self.next()
            keys = [self.keyset()]
            while self.accept(","):
                keys.append(self.keyset())
            self.expect(")")
        else:
            keys = [self.keyset()]
        self.expect(":")
        act = self.action_ref()
        annos += self.annotations()
        self.expect(";")
        return A.Entry(keys, act, prio, annos, loc)

    def source_text(self, a: int, b: int) -> str:
        out = ""
        for k in range(a, b):
            t = self.toks[k]
            if out and t.space_before and t.text not in (".", "[", "]", ":", ")") and out[-1] not in ".[(":
                out += " "
            out += t.text
        return out

    # ---- types ----------------------------------------------------------------------------
    def type_ref(self) -> A.TypeRef:
        t = self.peek()
        if t.kind != "id":
            raise error(t.loc, f"expected a type, found '{t.text}'")
        if t.text in ("bit", "int", "varbit"):
            self.next()
            if self.accept("<"):
                if self.accept("("):
                    w: A.Expr = self.expression()
                    self.expect(")")
                else:
                    wt = self.peek()
                    if wt.kind == "int":
                        self.next()
                        w = A.IntLit(wt.loc, wt.value, wt.width, wt.signed)
                    elif wt.kind == "id":
                        self.next()
                        w = A.Name(wt.loc, wt.text)
                    else:
                        raise error(wt.loc, f"expected a width, found '{wt.text}'")
                self.expect(">")
            elif t.text == "int":
                return A.NamedType(t.loc, "int")  # arbitrary precision (constants, parameters)
            else:
                w = A.IntLit(t.loc, 1, None, False)
            base: A.TypeRef = A.VarbitType(t.loc, w) if t.text == "varbit" else A.BitsType(t.loc, t.text == "int", w)
        elif t.text == "bool":
            self.next()
            base = A.BoolType(t.loc)
        else:
            if not self.is_type_name(t.text):
                raise error(t.loc, f"unknown type '{t.text}'")
            self.next()
            targs: list[A.TypeRef] = []
            if self.at("<"):
                self.next()
                while True:
                    targs.append(self.type_ref())
                    if not self.accept(","):
                        break
                self.expect(">")
            base = A.NamedType(t.loc, t.text, targs)
        while self.at("["):
            lb = self.next()
            size = self.expression()
            self.expect("]")
            base = A.StackType(lb.loc, base, size)
        return base

    # ---- statements -----------------------------------------------------------------------
    def block(self) -> A.Block:
        lb = self.expect("{")
        self.enter(lb.loc)
        body: list[A.Stmt | A.Decl] = []
        while not self.at("}"):
            if self.peek().kind == "eof":
                raise error(lb.loc, "unterminated block: missing '}'")
            body.append(self.statement_or_decl())
        self.next()
        self.depth -= 1
        return A.Block(lb.loc, body)

    def looks_like_decl(self) -> bool:
        t = self.peek()
        if t.kind != "id":
            return t.text == "@"
        if t.text in ("const", "action", "table"):
            return True
        if t.text in ("bit", "int", "bool", "varbit"):
            return True
        if t.text == "error":
            return self.peek(1).kind == "id"
        if self.is_type_name(t.text):
            n = self.peek(1)
            return n.kind == "id" or n.text in ("<", "(", "[")
        return False

    def statement_or_decl(self) -> A.Stmt | A.Decl:
        if self.at("@"):
            # annotated block (`@atomic { ... }`): the annotations have no effect here
            save = self.i
            self.annotations()
            if self.at("{"):
                return self.block()
            self.i = save
        if self.looks_like_decl():
            return self.declaration()
        return self.statement()

    def statement(self) -> A.Stmt:
        t = self.peek()
        if t.text == "{" and t.kind == "punct":
            return self.block()
        if t.text == ";" and t.kind == "punct":
            self.next()
            return A.Empty(t.loc)
        if t.kind == "id":
            if t.text == "if":
                self.next()
                self.enter(t.loc)
                self.expect("(")
                c = self.expression()
                self.expect(")")
                th = self.statement()
                el = self.statement() if self.accept("else") else None
                self.depth -= 1
                return A.If(t.loc, c, th, el)
            if t.text == "exit":
                self.next()
                self.expect(";")
                return A.Exit(t.loc)
            if t.text == "return":
                self.next()
                v = None if self.at(";") else self.expression()
                self.expect(";")
                return A.Return(t.loc, v)
            if t.text == "switch":
                return self.switch()
            if t.text == "transition":
                raise error(t.loc, "transition is only allowed at the end of a parser state")
        if t.kind == "id" and t.text == "for":
            raise error(t.loc, "not supported: for loops")
        lhs = self.expression()
        if self.at("="):
            eq = self.next()
            rhs = self.expression()
            self.expect(";")
            return A.Assign(eq.loc, lhs, rhs)
        op_t = self.peek()
        if op_t.kind == "punct":
            op, n = op_t.text, 1
            if op == ">" and self.at(">", 1) and not self.peek(1).space_before:
                op, n = ">>", 2
            if op in self.BIN_PREC and self.at("=", n) and not self.peek(n).space_before:
                self.i += n + 1
                rhs = self.expression()
                self.expect(";")
                return A.Assign(op_t.loc, lhs, A.Binary(op_t.loc, op, lhs, rhs))
        if not isinstance(lhs, A.Call):
            raise error(self.peek().loc, f"expected '=' or a method call, found '{self.peek().text}'")
        self.expect(";")
        return A.CallStmt(lhs.loc, lhs)

    def switch(self) -> A.Stmt:
        t = self.next()
        self.expect("(")
        e = self.expression()
        self.expect(")")
        self.expect("{")
        cases: list[A.SwitchCase] = []
        while not self.at("}"):
            lt = self.peek()
            label: A.Expr | None = None if self.accept("default") else self.expression()
            self.expect(":")
            body = self.block() if self.at("{") else None
            cases.append(A.SwitchCase(label, body, lt.loc))
        self.expect("}")
        return A.Switch(t.loc, e, cases)

    # ---- expressions ----------------------------------------------------------------------
    BIN_PREC: ClassVar[dict[str, int]] = {
        "||": 1, "&&": 2, "==": 3, "!=": 3, "<": 4, ">": 4, "<=": 4, ">=": 4, "|": 5,
        "^": 6, "&": 7, "<<": 8, ">>": 8, "++": 9, "+": 9, "-": 9, "|+|": 9, "|-|": 9,
        "*": 10, "/": 10, "%": 10,
    }

    def binop(self) -> tuple[str, int] | None:
        t = self.peek()
        if t.kind != "punct":
            return None
        if t.text == ">" and self.at(">", 1) and not self.peek(1).space_before:
            if self.at("=", 2) and not self.peek(2).space_before:
                return None  # `x >>= e`
            return ">>", 2
        p = self.BIN_PREC.get(t.text)
        if p is None:
            return None
        if self.at("=", 1) and not self.peek(1).space_before:
            return None  # `x += e`: an assignment, which statement() parses
        return t.text, 1

    def expression(self) -> A.Expr:
        self.enter(self.peek().loc)
        c = self.binary(1)
        if self.at("?"):
            q = self.next()
            a = self.expression()
            self.expect(":")
            b = self.expression()
            c = A.Mux(q.loc, c, a, b)
        self.depth -= 1
        return c

    def binary(self, prec: int) -> A.Expr:
        left = self.unary()
        while True:
            bo = self.binop()
            if bo is None:
                return left
            op, ntok = bo
            p = self.BIN_PREC[op]
            if p < prec:
                return left
            loc = self.peek().loc
            self.i += ntok
            right = self.binary(p + 1)
            left = A.Binary(loc, op, left, right)

    def unary(self) -> A.Expr:
        t = self.peek()
        if t.kind == "punct" and t.text in ("!", "~", "-", "+"):
            self.next()
            self.enter(t.loc)
            arg = self.unary()
            self.depth -= 1
            return A.Unary(t.loc, t.text, arg)
        if t.kind == "punct" and t.text == "(" and self.is_cast():
            self.next()
            ty = self.type_ref()
            self.expect(")")
            self.enter(t.loc)
            arg = self.unary()
            self.depth -= 1
            return A.Cast(t.loc, ty, arg)
        return self.postfix(self.primary())

    def is_cast(self) -> bool:
        n = self.peek(1)
        if n.kind != "id":
            return False
        if n.text in ("bit", "int", "bool", "varbit"):
            return True
        if n.text in self.type_names or any(n.text in s for s in self.type_params):
            nn = self.peek(2)
            return nn.text in (")", "<", "[")
        return False

    def primary(self) -> A.Expr:
        t = self.next()
        if t.kind == "int":
            return A.IntLit(t.loc, t.value, t.width, t.signed, int_base(t.text))
        if t.kind == "str":
            return A.StrLit(t.loc, t.text[1:-1])
        if t.kind == "id":
            if t.text == "true" or t.text == "false":
                return A.BoolLit(t.loc, t.text == "true")
            return A.Name(t.loc, t.text)
        if t.text == "." and self.peek().kind == "id":
            n = self.next()
            return A.Name(n.loc, n.text, True)
        if t.text == "(":
            e = self.expression()
            self.expect(")")
            return e
        if t.text == "{":
            items: list[A.Expr] = []
            names: list[str] = []
            while not self.at("}"):
                if self.peek().kind == "id" and self.at("=", 1) and not self.at("=", 2):
                    names.append(self.next().text)
                    self.next()
                items.append(self.expression())
                if not self.accept(","):
                    break
            self.expect("}")
            if names and len(names) != len(items):
                raise error(t.loc, "name every field of a struct initializer, or none")
            return A.ListExpr(t.loc, items, names or None)
        if t.kind == "eof":
            raise error(t.loc, "unexpected end of file in an expression")
        raise error(t.loc, f"expected an expression, found '{t.text}'")

    def try_type_args(self) -> list[A.TypeRef] | None:
        save = self.i
        try:
            self.expect("<")
            out = [self.type_ref()]
            while self.accept(","):
                out.append(self.type_ref())
            self.expect(">")
            if self.at("("):
                return out
        except CompileError:
            pass
        self.i = save
        return None

    def postfix(self, e: A.Expr) -> A.Expr:
        while True:
            t = self.peek()
            if t.kind != "punct":
                return e
            if t.text == ".":
                self.next()
                m = self.ident("a member name")
                e = A.Member(e.loc, e, m.text, m.loc)
            elif t.text == "[":
                self.next()
                a = self.expression()
                if self.accept(":"):
                    b = self.expression()
                    self.expect("]")
                    e = A.Slice(t.loc, e, a, b)
                else:
                    self.expect("]")
                    e = A.Index(t.loc, e, a)
            elif t.text == "(":
                e = A.Call(e.loc, e, [], self.args())
            elif t.text == "<" and isinstance(e, A.Member | A.Name):
                targs = self.try_type_args()
                if targs is None:
                    return e
                e = A.Call(e.loc, e, targs, self.args())
            else:
                return e

    def args(self) -> list[A.Expr]:
        self.expect("(")
        out: list[A.Expr] = []
        if self.accept(")"):
            return out
        while True:
            name: Token | None = None
            if self.peek().kind == "id" and self.at("=", 1) and not self.at("=", 2):
                name = self.next()
                self.next()
            if self.at("_"):
                t = self.next()
                arg: A.Expr = A.Default(t.loc)
            else:
                arg = self.expression()
            out.append(A.NamedArg(name.loc, name.text, arg) if name is not None else arg)
            if not self.accept(","):
                break
        self.expect(")")
        return out


def parse(toks: list[Token]) -> A.Program:
    return Parser(toks).program()
