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
    app = make_app(settings)
    run_gunicorn(app, gunicorn_options(bind or f"{settings.server.host}:{settings.server.port}",
                                       workers or settings.server.workers))


def gunicorn_options(bind: str, workers: int) -> dict[str, Any]:
    """gunicorn settings for `serve`; bench/webhook.py runs its baseline app with the same."""
    return {
        "bind": bind,
        "workers": workers,
        "worker_class": "gthread",
        "threads": 4,
        "timeout": 30,
        "accesslog": None,
        # gunicorn >= 25 opens a control socket at one per-user path, so a second
        # instance on the host (another county, the benchmark) would take it over.
        "control_socket_disable": True,
    }


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
    from bot import db
    from bot.export import export_applications as write
    from bot.privacy import Vault, load_or_create_key

    if status is not None and status not in db.STATUSES:
        raise click.ClickException(f"未知状态: {status}（可选：{'、'.join(db.STATUSES)}）")
    db.migrate(settings.storage.database)
    vault = Vault(load_or_create_key(settings.storage.encryption_key,
                                     settings.data_dir / "secret.key"))
    database = db.connect(settings.storage.database)
    try:
        count = write(database, vault, out, fmt, type_, status)
    except ValueError as exc:  # a key that does not match the data
        raise click.ClickException(str(exc)) from None
    finally:
        database.close()
    click.echo(f"已导出 {count} 条申请到 {out}")
