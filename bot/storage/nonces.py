"""Signed nonces seen recently, with the message each carried (replay protection)."""
from __future__ import annotations

import sqlite3

from sqlite_utils import Database

from bot.storage.engine import commit


def remember_nonce(db: Database, nonce: str, message_key: str, seen_at: float) -> bool:
    """Note the message a nonce carried; False if the nonce came before with another one."""
    try:
        db.conn.execute("INSERT INTO protocol_nonces (nonce, message_key, seen_at) VALUES (?, ?, ?)",
                        (nonce, message_key, seen_at))
    except sqlite3.IntegrityError:
        row = db.conn.execute("SELECT message_key FROM protocol_nonces WHERE nonce = ?",
                              (nonce,)).fetchone()
        return row is not None and row[0] == message_key
    commit(db)
    return True


def forget_nonces(db: Database, before: float) -> None:
    """Drop nonces seen before a time (older requests are refused by their timestamp)."""
    db.conn.execute("DELETE FROM protocol_nonces WHERE seen_at < ?", (before,))
    commit(db)
