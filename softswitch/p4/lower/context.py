"""The shared context of the lowering modules: the program-wide symbol tables, the IR
objects collected so far, and one lowerer per construct, which reach each other through
it (`cx.exprs.expr(...)`, `cx.tables.lower_table(...)`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import PurePath

from p4reduce.softswitch.p4 import ast as A
from p4reduce.softswitch.p4.diag import Loc, error
from p4reduce.softswitch.p4.ir import (
    Action,
    ActionProfile,
    CallArg,
    Counter,
    Digest,
    DirectCounter,
    DirectMeter,
    Expr,
    Meter,
    NewType,
    Register,
    SerializableEnum,
    Table,
    Types,
    ValueSet,
)
from p4reduce.softswitch.p4.lower.bindings import Binding, BlockInst, Ctx, Scope, anno_get
from p4reduce.softswitch.p4.lower.calls import Calls
from p4reduce.softswitch.p4.lower.controlplane import ControlPlane
from p4reduce.softswitch.p4.lower.controls import Controls
from p4reduce.softswitch.p4.lower.decls import Decls
from p4reduce.softswitch.p4.lower.exprs import Exprs
from p4reduce.softswitch.p4.lower.functions import Functions
from p4reduce.softswitch.p4.lower.parsers import Parsers
from p4reduce.softswitch.p4.lower.program import ProgramLowering
from p4reduce.softswitch.p4.lower.stmts import Stmts
from p4reduce.softswitch.p4.lower.tables import Tables
from p4reduce.softswitch.p4.lower.typerefs import TypeRefs
from p4reduce.softswitch.p4.types import AnyT, T


@dataclass
class Outputs:
    """Program-level IR objects, filled in as declarations and instances are lowered."""

    types: Types = field(default_factory=lambda: Types(headers={}, structs={}))
    actions: dict[str, Action] = field(default_factory=dict)
    tables: dict[str, Table] = field(default_factory=dict)
    registers: list[Register] = field(default_factory=list)
    counters: list[Counter] = field(default_factory=list)
    direct_counters: list[DirectCounter] = field(default_factory=list)
    meters: list[Meter] = field(default_factory=list)
    direct_meters: list[DirectMeter] = field(default_factory=list)
    digests: list[Digest] = field(default_factory=list)
    action_profiles: list[ActionProfile] = field(default_factory=list)
    value_sets: list[ValueSet] = field(default_factory=list)


class Lowering:
    def __init__(self, prog: A.Program, source: str):
        self.prog = prog
        self.source = PurePath(source).name
        self.typedefs: dict[str, AnyT] = {}
        self.headers: dict[str, A.HeaderDecl] = {}
        self.enums: dict[str, list[str]] = {}
        self.serenums: dict[str, SerializableEnum] = {}
        self.newtypes: dict[str, NewType] = {}
        self.errors: list[str] = []
        self.match_kinds: list[str] = []
        self.externs: dict[str, A.ExternDecl] = {}
        self.funcs: dict[str, list[A.MethodDecl]] = {}
        self.control_decls: dict[str, A.ControlDecl] = {}
        self.parser_decls: dict[str, A.ParserDecl] = {}
        self.packages: dict[str, A.PackageDecl] = {}
        self.function_decls: list[A.FunctionDecl] = []
        self.glob = Scope()
        self.global_names: dict[str, Loc] = {}
        self.out = Outputs()
        self.obj_names: dict[str, Loc] = {}
        self.tmp_counter = 0
        self.main: A.InstanceDecl | None = None
        # What p4c's P4Info order depends on (see controlplane.py): the inlined position
        # (block, *Ctx.key) of every table, extern instance and control-local action by
        # name, and for top-level actions the first reference from each top-level block.
        self.decl_keys: dict[str, tuple[int, ...]] = {}
        self.global_refs: list[tuple[int, str, tuple[int, ...], str | None]] = []
        self.body_refs = 0
        self.inlined = 0  # function calls inlined so far, to name their locals
        self.top_instances = 0
        self.lowered: set[int] = set()  # controls, parsers and functions lowered (by id)
        self.inplace_profiles: set[str] = set()  # `implementation = action_profile(..)`
        self.direct_instances: dict[tuple[str, str], BlockInst] = {}  # `T.apply()` instances
        # actions a table's actions list binds arguments of: name -> (count, the arguments)
        self.bound_actions: dict[str, tuple[int, list[CallArg]]] = {}
        self.action_decls: dict[str, A.ActionDecl] = {}
        # one lowerer per construct
        self.typerefs = TypeRefs(self)
        self.exprs = Exprs(self)
        self.calls = Calls(self)
        self.stmts = Stmts(self)
        self.decls = Decls(self)
        self.tables = Tables(self)
        self.controls = Controls(self)
        self.functions = Functions(self)
        self.parsers = Parsers(self)
        self.program = ProgramLowering(self)
        self.controlplane = ControlPlane(self)

    def declare_global(self, name: str, loc: Loc) -> None:
        if name in self.global_names:
            prev = self.global_names[name]
            raise error(loc, f"duplicate declaration of '{name}' (first declared at {prev.file}:{prev.line})")
        self.global_names[name] = loc

    def global_ctx(self) -> Ctx:
        return Ctx("global", "", "", self.glob, [], set())

    def new_local(self, name: str, t: T, ctx: Ctx) -> Expr:
        base = f"{ctx.prefix}{name}"
        q = base
        k = 0
        while q in ctx.local_names:
            k += 1
            q = f"{base}_{k}"
        ctx.local_names.add(q)
        ctx.locals.append({"name": q, "type": t})
        return {"op": "field", "path": ["local", q], "type": t}

    def bind(self, scope: Scope, name: str, b: Binding, loc: Loc) -> None:
        if name in scope.names:
            raise error(loc, f"duplicate declaration of '{name}'")
        scope.names[name] = b

    def next_tmp(self) -> int:
        self.tmp_counter += 1
        return self.tmp_counter

    def qualified(self, d: A.Decl, prefix: str) -> str:
        n = anno_get(d.annotations, "name")
        if n is not None and n.string is not None:
            s = n.string
            return s[1:] if s.startswith(".") else prefix + s
        return prefix + d.name

    def obj_id(self, d: A.Decl) -> int | None:
        a = anno_get(d.annotations, "id")
        if a is None:
            return None
        if a.integer is None:
            raise error(a.loc, "@id needs an integer")
        return a.integer

    def ref_global_action(self, block: int, name: str, key: tuple[int, ...],
                          table: str | None = None) -> None:
        """Note a use of top-level action `name` from top-level block `block` at `key`, in
        `table`'s properties or (None) in an apply body: p4c copies the action into every
        block using it, at the front, in first-use order."""
        self.global_refs.append((block, name, key, table))

    def claim(self, name: str, loc: Loc) -> None:
        if name in self.obj_names:
            raise error(loc, f"two objects are named '{name}'")
        self.obj_names[name] = loc
