"""The distribution installs one namespace, `p4reduce`, and nothing a user's files shadow."""

from __future__ import annotations

import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from tests.paths import ROOT


def _config() -> dict[str, object]:
    with open(ROOT / "pyproject.toml", "rb") as f:
        tool: dict[str, object] = tomllib.load(f)["tool"]["setuptools"]
        return tool


def test_every_package_folder_is_listed() -> None:
    """A new subpackage that is not in pyproject's list would be missing from the wheel."""
    cfg = _config()
    dirs: dict[str, str] = cfg["package-dir"]  # type: ignore[assignment]
    found = set()
    for ns, folder in dirs.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder).parts
            found.add(".".join((ns, *rel)))
    assert found == set(cfg["packages"])  # type: ignore[arg-type]


SHADOWS = {
    "worker.py": "raise SystemExit('the user worker.py was imported')\n",
    "controller.py": "raise SystemExit('the user controller.py was imported')\n",
    "softswitch.py": "raise SystemExit('the user softswitch.py was imported')\n",
}


def test_users_worker_and_controller_modules_do_not_break_torch(tmp_path: Path) -> None:
    """Training code often has a worker.py; torch's backend autoload must not import it."""
    for name, text in SHADOWS.items():
        (tmp_path / name).write_text(text)
    code = ("import warnings; warnings.simplefilter('error')\n"
            "import torch, torch.distributed as dist\n"
            "assert 'p4reduce' in dist.Backend.backend_list, dist.Backend.backend_list\n"
            "from p4reduce.worker.torch import P4ReduceProcessGroup\n"
            "import worker\n")  # the user's own module still imports, and it is theirs
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 1 and "the user worker.py was imported" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr, r.stderr


@pytest.mark.slow
def test_wheel_installs_only_the_p4reduce_namespace(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                        "-q", "-w", str(tmp_path), str(ROOT)], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    (wheel,) = tmp_path.glob("p4reduce-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/", 1)[0] for n in names}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"p4reduce"}
    for needed in ("p4reduce/py.typed", "p4reduce/contract.py", "p4reduce/p4src/aggregator.p4",
                   "p4reduce/p4src/lanes.p4", "p4reduce/softswitch/p4/include/v1model.p4",
                   "p4reduce/controller/proto/p4reduce_controller.proto"):
        assert needed in names, needed
