"""Staff accounts and sign-in throttling, the audit log, hand-offs to a person, and the
statistics the console shows."""
from __future__ import annotations

import sqlite3
from typing import Any

from sqlite_utils import Database

from bot.storage.engine import commit, immediate, inserted_id, now, query


def add_staff(db: Database, username: str, password_hash: str) -> bool:
    """Create a staff account; False when the name is taken."""
    try:
        db.conn.execute("INSERT INTO staff (username, password_hash, created_at) VALUES (?, ?, ?)",
                        (username, password_hash, now()))
    except sqlite3.IntegrityError:
        return False
    commit(db)
    return True


def set_staff_password(db: Database, username: str, password_hash: str) -> bool:
    """Replace a staff member's password hash and end their sessions; False if no such account."""
    cur = db.conn.execute("UPDATE staff SET password_hash = ?, sessions_valid_after = ?"
                          " WHERE username = ?", (password_hash, now(), username))
    commit(db)
    return cur.rowcount > 0


def get_staff(db: Database, username: str) -> dict[str, Any] | None:
    """A staff account by user name."""
    rows = query(db, "SELECT * FROM staff WHERE username = ?", [username])
    return rows[0] if rows else None


def list_staff(db: Database) -> list[dict[str, Any]]:
    """Every staff account (no password hashes), by user name."""
    return query(db, "SELECT username, created_at, last_login_at, disabled_at FROM staff"
                     " ORDER BY username")


def set_staff_disabled(db: Database, username: str, disabled: bool) -> bool:
    """Disable an account (ending its sessions) or enable it again; False if no such account."""
    if disabled:
        cur = db.conn.execute("UPDATE staff SET disabled_at = COALESCE(disabled_at, ?),"
                              " sessions_valid_after = ? WHERE username = ?",
                              (now(), now(), username))
    else:
        cur = db.conn.execute("UPDATE staff SET disabled_at = NULL WHERE username = ?", (username,))
    commit(db)
    return cur.rowcount > 0


def end_sessions(db: Database, username: str) -> None:
    """Refuse every session the staff member signed in with so far (sign-out)."""
    db.conn.execute("UPDATE staff SET sessions_valid_after = ? WHERE username = ?", (now(), username))
    commit(db)


# Failures older than this are forgotten, so a staff member's typos of last week do not count.
THROTTLE_MEMORY_SECONDS = 86400


def login_blocked_until(db: Database, username: str, address: str) -> float | None:
    """When sign-ins for a user name from an address are allowed again, if they are not now."""
    row = db.conn.execute("SELECT blocked_until FROM login_throttle WHERE username = ? AND address = ?",
                          (username, address)).fetchone()
    return row[0] if row and row[0] and row[0] > now() else None


def record_login_failure(db: Database, username: str, address: str, free_failures: int,
                         max_wait_seconds: float) -> float | None:
    """Count a failed sign-in from an address; past free_failures each one waits twice as long.

    Returns when the next try from that address is allowed, or None if it is allowed now.
    """
    with immediate(db):
        at = now()
        row = db.conn.execute("SELECT failures, last_failure_at FROM login_throttle"
                              " WHERE username = ? AND address = ?", (username, address)).fetchone()
        fresh = row is None or (row[1] or 0) < at - THROTTLE_MEMORY_SECONDS
        failures = 1 if fresh else row[0] + 1
        excess = failures - free_failures
        # Capped exponent: 2 ** failures of a long attack would overflow a float.
        until = at + min(2.0 ** min(excess, 32), max_wait_seconds) if excess >= 0 else None
        db.conn.execute(
            "INSERT INTO login_throttle (username, address, failures, last_failure_at, blocked_until)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT(username, address) DO UPDATE SET"
            " failures = excluded.failures, last_failure_at = excluded.last_failure_at,"
            " blocked_until = excluded.blocked_until",
            (username, address, failures, at, until))
    return until


def record_login_success(db: Database, username: str, address: str | None = None) -> None:
    """Clear a user name's failures from that address (from every address when None) and note
    the sign-in time."""
    if address is None:
        db.conn.execute("DELETE FROM login_throttle WHERE username = ?", (username,))
    else:
        db.conn.execute("DELETE FROM login_throttle WHERE username = ? AND address = ?",
                        (username, address))
    db.conn.execute("UPDATE staff SET last_login_at = ? WHERE username = ?", (now(), username))
    commit(db)


def audit(db: Database, staff: str, action: str, detail: str = "") -> None:
    """Write one staff action to the audit log."""
    db.conn.execute("INSERT INTO audit_log (staff, action, detail, created_at) VALUES (?, ?, ?, ?)",
                    (staff, action, detail, now()))
    commit(db)


def audit_entries(db: Database, limit: int = 200, offset: int = 0) -> list[dict[str, Any]]:
    """Audit log entries, newest first."""
    return query(db, "SELECT * FROM audit_log ORDER BY id DESC LIMIT ? OFFSET ?",
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
        return inserted_id(cur)


def open_handoffs(db: Database) -> list[dict[str, Any]]:
    """Open requests for a person, oldest first."""
    return query(db, "SELECT * FROM handoffs WHERE status = 'open' ORDER BY created_at, id")


def close_handoff(db: Database, openid: str, staff: str) -> int:
    """Mark a user's open request answered; returns how many were closed."""
    cur = db.conn.execute(
        "UPDATE handoffs SET status = 'closed', closed_at = ?, closed_by = ?"
        " WHERE openid = ? AND status = 'open'", (now(), staff, openid))
    commit(db)
    return cur.rowcount


def handoff_forms(db: Database, openid: str) -> list[dict[str, Any]]:
    """A user's forms in progress: which form, which step, when touched (never the answers)."""
    return query(db, "SELECT form, step, status, updated_at FROM dialogues WHERE openid = ?"
                     " ORDER BY updated_at DESC", [openid])


def names_for(db: Database, openids: list[str]) -> dict[str, str]:
    """openid -> the name on that user's latest application, for those who gave one."""
    names: dict[str, str] = {}
    unique = list(dict.fromkeys(openids))
    for start in range(0, len(unique), 500):  # well inside SQLite's limit on parameters
        chunk = unique[start:start + 500]
        names.update(db.conn.execute(
            "SELECT openid, name FROM applications WHERE id IN (SELECT MAX(id) FROM applications"
            f" WHERE openid IN ({','.join('?' * len(chunk))}) AND COALESCE(name, '') != ''"
            " GROUP BY openid)", chunk).fetchall())
    return names


def find_people(db: Database, text: str, limit: int = 50) -> list[dict[str, Any]]:
    """Applicants found by part of a name or reference number, or (four digits) by their
    phone's last four; one row per person, their latest matching application, newest first."""
    if len(text) == 4 and text.isascii() and text.isdigit():
        where, params = "substr(phone_masked, -4) = ?", [text]
    else:
        pattern = "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        where, params = "(name LIKE ? ESCAPE '\\' OR ref LIKE ? ESCAPE '\\')", [pattern, pattern]
    return query(db,
        "SELECT a.openid, a.name, a.ref, a.type, a.status, a.phone_masked, a.township, a.created_at,"
        " (SELECT COUNT(*) FROM applications b WHERE b.openid = a.openid) AS n FROM applications a"
        f" WHERE a.id IN (SELECT MAX(id) FROM applications WHERE {where} GROUP BY openid)"
        " ORDER BY a.created_at DESC, a.id DESC LIMIT ?", [*params, limit])


def recent_conversations(db: Database, limit: int = 100) -> list[dict[str, Any]]:
    """Subscribers by latest message, with that message and their message count."""
    return query(db,
        "SELECT m.openid, m.content, m.received_at, c.n FROM messages m JOIN"
        " (SELECT openid, MAX(id) AS last_id, COUNT(*) AS n FROM messages GROUP BY openid) c"
        " ON m.id = c.last_id ORDER BY m.received_at DESC LIMIT ?", [limit])


def messages_per_day(db: Database, since: float, utc_offset_hours: float = 8) -> list[dict[str, Any]]:
    """Inbound messages per local calendar day since a time (China time by default)."""
    return query(db,
        "SELECT date(received_at + ? * 3600, 'unixepoch') AS day, COUNT(*) AS n FROM messages"
        " WHERE received_at >= ? GROUP BY day ORDER BY day", [utc_offset_hours, since])


def top_topics(db: Database, since: float, limit: int = 10) -> list[dict[str, Any]]:
    """Most-answered topics since a time."""
    return query(db,
        "SELECT topic, COUNT(*) AS n FROM messages WHERE received_at >= ? AND topic IS NOT NULL"
        " AND topic != '' GROUP BY topic ORDER BY n DESC, topic LIMIT ?", [since, limit])


def band_counts(db: Database, since: float) -> dict[str, int]:
    """How many questions were answered, suggested or not understood since a time."""
    return {r["band"]: r["n"] for r in query(db,
        "SELECT band, COUNT(*) AS n FROM messages WHERE received_at >= ?"
        " AND band IN ('answer', 'suggest', 'unknown') GROUP BY band", [since])}


def new_subscribers(db: Database, since: float) -> int:
    """Subscribers who followed since a time and still follow."""
    return db.conn.execute("SELECT COUNT(*) FROM subscribers WHERE subscribed = 1"
                           " AND subscribed_at >= ?", (since,)).fetchone()[0]


def application_counts(db: Database, column: str) -> list[dict[str, Any]]:
    """How many applications per course, township, status or type (the console overview)."""
    if column not in ("course_name", "township", "status", "type"):
        raise ValueError(f"cannot count applications by {column}")
    return query(db,
        f"SELECT {column} AS value, COUNT(*) AS n FROM applications"
        f" WHERE {column} IS NOT NULL AND {column} != '' GROUP BY {column} ORDER BY n DESC, value")


def count_open_unanswered(db: Database) -> int:
    """How many unanswered questions wait for review."""
    return int(db.conn.execute("SELECT COUNT(*) FROM unanswered WHERE status = 'open'").fetchone()[0])


def open_unanswered_page(db: Database, limit: int, offset: int = 0) -> list[dict[str, Any]]:
    """One page of the questions waiting for review, newest first."""
    return query(db, "SELECT * FROM unanswered WHERE status = 'open'"
                     " ORDER BY created_at DESC, id DESC LIMIT ? OFFSET ?", [limit, offset])
