"""Front-end corpus tests: every program in tests/p4/good compiles and its IR satisfies
the `// expect:` facts written at its top; every program in tests/p4/bad fails with the
`// error: LINE:COL: message` its first line announces."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from p4reduce.softswitch.p4 import CompileError, compile_file, compile_source
from p4reduce.softswitch.p4.ir import dumps
from tests.paths import P4_CORPUS

HERE = P4_CORPUS
GOOD = sorted((HERE / "good").glob("*.p4"))
BAD = sorted((HERE / "bad").glob("*.p4"))


def find(obj: Any, **kv: Any) -> list[dict[str, Any]]:
    """Every dict nested anywhere in `obj` whose items include all of `kv`."""
    out: list[dict[str, Any]] = []
    stack = [obj]
    while stack:
        o = stack.pop()
        if isinstance(o, dict):
            if all(k in o and o[k] == v for k, v in kv.items()):
                out.append(o)
            stack.extend(o.values())
        elif isinstance(o, list):
            stack.extend(reversed(o))
    return out


def helpers(ir: dict[str, Any]) -> dict[str, Any]:
    def by_name(kind: str, name: str) -> dict[str, Any]:
        for o in ir[kind]:
            if o["name"] == name:
                return o  # type: ignore[no-any-return]
        raise AssertionError(f"no {kind} named {name}; have {[o['name'] for o in ir[kind]]}")

    return {
        "ir": ir,
        "find": find,
        "table": lambda n: by_name("tables", n),
        "action": lambda n: by_name("actions", n),
        "register": lambda n: by_name("registers", n),
        "names": lambda kind: [o["name"] for o in ir[kind]],
        "ctrl": lambda n: ir["controls"][n]["body"],
        "state": lambda n: ir["parsers"][ir["pipeline"]["parser"]]["states"][n],
        "bit": lambda w: {"kind": "bit", "width": w},
        # declaration position, checked on its own by test_declaration_order
        "unordered": lambda o: {k: v for k, v in o.items() if k != "order"},
    }


def test_corpus_sizes() -> None:
    assert len(GOOD) >= 40
    assert len(BAD) >= 40


@pytest.mark.parametrize("path", GOOD, ids=[p.stem for p in GOOD])
def test_good(path: Path) -> None:
    expects = re.findall(r"^// expect: (.*)$", path.read_text(), re.M)
    assert expects, f"{path.name} has no // expect: lines"
    ir = compile_file(path)
    env = helpers(ir)
    for e in expects:
        assert eval(e, env), f"{path.name}: failed: {e}"


@pytest.mark.parametrize("path", BAD, ids=[p.stem for p in BAD])
def test_bad(path: Path) -> None:
    first = path.read_text().splitlines()[0]
    m = re.match(r"// error: (\d+):(\d+): (.*)$", first)
    assert m, f"{path.name}: first line must be // error: LINE:COL: message"
    line, col, msg = int(m.group(1)), int(m.group(2)), m.group(3)
    with pytest.raises(CompileError) as ei:
        compile_file(path)
    d = ei.value.diagnostics[0]
    assert msg in d.message, f"{path.name}: got {d.message!r}"
    assert (d.file, d.line, d.col) == (path.name, line, col), f"{path.name}: got {d}"
    text = str(ei.value)
    assert text.startswith(f"{path.name}:{line}:{col}: error: ")
    assert text.splitlines()[2].endswith("^")


def test_deterministic() -> None:
    for p in GOOD[:10]:
        assert dumps(compile_file(p)) == dumps(compile_file(p))


def test_declaration_order_is_recorded_for_p4info() -> None:
    """P4Info lists objects in p4c's order (declaration order, top-level actions a block
    uses first), which the name-sorted IR lists lose: `order` is the position per kind."""
    ir = compile_source(
        """
#include <core.p4>
#include <v1model.p4>
struct H {}
struct M { bit<8> x; }
parser P(packet_in p, out H h, inout M m, inout standard_metadata_t s) { state start { transition accept; } }
control V(inout H h, inout M m) { apply {} }
control I(inout H h, inout M m, inout standard_metadata_t s) {
    register<bit<8>>(4) zreg;
    action zeta() { m.x = 1; }
    action alpha() { m.x = 2; }
    table zt { key = { m.x: exact; } actions = { zeta; alpha; } }
    table at { key = { m.x: exact; } actions = { alpha; } }
    register<bit<8>>(4) areg;
    apply { zt.apply(); at.apply(); }
}
control E(inout H h, inout M m, inout standard_metadata_t s) { apply {} }
control C(inout H h, inout M m) { apply {} }
control D(packet_out p, in H h) { apply {} }
V1Switch(P(), V(), I(), E(), C(), D()) main;
""",
        "order.p4",
    )
    def listed(kind: str) -> list[str]:
        return [o["name"] for o in sorted(ir[kind], key=lambda o: o["order"])]

    assert listed("actions") == ["NoAction", "I.zeta", "I.alpha"]
    assert listed("tables") == ["I.zt", "I.at"]
    assert listed("registers") == ["I.zreg", "I.areg"]
