"""Blueprint "console": the staff web console at /admin, for signed-in staff only.

Every page and JSON endpoint requires a signed-in staff member (pages redirect to the
sign-in form, /admin/api/* answers 401 JSON); every POST carries the session's CSRF token
(form field csrf_token or header X-CSRF-Token); every staff action goes to the audit log.
Templates rely on Jinja autoescaping for all user-supplied text. One module per section.
"""
from __future__ import annotations

import hmac
import secrets
from datetime import datetime, timedelta
from typing import cast

from flask import (
    Blueprint,
    Flask,
    Request,
    abort,
    g,
    jsonify,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask.sansio.blueprints import BlueprintSetupState
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response

from bot import current_runtime, get_db
from bot.auth import signed_in_staff
from bot.clock import CHINA_TZ
from bot.privacy import load_or_create_key
from bot.storage import staff

bp = Blueprint("console", __name__, url_prefix="/admin",
               static_folder="../static/console", static_url_path="/static")

NAV_ITEMS = (("console.overview", "概览"), ("console.unanswered", "未答问题"),
             ("console.knowledge", "知识库"), ("console.applications", "申请"),
             ("console.announcements", "通知"), ("console.conversations", "对话"),
             ("console.people", "查找用户"),
             ("console.audit_log", "操作记录"))
PUBLIC_ENDPOINTS = {"console.login", "console.static"}
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
# Pages past this are refused as page 1, so no offset can overflow SQLite's integers.
MAX_PAGE = 100_000
HSTS = "max-age=31536000"


@bp.record_once
def configure_sessions(state: BlueprintSetupState) -> None:
    """Session cookies: signed with [console] secret_key (or a generated one), HttpOnly, Lax."""
    app = cast(Flask, state.app)  # a Flask blueprint is only registered on a Flask app
    settings = app.extensions["bot"].settings
    app.session_interface = _ConsoleSessions()
    app.secret_key = load_or_create_key(settings.console.secret_key,
                                        settings.data_dir / "console.key")
    app.config.update(SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Lax",
                      SESSION_COOKIE_NAME="cyt_console",
                      PERMANENT_SESSION_LIFETIME=timedelta(hours=12))
    app.jinja_env.filters["when"] = format_time


class _ConsoleSessions(SecureCookieSessionInterface):
    """Only the console has sessions: other paths, the webhook above all, get Flask's null
    session instead of a cookie signer built for every message."""

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        if not request.path.startswith(bp.url_prefix or ""):
            return None
        return super().open_session(app, request)

    def get_cookie_secure(self, app: Flask) -> bool:
        # Decided per request: the same service may be reached over HTTPS and, on the
        # host itself, over plain HTTP.
        return is_https()


def format_time(timestamp: float | None) -> str:
    """Unix time as China time 'MM-DD HH:MM' ('' when missing)."""
    if not timestamp:
        return ""
    return datetime.fromtimestamp(timestamp, CHINA_TZ).strftime("%m-%d %H:%M")


def _from_proxy() -> bool:
    """Whether the request came through the configured reverse proxy."""
    proxy = current_runtime().settings.console.trusted_proxy
    return bool(proxy) and request.remote_addr == proxy


def client_address() -> str:
    """The address a request came from, as the trusted proxy saw it when there is one."""
    if _from_proxy():
        # The proxy appends the address it saw; hops before it are whatever the client sent.
        hops = [h.strip() for h in request.headers.get("X-Forwarded-For", "").split(",") if h.strip()]
        if hops:
            return hops[-1][:64]
    return request.remote_addr or ""


def is_https() -> bool:
    """Whether staff reach the console over HTTPS (configured, direct TLS or the proxy's word)."""
    if current_runtime().settings.console.https or request.is_secure:
        return True
    return _from_proxy() and request.headers.get("X-Forwarded-Proto", "") == "https"


def page_number() -> int:
    """The ?page= argument (1 to MAX_PAGE); anything else, garbage included, is page 1."""
    text = request.args.get("page", "")
    if text.isascii() and text.isdigit() and len(text) <= 7 and 0 < int(text) <= MAX_PAGE:
        return int(text)
    return 1


def _is_api() -> bool:
    return request.path.startswith((bp.url_prefix or "") + "/api/")


@bp.before_request
def require_login() -> Response | tuple[Response, int] | None:
    """Refuse anyone not signed in, then any state change without the CSRF token."""
    g.staff = None
    if request.endpoint not in PUBLIC_ENDPOINTS:
        name = signed_in_staff()
        if name is None:
            session.pop("staff", None)
            if _is_api():
                return jsonify(error="请先登录"), 401
            return redirect(url_for("console.login", next=request.full_path.rstrip("?")))
        g.staff = name
    if request.method not in SAFE_METHODS:
        sent = request.headers.get("X-CSRF-Token") or request.form.get("csrf_token", "")
        expected = session.get("csrf", "")
        if not expected or not hmac.compare_digest(sent.encode(), expected.encode()):
            if _is_api():
                return jsonify(error="页面已过期，请刷新后重试"), 400
            abort(400, "页面已过期，请刷新后重试")
    return None


@bp.after_request
def harden(response: Response) -> Response:
    """No inline scripts may run and no page may frame the console; HTTPS stays HTTPS."""
    response.headers["Content-Security-Policy"] = (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
        " frame-ancestors 'none'; form-action 'self'")
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Cache-Control"] = "no-store"
    if is_https():
        response.headers["Strict-Transport-Security"] = HSTS
    return response


@bp.app_template_global()
def csrf_token() -> str:
    """The session's CSRF token (created on first use)."""
    if "csrf" not in session:
        session["csrf"] = secrets.token_urlsafe(32)
    token: str = session["csrf"]
    return token


@bp.app_template_global()
def nav_items() -> tuple[tuple[str, str], ...]:
    """The console's sections for the navigation bar."""
    return NAV_ITEMS


@bp.errorhandler(400)
@bp.errorhandler(404)
def console_error(error: HTTPException) -> tuple[str | Response, int]:
    """Refusals in the console's own words: JSON for /admin/api/*, a page otherwise."""
    default = "请求无效" if error.code == 400 else "没有找到这个页面或记录"
    # Our own aborts carry Chinese text; werkzeug's stock (English) descriptions do not show.
    custom = error.description if error.description != type(error).description else ""
    message = custom or default
    if _is_api():
        return jsonify(error=message), error.code or 400
    return render_template("console/error.html", message=message), error.code or 400


def record(action: str, detail: str = "") -> None:
    """Write the signed-in staff member's action to the audit log."""
    staff.audit(get_db(), g.staff or "", action, detail)


# The sections register their views on bp when imported.
from bot.console import (  # noqa: E402
    announcements,
    applications,
    audit,
    auth,
    conversations,
    knowledge,
    overview,
    people,
    unanswered,
)

__all__ = ["announcements", "applications", "audit", "auth", "bp", "conversations", "knowledge",
           "overview", "people", "unanswered"]
