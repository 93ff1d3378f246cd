"""The IR constructs the front end accepts and the runtime cannot execute yet.

The compiler gives p4c's P4Info for more of P4 than the runtime runs (docs/IR.md, "What
the runtime does not execute yet"). A program using such a construct must be refused when
a pipeline is built, by both back ends alike, with one line naming the construct: running
a parser value set as if it matched everything, an action profile's table as a direct
table, or a meter as always GREEN, would forward packets wrongly and say nothing.
"""

from __future__ import annotations

from p4reduce.softswitch.p4.ir import Program
from p4reduce.softswitch.runtime.errors import PipelineError

__all__ = ["refuse_unexecutable"]


def refuse_unexecutable(ir: Program) -> None:
    """Raise PipelineError for the first construct of `ir` the runtime cannot execute."""
    for vs in ir.get("value_sets") or []:
        raise PipelineError(
            f"not supported by the softswitch runtime: parser value set {vs.get('name')!r} "
            "(p4c and BMv2 run it)")
    for meter in [*(ir.get("meters") or []), *(ir.get("direct_meters") or [])]:
        # a meter that always answers GREEN forwards what a rate limit would drop
        raise PipelineError(
            f"not supported by the softswitch runtime: meter {meter.get('name')!r} "
            "(p4c and BMv2 run it)")
    for table in ir.get("tables") or []:
        impl = table.get("implementation")
        if impl:
            raise PipelineError(
                f"not supported by the softswitch runtime: table {table.get('name')!r} "
                f"uses action profile or selector {impl!r} (p4c and BMv2 run it)")
        for key in table.get("keys") or []:
            if key.get("match_kind") == "selector":
                raise PipelineError(
                    f"not supported by the softswitch runtime: table {table.get('name')!r} "
                    f"has a selector key {key.get('name')!r} (p4c and BMv2 run it)")
