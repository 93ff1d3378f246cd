"""Loading a ForwardingPipelineConfig: P4Info plus the compiler's JSON IR as device config.

Kept apart from the service so VERIFY can build and check a pipeline without touching the
device, and so tests can substitute the pipeline factory.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

from finsy.proto import p4r

from p4reduce.softswitch.p4.ir import Program
from p4reduce.softswitch.p4runtime.errors import P4RTError, invalid
from p4reduce.softswitch.p4runtime.p4info_check import check as check_p4info
from p4reduce.softswitch.p4runtime.schema import Schema, build_schema
from p4reduce.softswitch.runtime.control import PipelineControl

PipelineFactory = Callable[[dict[str, Any]], PipelineControl]


def default_factory(ir: dict[str, Any]) -> PipelineControl:
    """The runtime's pipeline on the default back end (`$P4REDUCE_BACKEND`, else auto),
    imported late: the runtime is optional here."""
    from p4reduce.softswitch.runtime.backend import make_pipeline

    pipe: PipelineControl = make_pipeline(cast(Program, ir))
    return pipe


@dataclass
class Loaded:
    config: p4r.ForwardingPipelineConfig
    schema: Schema
    pipeline: PipelineControl
    # TableEntry.metadata (opaque controller cookies) by (table, keys, priority): the
    # runtime has no place for it, and PI returns it on reads, so the server keeps it.
    entry_metadata: dict[tuple[str, tuple[Any, ...], int], bytes] = field(default_factory=dict)


def load(config: p4r.ForwardingPipelineConfig, factory: PipelineFactory) -> Loaded:
    """Validate and instantiate; every failure is INVALID_ARGUMENT with the reason."""
    if not config.HasField("p4info"):
        raise invalid("ForwardingPipelineConfig has no p4info")
    if not config.p4_device_config:
        raise invalid("ForwardingPipelineConfig has no p4_device_config (the softswitch IR)")
    try:
        ir = json.loads(config.p4_device_config)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise invalid(f"p4_device_config is not the softswitch JSON IR: {exc}") from None
    except RecursionError:
        raise invalid("p4_device_config is not the softswitch JSON IR: nested too deeply") from None
    if not isinstance(ir, dict):
        raise invalid("p4_device_config is not the softswitch JSON IR: not a JSON object")
    try:
        schema = build_schema(config.p4info)
    except P4RTError:
        raise
    except Exception as exc:  # any malformed P4Info is the client's error, not a crash
        raise invalid(f"inconsistent P4Info: {exc!r}") from None
    if "ir_version" in ir:  # the softswitch IR: the P4Info it implies is known exactly
        check_p4info(config.p4info, _implied_p4info(ir))
    try:
        pipe = factory(ir)
    except Exception as exc:  # the runtime may reject the IR with any error type
        raise invalid(f"cannot load device config: {exc}") from None
    known = set(pipe.table_names())
    missing = sorted(set(schema.tables_by_name) - known)
    if missing:
        raise invalid(f"P4Info tables not in the device config: {', '.join(missing)}")
    if not schema.tables_by_name and known:
        raise invalid("the P4Info describes none of the device config's tables "
                      f"({', '.join(sorted(known)[:3])}...)")
    return Loaded(config, schema, pipe)


def _implied_p4info(ir: dict[str, Any]) -> Any:
    """The P4Info the compiler emits for this IR (the reference a push is checked with)."""
    from p4reduce.softswitch.p4.p4info import P4InfoError, emit

    try:
        return emit(ir)
    except (P4InfoError, RecursionError) as exc:
        raise invalid(f"cannot load device config: {exc}") from None
