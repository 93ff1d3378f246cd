"""worker: the host side of p4reduce (quantization, packets, streaming, torch backend)."""

from worker.communicator import Communicator
from worker.errors import AllreduceError, AllreduceTimeout, CommunicatorBroken, NonFiniteError
from worker.job import JobSpec
from worker.stats import CallStats

__all__ = [
    "AllreduceError",
    "AllreduceTimeout",
    "CallStats",
    "Communicator",
    "CommunicatorBroken",
    "JobSpec",
    "NonFiniteError",
]
