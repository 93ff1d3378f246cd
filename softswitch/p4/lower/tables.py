"""Tables: keys, action lists, default actions, properties and const entries."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, cast

from p4reduce.softswitch.p4 import ast as A
from p4reduce.softswitch.p4.diag import error
from p4reduce.softswitch.p4.ir import (
    ConstEntry,
    DefaultAction,
    DirectCounter,
    DirectMeter,
    Key,
    TableAction,
)
from p4reduce.softswitch.p4.lower.bindings import (
    ActionB,
    Ctx,
    ExternInst,
    TableB,
    anno_get,
    anno_ir,
    ival,
)
from p4reduce.softswitch.p4.types import show

if TYPE_CHECKING:
    from p4reduce.softswitch.p4.lower.context import Lowering


class Tables:
    def __init__(self, cx: Lowering) -> None:
        self.cx = cx

    def lower_table(self, tb: TableB, ctx: Ctx) -> None:
        d = tb.decl
        keys: list[Key] = []
        kinds: list[str] = []
        for k in d.keys:
            if k.match_kind not in self.cx.match_kinds:
                raise error(k.loc, f"unknown match kind '{k.match_kind}'")
            if k.match_kind == "selector":
                raise error(k.loc, "match kind 'selector' needs action selectors, which are not supported")
            e = self.cx.exprs.expr(k.expr, ctx, None)
            if e["type"]["kind"] == "intlit":
                raise error(k.loc, "a table key needs a known width")
            if e["type"]["kind"] not in ("bit", "int", "bool", "serenum", "error", "enum"):
                raise error(k.loc, f"a table key cannot have type {show(e['type'])}")
            n = anno_get(k.annotations, "name")
            keys.append({"name": n.string if n is not None and n.string is not None else k.text,
                         "match_kind": k.match_kind, "expr": e, "annotations": anno_ir(k.annotations)})
            kinds.append(k.match_kind)
        actions: list[TableAction] = []
        by_short: dict[str, ActionB] = {}
        for a in d.actions:
            b = (self.cx.glob if a.name.startswith(".") else ctx.scope).lookup(a.name.lstrip("."))
            if not isinstance(b, ActionB):
                raise error(a.loc, f"'{a.name}' is not an action" if b is not None else f"action '{a.name}' is not declared")
            if b.qname in (x["name"] for x in actions):
                raise error(a.loc, f"action '{a.name}' is listed twice")
            if a.args:
                raise error(a.loc, "arguments in a table's actions list are not supported")
            if any(p.direction != "none" for p in b.decl.params):
                raise error(a.loc, f"action '{a.name}' has directional parameters, which a table cannot supply")
            self.cx.decls.lower_action(b)
            scope: Literal["table_and_default", "table_only", "default_only"] = "table_and_default"
            if anno_get(a.annotations, "tableonly"):
                scope = "table_only"
            elif anno_get(a.annotations, "defaultonly"):
                scope = "default_only"
            actions.append({"name": b.qname, "scope": scope, "annotations": anno_ir(a.annotations)})
            if b.scope is self.cx.glob:
                self.cx.ref_global_action(ctx.block, b.qname, (0, *tb.key, len(actions)), tb.qname)
            by_short[a.name.lstrip(".")] = b
        if not d.actions:
            raise error(d.loc, f"table '{d.name}' has no actions property")
        default: DefaultAction
        if d.default_action is not None:
            da = d.default_action
            b = by_short.get(da.name.lstrip("."))
            if b is None:
                raise error(da.loc, f"default action '{da.name}' is not in the actions list of table '{d.name}'")
            if next(x for x in actions if x["name"] == b.qname)["scope"] == "table_only":
                raise error(da.loc, f"action '{da.name}' is @tableonly and cannot be the default action")
            default = {"name": b.qname, "args": self.action_args(da, b, ctx), "const": d.default_const}
        else:
            nb = self.cx.glob.lookup("NoAction")
            if not isinstance(nb, ActionB):
                raise error(d.loc, f"table '{d.name}' has no default_action and NoAction is not declared")
            default = {"name": "NoAction", "args": [], "const": False}
            self.cx.decls.lower_action(nb)
            # p4c adds it to the actions list (@defaultonly) when the list lacks it
            self.cx.ref_global_action(ctx.block, "NoAction", (0, *tb.key, len(actions) + 1), tb.qname)
        size = 1024
        size_explicit = False
        dcounter: str | None = None
        dmeter: str | None = None
        for pname, (pe, ploc) in d.props.items():
            if pname == "size":
                size = self.cx.typerefs.const_int(pe, ctx, "the table size")
                if size <= 0:
                    raise error(pe.loc, "the table size must be positive")
                size_explicit = True
            elif pname in ("counters", "meters"):
                if not isinstance(pe, A.Name):
                    raise error(pe.loc, f"'{pname}' must name a direct_{pname[:-1]} instance")
                ib = ctx.scope.lookup(pe.name)
                want = "direct_counter" if pname == "counters" else "direct_meter"
                if not isinstance(ib, ExternInst) or ib.ext.name != want or ib.ir is None:
                    raise error(pe.loc, f"'{pe.name}' is not a {want} instance")
                direct = cast(DirectCounter | DirectMeter, ib.ir)
                if direct["table"] is not None:
                    raise error(pe.loc, f"{want} '{pe.name}' is already used by table {direct['table']}")
                direct["table"] = tb.qname
                if pname == "counters":
                    dcounter = ib.qname
                else:
                    dmeter = ib.qname
            elif pname in ("support_timeout", "implementation", "psa_direct_counter", "psa_direct_meter"):
                if pname == "implementation":
                    raise error(ploc, "table implementations (action profiles/selectors) are not supported")
            else:
                raise error(ploc, f"unknown table property '{pname}'")
        entries: list[ConstEntry] = []
        if d.entries is not None:
            if not d.keys:
                raise error(d.loc, "a table without keys cannot have entries")
            only_exact = all(k in ("exact", "lpm") for k in kinds)  # P4Runtime: no priority without ternary/range/optional
            for idx, en in enumerate(d.entries):
                if len(en.keys) != len(keys):
                    raise error(en.loc, f"entry has {len(en.keys)} key(s), table '{d.name}' has {len(keys)}")
                kss = [self.cx.exprs.keyset(ke, key["expr"]["type"], ctx, key["match_kind"]) for ke, key in zip(en.keys, keys, strict=True)]
                b = by_short.get(en.action.name.lstrip("."))
                if b is None:
                    raise error(en.action.loc, f"action '{en.action.name}' is not in the actions list of table '{d.name}'")
                if next(x for x in actions if x["name"] == b.qname)["scope"] == "default_only":
                    raise error(en.action.loc, f"action '{en.action.name}' is @defaultonly and cannot be used in an entry")
                prio = 0 if only_exact else idx + 1
                pa = anno_get(en.annotations, "priority")
                if en.priority is not None:
                    prio = self.cx.typerefs.const_int(en.priority, ctx, "the priority")
                elif pa is not None and pa.integer is not None:
                    prio = pa.integer
                entries.append({"priority": prio, "keys": kss,
                                "action": {"name": b.qname, "args": self.action_args(en.action, b, ctx)}})
        tb.ir = {
            "name": tb.qname, "annotations": anno_ir(d.annotations), "keys": keys, "actions": actions,
            "default_action": default, "const_entries": entries, "entries_const": d.entries_const,
            "size": size, "size_explicit": size_explicit, "direct_counter": dcounter,
            "direct_meter": dmeter, "implementation": None, "id": self.cx.obj_id(d),
        }
        self.cx.out.tables[tb.qname] = tb.ir

    def action_args(self, ref: A.ActionRef, b: ActionB, ctx: Ctx) -> list[int]:
        cp = [p for p in b.decl.params if p.direction == "none"]
        if any(p.direction != "none" for p in b.decl.params):
            raise error(ref.loc, f"action '{ref.name}' has directional parameters and cannot be run by a table")
        if len(ref.args) != len(cp):
            raise error(ref.loc, f"action '{ref.name}' expects {len(cp)} argument(s), got {len(ref.args)}")
        out: list[int] = []
        for p, a in zip(cp, ref.args, strict=True):
            pt = self.cx.typerefs.data_type(p.type)
            v = self.cx.exprs.coerce(self.cx.exprs.expr(a, ctx, pt), pt, a.loc, f"for parameter '{p.name}'")
            if v["op"] != "const":
                raise error(a.loc, "action arguments here must be compile-time constants")
            out.append(ival(v))
        return out
