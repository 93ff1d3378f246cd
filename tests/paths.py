"""Where things are, for tests that read project files or start project scripts."""

from pathlib import Path

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
#: P4 programs of the compiler's corpora (good/ compiles, bad/ is refused)
P4_CORPUS = TESTS / "p4"
#: reference outputs (P4Info text of p4c) the emitters are compared with
DATA = TESTS / "data"
