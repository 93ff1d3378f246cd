"""Persistent controller state in SQLite (WAL), the source of truth across restarts.

The switch's tables are a cache of this database: after a crash the controller rebuilds
its allocator from here and reconciles the switch against it. Every change runs inside
`transaction()`, and the switch is written before the commit, so a failed switch write
rolls the database back and the request changes nothing.
"""

from __future__ import annotations

import secrets
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from p4reduce import contract as n
from p4reduce.controller.errors import InvalidArgument

#: width of the allocation epoch, as the jobs table's set_job action carries it
EPOCH_BITS = next(p.bits for p in n.ACTION_SET_JOB.params if p.name == "epoch")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    world_size INTEGER NOT NULL,
    base INTEGER NOT NULL,
    count INTEGER NOT NULL,
    epoch INTEGER NOT NULL,
    created REAL NOT NULL,
    lease_until REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS members (
    job_id INTEGER NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    rank INTEGER NOT NULL,
    mac INTEGER NOT NULL,
    ipv4 INTEGER NOT NULL,
    udp_port INTEGER NOT NULL,
    switch_port INTEGER NOT NULL,
    joined REAL NOT NULL,
    PRIMARY KEY (job_id, rank)
);
"""


@dataclass(frozen=True)
class Member:
    job_id: int
    rank: int
    mac: int
    ipv4: int
    udp_port: int
    switch_port: int
    joined: float


@dataclass(frozen=True)
class Job:
    id: int
    name: str
    world_size: int
    base: int
    count: int
    epoch: int
    created: float
    lease_until: float

    @property
    def host_only(self) -> bool:
        """A job the switch had no room for: no slots, no switch entries; its ranks
        reduce on the hosts (gloo). Its id is HOST_ONLY_FIRST_ID or above."""
        return self.count == 0


#: ids of host-only jobs start here, beyond any switch job id (16-bit job_id field)
HOST_ONLY_FIRST_ID = 1 << 16


class Store:
    def __init__(self, path: Path | str) -> None:
        self.path = str(path)
        self._lock = threading.RLock()
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._db.executescript(_SCHEMA)
        except sqlite3.Error as e:  # a missing folder, a file that is not a database, ...
            raise InvalidArgument(f"cannot use state file {self.path}: {e}") from None

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    # identity --------------------------------------------------------------------------
    def owner_id(self) -> int:
        """A random number made once per state file: the controller tags its job entries
        on the switch with it, so a controller started with another state file can tell
        that the switch runs jobs that are not its own."""
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE key='owner'").fetchone()
            if row:
                return int(row[0])
            value = secrets.randbits(62) | 1
            self._db.execute("INSERT OR IGNORE INTO meta(key, value) VALUES('owner', ?)", (value,))
            row = self._db.execute("SELECT value FROM meta WHERE key='owner'").fetchone()
            return int(row[0])

    # epoch counter -------------------------------------------------------------------
    def next_epoch(self) -> int:
        """1..2^24-1, never 0 (registers start zeroed, so epoch 0 would match fresh state)
        and never one a live job holds (the counter wraps after 16M allocations)."""
        row = self._db.execute("SELECT value FROM meta WHERE key='epoch'").fetchone()
        current = int(row[0]) if row else 0
        live = {int(r[0]) for r in self._db.execute("SELECT epoch FROM jobs")}
        nxt = current
        while True:
            nxt = nxt % ((1 << EPOCH_BITS) - 1) + 1
            if nxt not in live:
                break
        self._db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES('epoch', ?)", (nxt,))
        return nxt

    # jobs ----------------------------------------------------------------------------
    def jobs(self) -> list[Job]:
        rows = self._db.execute("SELECT * FROM jobs ORDER BY id").fetchall()
        return [Job(*r) for r in rows]

    def job_by_name(self, name: str) -> Job | None:
        r = self._db.execute("SELECT * FROM jobs WHERE name=?", (name,)).fetchone()
        return Job(*r) if r else None

    def add_job(self, job: Job) -> None:
        self._db.execute(
            "INSERT INTO jobs VALUES (?,?,?,?,?,?,?,?)",
            (
                job.id,
                job.name,
                job.world_size,
                job.base,
                job.count,
                job.epoch,
                job.created,
                job.lease_until,
            ),
        )

    def renew(self, job_id: int, lease_until: float) -> None:
        self._db.execute("UPDATE jobs SET lease_until=? WHERE id=?", (lease_until, job_id))

    def relocate(self, job_id: int, base: int, epoch: int) -> None:
        self._db.execute("UPDATE jobs SET base=?, epoch=? WHERE id=?", (base, epoch, job_id))

    def delete_job(self, job_id: int) -> None:
        self._db.execute("DELETE FROM members WHERE job_id=?", (job_id,))
        self._db.execute("DELETE FROM jobs WHERE id=?", (job_id,))

    # members -------------------------------------------------------------------------
    def members(self, job_id: int | None = None) -> list[Member]:
        if job_id is None:
            rows = self._db.execute("SELECT * FROM members ORDER BY job_id, rank").fetchall()
        else:
            rows = self._db.execute(
                "SELECT * FROM members WHERE job_id=? ORDER BY rank", (job_id,)
            ).fetchall()
        return [Member(*r) for r in rows]

    def add_member(self, m: Member) -> None:
        self._db.execute(
            "INSERT INTO members VALUES (?,?,?,?,?,?,?)",
            (m.job_id, m.rank, m.mac, m.ipv4, m.udp_port, m.switch_port, m.joined),
        )

    def remove_member(self, job_id: int, rank: int) -> None:
        self._db.execute("DELETE FROM members WHERE job_id=? AND rank=?", (job_id, rank))
