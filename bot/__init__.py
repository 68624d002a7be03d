"""创业通: a WeChat Official Account bot for a county's entrepreneurship programme."""
from __future__ import annotations

import logging
import sys

from flask import Flask, current_app, g
from sqlite_utils import Database

from bot.faults import StorageFailureFilter
from bot.knowledge.live import Library
from bot.privacy import RedactingFormatter
from bot.runtime import Runtime
from bot.settings import Settings


def create_app(settings: Settings, library: Library | None = None) -> Flask:
    """Build the Flask app: the only place where the pieces are wired together.

    A ready Library may be passed in (tests share one; building it takes a second).
    """
    from bot import api, console, simulator, webhook
    from handlers import NOTICES, build_router, describe_match

    configure_logging()
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.server.max_body_bytes
    runtime = Runtime(settings, build_router(), library or Library(settings), describe_match,
                      NOTICES)
    app.extensions["bot"] = runtime
    app.teardown_appcontext(_close_db)
    app.register_blueprint(webhook.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(console.bp)
    if settings.simulator.enabled:
        app.register_blueprint(simulator.bp)
    return app


def current_runtime() -> Runtime:
    """The current app's Runtime."""
    return current_app.extensions["bot"]


def get_db() -> Database:
    """The request's database connection, opened on first use and closed at teardown."""
    if "db" not in g:
        g.db = current_runtime().open_db()
    return g.db


def _close_db(_exc: BaseException | None) -> None:
    database = g.pop("db", None)
    if database is not None:
        database.close()


def configure_logging() -> None:
    """Application logs to stderr, with phone and ID numbers masked in every line."""
    root = logging.getLogger()
    if any(getattr(h, "_cyt", False) for h in root.handlers):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler._cyt = True  # type: ignore[attr-defined]
    handler.setFormatter(RedactingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(StorageFailureFilter())
    root.addHandler(handler)
    root.setLevel(logging.INFO)
