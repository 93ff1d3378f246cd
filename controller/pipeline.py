"""The shipped aggregation pipeline, compiled once per machine into the user's cache.

An installed p4reduce has no `build/` folder: `p4reduce-ctl serve` and `p4reduce up` push
`p4reduce.p4src`'s `aggregator.p4`, compiled by softswitch's front end into
`<cache>/p4/<hash>/` (`p4reduce.native.cache_dir()`, normally `~/.cache/p4reduce`). The
hash covers the P4 sources, the compiler's own sources and the defines, so a new version
of either compiles anew and an unchanged one is never compiled twice. Outputs are
written to a temporary folder and renamed into place, so concurrent starts never read a
half-written file.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from p4reduce import contract as n
from p4reduce.controller.errors import ControllerError
from p4reduce.native import cache_dir

PROGRAM = "aggregator"


@dataclass(frozen=True)
class Built:
    """The two files the controller pushes: P4Info (text) and the softswitch JSON IR."""

    p4info: Path
    device_config: Path
    compiled_now: bool  # False: taken from the cache


def _sources_hash(defines: dict[str, str]) -> str:
    import p4reduce.softswitch.p4 as compiler
    from p4reduce.p4src import P4SRC_DIR

    h = hashlib.sha256()
    roots = (P4SRC_DIR, Path(compiler.__file__).resolve().parent)
    for root in roots:
        for f in sorted(root.rglob("*")):
            if f.suffix in (".p4", ".py") and f.is_file():
                h.update(str(f.relative_to(root)).encode() + b"\0" + f.read_bytes() + b"\0")
    h.update(json.dumps(sorted(defines.items())).encode())
    return h.hexdigest()[:20]


def shipped(k: int = n.DEFAULT_K) -> Built:
    """The aggregator compiled with K=`k` values per packet (NUM_LANES), from the cache or
    compiled now; ControllerError (one line) when it cannot be built or written."""
    from p4reduce.p4src import AGGREGATOR_P4
    from p4reduce.softswitch.p4 import CompileError, compile_file
    from p4reduce.softswitch.p4.ir import dumps
    from p4reduce.softswitch.p4.p4info import emit, to_text

    defines = {} if k == n.DEFAULT_K else {"NUM_LANES": str(k)}
    out = cache_dir() / "p4" / f"{PROGRAM}-k{k}-{_sources_hash(defines)}"
    built = Built(out / f"{PROGRAM}.p4info.txtpb", out / f"{PROGRAM}.json", False)
    if built.p4info.is_file() and built.device_config.is_file():
        return built
    try:
        ir = compile_file(AGGREGATOR_P4, defines)
        p4info_text = str(to_text(emit(ir)))
    except CompileError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else "compile error"
        raise ControllerError(
            f"cannot compile the shipped {AGGREGATOR_P4.name} (K={k}): {first}") from None
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=".tmp-"))
        (tmp / built.device_config.name).write_text(dumps(ir) + "\n", encoding="utf-8")
        (tmp / built.p4info.name).write_text(p4info_text, encoding="utf-8")
        try:
            os.rename(tmp, out)
        except OSError:  # another process renamed its copy first: keep that one
            shutil.rmtree(tmp, ignore_errors=True)
            if not built.device_config.is_file():
                raise
    except OSError as e:
        raise ControllerError(
            f"cannot write the compiled pipeline under {out.parent}: {e.strerror or e}"
            " (set P4REDUCE_CACHE to a writable folder)"
        ) from None
    return Built(built.p4info, built.device_config, True)
