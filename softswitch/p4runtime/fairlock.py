"""A re-entrant lock that is handed over in arrival order.

The service applies a long Write in chunks, releasing its lock between them so other
calls are answered meanwhile. With an ordinary lock the writer, which never waits for
anything else, would usually take it straight back; here a call that queued during a
chunk is served before the writer's next chunk.
"""

from __future__ import annotations

import threading
from types import TracebackType


class FairLock:
    def __init__(self) -> None:
        self._cv = threading.Condition(threading.Lock())
        self._next = 0  # the ticket the next new holder draws
        self._serving = 0  # the ticket whose turn it is
        self._owner: int | None = None
        self._depth = 0

    def acquire(self) -> None:
        me = threading.get_ident()
        with self._cv:
            if self._owner == me:
                self._depth += 1
                return
            ticket = self._next
            self._next += 1
            while ticket != self._serving or self._owner is not None:
                self._cv.wait()
            self._owner = me
            self._depth = 1

    def release(self) -> None:
        with self._cv:
            if self._owner != threading.get_ident():
                raise RuntimeError("release of a FairLock not held by this thread")
            self._depth -= 1
            if self._depth == 0:
                self._owner = None
                self._serving += 1
                self._cv.notify_all()

    def __enter__(self) -> FairLock:
        self.acquire()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()
