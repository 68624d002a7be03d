"""Key/value rows with an expiry: cross-process leases and the shared access token.

The put/claim/delete_if verbs do not commit: they are meant for inside immediate().
"""
from __future__ import annotations

from sqlite_utils import Database

from bot.storage.engine import commit, immediate, now


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
    commit(db)


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


def note_start(db: Database, who: str) -> None:
    """Record that a process started, committed at once: proves the database takes writes."""
    with immediate(db):
        kv_put(db, "started", who, None)
