"""Controller errors, each carrying the gRPC status code the API answers with.

Job logic raises these; the API layer turns them into statuses in one place, and the
CLI turns statuses into exit code 1 with the message, so bad input never shows a traceback.
"""

from __future__ import annotations

import grpc


class ControllerError(Exception):
    code: grpc.StatusCode = grpc.StatusCode.FAILED_PRECONDITION

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(ControllerError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(ControllerError):
    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(ControllerError):
    code = grpc.StatusCode.ALREADY_EXISTS


class Exhausted(ControllerError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class NotPrimary(ControllerError):
    """This controller is a backup P4Runtime client: it may read but never write."""

    code = grpc.StatusCode.FAILED_PRECONDITION


class Timeout(ControllerError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED


class SwitchError(ControllerError):
    code = grpc.StatusCode.UNAVAILABLE
