"""The P4 sources of the aggregation pipeline, installed as package data.

This file only locates them, so that an installed p4reduce compiles its own pipeline from
any directory (`p4reduce-ctl serve` and `p4reduce-switch` with no path arguments).
"""

from pathlib import Path

#: the folder holding `aggregator.p4` and the files it includes
P4SRC_DIR = Path(__file__).resolve().parent
#: the program every switch of a p4reduce network runs
AGGREGATOR_P4 = P4SRC_DIR / "aggregator.p4"
