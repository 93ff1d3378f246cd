"""torch.distributed backend "p4reduce" and a DDP communication hook (needs torch).

`import worker` never imports torch; this package does. torch runs `autoload.register`
through the `torch.backends` entry point during `import torch`, so
`init_process_group(backend="p4reduce")` works without importing anything of ours. The
parts that pull in gRPC (engine, hook) load on first attribute access, to keep that cheap.
"""

from typing import Any

from p4reduce.worker.torch.backend import BACKEND_NAME, FutureWork, P4ReduceProcessGroup, register
from p4reduce.worker.torch.config import ConfigError, RankConfig, from_env

_LAZY = {
    "BackendError": "p4reduce.worker.torch.engine",
    "SwitchEngine": "p4reduce.worker.torch.engine",
    "HookState": "p4reduce.worker.torch.hook",
    "allreduce_hook": "p4reduce.worker.torch.hook",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'p4reduce.worker.torch' has no attribute {name!r}")


register()

__all__ = [
    "BACKEND_NAME",
    "BackendError",
    "ConfigError",
    "FutureWork",
    "HookState",
    "P4ReduceProcessGroup",
    "RankConfig",
    "SwitchEngine",
    "allreduce_hook",
    "from_env",
    "register",
]
