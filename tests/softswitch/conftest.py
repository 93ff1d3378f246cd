"""Fixtures shared by the softswitch tests."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest
from finsy.proto import p4r_grpc

from p4reduce.softswitch.p4runtime.server import RunningServer
from tests.support.backends import BACKENDS, skip_unless_available


@pytest.fixture
def stub(server: RunningServer) -> Iterator[p4r_grpc.P4RuntimeStub]:
    """A P4Runtime client stub connected to the test's `server` fixture."""
    with grpc.insecure_channel(server.address) as ch:
        yield p4r_grpc.P4RuntimeStub(ch)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """Each softswitch back end in turn (tests/support/backends.py)."""
    skip_unless_available(request.param)
    return str(request.param)
