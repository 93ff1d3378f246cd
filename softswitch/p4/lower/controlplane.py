"""The control-plane view of a lowered program, as p4c defines it: which tables and actions
exist for P4Runtime, and the order its P4Info lists them in.

p4c writes P4Info from its front end's output, after these passes matter:
* unused declarations are removed: a table nobody applies, an action no used table lists
  and no control body calls (actions called only from other actions are inlined into them
  first, so they go too), a direct counter or meter no remaining table uses;
* every control/parser instance is inlined, its locals inserted right after the instance
  declaration; top-level actions are copied to the front of each control using them, in
  the order of their first use (tables' action lists first, then the apply body);
* the serializer then walks the blocks breadth-first (top-level instances, then the
  V1Switch blocks in parameter order, then each block's tables and extern instances in
  declaration order), listing each control's actions, tables and externs as it goes, and
  digests as it meets digest() calls (each control's action bodies, then its apply body).

Tables and actions p4c would remove are dropped from the IR (nothing can run them);
actions the runtime still needs because another action calls them stay, marked
`"control_plane": false`. Every object gets `order`, its position in p4c's listing."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING

from p4reduce.softswitch.p4.ir import Action, Program, Stmt

if TYPE_CHECKING:
    from p4reduce.softswitch.p4.lower.context import Lowering

_LAST = (1 << 30,)  # sorts after every real position


def _nodes(tree: object) -> Iterator[dict[str, object]]:
    """Every JSON object inside an IR subtree, in source order (depth first)."""
    stack: list[object] = [tree]
    while stack:
        x = stack.pop()
        if isinstance(x, dict):
            yield x
            stack.extend(reversed(list(x.values())))
        elif isinstance(x, list):
            stack.extend(reversed(x))


def _tables_used(tree: object) -> set[str]:
    out: set[str] = set()
    for n in _nodes(tree):
        if n.get("stmt") in ("apply", "switch") or n.get("op") == "table_hit":
            out.add(str(n["table"]))
    return out


def _ranks(objs: Sequence[Mapping[str, object]], key: Callable[[str], tuple[int, ...]]) -> dict[str, int]:
    """Each object's position when sorted by `key` of its name."""
    return {n: i for i, n in enumerate(sorted((str(o["name"]) for o in objs), key=key))}


def _calls(tree: object) -> list[str]:
    return [str(n["action"]) for n in _nodes(tree) if n.get("stmt") == "call"]


class ControlPlane:
    def __init__(self, cx: Lowering) -> None:
        self.cx = cx
        self.first_use: dict[tuple[int, str], tuple[int, ...]] = {}

    def finish(self, prog: Program) -> None:
        self._redirect_bound(prog)
        controls = prog["controls"]
        bodies = [c["body"] for c in controls.values()]
        used_tables = _tables_used(bodies)
        by_table = {t["name"]: t for t in prog["tables"]}
        todo = list(used_tables)
        while todo:  # a table applied in another table's key (`t.apply().hit: exact`)
            t = by_table.get(todo.pop())
            for n in _tables_used([k["expr"] for k in t["keys"]]) if t is not None else set():
                if n not in used_tables:
                    used_tables.add(n)
                    todo.append(n)
        prog["tables"] = [t for t in prog["tables"] if t["name"] in used_tables]
        for dres in (*prog["direct_counters"], *prog["direct_meters"]):
            if dres["table"] not in used_tables:
                dres["table"] = None  # p4c lists only direct resources of a table it keeps

        public = {f"{n}$body": n for n in self.cx.bound_actions}
        visible = {public.get(n, n) for n in _calls(bodies)}
        for t in prog["tables"]:
            visible.update(a["name"] for a in t["actions"])
            visible.add(t["default_action"]["name"])
        by_name = {a["name"]: a for a in prog["actions"]}
        needed = set(visible)
        todo = list(visible)
        while todo:
            act = by_name.get(todo.pop())
            for callee in _calls(act["body"]) if act is not None else []:
                if callee not in needed:
                    needed.add(callee)
                    todo.append(callee)
        prog["actions"] = [a for a in prog["actions"] if a["name"] in needed]
        for a in prog["actions"]:
            if a["name"] not in visible:
                a["control_plane"] = False

        if "action_profiles" in prog:
            for prof in prog["action_profiles"]:
                prof["tables"] = sorted(t for t in prof["tables"] if t in used_tables)
            prog["action_profiles"] = [p for p in prog["action_profiles"]
                                       if p["tables"] or p["name"] not in self.cx.inplace_profiles]
            ranks = _ranks(prog["action_profiles"], lambda n: self.cx.decl_keys.get(n, _LAST))
            for prof in prog["action_profiles"]:
                prof["order"] = ranks[prof["name"]]
        used_sets = {n["name"] for n in _nodes(prog["parsers"]) if n.get("kind") == "value_set"}
        prog["value_sets"] = [v for v in prog["value_sets"] if v["name"] in used_sets]  # p4c drops unused ones
        ranks = _ranks(prog["value_sets"], lambda n: self.cx.decl_keys.get(n, _LAST))
        for vs in prog["value_sets"]:
            vs["order"] = ranks[vs["name"]]
        keys = self.cx.decl_keys
        # first use of each top-level action per block, among the uses p4c keeps
        for block, name, key, table in self.cx.global_refs:
            if table is None or table in used_tables:
                old = self.first_use.get((block, name))
                if old is None or key < old:
                    self.first_use[(block, name)] = key

        def place(name: str) -> tuple[int, ...]:
            return keys.get(name, _LAST)

        ranks = _ranks(prog["tables"], place)
        for t in prog["tables"]:
            t["order"] = ranks[t["name"]]
        ranks = _ranks(prog["actions"], self._action_key)
        for a in prog["actions"]:
            a["order"] = ranks[a["name"]]
        ranks = _ranks(prog["registers"], place)
        for r in prog["registers"]:
            r["order"] = ranks[r["name"]]
        ranks = _ranks(prog["counters"], place)
        for c in prog["counters"]:
            c["order"] = ranks[c["name"]]
        ranks = _ranks(prog["meters"], place)
        for m in prog["meters"]:
            m["order"] = ranks[m["name"]]
        ranks = _ranks(prog["direct_counters"], place)
        for dc in prog["direct_counters"]:
            dc["order"] = ranks[dc["name"]]
        ranks = _ranks(prog["direct_meters"], place)
        for dm in prog["direct_meters"]:
            dm["order"] = ranks[dm["name"]]
        self._order_digests(prog, by_name)

    def _redirect_bound(self, prog: Program) -> None:
        """Direct calls of an action whose arguments a table binds go to its body, under
        the internal name; the public name is the table's wrapper (Tables.bind_action)."""
        if not self.cx.bound_actions:
            return
        wrappers = {n for n in self.cx.bound_actions}
        for n in _nodes([prog["controls"], prog["parsers"],
                         [a for a in prog["actions"] if a["name"] not in wrappers]]):
            if n.get("stmt") == "call" and n.get("action") in wrappers:
                n["action"] = f"{n['action']}$body"

    def _action_key(self, name: str) -> tuple[int, ...]:
        """Local actions sit at their declaration; a top-level action at the front of the
        first block using it."""
        if name in self.cx.decl_keys:
            block, *key = self.cx.decl_keys[name]
            return (block, 1, *key)
        refs = [(block, 0, *key) for (block, n), key in self.first_use.items() if n == name]
        return min(refs, default=_LAST)

    def _block_actions(self, block: int, actions: list[Action]) -> list[str]:
        """The actions p4c's copy of top-level block `block` holds, in their order there."""
        keyed: list[tuple[tuple[int, ...], str]] = []
        for a in actions:
            name = a["name"]
            if name in self.cx.decl_keys:
                b, *key = self.cx.decl_keys[name]
                if b == block:
                    keyed.append(((1, *key), name))
            elif (block, name) in self.first_use:
                keyed.append(((0, *self.first_use[(block, name)]), name))
        return [name for _, name in sorted(keyed)]

    def _order_digests(self, prog: Program, by_name: dict[str, Action]) -> None:
        """Digests in the order p4c meets their digest() calls, and every call's index
        renumbered to match."""
        seen: list[int] = []

        def scan(body: list[Stmt], follow_calls: bool) -> None:
            for n in _nodes(body):
                if n.get("stmt") == "extern" and "digest" in n and n["digest"] not in seen:
                    seen.append(int(str(n["digest"])))
                elif follow_calls and n.get("stmt") == "call":
                    callee = by_name.get(str(n["action"]))
                    if callee is not None:
                        scan(callee["body"], True)

        visible = [a for a in prog["actions"] if a.get("control_plane", True)]
        pipe = prog["pipeline"]
        blocks = [pipe["parser"], pipe["verify_checksum"], pipe["ingress"], pipe["egress"],
                  pipe["compute_checksum"], pipe["deparser"]]
        for block, block_name in enumerate(blocks):
            for name in self._block_actions(block, visible):
                scan(by_name[name]["body"], True)
            control = prog["controls"].get(block_name)
            if control is not None:
                scan(control["body"], False)
        old = prog["digests"]
        order = seen + [i for i in range(len(old)) if i not in seen]
        if order == list(range(len(old))):
            return
        renumber = {o: n for n, o in enumerate(order)}
        prog["digests"] = [old[i] for i in order]
        for n in _nodes([prog["actions"], prog["controls"], prog["parsers"]]):
            if n.get("stmt") == "extern" and "digest" in n:
                n["digest"] = renumber[int(str(n["digest"]))]
