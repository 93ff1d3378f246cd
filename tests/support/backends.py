"""The softswitch back ends every runtime test runs on, side by side.

`native` is skipped (with the reason) where no C compiler exists; the Python back end is
the reference and always runs.
"""

from __future__ import annotations

import functools
from typing import Any

import pytest

BACKENDS = ["python", "native"]


@functools.lru_cache(maxsize=1)
def native_unavailable() -> str | None:
    """Why the native back end cannot be built here, or None."""
    from p4reduce import native

    try:
        native.compiler()
    except native.NativeUnavailable as exc:
        return str(exc)
    return None


def skip_unless_available(backend: str) -> None:
    if backend == "native":
        reason = native_unavailable()
        if reason is not None:
            pytest.skip(f"native backend: {reason}")


def make(ir: Any, backend: str, **kw: Any) -> Any:
    """A pipeline of `ir` on exactly this back end (never a silent fallback)."""
    from p4reduce.softswitch.runtime.backend import make_pipeline

    skip_unless_available(backend)
    return make_pipeline(ir, backend, **kw)  # type: ignore[arg-type]
