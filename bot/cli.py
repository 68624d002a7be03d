"""Command line: `python run.py [--config F] COMMAND`. Settings are loaded once into ctx.obj."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import click

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
    from bot.knowledge import KnowledgeError
    try:
        return create_app(settings)
    except (SettingsError, KnowledgeError) as exc:
        raise click.ClickException(f"无法启动：{exc}") from None


@cli.command("dev")
@click.pass_obj
def run_dev(settings: Settings) -> None:
    """Start the development server (demo). Example: python run.py dev"""
    app = make_app(settings)
    host, port = settings.server.host, settings.server.port
    click.echo(f"创业通已启动: http://{host}:{port}/simulator  (webhook: /wechat)")
    app.run(host=host, port=port, threaded=True, use_reloader=False)


@cli.command()
@click.option("--workers", type=int, default=None, help="Worker processes (default: [server] workers).")
@click.option("--bind", default=None, help="host:port (default: [server] host and port).")
@click.pass_obj
def serve(settings: Settings, workers: int | None, bind: str | None) -> None:
    """Run under gunicorn for production. Example: python run.py serve --workers 4"""
    from gunicorn.app.base import BaseApplication

    app = make_app(settings)
    options = {
        "bind": bind or f"{settings.server.host}:{settings.server.port}",
        "workers": workers or settings.server.workers,
        "worker_class": "gthread",
        "threads": 4,
        "timeout": 30,
        "accesslog": None,
    }

    class Gunicorn(BaseApplication):
        def load_config(self) -> None:
            for key, value in options.items():
                self.cfg.set(key, value)

        def load(self) -> Any:
            return app

    Gunicorn().run()


@cli.command()
@click.option("--openid", default="cli-user", show_default=True, help="Subscriber to act as.")
@click.pass_obj
def chat(settings: Settings, openid: str) -> None:
    """Chat with the bot in the terminal, through the signed webhook path. Example: python run.py chat"""
    from bot import runtime as current_runtime
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
    from bot import db
    db.migrate(settings.storage.database)
    click.echo(f"数据库已就绪: {settings.storage.database}")


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
    click.echo(f"[{payload['band']}] {payload['topic'] or '-'}  score {payload['score']}")
    click.echo(payload["answer"])


@cli.command("eval")
@click.argument("tsv", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.pass_obj
def evaluate_file(settings: Settings, tsv: Path) -> None:
    """Measure matching on labelled questions (question, topic, style; topic none = out of scope).

    Example: python run.py eval ../shared/dev-questions.tsv
    """
    from bot.evaluation import EvaluationError, evaluate
    from bot.knowledge import KnowledgeError, load_knowledge
    from bot.matcher import Matcher

    try:
        matcher = Matcher(load_knowledge(settings.matcher.policies_dir), settings.matcher)
        click.echo(evaluate(matcher, tsv).format())
    except (KnowledgeError, EvaluationError) as exc:
        raise click.ClickException(str(exc)) from None


@cli.group()
def policies() -> None:
    """Knowledge-base commands."""


@policies.command("check")
@click.pass_obj
def policies_check(settings: Settings) -> None:
    """Validate policies/*.toml and report every problem. Example: python run.py policies check"""
    from bot.knowledge import check_knowledge

    problems = check_knowledge(settings.matcher.policies_dir, settings.matcher)
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

    from bot.knowledge import KnowledgeError, load_knowledge

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


@staff.command("add")
@click.argument("name")
@click.pass_obj
def staff_add(settings: Settings, name: str) -> None:
    """Create a console account; asks for the password twice. Example: python run.py staff add wang"""
    from werkzeug.security import generate_password_hash

    from bot import db

    name = name.strip()
    if not name or len(name) > 64:
        raise click.ClickException("用户名不能为空，且不超过 64 个字符")
    password = click.prompt("密码", hide_input=True, confirmation_prompt="再输入一次密码")
    if len(password) < 8:
        raise click.ClickException("密码至少 8 个字符")
    db.migrate(settings.storage.database)
    database = db.connect(settings.storage.database)
    try:
        if not db.add_staff(database, name, generate_password_hash(password)):
            raise click.ClickException(f"用户名 {name} 已存在")
        db.audit(database, "cli", "创建后台账号", name)
    finally:
        database.close()
    click.echo(f"已创建后台账号 {name}，登录地址 /admin")
