"""Blueprint "console": the staff web console at /admin, for signed-in staff only.

Every page and JSON endpoint requires a signed-in staff member (pages redirect to the
sign-in form, /admin/api/* answers 401 JSON); every POST carries the session's CSRF token
(form field csrf_token or header X-CSRF-Token); every staff action goes to the audit log.
Templates rely on Jinja autoescaping for all user-supplied text.
"""
from __future__ import annotations

import hmac
import io
import re
import secrets
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from flask import (
    Blueprint,
    Flask,
    Request,
    Response,
    abort,
    flash,
    g,
    jsonify,
    redirect,
    render_template,
    request,
    send_file,
    session,
    url_for,
)
from flask.sansio.blueprints import BlueprintSetupState
from flask.sessions import SecureCookieSessionInterface, SessionMixin
from rapidfuzz import fuzz, process
from werkzeug.exceptions import HTTPException
from werkzeug.security import check_password_hash, generate_password_hash

from bot import export, get_db, knowledge_edit, labels, runtime
from bot.privacy import load_or_create_key
from bot.push import announcements as news
from bot.push import courier, runner
from bot.storage import applications as application_store
from bot.storage import messages, push, staff

bp = Blueprint("console", __name__, url_prefix="/admin",
               static_folder="static/console", static_url_path="/static")

NAV_ITEMS = (("console.overview", "概览"), ("console.unanswered", "未答问题"),
             ("console.knowledge", "知识库"), ("console.applications", "申请"),
             ("console.announcements", "通知"), ("console.conversations", "对话"),
             ("console.audit_log", "操作记录"))
PUBLIC_ENDPOINTS = {"console.login", "console.static"}
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
# China Standard Time, for days on charts and times on screen.
LOCAL_TZ = timezone(timedelta(hours=8))
OVERVIEW_DAYS = 30
# Two unanswered questions with a character similarity at or above this share a group.
GROUP_SIMILARITY = 60
# Checked against when the user name is unknown, so both cases take the same time.
_DUMMY_HASH = generate_password_hash("not-a-password")
_PUNCTUATION = re.compile(r"[\s\W_]+", re.UNICODE)


@bp.record_once
def configure_sessions(state: BlueprintSetupState) -> None:
    """Session cookies: signed with [console] secret_key (or a generated one), HttpOnly, Lax."""
    app = state.app
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

    def open_session(self, app: Flask, request: Request) -> SessionMixin | None:
        if not request.path.startswith(bp.url_prefix):
            return None
        return super().open_session(app, request)


def format_time(timestamp: float | None) -> str:
    """Unix time as local 'MM-DD HH:MM' ('' when missing)."""
    if not timestamp:
        return ""
    return datetime.fromtimestamp(timestamp, LOCAL_TZ).strftime("%m-%d %H:%M")


# --- sign-in, CSRF and the audit log ----------------------------------------------------


def _is_api() -> bool:
    return request.path.startswith(bp.url_prefix + "/api/")


@bp.before_request
def require_login() -> Response | tuple[Response, int] | None:
    """Refuse anyone not signed in, then any state change without the CSRF token."""
    g.staff = None
    if request.endpoint not in PUBLIC_ENDPOINTS:
        name = session.get("staff")
        account = staff.get_staff(get_db(), name) if name else None
        if account is None or session.get("since", 0) <= (account["sessions_valid_after"] or 0):
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
    """No inline scripts may run and no page may frame the console."""
    response.headers["Content-Security-Policy"] = (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
        " frame-ancestors 'none'; form-action 'self'")
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.app_template_global()
def csrf_token() -> str:
    """The session's CSRF token (created on first use)."""
    if "csrf" not in session:
        session["csrf"] = secrets.token_urlsafe(32)
    return session["csrf"]


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


@bp.route("/login", methods=["GET", "POST"])
def login() -> str | Response:
    """Sign-in form; repeated failures lock the user name for a while."""
    error = ""
    next_url = request.values.get("next", "")
    if request.method == "POST":
        conf = runtime().settings.console
        database = get_db()
        username = request.form.get("username", "").strip()[:64]
        password = request.form.get("password", "")
        locked = staff.locked_until(database, username)
        account = staff.get_staff(database, username)
        ok = check_password_hash(account["password_hash"] if account else _DUMMY_HASH, password)
        if locked:
            error = f"登录失败次数过多，请 {_minutes_left(locked)} 分钟后再试。"
            staff.audit(database, username or "?", "登录被锁定拒绝")
        elif account and ok:
            session.clear()  # a new session id and CSRF token after sign-in
            session.permanent = True
            session["staff"] = username
            session["since"] = time.time()
            staff.record_login_success(database, username)
            staff.audit(database, username, "登录")
            return redirect(_safe_next(next_url))
        else:
            until = staff.record_login_failure(database, username, conf.max_failed_logins,
                                            conf.lockout_minutes * 60)
            staff.audit(database, username or "?", "登录失败")
            error = (f"登录失败次数过多，请 {_minutes_left(until)} 分钟后再试。" if until
                     else "用户名或密码错误。")
    return render_template("console/login.html", error=error, next=next_url)


@bp.post("/logout")
def logout() -> Response:
    """Sign out."""
    record("退出登录")
    staff.end_sessions(get_db(), g.staff)
    session.clear()
    return redirect(url_for("console.login"))


def _minutes_left(until: float) -> int:
    return max(1, int((until - time.time() + 59) // 60))


def _safe_next(target: str) -> str:
    """Only console paths, so the sign-in form cannot send staff to another site."""
    if target.startswith(bp.url_prefix + "/") and not target.startswith("//") and "\\" not in target:
        return target
    return url_for("console.overview")


# --- overview ----------------------------------------------------------------------------


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
              for band, label in (("answer", "直接答复"), ("suggest", "您是不是想问"),
                                  ("unknown", "没听懂"))]
    topics = [(_topic_title(r["topic"]), r["n"]) for r in staff.top_topics(database, since)]
    return render_template(
        "console/overview.html", days=days, max_day=max([n for _, n in days] + [1]),
        shares=shares, asked=asked, topics=topics,
        new_subscribers=staff.new_subscribers(database, since),
        new_subscribers_week=staff.new_subscribers(database, _local_midnight(6)),
        open_unanswered=len(messages.open_unanswered(database)),
        open_handoffs=len(staff.open_handoffs(database)), period=OVERVIEW_DAYS,
        applications_total=sum(c["n"] for c in staff.application_counts(database, "type")),
        application_counts=[(title, staff.application_counts(database, column)) for column, title in
                            (("status", "按状态"), ("course_name", "按课程"), ("township", "按乡镇"))])


def _local_midnight(days_ago: int) -> float:
    today = datetime.now(LOCAL_TZ).replace(hour=0, minute=0, second=0, microsecond=0)
    return (today - timedelta(days=days_ago)).timestamp()


def _local_day(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, LOCAL_TZ).strftime("%Y-%m-%d")


def _topic_title(topic_id: str | None) -> str:
    topic = runtime().library.kb.topics.get(topic_id) if topic_id else None
    return topic.title if topic else (topic_id or "")


# --- unanswered questions ----------------------------------------------------------------


def group_similar(rows: list[dict[str, Any]], key: Callable[[dict[str, Any]], str],
                  threshold: float = GROUP_SIMILARITY) -> list[list[dict[str, Any]]]:
    """Group rows whose texts are alike (rapidfuzz ratio), largest groups first."""
    groups: list[list[dict[str, Any]]] = []
    heads: list[str] = []
    for row in rows:
        text = _PUNCTUATION.sub("", key(row)).lower()
        found = process.extractOne(text, heads, scorer=fuzz.ratio, score_cutoff=threshold)
        if found is None:
            heads.append(text)
            groups.append([row])
        else:
            groups[found[2]].append(row)
    return sorted(groups, key=len, reverse=True)


@bp.get("/unanswered")
def unanswered() -> str:
    """Open questions the bot did not understand, grouped by similarity (repeats folded)."""
    rows = messages.open_unanswered(get_db())
    topics = sorted(runtime().library.kb.topics.values(), key=lambda t: t.id)
    groups = [_fold_repeats(group) for group in group_similar(rows, lambda r: r["question"])]
    return render_template("console/unanswered.html", groups=groups, topics=topics,
                           total=len(rows), topic_title=_topic_title)


def _fold_repeats(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One item per distinct question, with every row id, so one action handles all repeats."""
    items: dict[str, dict[str, Any]] = {}
    for row in rows:
        item = items.setdefault(row["question"], {**row, "ids": []})
        item["ids"].append(row["id"])
        item["best_topic"] = item["best_topic"] or row["best_topic"]
    return list(items.values())


@bp.post("/unanswered/out-of-scope")
def unanswered_out_of_scope() -> Response:
    """Take questions off the list as outside what the bot should answer."""
    ids = [int(i) for i in request.form.getlist("id") if i.isdigit()]
    closed = messages.close_unanswered(get_db(), ids, "out_of_scope")
    record("标记超出范围", f"{closed} 条未答问题（id {', '.join(map(str, ids))}）")
    flash(f"已将 {closed} 条问题标为超出范围。")
    return redirect(url_for("console.unanswered"))


# --- conversations and hand-offs to staff ------------------------------------------------


@bp.get("/conversations")
def conversations() -> str:
    """Who asked for a person, and the latest conversations."""
    database = get_db()
    return render_template("console/conversations.html", handoffs=staff.open_handoffs(database),
                           conversations=staff.recent_conversations(database))


@bp.get("/conversations/find")
def find_conversation() -> Response:
    """Jump to one subscriber's conversation by openid."""
    openid = request.args.get("openid", "").strip()[:64]
    if not openid:
        return redirect(url_for("console.conversations"))
    return redirect(url_for("console.conversation", openid=openid))


@bp.get("/conversations/<openid>")
def conversation(openid: str) -> str:
    """One subscriber's recent messages, with a reply box."""
    database = get_db()
    history = list(reversed(messages.recent_messages(database, openid, 100)))
    waiting = [h for h in staff.open_handoffs(database) if h["openid"] == openid]
    return render_template("console/conversation.html", openid=openid, messages=history,
                           handoff=waiting[0] if waiting else None)


@bp.post("/conversations/<openid>/reply")
def reply(openid: str) -> Response:
    """Send a customer-service message to the subscriber and close their hand-off."""
    text = request.form.get("text", "").strip()
    if not text:
        flash("请填写回复内容。")
        return redirect(url_for("console.conversation", openid=openid))
    if len(text) > 600:
        flash("回复太长了，请控制在 600 字以内。")
        return redirect(url_for("console.conversation", openid=openid))
    database = get_db()
    push.enqueue_message(database, openid, text, "staff-reply")
    runtime().deliver_pending()
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


# --- audit log ------------------------------------------------------------------------


@bp.get("/audit")
def audit_log() -> str:
    """Every staff action, newest first."""
    page = max(1, request.args.get("page", 1, type=int))
    entries = staff.audit_entries(get_db(), 100, (page - 1) * 100)
    return render_template("console/audit.html", entries=entries, page=page)


# --- knowledge base ------------------------------------------------------------------

DETAIL_LABELS = {"eligibility": "适用对象", "benefits": "政策内容", "how_to_apply": "办理流程",
                 "documents": "所需材料", "office": "办理地点"}


def _backup_dir() -> Path:
    return runtime().settings.data_dir / "backups" / "policies"


@bp.get("/knowledge")
def knowledge() -> str:
    """Topics by category, with a search over titles, answers, keywords and examples."""
    kb = runtime().library.kb
    query = request.args.get("q", "").strip()
    sections = []
    for category in kb.categories:
        topics = [kb.topics[t] for t in category.topic_ids if _topic_has(kb.topics[t], query)]
        if topics:
            sections.append((category, topics))
    return render_template("console/knowledge.html", sections=sections, query=query,
                           total=sum(len(t) for _, t in sections))


def _topic_has(topic: Any, query: str) -> bool:
    if not query:
        return True
    haystack = [topic.id, topic.title, topic.answer, *topic.keywords, *topic.examples,
                *topic.details.values()]
    return any(query.lower() in text.lower() for text in haystack)


@bp.route("/knowledge/<topic_id>", methods=["GET", "POST"])
def topic(topic_id: str) -> str | Response | tuple[str, int]:
    """Edit one topic; saved to its policies/ file (previous version backed up) and live at once."""
    library = runtime().library
    current = library.kb.topics.get(topic_id)
    if current is None:
        abort(404)
    problems: list[str] = []
    form = {"title": current.title, "answer": current.answer,
            "keywords": "\n".join(current.keywords), "examples": "\n".join(current.examples),
            **{f"details.{k}": current.details.get(k, "") for k in DETAIL_LABELS}}
    if request.method == "POST":
        form = {k: request.form.get(k, "").replace("\r\n", "\n").strip() for k in form}
        changes: dict[str, Any] = {"title": form["title"], "answer": form["answer"],
                                   "keywords": _lines(form["keywords"]),
                                   "examples": _lines(form["examples"]),
                                   "details": {k: form[f"details.{k}"] for k in DETAIL_LABELS}}
        try:
            warnings = knowledge_edit.save_topic(runtime().settings.matcher.policies_dir,
                                                 _backup_dir(), runtime().settings.matcher,
                                                 topic_id, changes)
        except knowledge_edit.EditError as exc:
            problems = exc.problems
        else:
            library.reload()
            record("编辑话题", topic_id)
            flash("已保存，机器人已按新内容回答。")
            for warning in warnings:
                flash("提醒：" + warning)
            return redirect(url_for("console.topic", topic_id=topic_id))
    return render_template("console/topic.html", topic=current, form=form, problems=problems,
                           labels=DETAIL_LABELS, preview=library.answer_text(topic_id)), \
        (400 if problems else 200)


@bp.route("/knowledge/synonyms", methods=["GET", "POST"])
def synonyms() -> str | Response | tuple[str, int]:
    """Edit the synonym map: one line per term, "标准词 = 说法1，说法2"."""
    library = runtime().library
    problems: list[str] = []
    current: dict[str, list[str]] = {}
    for variant, term in library.kb.synonyms.items():
        current.setdefault(term, []).append(variant)
    text = "\n".join(f"{term} = {'，'.join(variants)}" for term, variants in current.items())
    if request.method == "POST":
        text = request.form.get("synonyms", "").replace("\r\n", "\n").strip()
        parsed, problems = _parse_synonyms(text)
        if not problems:
            try:
                knowledge_edit.save_synonyms(runtime().settings.matcher.policies_dir, _backup_dir(),
                                             runtime().settings.matcher, parsed)
            except knowledge_edit.EditError as exc:
                problems = exc.problems
            else:
                library.reload()
                record("编辑同义词", f"{len(parsed)} 个标准词")
                flash("同义词已保存并生效。")
                return redirect(url_for("console.synonyms"))
    return render_template("console/synonyms.html", text=text, problems=problems), \
        (400 if problems else 200)


def _parse_synonyms(text: str) -> tuple[dict[str, list[str]], list[str]]:
    """"标准词 = 说法1，说法2" lines -> {term: variants}, with problems named by line."""
    parsed: dict[str, list[str]] = {}
    problems = []
    for number, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        term, sep, rest = line.partition("=")
        variants = [v.strip() for v in re.split(r"[，,、]", rest) if v.strip()]
        if not sep or not term.strip() or not variants:
            problems.append(f"第 {number} 行应写成“标准词 = 说法1，说法2”：{line.strip()}")
        elif term.strip() in parsed:
            problems.append(f"第 {number} 行：标准词“{term.strip()}”重复")
        else:
            parsed[term.strip()] = variants
    return parsed, problems


def _lines(text: str) -> list[str]:
    """One item per line, blank lines dropped."""
    return [item.strip() for item in text.split("\n") if item.strip()]


@bp.post("/unanswered/add-example")
def add_example() -> Response:
    """Teach the bot: add an unanswered question as an example of the chosen topic."""
    library = runtime().library
    database = get_db()
    ids = [int(i) for i in request.form.getlist("id") if i.isdigit()]
    row = messages.get_unanswered(database, ids[0]) if ids else None
    topic_id = request.form.get("topic", "")
    if row is None or topic_id not in library.kb.topics:
        flash("请先选择要加入的话题。" if row else "问题不存在，请刷新页面。")
        return redirect(url_for("console.unanswered"))
    try:
        warnings = knowledge_edit.add_example(runtime().settings.matcher.policies_dir, _backup_dir(),
                                              runtime().settings.matcher, topic_id, row["question"])
    except knowledge_edit.EditError as exc:
        flash("没有加入：" + "；".join(exc.problems))
        return redirect(url_for("console.unanswered"))
    library.reload()
    messages.close_unanswered(database, ids, "added")
    record("加为例句", f"{topic_id}: {row['question']}")
    flash(f"已把“{row['question']}”加为“{library.kb.topics[topic_id].title}”的例句，立即生效。")
    for warning in warnings:
        flash("提醒：" + warning)
    return redirect(url_for("console.unanswered"))


# --- announcements ---------------------------------------------------------------------

JOB_STATUS = {"queued": "排队中", "running": "发送中", "waiting": "等待重试", "done": "已完成",
              "cancelled": "已取消"}
RECIPIENT_STATUS = {"pending": "待发送", "sending": "发送中", "delivered": "已送达", "failed": "失败",
                    "unknown": "不确定（中断时正在发送）", "cancelled": "已取消"}
CHANNELS = {"custom": "客服消息", "template": "模板消息", "mass": "群发", "simulator": "模拟器"}
AUDIENCE_LABELS = {"all": "全部关注用户", "township": "乡镇申请人", "course": "课程报名人",
                   "loan": "贷款申请人"}
MAX_ANNOUNCEMENT_CHARS = 600


@bp.context_processor
def push_labels() -> dict[str, Any]:
    """Chinese names of push statuses and channels for the templates."""
    return {"job_status": JOB_STATUS, "recipient_status": RECIPIENT_STATUS, "channels": CHANNELS}


def audience_label(audience: str) -> str:
    """Chinese name of an audience key such as "township:城关镇" or "course:tea"."""
    kind, _, value = audience.partition(":")
    if kind == "course":
        names = {c.id: c.name for c in runtime().settings.courses}
        value = names.get(value, value)
    return AUDIENCE_LABELS.get(kind, kind) + (f"：{value}" if value else "")


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
    settings = runtime().settings
    return render_template("console/announcements.html", rows=rows, form={},
                           quota=news.quota_status(database, settings.push),
                           settings=settings, audience_label=audience_label)


@bp.post("/announcements/preview")
def preview_announcement() -> str | tuple[str, int]:
    """Show the message as users will get it and how many will get it, before sending."""
    text = request.form.get("text", "").strip()
    url = request.form.get("url", "").strip()
    audience = _audience_from_form()
    settings = runtime().settings
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
def send_announcement() -> Response | tuple[str, int]:
    """Create the announcement and start sending it in the background."""
    text = request.form.get("text", "").strip()
    url = request.form.get("url", "").strip()
    audience = request.form.get("audience_key", "")
    if _announcement_problem(text, url, audience):
        abort(400, "通知内容或发送对象无效，请重新填写。")
    database = get_db()
    announcement_id = news.create_announcement(database, text, url, audience, g.staff)
    job_id = news.start_job(database, announcement_id)
    runner.send_in_background(runtime(), job_id)
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
        runner.send_in_background(runtime(), job_id)
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


# --- applications ----------------------------------------------------------------------

PAGE_SIZE = 100


@bp.app_template_filter("yuan")
def format_yuan(amount: int | None) -> str:
    """50000 -> '5万元', 8000 -> '8000元'."""
    if not amount:
        return ""
    return f"{amount / 10000:g}万元" if amount >= 10000 else f"{amount}元"


def _application_filters() -> dict[str, Any]:
    args = request.args
    return {key: args.get(key, "").strip() for key in
            ("type", "course", "status", "township", "since", "until", "q")}


def _day_start(text: str, days_after: int = 0) -> float | None:
    try:
        day = datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=LOCAL_TZ)
    except ValueError:
        return None
    return (day + timedelta(days=days_after)).timestamp()


@bp.get("/applications")
def applications() -> str:
    """Applications filtered by type, course, status, township and date, or searched by name or number."""
    f = _application_filters()
    page = max(1, request.args.get("page", 1, type=int))
    rows = application_store.list_applications(
        get_db(), type_=f["type"] or None, course_id=f["course"] or None, status=f["status"] or None,
        township=f["township"] or None, since=_day_start(f["since"]), until=_day_start(f["until"], 1),
        search=f["q"][:40] or None, limit=PAGE_SIZE + 1, offset=(page - 1) * PAGE_SIZE)
    return render_template("console/applications.html", rows=rows[:PAGE_SIZE], more=len(rows) > PAGE_SIZE,
                           page=page, f=f, types=labels.APPLICATION_TYPES, statuses=application_store.STATUSES,
                           settings=runtime().settings)


@bp.get("/applications/export")
def export_applications() -> Response:
    """Download applications (of a type and status, if chosen) as csv or xlsx, full numbers included."""
    fmt = request.args.get("format", "xlsx")
    if fmt not in ("csv", "xlsx"):
        abort(400, "导出格式只能是 csv 或 xlsx。")
    type_ = request.args.get("type") or None
    status = request.args.get("status") or None
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / f"applications.{fmt}"
        count = export.export_applications(get_db(), runtime().vault, out, fmt, type_, status)
        data = out.read_bytes()
    record("导出申请", f"{count} 条（{fmt}，类型 {type_ or '全部'}，状态 {status or '全部'}）")
    stamp = datetime.now(LOCAL_TZ).strftime("%Y%m%d-%H%M")
    return send_file(io.BytesIO(data), as_attachment=True, download_name=f"applications-{stamp}.{fmt}",
                     mimetype="text/csv" if fmt == "csv" else
                     "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")


@bp.get("/applications/<ref>")
def application(ref: str) -> str:
    """One application with masked numbers, its status history and the status form."""
    row = application_store.get_application(get_db(), ref)
    if row is None:
        abort(404)
    return render_template("console/application.html", a=row, types=labels.APPLICATION_TYPES,
                           stages=labels.STAGES, statuses=application_store.STATUSES)


@bp.post("/applications/<ref>/status")
def change_application_status(ref: str) -> Response:
    """Change the status with a note; the applicant is told at once through WeChat."""
    status = request.form.get("status", "")
    note = request.form.get("note", "").strip()[:300]
    database = get_db()
    if status not in application_store.STATUSES:
        flash("请选择新的状态。")
        return redirect(url_for("console.application", ref=ref))
    openid = application_store.change_status(database, ref, status, note, g.staff)
    if openid is None:
        abort(404)
    row = application_store.get_application(database, ref)
    text = render_template("console/status_notice.txt", a=row,
                           kind=labels.APPLICATION_TYPES.get(row["type"], "申请"))
    courier.notify(database, openid, text.strip())
    runtime().deliver_pending()
    record("更改申请状态", f"{ref} → {status}" + (f"：{note}" if note else ""))
    flash(f"状态已改为“{status}”，已通过微信通知申请人。")
    return redirect(url_for("console.application", ref=ref))
