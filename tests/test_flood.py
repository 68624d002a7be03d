"""A subscriber flooding the account: one notice, then silence, nothing lost."""
from __future__ import annotations

import time

import pytest

from bot.storage import engine, messages
from tests.conftest import Chat, create_app, make_settings

NOTICE = "您发得太快了，请稍后再发。"


@pytest.fixture
def app(tmp_path):
    app = create_app(make_settings(tmp_path, ratelimit={"max_messages": 5, "window_seconds": 1.5}))
    yield app
    app.extensions["bot"].close()


def test_a_flood_gets_one_notice_then_silence_and_stays_out_of_the_review_queue(app):
    chat = Chat(app.test_client(), "o-flood")
    other = Chat(app.test_client(), "o-calm")
    started = time.monotonic()
    replies = [chat.say(f"今天会下雨吗{n}") for n in range(12)]
    assert time.monotonic() - started < 1.5  # all inside one window
    assert all(r and r != NOTICE for r in replies[:5])
    assert replies[5] == NOTICE and replies[6:] == [""] * 6  # "" = WeChat got "success"
    assert other.say("今天会下雨吗") not in ("", NOTICE)  # others are not held back
    database = engine.connect(app.extensions["bot"].settings.storage.database)
    try:
        logged = [m["content"] for m in messages.recent_messages(database, "o-flood")]
        assert sorted(logged) == sorted(f"今天会下雨吗{n}" for n in range(12))  # nothing lost
        questions = [q["question"] for q in messages.open_unanswered(database)
                     if q["openid"] == "o-flood"]
        assert len(questions) == 5  # the held-back ones did not enter the queue
    finally:
        database.close()
    time.sleep(1.6)  # the window passes
    assert chat.say("贷款怎么申请") not in ("", NOTICE)


def test_the_limit_holds_across_workers(tmp_path):
    """Two apps on one database stand for two gunicorn workers: the count is in storage."""
    settings = make_settings(tmp_path, ratelimit={"max_messages": 4, "window_seconds": 60})
    first, second = create_app(settings), create_app(settings)
    try:
        a, b = Chat(first.test_client(), "o-x"), Chat(second.test_client(), "o-x")
        replies = [(a if n % 2 else b).say("你好") for n in range(6)]
        assert replies[4] == NOTICE and replies[5] == ""
    finally:
        first.extensions["bot"].close()
        second.extensions["bot"].close()
