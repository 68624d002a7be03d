"""Start-up checks and the data folder: keys that fit the data, a database that takes
writes, owner-only files; and what the webhook does when the database stops taking writes."""
from __future__ import annotations

import contextlib
import io
import logging
import sqlite3
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from bot.cli import cli
from bot.storage import engine, migrations
from tests import wx
from tests.conftest import ROOT, Chat, create_app, make_settings
from tests.test_registration import COURSES, TRAINING_TO_SUMMARY, converse


def write_config(tmp_path: Path, database: Path, extra: str = "") -> Path:
    path = tmp_path / "config.toml"
    path.write_text(f'[storage]\ndatabase = "{database}"\n{extra}'
                    f'[matcher]\npolicies_dir = "{ROOT / "policies"}"\n', encoding="utf-8")
    return path


def start_a_form(tmp_path: Path) -> Path:
    """A database holding encrypted data: a form half filled in (name and phone given)."""
    app = create_app(make_settings(tmp_path, courses=COURSES))
    converse(Chat(app.test_client(), "o-form"), TRAINING_TO_SUMMARY[:4])
    app.extensions["bot"].close()
    return tmp_path / "bot.db"


@contextlib.contextmanager
def read_only(path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[bool]:
    """Make the database file refuse writes, even to root; yields True if the file system did.

    Tests run as root, which chmod does not stop. `chattr +i` (immutable) does: SQLite then
    opens the file read-only and every write fails as on a read-only mount. Where chattr
    is not supported, each new connection is opened with PRAGMA query_only instead, which
    fails writes with the same SQLite error.
    """
    done = subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode == 0
    if not done:
        connect = engine.connect

        def query_only(*args, **kwargs):
            database = connect(*args, **kwargs)
            database.conn.execute("PRAGMA query_only=ON")
            return database
        monkeypatch.setattr(engine, "connect", query_only)
        monkeypatch.setattr(migrations, "connect", query_only)
    try:
        yield done
    finally:
        if done:
            subprocess.run(["chattr", "-i", str(path)], check=True)
        else:
            monkeypatch.undo()


def ask(config: Path):
    """`run.py ask`: creates the app (every start-up check) and answers one question."""
    return CliRunner().invoke(cli, ["--config", str(config), "ask", "贷款怎么申请"])


# --- the data key -----------------------------------------------------------------------

def test_lost_data_key_stops_start_up_and_names_the_file(tmp_path):
    database = start_a_form(tmp_path)
    key_file = tmp_path / "secret.key"
    key_file.unlink()
    result = ask(write_config(tmp_path, database))
    assert result.exit_code == 1
    line = result.output.strip()
    assert "\n" not in line and str(key_file) in line and "备份" in line
    assert not key_file.exists()  # no new key that would orphan the stored data


def test_key_that_does_not_fit_the_data_stops_start_up(tmp_path):
    from cryptography.fernet import Fernet
    database = start_a_form(tmp_path)
    other = Fernet.generate_key().decode()
    result = ask(write_config(tmp_path, database, f'encryption_key = "{other}"\n'))
    assert result.exit_code == 1 and "不匹配" in result.output
    (tmp_path / "secret.key").write_text("not a key")
    result = ask(write_config(tmp_path, database))
    assert result.exit_code == 1 and "不是有效的密钥" in result.output


def test_export_without_the_key_is_one_clear_line(tmp_path):
    database = start_a_form(tmp_path)
    (tmp_path / "secret.key").unlink()
    result = CliRunner().invoke(cli, ["--config", str(write_config(tmp_path, database)), "export",
                                      "applications", "--format", "csv", "--out",
                                      str(tmp_path / "a.csv")])
    assert result.exit_code == 1 and "secret.key" in result.output
    assert not (tmp_path / "a.csv").exists() and not (tmp_path / "secret.key").exists()


def test_empty_database_gets_a_new_key_and_the_form_survives_a_restart(tmp_path):
    start_a_form(tmp_path)
    assert (tmp_path / "secret.key").exists()
    app = create_app(make_settings(tmp_path, courses=COURSES))
    chat = Chat(app.test_client(), "o-form")
    assert "身份证号" in chat.say("继续报名")  # the open form still decrypts
    app.extensions["bot"].close()


# --- a database that takes no writes ----------------------------------------------------

def test_read_only_database_stops_start_up_with_one_line(tmp_path, monkeypatch):
    database = tmp_path / "bot.db"
    migrations.migrate(database)  # an up-to-date database: start-up needs no write to open it
    config = write_config(tmp_path, database)
    with read_only(database, monkeypatch):
        result = ask(config)
    assert result.exit_code == 1, result.output
    assert result.output.count("\n") == 1 and "无法写入" in result.output
    assert str(database) in result.output and "Traceback" not in result.output


def test_serve_on_a_read_only_database_exits_with_one_line(tmp_path, monkeypatch):
    database = tmp_path / "bot.db"
    migrations.migrate(database)
    config = write_config(tmp_path, database, "")
    with read_only(database, monkeypatch) as on_disk:
        if not on_disk:
            pytest.skip("chattr +i unsupported here; a subprocess cannot take the query_only hook")
        done = subprocess.run([sys.executable, "run.py", "--config", str(config), "serve",
                               "--bind", "127.0.0.1:0"], cwd=ROOT, capture_output=True,
                              text=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and "无法写入" in done.stderr, done.stderr


def test_read_only_database_at_run_time_answers_success_and_logs_once(tmp_path, monkeypatch):
    settings = make_settings(tmp_path)
    app = create_app(settings)
    try:
        chat = Chat(app.test_client(), "o-1")
        assert "贷款" in chat.say("贷款怎么申请")
        app.extensions["bot"].close()  # a fresh runtime: no connection opened before the failure
        app = create_app(settings)
        client = app.test_client()
        handler = next(h for h in logging.getLogger().handlers if getattr(h, "_cyt", False))
        stream = io.StringIO()
        previous = handler.setStream(stream)
        try:
            with read_only(settings.storage.database, monkeypatch):
                bodies = []
                for n in range(40):
                    xml = wx.text_xml("o-2", "贷款怎么申请", msg_id=777000 + n)
                    resp = client.post("/wechat?" + wx.query(), data=xml.encode(), content_type="text/xml")
                    assert resp.status_code == 200
                    bodies.append(resp.get_data(as_text=True))
        finally:
            handler.setStream(previous)
        assert set(bodies) == {"success"}
        lines = stream.getvalue().splitlines()
        assert len(lines) == 1 and "readonly" in lines[0], lines
        # Nothing was recorded, so WeChat's resend of the same message gets a real answer.
        xml = wx.text_xml("o-2", "贷款怎么申请", msg_id=777000)
        resp = client.post("/wechat?" + wx.query(), data=xml.encode(), content_type="text/xml")
        assert "贷款" in wx.reply_content(resp.get_data(as_text=True))
    finally:
        app.extensions["bot"].close()
    rows = sqlite3.connect(settings.storage.database).execute(
        "SELECT openid, msg_id FROM messages ORDER BY id").fetchall()
    assert rows == [("o-1", rows[0][1]), ("o-2", "777000")]


def test_a_message_held_back_by_a_read_only_database_is_answered_once_it_takes_writes(
        tmp_path, monkeypatch):
    settings = make_settings(tmp_path)
    migrations.migrate(settings.storage.database)
    app = create_app(settings)
    runtime = app.extensions["bot"]
    try:
        client = app.test_client()
        with read_only(settings.storage.database, monkeypatch):
            xml = wx.text_xml("o-3", "贷款怎么申请", msg_id=888001)
            resp = client.post("/wechat?" + wx.query(), data=xml.encode(), content_type="text/xml")
            assert resp.get_data(as_text=True) == "success"
            assert runtime.retry_held() == 0  # still read-only: kept for the next try
        assert runtime.retry_held() == 1
        assert runtime.retry_held() == 0  # answered once
    finally:
        runtime.close()
    database = sqlite3.connect(settings.storage.database)
    assert database.execute("SELECT msg_id, state FROM messages WHERE openid = 'o-3'").fetchall() == [
        ("888001", "deferred")]
    # Demo mode: the late answer went out as a customer-service message (the simulator inbox).
    inbox = [row[0] for row in database.execute("SELECT text FROM inbox WHERE openid = 'o-3'")]
    assert len(inbox) == 1 and "贷款" in inbox[0]


# --- owner-only files -------------------------------------------------------------------

def test_data_folder_and_its_files_are_owner_only(tmp_path):
    data = tmp_path / "data"
    settings = make_settings(tmp_path, storage={"database": str(data / "bot.db")})
    app = create_app(settings)
    try:
        Chat(app.test_client()).say("你好")  # the WAL and its index exist while it runs
        names = {p.name: stat.S_IMODE(p.stat().st_mode) for p in data.iterdir() if p.is_file()}
    finally:
        app.extensions["bot"].close()
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    for name in ("bot.db", "bot.db-wal", "bot.db-shm", "bot.db.claims", "bot.db.writer",
                 "bot.db.lock", "secret.key", "console.key"):
        assert names.get(name) == 0o600, (name, names)
    assert set(names.values()) == {0o600}


def test_the_matcher_leaves_no_cache_file_in_the_shared_temp_folder(tmp_path):
    """jieba's dictionary cache sat in /tmp, where any local user could replace it."""
    temp = tmp_path / "tmp"
    temp.mkdir()
    script = ("from bot.knowledge.load import load_knowledge\nfrom bot.matching.matcher import Matcher\n"
              "from bot.settings import MatcherSettings\n"
              f"m = Matcher(load_knowledge({str(ROOT / 'policies')!r}), MatcherSettings())\n"
              "print(m.match('创业贷款个人最高能贷多少钱').topic_id)\n")
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, env={"TMPDIR": str(temp), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "support.loan"
    assert list(temp.iterdir()) == []
