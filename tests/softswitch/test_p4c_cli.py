"""End-to-end tests of the `p4reduce-p4c` command (run in-process through `main`, and once
as a real subprocess through the installed entry point module)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from p4reduce.softswitch.p4.cli import main
from tests.paths import P4_CORPUS

GOOD = P4_CORPUS / "good"

DEFINED = """#include <core.p4>
#include <v1model.p4>
#ifndef LANES
#error LANES must be defined
#endif
header h_t { bit<8> a; }
struct headers { h_t h; }
struct metadata { bit<8> m; }
parser P(packet_in p, out headers hdr, inout metadata meta, inout standard_metadata_t s) {
    state start { p.extract(hdr.h); transition accept; }
}
control V(inout headers hdr, inout metadata meta) { apply { } }
control I(inout headers hdr, inout metadata meta, inout standard_metadata_t s) {
    register<bit<8>>(LANES) r;
    apply { meta.m = VALUE; }
}
control E(inout headers hdr, inout metadata meta, inout standard_metadata_t s) { apply { } }
control C(inout headers hdr, inout metadata meta) { apply { } }
control D(packet_out p, in headers hdr) { apply { p.emit(hdr.h); } }
V1Switch(P(), V(), I(), E(), C(), D()) main;
"""


def test_compiles_basic(tmp_path: Path) -> None:
    assert main([str(GOOD / "basic.p4"), "-o", str(tmp_path / "out")]) == 0
    ir = json.loads((tmp_path / "out" / "basic.json").read_text())
    assert [t["name"] for t in ir["tables"]] == ["MyIngress.ipv4_lpm"]
    p4info = tmp_path / "out" / "basic.p4info.txtpb"
    if p4info.exists():  # the P4Info emitter is a separate module
        assert "MyIngress.ipv4_lpm" in p4info.read_text()


def test_p4runtime_files_option(tmp_path: Path) -> None:
    target = tmp_path / "info.txtpb"
    assert main([str(GOOD / "basic.p4"), "-o", str(tmp_path), "--p4runtime-files", str(target)]) == 0
    assert (tmp_path / "basic.json").exists()
    try:
        import p4reduce.softswitch.p4.p4info  # noqa: F401
    except ImportError:
        return
    assert "ipv4_forward" in target.read_text()


def test_defines(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "def.p4"
    src.write_text(DEFINED)
    assert main([str(src), "-o", str(tmp_path), "-D", "LANES=4", "-DVALUE=7"]) == 0
    ir = json.loads((tmp_path / "def.json").read_text())
    assert ir["registers"][0]["size"] == 4
    assert ir["controls"]["I"]["body"][0]["rhs"]["value"] == 7
    assert main([str(src), "-o", str(tmp_path), "-D", "VALUE=1"]) == 1
    err = capsys.readouterr().err
    assert "def.p4:4:1: error: #error LANES must be defined" in err
    assert "Traceback" not in err


def test_include_dir(tmp_path: Path) -> None:
    inc = tmp_path / "inc"
    inc.mkdir()
    (inc / "consts.p4").write_text("#define LANES 2\n#define VALUE 3\n")
    src = tmp_path / "main.p4"
    src.write_text('#include "consts.p4"\n' + DEFINED)
    assert main([str(src), "-o", str(tmp_path / "o"), "-I", str(inc)]) == 0


def test_compile_error_exit_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = P4_CORPUS / "bad" / "width_mismatch.p4"
    assert main([str(bad), "-o", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "width_mismatch.p4:" in err and "error: width mismatch" in err
    assert not (tmp_path / "width_mismatch.json").exists()


@pytest.mark.parametrize("content", [b"\x00\xff\xfe garbage \x89PNG", b"}}}}", b"control {", b"\x7fELF\x02\x01"])
def test_garbage_is_a_clean_error(tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes) -> None:
    src = tmp_path / "g.p4"
    src.write_bytes(content)
    assert main([str(src), "-o", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "error:" in err and "Traceback" not in err


def test_deep_nesting_is_a_clean_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "d.p4"
    src.write_text("const bit<8> X = " + "(" * 20000 + "1" + ")" * 20000 + ";\n")
    assert main([str(src), "-o", str(tmp_path)]) == 1
    assert "nested too deeply" in capsys.readouterr().err


def test_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(tmp_path / "nope.p4"), "-o", str(tmp_path)]) == 1
    assert "cannot read file" in capsys.readouterr().err


def test_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main([])
    assert e.value.code == 2
    with pytest.raises(SystemExit) as e:
        main(["x.p4", "-o", "d", "-D", "1BAD=2"])
    assert e.value.code == 2
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    assert "p4reduce-p4c" in capsys.readouterr().out


@pytest.mark.timeout(60)
def test_subprocess_byte_identical(tmp_path: Path) -> None:
    outs = []
    for k in range(2):
        d = tmp_path / f"o{k}"
        r = subprocess.run([sys.executable, "-m", "p4reduce.softswitch.p4.cli", str(GOOD / "subcontrol_inline.p4"), "-o", str(d)],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        outs.append((d / "subcontrol_inline.json").read_bytes())
    assert outs[0] == outs[1]
