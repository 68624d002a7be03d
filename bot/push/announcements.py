"""Announcements and their push jobs as staff see them: audiences, creating, progress,
retry, cancel, the bot's "最新通知" and the fallback channel's daily quota.

    aid = create_announcement(database, text, url, "township:城关镇", "staff-name")
    job = start_job(database, aid)              # snapshot of the audience, status "queued"
    job_progress(database, job)                 # total, delivered, failed, pending, status, ...
    retry_failed(database, job); cancel_job(database, job)
    list_recent_announcements(database, 5, openid)   # the bot's "最新通知"
    quota_status(database, settings.push)       # fallback-channel quota left today

Sending is bot.push.runner's job.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlite_utils import Database

from bot.clock import CHINA_TZ
from bot.settings import PushSettings
from bot.storage import applications, engine, messages, push

# WeChat's answer for a user who unsubscribed; such recipients are not retried.
UNSUBSCRIBED = 43004
# Quota days follow China time (no daylight saving).


@dataclass(frozen=True)
class Audience:
    """Who an announcement is for: all, township (value=name), course (value=id) or loan."""
    kind: str
    value: str = ""


def parse_audience(text: str) -> Audience:
    """Parse "all", "township:NAME", "course:ID" or "loan"; ValueError otherwise."""
    text = (text or "").strip()
    if text in ("all", "loan"):
        return Audience(text)
    kind, _, value = text.partition(":")
    if kind in ("township", "course") and value.strip():
        return Audience(kind, value.strip())
    raise ValueError(f"unknown audience {text!r}")


def audience_openids(database: Database, audience: str) -> list[str]:
    """The openids an audience means now: all subscribers, or applicants (a township is
    known only from applications) who neither withdrew nor unsubscribed."""
    a = parse_audience(audience)
    if a.kind == "all":
        return messages.subscribed_openids(database)
    if a.kind == "township":
        return applications.applicant_openids(database, township=a.value)
    if a.kind == "course":
        return applications.applicant_openids(database, type_="training", course_id=a.value)
    return applications.applicant_openids(database, type_="loan")


def message_text(text: str, url: str | None) -> str:
    """The announcement as one text message: the text, then the link on its own line."""
    return f"{text}\n{url}" if url else text


# --- creating and watching ------------------------------------------------------------


def create_announcement(database: Database, text: str, url: str | None, audience: str,
                        created_by: str) -> int:
    """Store an announcement (listed under "最新通知" at once); returns its id."""
    if not text.strip():
        raise ValueError("announcement text is empty")
    canonical = parse_audience(audience)
    key = canonical.kind + (f":{canonical.value}" if canonical.value else "")
    return push.add_announcement(database, text.strip(), (url or "").strip(), key, created_by)


def start_job(database: Database, announcement_id: int) -> int:
    """The announcement's push job, created with a snapshot of its audience; returns the job id."""
    existing = push.push_job_for(database, announcement_id)
    if existing is not None:
        return existing
    announcement = push.get_announcement(database, announcement_id)
    if announcement is None:
        raise ValueError(f"no announcement {announcement_id}")
    return push.create_push_job(database, announcement_id,
                              audience_openids(database, announcement["audience"]))


def job_progress(database: Database, job_id: int) -> dict[str, Any]:
    """total, delivered (accepted by WeChat), failed, pending (incl. in flight), unknown,
    cancelled, status, by_channel, error (why the job could not send at all, else ''),
    confirmed (known to have reached the user) and not_received (WeChat reported failure).

    A customer-service or demo delivery is confirmed when the call succeeds; template and
    mass sends only once WeChat's TEMPLATESENDJOBFINISH / MASSSENDJOBFINISH came.
    """
    job = push.get_push_job(database, job_id)
    if job is None:
        raise ValueError(f"no push job {job_id}")
    counts = push.push_counts(database, job_id)
    by_status = counts["by_status"]
    by_channel = counts["by_channel"]
    results = counts["template_results"]
    confirmed = (by_channel.get("custom", 0) + by_channel.get("simulator", 0)
                 + results.get("success", 0) + counts["mass_sent"])
    not_received = sum(n for status, n in results.items() if status != "success") + counts["mass_errors"]
    return {
        "job_id": job_id, "announcement_id": job["announcement_id"], "status": job["status"],
        "text": job["text"], "url": job["url"], "audience": job["audience"],
        "total": job["total"],
        "delivered": by_status.get("delivered", 0),
        "failed": by_status.get("failed", 0),
        "pending": by_status.get("pending", 0) + by_status.get("sending", 0),
        "unknown": by_status.get("unknown", 0),
        "cancelled": by_status.get("cancelled", 0),
        "by_channel": counts["by_channel"],
        "created_at": job["created_at"], "finished_at": job["finished_at"],
        "error": job["error"] or "",
        "confirmed": confirmed, "not_received": not_received,
    }


def job_recipients(database: Database, job_id: int, status: str | None = None,
                   limit: int = 100, offset: int = 0) -> list[dict[str, Any]]:
    """Per-recipient rows: openid, status, channel, errcode, error, attempts, updated_at."""
    return push.push_recipient_rows(database, job_id, status, limit, offset)


def retry_failed(database: Database, job_id: int, include_unknown: bool = False) -> int:
    """Queue failed recipients again (not those who unsubscribed); returns how many.

    include_unknown also re-sends rows whose delivery a crash left uncertain: they may
    get the announcement twice, so only staff decide that. Run the job afterwards.
    """
    statuses = ("failed", "unknown") if include_unknown else ("failed",)
    return push.reset_push_recipients(database, job_id, statuses, keep_errcodes=(UNSUBSCRIBED,))


def cancel_job(database: Database, job_id: int) -> bool:
    """Stop a job; recipients not yet reached are marked cancelled. False if it had finished."""
    return push.cancel_push_job(database, job_id)


def list_recent_announcements(database: Database, limit: int = 5,
                              openid: str | None = None) -> list[dict[str, Any]]:
    """Newest announcements (id, text, url, audience, created_at); with openid, those for that user."""
    return push.recent_announcements(database, limit, openid)


def record_template_report(database: Database, msg_id: str, status: str) -> bool:
    """Note WeChat's TEMPLATESENDJOBFINISH (Status "success", "failed:user block", …) on the
    recipient it sent; False if the msgid is not one of ours (or not a number)."""
    if not msg_id.isdigit():
        return False
    return push.record_template_result(database, int(msg_id), status)


def record_mass_report(database: Database, msg_id: str, status: str,
                       counts: Mapping[str, str]) -> bool:
    """Note WeChat's MASSSENDJOBFINISH (Status, TotalCount, SentCount, ErrorCount) on its
    batch; False if the msg_id is not one of ours (or not a number)."""
    if not msg_id.isdigit():
        return False

    def count(name: str) -> int:
        value = counts.get(name, "")
        return int(value) if value.isdigit() else 0
    return push.record_mass_result(database, int(msg_id), status, count("TotalCount"),
                                   count("SentCount"), count("ErrorCount"))


def quota_day(at: float | None = None) -> str:
    """The quota day (China time) of a moment."""
    return datetime.fromtimestamp(engine.now() if at is None else at, CHINA_TZ).strftime("%Y-%m-%d")


def quota_status(database: Database, settings: PushSettings, at: float | None = None) -> dict[str, Any]:
    """Fallback-channel messages used and remaining today: day, used, limit, remaining."""
    day = quota_day(at)
    used = push.quota_used(database, day)
    return {"day": day, "used": used, "limit": settings.daily_quota,
            "remaining": max(settings.daily_quota - used, 0)}


def next_quota_day_start(at: float) -> float:
    """When the quota day after the one containing `at` starts."""
    day = datetime.fromtimestamp(at, CHINA_TZ).replace(hour=0, minute=0, second=0, microsecond=0)
    return (day + timedelta(days=1)).timestamp()
