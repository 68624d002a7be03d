"""The message log (which doubles as the record of what was answered), subscribers, and
the questions kept for staff."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlite_utils import Database

from bot.storage.engine import commit, now, query


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
                   topic: str | None, band: str | None, state: str,
                   transcribe_ms: float | None = None) -> None:
    """Log a message with the reply it got (state: replied, or deferred past the budget;
    for voice, content is the transcript and transcribe_ms the time recognition took).

    The key is unique: recording a message twice raises sqlite3.IntegrityError.
    """
    db.conn.execute(
        "INSERT INTO messages (dedupe_key, openid, msg_id, msg_type, content, received_at,"
        " reply, reply_kind, topic, band, state, latency_ms, transcribe_ms) VALUES (?, ?, ?, ?,"
        " ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (key, openid, msg_id, msg_type, content, received_at, reply, reply_kind, topic, band,
         state, (now() - received_at) * 1000, transcribe_ms),
    )
    commit(db)


def count_recent(db: Database, openid: str, window: float, band: str) -> tuple[int, int]:
    """A user's messages logged in the last `window` seconds, from every process: how many
    got an ordinary answer, and how many got a text reply marked with `band`."""
    row = db.conn.execute(
        "SELECT COUNT(*) - COUNT(CASE WHEN band = ?1 THEN 1 END),"
        " COUNT(CASE WHEN band = ?1 AND reply_kind = 'text' THEN 1 END)"
        " FROM messages WHERE openid = ?2 AND received_at >= ?3",
        (band, openid, now() - window)).fetchone()
    return row[0], row[1]


def prune_messages(db: Database, before: float, batch: int = 1000) -> int:
    """Delete messages logged before a time, and with them their dedupe keys; returns how
    many. A batch per commit, so that writers queue behind none for long."""
    pruned = 0
    while True:
        deleted = db.conn.execute(
            "DELETE FROM messages WHERE id IN (SELECT id FROM messages WHERE received_at < ?"
            " LIMIT ?)", (before, batch)).rowcount
        commit(db)
        pruned += deleted
        if deleted < batch:
            return pruned


def recent_messages(db: Database, openid: str, limit: int = 50) -> list[dict[str, Any]]:
    """A subscriber's latest messages with the bot's replies, newest first."""
    return query(db,
        "SELECT * FROM messages WHERE openid = ? ORDER BY received_at DESC, id DESC LIMIT ?",
        [openid, limit])


def conversation(db: Database, openid: str, limit: int = 500) -> list[dict[str, Any]]:
    """A subscriber's latest `limit` entries, oldest first: what they sent (kind "user", with
    msg_type), the bot's replies ("bot"), and what was sent to them later: staff replies,
    notices ("staff-reply", "notice": the outbox source) and announcements ("announcement",
    with the recipient status). Late replies are in the message log and not repeated."""
    rows = query(db,
        "SELECT * FROM ("
        " SELECT received_at AS at, 0 AS rank, id AS seq, 'user' AS kind, content AS text,"
        "  msg_type, state AS status FROM messages WHERE openid = ?1"
        " UNION ALL SELECT received_at, 1, id, 'bot', reply, reply_kind, state FROM messages"
        "  WHERE openid = ?1 AND COALESCE(reply, '') != ''"
        " UNION ALL SELECT created_at, 2, id, source, text, NULL, status FROM outbox"
        "  WHERE openid = ?1 AND COALESCE(source, '') != 'late-reply'"
        " UNION ALL SELECT COALESCE(r.updated_at, a.created_at), 2, r.id, 'announcement', a.text,"
        "  NULL, r.status FROM push_recipients r JOIN push_jobs j ON j.id = r.job_id"
        "  JOIN announcements a ON a.id = j.announcement_id WHERE r.openid = ?1"
        ") ORDER BY at DESC, rank DESC, seq DESC LIMIT ?2", [openid, limit])
    rows.reverse()
    return rows


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
    commit(db)
    return t


def record_unanswered(db: Database, openid: str, question: str, band: str,
                      best_topic: str | None, score: float) -> None:
    """Keep a question the bot could not answer, for staff to review."""
    db.conn.execute(
        "INSERT INTO unanswered (openid, question, band, best_topic, score, status, created_at)"
        " VALUES (?, ?, ?, ?, ?, 'open', ?)",
        (openid, question, band, best_topic, score, now()),
    )
    commit(db)


def subscribed_openids(db: Database) -> list[str]:
    """Every current subscriber."""
    return [r[0] for r in db.conn.execute(
        "SELECT openid FROM subscribers WHERE subscribed = 1 ORDER BY openid")]


def mark_unsubscribed(db: Database, openid: str) -> None:
    """WeChat says the user no longer follows the account (43004)."""
    db.conn.execute("UPDATE subscribers SET subscribed = 0, unsubscribed_at = ? WHERE openid = ?",
                    (now(), openid))
    commit(db)


def open_unanswered(db: Database, limit: int = 500) -> list[dict[str, Any]]:
    """Questions still waiting for review, newest first."""
    return query(db, "SELECT * FROM unanswered WHERE status = 'open'"
                      " ORDER BY created_at DESC, id DESC LIMIT ?", [limit])


def get_unanswered(db: Database, row_id: int) -> dict[str, Any] | None:
    """One unanswered question by id."""
    rows = query(db, "SELECT * FROM unanswered WHERE id = ?", [row_id])
    return rows[0] if rows else None


def close_unanswered(db: Database, ids: list[int], status: str) -> int:
    """Take open questions off the review list (status: added or out_of_scope)."""
    if not ids:
        return 0
    marks = ",".join("?" * len(ids))
    cur = db.conn.execute(f"UPDATE unanswered SET status = ? WHERE status = 'open' AND id IN ({marks})",
                          [status, *ids])
    commit(db)
    return cur.rowcount
