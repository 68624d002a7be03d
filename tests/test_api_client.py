"""The WeChat API client: every URL under api_base_url, one shared access token."""
from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from wechatpy.exceptions import WeChatClientException

from bot.settings import MenuButton
from bot.storage import engine, migrations
from bot.wechat.client import SQLiteSessionStorage, WeChatApi, menu_json
from tests import wx
from tests.fake_wechat import CUSTOM, TOKEN

ROOT = Path(__file__).resolve().parent.parent


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.t = time.time()

    def __call__(self) -> float:
        return self.t


def make_api(path: Path, url: str, clock=time.time) -> WeChatApi:
    """A client whose token lives in the SQLite file at path (one connection per thread)."""
    migrations.migrate(path)
    local = threading.local()

    def connect():
        if not hasattr(local, "db"):
            local.db = engine.connect(path)
        return local.db

    return WeChatApi(wx.APP_ID, "s3cret", url, SQLiteSessionStorage(connect, clock), clock=clock)


def sent_tokens(api) -> list[str]:
    return [c["args"]["access_token"] for c in api.calls_to(CUSTOM)]


def test_every_call_and_the_token_request_use_the_configured_base_url(tmp_path, wechat_api):
    client = make_api(tmp_path / "bot.db", wechat_api.url)
    client.send_text("o-1", "你好")
    assert [c["path"] for c in wechat_api.calls] == [TOKEN, CUSTOM]
    token_call = wechat_api.calls[0]["args"]
    assert token_call == {"grant_type": "client_credential", "appid": wx.APP_ID, "secret": "s3cret"}
    assert wechat_api.received("o-1")[0]["text"] == "你好"


def test_token_is_cached_in_sqlite_and_shared_by_clients(tmp_path, wechat_api):
    first = make_api(tmp_path / "bot.db", wechat_api.url)
    second = make_api(tmp_path / "bot.db", wechat_api.url)
    first.send_text("o-1", "a")
    second.send_text("o-2", "b")
    assert len(wechat_api.calls_to(TOKEN)) == 1
    assert sent_tokens(wechat_api) == ["TOKEN1", "TOKEN1"]


def test_token_is_refreshed_five_minutes_before_it_expires(tmp_path, wechat_api):
    clock = Clock()
    client = make_api(tmp_path / "bot.db", wechat_api.url, clock)
    client.send_text("o-1", "a")
    clock.t += 7200 - 301
    client.send_text("o-1", "b")
    assert len(wechat_api.calls_to(TOKEN)) == 1
    clock.t += 2  # now within the 5-minute margin
    client.send_text("o-1", "c")
    assert len(wechat_api.calls_to(TOKEN)) == 2
    assert sent_tokens(wechat_api) == ["TOKEN1", "TOKEN1", "TOKEN2"]


def test_a_token_revoked_elsewhere_is_fetched_again_and_the_call_retried(tmp_path, wechat_api):
    client = make_api(tmp_path / "bot.db", wechat_api.url)
    client.send_text("o-1", "a")
    wechat_api.revoke_tokens()  # e.g. someone fetched a token with the same AppSecret
    client.send_text("o-1", "b")
    assert sent_tokens(wechat_api) == ["TOKEN1", "TOKEN1", "TOKEN2"]
    assert [d["text"] for d in wechat_api.received("o-1")] == ["a", "b"]


@pytest.mark.parametrize("errcode", [40001, 40014, 42001])
def test_token_errors_invalidate_refetch_once_and_retry(tmp_path, wechat_api, errcode):
    client = make_api(tmp_path / "bot.db", wechat_api.url)
    client.send_text("o-1", "a")
    wechat_api.fail(CUSTOM, errcode)
    client.send_text("o-1", "b")
    assert len(wechat_api.calls_to(TOKEN)) == 2
    assert sent_tokens(wechat_api)[-1] == "TOKEN2"
    assert [d["text"] for d in wechat_api.received("o-1")] == ["a", "b"]


def test_a_token_error_after_the_refetch_is_raised_not_looped(tmp_path, wechat_api):
    client = make_api(tmp_path / "bot.db", wechat_api.url)
    wechat_api.fail(CUSTOM, 40001, times=5)
    with pytest.raises(WeChatClientException) as err:
        client.send_text("o-1", "a")
    assert err.value.errcode == 40001
    assert len(wechat_api.calls_to(CUSTOM)) == 2 and len(wechat_api.calls_to(TOKEN)) == 2


def test_expired_token_on_the_server_is_replaced(tmp_path, wechat_api):
    client = make_api(tmp_path / "bot.db", wechat_api.url)
    client.send_text("o-1", "a")
    wechat_api.valid_tokens["TOKEN1"] -= 10_000  # the server considers it expired: 42001
    client.send_text("o-1", "b")
    assert sent_tokens(wechat_api) == ["TOKEN1", "TOKEN1", "TOKEN2"]


def test_threads_share_one_token_fetch(tmp_path, wechat_api):
    wechat_api.fetch_delay = 0.3  # a slow fetch, so the others arrive while it runs
    clients = [make_api(tmp_path / "bot.db", wechat_api.url) for _ in range(8)]
    barrier = threading.Barrier(len(clients))
    errors = []

    def work(i, client):
        barrier.wait()
        try:
            client.send_text(f"o-{i}", "hi")
        except Exception as exc:  # collected for the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i, c)) for i, c in enumerate(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(wechat_api.calls_to(TOKEN)) == 1
    assert len(wechat_api.deliveries) == 8


WORKER = """
import sys, time
from pathlib import Path
sys.path.insert(0, {root!r})
from tests.test_api_client import make_api
client = make_api(Path({db!r}), {url!r})
Path({ready!r} + sys.argv[1]).touch()
while not Path({go!r}).exists():
    time.sleep(0.005)
client.send_text("o-" + sys.argv[1], "hi")
"""


def run_worker_processes(tmp_path: Path, url: str, n: int, round_: str) -> None:
    go = tmp_path / f"go-{round_}"
    script = WORKER.format(root=str(ROOT), db=str(tmp_path / "bot.db"), url=url,
                           ready=str(tmp_path / f"ready-{round_}-"), go=str(go))
    procs = [subprocess.Popen([sys.executable, "-c", script, str(i)], cwd=ROOT) for i in range(n)]
    deadline = time.time() + 30
    while len(list(tmp_path.glob(f"ready-{round_}-*"))) < n and time.time() < deadline:
        time.sleep(0.01)
    go.touch()
    assert [p.wait(timeout=60) for p in procs] == [0] * n


def test_processes_share_one_token_fetch_and_one_refetch_after_revocation(tmp_path, wechat_api):
    wechat_api.fetch_delay = 0.3
    run_worker_processes(tmp_path, wechat_api.url, 5, "a")
    assert len(wechat_api.calls_to(TOKEN)) == 1
    wechat_api.revoke_tokens()
    run_worker_processes(tmp_path, wechat_api.url, 5, "b")
    # All five were refused with TOKEN1; only one of them fetched a new token.
    assert len(wechat_api.calls_to(TOKEN)) == 2
    assert len(wechat_api.deliveries) == 10


def test_menu_json_is_wechats_format():
    buttons = (
        MenuButton(name="政策问答", sub_buttons=(MenuButton(name="五个放宽", key="MENU_RELAX"),
                                              MenuButton(name="官网", url="https://example.org"))),
        MenuButton(name="转人工", key="MENU_HUMAN"),
    )
    assert menu_json(buttons) == {"button": [
        {"name": "政策问答", "sub_button": [
            {"type": "click", "name": "五个放宽", "key": "MENU_RELAX"},
            {"type": "view", "name": "官网", "url": "https://example.org"}]},
        {"type": "click", "name": "转人工", "key": "MENU_HUMAN"},
    ]}
    json.dumps(menu_json(buttons))


@pytest.mark.parametrize("buttons", [
    (),
    tuple(MenuButton(name=f"m{i}", key=f"K{i}") for i in range(4)),
    (MenuButton(name="多", sub_buttons=tuple(MenuButton(name=f"s{i}", key="K") for i in range(6))),),
    (MenuButton(name="无键"),),
    (MenuButton(name="一二三四五六", key="K"),),  # 18 bytes > 16
])
def test_menu_json_refuses_what_wechat_would(buttons):
    with pytest.raises(ValueError):
        menu_json(buttons)
