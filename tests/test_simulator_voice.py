"""The simulator's voice: an audio file picked in headless Chromium goes through /wechat as
a voice message and is recognised in demo mode; the upload route's refusals."""
from __future__ import annotations

import sys
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.conftest import create_app, make_settings, serving
from tests.test_simulator_browser import PHONE
from tests.test_voice import RECOGNISER, make_audio


@pytest.fixture
def settings(tmp_path: Path):
    script = tmp_path / "recognise.py"
    script.write_text(RECOGNISER, encoding="utf-8")
    (tmp_path / "heard.txt").write_text("贷款怎么申请", encoding="utf-8")
    return make_settings(tmp_path, voice={
        "recogniser": "command",
        "command": [sys.executable, str(script), "{wav}", str(tmp_path / "heard.txt")]})


@pytest.fixture
def app(settings):
    app = create_app(settings)
    yield app
    app.extensions["bot"].close()


@pytest.fixture
def base_url(app) -> Iterator[str]:
    with serving(app) as url:
        yield url


def test_a_picked_audio_file_is_heard_and_answered(browser: Browser, base_url: str, tmp_path, settings):
    audio = make_audio(tmp_path / "question.ogg", 2)
    context = browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True, locale="zh-CN")
    page: Page = context.new_page()
    page.goto(base_url + "/simulator")
    expect(page.get_by_role("button", name="录音")).to_be_visible()
    page.locator("#audio-file").set_input_files(str(audio))
    expect(page.locator(".row.me .msg").last).to_contain_text("语音")
    reply = page.locator(".row.bot .msg").last
    expect(reply).to_contain_text("您说的是：“贷款怎么申请”")
    expect(reply).to_contain_text("贷款")
    context.close()
    # The recording was read once and not kept in the data folder.
    assert not any((settings.data_dir / "voice").iterdir())


def test_upload_refusals(app, tmp_path):
    client = app.test_client()
    audio = make_audio(tmp_path / "q.ogg", 1).read_bytes()

    def upload(data: bytes, openid: str = "demo-user-1"):
        return client.post("/simulator/api/voice", data={"openid": openid, "audio": (BytesIO(data), "a.ogg")},
                           content_type="multipart/form-data")

    assert upload(b"").get_json()["error"] == "没有收到录音"
    assert "openid" in upload(audio, openid="").get_json()["error"]
    too_big = upload(b"x" * (3 * 1024 * 1024))
    assert too_big.status_code == 413 and "太大" in too_big.get_json()["error"]
    assert "您说的是" in upload(audio).get_json()["reply"]


def test_voice_upload_is_refused_with_a_real_account(tmp_path, wechat_api):
    app = create_app(make_settings(tmp_path, wechat={"app_secret": "s", "api_base_url": wechat_api.url}))
    try:
        resp = app.test_client().post("/simulator/api/voice", content_type="multipart/form-data",
                                      data={"openid": "u", "audio": (BytesIO(b"abc"), "a.ogg")})
        # With a real account the simulator does not exist (unless turned on for staff).
        assert resp.status_code == 404
        assert not wechat_api.calls_to("/cgi-bin/media/get")
    finally:
        app.extensions["bot"].close()
