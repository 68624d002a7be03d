"""The live knowledge base: edits on disk reach the bot without a restart; broken edits don't."""
from __future__ import annotations

import os
import shutil
import time

import pytest
from click.testing import CliRunner

from bot.cli import cli
from bot.knowledge import live as library_module
from tests.conftest import ROOT, Chat, create_app, make_settings

QUESTION = "开小店地址能用自己家住房吗"


@pytest.fixture
def policies(tmp_path):
    folder = tmp_path / "policies"
    shutil.copytree(ROOT / "policies", folder)
    return folder


@pytest.fixture
def live_app(tmp_path, policies, monkeypatch):
    monkeypatch.setattr(library_module, "RELOAD_CHECK_SECONDS", 0.0)
    app = create_app(make_settings(tmp_path, matcher={"policies_dir": str(policies)}))
    yield app
    app.extensions["bot"].close()


def edit(path, old, new):
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    # Make sure the modification time moves even on coarse file systems.
    stamp = time.time() + 1
    os.utime(path, (stamp, stamp))


def premises_answer_start(policies) -> str:
    import tomllib
    data = tomllib.loads((policies / "relax.toml").read_text(encoding="utf-8"))
    return data["topics"]["relax.premises"]["answer"][:12]


def test_edit_on_disk_is_served_without_restart(live_app, policies):
    chat = Chat(live_app.test_client())
    first = chat.say(QUESTION)
    start = premises_answer_start(policies)
    assert start in first
    edit(policies / "relax.toml", start, "【已更新】" + start)
    assert "【已更新】" in chat.say(QUESTION)


def test_broken_edit_keeps_old_base_serving(live_app, policies):
    chat = Chat(live_app.test_client())
    start = premises_answer_start(policies)
    edit(policies / "relax.toml", 'title = "五个放宽"', 'title = ')
    reply = chat.say(QUESTION)
    assert start in reply
    assert live_app.extensions["bot"].library.last_error


def test_reload_command_refuses_broken_base(tmp_path, policies):
    config = tmp_path / "config.toml"
    config.write_text(f'[matcher]\npolicies_dir = "{policies}"\n'
                      f'[storage]\ndatabase = "{tmp_path / "b.db"}"\n', encoding="utf-8")
    ok = CliRunner().invoke(cli, ["--config", str(config), "reload"])
    assert ok.exit_code == 0 and "重新加载" in ok.output
    edit(policies / "support.toml", "[topics.\"support.loan\"]", "[topics.\"support.loan\"")
    bad = CliRunner().invoke(cli, ["--config", str(config), "reload"])
    assert bad.exit_code != 0 and "support.toml" in bad.output and "旧版本" in bad.output


def test_start_up_refuses_broken_base_with_file_name(tmp_path, policies):
    edit(policies / "encourage.toml", 'title = "五个鼓励"', 'title = 5')
    config = tmp_path / "config.toml"
    config.write_text(f'[matcher]\npolicies_dir = "{policies}"\n'
                      f'[storage]\ndatabase = "{tmp_path / "b.db"}"\n', encoding="utf-8")
    result = CliRunner().invoke(cli, ["--config", str(config), "ask", "贷款"])
    assert result.exit_code != 0 and "encourage.toml" in result.output and "Traceback" not in result.output


def test_a_repeated_question_follows_a_new_keyword(live_app, policies):
    # Matches are cached by question text: the cache must not outlive the edit.
    chat = Chat(live_app.test_client())
    question = "直播带货有没有补贴"
    assert "3年内免收行政事业性收费" not in chat.say(question)
    edit(policies / "support.toml", 'keywords = [\n    "税费减免",',
         'keywords = [\n    "直播带货", "税费减免",')
    assert "3年内免收行政事业性收费" in chat.say(question)
