"""The command line as staff use it (run.py)."""
from __future__ import annotations

import json
import subprocess
import sys

from click.testing import CliRunner

from bot.cli import cli
from tests.conftest import ROOT


def config_for(tmp_path, extra: str = "") -> str:
    path = tmp_path / "config.toml"
    path.write_text(f'[storage]\ndatabase = "{tmp_path / "bot.db"}"\n'
                    f'[matcher]\npolicies_dir = "{ROOT / "policies"}"\n{extra}', encoding="utf-8")
    return str(path)


def test_help_lists_subcommands():
    out = subprocess.run([sys.executable, "run.py", "--help"], cwd=ROOT, capture_output=True,
                         text=True, timeout=60).stdout
    for command in ("serve", "chat", "ask", "eval", "policies", "reload", "init-db"):
        assert command in out


def test_chat_goes_through_the_webhook(tmp_path):
    result = CliRunner().invoke(cli, ["--config", config_for(tmp_path), "chat", "--openid", "o-term"],
                                input="菜单\n/quit\n")
    assert result.exit_code == 0
    assert "欢迎关注" in result.output and "8. 联系我们" in result.output
    import sqlite3
    rows = sqlite3.connect(tmp_path / "bot.db").execute(
        "SELECT openid, msg_type, content FROM messages ORDER BY id").fetchall()
    assert rows == [("o-term", "event", ""), ("o-term", "text", "菜单")]


def test_ask_json_matches_api_shape(tmp_path):
    result = CliRunner().invoke(cli, ["--config", config_for(tmp_path), "ask", "创业贷款个人最高能贷多少钱",
                                      "--json"])
    data = json.loads(result.output)
    assert data["band"] == "answer" and data["topic"] == "support.loan"
    assert set(data) == {"band", "topic", "score", "answer", "suggestions", "office"}  # office: issue 14


def test_eval_prints_accuracy_and_misses(tmp_path):
    tsv = tmp_path / "q.tsv"
    tsv.write_text("question\ttopic\tstyle\n创业贷款个人最高能贷多少钱\tsupport.loan\tformal\n"
                   "今天会下雨吗\tnone\toos\n", encoding="utf-8")
    result = CliRunner().invoke(cli, ["--config", config_for(tmp_path), "eval", str(tsv)])
    assert result.exit_code == 0
    assert "top-1 accuracy: 100.0% (2/2)" in result.output
    assert "0.0% (0/1)" in result.output


def test_policies_check_passes_on_shipped_base(tmp_path):
    result = CliRunner().invoke(cli, ["--config", config_for(tmp_path), "policies", "check"])
    assert result.exit_code == 0, result.output
    assert "检查通过" in result.output


def test_backup_restores_into_a_fresh_data_folder_with_readable_numbers(tmp_path):
    import csv
    import shutil
    import stat

    from tests.conftest import Chat, create_app, make_settings
    from tests.test_registration import COURSES, ID, PHONE, TRAINING_TO_SUMMARY, converse

    live = tmp_path / "live"
    app = create_app(make_settings(live, courses=COURSES))
    try:
        chat = Chat(app.test_client(), "o-reg")
        converse(chat, TRAINING_TO_SUMMARY)
        assert "报名成功" in chat.say("确认")
        # Online: the service still has the database open, its last writes in the WAL.
        dest = tmp_path / "backups" / "today"
        result = CliRunner().invoke(cli, ["--config", config_for(live), "backup", str(dest)])
        assert result.exit_code == 0, result.output
    finally:
        app.extensions["bot"].close()
    assert stat.S_IMODE(dest.stat().st_mode) == 0o700
    files = {p.name: stat.S_IMODE(p.stat().st_mode) for p in dest.iterdir()}
    assert files == {"bot.db": 0o600, "secret.key": 0o600, "console.key": 0o600}
    again = CliRunner().invoke(cli, ["--config", config_for(live), "backup", str(dest)])
    assert again.exit_code == 1 and "不是空的" in again.output

    fresh = tmp_path / "restored"
    fresh.mkdir(mode=0o700)
    for name in files:
        shutil.copy2(dest / name, fresh / name)
    out = tmp_path / "a.csv"
    result = CliRunner().invoke(cli, ["--config", config_for(fresh), "export", "applications",
                                      "--format", "csv", "--out", str(out)])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(out.read_text(encoding="utf-8-sig").splitlines()))
    # The CSV marks numbers as text with a leading apostrophe, for Excel and WPS.
    assert [(r["姓名"], r["手机号"], r["身份证号"]) for r in rows] == [("张三", "'" + PHONE, "'" + ID)]
