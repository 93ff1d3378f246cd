"""Tables: keys, action lists, default actions, properties and const entries."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, cast

from p4reduce.softswitch.p4 import ast as A
from p4reduce.softswitch.p4.diag import error
from p4reduce.softswitch.p4.ir import (
    ActionProfile,
    ConstEntry,
    DefaultAction,
    DirectCounter,
    DirectMeter,
    Expr,
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
from p4reduce.softswitch.p4.types import BOOL, show

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
            e = self.cx.exprs.expr(k.expr, ctx, None)
            if e["type"]["kind"] == "intlit":
                raise error(k.loc, "a table key needs a known width")
            if e["type"]["kind"] not in ("bit", "int", "bool", "serenum", "error", "enum"):
                raise error(k.loc, f"a table key cannot have type {show(e['type'])}")
            n = anno_get(k.annotations, "name")
            if n is not None and n.string is not None:
                kname = n.string
            else:
                gen = self.key_name(k.expr, ctx)
                if gen is None:
                    raise error(k.expr.loc, "complex key expression requires a @name annotation")
                kname = gen
            keys.append({"name": kname,
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
            if any(p.direction != "none" for p in b.decl.params[len(a.args):]):
                raise error(a.loc, f"action '{a.name}' has directional parameters, which a table cannot supply")
            self.cx.decls.lower_action(b)
            self.bind_action(a, b, ctx)
            scope: Literal["table_and_default", "table_only", "default_only"] = "table_and_default"
            if anno_get(a.annotations, "tableonly"):
                scope = "table_only"
            elif anno_get(a.annotations, "defaultonly"):
                scope = "default_only"
            actions.append({"name": b.qname, "scope": scope, "annotations": anno_ir(a.annotations)})
            if b.scope is self.cx.glob:
                self.cx.ref_global_action(ctx.block, b.qname, (0, *tb.key, len(actions)), tb.qname)
            by_short[a.name.lstrip(".")] = b
        if not d.has_actions:
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
            default = {"name": nb.qname, "args": [], "const": False}
            self.cx.decls.lower_action(nb)
            # p4c adds it to the actions list (@defaultonly) when the list lacks it
            self.cx.ref_global_action(ctx.block, nb.qname, (0, *tb.key, len(actions) + 1), tb.qname)
        size = 1024
        size_explicit = False
        impl: str | None = None
        timeout = False
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
            elif pname == "priority_delta":  # P4 1.2.4 entry priorities: P4Info does not show it
                self.cx.typerefs.const_int(pe, ctx, "'priority_delta'")
            elif pname == "largest_priority_wins":
                self.cx.exprs.coerce(self.cx.exprs.expr(pe, ctx, BOOL), BOOL, pe.loc, "for 'largest_priority_wins'")
            elif pname == "implementation":
                impl = self.implementation(tb, pe, d.prop_annotations.get(pname, []), ctx)
            elif pname == "support_timeout":
                timeout = bool(ival(self.cx.exprs.coerce(self.cx.exprs.expr(pe, ctx, BOOL), BOOL, pe.loc,
                                                         "for 'support_timeout'")))
            elif pname in ("psa_direct_counter", "psa_direct_meter"):
                pass
            else:
                raise error(ploc, f"not supported: unknown table property '{pname}' (p4c ignores it with a "
                                  "warning; this compiler refuses it, so that a misspelt property is not lost)")
        entries: list[ConstEntry] = []
        if d.entries is not None:
            if not d.keys:
                raise error(d.loc, "a table without keys cannot have entries")
            prios = self.entry_priorities(d, kinds, ctx)
            for idx, en in enumerate(d.entries):
                if len(en.keys) != len(keys):
                    raise error(en.loc, f"entry has {len(en.keys)} key(s), table '{d.name}' has {len(keys)}")
                kss = [self.cx.exprs.keyset(ke, key["expr"]["type"], ctx, key["match_kind"]) for ke, key in zip(en.keys, keys, strict=True)]
                b = by_short.get(en.action.name.lstrip("."))
                if b is None:
                    raise error(en.action.loc, f"action '{en.action.name}' is not in the actions list of table '{d.name}'")
                if next(x for x in actions if x["name"] == b.qname)["scope"] == "default_only":
                    raise error(en.action.loc, f"action '{en.action.name}' is @defaultonly and cannot be used in an entry")
                entries.append({"priority": prios[idx], "keys": kss,
                                "action": {"name": b.qname, "args": self.action_args(en.action, b, ctx)}})
        tb.ir = {
            "name": tb.qname, "annotations": anno_ir(d.annotations), "keys": keys, "actions": actions,
            "default_action": default, "const_entries": entries, "entries_const": d.entries_const,
            "size": size, "size_explicit": size_explicit, "direct_counter": dcounter,
            "direct_meter": dmeter, "implementation": impl, "id": self.cx.obj_id(d),
        }
        if timeout:
            tb.ir["support_timeout"] = True
        self.cx.out.tables[tb.qname] = tb.ir

    def implementation(self, tb: TableB, e: A.Expr, annos: list[A.Annotation], ctx: Ctx) -> str:
        """`implementation = ap;` or, constructed in place, `@name("ap") implementation =
        action_profile(128);` (p4c names that one by the property's @name)."""
        if isinstance(e, A.Call) and isinstance(e.func, A.Name) and e.func.name in ("action_profile", "action_selector"):
            alias = anno_get(annos, "name")
            qname = alias.string.lstrip(".") if alias is not None and alias.string else "implementation"
            inst = A.InstanceDecl(e.loc, qname, [A.Annotation("name", f'"{qname}"', e.loc, f".{qname}")],
                                  A.NamedType(e.loc, e.func.name), e.args)
            inst.annotations = [a for a in annos if a.name != "name"] + inst.annotations
            self.cx.decls.instance(inst, ctx, tb.key)  # binds it to an unusable name in the scope
            self.cx.inplace_profiles.add(qname)
            b = ctx.scope.lookup(qname)
        else:
            b = ctx.scope.lookup(e.name) if isinstance(e, A.Name) else None
        if not isinstance(b, ExternInst) or b.ext.name not in ("action_profile", "action_selector") or b.ir is None:
            raise error(e.loc, "a table's implementation must be an action_profile or action_selector")
        cast(ActionProfile, b.ir)["tables"].append(tb.qname)
        return b.qname

    def entry_priorities(self, d: A.TableDecl, kinds: list[str], ctx: Ctx) -> list[int]:
        """The entries' priorities in the IR's convention (1 matches first, then 2, ...; 0
        for tables whose keys are all exact/lpm), from p4c's rules: `const entries` take
        none and match in order; others count down from the first one's (or from the
        number of entries) by `priority_delta`, unless `largest_priority_wins = false`."""
        assert d.entries is not None
        given = [self.cx.typerefs.const_int(e.priority, ctx, "the priority") if e.priority is not None else None
                 for e in d.entries]
        first = next((e for e, p in zip(d.entries, given, strict=True) if p is not None), None)
        if all(k in ("exact", "lpm") for k in kinds):
            if first is not None:
                raise error(first.loc, f"table '{d.name}': its key match kinds do not use priorities, but an entry has one")
            return [0] * len(given)
        if d.entries_const or first is None:
            if d.entries_const and first is not None:
                raise error(first.loc, f"table '{d.name}' with 'const' entries cannot have priorities")
            return list(range(1, len(given) + 1))
        largest = True
        delta = 1
        for pname, (pe, _) in d.props.items():
            if pname == "largest_priority_wins":
                largest = bool(ival(self.cx.exprs.coerce(self.cx.exprs.expr(pe, ctx, BOOL), BOOL, pe.loc)))
            elif pname == "priority_delta":
                delta = self.cx.typerefs.const_int(pe, ctx, "'priority_delta'")
        if given[0] is None:
            raise error(d.entries[0].loc, "the first entry must have a priority when others have one")
        p4rt: list[int] = []
        cur = 0
        for p in given:
            cur = p if p is not None else cur
            p4rt.append(cur)
            cur = cur - delta if largest else cur + delta
        if largest:  # P4Runtime: larger wins; the IR: smaller matches first
            return [max(p4rt) + 1 - p for p in p4rt]
        return [p - min(p4rt) + 1 for p in p4rt]

    def key_name(self, e: A.Expr, ctx: Ctx) -> str | None:
        """The control-plane name p4c gives a key without @name: paths, fields (by their
        @name), `$valid$` for isValid(), indices, slices, constants as written and `&`;
        None for anything else."""
        if isinstance(e, A.Name):
            return ("." if e.dot_prefix else "") + e.name
        if isinstance(e, A.Member):
            member = e.member
            t = self.cx.exprs.expr(e.obj, ctx, None)["type"] if not isinstance(e.obj, A.Call) else None
            if t is not None and t["kind"] in ("header", "header_union") and member == "isValid":
                member = "$valid$"
            elif t is not None and t["kind"] in ("header", "struct"):
                decl = self.cx.headers.get(t["name"])
                field = next((f for f in decl.fields if f.name == member), None) if decl else None
                alias = anno_get(field.annotations, "name") if field is not None else None
                if alias is not None and alias.string is not None:
                    member = alias.string
            if member.startswith("."):
                return member[1:]
            base = self.key_name(e.obj, ctx)
            return None if base is None else f"{base}.{member}"
        if isinstance(e, A.Index):
            obj, idx = self.key_name(e.obj, ctx), self.key_name(e.index, ctx)
            return None if obj is None or idx is None else f"{obj}[{idx}]"
        if isinstance(e, A.IntLit):
            prefix = {16: "0x", 2: "0b", 8: "0o"}.get(e.base, "")
            digits = format(e.value, {16: "x", 2: "b", 8: "o"}.get(e.base, "d"))
            return prefix + digits
        if isinstance(e, A.Slice):
            parts = [self.key_name(x, ctx) for x in (e.obj, e.hi, e.lo)]
            return None if None in parts else f"{parts[0]}[{parts[1]}:{parts[2]}]"
        if isinstance(e, A.Binary) and e.op == "&":
            left, right = self.key_name(e.left, ctx), self.key_name(e.right, ctx)
            return None if left is None or right is None else f"{left} & {right}"
        if isinstance(e, A.Call) and not e.args:
            m = self.key_name(e.func, ctx)
            return m if m is not None and m.endswith("$valid$") else None
        return None

    def bind_action(self, ref: A.ActionRef, b: ActionB, ctx: Ctx) -> None:
        """`a(x)` in an actions list binds a's first parameters; the control plane gives
        the rest. The IR action the table runs (and P4Info lists) under a's name becomes a
        wrapper taking the rest and calling a's body, which moves to an internal name that
        every direct call of `a` is redirected to (see ControlPlane)."""
        cx = self.cx
        bound = [self.cx.calls.call_arg(p, e, ctx, f"action '{b.decl.name}'")
                 for p, e in zip(b.decl.params, ref.args, strict=False)]
        if len(ref.args) > len(b.decl.params):
            raise error(ref.loc, f"action '{ref.name}' takes {len(b.decl.params)} argument(s), got {len(ref.args)}")
        prior = cx.bound_actions.get(b.qname)
        if prior is not None and prior != (len(bound), bound):
            raise error(ref.loc, f"not supported: action '{ref.name}' bound to different arguments by two tables")
        if prior is not None or (not bound and b.qname not in cx.bound_actions):
            return
        if not bound:
            raise error(ref.loc, f"not supported: action '{ref.name}' listed both with and without bound arguments")
        cx.bound_actions[b.qname] = (len(bound), bound)
        body = cx.out.actions.pop(b.qname)
        internal = b.qname + "$body"
        body["name"] = internal
        body["control_plane"] = False
        cx.out.actions[internal] = body
        rest = body["params"][len(bound):]
        args = list(bound)
        for p in rest:
            ref_p: Expr = {"op": "field", "path": ["param", p["name"]], "type": p["type"]}
            args.append({"dir": "in", "expr": ref_p})
        cx.out.actions[b.qname] = {
            "name": b.qname, "annotations": body["annotations"], "params": rest, "locals": [],
            "body": [{"stmt": "call", "action": internal, "args": args}], "id": body["id"],
        }

    def action_args(self, ref: A.ActionRef, b: ActionB, ctx: Ctx) -> list[int]:
        skip = self.cx.bound_actions.get(b.qname, (0, []))[0]
        params = b.decl.params[skip:]
        cp = [p for p in params if p.direction == "none"]
        if any(p.direction != "none" for p in params):
            raise error(ref.loc, f"action '{ref.name}' has directional parameters and cannot be run by a table")
        if len(ref.args) != skip + len(cp):
            raise error(ref.loc, f"action '{ref.name}' expects {skip + len(cp)} argument(s), got {len(ref.args)}")
        out: list[int] = []
        for p, a in zip(cp, ref.args[skip:], strict=True):
            pt = self.cx.typerefs.data_type(p.type)
            v = self.cx.exprs.coerce(self.cx.exprs.expr(a, ctx, pt), pt, a.loc, f"for parameter '{p.name}'")
            if v["op"] != "const":
                raise error(a.loc, "action arguments here must be compile-time constants")
            out.append(ival(v))
        return out
