"""Conversations and hand-offs to a person: read a subscriber's messages, reply, close."""
from __future__ import annotations

from flask import flash, g, jsonify, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from bot import current_runtime, get_db, labels
from bot.console import bp, people, record
from bot.storage import messages, push, staff

MAX_REPLY_CHARS = 600
# The user's own latest messages shown beside a hand-off, so staff see why they asked.
WHY_MESSAGES = 3


@bp.get("/conversations")
def conversations() -> str:
    """Who asked for a person and why (their last messages, open forms and applications),
    and the latest conversations."""
    database = get_db()
    handoffs = staff.open_handoffs(database)
    for h in handoffs:
        h["said"] = [m for m in messages.recent_messages(database, h["openid"], 10)
                     if m["content"]][:WHY_MESSAGES][::-1]
        h["forms"] = people.forms_in_progress(h["openid"])
        h["applications"] = people.open_applications(h["openid"])
    recent = staff.recent_conversations(database)
    names = people.display_names([h["openid"] for h in handoffs] + [c["openid"] for c in recent])
    return render_template("console/conversations.html", handoffs=handoffs, conversations=recent,
                           names=names, types=labels.APPLICATION_TYPES)


@bp.get("/conversations/find")
def find_conversation() -> Response:
    """Jump to one subscriber's conversation by openid."""
    openid = request.args.get("openid", "").strip()[:64]
    if not openid:
        return redirect(url_for("console.conversations"))
    return redirect(url_for("console.conversation", openid=openid))


@bp.get("/conversations/<openid>")
def conversation(openid: str) -> str:
    """One subscriber's whole conversation (staff replies and notices too), with a reply box."""
    database = get_db()
    waiting = [h for h in staff.open_handoffs(database) if h["openid"] == openid]
    return render_template("console/conversation.html", openid=openid,
                           entries=people.timeline(openid), names=people.display_names([openid]),
                           handoff=waiting[0] if waiting else None)


@bp.post("/conversations/<openid>/reply")
def reply(openid: str) -> Response:
    """Send a customer-service message to the subscriber and close their hand-off."""
    text = request.form.get("text", "").strip()
    if not text:
        flash("请填写回复内容。")
        return redirect(url_for("console.conversation", openid=openid))
    if len(text) > MAX_REPLY_CHARS:
        flash(f"回复太长了，请控制在 {MAX_REPLY_CHARS} 字以内。")
        return redirect(url_for("console.conversation", openid=openid))
    database = get_db()
    push.enqueue_message(database, openid, text, "staff-reply")
    current_runtime().deliver_pending()
    staff.close_handoff(database, openid, g.staff)
    record("回复用户", f"{openid}: {text[:100]}")
    flash("回复已发出。")
    return redirect(url_for("console.conversation", openid=openid))


@bp.post("/conversations/<openid>/close")
def close_handoff(openid: str) -> Response:
    """Mark a hand-off done without replying (e.g. handled by phone)."""
    staff.close_handoff(get_db(), openid, g.staff)
    record("结束转人工", openid)
    return redirect(url_for("console.conversations"))


@bp.get("/api/handoffs")
def api_handoffs() -> Response:
    """How many users wait for a person (the nav badge polls this)."""
    return jsonify(open=len(staff.open_handoffs(get_db())))
