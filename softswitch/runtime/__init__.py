"""The softswitch v1model runtime: runs the compiler's JSON IR (docs/IR.md) as BMv2's
simple_switch would, behind the control surface of `control.py`."""

from .control import DigestMessage
from .device import Device
from .errors import PipelineError
from .pipeline import Pipeline
from .ports import MemoryPort, Port, PortSpecError, parse_port_spec

__all__ = ["Device", "DigestMessage", "MemoryPort", "Pipeline", "PipelineError", "Port",
           "PortSpecError", "parse_port_spec"]
