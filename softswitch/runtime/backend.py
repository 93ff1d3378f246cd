"""Choosing the back end a program runs on: `native` (compiled to C), `python` (the
generated-Python reference) or `auto` (native where it can be built, else Python).

`auto` falls back with one warning per reason and process: when there is no C compiler
(or it fails), or when the program uses something the C back end does not implement.
Asking for `native` explicitly turns either into an error instead.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any, Literal

from p4reduce import native
from p4reduce.softswitch.p4.ir import Program
from p4reduce.softswitch.runtime.errors import PipelineError

log = logging.getLogger("p4reduce.softswitch.runtime")

Backend = Literal["auto", "native", "python"]
BACKENDS: tuple[Backend, ...] = ("auto", "native", "python")
ENV = "P4REDUCE_BACKEND"

_warned: set[str] = set()
_warn_lock = threading.Lock()


def default_backend() -> Backend:
    """`$P4REDUCE_BACKEND` when set to one of BACKENDS, else auto."""
    value = os.environ.get(ENV, "auto")
    for b in BACKENDS:
        if value == b:
            return b
    return "auto"


def _warn_once(key: str, message: str) -> None:
    with _warn_lock:
        if key in _warned:
            return
        _warned.add(key)
    log.warning("%s", message)


def make_pipeline(ir: Program, backend: Backend | None = None, *, seed: int | None = None) -> Any:
    """A running pipeline for `ir` on the chosen back end (default: `default_backend()`).
    Both kinds offer the same packet interface (`process`, `process_batch`, `run_batch`,
    `stats`, `take_digests`) and the control surface of `control.PipelineControl`."""
    choice = backend or default_backend()
    if choice not in BACKENDS:
        raise PipelineError(f"unknown backend {choice!r} (choose from {', '.join(BACKENDS)})")
    if choice == "python":
        from p4reduce.softswitch.runtime.pipeline import Pipeline

        return Pipeline(ir, seed=seed)
    from p4reduce.softswitch.runtime.native.cgen import NativeUnsupported
    from p4reduce.softswitch.runtime.native.pipeline import NativePipeline

    try:
        return NativePipeline(ir, seed=seed)
    except native.NativeUnavailable as exc:
        if choice == "native":
            raise PipelineError(f"the native backend is unavailable: {exc}") from None
        _warn_once("unavailable", f"native backend unavailable ({exc}); running the Python backend")
    except NativeUnsupported as exc:
        if choice == "native":
            raise PipelineError(f"the native backend cannot run this program: {exc}") from None
        _warn_once(f"unsupported:{exc}", f"the native backend cannot run this program ({exc}); "
                   "running it on the Python backend")
    from p4reduce.softswitch.runtime.pipeline import Pipeline

    return Pipeline(ir, seed=seed)
