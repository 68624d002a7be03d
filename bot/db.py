"""SQLite storage: connection, migrations and every SQL statement, as domain verbs.

All processes (gunicorn workers, the CLI) share one database file in WAL mode; writes that
read before they write take the lock up front (BEGIN IMMEDIATE) so concurrent workers
queue instead of failing.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from sqlite_utils import Database
from sqlite_utils.migrations import Migrations

migrations = Migrations("chuangyetong")


def connect(path: str | Path) -> Database:
    """Open the database file (creating its folder) with settings safe for many processes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(path), timeout=30, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA busy_timeout=30000")
    conn.execute("PRAGMA foreign_keys=ON")
    return Database(conn, execute_plugins=False)


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
    """A write transaction that takes the write lock at once (read-then-write safety)."""
    db.conn.execute("BEGIN IMMEDIATE")
    try:
        yield db
    except BaseException:
        db.conn.execute("ROLLBACK")
        raise
    else:
        db.conn.execute("COMMIT")


def now() -> float:
    """Current Unix time; one place so the storage layer agrees on the clock."""
    return time.time()


# --- schema -------------------------------------------------------------------------


@migrations()
def m001_core(db: Database) -> None:
    # One row per inbound message: it is the dedupe record (key = MsgId, or openid plus
    # CreateTime for events) and the conversation log the console reads.
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
    """A message already received: its stored reply, if one was given in time."""
    state: str
    reply: str | None
    reply_kind: str | None


def remember_message(db: Database, key: str, openid: str, msg_id: str, msg_type: str,
                     content: str) -> SeenMessage | None:
    """Record an inbound message; return the earlier record if this key was seen before."""
    try:
        db.conn.execute(
            "INSERT INTO messages (dedupe_key, openid, msg_id, msg_type, content, state,"
            " received_at) VALUES (?, ?, ?, ?, ?, 'processing', ?)",
            (key, openid, msg_id, msg_type, content, now()),
        )
        db.conn.commit()
        return None
    except sqlite3.IntegrityError:
        row = db.conn.execute(
            "SELECT state, reply, reply_kind FROM messages WHERE dedupe_key = ?", (key,)
        ).fetchone()
        return SeenMessage(*row)


def record_reply(db: Database, key: str, reply: str, reply_kind: str, topic: str | None,
                 band: str | None, state: str) -> None:
    """Store the reply given to a message (state: replied, deferred or delivered late)."""
    db.conn.execute(
        "UPDATE messages SET reply = ?, reply_kind = ?, topic = ?, band = ?, state = ?,"
        " latency_ms = (? - received_at) * 1000 WHERE dedupe_key = ?",
        (reply, reply_kind, topic, band, state, now(), key),
    )
    db.conn.commit()


def recent_messages(db: Database, openid: str, limit: int = 50) -> list[dict[str, Any]]:
    """A subscriber's latest messages with the bot's replies, newest first."""
    return list(db.query(
        "SELECT * FROM messages WHERE openid = ? ORDER BY received_at DESC, id DESC LIMIT ?",
        [openid, limit]))


# --- subscribers ---------------------------------------------------------------------

LAST_SEEN_PRECISION = 60.0  # seconds


def touch_subscriber(db: Database, openid: str, subscribed: bool | None = None) -> None:
    """Note that a user interacted (opens the 48-hour window); track (un)subscription."""
    t = now()
    if subscribed is None:
        # Most messages come in bursts from the same user: a minute's precision is plenty
        # for a 48-hour window and spares a write transaction per message.
        row = db.conn.execute("SELECT last_seen_at FROM subscribers WHERE openid = ?",
                              (openid,)).fetchone()
        if row is not None and row[0] is not None and t - row[0] < LAST_SEEN_PRECISION:
            return
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
    db.conn.commit()


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
    db.conn.commit()


# --- outbox and simulator inbox ------------------------------------------------------


def enqueue_message(db: Database, openid: str, text: str, source: str) -> int:
    """Queue a message for delivery through the customer-service API; returns its id."""
    cur = db.conn.execute(
        "INSERT INTO outbox (openid, text, source, status, attempts, next_attempt_at, created_at)"
        " VALUES (?, ?, ?, 'pending', 0, ?, ?)",
        (openid, text, source, now(), now()),
    )
    db.conn.commit()
    return int(cur.lastrowid)


def claim_outbox(db: Database, limit: int = 20, lease_seconds: float = 60.0) -> list[dict[str, Any]]:
    """Take due outbox rows for delivery; a lease stops two workers sending the same row."""
    t = now()
    with immediate(db):
        rows = [dict(r) for r in db.query(
            "SELECT * FROM outbox WHERE status = 'pending' AND next_attempt_at <= ?"
            " ORDER BY id LIMIT ?", [t, limit])]
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
    db.conn.commit()


def add_to_inbox(db: Database, openid: str, text: str) -> None:
    """Deliver a pushed message to the simulator (demo mode)."""
    db.conn.execute("INSERT INTO inbox (openid, text, created_at) VALUES (?, ?, ?)",
                    (openid, text, now()))
    db.conn.commit()


def inbox_since(db: Database, openid: str, after_id: int) -> list[dict[str, Any]]:
    """Simulator inbox messages for a user newer than after_id."""
    return list(db.query("SELECT id, text, created_at FROM inbox WHERE openid = ? AND id > ?"
                         " ORDER BY id", [openid, after_id]))


# --- key/value with expiry (access token cache) ----------------------------------------


def kv_get(db: Database, key: str) -> str | None:
    """A stored value, or None when absent or expired."""
    row = db.conn.execute("SELECT value, expires_at FROM kv WHERE key = ?", (key,)).fetchone()
    if row is None or (row[1] is not None and row[1] <= now()):
        return None
    return row[0]


def kv_set(db: Database, key: str, value: str, ttl: float | None = None) -> None:
    """Store a value, optionally expiring after ttl seconds."""
    db.conn.execute(
        "INSERT INTO kv (key, value, expires_at) VALUES (?, ?, ?) ON CONFLICT(key) DO UPDATE"
        " SET value = excluded.value, expires_at = excluded.expires_at",
        (key, value, None if ttl is None else now() + ttl),
    )
    db.conn.commit()


def kv_delete(db: Database, key: str) -> None:
    """Remove a stored value."""
    db.conn.execute("DELETE FROM kv WHERE key = ?", (key,))
    db.conn.commit()


# --- unanswered questions --------------------------------------------------------------


def record_unanswered(db: Database, openid: str, question: str, band: str,
                      best_topic: str | None, score: float) -> None:
    """Keep a question the bot could not answer, for staff to review."""
    db.conn.execute(
        "INSERT INTO unanswered (openid, question, band, best_topic, score, status, created_at)"
        " VALUES (?, ?, ?, ?, ?, 'open', ?)",
        (openid, question, band, best_topic, score, now()),
    )
    db.conn.commit()


# --- registration: dialogues, applications, status history -----------------------------

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
    return list(db.query("SELECT * FROM dialogues WHERE openid = ? ORDER BY updated_at DESC",
                         [openid]))


def save_dialogue(db: Database, row: dict[str, Any]) -> None:
    """Insert or replace one dialogue row (keyed by openid and form)."""
    db.conn.execute(
        "INSERT OR REPLACE INTO dialogues (openid, form, step, status, attempts, data,"
        " started_at, updated_at) VALUES (:openid, :form, :step, :status, :attempts, :data,"
        " :started_at, :updated_at)", row)
    db.conn.commit()


def delete_dialogue(db: Database, openid: str, form: str) -> None:
    """Forget one dialogue."""
    db.conn.execute("DELETE FROM dialogues WHERE openid = ? AND form = ?", (openid, form))
    db.conn.commit()


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
    db.conn.commit()


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
    return list(db.query("SELECT * FROM applications WHERE openid = ? ORDER BY id DESC", [openid]))


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
    return list(db.query(sql, params))


def get_application(db: Database, ref: str) -> dict[str, Any] | None:
    """One application by reference number, with "history": its status changes, oldest first."""
    app = _row(db, db.conn.execute("SELECT * FROM applications WHERE ref = ?", (ref,)).fetchone())
    if app is not None:
        app["history"] = list(db.query(
            "SELECT status, note, actor, at FROM application_history WHERE application_id = ?"
            " ORDER BY id", [app["id"]]))
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
