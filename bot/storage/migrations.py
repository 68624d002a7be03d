"""Every schema migration, in the order it applies.

The names are recorded in each database (sqlite-utils' migrations table), so a migration
is never renamed or reordered; m004 was written before m003 and applies before it.
"""
from __future__ import annotations

import fcntl
from pathlib import Path

from sqlite_utils import Database
from sqlite_utils.migrations import Migrations

from bot.storage.engine import connect, prepare_folder, private_opener

migrations = Migrations("chuangyetong")


def migrate(path: str | Path) -> None:
    """Apply pending migrations; a file lock keeps concurrent starters from racing."""
    path = Path(path)
    prepare_folder(path)
    with open(path.with_name(path.name + ".lock"), "w", opener=private_opener) as lock:
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
    db.table("messages").create({
        "id": int, "dedupe_key": str, "openid": str, "msg_id": str, "msg_type": str,
        "content": str, "reply": str, "reply_kind": str, "topic": str, "band": str,
        "state": str, "received_at": float, "latency_ms": float,
    }, pk="id", not_null={"dedupe_key", "openid", "received_at"})
    db.table("messages").create_index(["dedupe_key"], unique=True)
    db.table("messages").create_index(["openid", "received_at"])
    db.table("messages").create_index(["received_at"])
    db.table("subscribers").create({
        "openid": str, "subscribed": int, "subscribed_at": float,
        "unsubscribed_at": float, "last_seen_at": float,
    }, pk="openid")
    # Per-user conversational state outside forms: the last list shown (menu, category,
    # suggestions) and the unread rest of a long answer.
    db.table("user_state").create({"openid": str, "state": str, "updated_at": float}, pk="openid")
    # Messages sent later through the customer-service API (late replies, notices, pushes
    # in the 48-hour window). In demo mode they land in the simulator's inbox instead.
    db.table("outbox").create({
        "id": int, "openid": str, "text": str, "source": str, "status": str,
        "attempts": int, "errcode": int, "error": str, "next_attempt_at": float,
        "created_at": float, "sent_at": float,
    }, pk="id", not_null={"openid", "text", "status", "created_at"}, defaults={"attempts": 0})
    db.table("outbox").create_index(["status", "next_attempt_at"])
    db.table("inbox").create({"id": int, "openid": str, "text": str, "created_at": float},
                       pk="id", not_null={"openid", "text", "created_at"})
    db.table("inbox").create_index(["openid", "id"])
    db.table("kv").create({"key": str, "value": str, "expires_at": float}, pk="key")
    db.table("unanswered").create({
        "id": int, "openid": str, "question": str, "band": str, "best_topic": str,
        "score": float, "status": str, "created_at": float,
    }, pk="id", not_null={"question", "status", "created_at"})
    db.table("unanswered").create_index(["status", "created_at"])


@migrations()
def m002_applications(db: Database) -> None:
    # A user's progress through a form. `data` is the Vault-encrypted JSON of the answers
    # (they include ID and phone numbers); step and timestamps stay readable for expiry.
    db.table("dialogues").create({
        "openid": str, "form": str, "step": str, "status": str, "attempts": int,
        "data": str, "started_at": float, "updated_at": float,
    }, pk=("openid", "form"), not_null={"step", "status", "data"})
    # Identity answers from the user's last submission, offered for reuse (encrypted).
    db.table("profiles").create({"openid": str, "data": str, "updated_at": float}, pk="openid")
    db.table("applications").create({
        "id": int, "ref": str, "type": str, "openid": str, "status": str,
        "name": str, "phone_enc": str, "phone_masked": str, "id_enc": str, "id_masked": str,
        "id_fingerprint": str,
        "township": str, "village": str, "course_id": str, "course_name": str,
        "returning_worker": int, "amount_yuan": int, "purpose": str, "industry": str, "stage": str,
        "waitlist_position": int, "staff_note": str, "created_at": float, "updated_at": float,
    }, pk="id", not_null={"ref", "type", "openid", "status", "created_at", "updated_at"},
       defaults={"staff_note": ""})
    db.table("applications").create_index(["ref"], unique=True)
    db.table("applications").create_index(["openid", "type", "status"])
    db.table("applications").create_index(["course_id", "status"])
    db.table("applications").create_index(["id_fingerprint", "type", "status"])
    db.table("applications").create_index(["created_at"])
    db.table("application_history").create({
        "id": int, "application_id": int, "status": str, "note": str, "actor": str, "at": float,
    }, pk="id", foreign_keys=[("application_id", "applications", "id")],
       not_null={"application_id", "status", "at"})
    db.table("application_history").create_index(["application_id", "id"])
    # Daily sequence per prefix ("PX20261126" -> 7), bumped inside the submitting transaction.
    db.table("counters").create({"name": str, "value": int}, pk="name", not_null={"value"})


@migrations()
def m004_push(db: Database) -> None:
    db.table("announcements").create({
        "id": int, "text": str, "url": str, "audience": str, "created_by": str,
        "created_at": float,
    }, pk="id", not_null={"text", "audience", "created_at"})
    # One job per announcement: a second job could send it to someone twice.
    db.table("push_jobs").create({
        "id": int, "announcement_id": int, "status": str, "total": int, "runner": str,
        "lease_until": float, "created_at": float, "started_at": float, "finished_at": float,
        "error": str,
    }, pk="id", not_null={"announcement_id", "status", "created_at"},
        foreign_keys=[("announcement_id", "announcements", "id")])
    db.table("push_jobs").create_index(["announcement_id"], unique=True)
    db.table("push_jobs").create_index(["status"])
    db.table("push_recipients").create({
        "id": int, "job_id": int, "openid": str, "status": str, "channel": str,
        "errcode": int, "error": str, "attempts": int, "next_attempt_at": float,
        "batch": str, "updated_at": float,
    }, pk="id", not_null={"job_id", "openid", "status"}, defaults={"attempts": 0},
        foreign_keys=[("job_id", "push_jobs", "id")])
    db.table("push_recipients").create_index(["job_id", "openid"], unique=True)
    db.table("push_recipients").create_index(["job_id", "status", "next_attempt_at"])
    db.table("push_recipients").create_index(["openid"])
    # Messages sent on the fallback channel per day (China time), against [push] daily_quota.
    db.table("push_quota").create({"day": str, "used": int}, pk="day")


@migrations()
def m003_console(db: Database) -> None:
    # Sessions are signed cookies; those issued before sessions_valid_after (set at sign-out
    # and password change) are refused, so a copied cookie dies with the session.
    db.table("staff").create({
        "id": int, "username": str, "password_hash": str, "created_at": float,
        "last_login_at": float, "sessions_valid_after": float,
    }, pk="id", not_null={"username", "password_hash", "created_at"})
    db.table("staff").create_index(["username"], unique=True)
    # Failed sign-ins per typed user name (known or not, so lock-out reveals nothing).
    db.table("login_failures").create({"username": str, "failures": int, "locked_until": float},
                                pk="username", defaults={"failures": 0})
    db.table("audit_log").create({
        "id": int, "staff": str, "action": str, "detail": str, "created_at": float,
    }, pk="id", not_null={"staff", "action", "created_at"})
    db.table("audit_log").create_index(["created_at"])
    # Users who asked for a person ("转人工"); staff answer them from the console.
    db.table("handoffs").create({
        "id": int, "openid": str, "text": str, "status": str, "created_at": float,
        "closed_at": float, "closed_by": str,
    }, pk="id", not_null={"openid", "status", "created_at"})
    db.table("handoffs").create_index(["status", "created_at"])


@migrations()
def m010_protocol_nonces(db: Database) -> None:
    # Signed (timestamp, nonce) pairs seen within [wechat] max_clock_skew_seconds, with the
    # message each carried: WeChat's resend repeats both with the same message, a replayed
    # URL carries another one and is refused.
    db.table("protocol_nonces").create({"nonce": str, "message_key": str, "seen_at": float},
                                 pk="nonce", not_null={"message_key", "seen_at"})
    db.table("protocol_nonces").create_index(["seen_at"])


@migrations()
def m011_push_results(db: Database) -> None:
    # What WeChat reports after accepting a send (TEMPLATESENDJOBFINISH, MASSSENDJOBFINISH):
    # the msgid it returned and, once reported, its final Status ("success", "failed:…").
    db.table("push_recipients").add_column("msg_id", int)
    db.table("push_recipients").add_column("result", str)
    db.table("push_recipients").create_index(["msg_id"])
    # One row per mass batch: its tag (named after the batch), the msg_id of the send and
    # WeChat's counts, so a tag is deleted only after its send finished.
    db.table("push_batches").create({
        "batch": str, "job_id": int, "msg_id": int, "status": str, "total_count": int,
        "sent_count": int, "error_count": int, "created_at": float, "sent_at": float,
        "finished_at": float,
    }, pk="batch", not_null={"job_id", "created_at"})
    db.table("push_batches").create_index(["msg_id"])
    db.table("push_batches").create_index(["job_id"])


@migrations()
def m012_console_throttle(db: Database) -> None:
    # Failed sign-ins per (typed user name, client address): a stranger's guesses slow down
    # only their own address, so they cannot lock staff out. Replaces login_failures.
    db.table("login_throttle").create({
        "username": str, "address": str, "failures": int, "last_failure_at": float,
        "blocked_until": float,
    }, pk=("username", "address"), defaults={"failures": 0})
    db.table("login_failures").drop(ignore=True)


@migrations()
def m013_voice_transcripts(db: Database) -> None:
    # Voice the service recognised itself: the transcript goes in content (masked like
    # typed text) and the time download, conversion and recognition took goes here.
    db.table("messages").add_column("transcribe_ms", float)


@migrations()
def m020_workflow_promoted(db: Database) -> None:
    # When a waitlisted training registration got a freed seat: the applicant's status
    # query says so, and it tells a promoted row from one that never waited.
    db.table("applications").add_column("promoted_at", float)


@migrations()
def m021_people_phone_tail(db: Database) -> None:
    # Staff find a caller by the last four digits of their phone. The masked phone
    # (138****5678) already keeps those four in the clear, as every list shows them, so an
    # index on them covers existing and new rows alike: no backfill needs the vault key.
    db.execute("CREATE INDEX IF NOT EXISTS applications_phone_tail"
               " ON applications (substr(phone_masked, -4))")


@migrations()
def m022_people_staff_disabled(db: Database) -> None:
    # A disabled account (`staff disable NAME`) cannot sign in; NULL means enabled.
    db.table("staff").add_column("disabled_at", float)
