"""Sign-in and sign-out, with failed sign-ins throttled per user name and address."""
from __future__ import annotations

import time

from flask import g, redirect, render_template, request, session, url_for
from werkzeug.security import check_password_hash, generate_password_hash
from werkzeug.wrappers import Response

from bot import current_runtime, get_db
from bot.console import bp, client_address, record
from bot.storage import staff

# Checked against when the user name is unknown, so both cases take the same time.
_DUMMY_HASH = generate_password_hash("not-a-password")


@bp.route("/login", methods=["GET", "POST"])
def login() -> str | Response:
    """Sign-in form; repeated failures from one address make that address wait, ever longer."""
    error = ""
    next_url = request.values.get("next", "")
    if request.method == "POST":
        conf = current_runtime().settings.console
        database = get_db()
        username = request.form.get("username", "").strip()[:64]
        password = request.form.get("password", "")
        address = client_address()
        blocked = staff.login_blocked_until(database, username, address)
        account = staff.get_staff(database, username)
        ok = check_password_hash(account["password_hash"] if account else _DUMMY_HASH, password)
        if blocked:
            error = f"登录失败次数过多，请 {_wait_text(blocked)}后再试。"
            staff.audit(database, username or "?", "登录被限制", f"来自 {address}")
        elif account and ok and account["disabled_at"]:
            # Said only to someone who knows the password: it is no use guessing further.
            error = "这个账号已停用，请联系管理员。"
            staff.audit(database, username, "登录被拒绝", f"账号已停用，来自 {address}")
        elif account and ok:
            session.clear()  # a new session id and CSRF token after sign-in
            session.permanent = True
            session["staff"] = username
            session["since"] = time.time()
            staff.record_login_success(database, username, address)
            staff.audit(database, username, "登录", f"来自 {address}")
            return redirect(safe_next(next_url))
        else:
            until = staff.record_login_failure(database, username, address, conf.max_failed_logins,
                                               conf.lockout_minutes * 60)
            staff.audit(database, username or "?", "登录失败", f"来自 {address}")
            error = (f"登录失败次数过多，请 {_wait_text(until)}后再试。" if until
                     else "用户名或密码错误。")
    return render_template("console/login.html", error=error, next=next_url)


@bp.post("/logout")
def logout() -> Response:
    """Sign out."""
    record("退出登录")
    staff.end_sessions(get_db(), g.staff)
    session.clear()
    return redirect(url_for("console.login"))


def _wait_text(until: float) -> str:
    """'30 秒' or '15 分钟': how long until the next try is allowed."""
    seconds = max(1, int(until - time.time() + 0.999))
    return f"{seconds} 秒" if seconds < 60 else f"{(seconds + 59) // 60} 分钟"


def safe_next(target: str) -> str:
    """Only console paths, so the sign-in form cannot send staff to another site."""
    prefix = (bp.url_prefix or "") + "/"
    # Browsers drop tabs and newlines from URLs and read "\" as "/", so "/admin/\t/evil"
    # or "/\\evil" could still leave the site; a header with CR/LF would be refused (500).
    if (target.startswith(prefix) and target.isprintable() and "\\" not in target
            and not target.startswith("//") and "//" not in target.split("?")[0]):
        return target
    return url_for("console.overview")
