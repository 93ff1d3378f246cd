"""Preprocessor and lexer: macros, conditionals, includes and the locations they keep."""

from __future__ import annotations

from pathlib import Path

import pytest

from p4reduce.softswitch.p4 import CompileError
from p4reduce.softswitch.p4.lexer import tokenize
from p4reduce.softswitch.p4.preprocess import preprocess


def texts(src: str, defines: dict[str, str] | None = None, include_dirs: list[Path] | None = None,
          path: Path | None = None) -> list[str]:
    toks, _ = preprocess(src, "t.p4", path, defines, include_dirs or [])
    return [t.text for t in toks]


def test_literal_forms() -> None:
    toks = tokenize("8w5 8s5 0xFF 0b1010 1_000 16w0x1_0 0o17 32s0", "t.p4")
    assert [(t.value, t.width, t.signed) for t in toks] == [
        (5, 8, False), (5, 8, True), (255, None, False), (10, None, False), (1000, None, False),
        (16, 16, False), (15, None, False), (0, 32, True)]


def test_comments_and_locations() -> None:
    toks = tokenize("a /* x\n y */ b // c\n  c", "t.p4")
    assert [(t.text, t.loc.line, t.loc.col) for t in toks] == [("a", 1, 1), ("b", 2, 7), ("c", 3, 3)]


def test_object_and_function_macros() -> None:
    src = "#define N 4\n#define ADD(a, b) ((a) + (b))\n#define CAT(x, y) x##y\n#define STR(x) #x\nADD(N, f(1, 2)) CAT(lane, 3) STR(hi there)\n"
    assert texts(src) == ["(", "(", "4", ")", "+", "(", "f", "(", "1", ",", "2", ")", ")", ")", "lane3", '"hi there"']


def test_self_reference_does_not_loop() -> None:
    assert texts("#define A B\n#define B A\nA\n") == ["A"]


def test_conditionals() -> None:
    src = """#define X 3
#if X > 5
no1
#elif defined X && (X * 2 == 6)
yes
#else
no2
#endif
#ifdef Y
no3
#endif
#ifndef Y
yes2
#endif
#undef X
#if defined(X) || 0
no4
#endif
"""
    assert texts(src) == ["yes", "yes2"]


def test_command_line_defines() -> None:
    assert texts("#if LANES == 8\nok\n#endif\nLANES\n", {"LANES": "8"}) == ["ok", "8"]


def test_macro_location_is_the_use_site() -> None:
    toks, _ = preprocess("#define V 1 +\n\n  x = V y;\n", "t.p4", None, None, [])
    assert [(t.text, t.loc.line, t.loc.col) for t in toks][2:4] == [("1", 3, 7), ("+", 3, 7)]


def test_include_relative_and_error_location(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "inc.p4").write_text("const bit<8> A = 1;\n#error broken here\n")
    main = tmp_path / "main.p4"
    main.write_text('#include "sub/inc.p4"\n')
    with pytest.raises(CompileError) as e:
        preprocess(main.read_text(), "main.p4", main, None, [])
    d = e.value.diagnostics[0]
    assert d.file.endswith("inc.p4") and (d.line, d.col) == (2, 1)
    assert "#error broken here" in str(e.value)


def test_include_search_dirs(tmp_path: Path) -> None:
    (tmp_path / "k.p4").write_text("#define K 9\n")
    assert texts('#include <k.p4>\nK\n', include_dirs=[tmp_path]) == ["9"]


@pytest.mark.parametrize(("src", "msg"), [
    ("#if 1\n", "missing #endif"),
    ("#endif\n", "#endif without #if"),
    ("#else\n", "#else without #if"),
    ("#if 1 +\n#endif\n", "unexpected end of #if expression"),
    ("#if 1 / 0\n#endif\n", "division by zero"),
    ("#define F(a) a\nF(1, 2)\n", "expects 1 argument(s), got 2"),
    ("#define F(a) a\nF(1\n", "unterminated argument list"),
    ("#bogus\n", "unknown preprocessor directive"),
    ('#include "missing.p4"\n', "cannot find included file"),
])
def test_preprocessor_errors(src: str, msg: str) -> None:
    with pytest.raises(CompileError) as e:
        preprocess(src, "t.p4", None, None, [])
    assert msg in e.value.diagnostics[0].message
