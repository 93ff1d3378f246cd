"""P4Info emitter: the IR (docs/IR.md) described exactly as p4c describes it.

The same program must get the same P4Info from softswitch and from
``p4c --target bmv2 --arch v1model --p4runtime-files X.p4info.txtpb``, byte for
byte, so that controllers, saved table entries and tests move between the two
targets unchanged. The rules below are p4c's (control-plane serializer, v1model
arch handler), re-derived from its behaviour and output files:

* Objects are listed in the order the IR's ``order`` keys give (the front end sets
  them to p4c's listing order, see softswitch/p4/lower/controlplane.py); without
  them, in IR list order. Direct counters and meters follow their tables and are
  left out when no table uses them; actions marked ``"control_plane": false``
  (p4c inlines them into their callers) are left out entirely, and action
  parameters with a direction are not control-plane parameters.
* Every table has a default action (``NoAction`` when the source gave none, in
  which case ``NoAction`` joins the action list as ``@defaultonly``), emitted as
  ``initial_default_action``; ``const`` ones also set ``const_default_action_id``.
* ``@hidden`` tables, actions and controller headers are left out but still take
  part in id assignment and aliases, as in p4c.
* Preamble and field annotations are copied except ``@name`` and ``@id`` (shown
  as name and id) and ``@brief``/``@description`` (shown as ``doc``).
* Sub-field ids (match fields, action params, packet metadata) count from 1 in
  declaration order, skipping values claimed by ``@id`` annotations (an item with
  its own ``@id`` still advances the count, as p4c's allocator does).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from finsy.proto import p4i, p4t
from google.protobuf import text_format  # type: ignore[import-untyped, unused-ignore]

from p4reduce.softswitch.p4.p4ids import P4IdError, Prefix, SymbolTable, control_plane_name

__all__ = ["P4InfoError", "emit", "to_text"]

IR = Mapping[str, Any]

# Printed by current p4c at the top of every text-format P4Info it writes.
_TEXT_HEADER = "# proto-file: p4/config/v1/p4info.proto\n# proto-message: p4.config.v1.P4Info\n\n"

_NOT_COPIED = frozenset({"name", "id", "brief", "description"})

# Annotations p4c parses into expressions (front end and P4Runtime passes); ToP4 prints
# their arguments joined by ", ". Others are printed token by token.
_PARSED_ANNOTATIONS = frozenset(
    {
        "name",
        "id",
        "noWarn",
        "priority",
        "size",
        "length",
        "deprecated",
        "controller_header",
        "brief",
        "description",
        "match",
        "field_list",
        "p4runtime_translation",
        "p4runtime_translation_mappings",
    }
)

_MATCH_TYPES = {
    "exact": p4i.MatchField.EXACT,
    "lpm": p4i.MatchField.LPM,
    "ternary": p4i.MatchField.TERNARY,
    "range": p4i.MatchField.RANGE,
    "optional": p4i.MatchField.OPTIONAL,
}

_COUNTER_UNITS = {
    "packets": p4i.CounterSpec.PACKETS,
    "bytes": p4i.CounterSpec.BYTES,
    "packets_and_bytes": p4i.CounterSpec.BOTH,
}

_METER_UNITS = {"packets": p4i.MeterSpec.PACKETS, "bytes": p4i.MeterSpec.BYTES}

_SCOPES = {
    "table_and_default": p4i.ActionRef.TABLE_AND_DEFAULT,
    "table_only": p4i.ActionRef.TABLE_ONLY,
    "default_only": p4i.ActionRef.DEFAULT_ONLY,
}


class P4InfoError(ValueError):
    """The IR cannot be described as P4Info (malformed, or rejected by p4c too)."""


def to_text(msg: p4i.P4Info) -> str:
    """Protobuf text format with the header lines p4c writes to ``.txtpb`` files, bytes
    beyond ASCII escaped in octal as p4c's (C++) printer writes them."""
    return _TEXT_HEADER + str(text_format.MessageToString(msg, as_utf8=False))


def emit(ir: IR) -> p4i.P4Info:
    """Build the P4Info of a compiled program."""
    try:
        return _Emitter(ir).run()
    except P4InfoError:
        raise
    except P4IdError as exc:
        raise P4InfoError(str(exc)) from None
    except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as exc:
        # A hand-written or truncated IR: report it as bad input, not as a crash.
        raise P4InfoError(f"malformed IR ({type(exc).__name__}: {exc})") from None


# --------------------------------------------------------------------------- helpers


def _get(obj: Mapping[str, Any], key: str, where: str) -> Any:
    if not isinstance(obj, Mapping):
        raise P4InfoError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    if key not in obj:
        raise P4InfoError(f"{where}: missing key {key!r}")
    return obj[key]


def _list(ir: IR, key: str) -> list[Mapping[str, Any]]:
    value = ir.get(key, [])
    if not isinstance(value, list):
        raise P4InfoError(f"IR {key!r} must be a list")
    return value


def _annotations(obj: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    anns = obj.get("annotations") or []
    if not isinstance(anns, list):
        raise P4InfoError(f"{obj.get('name', '?')}: 'annotations' must be a list")
    return anns


def _has_annotation(obj: Mapping[str, Any], name: str) -> bool:
    return any(a.get("name") == name for a in _annotations(obj))


def _annotation_body(obj: Mapping[str, Any], name: str) -> str | None:
    for a in _annotations(obj):
        if a.get("name") == name:
            return str(a.get("body", ""))
    return None


def _format_annotation(ann: Mapping[str, Any]) -> str:
    """``@name`` or ``@name(body)`` as p4c's ToP4 prints it.

    p4c prints annotations it parses (the standard and P4Runtime ones) from their
    expressions, arguments separated by ", "; any other annotation keeps its raw
    tokens joined by single spaces, which is how the IR already stores bodies.
    """
    name = str(_get(ann, "name", "annotation"))
    body = str(ann.get("body", "")).strip()
    if not body:
        return f"@{name}"
    if name in _PARSED_ANNOTATIONS:
        body = _tighten_commas(body)
    return f"@{name}({body})"


def _tighten_commas(body: str) -> str:
    """Turn the IR's ``a , b`` into ``a, b``, leaving string literals alone."""
    out: list[str] = []
    in_string = False
    i = 0
    while i < len(body):
        ch = body[i]
        if ch == '"' and (i == 0 or body[i - 1] != "\\"):
            in_string = not in_string
        if not in_string and body.startswith(" ,", i):
            i += 1
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def _unquote(body: str) -> str:
    body = body.strip()
    if len(body) >= 2 and body[0] == body[-1] == '"':
        return body[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    return body


def _copy_annotations(
    target: Any, obj: Mapping[str, Any], skip: frozenset[str] = _NOT_COPIED
) -> None:
    for ann in _annotations(obj):
        if ann.get("name") not in skip:
            target.annotations.append(_format_annotation(ann))


def _set_doc(target: Any, obj: Mapping[str, Any]) -> None:
    brief = _annotation_body(obj, "brief")
    desc = _annotation_body(obj, "description")
    if brief is not None:
        target.doc.brief = _unquote(brief)
    if desc is not None:
        target.doc.description = _unquote(desc)


def _annotation_id(obj: Mapping[str, Any], where: str) -> int | None:
    body = _annotation_body(obj, "id")
    if body is None:
        return None
    try:
        return int(body.strip(), 0)
    except ValueError:
        raise P4InfoError(f"{where}: @id should be an unsigned integer, got {body!r}") from None


def _field_ids(items: Sequence[Mapping[str, Any]], where: str) -> list[int]:
    """Ids for sub-fields: ``@id`` first, then 1, 2, ... skipping taken values."""
    assigned: set[int] = set()
    fixed: list[int | None] = []
    for item in items:
        user = _annotation_id(item, f"{where}.{item.get('name', '?')}")
        if user is not None:
            if user <= 0:
                raise P4InfoError(f"{where}.{item.get('name')}: 0 is not a valid @id value")
            if user in assigned:
                raise P4InfoError(f"{where}.{item.get('name')}: @id {user} is used multiple times")
            assigned.add(user)
        fixed.append(user)
    result: list[int] = []
    index = 1
    for user in fixed:
        if user is not None:
            result.append(user)
            index += 1
            continue
        while index in assigned:
            index += 1
        assigned.add(index)
        result.append(index)
    return result


def _bitwidth(t: Mapping[str, Any], where: str) -> int | None:
    """Control-plane width of a type; None for plain enums (which have none)."""
    kind = _get(t, "kind", where)
    if kind in ("bit", "int", "serenum"):
        return int(_get(t, "width", where))
    if kind == "bool":
        return 1
    if kind == "error":
        return 0
    if kind == "enum":
        return None
    raise P4InfoError(f"{where}: type {kind} cannot be exposed to the control plane")


def _control_plane_name(obj: Mapping[str, Any], name: str) -> str:
    """A parameter's or field's name as P4Runtime shows it: its @name, if it has one."""
    alias = _annotation_body(obj, "name")
    return control_plane_name(_unquote(alias)) if alias else name


def _plane_params(action: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The control-plane parameters: p4c turns directional ones into locals first."""
    params = action.get("params") or []
    if not isinstance(params, list):
        raise P4InfoError(f"{action.get('name', '?')}: 'params' must be a list")
    return [p for p in params if isinstance(p, Mapping) and p.get("dir", "none") == "none"]


def _has_stmt(node: Any, kind: str, also: Callable[[Mapping[str, Any]], bool] = lambda n: True) -> bool:
    if isinstance(node, Mapping):
        return (node.get("stmt") == kind and also(node)) or any(_has_stmt(v, kind, also) for v in node.values())
    if isinstance(node, list):
        return any(_has_stmt(v, kind, also) for v in node)
    return False


def _walk_calls(node: Any) -> Iterator[str]:
    """Names of actions called directly anywhere inside a statement tree."""
    if isinstance(node, Mapping):
        if node.get("stmt") == "call" and isinstance(node.get("action"), str):
            yield node["action"]
        for value in node.values():
            yield from _walk_calls(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk_calls(value)


# --------------------------------------------------------------------------- emitter


class _Emitter:
    def __init__(self, ir: IR) -> None:
        if not isinstance(ir, Mapping):
            raise P4InfoError("IR must be a JSON object")
        arch = ir.get("arch", "v1model")
        if arch != "v1model":
            raise P4InfoError(f"architecture {arch!r} is not supported (only v1model)")
        self.ir = ir
        self.msg = p4i.P4Info()
        self.symbols = SymbolTable()
        self.types: Mapping[str, Any] = ir.get("types") or {}
        shown = [a for a in _list(ir, "actions") if a.get("control_plane", True) is not False]
        self.actions = self._unique(shown, "action", dedupe=True)
        self.tables = self._unique(_list(ir, "tables"), "table")
        self.action_by_name = {a["name"]: a for a in self.actions}
        self.table_by_name = {t["name"]: t for t in self.tables}

    @staticmethod
    def _unique(
        items: list[Mapping[str, Any]], kind: str, dedupe: bool = False
    ) -> list[Mapping[str, Any]]:
        seen: set[str] = set()
        out: list[Mapping[str, Any]] = []
        for i, item in enumerate(items):
            name = control_plane_name(str(_get(item, "name", f"{kind} #{i}")))
            if name in seen:
                if dedupe:
                    continue
                raise P4InfoError(f"name '{name}' is used for multiple {kind} objects")
            seen.add(name)
            out.append({**item, "name": name})
        return out

    # ----------------------------------------------------------------- ordering

    @staticmethod
    def _sorted(items: list[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
        """By ``order`` where given, else by IR list position."""

        def key(pair: tuple[int, Mapping[str, Any]]) -> tuple[int, int]:
            pos, obj = pair
            order = obj.get("order")
            return (int(order) if isinstance(order, int) else pos), pos

        return [obj for _, obj in sorted(enumerate(items), key=key)]

    def _by_table(self, items: list[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
        """Direct resources: p4c adds them while serializing their table, so table order;
        one no shown table uses is not listed."""
        position = {t["name"]: i for i, t in enumerate(self._sorted(self.tables))}

        def table_of(obj: Mapping[str, Any]) -> str | None:
            table = obj.get("table")
            return control_plane_name(str(table)) if table is not None else None

        shown = [o for o in items if table_of(o) in position
                 and not _has_annotation(self.table_by_name[str(table_of(o))], "hidden")]
        return sorted(shown, key=lambda o: position[str(table_of(o))])

    # ----------------------------------------------------------------- symbols

    def _collect_symbols(self) -> None:
        add = self.symbols.add
        for action in self.actions:
            add(Prefix.ACTION, action["name"], action.get("id"))
        for table in self.tables:
            add(Prefix.TABLE, table["name"], table.get("id"))
        for ch in _list(self.ir, "controller_headers"):
            header = str(_get(ch, "header", "controller header"))
            add(Prefix.CONTROLLER_HEADER, header, ch.get("id"))
        for key, prefix in (
            ("counters", Prefix.COUNTER),
            ("direct_counters", Prefix.DIRECT_COUNTER),
            ("meters", Prefix.METER),
            ("direct_meters", Prefix.DIRECT_METER),
            ("registers", Prefix.REGISTER),
            ("digests", Prefix.DIGEST),
        ):
            for obj in _list(self.ir, key):
                if obj.get("control_plane", True) is False:
                    continue
                name = control_plane_name(str(_get(obj, "name", key)))
                add(prefix, name, obj.get("id"))
        for prof in _list(self.ir, "action_profiles"):
            add(Prefix.ACTION_PROFILE, control_plane_name(str(_get(prof, "name", "action profile"))), prof.get("id"))
        for vs in _list(self.ir, "value_sets"):
            add(Prefix.VALUE_SET, control_plane_name(str(_get(vs, "name", "value set"))), vs.get("id"))
        self.symbols.compute_ids()

    def _preamble(self, target: Any, prefix: Prefix, name: str, obj: Mapping[str, Any],
                  skip: frozenset[str] = _NOT_COPIED) -> None:
        target.id = self.symbols.id_of(prefix, name)
        target.name = name
        target.alias = self.symbols.alias(name)
        _copy_annotations(target, obj, skip)
        _set_doc(target, obj)

    # ----------------------------------------------------------------- run

    def run(self) -> p4i.P4Info:
        self._collect_symbols()
        self.msg.pkg_info.arch = "v1model"
        self.direct: dict[str, list[int]] = {}
        self._extern_table_links()
        for table in self._sorted(self.tables):
            self._table(table)
        for action in self._sorted(self.actions):
            self._action(action)
        for prof in self._sorted(_list(self.ir, "action_profiles")):
            self._action_profile(prof)
        self._externs()
        for vs in self._sorted(_list(self.ir, "value_sets")):
            self._value_set(vs)
        for ch in _list(self.ir, "controller_headers"):
            self._controller_header(ch)
        if self._touches_type_info():
            self.msg.type_info.SetInParent()
        return self.msg

    def _touches_type_info(self) -> bool:
        """Whether p4c would have created ``type_info`` (even left empty).

        p4c materializes it as a side effect of serializing any table, extern
        instance, action parameter, digest, controller header or extern function
        call, so only a program with none of these lacks it.
        """
        if self.tables or any(_plane_params(a) for a in self.actions):
            return True
        for key in ("registers", "counters", "direct_counters", "meters", "direct_meters", "action_profiles"):
            if self._shown(key):
                return True
        if _list(self.ir, "digests") or _list(self.ir, "controller_headers"):
            return True
        bodies = [a.get("body") for a in self.actions]
        bodies += [c.get("body") for c in (self.ir.get("controls") or {}).values()]
        # a method call stands for the instance of a user extern (the IR lists only v1model's)
        listed = ("register", "counter", "meter", "direct_counter", "direct_meter")
        return any(_has_stmt(b, "extern") or _has_stmt(b, "method", lambda n: n.get("kind") not in listed)
                   for b in bodies)

    def _extern_table_links(self) -> None:
        """Table name -> direct resource ids, the direct counter before the direct meter."""
        pairs = (("direct_counters", Prefix.DIRECT_COUNTER), ("direct_meters", Prefix.DIRECT_METER))
        for key, prefix in pairs:
            for obj in _list(self.ir, key):
                name = control_plane_name(str(obj["name"]))
                attached = _get(obj, "table", name)
                if attached is None:
                    continue  # declared, used by no table
                table = control_plane_name(str(attached))
                if table not in self.table_by_name:
                    raise P4InfoError(f"{name}: attached to unknown table {table!r}")
                self.direct.setdefault(table, []).append(self.symbols.id_of(prefix, name))

    # ----------------------------------------------------------------- tables

    def _table(self, table: Mapping[str, Any]) -> None:
        name = table["name"]
        if _has_annotation(table, "hidden"):
            return
        t = self.msg.tables.add()
        self._preamble(t.preamble, Prefix.TABLE, name, table)

        keys = table.get("keys") or []
        ids = _field_ids(keys, name)
        for key, fid in zip(keys, ids, strict=True):
            kind = str(_get(key, "match_kind", f"{name} key"))
            if kind == "selector":
                continue
            mf = t.match_fields.add()
            mf.id = fid
            mf.name = str(_get(key, "name", f"{name} key"))
            _copy_annotations(mf, key)
            _set_doc(mf, key)
            expr = _get(key, "expr", f"{name} key {mf.name}")
            where = f"{name} key {mf.name}"
            ktype = _get(expr, "type", where)
            width = self._plane_width(ktype, where)
            mf.bitwidth = width or 0
            self._register_named_type(ktype, where)
            if "newtype" in ktype:
                mf.type_name.name = str(ktype["newtype"])
            if kind in _MATCH_TYPES:
                mf.match_type = _MATCH_TYPES[kind]
            else:
                mf.other_match_type = kind

        default = table.get("default_action") or {"name": "NoAction", "args": [], "const": False}
        default_name = control_plane_name(str(_get(default, "name", f"{name} default_action")))
        refs = list(table.get("actions") or [])
        ref_names = [control_plane_name(str(_get(r, "name", f"{name} action"))) for r in refs]
        if default_name not in ref_names:
            if default_name != "NoAction":
                raise P4InfoError(
                    f"{name}: default action {default_name} is not in the table's actions list"
                )
            # p4c's front end appends the implicit default as a default-only action.
            refs.append({"name": "NoAction", "annotations": [{"name": "defaultonly", "body": ""}]})
            ref_names.append("NoAction")
        for ref, ref_name in zip(refs, ref_names, strict=True):
            ar = t.action_refs.add()
            ar.id = self._action_id(ref_name, name)
            _copy_annotations(ar, ref)
            ar.scope = self._scope(ref, name, ref_name)

        default_id = self._action_id(default_name, name)
        if default.get("const"):
            t.const_default_action_id = default_id
        self._initial_default(t, default, default_name, default_id)
        impl = table.get("implementation")
        if impl:
            t.implementation_id = self.symbols.id_of(Prefix.ACTION_PROFILE, control_plane_name(str(impl)))
        t.direct_resource_ids.extend(self.direct.get(name, []))
        size = table.get("size") or 0
        if isinstance(size, bool) or not isinstance(size, int):
            raise P4InfoError(f"{name}: size must be an integer, got {size!r}")
        t.size = size if size > 0 else 1024
        if table.get("support_timeout"):
            t.idle_timeout_behavior = p4i.Table.NOTIFY_CONTROL
        if table.get("entries_const"):
            t.is_const_table = True
        if table.get("const_entries"):
            t.has_initial_entries = True

    def _action_id(self, action: str, table: str) -> int:
        if not self.symbols.has(Prefix.ACTION, action):
            raise P4InfoError(f"{table}: refers to unknown action {action!r}")
        return self.symbols.id_of(Prefix.ACTION, action)

    @staticmethod
    def _scope(ref: Mapping[str, Any], table: str, action: str) -> int:
        table_only = _has_annotation(ref, "tableonly")
        default_only = _has_annotation(ref, "defaultonly")
        if table_only and default_only:
            raise P4InfoError(
                f"Table '{table}' has an action reference ('{action}') which is annotated "
                "with both '@tableonly' and '@defaultonly'"
            )
        if table_only:
            return int(p4i.ActionRef.TABLE_ONLY)
        if default_only:
            return int(p4i.ActionRef.DEFAULT_ONLY)
        scope = ref.get("scope", "table_and_default")
        if scope not in _SCOPES:
            raise P4InfoError(f"{table}: unknown scope {scope!r} for action {action}")
        return int(_SCOPES[scope])

    def _initial_default(
        self, t: p4i.Table, default: Mapping[str, Any], action_name: str, action_id: int
    ) -> None:
        call = t.initial_default_action
        call.action_id = action_id
        action = self.action_by_name[action_name]
        params = _plane_params(action)
        plane = list(zip(params, _field_ids(params, action_name), strict=True))
        args = list(default.get("args") or [])
        if len(args) != len(plane):
            raise P4InfoError(
                f"{t.preamble.name}: default action {action_name} takes {len(plane)} "
                f"control-plane argument(s), got {len(args)}"
            )
        for (param, pid), value in zip(plane, args, strict=True):
            if isinstance(value, bool) or not isinstance(value, int):
                raise P4InfoError(
                    f"{t.preamble.name}: default action argument {param.get('name')} "
                    f"must be a constant integer, got {value!r}"
                )
            width = _bitwidth(
                _get(param, "type", action_name), f"{action_name}.{param.get('name')}"
            )
            nbytes = max(1, ((width or 0) + 7) // 8)
            arg = call.arguments.add()
            arg.param_id = pid
            arg.value = (value % (1 << (8 * nbytes))).to_bytes(nbytes, "big")

    # ----------------------------------------------------------------- actions

    def _action(self, action: Mapping[str, Any]) -> None:
        name = action["name"]
        if _has_annotation(action, "hidden"):
            return
        a = self.msg.actions.add()
        self._preamble(a.preamble, Prefix.ACTION, name, action)
        params = _plane_params(action)
        for param, pid in zip(params, _field_ids(params, name), strict=True):
            where = f"{name}.{param.get('name', '?')}"
            p = a.params.add()
            p.id = pid
            p.name = _control_plane_name(param, str(_get(param, "name", name)))
            _copy_annotations(p, param)
            _set_doc(p, param)
            ptype = _get(param, "type", where)
            if _get(ptype, "kind", where) == "error":
                raise P4InfoError(f"{where}: action parameters of type error are not allowed")
            width = self._plane_width(ptype, where)
            if width is not None:
                p.bitwidth = width
            if "newtype" in ptype:
                p.type_name.name = str(ptype["newtype"])
            elif width is None and ptype.get("kind") == "enum":
                p.type_name.name = str(_get(ptype, "name", where))
            self._register_named_type(ptype, where)

    # ----------------------------------------------------------------- value sets

    def _value_set(self, vs: Mapping[str, Any]) -> None:
        """A parser value set: one match field for a bit<W> element, one per field of a
        struct (match kind from `@match`, default exact), one per member of a serializable
        enum, as p4c describes them."""
        name = control_plane_name(str(vs["name"]))
        msg = self.msg.value_sets.add()
        self._preamble(msg.preamble, Prefix.VALUE_SET, name, vs)
        t = _get(vs, "type", name)
        kind = t.get("kind")
        if kind in ("bit", "int"):
            m = msg.match.add()
            m.id = 1
            m.bitwidth = int(t["width"])
            m.match_type = p4i.MatchField.EXACT
        elif kind == "struct":
            fields = list(self._decl("structs", str(t["name"]), name).get("fields") or [])
            for f, fid in zip(fields, _field_ids(fields, name), strict=True):
                m = msg.match.add()
                m.id = fid
                m.name = _control_plane_name(f, str(f["name"]))
                m.bitwidth = int(_bitwidth(f["type"], f"{name}.{f['name']}") or 0)
                kind_name = _annotation_body(f, "match")
                if kind_name is None:
                    m.match_type = p4i.MatchField.EXACT
                elif kind_name.strip() in _MATCH_TYPES:
                    m.match_type = _MATCH_TYPES[kind_name.strip()]
                else:
                    m.other_match_type = kind_name.strip()
                _copy_annotations(m, f, _NOT_COPIED | {"match"})
                _set_doc(m, f)
        elif kind == "serenum":
            se = (self.ir.get("serializable_enums") or {}).get(str(t["name"])) or {}
            for k, member in enumerate(se.get("members") or {}, start=1):
                m = msg.match.add()
                m.id = k
                m.name = str(member)
                m.bitwidth = int(t["width"])
                m.match_type = p4i.MatchField.EXACT
        msg.size = int(_get(vs, "size", name))

    # ----------------------------------------------------------------- action profiles

    def _action_profile(self, prof: Mapping[str, Any]) -> None:
        name = control_plane_name(str(prof["name"]))
        ap = self.msg.action_profiles.add()
        self._preamble(ap.preamble, Prefix.ACTION_PROFILE, name, prof,
                       _NOT_COPIED | {"max_group_size", "selector_size_semantics", "max_member_weight"})
        for table in prof.get("tables") or []:
            ap.table_ids.append(self.symbols.id_of(Prefix.TABLE, control_plane_name(str(table))))
        selector = bool(prof.get("with_selector"))
        ap.with_selector = selector
        ap.size = int(_get(prof, "size", name))
        if not selector:
            return
        group = _annotation_body(prof, "max_group_size")
        if group:
            ap.max_group_size = int(group.strip(), 0)
        semantics = _annotation_body(prof, "selector_size_semantics")
        if semantics:
            if _unquote(semantics).upper() == "SUM_OF_MEMBERS":
                ap.sum_of_members.SetInParent()
                weight = _annotation_body(prof, "max_member_weight")
                if weight:
                    ap.sum_of_members.max_member_weight = int(weight.strip(), 0)
            else:
                ap.sum_of_weights.SetInParent()

    # ----------------------------------------------------------------- externs

    def _shown(self, key: str) -> list[Mapping[str, Any]]:
        return [o for o in self._sorted(_list(self.ir, key)) if o.get("control_plane", True) is not False]

    def _externs(self) -> None:
        for obj in self._shown("counters"):
            name = control_plane_name(str(obj["name"]))
            c = self.msg.counters.add()
            self._preamble(c.preamble, Prefix.COUNTER, name, obj)
            c.spec.unit = self._unit(_COUNTER_UNITS, obj, "counter_type")
            c.size = int(_get(obj, "size", name))
        for obj in self._by_table(_list(self.ir, "direct_counters")):
            name = control_plane_name(str(obj["name"]))
            dc = self.msg.direct_counters.add()
            self._preamble(dc.preamble, Prefix.DIRECT_COUNTER, name, obj)
            dc.spec.unit = self._unit(_COUNTER_UNITS, obj, "counter_type")
            dc.direct_table_id = self.symbols.id_of(
                Prefix.TABLE, control_plane_name(str(obj["table"]))
            )
        for obj in self._shown("meters"):
            name = control_plane_name(str(obj["name"]))
            m = self.msg.meters.add()
            self._preamble(m.preamble, Prefix.METER, name, obj)
            m.spec.unit = self._unit(_METER_UNITS, obj, "meter_type")
            m.size = int(_get(obj, "size", name))
        for obj in self._by_table(_list(self.ir, "direct_meters")):
            name = control_plane_name(str(obj["name"]))
            dm = self.msg.direct_meters.add()
            self._preamble(dm.preamble, Prefix.DIRECT_METER, name, obj)
            dm.spec.unit = self._unit(_METER_UNITS, obj, "meter_type")
            dm.direct_table_id = self.symbols.id_of(
                Prefix.TABLE, control_plane_name(str(obj["table"]))
            )
        for obj in self._shown("registers"):
            name = control_plane_name(str(obj["name"]))
            r = self.msg.registers.add()
            self._preamble(r.preamble, Prefix.REGISTER, name, obj)
            r.type_spec.CopyFrom(self._type_spec(_get(obj, "type", name), name))
            r.size = int(_get(obj, "size", name))
        for obj in _list(self.ir, "digests"):
            name = control_plane_name(str(obj["name"]))
            d = self.msg.digests.add()
            self._preamble(d.preamble, Prefix.DIGEST, name, obj)
            d.type_spec.CopyFrom(self._type_spec(_get(obj, "type", name), name))

    @staticmethod
    def _unit(units: Mapping[str, Any], obj: Mapping[str, Any], key: str) -> Any:
        value = _get(obj, key, str(obj.get("name")))
        if value not in units:
            raise P4InfoError(
                f"{obj.get('name')}: unknown {key} {value!r} (expected one of {sorted(units)})"
            )
        return units[value]

    # ----------------------------------------------------------------- packet io

    def _controller_header(self, ch: Mapping[str, Any]) -> None:
        header = str(ch["header"])
        htype = (self.types.get("headers") or {}).get(header)
        if htype is None:
            raise P4InfoError(f"controller header {header!r} is not a declared header type")
        source = htype if htype.get("annotations") else ch
        if _has_annotation(source, "hidden"):
            return
        body = _annotation_body(source, "controller_header")
        cname = _unquote(body) if body else str(_get(ch, "name", header))
        cpm = self.msg.controller_packet_metadata.add()
        cpm.preamble.id = self.symbols.id_of(Prefix.CONTROLLER_HEADER, header)
        cpm.preamble.name = cname
        cpm.preamble.alias = cname
        _copy_annotations(cpm.preamble, source)
        _set_doc(cpm.preamble, source)
        fields = self._flatten(list(_get(htype, "fields", header)), header)
        for f, fid in zip(fields, _field_ids(fields, header), strict=True):
            if _has_annotation(f, "hidden"):
                continue
            md = cpm.metadata.add()
            md.id = fid
            md.name = _control_plane_name(f, str(_get(f, "name", header)))
            _copy_annotations(md, f)
            ftype = _get(f, "type", f"{header}.{md.name}")
            md.bitwidth = self._plane_width(ftype, f"{header}.{md.name}") or 0
            self._register_named_type(ftype, f"{header}.{md.name}")
            if "newtype" in ftype:
                md.type_name.name = str(ftype["newtype"])

    def _flatten(self, fields: list[Mapping[str, Any]], where: str) -> list[Mapping[str, Any]]:
        """A header's fields with struct-typed ones replaced by theirs, named `s.f`, as
        p4c flattens headers for P4Runtime."""
        out: list[Mapping[str, Any]] = []
        for f in fields:
            ftype = _get(f, "type", where)
            if ftype.get("kind") != "struct":
                out.append(f)
                continue
            inner = self._flatten(list(self._decl("structs", str(ftype["name"]), where).get("fields") or []), where)
            out.extend({**g, "name": f"{f['name']}.{g['name']}"} for g in inner)
        return out

    # ----------------------------------------------------------------- type specs

    def _translation(self, name: str) -> tuple[str, int | None] | None:
        """`@p4runtime_translation(uri, W | bit<W> | string)` of a newtype: (uri, W or None
        for string)."""
        decl = (self.ir.get("newtypes") or {}).get(name) or {}
        body = _annotation_body(decl, "p4runtime_translation")
        if body is None:
            return None
        uri, _, rest = body.partition(",")
        rest = rest.replace(" ", "")
        if rest == "string":
            return _unquote(uri), None
        digits = rest.removeprefix("bit<").removesuffix(">")
        return _unquote(uri), int(digits, 0)

    def _plane_width(self, t: Mapping[str, Any], where: str) -> int | None:
        """The bitwidth P4Runtime shows: a translated newtype's SDN width (none for string)."""
        if "newtype" in t:
            tr = self._translation(str(t["newtype"]))
            if tr is not None:
                return tr[1]
        return _bitwidth(t, where)

    def _register_named_type(self, t: Mapping[str, Any], where: str) -> None:
        """Record serializable enums, enums, error and newtypes in ``type_info``, as p4c's
        type conversion of every match field, action parameter and packet-io field does."""
        if "newtype" in t:
            name = str(t["newtype"])
            info = self.msg.type_info
            if name not in info.new_types:
                nt = info.new_types[name]
                tr = self._translation(name)
                if tr is None:
                    under = {k: v for k, v in t.items() if k != "newtype"}
                    nt.original_type.CopyFrom(self._type_spec(under, where))
                else:
                    nt.translated_type.uri = tr[0]
                    if tr[1] is None:
                        nt.translated_type.sdn_string.SetInParent()
                    else:
                        nt.translated_type.sdn_bitwidth = tr[1]
        elif t.get("kind") in ("serenum", "enum", "error"):
            self._type_spec(t, where)

    def _type_spec(self, t: Mapping[str, Any], where: str) -> p4t.P4DataTypeSpec:
        """P4DataTypeSpec of a type, registering named types in ``type_info``."""
        spec = p4t.P4DataTypeSpec()
        kind = _get(t, "kind", where)
        info = self.msg.type_info
        if kind == "bit":
            spec.bitstring.bit.bitwidth = int(t["width"])
        elif kind == "int":
            spec.bitstring.int.bitwidth = int(t["width"])
        elif kind == "bool":
            spec.bool.SetInParent()
        elif kind == "error":
            spec.error.SetInParent()
            if not info.error.members:
                info.error.members.extend(str(e) for e in self.ir.get("errors") or [])
        elif kind == "struct":
            name = str(_get(t, "name", where))
            spec.struct.name = name
            if name not in info.structs:
                info.structs[name].SetInParent()
                decl = self._decl("structs", name, where)
                for f in decl.get("fields") or []:
                    member = info.structs[name].members.add()
                    member.name = str(f["name"])
                    member.type_spec.CopyFrom(self._type_spec(f["type"], f"{where}.{f['name']}"))
        elif kind == "header":
            name = str(_get(t, "name", where))
            spec.header.name = name
            if name not in info.headers:
                info.headers[name].SetInParent()
                decl = self._decl("headers", name, where)
                for f in decl.get("fields") or []:
                    member = info.headers[name].members.add()
                    member.name = str(f["name"])
                    inner = self._type_spec(f["type"], f"{where}.{f['name']}")
                    member.type_spec.CopyFrom(inner.bitstring)
        elif kind == "serenum":
            name = str(_get(t, "name", where))
            spec.serializable_enum.name = name
            if name not in info.serializable_enums:
                se_decl = (self.ir.get("serializable_enums") or {}).get(name)
                if se_decl is None:
                    raise P4InfoError(f"{where}: unknown serializable enum {name!r}")
                width = int(_get(se_decl["type"], "width", name))
                se = info.serializable_enums[name]
                se.underlying_type.bitwidth = width
                nbytes = max(1, (width + 7) // 8)
                for member, value in (se_decl.get("members") or {}).items():
                    m = se.members.add()
                    m.name = str(member)
                    m.value = (int(value) % (1 << (8 * nbytes))).to_bytes(nbytes, "big")
        elif kind == "tuple":
            for member in t.get("types") or []:
                spec.tuple.members.add().CopyFrom(self._type_spec(member, where))
        elif kind == "varbit":
            spec.bitstring.varbit.max_bitwidth = int(t["width"])
        elif kind == "header_union":
            name = str(_get(t, "name", where))
            spec.header_union.name = name
            if name not in info.header_unions:
                info.header_unions[name].SetInParent()
                decl = self._decl("header_unions", name, where)
                for f in decl.get("fields") or []:
                    member = info.header_unions[name].members.add()
                    member.name = str(f["name"])
                    member.header.name = str(f["type"]["name"])
                    self._type_spec(f["type"], f"{where}.{f['name']}")
        elif kind == "stack":
            elem = {"kind": "header_union" if t.get("union") else "header", "name": t["header"]}
            self._type_spec(elem, where)
            target = spec.header_union_stack if t.get("union") else spec.header_stack
            target.size = int(t["size"])
            if t.get("union"):
                spec.header_union_stack.header_union.name = str(t["header"])
            else:
                spec.header_stack.header.name = str(t["header"])
        elif kind == "enum":
            name = str(_get(t, "name", where))
            spec.enum.name = name
            if name not in info.enums:
                members = (self.ir.get("enums") or {}).get(name)
                if members is None:
                    raise P4InfoError(f"{where}: unknown enum {name!r}")
                info.enums[name].members.extend(
                    p4t.P4EnumTypeSpec.Member(name=str(m)) for m in members
                )
        else:
            raise P4InfoError(f"{where}: type {kind} has no P4Runtime type spec")
        return spec

    def _decl(self, group: str, name: str, where: str) -> Mapping[str, Any]:
        decl = (self.types.get(group) or {}).get(name)
        if decl is None:
            raise P4InfoError(f"{where}: unknown {group[:-1]} type {name!r}")
        return dict(decl)
