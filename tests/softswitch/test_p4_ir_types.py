"""The IR every corpus program compiles to has exactly the shape of the TypedDicts in
softswitch/p4/ir.py: mypy checks the producer and the consumers against those types, this
checks that the JSON really is what the types say (no missing, extra or mistyped key)."""

from __future__ import annotations

import types
import typing
from pathlib import Path
from typing import Any, Literal, NotRequired, Required, Union, get_args, get_origin

import pytest

from p4reduce.softswitch.p4 import compile_file, ir
from tests.paths import P4_CORPUS

ROOT = Path(__file__).resolve().parents[2]
GOOD = sorted((P4_CORPUS / "good").glob("*.p4"))


def _fits(value: Any, tp: Any, where: str) -> str | None:
    """None when `value` has type `tp`, else the first mismatch found (a path and why)."""
    origin = get_origin(tp)
    if origin in (Required, NotRequired):
        return _fits(value, get_args(tp)[0], where)
    if tp is Any:
        return None
    if tp is None or tp is type(None):
        return None if value is None else f"{where}: expected null, got {value!r}"
    if origin is Literal:
        return None if value in get_args(tp) else f"{where}: {value!r} not in {get_args(tp)}"
    if origin in (Union, types.UnionType):
        members = get_args(tp)
        errors = [_fits(value, t, where) for t in members]
        if any(e is None for e in errors):
            return None
        # a tagged union: report against the member whose tag the value carries
        for t, e in zip(members, errors, strict=True):
            if typing.is_typeddict(t) and isinstance(value, dict):
                tag = typing.get_type_hints(t).get("stmt")
                if tag is not None and value.get("stmt") in get_args(tag):
                    return e
        return errors[0]
    if origin is list:
        if not isinstance(value, list):
            return f"{where}: expected a list, got {type(value).__name__}"
        (item,) = get_args(tp)
        for i, v in enumerate(value):
            err = _fits(v, item, f"{where}[{i}]")
            if err:
                return err
        return None
    if origin is dict:
        if not isinstance(value, dict):
            return f"{where}: expected an object, got {type(value).__name__}"
        kt, vt = get_args(tp)
        for k, v in value.items():
            err = _fits(k, kt, f"{where} key") or _fits(v, vt, f"{where}.{k}")
            if err:
                return err
        return None
    if typing.is_typeddict(tp):
        if not isinstance(value, dict):
            return f"{where}: expected {tp.__name__}, got {type(value).__name__}"
        hints = typing.get_type_hints(tp)
        missing = tp.__required_keys__ - value.keys()
        extra = value.keys() - hints.keys()
        if missing or extra:
            return f"{where}: {tp.__name__} missing {sorted(missing)}, extra {sorted(extra)}"
        for k, v in value.items():
            err = _fits(v, hints[k], f"{where}.{k}")
            if err:
                return err
        return None
    if tp is int:
        return None if isinstance(value, int) and not isinstance(value, bool) else f"{where}: expected int, got {value!r}"
    if tp in (str, bool):
        return None if isinstance(value, tp) else f"{where}: expected {tp.__name__}, got {value!r}"
    raise AssertionError(f"{where}: the checker does not know type {tp!r}")


def test_the_checker_catches_mistakes() -> None:
    good: ir.Expr = {"op": "const", "value": 1, "type": {"kind": "bit", "width": 8}}
    assert _fits(good, ir.Expr, "e") is None
    assert _fits({**good, "width": 8}, ir.Expr, "e") is not None  # extra key
    assert _fits({"op": "const", "value": 1}, ir.Expr, "e") is not None  # no type
    assert _fits({"op": "nosuch", "type": {"kind": "bool"}}, ir.Expr, "e") is not None
    assert _fits({"stmt": "apply", "table": 3}, ir.Stmt, "s") is not None
    assert _fits({"stmt": "call", "action": "a", "args": [good]}, ir.Stmt, "s") is not None
    assert _fits({"stmt": "return", "label": "L"}, ir.Stmt, "s") is None


@pytest.mark.parametrize("path", GOOD, ids=lambda p: p.stem)
def test_corpus_ir_has_the_typed_shape(path: Path) -> None:
    assert _fits(compile_file(path), ir.Program, "ir") is None


@pytest.mark.parametrize("lanes", [8, 64])
def test_aggregator_ir_has_the_typed_shape(lanes: int) -> None:
    prog = compile_file(ROOT / "p4src" / "aggregator.p4", {"NUM_LANES": str(lanes)})
    assert _fits(prog, ir.Program, "ir") is None
