"""gRPC status errors as the PI library (BMv2's P4Runtime server) reports them.

Every failure inside the server is a `P4RTError` carrying a canonical gRPC code, so the
service layer has a single place that turns problems into statuses and no request can
escape as a Python traceback. Runtime `ControlError`s are mapped by class, never by
their message text.
"""

from __future__ import annotations

import grpc

from p4reduce.softswitch.runtime.control import (
    AlreadyExistsError,
    ControlError,
    InvalidArgumentError,
    NotFoundError,
    ResourceExhaustedError,
)


class P4RTError(Exception):
    """A request-level failure with the gRPC status code a client should see."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def invalid(message: str) -> P4RTError:
    return P4RTError(grpc.StatusCode.INVALID_ARGUMENT, message)


def not_found(message: str) -> P4RTError:
    return P4RTError(grpc.StatusCode.NOT_FOUND, message)


def already_exists(message: str) -> P4RTError:
    return P4RTError(grpc.StatusCode.ALREADY_EXISTS, message)


def unimplemented(message: str) -> P4RTError:
    return P4RTError(grpc.StatusCode.UNIMPLEMENTED, message)


NO_PIPELINE_MESSAGE = "No forwarding pipeline config set for this device"


def no_pipeline() -> P4RTError:
    """The message matches PI's wording, which clients (finsy) recognise by regex."""
    return P4RTError(grpc.StatusCode.FAILED_PRECONDITION, NO_PIPELINE_MESSAGE)


_CONTROL_CODES: tuple[tuple[type[ControlError], grpc.StatusCode], ...] = (
    (NotFoundError, grpc.StatusCode.NOT_FOUND),
    (AlreadyExistsError, grpc.StatusCode.ALREADY_EXISTS),
    (InvalidArgumentError, grpc.StatusCode.INVALID_ARGUMENT),
    (ResourceExhaustedError, grpc.StatusCode.RESOURCE_EXHAUSTED),
)


def from_control(err: ControlError) -> P4RTError:
    """Translate a runtime error; an unclassified ControlError is an INTERNAL bug."""
    for cls, code in _CONTROL_CODES:
        if isinstance(err, cls):
            return P4RTError(code, str(err))
    return P4RTError(grpc.StatusCode.INTERNAL, str(err))
