"""Announcements, push jobs and their recipients, the customer-service outbox, the
simulator inbox and the fallback channel's daily quota.

A push job sends one announcement to a snapshot of its audience. Each recipient row
moves pending -> sending -> delivered | failed | unknown, one commit per step, so a
crash leaves at most the in-flight rows in "sending" (see bot/push/ for what a
resumed job does with them). Mass sends go out in batches: rows of one batch share a
clientmsgid, which makes WeChat refuse a repeat (45065).
"""
from __future__ import annotations

from typing import Any

from sqlite_utils import Database

from bot.storage.engine import commit, immediate, inserted_id, now, query


def enqueue_message(db: Database, openid: str, text: str, source: str) -> int:
    """Queue a message for delivery through the customer-service API; returns its id."""
    cur = db.conn.execute(
        "INSERT INTO outbox (openid, text, source, status, attempts, next_attempt_at, created_at)"
        " VALUES (?, ?, ?, 'pending', 0, ?, ?)",
        (openid, text, source, now(), now()),
    )
    commit(db)
    return inserted_id(cur)


def claim_outbox(db: Database, limit: int = 20, lease_seconds: float = 60.0) -> list[dict[str, Any]]:
    """Take due outbox rows for delivery; a lease stops two workers sending the same row."""
    t = now()
    with immediate(db):
        rows = query(db, "SELECT * FROM outbox WHERE status = 'pending' AND next_attempt_at <= ?"
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
    commit(db)


def add_to_inbox(db: Database, openid: str, text: str) -> None:
    """Deliver a pushed message to the simulator (demo mode)."""
    db.conn.execute("INSERT INTO inbox (openid, text, created_at) VALUES (?, ?, ?)",
                    (openid, text, now()))
    commit(db)


def inbox_since(db: Database, openid: str, after_id: int) -> list[dict[str, Any]]:
    """Simulator inbox messages for a user newer than after_id."""
    return query(db, "SELECT id, text, created_at FROM inbox WHERE openid = ? AND id > ?"
                      " ORDER BY id", [openid, after_id])


def add_announcement(db: Database, text: str, url: str, audience: str, created_by: str) -> int:
    """Store an announcement; returns its id."""
    cur = db.conn.execute(
        "INSERT INTO announcements (text, url, audience, created_by, created_at)"
        " VALUES (?, ?, ?, ?, ?)", (text, url, audience, created_by, now()))
    commit(db)
    return inserted_id(cur)


def get_announcement(db: Database, announcement_id: int) -> dict[str, Any] | None:
    """One announcement row."""
    rows = query(db, "SELECT * FROM announcements WHERE id = ?", [announcement_id])
    return rows[0] if rows else None


def recent_announcements(db: Database, limit: int, openid: str | None = None) -> list[dict[str, Any]]:
    """Newest announcements not cancelled; with openid, only those addressed to that user."""
    where = "(j.status IS NULL OR j.status != 'cancelled')"
    params: list[Any] = []
    if openid is not None:
        where += (" AND (a.audience = 'all' OR EXISTS (SELECT 1 FROM push_recipients r"
                  " WHERE r.job_id = j.id AND r.openid = ?))")
        params.append(openid)
    return query(db,
        "SELECT a.id, a.text, a.url, a.audience, a.created_by, a.created_at FROM announcements a"
        f" LEFT JOIN push_jobs j ON j.announcement_id = a.id WHERE {where}"
        " ORDER BY a.created_at DESC, a.id DESC LIMIT ?", params + [limit])


def create_push_job(db: Database, announcement_id: int, openids: list[str]) -> int:
    """The announcement's job with its recipients (created once, atomically); returns its id."""
    with immediate(db):
        row = db.conn.execute("SELECT id FROM push_jobs WHERE announcement_id = ?",
                              (announcement_id,)).fetchone()
        if row:
            return int(row[0])
        t = now()
        unique = list(dict.fromkeys(openids))
        job_id = inserted_id(db.conn.execute(
            "INSERT INTO push_jobs (announcement_id, status, total, created_at)"
            " VALUES (?, 'queued', ?, ?)", (announcement_id, len(unique), t)))
        db.conn.executemany(
            "INSERT INTO push_recipients (job_id, openid, status, attempts, next_attempt_at,"
            " updated_at) VALUES (?, ?, 'pending', 0, ?, ?)",
            [(job_id, o, t, t) for o in unique])
    return job_id


def get_push_job(db: Database, job_id: int) -> dict[str, Any] | None:
    """One job row joined with its announcement's text, url and audience."""
    rows = query(db,
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
    return query(db,
        "SELECT id, status, runner, lease_until FROM push_jobs"
        " WHERE status IN ('queued', 'running', 'waiting') ORDER BY id")


def claim_push_job(db: Database, job_id: int, runner: str, lease_seconds: float,
                   runner_dead: Any, repeat_template_since: float | None = None) -> bool:
    """Become the job's only runner if it is unfinished and its runner is gone.

    Rows a dead runner left in "sending" become "unknown" on the customer-service
    channel: the call may have reached WeChat, which has no idempotency key there.
    Template rows whose call started at or after repeat_template_since are pending again
    (their client_msg_id makes WeChat drop a repeat); older ones become "unknown" too.
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
        if repeat_template_since is not None:
            db.conn.execute(
                "UPDATE push_recipients SET status = 'pending', next_attempt_at = ?"
                " WHERE job_id = ? AND status = 'sending' AND channel = 'template'"
                " AND updated_at >= ?", (t, job_id, repeat_template_since))
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
    commit(db)
    return cur.rowcount > 0


def set_push_job_error(db: Database, job_id: int, error: str) -> None:
    """Note why a job could not send at all (e.g. no access token); '' clears it."""
    db.conn.execute("UPDATE push_jobs SET error = ? WHERE id = ?", (error, job_id))
    commit(db)


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
    return query(db,
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
                refund_day: str | None = None, expect: str = "sending",
                msg_id: int | None = None) -> None:
    """Record a recipient's outcome (pending again with retry_at, the msgid WeChat gave a
    template send); refund quota if not sent.

    Only a row still in the expected status changes, so a runner never overwrites
    what another one recorded.
    """
    with immediate(db):
        changed = db.conn.execute(
            "UPDATE push_recipients SET status = ?, channel = COALESCE(?, channel), errcode = ?,"
            " error = ?, next_attempt_at = COALESCE(?, next_attempt_at), updated_at = ?,"
            " msg_id = COALESCE(?, msg_id) WHERE id = ? AND status = ?",
            (status, channel, errcode, error, retry_at, now(), msg_id, row_id, expect)).rowcount
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
    return query(db,
        "SELECT id, openid, status, batch, attempts FROM push_recipients WHERE job_id = ?"
        " AND channel = 'mass' AND (status = 'sending' OR (status = 'pending'"
        " AND next_attempt_at <= ?)) ORDER BY id", [job_id, now()])


def start_mass_batch(db: Database, job_id: int, row_ids: list[int], batch: str,
                     quota: tuple[str, int]) -> list[int]:
    """Put pending rows into a batch as "sending", taking their quota; returns the rows taken."""
    day, limit = quota
    taken = []
    with immediate(db):
        db.conn.execute("INSERT OR IGNORE INTO push_batches (batch, job_id, created_at)"
                        " VALUES (?, ?, ?)", (batch, job_id, now()))
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
                      retry_at: float | None = None, msg_id: int | None = None) -> None:
    """Record the outcome of a mass batch for all its rows (and the send's msg_id)."""
    with immediate(db):
        if status == "delivered":
            db.conn.execute("UPDATE push_batches SET sent_at = COALESCE(sent_at, ?),"
                            " msg_id = COALESCE(?, msg_id) WHERE batch = ?", (now(), msg_id, batch))
        db.conn.execute(
            "UPDATE push_recipients SET status = ?, errcode = ?, error = ?,"
            " next_attempt_at = COALESCE(?, next_attempt_at), updated_at = ?,"
            " batch = CASE WHEN ? = 'pending' THEN NULL ELSE batch END"
            " WHERE job_id = ? AND batch = ? AND status = 'sending'",
            (status, errcode, error, retry_at, now(), status, job_id, batch))


def finished_batches(db: Database, names: list[str], sent_before: float) -> set[str]:
    """Those of the named batches that are ours and done with their tag: none of their
    rows is being sent, and the send never went out, WeChat reported it finished, or it
    went out before sent_before (the report may never come)."""
    if not names:
        return set()
    marks = ",".join("?" * len(names))
    return {r[0] for r in db.conn.execute(
        f"SELECT b.batch FROM push_batches b WHERE b.batch IN ({marks})"
        " AND (b.sent_at IS NULL OR b.finished_at IS NOT NULL OR b.sent_at < ?)"
        " AND NOT EXISTS (SELECT 1 FROM push_recipients r WHERE r.batch = b.batch"
        " AND r.status = 'sending')", [*names, sent_before])}


def record_template_result(db: Database, msg_id: int, status: str) -> bool:
    """Store WeChat's final Status of a template send (TEMPLATESENDJOBFINISH); False if
    no recipient has that msgid."""
    changed = db.conn.execute(
        "UPDATE push_recipients SET result = ? WHERE msg_id = ? AND channel = 'template'",
        (status, msg_id)).rowcount
    commit(db)
    return changed > 0


def record_mass_result(db: Database, msg_id: int, status: str, total: int, sent: int,
                       errors: int) -> bool:
    """Store WeChat's report of a mass send (MASSSENDJOBFINISH); False if no batch has that msg_id."""
    changed = db.conn.execute(
        "UPDATE push_batches SET status = ?, total_count = ?, sent_count = ?, error_count = ?,"
        " finished_at = ? WHERE msg_id = ?", (status, total, sent, errors, now(), msg_id)).rowcount
    commit(db)
    return changed > 0


def push_counts(db: Database, job_id: int) -> dict[str, Any]:
    """Recipient counts by status and, for delivered ones, by channel; and what WeChat
    reported afterwards: template results by Status, mass batches' sent and error counts."""
    by_status = dict(db.conn.execute(
        "SELECT status, COUNT(*) FROM push_recipients WHERE job_id = ? GROUP BY status", (job_id,)))
    by_channel = dict(db.conn.execute(
        "SELECT channel, COUNT(*) FROM push_recipients WHERE job_id = ? AND status = 'delivered'"
        " GROUP BY channel", (job_id,)))
    template_results = dict(db.conn.execute(
        "SELECT result, COUNT(*) FROM push_recipients WHERE job_id = ? AND channel = 'template'"
        " AND result IS NOT NULL GROUP BY result", (job_id,)))
    sent, errors = db.conn.execute(
        "SELECT COALESCE(SUM(sent_count), 0), COALESCE(SUM(error_count), 0) FROM push_batches"
        " WHERE job_id = ? AND finished_at IS NOT NULL", (job_id,)).fetchone()
    return {"by_status": by_status, "by_channel": by_channel,
            "template_results": template_results, "mass_sent": sent, "mass_errors": errors}


def push_recipient_rows(db: Database, job_id: int, status: str | None = None,
                        limit: int = 100, offset: int = 0) -> list[dict[str, Any]]:
    """A job's recipients with status, channel, error code and attempts."""
    where = "job_id = ?"
    params: list[Any] = [job_id]
    if status is not None:
        where += " AND status = ?"
        params.append(status)
    return query(db,
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


def announcements_with_jobs(db: Database, limit: int = 20) -> list[dict[str, Any]]:
    """Newest announcements, cancelled ones included, with their push job id."""
    return query(db,
        "SELECT a.*, j.id AS job_id FROM announcements a LEFT JOIN push_jobs j"
        " ON j.announcement_id = a.id ORDER BY a.id DESC LIMIT ?", [limit])
