"""The softswitch v1model runtime: runs the compiler's JSON IR (docs/IR.md) as BMv2's
simple_switch would, behind the control surface of `control.py`.

Modules, one job each:
- `layout`: every scalar of a packet gets a fixed index in one flat list.
- `codegen`: IR to Python source (parser states, controls, actions, tables, the
  per-packet fast path); `vectorize`: same-shaped lane runs as numpy operations, the
  register storage (2-D arrays for lane groups) and packed header fields (a lane run's
  fields kept as one array per packet, parsed and emitted without per-field ints).
- `tables`: entry validation and lookup structures; `entries`: IR const entries.
- `pipeline`: `Pipeline`, the traffic manager (clone, digest, resubmit, multicast, drop,
  recirculate in BMv2's order) and the control surface.
- `hashing`: BMv2's hash and checksum algorithms.
- `ports`, `device`: UDP tunnel / AF_PACKET / memory ports, fault injection, `Device`
  (one epoll loop draining every socket port without blocking).
"""

from p4reduce.softswitch.runtime.control import DigestMessage
from p4reduce.softswitch.runtime.device import Device
from p4reduce.softswitch.runtime.errors import PipelineError
from p4reduce.softswitch.runtime.pipeline import Pipeline
from p4reduce.softswitch.runtime.ports import MemoryPort, Port, PortSpecError, parse_port_spec

__all__ = ["Device", "DigestMessage", "MemoryPort", "Pipeline", "PipelineError", "Port",
           "PortSpecError", "parse_port_spec"]
