"""P4Runtime server of softswitch, compatible with BMv2's simple_switch_grpc (PI).

`serve(device, "127.0.0.1:0")` starts it in-process; `p4reduce-switch` runs it as a
program. The device config is the softswitch JSON IR, as BMv2's is p4c's JSON.

Where it knowingly differs from PI, and why:
- registers can be read and written (MODIFY) over P4Runtime: an extension BMv2 lacks,
  useful for tests; the controller must not depend on it (docs/DESIGN.md section 6);
- a request for another device id fails with NOT_FOUND, where PI creates an empty device
  and answers FAILED_PRECONDITION: one switch process serves one device here;
- DigestLists are sent as digests appear (grouped up to max_list_size per 20 ms poll)
  and never held back waiting for acks;
- RECONCILE_AND_COMMIT carries over entries of tables whose key layout is unchanged,
  multicast groups and clone sessions; anything else fails the request whole;
- action profiles, meters, value sets and idle timeouts are not supported (UNIMPLEMENTED;
  wildcard reads of them return nothing).
"""

from p4reduce.softswitch.p4runtime.server import RunningServer, serve
from p4reduce.softswitch.p4runtime.service import P4RUNTIME_API_VERSION, P4RuntimeService

__all__ = ["P4RUNTIME_API_VERSION", "P4RuntimeService", "RunningServer", "serve"]
