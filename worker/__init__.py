"""worker: the host side of p4reduce (quantization, packets, streaming, torch backend)."""

from p4reduce.worker.communicator import Communicator
from p4reduce.worker.errors import AllreduceError, AllreduceTimeout, CommunicatorBroken, NonFiniteError
from p4reduce.worker.job import JobSpec
from p4reduce.worker.stats import CallStats

__all__ = [
    "AllreduceError",
    "AllreduceTimeout",
    "CallStats",
    "Communicator",
    "CommunicatorBroken",
    "JobSpec",
    "NonFiniteError",
]
