"""The overview: messages per day, most-asked topics, how well the bot understood."""
from __future__ import annotations

from datetime import datetime, timedelta

from flask import render_template

from bot import current_runtime, get_db, labels
from bot.clock import CHINA_TZ
from bot.console import bp
from bot.storage import staff

OVERVIEW_DAYS = 30


@bp.get("/")
def overview() -> str:
    """Messages per day, most-asked topics, how well the bot understood, new subscribers."""
    database = get_db()
    since = _local_midnight(OVERVIEW_DAYS - 1)
    per_day = {r["day"]: r["n"] for r in staff.messages_per_day(database, since)}
    days = [(_local_day(since + i * 86400), per_day.get(_local_day(since + i * 86400), 0))
            for i in range(OVERVIEW_DAYS)]
    bands = staff.band_counts(database, since)
    asked = sum(bands.values())
    shares = [(label, bands.get(band, 0), round(100 * bands.get(band, 0) / asked) if asked else 0)
              for band, label in labels.BANDS.items()]
    topics = [(topic_title(r["topic"]), r["n"]) for r in staff.top_topics(database, since)]
    return render_template(
        "console/overview.html", days=days, max_day=max([n for _, n in days] + [1]),
        shares=shares, asked=asked, topics=topics,
        new_subscribers=staff.new_subscribers(database, since),
        new_subscribers_week=staff.new_subscribers(database, _local_midnight(6)),
        open_unanswered=staff.count_open_unanswered(database),
        open_handoffs=len(staff.open_handoffs(database)), period=OVERVIEW_DAYS,
        applications_total=sum(c["n"] for c in staff.application_counts(database, "type")),
        application_counts=[(title, staff.application_counts(database, column)) for column, title in
                            (("status", "按状态"), ("course_name", "按课程"), ("township", "按乡镇"))])


def _local_midnight(days_ago: int) -> float:
    today = datetime.now(CHINA_TZ).replace(hour=0, minute=0, second=0, microsecond=0)
    return (today - timedelta(days=days_ago)).timestamp()


def _local_day(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, CHINA_TZ).strftime("%Y-%m-%d")


def topic_title(topic_id: str | None) -> str:
    """A topic's title for staff (its id if the topic is gone)."""
    topic = current_runtime().library.kb.topics.get(topic_id) if topic_id else None
    return topic.title if topic else (topic_id or "")
