"""Target of the `torch.backends` entry point: runs inside every `import torch` of the venv.

It must be cheap and must never make `import torch` fail: torch turns an exception here
into a RuntimeError for every torch user, so a broken install only warns, and
`init_process_group(backend="p4reduce")` then says the backend is unknown.
"""

from __future__ import annotations

import warnings


def register() -> None:
    """Register the "p4reduce" backend name; the switch machinery loads on first use."""
    try:
        from worker.torch.backend import register as _register

        _register()
    except Exception as e:  # never break `import torch` for everyone
        warnings.warn(f"p4reduce: torch backend not registered: {type(e).__name__}: {e}",
                      RuntimeWarning, stacklevel=2)
