"""`p4reduce.native`: compile once, cache by content, fall back with one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from p4reduce import native

SRC = "int add(int a, int b) { return a + b; }\n"
CDEF = "int add(int a, int b);"


@pytest.fixture(autouse=True)
def _own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("P4REDUCE_CACHE", str(tmp_path / "cache"))


def test_compiles_caches_and_reuses(tmp_path: Path) -> None:
    a = native.load("t_add", SRC, CDEF)
    assert a.lib.add(2, 40) == 42
    assert a.path.parent == tmp_path / "cache" / "native"
    stamp = a.path.stat().st_mtime_ns
    native._loaded.clear()  # a new process: the object on disk is reused, not rebuilt
    b = native.load("t_add", SRC, CDEF)
    assert b.path == a.path and b.path.stat().st_mtime_ns == stamp


def test_a_different_source_is_a_different_object() -> None:
    a = native.load("t_add", SRC, CDEF)
    b = native.load("t_add", SRC.replace("a + b", "b + a"), CDEF)
    assert a.path != b.path


def test_no_compiler_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CC", "/nonexistent/cc")
    with pytest.raises(native.NativeUnavailable, match=r"^no C compiler \(/nonexistent/cc"):
        native.load("t_add", SRC, CDEF)


def test_a_compile_error_is_one_line() -> None:
    with pytest.raises(native.NativeUnavailable) as e:
        native.load("t_bad", "int add(int a, int b) { return a +; }\n", CDEF)
    assert "\n" not in str(e.value) and "error" in str(e.value)
