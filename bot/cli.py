"""Command line: `python run.py [--config F] COMMAND`. Settings are loaded once into ctx.obj."""
from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from bot import labels
from bot.settings import Settings, SettingsError, load_settings

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "config.toml"


@click.group(invoke_without_command=True)
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path),
              default=DEFAULT_CONFIG, show_default="config.toml",
              help="Config file to use; goes before the command.")
@click.pass_context
def cli(ctx: click.Context, config_path: Path) -> None:
    """创业通 service. With no command, starts the development server.

    Example: python run.py --config config.toml serve --workers 4
    """
    try:
        ctx.obj = load_settings(config_path)
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from None
    if ctx.invoked_subcommand is None:
        ctx.invoke(run_dev)


def make_app(settings: Settings) -> Any:
    """Create the app, turning start-up errors into one clear line."""
    from bot import create_app
    from bot.knowledge.load import KnowledgeError
    from bot.startup import StartupError
    try:
        return create_app(settings)
    except (SettingsError, KnowledgeError, StartupError) as exc:
        raise click.ClickException(f"无法启动：{exc}") from None


@cli.command("dev")
@click.pass_obj
def run_dev(settings: Settings) -> None:
    """Start the development server (demo). Example: python run.py dev"""
    app = make_app(settings)
    host, port = settings.server.host, settings.server.port
    click.echo(f"创业通已启动: http://{host}:{port}/simulator  (webhook: /wechat)")
    app.extensions["bot"].start_courier()
    app.run(host=host, port=port, threaded=True, use_reloader=False)


@cli.command()
@click.option("--workers", type=int, default=None, help="Worker processes (default: [server] workers).")
@click.option("--bind", default=None, help="host:port (default: [server] host and port).")
@click.option("--connections", type=int, default=None,
              help="Most client connections one worker keeps open (default: gunicorn's 1000).")
@click.pass_obj
def serve(settings: Settings, workers: int | None, bind: str | None,
          connections: int | None) -> None:
    """Run under gunicorn for production. Example: python run.py serve --workers 4"""
    app = make_app(settings)
    options = gunicorn_options(bind or f"{settings.server.host}:{settings.server.port}",
                               workers or settings.server.workers, connections)
    # Threads don't survive gunicorn's fork: each worker starts its own courier.
    options["post_worker_init"] = lambda worker: app.extensions["bot"].start_courier()
    run_gunicorn(app, options)


def gunicorn_options(bind: str, workers: int, connections: int | None = None) -> dict[str, Any]:
    """gunicorn settings for `serve`; bench/webhook.py runs its baseline app with the same."""
    options = {
        "bind": bind,
        "workers": workers,
        "worker_class": "gthread",
        # Each worker's threads share one GIL, and every SQLite call hands it over: with
        # 2 threads the webhook answered 5-10 % more messages per second than with 3 or
        # 4 at the same CPU (bench/webhook.py), while a slow request still leaves one free.
        "threads": 2,
        "timeout": 30,
        "accesslog": None,
        # gunicorn >= 25 opens a control socket at one per-user path, so a second
        # instance on the host (another county, the benchmark) would take it over.
        "control_socket_disable": True,
    }
    if connections:
        options["worker_connections"] = connections
    return options


def run_gunicorn(app: Any, options: dict[str, Any]) -> None:
    """Serve a WSGI app under gunicorn until it is stopped."""
    from gunicorn.app.base import BaseApplication

    class Gunicorn(BaseApplication):
        def load_config(self) -> None:
            for key, value in options.items():
                if key in self.cfg.settings:  # older gunicorn lacks newer settings
                    self.cfg.set(key, value)

        def load(self) -> Any:
            return app

    Gunicorn().run()


@cli.command()
@click.option("--openid", default="cli-user", show_default=True, help="Subscriber to act as.")
@click.pass_obj
def chat(settings: Settings, openid: str) -> None:
    """Chat with the bot in the terminal, through the signed webhook path. Example: python run.py chat"""
    from bot import current_runtime
    from bot.phone import Phone

    app = make_app(settings)
    phone = Phone(app, settings)
    click.echo("输入消息后回车；输入 /quit 退出。")
    click.echo(phone.send_event(openid, "subscribe"))
    while True:
        try:
            text = input("我> ")
        except (EOFError, KeyboardInterrupt):
            break
        if text.strip() == "/quit":
            break
        click.echo("创业通> " + (phone.send_text(openid, text) or "（无回复）"))
        with app.app_context():
            current_runtime().deliver_pending()


@cli.command("init-db")
@click.pass_obj
def init_db(settings: Settings) -> None:
    """Create or upgrade the database. Example: python run.py init-db"""
    from bot.storage import migrations
    migrations.migrate(settings.storage.database)
    click.echo(f"数据库已就绪: {settings.storage.database}")


@cli.command("backup")
@click.argument("dest", type=click.Path(file_okay=False, path_type=Path))
@click.pass_obj
def backup_command(settings: Settings, dest: Path) -> None:
    """Copy the database (consistent, while the service runs) and its key files into DEST.

    Example: python run.py backup /var/backups/cyt/2026-12-01
    """
    import sqlite3

    from bot.backup import BackupError, backup

    try:
        written = backup(settings, dest)
    except (BackupError, OSError, sqlite3.Error) as exc:
        raise click.ClickException(f"备份失败：{exc}") from None
    for path in written:
        click.echo(f"已备份 {path}")
    if settings.storage.encryption_key:
        click.echo("数据密钥在配置项 storage.encryption_key（CYT_ENCRYPTION_KEY）里，"
                   "没有放进备份：请另外妥善保存，恢复时要用。")


@cli.command()
@click.argument("question")
@click.option("--json", "as_json", is_flag=True, help="Print the /api/ask JSON.")
@click.pass_obj
def ask(settings: Settings, question: str, as_json: bool) -> None:
    """Ask like a subscriber, recording nothing. Example: python run.py ask "贷款怎么申请" """
    import json

    from bot.api import ask_payload

    app = make_app(settings)
    with app.app_context():
        payload = ask_payload(question)
    if as_json:
        click.echo(json.dumps(payload, ensure_ascii=False, indent=2))
        return
    office = f"  office {payload['office']['name']}" if payload["office"] else ""
    click.echo(f"[{payload['band']}] {payload['topic'] or '-'}  score {payload['score']}{office}")
    click.echo(payload["answer"])


@cli.command("eval")
@click.argument("tsv", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.pass_obj
def evaluate_file(settings: Settings, tsv: Path) -> None:
    """Measure matching on labelled questions (question, topic, style; topic none = out of scope).

    Example: python run.py eval ../shared/dev-questions.tsv
    """
    from bot.knowledge.load import KnowledgeError, load_knowledge
    from bot.matching.evaluation import EvaluationError, evaluate
    from bot.matching.matcher import Matcher

    try:
        matcher = Matcher(load_knowledge(settings.matcher.policies_dir), settings.matcher)
        offices = {o.key: o.name for o in settings.county.offices}
        click.echo(evaluate(matcher, tsv, offices).format())
    except (KnowledgeError, EvaluationError) as exc:
        raise click.ClickException(str(exc)) from None


@cli.group()
def policies() -> None:
    """Knowledge-base commands."""


@policies.command("check")
@click.pass_obj
def policies_check(settings: Settings) -> None:
    """Validate policies/*.toml and report every problem. Example: python run.py policies check"""
    from bot.knowledge.load import check_knowledge

    problems = check_knowledge(settings.matcher.policies_dir, settings.matcher,
                               [o.key for o in settings.county.offices])
    for problem in problems:
        click.echo(problem, err=True)
    if problems:
        raise click.ClickException(f"知识库有 {len(problems)} 个问题")
    click.echo("知识库检查通过")


@cli.command()
@click.pass_obj
def reload(settings: Settings) -> None:
    """Check the knowledge base, then make running workers load it. Example: python run.py reload"""
    import os

    from bot.knowledge.load import KnowledgeError, load_knowledge

    folder = settings.matcher.policies_dir
    try:
        kb = load_knowledge(folder)
    except KnowledgeError as exc:
        raise click.ClickException(f"知识库有错误，服务继续使用旧版本：{exc}") from None
    # Workers watch the files' modification times; touching them triggers their reload.
    for path in folder.glob("*.toml"):
        os.utime(path)
    click.echo(f"已通知服务重新加载知识库（{len(kb.topics)} 个话题，约 2 秒内生效）")


@cli.group()
def staff() -> None:
    """Staff accounts for the web console at /admin."""


def _new_password_hash(label: str) -> str:
    """Ask for a password twice (hidden) and return its slow hash."""
    from werkzeug.security import generate_password_hash

    password = click.prompt(label, hide_input=True, confirmation_prompt=f"再输入一次{label}")
    if len(password) < 8:
        raise click.ClickException("密码至少 8 个字符")
    return generate_password_hash(password)


@contextlib.contextmanager
def _staff_db(settings: Settings) -> Iterator[Any]:
    """The migrated database, closed afterwards."""
    from bot.storage import engine, migrations

    migrations.migrate(settings.storage.database)
    database = engine.connect(settings.storage.database)
    try:
        yield database
    finally:
        database.close()


@staff.command("add")
@click.argument("name")
@click.pass_obj
def staff_add(settings: Settings, name: str) -> None:
    """Create a console account; asks for the password twice. Example: python run.py staff add wang"""
    from bot.storage import staff

    name = name.strip()
    if not name or len(name) > 64:
        raise click.ClickException("用户名不能为空，且不超过 64 个字符")
    password_hash = _new_password_hash("密码")
    with _staff_db(settings) as database:
        if not staff.add_staff(database, name, password_hash):
            raise click.ClickException(f"用户名 {name} 已存在")
        staff.audit(database, "cli", "创建后台账号", name)
    click.echo(f"已创建后台账号 {name}，登录地址 /admin")


@staff.command("reset-password")
@click.argument("name")
@click.pass_obj
def staff_reset_password(settings: Settings, name: str) -> None:
    """Set a new console password, ending the account's sessions and lifting a sign-in lock.

    Example: python run.py staff reset-password wang
    """
    from bot.storage import staff

    with _staff_db(settings) as database:
        if staff.get_staff(database, name) is None:  # before asking for a password in vain
            raise click.ClickException(f"没有后台账号 {name}")
        if not staff.set_staff_password(database, name, _new_password_hash("新密码")):
            raise click.ClickException(f"没有后台账号 {name}")
        staff.record_login_success(database, name)
        staff.audit(database, "cli", "重设后台密码", name)
    click.echo(f"已为 {name} 设置新密码，原来的登录已全部失效")


@staff.command("list")
@click.pass_obj
def staff_list(settings: Settings) -> None:
    """List console accounts with their state and last sign-in. Example: python run.py staff list"""
    from datetime import datetime

    from bot.clock import CHINA_TZ
    from bot.storage import staff

    def format_time(at: float | None) -> str:
        return datetime.fromtimestamp(at, CHINA_TZ).strftime("%Y-%m-%d %H:%M") if at else ""

    with _staff_db(settings) as database:
        accounts = staff.list_staff(database)
    if not accounts:
        click.echo("还没有后台账号。创建：python run.py staff add 用户名")
        return
    for account in accounts:
        state = f"已停用（{format_time(account['disabled_at'])}）" if account["disabled_at"] else "可用"
        last = format_time(account["last_login_at"]) or "从未登录"
        click.echo(f"{account['username']}  {state}  最近登录 {last}")


@staff.command("disable")
@click.argument("name")
@click.pass_obj
def staff_disable(settings: Settings, name: str) -> None:
    """Stop an account signing in and end its sessions. Example: python run.py staff disable wang"""
    _set_disabled(settings, name, True)
    click.echo(f"已停用后台账号 {name}，已登录的页面也已退出")


@staff.command("enable")
@click.argument("name")
@click.pass_obj
def staff_enable(settings: Settings, name: str) -> None:
    """Let a disabled account sign in again. Example: python run.py staff enable wang"""
    _set_disabled(settings, name, False)
    click.echo(f"已启用后台账号 {name}")


def _set_disabled(settings: Settings, name: str, disabled: bool) -> None:
    from bot.storage import staff

    with _staff_db(settings) as database:
        if not staff.set_staff_disabled(database, name, disabled):
            raise click.ClickException(f"没有后台账号 {name}")
        staff.audit(database, "cli", "停用后台账号" if disabled else "启用后台账号", name)


@cli.group()
def export() -> None:
    """Export data for staff. Example: python run.py export applications --format csv --out a.csv"""


@export.command("applications")
@click.option("--format", "fmt", type=click.Choice(["csv", "xlsx"]), required=True,
              help="csv (UTF-8 with BOM, opens in Excel) or xlsx.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="File to write.")
@click.option("--type", "type_", type=click.Choice(["training", "loan"]), default=None,
              help="Only training registrations or only loan applications.")
@click.option("--status", default=None, help="Only this status, e.g. 已提交.")
@click.pass_obj
def export_applications(settings: Settings, fmt: str, out: Path, type_: str | None,
                        status: str | None) -> None:
    """Write applications with full phone and ID numbers (handle the file with care).

    Example: python run.py export applications --format xlsx --out 申请.xlsx --type loan
    """
    from bot.export import export_applications as write
    from bot.startup import StartupError, prepare_storage
    from bot.storage import applications, engine

    if status is not None and status not in applications.STATUSES:
        raise click.ClickException(f"未知状态: {status}（可选：{'、'.join(applications.STATUSES)}）")
    try:
        vault = prepare_storage(settings)
    except StartupError as exc:
        raise click.ClickException(str(exc)) from None
    database = engine.connect(settings.storage.database)
    try:
        count = write(database, vault, out, fmt, type_, status)
    except ValueError as exc:  # a key that does not match the data
        raise click.ClickException(str(exc)) from None
    finally:
        database.close()
    click.echo(f"已导出 {count} 条申请到 {out}")


@cli.group("applications")
def applications_group() -> None:
    """Training registrations and loan applications.

    Example: python run.py applications status PX20261201-0001 审核中
    """


@applications_group.command("status")
@click.argument("ref")
@click.argument("status")
@click.option("--note", default="",
              help="Reason or instructions sent to the applicant (required for 未通过).")
@click.pass_obj
def application_status(settings: Settings, ref: str, status: str, note: str) -> None:
    """Move an application to its next status, as the console does, and notify the applicant.

    Steps: 已提交 → 审核中 → 已通过 / 未通过, 已通过 → 已完成; 已取消 (by staff) from any open
    status. 已撤回 is the applicant's own, in the chat. A freed course seat goes to the first
    on the waiting list, who is told.

    Example: python run.py applications status PX20261201-0001 未通过 --note "名额已满，请报下期"
    """
    from bot import casework, current_runtime
    from bot.storage import engine, staff

    app = make_app(settings)
    with app.app_context():
        rt = current_runtime()
        database = rt.open_db()
        try:
            with engine.transaction(database):
                change = casework.change_status(database, ref.strip().upper(), status, note[:300],
                                                "cli", casework.STAFF, settings.courses, rt.notices)
            staff.audit(database, "cli", "更改申请状态", f"{change.application['ref']} → {status}"
                        + (f"：{note}" if note else ""))
            rt.deliver_pending()
        except casework.Refused as refused:
            raise click.ClickException(labels.refusal(refused.code, refused.current, refused.wanted,
                                                      refused.allowed)) from None
        finally:
            database.close()
    click.echo(f"{change.application['ref']} 状态已改为“{status}”，已通知申请人")
    for p in change.promoted:
        click.echo(f"候补的 {p['name']}（{p['ref']}）已转为正式名额，已通知")


# --- announcements, push jobs and the custom menu ----------------------------------------

RUN_PY = Path(__file__).resolve().parent.parent / "run.py"


def check_audience(settings: Settings, audience: str) -> None:
    """Refuse an audience that names no configured township or course, in plain words."""
    from bot.push import announcements
    try:
        parsed = announcements.parse_audience(audience)
    except ValueError:
        raise click.ClickException(
            "--to 应为 all、township:乡镇名、course:课程编号 或 loan") from None
    if parsed.kind == "township" and parsed.value not in settings.county.townships:
        raise click.ClickException(f"没有这个乡镇：{parsed.value}。可选："
                                   + "、".join(settings.county.townships))
    courses = {c.id: c.name for c in settings.courses}
    if parsed.kind == "course" and parsed.value not in courses:
        raise click.ClickException(f"没有这个课程编号：{parsed.value}。可选："
                                   + "、".join(f"{k}（{v}）" for k, v in courses.items()))


def echo_progress_line(p: dict[str, Any]) -> None:
    """One progress line: done/total with delivered, failed and pending counts."""
    done = p["delivered"] + p["failed"] + p["unknown"] + p["cancelled"]
    click.echo(f"进度 {done}/{p['total']}：送达 {p['delivered']}，失败 {p['failed']}，"
               f"待发 {p['pending']}")


def echo_summary(database: Any, job_id: int) -> None:
    """The end of a send: counts by channel, each failed openid with its error code."""
    from bot.push import announcements
    p = announcements.job_progress(database, job_id)
    click.echo(f"发送任务 #{job_id}：{labels.JOB_STATUS.get(p['status'], p['status'])}")
    channels = "，".join(f"{labels.CHANNELS.get(k, k)} {v}" for k, v in sorted(p["by_channel"].items()))
    click.echo(f"共 {p['total']} 人：送达 {p['delivered']} 人" + (f"（{channels}）" if channels else "")
               + f"，失败 {p['failed']} 人")
    if p["failed"]:
        click.echo("失败名单：")
        for row in announcements.job_recipients(database, job_id, "failed", limit=10**6):
            click.echo(f"  {row['openid']}  错误码 {row['errcode']}")
    if p["unknown"]:
        click.echo(f"发送中断、无法确认是否送达（未重发）{p['unknown']} 人：")
        for row in announcements.job_recipients(database, job_id, "unknown", limit=10**6):
            click.echo(f"  {row['openid']}")
    if p["error"]:
        click.echo(f"无法发送：{p['error']}（请检查 [wechat] app_id、app_secret 和 api_base_url）")
    if p["pending"]:
        click.echo(f"还有 {p['pending']} 人稍后发送（限流或今日额度已用完），"
                   "届时运行：python run.py outbox drain")
    if p["cancelled"]:
        click.echo(f"已取消 {p['cancelled']} 人")


def watch_job(database: Any, job_id: int, thread: Any, interval: float = 0.5) -> None:
    """Print progress while the sending thread runs."""
    from bot.push import announcements
    last = None
    while True:
        alive = thread.is_alive()
        p = announcements.job_progress(database, job_id)
        key = (p["delivered"], p["failed"], p["pending"], p["unknown"])
        if key != last:
            echo_progress_line(p)
            last = key
        if not alive:
            return
        thread.join(interval)


@cli.command()
@click.option("--text", required=True, help="The announcement text.")
@click.option("--to", "audience", default="all", show_default=True,
              help="all | township:NAME | course:ID | loan")
@click.option("--url", default="", help="A link sent with the text.")
@click.option("--no-wait", is_flag=True, help="Send in a background process and return at once.")
@click.option("--by", "created_by", default="cli", show_default=True, help="Who sends it.")
@click.pass_obj
def announce(settings: Settings, text: str, audience: str, url: str, no_wait: bool,
             created_by: str) -> None:
    """Send an announcement to subscribers and wait for the result.

    Example: python run.py announce --text "茶叶培训12月8日开班" --to course:tea
    """
    import subprocess
    import sys

    from bot.push import announcements, runner
    if not text.strip():
        raise click.ClickException("通知内容不能为空")
    check_audience(settings, audience)
    sender = runner.PushSender(settings)
    database = sender.open_db()
    try:
        announcement_id = announcements.create_announcement(database, text, url, audience, created_by)
        job_id = announcements.start_job(database, announcement_id)
        total = announcements.job_progress(database, job_id)["total"]
        click.echo(f"通知 #{announcement_id} 已保存，发送任务 #{job_id}，共 {total} 人。")
        if no_wait:
            config = click.get_current_context().find_root().params["config_path"]
            subprocess.Popen([sys.executable, str(RUN_PY), "--config", str(config), "outbox",
                              "drain", "--job", str(job_id)], start_new_session=True,
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
            click.echo(f"已在后台发送。查看进度：python run.py outbox status {job_id}")
            return
        watch_job(database, job_id, runner.send_in_background(sender, job_id))
        echo_summary(database, job_id)
    finally:
        database.close()


@cli.group("outbox")
def outbox_group() -> None:
    """Queued messages and push jobs."""


@outbox_group.command("drain")
@click.option("--job", "job_id", type=int, default=None, help="Only this push job.")
@click.pass_obj
def outbox_drain(settings: Settings, job_id: int | None) -> None:
    """Resume unfinished push jobs (after a crash, a restart or a used-up quota).

    Example: python run.py outbox drain
    """
    from bot.push import runner
    sender = runner.PushSender(settings)
    if job_id is not None:
        runner.run_job(sender, job_id)
        jobs = [job_id]
    else:
        jobs = runner.resume_jobs(sender)
    database = sender.open_db()
    try:
        for job in jobs:
            echo_summary(database, job)
    finally:
        database.close()
    click.echo(f"处理了 {len(jobs)} 个发送任务。")


@outbox_group.command("status")
@click.argument("job_id", type=int)
@click.pass_obj
def outbox_status(settings: Settings, job_id: int) -> None:
    """Show a push job's progress and failures. Example: python run.py outbox status 3"""
    from bot.storage import engine
    database = engine.connect(settings.storage.database)
    try:
        try:
            echo_summary(database, job_id)
        except ValueError:
            raise click.ClickException(f"没有发送任务 #{job_id}") from None
    finally:
        database.close()


@cli.group("menu")
def menu_group() -> None:
    """The custom menu (自定义菜单)."""


@menu_group.command("push")
@click.pass_obj
def menu_push(settings: Settings) -> None:
    """Publish the [[menu]] buttons of config.toml to WeChat. Example: python run.py menu push"""
    import json

    from wechatpy.exceptions import WeChatClientException

    from bot.wechat.client import menu_json
    if not settings.menu:
        raise click.ClickException("配置文件里没有 [[menu]]，无法发布菜单")
    try:
        body = menu_json(settings.menu)
    except ValueError as exc:
        raise click.ClickException(f"菜单配置有误：{exc}") from None
    if settings.wechat.demo:
        click.echo(json.dumps(body, ensure_ascii=False, indent=2))
        click.echo("演示模式（未填写 app_secret）：菜单没有发布。")
        return
    from bot.push.runner import PushSender
    api = PushSender(settings).api
    assert api is not None  # not demo mode
    try:
        api.create_menu(body)
    except WeChatClientException as exc:
        raise click.ClickException(f"菜单发布失败：错误码 {exc.errcode} {exc.errmsg or ''}") from None
    count = sum(len(b.get("sub_button", [b])) for b in body["button"])
    click.echo(f"菜单已发布：{len(body['button'])} 个一级菜单，共 {count} 个按钮。")
