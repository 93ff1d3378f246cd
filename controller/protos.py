"""The controller API's message classes and stubs, generated in memory at import time.

No stubs are committed and there is no build step: `grpc.protos_and_services` compiles
`proto/p4reduce_controller.proto` with grpcio-tools (a runtime dependency) when this module
is first imported. Other modules take `pb` (messages) and `svc` (stub, servicer,
registration function) from here.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import grpc

_DIR = Path(__file__).resolve().parent / "proto"
_NAME = "p4reduce_controller.proto"


def _load() -> tuple[Any, Any]:
    # protos_and_services resolves the file against sys.path entries.
    if str(_DIR) not in sys.path:
        sys.path.append(str(_DIR))
    return grpc.protos_and_services(_NAME)  # type: ignore[no-any-return]


pb, svc = _load()
