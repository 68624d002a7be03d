"""Voice messages without WeChat's transcript, through the signed webhook: recognised by
WeChat's speech-to-text API (the fake server) or a local command, answered like typed text."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from bot.settings import SettingsError
from bot.storage import engine
from bot.voice import LocalMedia, media_folder, tidy
from tests import wx
from tests.conftest import Chat, create_app, make_settings, wait_for
from tests.fake_wechat import CUSTOM, MEDIA, VOICE_ADD, VOICE_RESULT

MENU_MARK = "请回复数字选择"
HEARD = "您说的是："
NOT_HEARD = "没听清，请再说一遍或打字"
COURSES = [{"id": "tea", "name": "茶叶种植加工", "dates": "12月8日-12月12日", "place": "县职教中心"}]


def make_audio(path: Path, seconds: float) -> Path:
    """A sine wave encoded as WeChat does voice (Speex; ffmpeg here has no AMR encoder)."""
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                    f"sine=frequency=440:duration={seconds}", "-ar", "16000", "-ac", "1",
                    "-c:a", "libspeex", "-f", "ogg", str(path)], check=True)
    return path


@pytest.fixture(scope="module")
def speech(tmp_path_factory) -> bytes:
    return make_audio(tmp_path_factory.mktemp("audio") / "speech.spx", 2).read_bytes()


@pytest.fixture(scope="module")
def long_speech(tmp_path_factory) -> bytes:
    return make_audio(tmp_path_factory.mktemp("audio") / "long.spx", 62).read_bytes()


def voice_xml(openid: str, media_id: str, msg_id: int | None = None) -> str:
    return wx.message_xml(openid, "voice", msg_id, MediaId=media_id, Format="speex")


def said(chat: Chat, media_id: str) -> str:
    resp = chat.post(voice_xml(chat.openid, media_id))
    assert resp.status_code == 200
    return wx.reply_content(resp.get_data(as_text=True))


def logged(settings, openid: str) -> list[dict]:
    database = engine.connect(settings.storage.database)
    try:
        return list(database.query("SELECT msg_type, content, reply, transcribe_ms FROM messages"
                                   " WHERE openid = ? ORDER BY id", [openid]))
    finally:
        database.close()


@pytest.fixture
def real(tmp_path, wechat_api, speech):
    """An app with a real account against the fake WeChat API, which holds one voice."""
    wechat_api.media["m1"] = speech
    settings = make_settings(tmp_path, courses=COURSES,
                             wechat={"app_secret": "s3cret", "api_base_url": wechat_api.url})
    app = create_app(settings)
    yield app, settings, wechat_api
    app.extensions["bot"].close()


# --- WeChat's speech-to-text -------------------------------------------------------

def test_voice_is_recognised_and_answered_like_typed_text(real):
    app, settings, api = real
    api.transcript = "菜单"
    chat = Chat(app.test_client(), "o-voice")
    reply = said(chat, "m1")
    assert reply.startswith(HEARD + "“菜单”") and MENU_MARK in reply
    assert api.calls_to(MEDIA)[0]["args"]["media_id"] == "m1"
    upload = api.calls_to(VOICE_ADD)[0]["args"]
    assert upload["format"] == "mp3" and upload["lang"] == "zh_CN"
    assert api.calls_to(VOICE_RESULT)[0]["args"]["voice_id"] == upload["voice_id"]
    # What WeChat got is 16 kHz mono MP3, about as long as the voice.
    mp3 = Path(app.extensions["bot"].settings.data_dir) / "sent.mp3"
    mp3.write_bytes(api.voices[upload["voice_id"]])
    probe = json.loads(subprocess.run(
        ["ffprobe", "-v", "error", "-show_streams", "-of", "json", str(mp3)],
        capture_output=True, check=True).stdout)["streams"][0]
    assert (probe["codec_name"], probe["sample_rate"], probe["channels"]) == ("mp3", "16000", 1)
    assert 1.5 < float(probe["duration"]) < 2.5
    # The log keeps the transcript as the message and how long recognition took.
    (row,) = logged(settings, "o-voice")
    assert row["msg_type"] == "voice" and row["content"] == "菜单" and row["transcribe_ms"] > 0
    assert MENU_MARK in row["reply"]


def test_a_spoken_phone_number_answers_the_phone_question(real):
    app, settings, api = real
    chat = Chat(app.test_client(), "o-voice-form")
    assert "课程" in chat.say("我要报名培训")
    assert "姓名" in chat.say("1")
    assert "手机号" in chat.say("张三")
    api.transcript = "一三八 一二三四 五六七八。"  # recognisers write read-out numbers so
    reply = said(chat, "m1")
    # Accepted: the form goes on to the ID question; the echo shows the number masked.
    assert "身份证号" in reply and reply.startswith(HEARD + "“138****5678”")
    assert "13812345678" not in json.dumps(logged(settings, "o-voice-form"), ensure_ascii=False)
    assert logged(settings, "o-voice-form")[-1]["content"] == "138****5678"


def test_slow_recognition_is_answered_through_customer_service(tmp_path, wechat_api, speech):
    wechat_api.media["m1"] = speech
    wechat_api.transcript = "菜单"
    wechat_api.recognition_delay = 1.0
    settings = make_settings(tmp_path, wechat={"app_secret": "s3cret", "api_base_url": wechat_api.url,
                                               "reply_budget_seconds": 0.3})
    app = create_app(settings)
    try:
        chat = Chat(app.test_client(), "o-voice-slow")
        started = time.time()
        resp = chat.post(voice_xml("o-voice-slow", "m1", msg_id=4242))
        # WeChat gets "success" within the budget and the answer comes as a message later.
        assert resp.get_data(as_text=True) == "success" and time.time() - started < 0.9
        assert wait_for(lambda: wechat_api.received("o-voice-slow"))
        (late,) = wechat_api.received("o-voice-slow")
        assert late["channel"] == "custom"
        assert late["text"].startswith(HEARD + "“菜单”") and MENU_MARK in late["text"]
        # WeChat's resend of the same voice is not recognised or answered again.
        assert chat.post(voice_xml("o-voice-slow", "m1", msg_id=4242)).get_data(as_text=True) == "success"
        assert len(wechat_api.calls_to(VOICE_ADD)) == 1
        assert len(wechat_api.calls_to(CUSTOM)) == 1
    finally:
        app.extensions["bot"].close()


@pytest.mark.parametrize("failure", ["nothing said", "media gone", "bad audio", "api error",
                                     "too long"])
def test_unrecognised_voice_gets_a_friendly_answer(real, long_speech, failure):
    app, settings, api = real
    api.transcript = "菜单"
    media_id = "m1"
    if failure == "nothing said":
        api.transcript = ""
    elif failure == "media gone":
        media_id = "expired"
    elif failure == "bad audio":
        api.media[media_id := "junk"] = b"this is not audio at all" * 10
    elif failure == "api error":
        api.fail(VOICE_ADD, 45009)
    else:
        api.media[media_id := "long"] = long_speech
    chat = Chat(app.test_client(), "o-voice-fail")
    reply = said(chat, media_id)
    if failure == "too long":
        assert "太长" in reply and "一分钟" in reply and "打字" in reply
        assert not api.calls_to(VOICE_ADD)  # refused before WeChat's 60-second limit bites
    else:
        assert NOT_HEARD in reply
    assert HEARD not in reply and MENU_MARK not in reply
    (row,) = logged(settings, "o-voice-fail")
    assert row["reply"] == reply and row["transcribe_ms"] is not None


# --- a local command -----------------------------------------------------------------

RECOGNISER = textwrap.dedent("""\
    import sys, time, wave
    with wave.open(sys.argv[1]) as w:  # what the service promises the program
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (16000, 1, 2)
    said = open(sys.argv[2], encoding="utf-8").read()
    if said == "CRASH":
        sys.exit("model not found")
    if said == "HANG":
        time.sleep(30)
    print(said)
""")


@pytest.fixture
def command_app(tmp_path):
    """Demo mode with a command recogniser that "hears" what the test writes into a file."""
    script = tmp_path / "recognise.py"
    script.write_text(RECOGNISER, encoding="utf-8")
    heard = tmp_path / "heard.txt"
    settings = make_settings(tmp_path, voice={
        "recogniser": "command", "command": [sys.executable, str(script), "{wav}", str(heard)],
        "timeout_seconds": 2})
    app = create_app(settings)
    yield app, settings, heard
    app.extensions["bot"].close()


def test_command_recogniser_in_demo_mode(command_app, speech):
    app, settings, heard = command_app
    heard.write_text("贷款怎么申请\n", encoding="utf-8")
    media = LocalMedia(media_folder(settings))
    media_id = media.store(speech)
    assert (media.folder / media_id).stat().st_mode & 0o077 == 0  # owner-only
    reply = said(Chat(app.test_client(), "o-voice-cmd"), media_id)
    assert reply.startswith(HEARD + "“贷款怎么申请”") and "贷款" in reply[20:]
    assert not (media.folder / media_id).exists()  # recordings are not kept
    assert logged(settings, "o-voice-cmd")[0]["content"] == "贷款怎么申请"


@pytest.mark.parametrize("heard_text", ["CRASH", "HANG", "   \n"])
def test_command_failure_timeout_or_silence_asks_again(command_app, speech, heard_text):
    app, settings, heard = command_app
    heard.write_text(heard_text, encoding="utf-8")
    started = time.time()
    reply = said(Chat(app.test_client(), "o-voice-cmd"),
                 LocalMedia(media_folder(settings)).store(speech))
    assert NOT_HEARD in reply and time.time() - started < 5


def test_voice_is_off_in_demo_mode_unless_configured(chat):
    reply = said(chat, "m1")
    assert "打字" in reply and HEARD not in reply


@pytest.mark.parametrize("voice,demo,message", [
    ({"recogniser": "wechat"}, True, "app_secret"),
    ({"recogniser": "command"}, True, "{wav}"),
    ({"recogniser": "command", "command": ["/usr/bin/whisper"]}, True, "{wav}"),
    ({"recogniser": "google"}, False, "voice.recogniser"),
])
def test_bad_voice_settings_stop_start_up(tmp_path, voice, demo, message):
    with pytest.raises(SettingsError, match=message.replace("{", r"\{").replace("}", r"\}")):
        make_settings(tmp_path, voice=voice, wechat={"app_secret": "" if demo else "s"})


@pytest.mark.parametrize("text,expected", [
    ("一三八 一二三四 五六七八。", "13812345678"),
    ("幺三九，零零零零，一一一一", "13900001111"),
    ("三", "3"),
    ("13812345678。", "13812345678。"),  # digits already: the form's own checks apply
    ("贷款怎么  申请？", "贷款怎么 申请？"),
    ("3.5", "3.5"),
])
def test_a_read_out_number_becomes_digits(text, expected):
    assert tidy(text) == expected
