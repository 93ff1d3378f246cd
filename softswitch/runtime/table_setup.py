"""A table of the IR as a `Table` over some index: the same actions, scopes, defaults and
const entries for both back ends."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from p4reduce.softswitch.p4.ir import Action
from p4reduce.softswitch.p4.ir import Table as IRTable
from p4reduce.softswitch.runtime.control import ActionCall, ControlError
from p4reduce.softswitch.runtime.entries import const_entry
from p4reduce.softswitch.runtime.errors import PipelineError
from p4reduce.softswitch.runtime.frame import width_of
from p4reduce.softswitch.runtime.tables import ActionInfo, Index, KeySpec, Table


def key_specs(t: IRTable) -> list[KeySpec]:
    return [KeySpec(k["name"], k["match_kind"], width_of(k["expr"].get("type", {}))) for k in t.get("keys", [])]


def _nothing(*_: Any) -> None:
    return None


def build_table(
    t: IRTable,
    actions: dict[str, Action],
    make_index: Callable[[list[KeySpec]], Index],
    action_fn: Callable[[str], Callable[..., Any]],
) -> Table:
    """`actions` are the IR's by name, in IR order (an action's id is its position);
    `action_fn` gives the Python back end's function of an action (the native back end
    passes a stand-in: its actions run in C)."""
    order = list(actions)
    infos: dict[str, ActionInfo] = {}
    scopes: dict[str, str] = {}

    def info(a: Action) -> ActionInfo:
        cp = [p for p in a["params"] if p.get("dir", "none") == "none"]
        return ActionInfo(a["name"], order.index(a["name"]), action_fn(a["name"]),
                          tuple(int(p["type"].get("width", 1)) for p in cp), tuple(p["name"] for p in cp))

    for ref in t.get("actions", []):
        a = actions.get(ref["name"])
        if a is None:
            raise PipelineError(f"table {t['name']} refers to unknown action {ref['name']!r}")
        infos[a["name"]] = info(a)
        scopes[a["name"]] = ref.get("scope", "table_and_default")
    d = t.get("default_action") or {"name": "NoAction", "args": [], "const": False}
    if d["name"] not in infos and d["name"] in actions:
        infos[d["name"]] = info(actions[d["name"]])
        scopes[d["name"]] = "default_only"
    if d["name"] not in infos:
        # a default that names no known action: behave as NoAction
        infos[d["name"]] = ActionInfo(d["name"], -1, _nothing, (), ())
    keys = key_specs(t)
    try:
        table = Table(
            t["name"], keys, infos, scopes,
            ActionCall(d["name"], tuple(d.get("args", []))), bool(d.get("const")),
            int(t.get("size", 1024)), make_index(keys),
        )
        for ce in t.get("const_entries", []):
            table.insert(const_entry(t, ce))
    except ControlError as exc:
        raise PipelineError(f"table {t['name']}: {exc}") from exc
    return table
