"""The `p4reduce` command's own input checks and `p4reduce examples` (in-process; the
networks `up` starts are tested in tests/e2e/test_up.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from p4reduce.cli import main


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as e:
        code = int(e.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(("argv", "flag"), [
    (["up", "--ranks", "0"], "--ranks"),
    (["up", "--ranks", "33"], "--ranks"),
    (["up", "--ranks", "-2"], "--ranks"),
    (["up", "--loss", "1.5"], "--loss"),
    (["up", "--loss", "lots"], "--loss"),
    (["up", "--k", "0"], "--k"),
    (["up", "--slots", "-1"], "--slots"),
    (["up", "--listen", "127.0.0.1:65536"], "--listen"),
    (["up", "--listen", "999.0.0.1:5"], "--listen"),
    (["up", "--backend", "fpga"], "--backend"),
    (["up", "--ranks", "2", "--"], "--"),
    (["examples", "a", "b"], "b"),
    (["down"], "COMMAND"),
    ([], "COMMAND"),
])
def test_bad_input_is_one_line_naming_the_flag_and_exit_2(
        capsys: pytest.CaptureFixture[str], argv: list[str], flag: str) -> None:
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == "" and err.count("\n") == 1, err
    assert err.startswith("p4reduce") and ": error: " in err and flag in err


def test_examples_are_copied_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dest = tmp_path / "ex"
    code, out, _ = run(capsys, "examples", str(dest))
    assert code == 0 and "train_ddp.py" in out
    names = sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file())
    assert names == ["topologies/loopback.yaml", "topologies/star.yaml",
                     "topologies/twotier.yaml", "train_ddp.py"]
    assert "init_process_group" in (dest / "train_ddp.py").read_text()
    code, _, err = run(capsys, "examples", str(dest))  # never overwrites the user's edits
    assert code == 1 and "exists" in err and err.count("\n") == 1
