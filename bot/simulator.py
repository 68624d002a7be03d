"""Blueprint "simulator": a phone-style chat page that talks to /wechat like WeChat does."""
from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify, render_template, request

from bot import db, get_db, runtime
from bot.phone import Phone

bp = Blueprint("simulator", __name__, url_prefix="/simulator")


@bp.get("")
@bp.get("/")
def page() -> str:
    """The chat page."""
    return render_template("simulator/index.html", settings=runtime().settings)


@bp.post("/api/send")
def send() -> Response | tuple[Response, int]:
    """Send a text or a menu click as a subscriber; returns the bot's reply."""
    data = request.get_json(silent=True) or {}
    openid = str(data.get("openid") or "").strip()[:64]
    if not openid:
        return jsonify(error="请先填写用户 openid"), 400
    phone = Phone(current_app, runtime().settings)
    if data.get("event"):
        reply = phone.send_event(openid, str(data["event"]), str(data.get("key") or ""))
    else:
        reply = phone.send_text(openid, str(data.get("text") or ""))
    return jsonify(reply=reply)


@bp.get("/api/inbox")
def inbox() -> Response:
    """Pushed messages for a simulated user (demo mode delivers them here)."""
    openid = request.args.get("openid", "")
    after = request.args.get("after", 0, type=int)
    runtime().deliver_pending()
    return jsonify(messages=db.inbox_since(get_db(), openid, after))
