"""SQLite storage: connection, migrations and every SQL statement, as domain verbs.

All processes (gunicorn workers, the CLI) share one database file in WAL mode; writes that
read before they write take the lock up front (BEGIN IMMEDIATE) so concurrent workers
queue instead of failing. Each verb commits its own writes, except inside transaction(),
which commits everything a message wrote at once.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from sqlite_utils import Database
from sqlite_utils.migrations import Migrations

migrations = Migrations("chuangyetong")


# Statements that write, or open a transaction that will (BEGIN).
_WRITES = re.compile(r"\s*(INSERT|UPDATE|DELETE|REPLACE|BEGIN|CREATE|DROP|ALTER)\b",
                     re.IGNORECASE)
LOCK_TIMEOUT = 30.0  # seconds, as SQLite's busy_timeout below
WAL_SIZE_LIMIT = 64 * 1024 * 1024  # bytes the WAL file is cut back to once checkpointed
WAL_RESTART_PAGES = 4000  # 16 MB of 4 KiB pages


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
            self._file = (os.getpid(), open(self._path, "a"))
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
        if self._holding and not self.in_transaction:
            self._holding = False
            self.write_lock.release()


def connect(path: str | Path, autocheckpoint: bool = True) -> Database:
    """Open the database file (creating its folder) with settings safe for many processes.

    autocheckpoint=False leaves copying the WAL into the database to checkpoint(), called
    from a background thread: otherwise the commit that fills the WAL does it, with two
    fsyncs, while every other writer waits for it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
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


def checkpoint(db: Database) -> None:
    """Copy committed WAL pages into the database file.

    A passive checkpoint blocks nobody, but under steady traffic some reader always holds
    part of the WAL, so it is never started afresh and would grow without end; past
    WAL_RESTART_PAGES writers queue on the write lock while a restarting checkpoint runs.
    """
    _busy, pages, _copied = db.conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    if pages > WAL_RESTART_PAGES:
        db.conn.write_lock.acquire()
        try:
            db.conn.execute("PRAGMA wal_checkpoint(RESTART)").fetchall()
        finally:
            db.conn.write_lock.release()


def migrate(path: str | Path) -> None:
    """Apply pending migrations; a file lock keeps concurrent starters from racing."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        db = connect(path)
        try:
            migrations.apply(db)
        finally:
            db.close()


@contextlib.contextmanager
def immediate(db: Database) -> Iterator[Database]:
    """A write transaction that takes the write lock at once (read-then-write safety).

    Inside transaction() it becomes a savepoint of the open transaction, which then holds
    the write lock until that transaction commits.
    """
    conn = db.conn
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
    conn = db.conn
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


def _query(db: Database, sql: str, params: Any = ()) -> list[dict[str, Any]]:
    """Rows as dicts. sqlite-utils' query() runs each SELECT inside a savepoint, two more
    statements per read on the busiest paths."""
    cursor = db.conn.execute(sql, params)
    names = [column[0] for column in cursor.description]
    return [dict(zip(names, row)) for row in cursor]


def _commit(db: Database) -> None:
    """End a verb's write: commit it, unless a transaction() commits later."""
    if not db.conn.batched:
        db.conn.commit()


def now() -> float:
    """Current Unix time; one place so the storage layer agrees on the clock."""
    return time.time()


# --- schema -------------------------------------------------------------------------


@migrations()
def m001_core(db: Database) -> None:
    # One row per inbound message, written with its reply: the record that it was answered
    # (key = MsgId, or openid plus CreateTime for events) and the conversation log the
    # console reads. A message being answered is marked by a claim (bot/claims.py).
    db["messages"].create({
        "id": int, "dedupe_key": str, "openid": str, "msg_id": str, "msg_type": str,
        "content": str, "reply": str, "reply_kind": str, "topic": str, "band": str,
        "state": str, "received_at": float, "latency_ms": float,
    }, pk="id", not_null={"dedupe_key", "openid", "received_at"})
    db["messages"].create_index(["dedupe_key"], unique=True)
    db["messages"].create_index(["openid", "received_at"])
    db["messages"].create_index(["received_at"])
    db["subscribers"].create({
        "openid": str, "subscribed": int, "subscribed_at": float,
        "unsubscribed_at": float, "last_seen_at": float,
    }, pk="openid")
    # Per-user conversational state outside forms: the last list shown (menu, category,
    # suggestions) and the unread rest of a long answer.
    db["user_state"].create({"openid": str, "state": str, "updated_at": float}, pk="openid")
    # Messages sent later through the customer-service API (late replies, notices, pushes
    # in the 48-hour window). In demo mode they land in the simulator's inbox instead.
    db["outbox"].create({
        "id": int, "openid": str, "text": str, "source": str, "status": str,
        "attempts": int, "errcode": int, "error": str, "next_attempt_at": float,
        "created_at": float, "sent_at": float,
    }, pk="id", not_null={"openid", "text", "status", "created_at"}, defaults={"attempts": 0})
    db["outbox"].create_index(["status", "next_attempt_at"])
    db["inbox"].create({"id": int, "openid": str, "text": str, "created_at": float},
                       pk="id", not_null={"openid", "text", "created_at"})
    db["inbox"].create_index(["openid", "id"])
    db["kv"].create({"key": str, "value": str, "expires_at": float}, pk="key")
    db["unanswered"].create({
        "id": int, "openid": str, "question": str, "band": str, "best_topic": str,
        "score": float, "status": str, "created_at": float,
    }, pk="id", not_null={"question", "status", "created_at"})
    db["unanswered"].create_index(["status", "created_at"])


# --- messages: dedupe and log --------------------------------------------------------


@dataclass(frozen=True)
class SeenMessage:
    """A message already answered: its stored reply, if one was given in time."""
    state: str
    reply: str | None
    reply_kind: str | None


def find_message(db: Database, key: str) -> SeenMessage | None:
    """The record of a message answered before (WeChat resends until it gets an answer)."""
    row = db.conn.execute(
        "SELECT state, reply, reply_kind FROM messages WHERE dedupe_key = ?", (key,)
    ).fetchone()
    return None if row is None else SeenMessage(*row)


def record_message(db: Database, key: str, openid: str, msg_id: str, msg_type: str,
                   content: str, received_at: float, reply: str, reply_kind: str,
                   topic: str | None, band: str | None, state: str) -> None:
    """Log a message with the reply it got (state: replied, or deferred past the budget).

    The key is unique: recording a message twice raises sqlite3.IntegrityError.
    """
    db.conn.execute(
        "INSERT INTO messages (dedupe_key, openid, msg_id, msg_type, content, received_at,"
        " reply, reply_kind, topic, band, state, latency_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?,"
        " ?, ?, ?, ?)",
        (key, openid, msg_id, msg_type, content, received_at, reply, reply_kind, topic, band,
         state, (now() - received_at) * 1000),
    )
    _commit(db)


def recent_messages(db: Database, openid: str, limit: int = 50) -> list[dict[str, Any]]:
    """A subscriber's latest messages with the bot's replies, newest first."""
    return _query(db,
        "SELECT * FROM messages WHERE openid = ? ORDER BY received_at DESC, id DESC LIMIT ?",
        [openid, limit])


# --- subscribers ---------------------------------------------------------------------

LAST_SEEN_PRECISION = 60.0  # seconds


def touch_subscriber(db: Database, openid: str, subscribed: bool | None = None) -> float:
    """Note that a user interacted (opens the 48-hour window); track (un)subscription.

    Returns the last-seen time now stored, which may be up to LAST_SEEN_PRECISION old."""
    t = now()
    if subscribed is None:
        # Most messages come in bursts from the same user: a minute's precision is plenty
        # for a 48-hour window and spares a write transaction per message.
        row = db.conn.execute("SELECT last_seen_at FROM subscribers WHERE openid = ?",
                              (openid,)).fetchone()
        if row is not None and row[0] is not None and t - row[0] < LAST_SEEN_PRECISION:
            return row[0]
    db.conn.execute(
        "INSERT INTO subscribers (openid, subscribed, subscribed_at, last_seen_at)"
        " VALUES (?, 1, ?, ?) ON CONFLICT(openid) DO UPDATE SET last_seen_at = excluded.last_seen_at",
        (openid, t, t),
    )
    if subscribed is True:
        db.conn.execute("UPDATE subscribers SET subscribed = 1, subscribed_at = ? WHERE openid = ?",
                        (t, openid))
    elif subscribed is False:
        db.conn.execute("UPDATE subscribers SET subscribed = 0, unsubscribed_at = ? WHERE openid = ?",
                        (t, openid))
    _commit(db)
    return t


# --- per-user state ------------------------------------------------------------------


def load_state(db: Database, openid: str) -> dict[str, Any]:
    """The user's conversational state (empty dict if none)."""
    row = db.conn.execute("SELECT state FROM user_state WHERE openid = ?", (openid,)).fetchone()
    return json.loads(row[0]) if row else {}


def save_state(db: Database, openid: str, state: dict[str, Any]) -> None:
    """Replace the user's conversational state."""
    db.conn.execute(
        "INSERT INTO user_state (openid, state, updated_at) VALUES (?, ?, ?)"
        " ON CONFLICT(openid) DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at",
        (openid, json.dumps(state, ensure_ascii=False), now()),
    )
    _commit(db)


# --- outbox and simulator inbox ------------------------------------------------------


def enqueue_message(db: Database, openid: str, text: str, source: str) -> int:
    """Queue a message for delivery through the customer-service API; returns its id."""
    cur = db.conn.execute(
        "INSERT INTO outbox (openid, text, source, status, attempts, next_attempt_at, created_at)"
        " VALUES (?, ?, ?, 'pending', 0, ?, ?)",
        (openid, text, source, now(), now()),
    )
    _commit(db)
    return int(cur.lastrowid)


def claim_outbox(db: Database, limit: int = 20, lease_seconds: float = 60.0) -> list[dict[str, Any]]:
    """Take due outbox rows for delivery; a lease stops two workers sending the same row."""
    t = now()
    with immediate(db):
        rows = _query(db, "SELECT * FROM outbox WHERE status = 'pending' AND next_attempt_at <= ?"
                          " ORDER BY id LIMIT ?", [t, limit])
        for r in rows:
            db.conn.execute("UPDATE outbox SET next_attempt_at = ? WHERE id = ?",
                            (t + lease_seconds, r["id"]))
    return rows


def finish_outbox(db: Database, row_id: int, errcode: int = 0, error: str = "",
                  retry_in: float | None = None, max_attempts: int = 5) -> None:
    """Mark an outbox row sent, or failed: retried after retry_in until max_attempts."""
    if errcode == 0:
        db.conn.execute("UPDATE outbox SET status = 'sent', sent_at = ?, attempts = attempts + 1,"
                        " errcode = 0, error = '' WHERE id = ?", (now(), row_id))
    else:
        attempts = db.conn.execute("SELECT attempts FROM outbox WHERE id = ?",
                                   (row_id,)).fetchone()[0] + 1
        give_up = retry_in is None or attempts >= max_attempts
        db.conn.execute(
            "UPDATE outbox SET status = ?, attempts = ?, errcode = ?, error = ?, next_attempt_at = ?"
            " WHERE id = ?",
            ("failed" if give_up else "pending", attempts, errcode, error,
             now() + (retry_in or 0), row_id),
        )
    _commit(db)


def add_to_inbox(db: Database, openid: str, text: str) -> None:
    """Deliver a pushed message to the simulator (demo mode)."""
    db.conn.execute("INSERT INTO inbox (openid, text, created_at) VALUES (?, ?, ?)",
                    (openid, text, now()))
    _commit(db)


def inbox_since(db: Database, openid: str, after_id: int) -> list[dict[str, Any]]:
    """Simulator inbox messages for a user newer than after_id."""
    return _query(db, "SELECT id, text, created_at FROM inbox WHERE openid = ? AND id > ?"
                      " ORDER BY id", [openid, after_id])


# --- unanswered questions --------------------------------------------------------------


def record_unanswered(db: Database, openid: str, question: str, band: str,
                      best_topic: str | None, score: float) -> None:
    """Keep a question the bot could not answer, for staff to review."""
    db.conn.execute(
        "INSERT INTO unanswered (openid, question, band, best_topic, score, status, created_at)"
        " VALUES (?, ?, ?, ?, ?, 'open', ?)",
        (openid, question, band, best_topic, score, now()),
    )
    _commit(db)


# --- registration: dialogues, applications, status history -----------------------------

# What staff and applicants read for the stored codes (console, export, the forms).
APPLICATION_TYPES = {"training": "培训报名", "loan": "贷款申请"}
STAGES = {"running": "已经在经营", "planned": "准备开办"}
# Application statuses, in the order staff usually move through them.
STATUSES = ("已提交", "审核中", "已通过", "未通过", "已完成", "已取消")
# Statuses that still count as "open": a second application for the same thing is refused
# and the course seat stays taken.
OPEN_STATUSES = ("已提交", "审核中", "已通过")
# Reference numbers and the dates staff see use China Standard Time (no daylight saving).
CHINA_TZ = timezone(timedelta(hours=8))


@migrations()
def m002_applications(db: Database) -> None:
    # A user's progress through a form. `data` is the Vault-encrypted JSON of the answers
    # (they include ID and phone numbers); step and timestamps stay readable for expiry.
    db["dialogues"].create({
        "openid": str, "form": str, "step": str, "status": str, "attempts": int,
        "data": str, "started_at": float, "updated_at": float,
    }, pk=("openid", "form"), not_null={"step", "status", "data"})
    # Identity answers from the user's last submission, offered for reuse (encrypted).
    db["profiles"].create({"openid": str, "data": str, "updated_at": float}, pk="openid")
    db["applications"].create({
        "id": int, "ref": str, "type": str, "openid": str, "status": str,
        "name": str, "phone_enc": str, "phone_masked": str, "id_enc": str, "id_masked": str,
        "id_fingerprint": str,
        "township": str, "village": str, "course_id": str, "course_name": str,
        "returning_worker": int, "amount_yuan": int, "purpose": str, "industry": str, "stage": str,
        "waitlist_position": int, "staff_note": str, "created_at": float, "updated_at": float,
    }, pk="id", not_null={"ref", "type", "openid", "status", "created_at", "updated_at"},
       defaults={"staff_note": ""})
    db["applications"].create_index(["ref"], unique=True)
    db["applications"].create_index(["openid", "type", "status"])
    db["applications"].create_index(["course_id", "status"])
    db["applications"].create_index(["id_fingerprint", "type", "status"])
    db["applications"].create_index(["created_at"])
    db["application_history"].create({
        "id": int, "application_id": int, "status": str, "note": str, "actor": str, "at": float,
    }, pk="id", foreign_keys=[("application_id", "applications", "id")],
       not_null={"application_id", "status", "at"})
    db["application_history"].create_index(["application_id", "id"])
    # Daily sequence per prefix ("PX20261126" -> 7), bumped inside the submitting transaction.
    db["counters"].create({"name": str, "value": int}, pk="name", not_null={"value"})


def load_dialogues(db: Database, openid: str) -> list[dict[str, Any]]:
    """The user's dialogue rows, most recently touched first."""
    return _query(db, "SELECT * FROM dialogues WHERE openid = ? ORDER BY updated_at DESC",
                      [openid])


def set_dialogue_status(db: Database, openid: str, form: str, status: str, at: float) -> None:
    """Change a dialogue's status and touched time only."""
    db.conn.execute("UPDATE dialogues SET status = ?, updated_at = ? WHERE openid = ? AND form = ?",
                    (status, at, openid, form))
    _commit(db)


def save_dialogue(db: Database, row: dict[str, Any]) -> None:
    """Insert or update one dialogue row (keyed by openid and form)."""
    # An upsert changes the row in place; INSERT OR REPLACE deletes and re-inserts it,
    # rewriting the key index too, on every answer.
    db.conn.execute(
        "INSERT INTO dialogues (openid, form, step, status, attempts, data, started_at,"
        " updated_at) VALUES (:openid, :form, :step, :status, :attempts, :data, :started_at,"
        " :updated_at) ON CONFLICT(openid, form) DO UPDATE SET step = excluded.step,"
        " status = excluded.status, attempts = excluded.attempts, data = excluded.data,"
        " started_at = excluded.started_at, updated_at = excluded.updated_at", row)
    _commit(db)


def delete_dialogue(db: Database, openid: str, form: str) -> None:
    """Forget one dialogue."""
    db.conn.execute("DELETE FROM dialogues WHERE openid = ? AND form = ?", (openid, form))
    _commit(db)


def load_profile(db: Database, openid: str) -> str | None:
    """The user's saved identity (an encrypted token), if any."""
    row = db.conn.execute("SELECT data FROM profiles WHERE openid = ?", (openid,)).fetchone()
    return row[0] if row else None


def save_profile(db: Database, openid: str, token: str, at: float) -> None:
    """Remember the user's identity (already encrypted) for the next form."""
    db.conn.execute(
        "INSERT INTO profiles (openid, data, updated_at) VALUES (?, ?, ?) ON CONFLICT(openid)"
        " DO UPDATE SET data = excluded.data, updated_at = excluded.updated_at",
        (openid, token, at))
    _commit(db)


@dataclass(frozen=True)
class Submission:
    """The outcome of add_application: the new row, or the open one that blocked it."""
    application: dict[str, Any]
    created: bool


def open_application(db: Database, openid: str, type_: str, course_id: str | None = None,
                     id_fingerprint: str | None = None) -> dict[str, Any] | None:
    """The person's open application of this type (and course, for training), if any.

    The person is the WeChat user, or (given id_fingerprint) anyone with the same ID number.
    """
    sql = ("SELECT * FROM applications WHERE (openid = ? OR id_fingerprint = ?) AND type = ?"
           f" AND status IN ({','.join('?' * len(OPEN_STATUSES))})")
    params: list[Any] = [openid, id_fingerprint, type_, *OPEN_STATUSES]
    if course_id is not None:
        sql += " AND course_id = ?"
        params.append(course_id)
    row = db.conn.execute(sql + " ORDER BY id DESC LIMIT 1", params).fetchone()
    return _row(db, row)


def seats_taken(db: Database, course_id: str) -> int:
    """Applications holding a seat on a course (open or completed, waiting list excluded)."""
    return db.conn.execute(
        "SELECT COUNT(*) FROM applications WHERE type = 'training' AND course_id = ?"
        " AND waitlist_position IS NULL AND status IN ('已提交', '审核中', '已通过', '已完成')",
        (course_id,)).fetchone()[0]


def add_application(db: Database, record: dict[str, Any], prefix: str, at: float,
                    capacity: int | None = None) -> Submission:
    """Store a new application with the next reference number (PREFIX + date + sequence).

    record holds the columns (type, openid, name, phone_enc, … — encrypted by the caller).
    An open application of the same type (and course) by the same openid or ID fingerprint
    is returned instead of adding one. One transaction takes the write lock first, so the
    duplicate check, the seat count
    (capacity given: a full course puts the applicant on the waiting list) and the daily
    counter are consistent across processes.
    """
    with immediate(db):
        existing = open_application(db, record["openid"], record["type"],
                                    record.get("course_id") if record["type"] == "training" else None,
                                    record.get("id_fingerprint"))
        if existing is not None:
            return Submission(existing, created=False)
        waitlist = None
        if capacity is not None:
            if seats_taken(db, record["course_id"]) >= capacity:
                waitlist = 1 + db.conn.execute(
                    "SELECT COUNT(*) FROM applications WHERE course_id = ? AND status IN"
                    f" ({','.join('?' * len(OPEN_STATUSES))}) AND waitlist_position IS NOT NULL",
                    (record["course_id"], *OPEN_STATUSES)).fetchone()[0]
        day = datetime.fromtimestamp(at, CHINA_TZ).strftime("%Y%m%d")
        counter = f"{prefix}{day}"
        db.conn.execute("INSERT INTO counters (name, value) VALUES (?, 1) ON CONFLICT(name)"
                        " DO UPDATE SET value = value + 1", (counter,))
        seq = db.conn.execute("SELECT value FROM counters WHERE name = ?", (counter,)).fetchone()[0]
        row = {**record, "ref": f"{counter}-{seq:04d}", "status": STATUSES[0],
               "waitlist_position": waitlist, "staff_note": "", "created_at": at, "updated_at": at}
        cols = ", ".join(row)
        cur = db.conn.execute(f"INSERT INTO applications ({cols}) VALUES"
                              f" ({', '.join(':' + c for c in row)})", row)
        db.conn.execute("INSERT INTO application_history (application_id, status, note, actor, at)"
                        " VALUES (?, ?, '', 'applicant', ?)", (cur.lastrowid, STATUSES[0], at))
        created = _row(db, db.conn.execute("SELECT * FROM applications WHERE id = ?",
                                           (cur.lastrowid,)).fetchone())
    assert created is not None
    return Submission(created, created=True)


def applications_for(db: Database, openid: str) -> list[dict[str, Any]]:
    """A user's applications, newest first (for "查询进度")."""
    return _query(db, "SELECT * FROM applications WHERE openid = ? ORDER BY id DESC", [openid])


def list_applications(db: Database, type_: str | None = None, course_id: str | None = None,
                      status: str | None = None, township: str | None = None,
                      since: float | None = None, until: float | None = None,
                      search: str | None = None, limit: int | None = None,
                      offset: int = 0) -> list[dict[str, Any]]:
    """Applications for the staff console and export, newest first.

    Filters combine with AND: type_ ("training"/"loan"), course_id, status, township,
    created_at in [since, until), and search (a substring of the name or the reference
    number). Rows carry phone and ID encrypted (phone_enc, id_enc) and masked.
    """
    where, params = ["1 = 1"], []
    for column, value in (("type", type_), ("course_id", course_id), ("status", status),
                          ("township", township)):
        if value:
            where.append(f"{column} = ?")
            params.append(value)
    if since is not None:
        where.append("created_at >= ?")
        params.append(since)
    if until is not None:
        where.append("created_at < ?")
        params.append(until)
    if search:
        where.append("(name LIKE ? OR ref LIKE ?)")
        params += [f"%{search}%", f"%{search}%"]
    sql = f"SELECT * FROM applications WHERE {' AND '.join(where)} ORDER BY id DESC"
    if limit is not None:
        sql += " LIMIT ? OFFSET ?"
        params += [limit, offset]
    return _query(db, sql, params)


def get_application(db: Database, ref: str) -> dict[str, Any] | None:
    """One application by reference number, with "history": its status changes, oldest first."""
    app = _row(db, db.conn.execute("SELECT * FROM applications WHERE ref = ?", (ref,)).fetchone())
    if app is not None:
        app["history"] = _query(db,
            "SELECT status, note, actor, at FROM application_history WHERE application_id = ?"
            " ORDER BY id", [app["id"]])
    return app


def change_status(db: Database, ref: str, status: str, note: str, actor: str,
                  at: float | None = None) -> str | None:
    """Set an application's status and staff note, recording who did it in the history.

    Returns the applicant's openid so the caller can notify them, or None when no
    application has this reference number. Raises ValueError for a status not in STATUSES.
    """
    if status not in STATUSES:
        raise ValueError(f"unknown status: {status}")
    at = now() if at is None else at
    with immediate(db):
        row = db.conn.execute("SELECT id, openid FROM applications WHERE ref = ?", (ref,)).fetchone()
        if row is None:
            return None
        db.conn.execute("UPDATE applications SET status = ?, staff_note = ?, updated_at = ?"
                        " WHERE id = ?", (status, note, at, row[0]))
        db.conn.execute("INSERT INTO application_history (application_id, status, note, actor, at)"
                        " VALUES (?, ?, ?, ?, ?)", (row[0], status, note, actor, at))
    return row[1]


def _row(db: Database, row: tuple | None) -> dict[str, Any] | None:
    if row is None:
        return None
    columns = [c.name for c in db["applications"].columns]
    return dict(zip(columns, row))


# --- key/value primitives for cross-process leases (used inside immediate()) ---------------


def kv_entry(db: Database, key: str) -> tuple[str, float | None] | None:
    """The raw value and expiry time of a key, whether or not it has expired."""
    row = db.conn.execute("SELECT value, expires_at FROM kv WHERE key = ?", (key,)).fetchone()
    return None if row is None else (row[0], row[1])


def kv_put(db: Database, key: str, value: str, expires_at: float | None) -> None:
    """Store a value with an absolute expiry time; no commit (call inside immediate())."""
    db.conn.execute(
        "INSERT INTO kv (key, value, expires_at) VALUES (?, ?, ?) ON CONFLICT(key) DO UPDATE"
        " SET value = excluded.value, expires_at = excluded.expires_at",
        (key, value, expires_at),
    )


def kv_delete(db: Database, key: str) -> None:
    """Remove a stored value."""
    db.conn.execute("DELETE FROM kv WHERE key = ?", (key,))
    _commit(db)


def kv_delete_if(db: Database, key: str, value: str) -> bool:
    """Delete a key only while it still holds value; no commit (call inside immediate())."""
    return db.conn.execute("DELETE FROM kv WHERE key = ? AND value = ?", (key, value)).rowcount > 0


def kv_claim(db: Database, key: str, holder: str, ttl: float) -> bool:
    """Take a lease row unless another holder has an unexpired one; no commit."""
    t = now()
    return db.conn.execute(
        "INSERT INTO kv (key, value, expires_at) VALUES (?, ?, ?) ON CONFLICT(key) DO UPDATE"
        " SET value = excluded.value, expires_at = excluded.expires_at"
        " WHERE kv.expires_at IS NOT NULL AND kv.expires_at <= ?",
        (key, holder, t + ttl, t),
    ).rowcount > 0


# --- announcements and push jobs -------------------------------------------------------
#
# A push job sends one announcement to a snapshot of its audience. Each recipient row
# moves pending -> sending -> delivered | failed | unknown, one commit per step, so a
# crash leaves at most the in-flight rows in "sending" (see bot/outbox.py for what a
# resumed job does with them). Mass sends go out in batches: rows of one batch share a
# clientmsgid, which makes WeChat refuse a repeat (45065).


@migrations()
def m004_push(db: Database) -> None:
    db["announcements"].create({
        "id": int, "text": str, "url": str, "audience": str, "created_by": str,
        "created_at": float,
    }, pk="id", not_null={"text", "audience", "created_at"})
    # One job per announcement: a second job could send it to someone twice.
    db["push_jobs"].create({
        "id": int, "announcement_id": int, "status": str, "total": int, "runner": str,
        "lease_until": float, "created_at": float, "started_at": float, "finished_at": float,
        "error": str,
    }, pk="id", not_null={"announcement_id", "status", "created_at"},
        foreign_keys=[("announcement_id", "announcements", "id")])
    db["push_jobs"].create_index(["announcement_id"], unique=True)
    db["push_jobs"].create_index(["status"])
    db["push_recipients"].create({
        "id": int, "job_id": int, "openid": str, "status": str, "channel": str,
        "errcode": int, "error": str, "attempts": int, "next_attempt_at": float,
        "batch": str, "updated_at": float,
    }, pk="id", not_null={"job_id", "openid", "status"}, defaults={"attempts": 0},
        foreign_keys=[("job_id", "push_jobs", "id")])
    db["push_recipients"].create_index(["job_id", "openid"], unique=True)
    db["push_recipients"].create_index(["job_id", "status", "next_attempt_at"])
    db["push_recipients"].create_index(["openid"])
    # Messages sent on the fallback channel per day (China time), against [push] daily_quota.
    db["push_quota"].create({"day": str, "used": int}, pk="day")


def add_announcement(db: Database, text: str, url: str, audience: str, created_by: str) -> int:
    """Store an announcement; returns its id."""
    cur = db.conn.execute(
        "INSERT INTO announcements (text, url, audience, created_by, created_at)"
        " VALUES (?, ?, ?, ?, ?)", (text, url, audience, created_by, now()))
    _commit(db)
    return int(cur.lastrowid)


def get_announcement(db: Database, announcement_id: int) -> dict[str, Any] | None:
    """One announcement row."""
    rows = _query(db, "SELECT * FROM announcements WHERE id = ?", [announcement_id])
    return rows[0] if rows else None


def recent_announcements(db: Database, limit: int, openid: str | None = None) -> list[dict[str, Any]]:
    """Newest announcements not cancelled; with openid, only those addressed to that user."""
    where = "(j.status IS NULL OR j.status != 'cancelled')"
    params: list[Any] = []
    if openid is not None:
        where += (" AND (a.audience = 'all' OR EXISTS (SELECT 1 FROM push_recipients r"
                  " WHERE r.job_id = j.id AND r.openid = ?))")
        params.append(openid)
    return _query(db,
        "SELECT a.id, a.text, a.url, a.audience, a.created_by, a.created_at FROM announcements a"
        f" LEFT JOIN push_jobs j ON j.announcement_id = a.id WHERE {where}"
        " ORDER BY a.created_at DESC, a.id DESC LIMIT ?", params + [limit])


def subscribed_openids(db: Database) -> list[str]:
    """Every current subscriber."""
    return [r[0] for r in db.conn.execute(
        "SELECT openid FROM subscribers WHERE subscribed = 1 ORDER BY openid")]


def applicant_openids(db: Database, type_: str | None = None, course_id: str | None = None,
                      township: str | None = None) -> list[str]:
    """Applicants (training or loan, of a course, of a township) who neither withdrew
    nor unsubscribed."""
    clauses, params = ["a.status != ?"], [STATUSES[-1]]  # withdrawn (已取消)
    for column, value in (("type", type_), ("course_id", course_id), ("township", township)):
        if value is not None:
            clauses.append(f"a.{column} = ?")
            params.append(value)
    return [r[0] for r in db.conn.execute(
        "SELECT DISTINCT a.openid FROM applications a LEFT JOIN subscribers s ON s.openid = a.openid"
        f" WHERE {' AND '.join(clauses)} AND COALESCE(s.subscribed, 1) = 1 ORDER BY a.openid", params)]


def create_push_job(db: Database, announcement_id: int, openids: list[str]) -> int:
    """The announcement's job with its recipients (created once, atomically); returns its id."""
    with immediate(db):
        row = db.conn.execute("SELECT id FROM push_jobs WHERE announcement_id = ?",
                              (announcement_id,)).fetchone()
        if row:
            return int(row[0])
        t = now()
        unique = list(dict.fromkeys(openids))
        job_id = int(db.conn.execute(
            "INSERT INTO push_jobs (announcement_id, status, total, created_at)"
            " VALUES (?, 'queued', ?, ?)", (announcement_id, len(unique), t)).lastrowid)
        db.conn.executemany(
            "INSERT INTO push_recipients (job_id, openid, status, attempts, next_attempt_at,"
            " updated_at) VALUES (?, ?, 'pending', 0, ?, ?)",
            [(job_id, o, t, t) for o in unique])
    return job_id


def get_push_job(db: Database, job_id: int) -> dict[str, Any] | None:
    """One job row joined with its announcement's text, url and audience."""
    rows = _query(db,
        "SELECT j.*, a.text, a.url, a.audience, a.created_by FROM push_jobs j"
        " JOIN announcements a ON a.id = j.announcement_id WHERE j.id = ?", [job_id])
    return rows[0] if rows else None


def push_job_for(db: Database, announcement_id: int) -> int | None:
    """The job id of an announcement, if it has one."""
    row = db.conn.execute("SELECT id FROM push_jobs WHERE announcement_id = ?",
                          (announcement_id,)).fetchone()
    return int(row[0]) if row else None


def unfinished_push_jobs(db: Database) -> list[dict[str, Any]]:
    """Jobs queued, running or waiting, oldest first, with their runner and lease."""
    return _query(db,
        "SELECT id, status, runner, lease_until FROM push_jobs"
        " WHERE status IN ('queued', 'running', 'waiting') ORDER BY id")


def claim_push_job(db: Database, job_id: int, runner: str, lease_seconds: float,
                   runner_dead: Any) -> bool:
    """Become the job's only runner if it is unfinished and its runner is gone.

    Rows a dead runner left in "sending" on a per-recipient channel become "unknown":
    the call may have reached WeChat, which has no idempotency key for those channels.
    Mass-batch rows stay "sending"; the batch is repeated under the same clientmsgid.
    """
    t = now()
    with immediate(db):
        row = db.conn.execute("SELECT status, runner, lease_until FROM push_jobs WHERE id = ?",
                              (job_id,)).fetchone()
        if row is None or row[0] not in ("queued", "running", "waiting"):
            return False
        if row[1] and row[1] != runner and (row[2] or 0) > t and not runner_dead(row[1]):
            return False
        db.conn.execute(
            "UPDATE push_recipients SET status = 'unknown', updated_at = ?"
            " WHERE job_id = ? AND status = 'sending' AND COALESCE(channel, '') != 'mass'",
            (t, job_id))
        db.conn.execute(
            "UPDATE push_jobs SET status = 'running', runner = ?, lease_until = ?,"
            " started_at = COALESCE(started_at, ?), finished_at = NULL WHERE id = ?",
            (runner, t + lease_seconds, t, job_id))
    return True


def renew_push_job(db: Database, job_id: int, runner: str, lease_seconds: float) -> bool:
    """Extend the runner's lease; False when the job was cancelled or taken over."""
    cur = db.conn.execute(
        "UPDATE push_jobs SET lease_until = ? WHERE id = ? AND runner = ? AND status = 'running'",
        (now() + lease_seconds, job_id, runner))
    _commit(db)
    return cur.rowcount > 0


def set_push_job_error(db: Database, job_id: int, error: str) -> None:
    """Note why a job could not send at all (e.g. no access token); '' clears it."""
    db.conn.execute("UPDATE push_jobs SET error = ? WHERE id = ?", (error, job_id))
    _commit(db)


def release_push_job(db: Database, job_id: int, runner: str) -> str:
    """Drop the lease and settle the status: done, waiting (rows due later) or cancelled."""
    t = now()
    with immediate(db):
        open_rows = db.conn.execute(
            "SELECT COUNT(*) FROM push_recipients WHERE job_id = ? AND status IN ('pending', 'sending')",
            (job_id,)).fetchone()[0]
        db.conn.execute(
            "UPDATE push_jobs SET runner = NULL, lease_until = NULL,"
            " status = CASE WHEN status = 'cancelled' THEN 'cancelled'"
            "  WHEN ? = 0 THEN 'done' ELSE 'waiting' END,"
            " finished_at = CASE WHEN ? = 0 OR status = 'cancelled' THEN ? ELSE NULL END"
            " WHERE id = ? AND runner = ?", (open_rows, open_rows, t, job_id, runner))
        status = db.conn.execute("SELECT status FROM push_jobs WHERE id = ?", (job_id,)).fetchone()[0]
    return status


def due_recipients(db: Database, job_id: int, limit: int) -> list[dict[str, Any]]:
    """Pending per-recipient sends that are due, with the subscriber's state."""
    return _query(db,
        "SELECT r.id, r.openid, r.attempts, r.channel, s.subscribed, s.last_seen_at"
        " FROM push_recipients r LEFT JOIN subscribers s ON s.openid = r.openid"
        " WHERE r.job_id = ? AND r.status = 'pending' AND COALESCE(r.channel, '') != 'mass'"
        " AND r.next_attempt_at <= ? ORDER BY r.id LIMIT ?", [job_id, now(), limit])


def next_push_due(db: Database, job_id: int) -> float | None:
    """When the job's next pending row is due (None when nothing is pending)."""
    row = db.conn.execute(
        "SELECT MIN(next_attempt_at) FROM push_recipients WHERE job_id = ? AND status = 'pending'",
        (job_id,)).fetchone()
    return row[0]


def mark_push_sending(db: Database, row_id: int, channel: str,
                      quota: tuple[str, int] | None = None, expect: str = "pending") -> str:
    """Record the attempt before the call; with quota (day, limit), take one from it too.

    Returns "ok"; "taken" when the row is no longer in the expected status (another
    runner has it); "quota" when the day's quota is used up. Only "ok" changes anything.
    """
    with immediate(db):
        row = db.conn.execute("SELECT status FROM push_recipients WHERE id = ?", (row_id,)).fetchone()
        if row is None or row[0] != expect:
            return "taken"
        if quota is not None and not _take_quota(db, quota[0], 1, quota[1]):
            return "quota"
        db.conn.execute(
            "UPDATE push_recipients SET status = 'sending', channel = ?, attempts = attempts + 1,"
            " updated_at = ? WHERE id = ?", (channel, now(), row_id))
    return "ok"


def finish_push(db: Database, row_id: int, status: str, channel: str | None = None,
                errcode: int | None = None, error: str = "", retry_at: float | None = None,
                refund_day: str | None = None, expect: str = "sending") -> None:
    """Record a recipient's outcome (pending again with retry_at); refund quota if not sent.

    Only a row still in the expected status changes, so a runner never overwrites
    what another one recorded.
    """
    with immediate(db):
        changed = db.conn.execute(
            "UPDATE push_recipients SET status = ?, channel = COALESCE(?, channel), errcode = ?,"
            " error = ?, next_attempt_at = COALESCE(?, next_attempt_at), updated_at = ?"
            " WHERE id = ? AND status = ?",
            (status, channel, errcode, error, retry_at, now(), row_id, expect)).rowcount
        if changed and refund_day is not None:
            db.conn.execute("UPDATE push_quota SET used = MAX(used - 1, 0) WHERE day = ?",
                            (refund_day,))


def deliver_push_to_inbox(db: Database, row_id: int, openid: str, text: str) -> None:
    """Demo mode: put the message in the simulator inbox and mark it delivered, atomically
    (nothing if another runner already took the row)."""
    t = now()
    with immediate(db):
        claimed = db.conn.execute(
            "UPDATE push_recipients SET status = 'delivered', channel = 'simulator',"
            " attempts = attempts + 1, updated_at = ? WHERE id = ? AND status = 'pending'",
            (t, row_id)).rowcount
        if claimed:
            db.conn.execute("INSERT INTO inbox (openid, text, created_at) VALUES (?, ?, ?)",
                            (openid, text, t))


def queued_for_mass(db: Database, job_id: int) -> list[dict[str, Any]]:
    """Rows waiting for the next mass batch, and rows of a batch a crash interrupted."""
    return _query(db,
        "SELECT id, openid, status, batch, attempts FROM push_recipients WHERE job_id = ?"
        " AND channel = 'mass' AND (status = 'sending' OR (status = 'pending'"
        " AND next_attempt_at <= ?)) ORDER BY id", [job_id, now()])


def start_mass_batch(db: Database, job_id: int, row_ids: list[int], batch: str,
                     quota: tuple[str, int]) -> list[int]:
    """Put pending rows into a batch as "sending", taking their quota; returns the rows taken."""
    day, limit = quota
    taken = []
    with immediate(db):
        for row_id in row_ids:
            if _quota_used(db, day) >= limit:
                break
            if db.conn.execute(
                    "UPDATE push_recipients SET status = 'sending', batch = ?, attempts = attempts + 1,"
                    " updated_at = ? WHERE id = ? AND job_id = ? AND status = 'pending'",
                    (batch, now(), row_id, job_id)).rowcount:
                _take_quota(db, day, 1, limit)
                taken.append(row_id)
    return taken


def finish_mass_batch(db: Database, job_id: int, batch: str, status: str,
                      errcode: int | None = None, error: str = "",
                      retry_at: float | None = None) -> None:
    """Record the outcome of a mass batch for all its rows."""
    with immediate(db):
        db.conn.execute(
            "UPDATE push_recipients SET status = ?, errcode = ?, error = ?,"
            " next_attempt_at = COALESCE(?, next_attempt_at), updated_at = ?,"
            " batch = CASE WHEN ? = 'pending' THEN NULL ELSE batch END"
            " WHERE job_id = ? AND batch = ? AND status = 'sending'",
            (status, errcode, error, retry_at, now(), status, job_id, batch))


def mass_batch_open(db: Database, batch: str) -> bool:
    """Whether any row of a mass batch is still being sent."""
    return db.conn.execute("SELECT 1 FROM push_recipients WHERE batch = ? AND status = 'sending'"
                           " LIMIT 1", (batch,)).fetchone() is not None


def push_counts(db: Database, job_id: int) -> dict[str, Any]:
    """Recipient counts by status and, for delivered ones, by channel."""
    by_status = dict(db.conn.execute(
        "SELECT status, COUNT(*) FROM push_recipients WHERE job_id = ? GROUP BY status", (job_id,)))
    by_channel = dict(db.conn.execute(
        "SELECT channel, COUNT(*) FROM push_recipients WHERE job_id = ? AND status = 'delivered'"
        " GROUP BY channel", (job_id,)))
    return {"by_status": by_status, "by_channel": by_channel}


def push_recipient_rows(db: Database, job_id: int, status: str | None = None,
                        limit: int = 100, offset: int = 0) -> list[dict[str, Any]]:
    """A job's recipients with status, channel, error code and attempts."""
    where, params = "job_id = ?", [job_id]
    if status is not None:
        where += " AND status = ?"
        params.append(status)
    return _query(db,
        "SELECT openid, status, channel, errcode, error, attempts, updated_at FROM push_recipients"
        f" WHERE {where} ORDER BY id LIMIT ? OFFSET ?", params + [limit, offset])


def reset_push_recipients(db: Database, job_id: int, statuses: tuple[str, ...],
                          keep_errcodes: tuple[int, ...] = ()) -> int:
    """Make failed (or unknown) rows pending again and requeue the job; returns how many."""
    where = f"job_id = ? AND status IN ({','.join('?' * len(statuses))})"
    if keep_errcodes:
        where += f" AND COALESCE(errcode, 0) NOT IN ({','.join('?' * len(keep_errcodes))})"
    with immediate(db):
        count = db.conn.execute(
            "UPDATE push_recipients SET status = 'pending', channel = NULL, batch = NULL,"
            f" errcode = NULL, error = '', next_attempt_at = ?, updated_at = ? WHERE {where}",
            [now(), now(), job_id, *statuses, *keep_errcodes]).rowcount
        if count:
            db.conn.execute("UPDATE push_jobs SET status = CASE WHEN status = 'running'"
                            " THEN 'running' ELSE 'queued' END, finished_at = NULL WHERE id = ?",
                            (job_id,))
    return count


def cancel_push_job(db: Database, job_id: int) -> bool:
    """Stop a job: pending rows become "cancelled"; False if it had already finished."""
    with immediate(db):
        cur = db.conn.execute(
            "UPDATE push_jobs SET status = 'cancelled', finished_at = ? WHERE id = ?"
            " AND status IN ('queued', 'running', 'waiting')", (now(), job_id))
        if cur.rowcount:
            db.conn.execute("UPDATE push_recipients SET status = 'cancelled', updated_at = ?"
                            " WHERE job_id = ? AND status = 'pending'", (now(), job_id))
    return cur.rowcount > 0


def mark_unsubscribed(db: Database, openid: str) -> None:
    """WeChat says the user no longer follows the account (43004)."""
    db.conn.execute("UPDATE subscribers SET subscribed = 0, unsubscribed_at = ? WHERE openid = ?",
                    (now(), openid))
    _commit(db)


def quota_used(db: Database, day: str) -> int:
    """Fallback-channel messages sent on a day."""
    return _quota_used(db, day)


def _quota_used(db: Database, day: str) -> int:
    row = db.conn.execute("SELECT used FROM push_quota WHERE day = ?", (day,)).fetchone()
    return int(row[0]) if row else 0


def _take_quota(db: Database, day: str, n: int, limit: int) -> bool:
    if _quota_used(db, day) + n > limit:
        return False
    db.conn.execute("INSERT INTO push_quota (day, used) VALUES (?, ?)"
                    " ON CONFLICT(day) DO UPDATE SET used = used + excluded.used", (day, n))
    return True


# --- staff console: accounts, lock-out, audit log, hand-offs ---------------------------


@migrations()
def m003_console(db: Database) -> None:
    # Sessions are signed cookies; those issued before sessions_valid_after (set at sign-out
    # and password change) are refused, so a copied cookie dies with the session.
    db["staff"].create({
        "id": int, "username": str, "password_hash": str, "created_at": float,
        "last_login_at": float, "sessions_valid_after": float,
    }, pk="id", not_null={"username", "password_hash", "created_at"})
    db["staff"].create_index(["username"], unique=True)
    # Failed sign-ins per typed user name (known or not, so lock-out reveals nothing).
    db["login_failures"].create({"username": str, "failures": int, "locked_until": float},
                                pk="username", defaults={"failures": 0})
    db["audit_log"].create({
        "id": int, "staff": str, "action": str, "detail": str, "created_at": float,
    }, pk="id", not_null={"staff", "action", "created_at"})
    db["audit_log"].create_index(["created_at"])
    # Users who asked for a person ("转人工"); staff answer them from the console.
    db["handoffs"].create({
        "id": int, "openid": str, "text": str, "status": str, "created_at": float,
        "closed_at": float, "closed_by": str,
    }, pk="id", not_null={"openid", "status", "created_at"})
    db["handoffs"].create_index(["status", "created_at"])


def add_staff(db: Database, username: str, password_hash: str) -> bool:
    """Create a staff account; False when the name is taken."""
    try:
        db.conn.execute("INSERT INTO staff (username, password_hash, created_at) VALUES (?, ?, ?)",
                        (username, password_hash, now()))
    except sqlite3.IntegrityError:
        return False
    _commit(db)
    return True


def set_staff_password(db: Database, username: str, password_hash: str) -> bool:
    """Replace a staff member's password hash and end their sessions; False if no such account."""
    cur = db.conn.execute("UPDATE staff SET password_hash = ?, sessions_valid_after = ?"
                          " WHERE username = ?", (password_hash, now(), username))
    _commit(db)
    return cur.rowcount > 0


def get_staff(db: Database, username: str) -> dict[str, Any] | None:
    """A staff account by user name."""
    rows = _query(db, "SELECT * FROM staff WHERE username = ?", [username])
    return rows[0] if rows else None


def end_sessions(db: Database, username: str) -> None:
    """Refuse every session the staff member signed in with so far (sign-out)."""
    db.conn.execute("UPDATE staff SET sessions_valid_after = ? WHERE username = ?", (now(), username))
    _commit(db)


def locked_until(db: Database, username: str) -> float | None:
    """When a user name's sign-in lock ends, if it is locked now."""
    row = db.conn.execute("SELECT locked_until FROM login_failures WHERE username = ?",
                          (username,)).fetchone()
    return row[0] if row and row[0] and row[0] > now() else None


def record_login_failure(db: Database, username: str, max_failures: int,
                         lock_seconds: float) -> float | None:
    """Count a failed sign-in; lock the name once max_failures is reached. Returns the lock end."""
    with immediate(db):
        row = db.conn.execute("SELECT failures FROM login_failures WHERE username = ?",
                              (username,)).fetchone()
        failures = (row[0] if row else 0) + 1
        until = now() + lock_seconds if failures >= max_failures else None
        db.conn.execute(
            "INSERT INTO login_failures (username, failures, locked_until) VALUES (?, ?, ?)"
            " ON CONFLICT(username) DO UPDATE SET failures = excluded.failures,"
            " locked_until = excluded.locked_until",
            # A lock starts a fresh count, so the next lock needs max_failures again.
            (username, 0 if until else failures, until),
        )
    return until


def record_login_success(db: Database, username: str) -> None:
    """Clear a user name's failures and note the sign-in time."""
    db.conn.execute("DELETE FROM login_failures WHERE username = ?", (username,))
    db.conn.execute("UPDATE staff SET last_login_at = ? WHERE username = ?", (now(), username))
    _commit(db)


def audit(db: Database, staff: str, action: str, detail: str = "") -> None:
    """Write one staff action to the audit log."""
    db.conn.execute("INSERT INTO audit_log (staff, action, detail, created_at) VALUES (?, ?, ?, ?)",
                    (staff, action, detail, now()))
    _commit(db)


def audit_entries(db: Database, limit: int = 200, offset: int = 0) -> list[dict[str, Any]]:
    """Audit log entries, newest first."""
    return _query(db, "SELECT * FROM audit_log ORDER BY id DESC LIMIT ? OFFSET ?",
                      [limit, offset])


def request_human(db: Database, openid: str, text: str = "") -> int:
    """Note that a user asked for a person; an open request is reused. Returns its id."""
    with immediate(db):
        row = db.conn.execute("SELECT id FROM handoffs WHERE openid = ? AND status = 'open'",
                              (openid,)).fetchone()
        if row:
            if text:
                db.conn.execute("UPDATE handoffs SET text = ? WHERE id = ?", (text, row[0]))
            return int(row[0])
        cur = db.conn.execute(
            "INSERT INTO handoffs (openid, text, status, created_at) VALUES (?, ?, 'open', ?)",
            (openid, text, now()))
        return int(cur.lastrowid)


def open_handoffs(db: Database) -> list[dict[str, Any]]:
    """Open requests for a person, oldest first."""
    return _query(db, "SELECT * FROM handoffs WHERE status = 'open' ORDER BY created_at, id")


def close_handoff(db: Database, openid: str, staff: str) -> int:
    """Mark a user's open request answered; returns how many were closed."""
    cur = db.conn.execute(
        "UPDATE handoffs SET status = 'closed', closed_at = ?, closed_by = ?"
        " WHERE openid = ? AND status = 'open'", (now(), staff, openid))
    _commit(db)
    return cur.rowcount


def recent_conversations(db: Database, limit: int = 100) -> list[dict[str, Any]]:
    """Subscribers by latest message, with that message and their message count."""
    return _query(db,
        "SELECT m.openid, m.content, m.received_at, c.n FROM messages m JOIN"
        " (SELECT openid, MAX(id) AS last_id, COUNT(*) AS n FROM messages GROUP BY openid) c"
        " ON m.id = c.last_id ORDER BY m.received_at DESC LIMIT ?", [limit])


def messages_per_day(db: Database, since: float, utc_offset_hours: float = 8) -> list[dict[str, Any]]:
    """Inbound messages per local calendar day since a time (China time by default)."""
    return _query(db,
        "SELECT date(received_at + ? * 3600, 'unixepoch') AS day, COUNT(*) AS n FROM messages"
        " WHERE received_at >= ? GROUP BY day ORDER BY day", [utc_offset_hours, since])


def top_topics(db: Database, since: float, limit: int = 10) -> list[dict[str, Any]]:
    """Most-answered topics since a time."""
    return _query(db,
        "SELECT topic, COUNT(*) AS n FROM messages WHERE received_at >= ? AND topic IS NOT NULL"
        " AND topic != '' GROUP BY topic ORDER BY n DESC, topic LIMIT ?", [since, limit])


def band_counts(db: Database, since: float) -> dict[str, int]:
    """How many questions were answered, suggested or not understood since a time."""
    return {r["band"]: r["n"] for r in _query(db,
        "SELECT band, COUNT(*) AS n FROM messages WHERE received_at >= ?"
        " AND band IN ('answer', 'suggest', 'unknown') GROUP BY band", [since])}


def new_subscribers(db: Database, since: float) -> int:
    """Subscribers who followed since a time and still follow."""
    return db.conn.execute("SELECT COUNT(*) FROM subscribers WHERE subscribed = 1"
                           " AND subscribed_at >= ?", (since,)).fetchone()[0]


def open_unanswered(db: Database, limit: int = 500) -> list[dict[str, Any]]:
    """Questions still waiting for review, newest first."""
    return _query(db, "SELECT * FROM unanswered WHERE status = 'open'"
                      " ORDER BY created_at DESC, id DESC LIMIT ?", [limit])


def get_unanswered(db: Database, row_id: int) -> dict[str, Any] | None:
    """One unanswered question by id."""
    rows = _query(db, "SELECT * FROM unanswered WHERE id = ?", [row_id])
    return rows[0] if rows else None


def close_unanswered(db: Database, ids: list[int], status: str) -> int:
    """Take open questions off the review list (status: added or out_of_scope)."""
    if not ids:
        return 0
    marks = ",".join("?" * len(ids))
    cur = db.conn.execute(f"UPDATE unanswered SET status = ? WHERE status = 'open' AND id IN ({marks})",
                          [status, *ids])
    _commit(db)
    return cur.rowcount


def announcements_with_jobs(db: Database, limit: int = 20) -> list[dict[str, Any]]:
    """Newest announcements, cancelled ones included, with their push job id."""
    return _query(db,
        "SELECT a.*, j.id AS job_id FROM announcements a LEFT JOIN push_jobs j"
        " ON j.announcement_id = a.id ORDER BY a.id DESC LIMIT ?", [limit])


def application_counts(db: Database, column: str) -> list[dict[str, Any]]:
    """How many applications per course, township, status or type (the console overview)."""
    if column not in ("course_name", "township", "status", "type"):
        raise ValueError(f"cannot count applications by {column}")
    return _query(db,
        f"SELECT {column} AS value, COUNT(*) AS n FROM applications"
        f" WHERE {column} IS NOT NULL AND {column} != '' GROUP BY {column} ORDER BY n DESC, value")
