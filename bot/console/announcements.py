"""Announcements: compose, preview, send in the background, follow progress, retry, cancel."""
from __future__ import annotations

import re
from typing import Any

from flask import abort, flash, g, jsonify, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from bot import current_runtime, get_db, labels
from bot.console import bp, record
from bot.push import announcements as news
from bot.push import runner
from bot.storage import push

MAX_ANNOUNCEMENT_CHARS = 600


@bp.context_processor
def push_labels() -> dict[str, Any]:
    """Chinese names of push statuses and channels for the templates."""
    return {"job_status": labels.JOB_STATUS, "recipient_status": labels.RECIPIENT_STATUS,
            "channels": labels.CHANNELS}


def audience_label(audience: str) -> str:
    """Chinese name of an audience key such as "township:城关镇" or "course:tea"."""
    kind, _, value = audience.partition(":")
    if kind == "course":
        names = {c.id: c.name for c in current_runtime().settings.courses}
        value = names.get(value, value)
    return labels.AUDIENCES.get(kind, kind) + (f"：{value}" if value else "")


def _audience_from_form() -> str:
    kind = request.form.get("audience", "all")
    value = request.form.get(kind, "").strip() if kind in ("township", "course") else ""
    return f"{kind}:{value}" if value else kind


@bp.get("/announcements")
def announcements() -> str:
    """Compose form, fallback-channel quota and the latest announcements with their progress."""
    database = get_db()
    rows = []
    for a in push.announcements_with_jobs(database, 20):
        rows.append((a, news.job_progress(database, a["job_id"]) if a["job_id"] else None))
    settings = current_runtime().settings
    return render_template("console/announcements.html", rows=rows, form={},
                           quota=news.quota_status(database, settings.push),
                           settings=settings, audience_label=audience_label)


@bp.post("/announcements/preview")
def preview_announcement() -> str | tuple[str, int]:
    """Show the message as users will get it and how many will get it, before sending."""
    text = request.form.get("text", "").strip()
    url = request.form.get("url", "").strip()
    audience = _audience_from_form()
    settings = current_runtime().settings
    error = _announcement_problem(text, url, audience)
    if error:
        database = get_db()
        return render_template("console/announcements.html", rows=[], form=request.form,
                               error=error, quota=news.quota_status(database, settings.push),
                               settings=settings, audience_label=audience_label), 400
    count = len(news.audience_openids(get_db(), audience))
    return render_template("console/announcement_preview.html", text=text, url=url,
                           audience=audience, label=audience_label(audience), count=count,
                           message=news.message_text(text, url))


def _announcement_problem(text: str, url: str, audience: str) -> str:
    if not text:
        return "请填写通知内容。"
    if len(text) > MAX_ANNOUNCEMENT_CHARS:
        return f"通知太长了，请控制在 {MAX_ANNOUNCEMENT_CHARS} 字以内。"
    if url and not re.match(r"^https?://[^\s<>\"]+$", url):
        return "链接应以 http:// 或 https:// 开头。"
    try:
        news.parse_audience(audience)
    except ValueError:
        return "请选择发送对象（选乡镇或课程时请选具体一项）。"
    return ""


@bp.post("/announcements")
def send_announcement() -> Response:
    """Create the announcement and start sending it in the background."""
    text = request.form.get("text", "").strip()
    url = request.form.get("url", "").strip()
    audience = request.form.get("audience_key", "")
    if _announcement_problem(text, url, audience):
        abort(400, "通知内容或发送对象无效，请重新填写。")
    database = get_db()
    announcement_id = news.create_announcement(database, text, url, audience, g.staff)
    job_id = news.start_job(database, announcement_id)
    runner.send_in_background(current_runtime(), job_id)
    record("发送通知", f"#{announcement_id} {audience_label(audience)}: {text[:100]}")
    return redirect(url_for("console.announcement", announcement_id=announcement_id))


def _job(announcement_id: int) -> int:
    job_id = push.push_job_for(get_db(), announcement_id)
    if job_id is None:
        abort(404)
    return job_id


@bp.get("/announcements/<int:announcement_id>")
def announcement(announcement_id: int) -> str:
    """One announcement: progress (the page polls it) and per-recipient status."""
    database = get_db()
    job_id = _job(announcement_id)
    status = request.args.get("status") or None
    return render_template("console/announcement.html", progress=news.job_progress(database, job_id),
                           recipients=news.job_recipients(database, job_id, status, limit=500),
                           status=status, audience_label=audience_label,
                           announcement_id=announcement_id)


@bp.get("/api/announcements/<int:announcement_id>/progress")
def announcement_progress(announcement_id: int) -> Response:
    """Delivery counts for the progress bar."""
    return jsonify(news.job_progress(get_db(), _job(announcement_id)))


@bp.post("/announcements/<int:announcement_id>/retry")
def retry_announcement(announcement_id: int) -> Response:
    """Queue failed recipients again and send to them."""
    job_id = _job(announcement_id)
    include_unknown = request.form.get("include_unknown") == "1"
    count = news.retry_failed(get_db(), job_id, include_unknown)
    if count:
        runner.send_in_background(current_runtime(), job_id)
    record("重试通知", f"#{announcement_id}: {count} 人")
    flash(f"已重新发送给 {count} 人。" if count else "没有可重试的失败对象。")
    return redirect(url_for("console.announcement", announcement_id=announcement_id))


@bp.post("/announcements/<int:announcement_id>/cancel")
def cancel_announcement(announcement_id: int) -> Response:
    """Stop sending; recipients not yet reached are marked cancelled."""
    stopped = news.cancel_job(get_db(), _job(announcement_id))
    record("取消通知", f"#{announcement_id}")
    flash("已取消发送。" if stopped else "这条通知已经发送完毕，无法取消。")
    return redirect(url_for("console.announcement", announcement_id=announcement_id))
