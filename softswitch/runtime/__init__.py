"""The softswitch v1model runtime: runs the compiler's JSON IR (docs/IR.md) as BMv2's
simple_switch would, behind the control surface of `control.py`, on one of two back
ends chosen by `backend.make_pipeline` (auto: native where a C compiler exists).

Modules, one job each:
- `layout`: every scalar of a packet gets a fixed index in one flat list; `frame`: the
  layout and numbering of one program, shared by both generators.
- `runs`: decisions made once on the IR for both back ends: vector runs of same-shaped
  lane statements, register lane groups, live actions, packed header fields.
- `codegen`: IR to Python source (parser states, controls, actions, tables, the
  per-packet fast path); `vectorize`: the Python back end's numpy code for the runs and
  its register storage.
- `native/`: the native back end: `cgen` (IR to C, `cruns` the runs as loops), `c/*.c`
  (tables, traffic manager, port engine), `pipeline` (`NativePipeline`), `engine` (the C
  port loop for a Device's socket ports).
- `tables`: entry validation and the lookup indexes, changed entry by entry;
  `table_setup`: a table of the IR for either back end; `entries`: IR const entries.
- `pipeline`: `Pipeline` (the Python back end), the traffic manager (clone, digest,
  resubmit, multicast, drop, recirculate in BMv2's order) and the control surface.
- `backend`: choosing a back end; `batch`: frames for the batch packet API.
- `hashing`: BMv2's hash and checksum algorithms.
- `ports`, `device`: UDP tunnel / AF_PACKET / memory ports, fault injection, `Device`
  (socket ports served by the C engine with a native pipeline, else by one Python epoll
  loop).
"""

from p4reduce.softswitch.runtime.backend import make_pipeline
from p4reduce.softswitch.runtime.control import DigestMessage
from p4reduce.softswitch.runtime.device import Device
from p4reduce.softswitch.runtime.errors import PipelineError
from p4reduce.softswitch.runtime.pipeline import Pipeline
from p4reduce.softswitch.runtime.ports import MemoryPort, Port, PortSpecError, parse_port_spec

__all__ = ["Device", "DigestMessage", "MemoryPort", "Pipeline", "PipelineError", "Port",
           "PortSpecError", "make_pipeline", "parse_port_spec"]
