"""The simulator page in headless Chromium: typing, the custom menu, pushed messages."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from bot import create_app
from bot.storage import push
from tests.conftest import make_settings, serving

PHONE = {"width": 375, "height": 667}
# Markup in a configured value that ends up in a reply: it must be shown, not run.
ADDRESS = "<b>政务中心</b><script>window.pwned = 1</script>二楼"
MENU = [
    {"name": "政策问答", "sub_buttons": [{"name": "五个放宽", "key": "MENU_RELAX"},
                                         {"name": "五个鼓励", "key": "MENU_ENCOURAGE"}]},
    {"name": "我要办", "sub_buttons": [{"name": "报名培训", "key": "MENU_TRAINING"}]},
    {"name": "更多", "sub_buttons": [{"name": "最新通知", "key": "MENU_NEWS"},
                                     {"name": "联系我们", "key": "MENU_CONTACT"}]},
]


@pytest.fixture
def settings(tmp_path: Path):
    return make_settings(tmp_path, menu=MENU, county={"address": ADDRESS, "hotline": "0000-12345678"})


@pytest.fixture
def base_url(settings) -> Iterator[str]:
    app = create_app(settings)
    with serving(app) as url:
        yield url
    app.extensions["bot"].close()


@pytest.fixture
def page(browser: Browser, base_url: str) -> Iterator[Page]:
    context = browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True, locale="zh-CN")
    page = context.new_page()
    page.goto(base_url + "/simulator")
    yield page
    context.close()


def bot_bubbles(page: Page):
    return page.locator(".row.bot:not(.push) .msg")


def type_message(page: Page, text: str) -> None:
    if page.locator("#text").is_hidden():
        page.get_by_role("button", name="切换到键盘输入").click()
    page.locator("#text").fill(text)
    page.get_by_role("button", name="发送").click()


def test_typed_message_gets_the_reply_with_line_breaks(page: Page, database):
    type_message(page, "菜单")
    expect(page.locator(".row.me .msg")).to_have_text("菜单")
    reply = bot_bubbles(page).last
    expect(reply).to_contain_text("请回复数字选择")
    # Line breaks survive: each menu entry starts its own line.
    assert "\n1. " in reply.inner_text()
    assert reply.evaluate("e => e.getBoundingClientRect().height") > 100
    # It went through the webhook as a signed message from the simulated user.
    row = next(database.query("SELECT openid, msg_type, content FROM messages"))
    assert row == {"openid": "demo-user-1", "msg_type": "text", "content": "菜单"}


def test_bottom_menu_mirrors_settings_and_a_sub_button_answers(page: Page, database):
    tops = page.locator(".menubar .top > button")
    expect(tops).to_have_count(3)
    assert [t.strip() for t in tops.all_inner_texts()] == ["政策问答", "我要办", "更多"]
    expect(page.get_by_role("button", name="联系我们")).to_be_hidden()
    page.get_by_role("button", name="更多").click()
    expect(page.get_by_role("button", name="最新通知")).to_be_visible()
    page.get_by_role("button", name="联系我们").click()
    expect(page.get_by_role("button", name="联系我们")).to_be_hidden()
    expect(bot_bubbles(page).last).to_contain_text("电话：0000-12345678")
    event = next(database.query("SELECT msg_type, dedupe_key FROM messages"))
    assert event["msg_type"] == "event" and event["dedupe_key"].endswith(":click:MENU_CONTACT")


def test_category_button_lists_the_category(page: Page):
    page.get_by_role("button", name="政策问答").click()
    page.get_by_role("button", name="五个放宽").click()
    expect(bot_bubbles(page).last).to_contain_text("回复数字看详情")


def test_follow_gets_the_welcome(page: Page):
    page.get_by_role("button", name="关注").click()
    expect(bot_bubbles(page).last).to_contain_text("欢迎关注")


def test_pushed_messages_appear_marked_as_pushes(page: Page, database):
    push.enqueue_message(database, "demo-user-1", "培训开班通知：12月8日开课", "announce")
    pushed = page.locator(".row.push .msg")
    expect(pushed).to_contain_text("培训开班通知：12月8日开课", timeout=10_000)
    expect(pushed).to_contain_text("推送消息")
    push.add_to_inbox(database, "demo-user-1", "第二条推送")
    expect(pushed).to_have_count(2, timeout=10_000)
    # Someone else's pushes stay in their own chat.
    push.add_to_inbox(database, "demo-user-2", "给李师傅的推送")
    page.wait_for_timeout(2_000)
    expect(pushed).to_have_count(2)


def test_markup_in_replies_and_pushes_is_shown_as_text(page: Page, database):
    page.get_by_role("button", name="更多").click()
    page.get_by_role("button", name="联系我们").click()
    expect(bot_bubbles(page).last).to_contain_text(ADDRESS)
    push.add_to_inbox(database, "demo-user-1", "<script>window.pwned = 2</script><b>粗</b>")
    expect(page.locator(".row.push .msg")).to_contain_text("<script>window.pwned = 2</script><b>粗</b>",
                                                          timeout=10_000)
    assert page.locator("#log b, #log script, #log img").count() == 0
    assert page.evaluate("typeof window.pwned") == "undefined"


def test_switching_user_keeps_chats_apart(page: Page, database):
    type_message(page, "菜单")
    expect(bot_bubbles(page)).to_have_count(1)
    page.get_by_role("button", name="切换用户").click()
    page.get_by_role("button", name="李师傅·退役军人").click()
    expect(page.locator("#who-name")).to_have_text("李师傅")
    expect(bot_bubbles(page)).to_have_count(0)
    type_message(page, "联系我们")
    expect(bot_bubbles(page).last).to_contain_text("0000-12345678")
    page.get_by_role("button", name="切换用户").click()
    page.get_by_label("openid").fill("o-free-entry")
    page.get_by_role("button", name="切换", exact=True).click()
    expect(page.locator("#who-name")).to_have_text("o-free-entry")
    type_message(page, "菜单")
    expect(bot_bubbles(page)).to_have_count(1)
    page.get_by_role("button", name="切换用户").click()
    page.get_by_role("button", name="张大姐·返乡创业").click()
    expect(page.locator(".row.me .msg")).to_have_text(["菜单"])
    senders = [r["openid"] for r in database.query("SELECT openid FROM messages ORDER BY id")]
    assert senders == ["demo-user-1", "demo-user-2", "o-free-entry"]


def test_page_fits_a_phone_screen(page: Page):
    type_message(page, "菜单")
    expect(bot_bubbles(page).last).to_contain_text("请回复数字选择")
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    box = page.locator("#send").bounding_box()
    assert box is not None and box["x"] + box["width"] <= PHONE["width"]
    assert box["y"] + box["height"] <= PHONE["height"]


def test_without_a_custom_menu_the_input_shows_at_once(browser: Browser, tmp_path: Path):
    app = create_app(make_settings(tmp_path))
    context = browser.new_context(viewport=PHONE)
    try:
        with serving(app) as url:
            page = context.new_page()
            page.goto(f"{url}/simulator")
            expect(page.locator(".menubar")).to_have_count(0)
            page.locator("#text").fill("菜单")
            page.get_by_role("button", name="发送").click()
            expect(bot_bubbles(page).last).to_contain_text("请回复数字选择")
    finally:
        context.close()
        app.extensions["bot"].close()


@pytest.mark.parametrize("payload, error", [
    ({"text": "你好"}, "openid"),
    ({"openid": "x" * 65, "text": "你好"}, "openid"),
    ({"openid": "o-1", "text": "   "}, "请输入内容"),
    ({"openid": "o-1", "event": "LOCATION_HACK"}, "不支持"),
])
def test_send_api_refuses_bad_input_and_records_nothing(client, database, payload, error):
    resp = client.post("/simulator/api/send", json=payload)
    assert resp.status_code == 400 and error in resp.get_json()["error"]
    assert database["messages"].count == 0


def test_send_api_refuses_a_non_json_body(client):
    resp = client.post("/simulator/api/send", data="openid=o-1&text=hi",
                       content_type="application/x-www-form-urlencoded")
    assert resp.status_code == 400
