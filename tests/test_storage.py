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
