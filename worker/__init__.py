"""p4reduce.worker: the host side of p4reduce (quantization, packets, streaming, torch backend).

The public names load on first use, so that `import p4reduce.worker.wire` (or anything
else small under this package) does not pull in numpy, ml_dtypes and the socket layer.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from p4reduce.worker.communicator import Communicator
    from p4reduce.worker.errors import (
        AllreduceError,
        AllreduceTimeout,
        CommunicatorBroken,
        NonFiniteError,
    )
    from p4reduce.worker.job import JobSpec
    from p4reduce.worker.stats import CallStats

_LAZY = {
    "Communicator": "p4reduce.worker.communicator",
    "AllreduceError": "p4reduce.worker.errors",
    "AllreduceTimeout": "p4reduce.worker.errors",
    "CommunicatorBroken": "p4reduce.worker.errors",
    "NonFiniteError": "p4reduce.worker.errors",
    "JobSpec": "p4reduce.worker.job",
    "CallStats": "p4reduce.worker.stats",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'p4reduce.worker' has no attribute {name!r}")


__all__ = [
    "AllreduceError",
    "AllreduceTimeout",
    "CallStats",
    "Communicator",
    "CommunicatorBroken",
    "JobSpec",
    "NonFiniteError",
]
