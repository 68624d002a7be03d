"""The webhook through its real path: signed (and encrypted) XML into /wechat."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from bot.storage import engine, migrations, push, user_state
from tests import wx
from tests.conftest import Chat, create_app, make_settings, wait_for
from tests.fake_wechat import FakeWeChat

MENU_MARK = "请回复数字选择"


def post(client, xml, q=None):
    data = xml.encode("utf-8") if isinstance(xml, str) else xml
    return client.post("/wechat?" + (q or wx.query()), data=data, content_type="text/xml")


# --- verification and signatures -----------------------------------------------------

def test_get_echoes_echostr_exactly(client):
    resp = client.get("/wechat?" + wx.query(echostr="1234567890abc"))
    assert resp.status_code == 200
    assert resp.get_data(as_text=True) == "1234567890abc"


@pytest.mark.parametrize("q", ["", "signature=bad&timestamp=1&nonce=2&echostr=x"])
def test_get_with_wrong_or_missing_signature_is_refused(client, q):
    assert client.get("/wechat?" + q).status_code == 403


def test_post_with_wrong_signature_is_refused_and_not_processed(client, app):
    resp = post(client, wx.text_xml("o-forger", "菜单"), q=wx.query(token="wrong-token"))
    assert resp.status_code == 403
    database = engine.connect(app.extensions["bot"].settings.storage.database)
    assert database["messages"].count == 0


# --- message types -----------------------------------------------------------------

def test_text_gets_main_menu_and_is_logged(chat, app):
    reply = chat.say("菜单")
    assert MENU_MARK in reply and "8. 联系我们" in reply
    database = engine.connect(app.extensions["bot"].settings.storage.database)
    row = next(database["messages"].rows)
    assert row["openid"] == chat.openid and row["content"] == "菜单" and row["msg_type"] == "text"
    assert MENU_MARK in row["reply"] and row["latency_ms"] >= 0 and row["msg_id"]


def test_subscribe_welcomes_with_menu(chat):
    reply = chat.event("subscribe")
    assert "欢迎关注" in reply and MENU_MARK in reply


def test_voice_with_recognition_is_treated_as_text(chat):
    resp = chat.post(wx.message_xml(chat.openid, "voice", MediaId="m1", Format="amr", Recognition="菜单"))
    assert MENU_MARK in wx.reply_content(resp.get_data(as_text=True))


def test_voice_without_recognition_asks_to_type(chat):
    resp = chat.post(wx.message_xml(chat.openid, "voice", MediaId="m1", Format="amr"))
    assert "打字" in wx.reply_content(resp.get_data(as_text=True))


@pytest.mark.parametrize("msg_type,fields", [
    ("image", {"PicUrl": "http://x/y.jpg", "MediaId": "m"}),
    ("video", {"MediaId": "m", "ThumbMediaId": "t"}),
    ("shortvideo", {"MediaId": "m", "ThumbMediaId": "t"}),
    ("location", {"Location_X": "23.1", "Location_Y": "113.3", "Scale": "20", "Label": "村口"}),
    ("link", {"Title": "看看", "Description": "d", "Url": "http://x"}),
])
def test_media_gets_a_friendly_pointer(chat, msg_type, fields):
    resp = chat.post(wx.message_xml(chat.openid, msg_type, **fields))
    assert resp.status_code == 200
    assert "菜单" in wx.reply_content(resp.get_data(as_text=True))


@pytest.mark.parametrize("event,key", [
    ("unsubscribe", ""), ("SCAN", "123"), ("LOCATION", ""), ("VIEW", "http://x"),
    ("CLICK", "NO_SUCH_KEY"), ("TEMPLATESENDJOBFINISH", ""),
])
def test_other_events_are_handled_without_error(chat, event, key):
    resp = chat.post(wx.event_xml(chat.openid, event, key))
    assert resp.status_code == 200


def test_unknown_message_type_gets_success(chat):
    resp = chat.post(wx.message_xml(chat.openid, "hologram", Content="?"))
    assert resp.status_code == 200 and resp.get_data(as_text=True) == "success"


# --- encrypted modes ---------------------------------------------------------------

@pytest.fixture
def aes_client(tmp_path):
    settings = make_settings(tmp_path, wechat={"encoding_aes_key": wx.AES_KEY})
    app = create_app(settings)
    yield app.test_client()
    app.extensions["bot"].close()


@pytest.mark.parametrize("compat", [False, True], ids=["safe", "compatible"])
def test_encrypted_message_gets_encrypted_reply(aes_client, compat):
    enc = wx.Encrypted()
    q, body = enc.post_args(wx.text_xml("o-aes", "菜单"), compat=compat)
    resp = post(aes_client, body, q=q)
    assert resp.status_code == 200
    text = resp.get_data(as_text=True)
    assert "<Encrypt>" in text and MENU_MARK not in text
    assert MENU_MARK in enc.open_reply(text)


def test_encrypted_message_with_wrong_key_is_refused(aes_client):
    other = wx.Encrypted(aes_key="Z" * 43)
    q, body = other.post_args(wx.text_xml("o-aes", "菜单"))
    assert post(aes_client, body, q=q).status_code == 403


def test_plain_message_still_works_when_aes_key_is_set(aes_client):
    resp = post(aes_client, wx.text_xml("o-aes", "菜单"))
    assert MENU_MARK in wx.reply_content(resp.get_data(as_text=True))


# --- retries -----------------------------------------------------------------------

def test_retry_gets_same_reply_and_is_logged_once(chat, app):
    xml = wx.text_xml(chat.openid, "帮助", msg_id=777)
    first = chat.post(xml).get_data(as_text=True)
    second = chat.post(xml).get_data(as_text=True)
    assert wx.reply_content(first) == wx.reply_content(second) != ""
    database = engine.connect(app.extensions["bot"].settings.storage.database)
    assert database["messages"].count == 1


def test_event_retry_is_deduped_by_openid_and_create_time(chat, app):
    xml = wx.event_xml(chat.openid, "subscribe", create_time=1700000000)
    chat.post(xml)
    chat.post(xml)
    database = engine.connect(app.extensions["bot"].settings.storage.database)
    assert database["messages"].count == 1


def test_two_processes_receiving_the_same_retry_process_it_once(tmp_path):
    counter = tmp_path / "handled.txt"
    script = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(os.getcwd())!r})
        from bot import create_app
        from tests.conftest import make_settings
        from tests import wx
        from pathlib import Path
        app = create_app(make_settings(Path({str(tmp_path)!r})))
        runtime = app.extensions["bot"]
        original = runtime.router.dispatch
        def counting(inbound, ctx):
            with open({str(counter)!r}, "a") as f:
                f.write("x\\n")
            time.sleep(0.3)
            return original(inbound, ctx)
        runtime.router.dispatch = counting
        client = app.test_client()
        print("ready", flush=True)
        sys.stdin.readline()  # both processes post at once, however long each took to start
        resp = client.post("/wechat?" + sys.argv[1], content_type="text/xml",
                           data=wx.text_xml("o-twice", "菜单", msg_id=4242).encode())
        print(resp.status_code)
    """)
    migrations.migrate(tmp_path / "bot.db")  # the schema exists before both start, as in production
    resend = wx.query()  # WeChat's resend repeats the query string
    procs = [subprocess.Popen([sys.executable, "-c", script, resend], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True) for _ in range(2)]
    assert [p.stdout.readline().strip() for p in procs] == ["ready", "ready"]
    for p in procs:
        p.stdin.write("go\n")
        p.stdin.flush()
    codes = [p.communicate(timeout=60)[0].strip() for p in procs]
    assert codes == ["200", "200"]
    assert counter.read_text().count("x") == 1


def test_a_resend_while_the_answer_is_being_written_gets_success_at_once(tmp_path):
    app = create_app(make_settings(tmp_path))
    slow_down(app, 0.6)
    client = app.test_client()
    xml, q = wx.text_xml("o-resend", "菜单", msg_id=5151), wx.query()  # a resend repeats both
    first = []
    thread = threading.Thread(target=lambda: first.append(post(client, xml, q).get_data(as_text=True)))
    thread.start()
    time.sleep(0.2)  # the first delivery is being answered
    started = time.time()
    assert post(client, xml, q).get_data(as_text=True) == "success"
    assert time.time() - started < 0.3
    thread.join(5)
    assert MENU_MARK in wx.reply_content(first[0])
    # Once answered, a resend gets the same reply again.
    assert wx.reply_content(post(client, xml, q).get_data(as_text=True)) == wx.reply_content(first[0])
    app.extensions["bot"].close()
    assert engine.connect(tmp_path / "bot.db")["messages"].count == 1


def test_a_message_whose_worker_died_mid_answer_is_answered_on_the_resend(tmp_path):
    script = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(os.getcwd())!r})
        from pathlib import Path
        from tests.conftest import create_app, make_settings
        from tests import wx
        app = create_app(make_settings(Path({str(tmp_path)!r})))
        runtime = app.extensions["bot"]
        def stuck(inbound, ctx):
            print("answering", flush=True)
            time.sleep(60)
        runtime.router.dispatch = stuck
        app.test_client().post("/wechat?" + wx.query(), content_type="text/xml",
                               data=wx.text_xml("o-crash", "菜单", msg_id=6262).encode())
    """)
    migrations.migrate(tmp_path / "bot.db")
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "answering"
        app = create_app(make_settings(tmp_path))
        client = app.test_client()
        # While that worker holds the message, its resend is left to it ...
        assert post(client, wx.text_xml("o-crash", "菜单", msg_id=6262)).get_data(as_text=True) == "success"
        proc.kill()
        proc.wait(10)
        # ... and once the worker is gone, WeChat's next resend gets the answer.
        resp = post(client, wx.text_xml("o-crash", "菜单", msg_id=6262))
        assert MENU_MARK in wx.reply_content(resp.get_data(as_text=True))
        app.extensions["bot"].close()
    finally:
        proc.kill()
        proc.wait(10)


def test_a_resend_of_an_answered_message_changes_nothing_and_gets_the_first_reply(tmp_path):
    app = create_app(make_settings(tmp_path))
    chat = Chat(app.test_client(), "o-twice")
    assert "多少贷款" in chat.say("我要申请贷款")
    answer = wx.text_xml("o-twice", "3万", msg_id=7373)
    first = wx.reply_content(chat.post(answer).get_data(as_text=True))
    assert "做什么" in first
    database = engine.connect(tmp_path / "bot.db")
    form = database.conn.execute("SELECT step, attempts, data FROM dialogues").fetchone()
    # The handlers see "3万" again at the next question; what they did is undone.
    assert wx.reply_content(chat.post(answer).get_data(as_text=True)) == first
    assert database.conn.execute("SELECT step, attempts, data FROM dialogues").fetchone() == form
    assert database.conn.execute(
        "SELECT COUNT(*) FROM messages WHERE msg_id = '7373'").fetchone()[0] == 1
    # Nothing was left holding the write lock.
    database.conn.execute("PRAGMA busy_timeout=200")
    user_state.save_state(database, "o-other", {"more": []})
    app.extensions["bot"].close()


# --- the 5-second rule -------------------------------------------------------------

def slow_down(app, seconds):
    runtime = app.extensions["bot"]
    original = runtime.router.dispatch

    def slow(inbound, ctx):
        time.sleep(seconds)
        return original(inbound, ctx)
    runtime.router.dispatch = slow


def test_slow_answer_goes_out_later_in_demo_mode(tmp_path):
    settings = make_settings(tmp_path, wechat={"reply_budget_seconds": 0.2})
    app = create_app(settings)
    slow_down(app, 2.0)
    chat = Chat(app.test_client(), "o-slow")
    started = time.time()
    resp = chat.post(wx.text_xml("o-slow", "菜单", msg_id=99))
    # "success" comes back without waiting for the slow handler (WeChat gives up at 5 s).
    assert resp.get_data(as_text=True) == "success" and time.time() - started < 1.5
    database = engine.connect(settings.storage.database)
    assert wait_for(lambda: push.inbox_since(database, "o-slow", 0))
    assert MENU_MARK in push.inbox_since(database, "o-slow", 0)[0]["text"]
    # WeChat's retry of the same message is not answered twice.
    assert chat.post(wx.text_xml("o-slow", "菜单", msg_id=99)).get_data(as_text=True) == "success"
    app.extensions["bot"].close()
    assert len(push.inbox_since(database, "o-slow", 0)) == 1


def test_slow_answer_goes_out_through_customer_service_api(tmp_path):
    api = FakeWeChat().start()
    try:
        settings = make_settings(tmp_path, wechat={"reply_budget_seconds": 0.2, "app_secret": "s3cret",
                                                   "api_base_url": api.url})
        app = create_app(settings)
        slow_down(app, 0.5)
        chat = Chat(app.test_client(), "o-slow-api")
        assert chat.post(wx.text_xml("o-slow-api", "菜单")).get_data(as_text=True) == "success"
        assert wait_for(lambda: api.calls_to("/cgi-bin/message/custom/send"))
        sent = api.calls_to("/cgi-bin/message/custom/send")[0]["json"]
        assert sent["touser"] == "o-slow-api" and MENU_MARK in sent["text"]["content"]
        assert api.calls_to("/cgi-bin/token")[0]["args"]["secret"] == "s3cret"
        app.extensions["bot"].close()
    finally:
        api.stop()


# --- long replies ------------------------------------------------------------------

def test_long_reply_is_split_and_rest_served_on_more(app, chat):
    from bot.router import Reply
    runtime = app.extensions["bot"]
    long_text = "".join(f"第{i}句话讲的是创业政策的一个细节。" for i in range(300))
    original = runtime.router.dispatch
    runtime.router.routes.insert(0, (lambda m: m.text == "长文", lambda m, c: Reply(text=long_text)))
    pages = [chat.say("长文")]
    while "更多" in pages[-1]:
        pages.append(chat.say("更多"))
        assert len(pages) < 20
    assert all(len(p.encode()) <= 2048 for p in pages)
    assert all(p.rstrip("\n（回复“更多”看下一页）").endswith("。") for p in pages)
    joined = "".join(p.replace("\n（回复“更多”看下一页）", "") for p in pages)
    assert joined == long_text
    assert "没有更多" in chat.say("更多")
    assert runtime.router.dispatch == original


def test_more_continues_only_the_reply_just_before_it(app, chat):
    from bot.router import Reply
    runtime = app.extensions["bot"]
    long_text = "".join(f"第{i}句话讲的是创业政策的一个细节。" for i in range(300))
    runtime.router.routes.insert(0, (lambda m: m.text == "长文", lambda m, c: Reply(text=long_text)))
    assert "更多" in chat.say("长文")
    assert "第" in chat.say("更多")  # the second page
    chat.say("菜单")
    assert "没有更多" in chat.say("更多")
    # A cut reply that is not followed at once is not continued later either.
    assert "更多" in chat.say("长文")
    chat.event("CLICK", "MENU_NEWS")
    assert "没有更多" in chat.say("更多")


# --- bad input ---------------------------------------------------------------------

BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
<!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
<!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
<!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
<!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
<!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
<!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">]>
<xml><ToUserName>a</ToUserName><FromUserName>o-bomb</FromUserName><CreateTime>1</CreateTime>
<MsgType>text</MsgType><Content>&lol9;</Content><MsgId>1</MsgId></xml>"""

XXE = """<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>
<xml><ToUserName>a</ToUserName><FromUserName>o-xxe</FromUserName><CreateTime>1</CreateTime>
<MsgType>text</MsgType><Content>&e;</Content><MsgId>2</MsgId></xml>"""


@pytest.mark.parametrize("body", [
    b"", b"   ", b"<xml><unclosed>", b"not xml at all", b"\xff\xfe\x00<xml>\x81\x82</xml>",
    b"<other><a>1</a></other>", b"<xml><Content>no sender</Content></xml>",
    BILLION_LAUGHS.encode(), XXE.encode(),
    b"<xml><FromUserName>o-deep</FromUserName><MsgType>text</MsgType>" + b"<a>" * 5000
    + b"</a>" * 5000 + b"</xml>",
], ids=["empty", "blank", "unclosed", "text", "non-utf8", "wrong-root", "no-sender", "billion-laughs", "xxe",
        "deeply-nested"])
def test_bad_bodies_get_4xx_quickly_and_service_keeps_answering(client, chat, body):
    started = time.time()
    resp = post(client, body)
    assert 400 <= resp.status_code < 500
    assert time.time() - started < 5.0  # refused, not expanded or left hanging
    assert "root:" not in resp.get_data(as_text=True)
    assert MENU_MARK in chat.say("菜单")


def test_oversized_body_gets_413(tmp_path):
    app = create_app(make_settings(tmp_path, server={"max_body_bytes": 1024}))
    client = app.test_client()
    resp = post(client, wx.text_xml("o-big", "长" * 2000))
    assert resp.status_code == 413
    assert MENU_MARK in Chat(client).say("菜单")
    app.extensions["bot"].close()


def test_handler_crash_gets_polite_reply_with_hotline(app, chat):
    runtime = app.extensions["bot"]

    def boom(inbound, ctx):
        raise RuntimeError("bug")
    runtime.router.routes.insert(0, (lambda m: m.text == "炸", boom))
    reply = chat.say("炸")
    assert "0000-12345678" in reply
    assert MENU_MARK in chat.say("菜单")


def test_simulator_is_off_when_disabled(tmp_path):
    app = create_app(make_settings(tmp_path, simulator={"enabled": False}))
    assert app.test_client().get("/simulator").status_code == 404
    app.extensions["bot"].close()


def test_simulator_send_goes_through_webhook(client, app):
    resp = client.post("/simulator/api/send", json={"openid": "o-sim", "text": "菜单"})
    assert MENU_MARK in resp.get_json()["reply"]
    database = engine.connect(app.extensions["bot"].settings.storage.database)
    assert database["messages"].count == 1


def test_crash_traceback_in_the_log_has_no_phone_or_id(app, chat, caplog):
    import logging
    runtime = app.extensions["bot"]

    def leaky(inbound, ctx):
        raise ValueError(f"bad input {inbound.text}")
    runtime.router.routes.insert(0, (lambda m: m.text.startswith("我的电话"), leaky))
    chat.say("我的电话13812345678 身份证11010519491231002X")
    # Format the record the way the service's stderr handler does.
    ours = next(h for h in logging.getLogger().handlers if getattr(h, "_cyt", False))
    line = ours.format(next(r for r in caplog.records if r.exc_info))
    assert "ValueError" in line and "138****5678" in line
    assert "13812345678" not in line and "11010519491231002X" not in line


# --- parsing into Inbound --------------------------------------------------------------

def capture(app, route):
    """Put a handler first that records (and silently answers) what route(router) selects."""
    from bot.router import Reply, Router
    seen = []
    router = Router()
    route(router)(lambda inbound, ctx: seen.append(inbound) or Reply.empty())
    app.extensions["bot"].router.routes[:0] = router.routes
    return seen


def test_following_by_qr_code_is_a_subscribe_scan_event_with_the_scene_key(app, chat):
    scans = capture(app, lambda r: r.event("subscribe_scan"))
    chat.event("subscribe", "qrscene_township_7")
    assert [(m.event, m.event_key) for m in scans] == [("subscribe_scan", "township_7")]
    # A plain follow (no QR code) stays a subscribe event and is welcomed.
    assert "欢迎关注" in chat.event("subscribe")


def test_a_handler_reads_an_events_own_fields(app, chat):
    reports = capture(app, lambda r: r.event("LOCATION"))
    chat.post(wx.message_xml(chat.openid, "event", Event="LOCATION", Latitude="23.137",
                             Longitude="113.352", Precision="119.385"))
    assert reports[0].fields["Latitude"] == "23.137" and reports[0].fields["Precision"] == "119.385"


# --- dedupe keys and the customer-service window ----------------------------------------

def test_another_sender_reusing_a_msgid_gets_neither_the_victims_reply_nor_blocks_them(client):
    victim, attacker = Chat(client, "o-victim"), Chat(client, "o-attacker")
    def reply(chat, text, msg_id):
        return wx.reply_content(chat.post(wx.text_xml(chat.openid, text, msg_id)).get_data(as_text=True))
    first = reply(victim, "我要申请贷款", 9001)
    assert "多少贷款" in first
    # The attacker's message with the victim's MsgId is answered as its own message.
    stolen = reply(attacker, "菜单", 9001)
    assert MENU_MARK in stolen and "多少贷款" not in stolen
    # A MsgId taken first by someone else does not swallow the victim's later message.
    attacker.post(wx.text_xml("o-attacker", "菜单", msg_id=9002))
    later = reply(victim, "3万", 9002)
    assert "做什么" in later


def last_seen(app, openid):
    database = engine.connect(app.extensions["bot"].settings.storage.database)
    row = database.conn.execute("SELECT last_seen_at FROM subscribers WHERE openid = ?",
                                (openid,)).fetchone()
    return None if row is None else row[0]


@pytest.mark.parametrize("event,extra", [
    ("TEMPLATESENDJOBFINISH", {"Status": "success", "MsgID": "200163836"}),
    ("MASSSENDJOBFINISH", {"Status": "send success", "MsgID": "1000001625", "TotalCount": "3"}),
    ("LOCATION", {"Latitude": "23.1", "Longitude": "113.3", "Precision": "119"}),
    ("kf_create_session", {"KfAccount": "test1@test"}),
    ("kf_close_session", {"KfAccount": "test1@test"}),
    ("user_del_card", {"CardId": "p1", "UserCardCode": "12312312"}),
    ("VIEW", {"EventKey": "http://x"}),
])
def test_events_the_subscriber_did_not_cause_do_not_open_the_service_window(app, chat, event, extra):
    assert chat.post(wx.message_xml("o-quiet", "event", Event=event, **extra)).status_code == 200
    assert last_seen(app, "o-quiet") is None  # no subscriber row made up from a job report
    Chat(chat.client, "o-known").say("菜单")
    before = last_seen(app, "o-known")
    database = engine.connect(app.extensions["bot"].settings.storage.database)
    database.conn.execute("UPDATE subscribers SET last_seen_at = last_seen_at - 3600")
    database.conn.commit()
    app.extensions["bot"]._last_seen.clear()  # as in a process that has not seen the user
    chat.post(wx.message_xml("o-known", "event", Event=event, **extra))
    assert last_seen(app, "o-known") == before - 3600


@pytest.mark.parametrize("send", [
    lambda c: c.say("你好"),
    lambda c: c.event("CLICK", "MENU_CONTACT"),
    lambda c: c.event("subscribe"),
    lambda c: c.event("SCAN", "7"),
    lambda c: c.post(wx.message_xml(c.openid, "image", PicUrl="http://x/y.jpg", MediaId="m")),
], ids=["text", "click", "subscribe", "scan", "image"])
def test_the_subscribers_own_actions_open_the_service_window(app, client, send):
    send(Chat(client, "o-active"))
    assert last_seen(app, "o-active") is not None


# --- rendering -----------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["plain", "aes"])
def test_a_reply_containing_the_cdata_end_marker_arrives_whole(tmp_path, mode):
    import xmltodict

    from bot.router import Reply
    aes = {"encoding_aes_key": wx.AES_KEY} if mode == "aes" else {}
    app = create_app(make_settings(tmp_path, wechat=aes))
    summary = "您的报名信息：\n村（社区）：石门]]>村\n姓名：<张三> & 李四"
    routes = app.extensions["bot"].router.routes
    routes.insert(0, (lambda m: m.text == "确认", lambda m, c: Reply(text=summary)))
    client = app.test_client()
    if mode == "aes":
        enc = wx.Encrypted()
        q, body = enc.post_args(wx.text_xml("o-cdata", "确认"))
        resp = post(client, body, q=q)
        sealed = resp.get_data(as_text=True)
        envelope = xmltodict.parse(sealed)["xml"]
        inner = enc.crypto.decrypt_message(sealed, envelope["MsgSignature"], envelope["TimeStamp"],
                                           envelope["Nonce"])
    else:
        inner = post(client, wx.text_xml("o-cdata", "确认")).get_data(as_text=True)
    reply = xmltodict.parse(inner)["xml"]
    assert reply["Content"] == summary and reply["ToUserName"] == "o-cdata" and reply["MsgType"] == "text"
    app.extensions["bot"].close()


# --- freshness, replays and modes ------------------------------------------------------

def count_messages(app):
    return engine.connect(app.extensions["bot"].settings.storage.database)["messages"].count


@pytest.mark.parametrize("age", [301, -301, 86400 * 30])
def test_a_signed_request_outside_the_clock_window_is_refused(client, app, age):
    stale = wx.query(timestamp=int(time.time()) - age)
    assert post(client, wx.text_xml("o-old", "菜单"), q=stale).status_code == 403
    assert client.get("/wechat?" + wx.query(timestamp=int(time.time()) - age, echostr="x")).status_code == 403
    assert count_messages(app) == 0


def test_a_captured_url_cannot_carry_another_message(client, app):
    captured = wx.query()
    assert MENU_MARK in wx.reply_content(post(client, wx.text_xml("o-victim", "菜单"), q=captured)
                                         .get_data(as_text=True))
    forged = post(client, wx.text_xml("o-victim", "我要申请贷款"), q=captured)
    assert forged.status_code == 403
    assert post(client, wx.event_xml("o-other", "subscribe"), q=captured).status_code == 403
    assert count_messages(app) == 1
    database = engine.connect(app.extensions["bot"].settings.storage.database)
    assert database.conn.execute("SELECT COUNT(*) FROM dialogues").fetchone()[0] == 0


def test_wechats_resend_with_the_same_query_string_gets_the_stored_reply(client, app):
    q, xml = wx.query(), wx.text_xml("o-late", "帮助", msg_id=31337)
    first = wx.reply_content(post(client, xml, q=q).get_data(as_text=True))
    again = post(client, xml, q=q)
    assert again.status_code == 200 and wx.reply_content(again.get_data(as_text=True)) == first != ""
    event_q, event = wx.query(), wx.event_xml("o-late", "CLICK", "MENU_CONTACT", create_time=1700000000)
    assert post(client, event, q=event_q).status_code == 200
    assert post(client, event, q=event_q).status_code == 200
    assert count_messages(app) == 2


def test_safe_mode_refuses_plain_messages_and_answers_encrypted_ones(tmp_path):
    app = create_app(make_settings(tmp_path, wechat={"encoding_aes_key": wx.AES_KEY, "mode": "safe"}))
    client = app.test_client()
    assert post(client, wx.text_xml("o-safe", "菜单")).status_code == 403
    enc = wx.Encrypted()
    q, body = enc.post_args(wx.text_xml("o-safe", "菜单"))
    assert MENU_MARK in enc.open_reply(post(client, body, q=q).get_data(as_text=True))
    app.extensions["bot"].close()


def refusal_lines(caplog):
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith("refused a webhook")]


def test_refusals_are_logged_once_a_minute_with_their_cause(tmp_path, caplog):
    import logging
    caplog.set_level(logging.WARNING)
    app = create_app(make_settings(tmp_path, wechat={"encoding_aes_key": wx.AES_KEY}))
    client = app.test_client()
    for _ in range(3):
        post(client, wx.text_xml("o-x", "菜单"), q=wx.query(token="wrong"))
        q, body = wx.Encrypted(aes_key="Z" * 43).post_args(wx.text_xml("o-x", "菜单"))
        assert post(client, body, q=q).status_code == 403
    lines = refusal_lines(caplog)
    assert len(lines) == 2
    assert "bad signature" in lines[0] and "encoding_aes_key" in lines[1]
    assert not any("o-x" in line for line in lines)
    app.extensions["bot"].close()


def test_an_encrypted_message_without_a_configured_key_is_refused_and_logged(client, caplog):
    import logging
    caplog.set_level(logging.WARNING)
    q, body = wx.Encrypted().post_args(wx.text_xml("o-x", "菜单"), compat=True)
    assert post(client, body, q=q).status_code == 403
    assert any("encoding_aes_key is not set" in line for line in refusal_lines(caplog))


# --- response headers ------------------------------------------------------------------

def test_echostr_is_plain_text_that_browsers_may_not_sniff_or_frame(client):
    resp = client.get("/wechat?" + wx.query(echostr="<html><script>alert(1)</script>"))
    assert resp.status_code == 200 and resp.mimetype == "text/plain"
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert resp.headers["Content-Security-Policy"] == "default-src 'none'; frame-ancestors 'none'"
    assert resp.headers["X-Frame-Options"] == "DENY"


@pytest.mark.parametrize("path", ["/wechat", "/api/ask", "/no-such-page"])
def test_every_other_response_forbids_scripts_and_framing(client, path):
    resp = client.post(path + "?" + wx.query(), data=wx.text_xml("o-h", "菜单").encode(),
                       content_type="text/xml")
    assert resp.headers["Content-Security-Policy"] == "default-src 'none'; frame-ancestors 'none'"
    assert resp.headers["X-Frame-Options"] == "DENY"


def test_the_console_keeps_its_own_policy(client):
    policy = client.get("/admin/login").headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "form-action 'self'" in policy


def test_ask_api_refuses_absurdly_nested_json_with_a_short_error(client):
    resp = client.post("/api/ask", data="[" * 5000 + "]" * 5000, content_type="application/json")
    assert resp.status_code == 400 and "JSON" in resp.get_json()["error"]
    deep_object = '{"q":' * 5000 + '"贷款"' + "}" * 5000
    assert client.post("/api/ask", data=deep_object, content_type="application/json").status_code == 400
    assert client.post("/api/ask", json={"q": "贷款怎么申请"}).status_code == 200


def test_nonces_older_than_the_window_are_forgotten(client, app):
    database = engine.connect(app.extensions["bot"].settings.storage.database)
    database.conn.execute("INSERT INTO protocol_nonces VALUES (?, ?, ?)",
                          ("1:old", "msg:o-1:1", time.time() - 301))
    database.conn.commit()
    assert MENU_MARK in wx.reply_content(post(client, wx.text_xml("o-1", "菜单")).get_data(as_text=True))
    kept = [r[0] for r in database.conn.execute("SELECT nonce FROM protocol_nonces")]
    assert len(kept) == 1 and kept != ["1:old"]
