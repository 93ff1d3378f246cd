"""P4Runtime server of softswitch, compatible with BMv2's simple_switch_grpc (PI).

`serve(device, "127.0.0.1:0")` starts it in-process; `p4reduce-switch` runs it as a
program. The device config is the softswitch JSON IR, as BMv2's is p4c's JSON.
"""

from softswitch.p4runtime.server import RunningServer, serve
from softswitch.p4runtime.service import P4RUNTIME_API_VERSION, P4RuntimeService

__all__ = ["P4RUNTIME_API_VERSION", "P4RuntimeService", "RunningServer", "serve"]
