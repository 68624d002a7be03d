"""Per-user state across turns: menu state, form progress and the saved identity."""
from __future__ import annotations

import json
from typing import Any

from sqlite_utils import Database

from bot.storage.engine import commit, now, query


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
    commit(db)


def load_dialogues(db: Database, openid: str) -> list[dict[str, Any]]:
    """The user's dialogue rows, most recently touched first."""
    return query(db, "SELECT * FROM dialogues WHERE openid = ? ORDER BY updated_at DESC",
                      [openid])


def set_dialogue_status(db: Database, openid: str, form: str, status: str, at: float) -> None:
    """Change a dialogue's status and touched time only."""
    db.conn.execute("UPDATE dialogues SET status = ?, updated_at = ? WHERE openid = ? AND form = ?",
                    (status, at, openid, form))
    commit(db)


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
    commit(db)


def delete_dialogue(db: Database, openid: str, form: str) -> None:
    """Forget one dialogue."""
    db.conn.execute("DELETE FROM dialogues WHERE openid = ? AND form = ?", (openid, form))
    commit(db)


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
    commit(db)
