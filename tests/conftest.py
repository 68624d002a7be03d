from __future__ import annotations

import contextlib
import functools
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from flask import Flask
from werkzeug.serving import make_server

from bot import create_app as _create_app
from bot.knowledge.live import Library
from bot.settings import Settings, settings_from_dict
from bot.storage import engine
from tests import wx

ROOT = Path(__file__).resolve().parent.parent


def make_settings(tmp_path: Path, **tables: dict) -> Settings:
    """Settings for tests: database in tmp_path, the shipped knowledge base, test secrets."""
    raw: dict = {
        "wechat": {"token": wx.TOKEN, "app_id": wx.APP_ID, "app_secret": ""},
        "storage": {"database": str(tmp_path / "bot.db")},
        "matcher": {"policies_dir": str(ROOT / "policies")},
        "county": {"hotline": "0000-12345678", "townships": ["城关镇", "石桥镇", "青山乡"]},
        # Tests talk at machine speed, far past any human's rate (tests/test_flood.py sets one).
        "ratelimit": {"max_messages": 0},
    }
    for table, values in tables.items():
        raw[table] = {**raw.get(table, {}), **values} if isinstance(values, dict) else values
    return settings_from_dict(raw)


@functools.cache
def _shared_library(settings: Settings) -> Library:
    return Library(settings)


def create_app(settings: Settings) -> Flask:
    """create_app, sharing one Library among apps that serve the shipped knowledge base."""
    default = make_settings(Path("/nonexistent"))
    if (settings.matcher, settings.county, settings.loan) == (default.matcher, default.county, default.loan):
        return _create_app(settings, _shared_library(default))
    return _create_app(settings)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path)


@pytest.fixture
def database(settings: Settings):
    """A connection to the test's database file (the app's, once an app made it)."""
    database = engine.connect(settings.storage.database)
    yield database
    database.close()


@pytest.fixture
def app(settings: Settings):
    app = create_app(settings)
    app.config["TESTING"] = True
    yield app
    app.extensions["bot"].close()


@pytest.fixture
def client(app):
    return app.test_client()


class Chat:
    """say(text) posts signed XML for one subscriber and returns the reply text."""

    def __init__(self, client, openid: str = "o-villager-1"):
        self.client = client
        self.openid = openid

    def post(self, xml: str):
        return self.client.post("/wechat?" + wx.query(), data=xml.encode("utf-8"),
                                content_type="text/xml")

    def say(self, text: str) -> str:
        resp = self.post(wx.text_xml(self.openid, text))
        assert resp.status_code == 200, resp.status_code
        return wx.reply_content(resp.get_data(as_text=True))

    def event(self, event: str, key: str = "") -> str:
        resp = self.post(wx.event_xml(self.openid, event, key))
        assert resp.status_code == 200
        return wx.reply_content(resp.get_data(as_text=True))


@pytest.fixture
def chat(client) -> Chat:
    return Chat(client)


@pytest.fixture
def wechat_api():
    """The fake WeChat API server, started for one test (tests/fake_wechat.py)."""
    from tests.fake_wechat import FakeWeChat
    api = FakeWeChat().start()
    yield api
    api.stop()


def wait_for(predicate: Callable[[], object], timeout: float = 10.0) -> bool:
    """Poll until predicate() is true (background delivery, other processes)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


# Debian's Chromium: Playwright's own browser download cannot work here. The flags keep it
# off the network it would otherwise try at every start.
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium, one per test module."""
    from playwright.sync_api import sync_playwright
    with sync_playwright() as pw:
        launched = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield launched
        launched.close()


@contextlib.contextmanager
def serving(app: Flask) -> Iterator[str]:
    """The app on 127.0.0.1 (werkzeug, port 0, in a thread) while the block runs; its URL."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join()
