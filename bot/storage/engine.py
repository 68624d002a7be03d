"""The SQLite engine: connections, the cross-process write lock, checkpoints, transactions.

All processes (gunicorn workers, the CLI) share one database file in WAL mode; writes that
read before they write take the lock up front (BEGIN IMMEDIATE) so concurrent workers
queue instead of failing. Each domain verb commits its own writes, except inside
transaction(), which commits everything a message wrote at once.
"""
from __future__ import annotations

import contextlib
import fcntl
import itertools
import os
import re
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlite_utils import Database

# Statements that write, or open a transaction that will (BEGIN).
_WRITES = re.compile(r"\s*(INSERT|UPDATE|DELETE|REPLACE|BEGIN|CREATE|DROP|ALTER)\b",
                     re.IGNORECASE)


LOCK_TIMEOUT = 30.0  # seconds, as SQLite's busy_timeout below


WAL_SIZE_LIMIT = 64 * 1024 * 1024  # bytes the WAL file is cut back to once checkpointed


WAL_RESTART_PAGES = 4000  # 16 MB of 4 KiB pages
_savepoints = itertools.count()


class _WriteLock:
    """One writer at a time across this process's threads and all processes on the file.

    Writers queue here before SQLite sees them: a blocked writer sleeps in the kernel and
    wakes the moment the lock is free, where SQLite's busy handler polls, sleeping 1, 2,
    5, 10, … ms, which under load cost tens of milliseconds per message. SQLite's own
    locking still guards against any writer that bypasses this.
    """

    def __init__(self, path: Path) -> None:
        self._path = path
        self._thread = threading.RLock()
        self._depth = 0
        self._file: tuple[int, Any] | None = None  # (pid, open file): forks need their own

    def acquire(self) -> None:
        if not self._thread.acquire(timeout=LOCK_TIMEOUT):
            raise sqlite3.OperationalError("database is locked (waited for another thread)")
        try:
            if self._depth == 0:
                # No time limit here: the kernel drops the lock of a process that dies,
                # and a live holder is inside a short SQLite write transaction.
                fcntl.flock(self._lock_file(), fcntl.LOCK_EX)
        except BaseException:
            self._thread.release()
            raise
        self._depth += 1

    def release(self) -> None:
        self._depth -= 1
        if self._depth == 0:
            fcntl.flock(self._lock_file(), fcntl.LOCK_UN)
        self._thread.release()

    def _lock_file(self) -> Any:
        if self._file is None or self._file[0] != os.getpid():
            self._file = (os.getpid(), open(self._path, "a", opener=private_opener))
        return self._file[1]


_write_locks: dict[str, _WriteLock] = {}


_write_locks_guard = threading.Lock()


def _write_lock(path: Path) -> _WriteLock:
    key = str(path.resolve())
    with _write_locks_guard:
        if key not in _write_locks:
            _write_locks[key] = _WriteLock(path.with_name(path.name + ".writer"))
        return _write_locks[key]


class _Connection(sqlite3.Connection):
    """A connection that queues for the write lock before its first write, and knows
    whether a transaction() is open on it."""
    batched = False
    write_lock: _WriteLock | None = None
    _holding = False

    def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:
        self._before(sql)
        try:
            return super().execute(sql, parameters)
        finally:
            self._after()

    def executemany(self, sql: str, parameters: Any, /) -> sqlite3.Cursor:
        self._before(sql)
        try:
            return super().executemany(sql, parameters)
        finally:
            self._after()

    def commit(self) -> None:
        try:
            super().commit()
        finally:
            self._after()

    def rollback(self) -> None:
        try:
            super().rollback()
        finally:
            self._after()

    def __exit__(self, *exc_info: Any) -> Any:  # `with conn:` commits without calling commit()
        try:
            return super().__exit__(*exc_info)
        finally:
            self._after()

    def _before(self, sql: str) -> None:
        if not self._holding and self.write_lock is not None and _WRITES.match(sql):
            self.write_lock.acquire()
            self._holding = True

    def _after(self) -> None:
        # Held until the transaction ends: at once for a statement in autocommit mode,
        # at COMMIT or ROLLBACK otherwise.
        if self._holding and not self.in_transaction and self.write_lock is not None:
            self._holding = False
            self.write_lock.release()


def _connection(db: Database) -> _Connection:
    conn = db.conn
    assert isinstance(conn, _Connection), "open databases with engine.connect()"
    return conn


def private_opener(path: str, flags: int) -> int:
    """For open(..., opener=): a file created owner-only (the data folder's files hold
    personal data, or reveal who wrote when)."""
    return os.open(path, flags, 0o600)


def prepare_folder(path: Path) -> None:
    """Create the database's folder owner-only, and the database file too: SQLite gives
    its -wal and -shm files the database file's mode."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not path.exists():
        os.close(private_opener(str(path), os.O_WRONLY | os.O_CREAT))


def connect(path: str | Path, autocheckpoint: bool = True) -> Database:
    """Open the database file (creating it and its folder) with settings safe for many processes.

    autocheckpoint=False leaves copying the WAL into the database to checkpoint(), called
    from a background thread: otherwise the commit that fills the WAL does it, with two
    fsyncs, while every other writer waits for it.
    """
    path = Path(path)
    prepare_folder(path)
    conn = sqlite3.connect(str(path), timeout=30, check_same_thread=False, factory=_Connection)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA busy_timeout=30000")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT}")
    if not autocheckpoint:
        conn.execute("PRAGMA wal_autocheckpoint=0")
    conn.write_lock = _write_lock(path)
    return Database(conn, execute_plugins=False)


def backup(path: Path, target: Path) -> None:
    """Copy the database into a new owner-only file, consistent as of one moment, while
    others go on writing (SQLite's backup API reads the WAL too, which a file copy misses).
    The copy is a single file: its journal mode is set back from WAL."""
    os.close(private_opener(str(target), os.O_WRONLY | os.O_CREAT | os.O_EXCL))
    source = sqlite3.connect(str(path))
    copy = sqlite3.connect(str(target))
    try:
        source.backup(copy)
        copy.execute("PRAGMA journal_mode=DELETE")
    finally:
        copy.close()
        source.close()


def checkpoint(db: Database) -> None:
    """Copy committed WAL pages into the database file.

    A passive checkpoint blocks nobody, but under steady traffic some reader always holds
    part of the WAL, so it is never started afresh and would grow without end; past
    WAL_RESTART_PAGES writers queue on the write lock while a restarting checkpoint runs.
    """
    conn = _connection(db)
    _busy, pages, _copied = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    if pages > WAL_RESTART_PAGES and conn.write_lock is not None:
        conn.write_lock.acquire()
        try:
            conn.execute("PRAGMA wal_checkpoint(RESTART)").fetchall()
        finally:
            conn.write_lock.release()


@contextlib.contextmanager
def immediate(db: Database) -> Iterator[Database]:
    """A write transaction that takes the write lock at once (read-then-write safety).

    Inside transaction() it becomes a savepoint of the open transaction, which then holds
    the write lock until that transaction commits.
    """
    conn = _connection(db)
    if not conn.batched:
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return
    if not conn.in_transaction:
        conn.execute("BEGIN IMMEDIATE")
    conn.execute("SAVEPOINT immediate")
    try:
        yield db
    except BaseException:
        conn.execute("ROLLBACK TO immediate")
        conn.execute("RELEASE immediate")
        raise
    conn.execute("RELEASE immediate")


@contextlib.contextmanager
def transaction(db: Database) -> Iterator[Database]:
    """One commit for all the writes inside (a message's state, log and reply).

    The write lock is taken by the first write, not on entry, so the reading and matching
    before it run beside other processes' writes. Not reentrant.
    """
    conn = _connection(db)
    conn.batched = True
    try:
        yield db
    except BaseException:
        conn.rollback()
        raise
    else:
        conn.commit()
    finally:
        conn.batched = False


@contextlib.contextmanager
def savepoint(db: Database) -> Iterator[Database]:
    """Writes inside roll back alone if the block raises; the enclosing transaction() goes on.

    Outside transaction() it is one. Inside it, with no write yet, no SAVEPOINT is opened:
    that would start SQLite's transaction, and its read snapshot, before the first write
    takes the write lock; everything written so far is then the block's own to roll back.
    """
    conn = _connection(db)
    if not conn.batched:
        with transaction(db):
            yield db
        return
    if not conn.in_transaction:
        try:
            yield db
        except BaseException:
            conn.rollback()
            raise
        return
    name = f"block{next(_savepoints)}"
    conn.execute(f"SAVEPOINT {name}")
    try:
        yield db
    except BaseException:
        conn.execute(f"ROLLBACK TO {name}")
        conn.execute(f"RELEASE {name}")
        raise
    conn.execute(f"RELEASE {name}")


def query(db: Database, sql: str, params: Any = ()) -> list[dict[str, Any]]:
    """Rows as dicts. sqlite-utils' query() runs each SELECT inside a savepoint, two more
    statements per read on the busiest paths."""
    cursor = db.conn.execute(sql, params)
    names = [column[0] for column in cursor.description]
    return [dict(zip(names, row)) for row in cursor]


def commit(db: Database) -> None:
    """End a verb's write: commit it, unless a transaction() commits later."""
    conn = _connection(db)
    if not conn.batched:
        conn.commit()


def inserted_id(cursor: sqlite3.Cursor) -> int:
    """The rowid an INSERT just made."""
    assert cursor.lastrowid is not None
    return cursor.lastrowid


def now() -> float:
    """Current Unix time; one place so the storage layer agrees on the clock."""
    return time.time()
