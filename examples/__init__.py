"""Runnable examples and example topologies, installed with p4reduce.

`python -m p4reduce.examples.train_ddp` (or `torchrun ... -m p4reduce.examples.train_ddp`)
runs the DDP example from any directory; `p4reduce examples [DIR]` copies the example and
the topologies into a folder of your own to read and edit. The topologies are controller
hosts files (`controller/topology.py` describes the format):

- `loopback.yaml`: four ranks on one machine, each behind a UDP tunnel port of softswitch
  (127.0.0.1:9001..9004). It is the default of `p4reduce-ctl serve --topology` and of a
  rank that is given no topology or address, so the three commands of the README need no
  file at all.
- `star.yaml`: four hosts on their own switch ports (Mininet's star, `make run`).
- `twotier.yaml`: four hosts under two leaves: hosts of a leaf share the spine's port to it.
"""

from __future__ import annotations

from pathlib import Path

#: the folder holding this package's example scripts
EXAMPLES_DIR = Path(__file__).resolve().parent
#: the shipped controller topologies, by name (file stem)
TOPOLOGIES_DIR = EXAMPLES_DIR / "topologies"
#: the default topology of `p4reduce-ctl serve` and of ranks given no address
LOOPBACK_TOPOLOGY = TOPOLOGIES_DIR / "loopback.yaml"


def topologies() -> dict[str, Path]:
    """Every shipped topology by name: loopback, star, twotier."""
    return {p.stem: p for p in sorted(TOPOLOGIES_DIR.glob("*.yaml"))}
