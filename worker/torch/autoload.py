"""Target of the `torch.backends` entry point: runs inside every `import torch` of the venv.

It must be cheap and must never make `import torch` fail: torch turns an exception here
into a RuntimeError for every torch user, so a broken install only warns, and
`init_process_group(backend="p4reduce")` then says the backend is unknown.
"""

from __future__ import annotations

import sys
import warnings

_BACKEND = "p4reduce.worker.torch.backend"


def register() -> None:
    """Register the "p4reduce" backend name; the switch machinery loads on first use."""
    mod = sys.modules.get(_BACKEND)
    if mod is not None and not hasattr(mod, "register"):
        # `import p4reduce.worker.torch` came first: its backend module is importing torch,
        # which runs this entry point; the package registers once that import completes.
        return
    try:
        from p4reduce.worker.torch.backend import register as _register

        _register()
    except Exception as e:  # never break `import torch` for everyone
        warnings.warn(f"p4reduce: torch backend not registered: {type(e).__name__}: {e}",
                      RuntimeWarning, stacklevel=2)
