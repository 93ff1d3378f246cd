"""Target of the `torch.backends` entry point: runs inside `import torch`, so it must be cheap."""

from __future__ import annotations


def register() -> None:
    """Register the "p4reduce" backend name; the backend's heavy parts load on first use."""
    from worker.torch.backend import register as _register

    _register()
