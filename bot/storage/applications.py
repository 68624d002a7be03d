"""Training registrations and loan applications, their reference numbers and history."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlite_utils import Database

from bot.clock import CHINA_TZ
from bot.storage.engine import immediate, now, query

# Application statuses, in the order they usually come (the rules of which may follow
# which are bot/casework.py's). 已取消 is set by staff, 已撤回 by the applicant.
STATUSES = ("已提交", "审核中", "已通过", "未通过", "已完成", "已取消", "已撤回")


# Statuses that still count as "open": a second application for the same thing is refused
# and the course seat stays taken.
OPEN_STATUSES = ("已提交", "审核中", "已通过")
# Statuses that hold a course seat (unless the row is on the waiting list).
SEAT_STATUSES = (*OPEN_STATUSES, "已完成")
# Statuses of applications the applicant gave up (they get no applicant announcements).
DROPPED_STATUSES = ("已取消", "已撤回")


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
        f" AND waitlist_position IS NULL AND status IN ({','.join('?' * len(SEAT_STATUSES))})",
        (course_id, *SEAT_STATUSES)).fetchone()[0]


def waiting_count(db: Database, course_id: str) -> int:
    """Open applications on a course's waiting list."""
    return db.conn.execute(
        "SELECT COUNT(*) FROM applications WHERE type = 'training' AND course_id = ?"
        f" AND waitlist_position IS NOT NULL AND status IN ({','.join('?' * len(OPEN_STATUSES))})",
        (course_id, *OPEN_STATUSES)).fetchone()[0]


def waiting_list(db: Database, course_id: str) -> list[dict[str, Any]]:
    """A course's open waitlisted applications, first in line first."""
    return query(db, "SELECT * FROM applications WHERE type = 'training' AND course_id = ?"
                     " AND waitlist_position IS NOT NULL"
                     f" AND status IN ({','.join('?' * len(OPEN_STATUSES))})"
                     " ORDER BY waitlist_position, id", [course_id, *OPEN_STATUSES])


def take_seat(db: Database, application_id: int, note: str, at: float) -> None:
    """Move a waitlisted application onto a seat, noting it in the history; no commit
    (call inside immediate(), then renumber_waitlist)."""
    db.conn.execute("UPDATE applications SET waitlist_position = NULL, promoted_at = ?,"
                    " updated_at = ? WHERE id = ?", (at, at, application_id))
    db.conn.execute("INSERT INTO application_history (application_id, status, note, actor, at)"
                    " SELECT id, status, ?, 'system', ? FROM applications WHERE id = ?",
                    (note, at, application_id))


def renumber_waitlist(db: Database, course_id: str) -> None:
    """Number a course's waiting list 1, 2, 3… in its order, dropping closed rows from it;
    no commit (call inside immediate())."""
    closed = [s for s in STATUSES if s not in OPEN_STATUSES]
    db.conn.execute("UPDATE applications SET waitlist_position = NULL WHERE course_id = ?"
                    f" AND waitlist_position IS NOT NULL AND status IN ({','.join('?' * len(closed))})",
                    (course_id, *closed))
    for position, row in enumerate(waiting_list(db, course_id), 1):
        if row["waitlist_position"] != position:
            db.conn.execute("UPDATE applications SET waitlist_position = ? WHERE id = ?",
                            (position, row["id"]))


def add_application(db: Database, record: dict[str, Any], prefix: str, at: float,
                    capacity: int | None = None) -> Submission:
    """Store a new application with the next reference number (PREFIX + date + sequence).

    record holds the columns (type, openid, name, phone_enc, … — encrypted by the caller).
    An open application of the same type (and course) by the same openid or ID fingerprint
    is returned instead of adding one. One transaction takes the write lock first, so the
    duplicate check, the seat count
    (capacity given: a full course puts the applicant on the waiting list) and the daily
    counter are consistent across processes. Nobody jumps the waiting list: while anyone
    waits for the course, a newcomer waits too.
    """
    with immediate(db):
        existing = open_application(db, record["openid"], record["type"],
                                    record.get("course_id") if record["type"] == "training" else None,
                                    record.get("id_fingerprint"))
        if existing is not None:
            return Submission(existing, created=False)
        waitlist = None
        if capacity is not None:
            waiting = waiting_count(db, record["course_id"])
            if waiting or seats_taken(db, record["course_id"]) >= capacity:
                waitlist = 1 + waiting
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
    return query(db, "SELECT * FROM applications WHERE openid = ? ORDER BY id DESC", [openid])


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
    where: list[str] = ["1 = 1"]
    params: list[Any] = []
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
    return query(db, sql, params)


def get_application(db: Database, ref: str) -> dict[str, Any] | None:
    """One application by reference number, with "history": its status changes, oldest first."""
    app = _row(db, db.conn.execute("SELECT * FROM applications WHERE ref = ?", (ref,)).fetchone())
    if app is not None:
        app["history"] = query(db,
            "SELECT status, note, actor, at FROM application_history WHERE application_id = ?"
            " ORDER BY id", [app["id"]])
    return app


def change_status(db: Database, ref: str, status: str, note: str, actor: str,
                  at: float | None = None) -> str | None:
    """Set an application's status and staff note, recording who did it in the history.

    The bare write: which steps are allowed, the waiting list and the notices are
    bot/casework.py's. Returns the applicant's openid so the caller can notify them, or None when no
    application has this reference number. Raises ValueError for a status not in STATUSES.
    """
    at = now() if at is None else at
    with immediate(db):
        row = db.conn.execute("SELECT id, openid FROM applications WHERE ref = ?", (ref,)).fetchone()
        if row is None:
            return None
        set_status(db, row[0], status, note, actor, at)
    return row[1]


def set_status(db: Database, application_id: int, status: str, note: str, actor: str,
               at: float, staff_note: bool = True) -> None:
    """Record a status change in the row and its history; no commit (call inside immediate()).

    staff_note=False keeps the note in the history only (the applicant's own words are
    not a staff note). Raises ValueError for a status not in STATUSES.
    """
    if status not in STATUSES:
        raise ValueError(f"unknown status: {status}")
    if staff_note:
        db.conn.execute("UPDATE applications SET status = ?, staff_note = ?, updated_at = ?"
                        " WHERE id = ?", (status, note, at, application_id))
    else:
        db.conn.execute("UPDATE applications SET status = ?, updated_at = ? WHERE id = ?",
                        (status, at, application_id))
    db.conn.execute("INSERT INTO application_history (application_id, status, note, actor, at)"
                    " VALUES (?, ?, ?, ?, ?)", (application_id, status, note, actor, at))


def _row(db: Database, row: tuple | None) -> dict[str, Any] | None:
    if row is None:
        return None
    columns = [c.name for c in db["applications"].columns]
    return dict(zip(columns, row))


def applicant_openids(db: Database, type_: str | None = None, course_id: str | None = None,
                      township: str | None = None) -> list[str]:
    """Applicants (training or loan, of a course, of a township) who neither withdrew
    nor unsubscribed."""
    clauses = [f"a.status NOT IN ({','.join('?' * len(DROPPED_STATUSES))})"]
    params: list[str] = list(DROPPED_STATUSES)
    for column, value in (("type", type_), ("course_id", course_id), ("township", township)):
        if value is not None:
            clauses.append(f"a.{column} = ?")
            params.append(value)
    return [r[0] for r in db.conn.execute(
        "SELECT DISTINCT a.openid FROM applications a LEFT JOIN subscribers s ON s.openid = a.openid"
        f" WHERE {' AND '.join(clauses)} AND COALESCE(s.subscribed, 1) = 1 ORDER BY a.openid", params)]


def encrypted_sample(db: Database) -> str | None:
    """One Vault token the database holds (an ID number, an open form, a saved profile);
    None when it holds no encrypted data, so a new key may be made."""
    row = db.conn.execute(
        "SELECT token FROM (SELECT id_enc AS token FROM applications WHERE id_enc != ''"
        " UNION ALL SELECT data FROM dialogues UNION ALL SELECT data FROM profiles)"
        " WHERE token IS NOT NULL LIMIT 1").fetchone()
    return None if row is None else row[0]
