"""Running the P4Runtime service on a gRPC server, in-process (tests, demo) or from the CLI."""

from __future__ import annotations

from concurrent import futures
from dataclasses import dataclass

import grpc
from finsy.proto import p4r_grpc

from p4reduce.softswitch.p4runtime.pipeline_config import PipelineFactory
from p4reduce.softswitch.p4runtime.service import DeviceLike, P4RuntimeService


@dataclass
class RunningServer:
    """A started server: `address` is the real host:port (after binding port 0)."""

    address: str
    service: P4RuntimeService
    grpc_server: grpc.Server

    def stop(self, grace: float = 0.5) -> None:
        self.grpc_server.stop(grace).wait()
        self.service.close()

    def wait(self) -> None:
        self.grpc_server.wait_for_termination()


def serve(
    device: DeviceLike,
    address: str = "127.0.0.1:0",
    *,
    factory: PipelineFactory | None = None,
    max_workers: int = 48,
) -> RunningServer:
    """Start serving `device`; raises OSError if the address cannot be bound."""
    service = P4RuntimeService(device, factory)
    # Each open StreamChannel holds a worker thread: the pool must exceed MAX_CONNECTIONS.
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="p4rt"),
        # as PI: pipeline configs and big batches exceed gRPC's 4 MB default
        options=[("grpc.max_receive_message_length", 256 * 1024 * 1024)],
    )
    p4r_grpc.add_P4RuntimeServicer_to_server(service, server)
    try:
        port = server.add_insecure_port(address)
    except RuntimeError as exc:
        service.close()
        raise OSError(f"cannot listen on {address}: {exc}") from None
    if port == 0:
        service.close()
        raise OSError(f"cannot listen on {address}")
    server.start()
    host = address.rsplit(":", 1)[0]
    return RunningServer(f"{host}:{port}", service, server)
