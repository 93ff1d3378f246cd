"""The shipped aggregator compiled into the user's cache, once per program and K."""

from __future__ import annotations

from pathlib import Path

import pytest

from p4reduce.controller.pipeline import shipped


def test_compiled_once_into_the_cache_per_k(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("P4REDUCE_CACHE", str(tmp_path))
    first = shipped()
    assert first.compiled_now and first.device_config.is_file() and first.p4info.is_file()
    assert first.device_config.parent.parent == tmp_path / "p4"
    again = shipped()
    assert not again.compiled_now and again.device_config == first.device_config
    wide = shipped(256)
    assert wide.compiled_now and wide.device_config != first.device_config
    assert "lane_255" in wide.device_config.read_text()
    assert "lane_64" not in first.device_config.read_text()
    assert not [p for p in (tmp_path / "p4").iterdir() if p.name.startswith(".tmp")]


def test_an_unwritable_cache_is_one_line(tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from p4reduce.controller.errors import ControllerError

    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("P4REDUCE_CACHE", str(blocker))
    with pytest.raises(ControllerError) as e:
        shipped()
    assert "cannot write the compiled pipeline" in e.value.message
    assert "P4REDUCE_CACHE" in e.value.message and "\n" not in e.value.message
