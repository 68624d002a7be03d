"""A serving process delivers queued notices and resumes unfinished push jobs by itself."""
from __future__ import annotations

from bot.push import announcements, courier
from bot.storage import engine, messages, migrations, push, user_state
from tests.conftest import create_app, wait_for


def test_restarted_service_finishes_a_job_left_unsent(settings):
    migrations.migrate(settings.storage.database)
    database = engine.connect(settings.storage.database)
    for openid in ("o-a", "o-b", "o-c"):
        messages.touch_subscriber(database, openid, subscribed=True)
    # A job created by a process that died before sending anything.
    announcement = announcements.create_announcement(database, "明天开班", None, "all", "staff")
    job = announcements.start_job(database, announcement)
    app = create_app(settings)
    runtime = app.extensions["bot"]
    try:
        runtime.start_courier(notice_interval=0.1, job_interval=0.1)
        assert wait_for(lambda: announcements.job_progress(database, job)["delivered"] == 3)
        for openid in ("o-a", "o-b", "o-c"):
            assert [m["text"] for m in push.inbox_since(database, openid, 0)] == ["明天开班"]
    finally:
        runtime.close()


def test_courier_delivers_a_queued_notice(settings):
    app = create_app(settings)
    runtime = app.extensions["bot"]
    database = engine.connect(settings.storage.database)
    try:
        courier.notify(database, "o-n", "您的申请已通过")
        runtime.start_courier(notice_interval=0.1, job_interval=60)
        assert wait_for(lambda: push.inbox_since(database, "o-n", 0))
        assert push.inbox_since(database, "o-n", 0)[0]["text"] == "您的申请已通过"
    finally:
        runtime.close()


def test_serving_process_moves_the_wal_into_the_database_in_the_background(settings):
    app = create_app(settings)
    runtime = app.extensions["bot"]
    try:
        runtime.start_courier(notice_interval=60, job_interval=60, checkpoint_interval=0.05)
        database = runtime.connect()
        # Commits leave the copying to the courier: no fsyncs while other writers wait.
        assert database.conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
        size = settings.storage.database.stat().st_size
        for n in range(300):
            user_state.save_state(database, f"o-{n}", {"more": ["第二页" * 200]})
        assert wait_for(lambda: settings.storage.database.stat().st_size > size + 100_000)
    finally:
        runtime.close()
