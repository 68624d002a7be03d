"""Every schema migration, in the order it applies.

The names are recorded in each database (sqlite-utils' migrations table), so a migration
is never renamed or reordered; m004 was written before m003 and applies before it.
"""
from __future__ import annotations

import fcntl
from pathlib import Path

from sqlite_utils import Database
from sqlite_utils.migrations import Migrations

from bot.storage.engine import connect

migrations = Migrations("chuangyetong")


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


@migrations()
def m010_protocol_nonces(db: Database) -> None:
    # Signed (timestamp, nonce) pairs seen within [wechat] max_clock_skew_seconds, with the
    # message each carried: WeChat's resend repeats both with the same message, a replayed
    # URL carries another one and is refused.
    db["protocol_nonces"].create({"nonce": str, "message_key": str, "seen_at": float},
                                 pk="nonce", not_null={"message_key", "seen_at"})
    db["protocol_nonces"].create_index(["seen_at"])
