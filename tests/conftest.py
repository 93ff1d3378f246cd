"""The suite's layout, for pytest and for readers.

Tests are grouped by the part they exercise: `softswitch/` (compiler, runtime, P4Runtime
server), `pipeline/` (the P4 program, on every target), `controller/`, `worker/`, and
`e2e/` (several processes together: torch jobs, demos, Mininet). Helpers they share are
modules of `tests/support/` and `tests/pipeline/`, imported as `tests.…`; fixtures shared
by one group live in that group's conftest.py.
"""
