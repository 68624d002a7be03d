"""Storage under concurrency: writers queue for one lock, and nothing leaves it held."""
from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time

from bot.storage import engine, migrations, user_state
from tests.conftest import ROOT


def test_a_writer_waits_for_another_threads_transaction_then_succeeds(tmp_path):
    path = tmp_path / "bot.db"
    migrations.migrate(path)
    holder, waiter = engine.connect(path), engine.connect(path)
    done = []

    def write_while_held() -> None:
        user_state.save_state(waiter, "o-b", {"n": 2})
        done.append(time.monotonic())

    with engine.transaction(holder):
        user_state.save_state(holder, "o-a", {"n": 1})
        thread = threading.Thread(target=write_while_held)
        thread.start()
        time.sleep(0.3)
        assert not done  # still queued behind the open transaction
        committed = time.monotonic()
    thread.join(5)
    assert done and done[0] >= committed
    assert user_state.load_state(holder, "o-b") == {"n": 2}


def test_a_writer_waits_for_another_process_then_succeeds(tmp_path):
    path = tmp_path / "bot.db"
    migrations.migrate(path)
    script = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(ROOT)!r})
        from bot.storage import engine, migrations, user_state
        database = engine.connect({str(path)!r})
        with engine.transaction(database):
            user_state.save_state(database, "o-a", {{"n": 1}})
            print("holding", flush=True)
            time.sleep(0.5)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "holding"
    database = engine.connect(path)
    database.conn.execute("PRAGMA busy_timeout=100")  # only the write lock may do the waiting
    start = time.monotonic()
    user_state.save_state(database, "o-b", {"n": 2})
    assert time.monotonic() - start > 0.2
    assert proc.wait(10) == 0
    assert user_state.load_state(database, "o-a") == {"n": 1}


def test_the_message_log_is_pruned_past_keep_days_in_the_background(tmp_path):
    from bot.storage import messages
    from tests.conftest import create_app, make_settings, wait_for

    settings = make_settings(tmp_path, storage={"keep_days": 30})
    app = create_app(settings)
    runtime = app.extensions["bot"]
    database = engine.connect(settings.storage.database)
    try:
        day = 86400
        for key, age in (("msg:old", 31 * day), ("msg:recent", 29 * day), ("msg:new", 0)):
            messages.record_message(database, key, "o-1", key[4:], "text", "你好",
                                    engine.now() - age, "您好", "text", None, None, "replied")
        runtime.start_courier(prune_interval=0.05)
        assert wait_for(lambda: messages.find_message(database, "msg:old") is None)
        assert messages.find_message(database, "msg:recent") is not None
        assert messages.find_message(database, "msg:new") is not None
    finally:
        runtime.close()
        database.close()


def test_pruning_goes_in_batches_and_counts_what_it_removed(tmp_path):
    from bot.storage import messages

    path = tmp_path / "bot.db"
    migrations.migrate(path)
    database = engine.connect(path)
    for n in range(25):
        messages.record_message(database, f"msg:{n}", "o-1", str(n), "text", "x", 1000.0 + n,
                                "", "empty", None, None, "replied")
    assert messages.prune_messages(database, 1020.0, batch=7) == 20
    assert [m["msg_id"] for m in messages.recent_messages(database, "o-1")] == \
        ["24", "23", "22", "21", "20"]
