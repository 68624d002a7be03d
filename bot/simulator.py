"""Blueprint "simulator": a phone-style chat page that talks to /wechat like WeChat does."""
from __future__ import annotations

from flask import Blueprint, Response, abort, current_app, jsonify, redirect, render_template, request
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import RequestEntityTooLarge

from bot import current_runtime, get_db
from bot.auth import signed_in_staff
from bot.phone import Phone
from bot.storage import push
from bot.voice import LocalMedia, media_folder

PREFIX = "/simulator"
bp = Blueprint("simulator", __name__, url_prefix=PREFIX)

# Events a subscriber's phone can produce from the page: following the account and the
# custom menu's two button types.
_EVENTS = {"subscribe", "unsubscribe", "CLICK", "VIEW"}
_MAX_OPENID = 64
_MAX_TEXT = 2000
_MAX_VOICE_BYTES = 2 * 1024 * 1024  # a minute of browser recording is a few hundred KB

# The page runs its own inline script and style; nothing else may load, and nobody may frame it.
POLICY = ("default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline';"
          " img-src 'self' data:; media-src 'self' blob:; frame-ancestors 'none'; form-action 'self'")


@bp.before_request
def only_where_allowed() -> ResponseReturnValue | None:
    """With an app_secret the simulator speaks for real subscribers: unless the operator
    turned it on ([simulator] in_production), it does not exist; then staff sign in first."""
    settings = current_runtime().settings
    if settings.wechat.demo:
        return None
    if not settings.simulator.in_production:
        abort(404)
    if signed_in_staff() is None:
        if request.path.startswith(PREFIX + "/api/"):
            return jsonify(error="请先登录"), 401
        return redirect("/admin/login?next=" + PREFIX)
    return None


@bp.after_request
def harden(response: Response) -> Response:
    """The page's own content policy (the app-wide default would block its script)."""
    response.headers["Content-Security-Policy"] = POLICY
    return response


@bp.get("")
@bp.get("/")
def page() -> str:
    """The chat page, with the custom menu from settings."""
    settings = current_runtime().settings
    return render_template("simulator/index.html", settings=settings, menu=settings.menu[:3])


@bp.post("/api/send")
def send() -> Response | tuple[Response, int]:
    """Send a text or an event (subscribe, menu click) as a subscriber; returns the reply."""
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        return jsonify(error="请求格式不对"), 400
    openid = str(data.get("openid") or "").strip()
    if not openid or len(openid) > _MAX_OPENID:
        return jsonify(error="请先填写用户 openid（不超过 64 个字符）"), 400
    phone = Phone(current_app, current_runtime().settings)
    if data.get("event"):
        event = str(data["event"])
        if event not in _EVENTS:
            return jsonify(error="不支持的事件"), 400
        reply = phone.send_event(openid, event, str(data.get("key") or "")[:1000])
    else:
        text = str(data.get("text") or "").strip()
        if not text:
            return jsonify(error="请输入内容"), 400
        reply = phone.send_text(openid, text[:_MAX_TEXT])
    return jsonify(reply=reply)


@bp.get("/api/inbox")
def inbox() -> Response | tuple[Response, int]:
    """Pushed messages for a simulated user (demo mode delivers them here)."""
    openid = request.args.get("openid", "")
    after = request.args.get("after", 0, type=int)
    if not -(2**63) <= after < 2**63:  # SQLite integers are 64-bit
        return jsonify(error="after 参数不对"), 400
    current_runtime().deliver_pending()
    return jsonify(messages=push.inbox_since(get_db(), openid, after))


@bp.post("/api/voice")
def send_voice() -> Response | tuple[Response, int]:
    """Send a recording or an audio file as a voice message (demo mode); returns the reply."""
    if current_runtime().api is not None:
        # With a real account the bot fetches voice from WeChat, which has no such file.
        return jsonify(error="模拟器只在演示模式下能发语音"), 400
    request.max_content_length = _MAX_VOICE_BYTES
    try:
        openid = str(request.form.get("openid") or "").strip()
        audio = request.files.get("audio")
        data = audio.read() if audio is not None else b""
    except RequestEntityTooLarge:
        return jsonify(error="录音太大了，请录短一点（一分钟以内）"), 413
    if not openid or len(openid) > _MAX_OPENID:
        return jsonify(error="请先填写用户 openid（不超过 64 个字符）"), 400
    if not data:
        return jsonify(error="没有收到录音"), 400
    # Demo mode's media/get reads the recording from the data folder (bot/voice.py); with
    # recognition off nothing would read it, so it is not kept.
    runtime = current_runtime()
    media_id = "" if runtime.voice is None else LocalMedia(media_folder(runtime.settings)).store(data)
    reply = Phone(current_app, runtime.settings).send_voice(openid, media_id)
    return jsonify(reply=reply)
