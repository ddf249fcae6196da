"""The flight recorder: execs, exits, connections and file changes in a bounded SQLite store.

SQLite in WAL mode rather than compressed segments: `sentinel timeline` and `sentinel run`
ask for a time range (one index on time; the tree is followed in memory) without
decompressing days of segments; one transaction per batch keeps writes cheap; WAL lets
those commands read while the agent writes; and it is in the standard library. Rows are
written by one thread off the event loop, a batch per transaction; past the byte or age
budget the oldest rows go first.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from sentinel.ops import metrics

log = logging.getLogger("sentinel.recorder")

DB_FILE = "recorder.db"
BATCH_MAX = 2000  # rows per transaction at most
BATCH_WAIT = 0.25  # seconds a batch may wait to fill
QUEUE_MAX = 200_000  # rows waiting for the writer; past it new rows are dropped and counted
BUDGET_EVERY = 30.0  # seconds between budget checks
ARGV_MAX_ARGS = 64
ARGV_MAX_CHARS = 4096

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY,
    time REAL NOT NULL,
    kind TEXT NOT NULL,
    pid INTEGER,
    ppid INTEGER,
    user TEXT,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_time ON events(time);
"""


@dataclass(slots=True)
class Row:
    """One recorded event: exec, exit, connect, listen, file or access."""

    time: float
    kind: str
    pid: int | None
    ppid: int | None
    user: str | None
    data: dict[str, Any]

    def to_record(self) -> dict[str, Any]:
        return {
            "time": self.time,
            "kind": self.kind,
            "pid": self.pid,
            "ppid": self.ppid,
            "user": self.user,
            **self.data,
        }


def cap_argv(argv: list[str]) -> list[str]:
    """At most ARGV_MAX_ARGS arguments and ARGV_MAX_CHARS characters in all."""
    out: list[str] = []
    left = ARGV_MAX_CHARS
    for arg in argv[:ARGV_MAX_ARGS]:
        if left <= 0:
            break
        out.append(arg[:left])
        left -= len(arg)
    return out


def db_path(state_dir: str) -> str:
    return os.path.join(state_dir, DB_FILE)


def connect(path: str) -> sqlite3.Connection:
    """Open (creating 0600) the store in WAL mode with its schema."""
    os.makedirs(os.path.dirname(path) or ".", mode=0o700, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    os.close(fd)
    db = sqlite3.connect(path, timeout=10, check_same_thread=False)
    db.execute("PRAGMA auto_vacuum = INCREMENTAL")
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = NORMAL")
    db.executescript(SCHEMA)
    return db


class Recorder:
    """Queues rows from the engine and writes them in batches from its own thread."""

    def __init__(self, path: str, max_bytes: int, max_days: float) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.max_days = max_days
        self.queue: queue.SimpleQueue[Row | threading.Event | None] = queue.SimpleQueue()
        self._wake = threading.Event()  # set by `flush`: the writer stops waiting for a batch
        self.db = connect(path)
        self.written = 0
        self.batches = 0
        self.lost = 0  # rows dropped because the queue was full
        self.evicted = 0  # rows younger than max_days removed to stay under max_bytes
        self._next_budget = 0.0
        self.thread = threading.Thread(target=self._run, name="sentinel-recorder", daemon=True)
        self.thread.start()

    def put(self, row: Row) -> None:
        """Queue one row; never blocks (a full queue drops and counts)."""
        if self.queue.qsize() >= QUEUE_MAX:
            metrics.events_dropped.labels("recorder").inc()
            self.lost += 1
            return
        self.queue.put(row)

    def flush(self, timeout: float) -> bool:
        """Wait until every row queued before now is written; False when `timeout` ran out."""
        done = threading.Event()
        self.queue.put(done)
        self._wake.set()
        return done.wait(timeout)

    def close(self, timeout: float = 5.0) -> None:
        """Write what is queued and stop the writer."""
        self.queue.put(None)
        self.thread.join(timeout)

    def _run(self) -> None:
        stop = False
        while not stop:
            first = self.queue.get()
            if first is None:
                break
            batch: list[Row] = []
            flushes: list[threading.Event] = []
            if isinstance(first, threading.Event):
                flushes.append(first)
            else:
                batch.append(first)
                if self.queue.qsize() < BATCH_MAX:  # a full batch waiting is written at once
                    self._wake.wait(BATCH_WAIT)  # else let one gather: one commit for it
            self._wake.clear()
            while len(batch) < BATCH_MAX and not flushes:
                try:
                    item = self.queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                    break
                if isinstance(item, threading.Event):
                    flushes.append(item)
                else:
                    batch.append(item)
            try:
                if batch:
                    self._write(batch)
                self._budget()
            except sqlite3.Error:
                log.exception("recorder write failed; %d events lost", len(batch))
                metrics.errors.labels("recorder").inc()
            for done in flushes:
                done.set()
        self.db.close()

    def _write(self, batch: list[Row]) -> None:
        rows = [
            (r.time, r.kind, r.pid, r.ppid, r.user, json.dumps(r.data, default=str)) for r in batch
        ]
        with self.db:  # one transaction per batch
            self.db.executemany(
                "INSERT INTO events(time, kind, pid, ppid, user, data) VALUES (?,?,?,?,?,?)", rows
            )
        self.written += len(rows)
        self.batches += 1

    def _budget(self) -> None:
        now = time.monotonic()
        if now < self._next_budget:
            return
        self._next_budget = now + BUDGET_EVERY
        self.evicted += enforce_budget(self.db, self.max_bytes, self.max_days)[1]


def used_bytes(db: sqlite3.Connection) -> int:
    page = db.execute("PRAGMA page_size").fetchone()[0]
    pages = db.execute("PRAGMA page_count").fetchone()[0]
    free = db.execute("PRAGMA freelist_count").fetchone()[0]
    return int(page * (pages - free))


def enforce_budget(db: sqlite3.Connection, max_bytes: int, max_days: float) -> tuple[int, int]:
    """Drop rows older than max_days, then the oldest tenth until under max_bytes; (rows
    dropped, of which younger than max_days: history the byte budget cut short)."""
    dropped = young = 0
    with db:
        if max_days:
            cur = db.execute("DELETE FROM events WHERE time < ?", (time.time() - max_days * 86400,))
            dropped += cur.rowcount
        while max_bytes and used_bytes(db) > max_bytes:
            count = db.execute("SELECT count(*) FROM events").fetchone()[0]
            if not count:
                break
            cut = db.execute(
                "SELECT id FROM events ORDER BY id LIMIT 1 OFFSET ?", (max(1, count // 10),)
            ).fetchone()
            if cut is None:
                cur = db.execute("DELETE FROM events")
            else:
                cur = db.execute("DELETE FROM events WHERE id < ?", (cut[0],))
            dropped += cur.rowcount
            young += cur.rowcount
    if dropped:
        db.execute("PRAGMA incremental_vacuum")
        metrics.events_dropped.labels("recorder.budget").inc(dropped)
    return dropped, young


def query(
    path: str,
    since: float = 0.0,
    until: float | None = None,
    pids: set[int] | None = None,
    user: str | None = None,
) -> Iterator[Row]:
    """Rows in time order, optionally limited to some pids or one user."""
    if not os.path.exists(path):
        return
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    try:
        sql = "SELECT time, kind, pid, ppid, user, data FROM events WHERE time >= ?"
        args: list[Any] = [since]
        if until is not None:
            sql += " AND time <= ?"
            args.append(until)
        if user is not None:
            sql += " AND user = ?"
            args.append(user)
        for t, kind, pid, ppid, usr, data in db.execute(sql + " ORDER BY time, id", args):
            if pids is not None and pid not in pids:
                continue
            yield Row(t, kind, pid, ppid, usr, json.loads(data))
    finally:
        db.close()
