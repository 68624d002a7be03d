from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from bot.cli import cli
from bot.settings import SettingsError, load_settings

ROOT = Path(__file__).resolve().parent.parent


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_shipped_config_loads_in_demo_mode():
    s = load_settings(ROOT / "config.toml", env={})
    assert s.wechat.demo and s.simulator.enabled
    assert s.storage.database == ROOT / "data" / "bot.db"
    assert len(s.courses) == 5 and s.county.townships


def test_minimal_file_takes_defaults_and_resolves_paths(tmp_path):
    path = write(tmp_path, '[server]\nhost = "127.0.0.1"\nport = 8000\n'
                 '[wechat]\ntoken = "t"\napp_id = "a"\napp_secret = ""\n'
                 '[storage]\ndatabase = "data/bot.db"\n[simulator]\nenabled = true\n')
    s = load_settings(path, env={})
    assert s.storage.database == tmp_path / "data" / "bot.db"
    assert s.wechat.api_base_url == "https://api.weixin.qq.com"
    assert s.wechat.reply_budget_seconds == 4.0


@pytest.mark.parametrize("text,key", [
    ("[server]\nport = \"eighty\"\n", "server.port"),
    ("[server]\nprot = 1\n", "server.prot"),
    ("[wechat]\nencoding_aes_key = \"short\"\n", "wechat.encoding_aes_key"),
    ("[simulator]\nenabled = \"yes\"\n", "simulator.enabled"),
    ("[[courses]]\nname = \"茶叶\"\n", "courses[0].id"),
    ("[wechat]\nmode = \"secure\"\n", "wechat.mode"),
    ("[wechat]\nmode = \"safe\"\n", "wechat.encoding_aes_key"),
    ("[wechat]\nmax_clock_skew_seconds = 0\n", "wechat.max_clock_skew_seconds"),
])
def test_bad_values_name_the_key(tmp_path, text, key):
    with pytest.raises(SettingsError) as err:
        load_settings(write(tmp_path, text), env={})
    assert key in str(err.value)


def test_secrets_come_from_environment_and_stay_out_of_repr(tmp_path):
    s = load_settings(write(tmp_path, "[wechat]\ntoken = \"file\"\n"),
                      env={"CYT_WECHAT_TOKEN": "from-env", "CYT_WECHAT_APP_SECRET": "abc"})
    assert s.wechat.token == "from-env" and not s.wechat.demo
    assert "from-env" not in repr(s) and "abc" not in repr(s)


def test_cli_reports_bad_config_in_one_line(tmp_path):
    result = CliRunner().invoke(cli, ["--config", str(write(tmp_path, "[server]\nport = -\n")), "init-db"])
    assert result.exit_code != 0
    assert "TOML" in result.output and "Traceback" not in result.output


def test_cli_missing_config_is_clear(tmp_path):
    result = CliRunner().invoke(cli, ["--config", str(tmp_path / "nope.toml"), "init-db"])
    assert result.exit_code != 0 and "配置文件不存在" in result.output
