"""The staff console in headless Chromium: what a staff member clicks, what a subscriber sees."""
from __future__ import annotations

import re
import shutil
import threading
from collections.abc import Iterator

import pytest
from werkzeug.security import generate_password_hash
from werkzeug.serving import make_server

from bot import create_app
from bot.storage import engine, staff
from tests.conftest import ROOT, make_settings
from tests.test_registration import COURSES, PX, TRAINING_TO_SUMMARY

sync_api = pytest.importorskip("playwright.sync_api")
expect = sync_api.expect
# Saving a topic re-checks the whole knowledge base; on a busy machine that takes a while.
expect.set_options(timeout=60_000)

STAFF, PASSWORD = "wang", "browser-pass-42"
BOT_BUBBLES = ".row.bot:not(.push) .msg"
PUSHES = ".row.push .msg"
XSS = '<script>window.__xss=1</script><img src=x onerror="window.__xss=1">'


class Served:
    """The app on 127.0.0.1 (werkzeug, port 0, in a thread) with its database."""

    def __init__(self, app):
        self.app = app
        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.policies = app.extensions["bot"].settings.matcher.policies_dir

    def db(self):
        return engine.connect(self.app.extensions["bot"].settings.storage.database)


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Iterator[Served]:
    tmp = tmp_path_factory.mktemp("console")
    shutil.copytree(ROOT / "policies", tmp / "policies")
    app = create_app(make_settings(tmp, matcher={"policies_dir": str(tmp / "policies")},
                                   courses=COURSES))
    assert staff.add_staff(engine.connect(tmp / "bot.db"), STAFF, generate_password_hash(PASSWORD))
    s = Served(app)
    yield s
    s.server.shutdown()
    app.extensions["bot"].close()


@pytest.fixture
def page(browser, served):
    """A signed-in staff page (fresh cookies per test)."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="zh-CN")
    page = context.new_page()
    page.set_default_timeout(60000)
    page.on("dialog", lambda dialog: dialog.accept())
    sign_in(page, served)
    yield page
    context.close()


def sign_in(page, served: Served) -> None:
    page.goto(served.url + "/admin/")
    expect(page).to_have_url(re.compile(r"/admin/login"))
    page.fill("input[name=username]", STAFF)
    page.fill("input[name=password]", PASSWORD)
    page.click("button:has-text('登录')")
    expect(page.locator("h1")).to_contain_text("概览")


def send_as(page, served: Served, openid: str, text: str) -> str:
    """Send a message as a subscriber through the simulator's API (the signed webhook path)."""
    resp = page.request.post(served.url + "/simulator/api/send", data={"openid": openid, "text": text})
    assert resp.ok
    return resp.json()["reply"]


def open_phone(browser, served: Served, openid: str):
    """The simulator page, switched to a subscriber."""
    phone = browser.new_page(viewport={"width": 400, "height": 800})
    phone.set_default_timeout(60000)
    phone.goto(served.url + "/simulator")
    phone.click("#who")
    phone.fill("#openid", openid)
    phone.click("#user-form button[type=submit]")
    expect(phone.locator("#who-name")).to_have_text(openid)
    if phone.locator("#text").is_hidden():
        phone.click("#to-keyboard")
    return phone


def ask_on_phone(browser, served: Served, openid: str, text: str):
    """Type a question on the simulator page; returns the page (the reply is the last bubble)."""
    phone = open_phone(browser, served, openid)
    phone.fill("#text", text)
    phone.click("#send")
    expect(phone.locator(BOT_BUBBLES)).to_have_count(1)
    return phone


# --- tests --------------------------------------------------------------------------


def test_sign_in_and_out(browser, served):
    context = browser.new_context()
    page = context.new_page()
    page.goto(served.url + "/admin/login")
    page.fill("input[name=username]", STAFF)
    page.fill("input[name=password]", "wrong-password")
    page.click("button:has-text('登录')")
    expect(page.locator(".error")).to_contain_text("用户名或密码错误")
    sign_in(page, served)
    expect(page.locator("nav")).to_contain_text("未答问题")
    page.click("button:has-text('退出')")
    expect(page).to_have_url(re.compile(r"/admin/login"))
    page.goto(served.url + "/admin/audit")
    expect(page).to_have_url(re.compile(r"/admin/login"))
    context.close()


def test_edit_a_topic_and_the_bot_answers_with_the_new_text(browser, page, served):
    page.click("nav >> text=知识库")
    page.fill("input[name=q]", "贷款额度")
    page.click("button:has-text('搜索')")
    page.click("a:has-text('金融扶持：小额贴息贷款')")
    page.fill("textarea[name=answer]", "浏览器里改的新答案：小额贴息贷款个人最高8万元。咨询电话 {hotline}")
    page.click("button:has-text('保存并生效')")
    expect(page.locator(".flash").first).to_contain_text("已保存")
    expect(page.locator("#preview")).to_contain_text("个人最高8万元。咨询电话 0000-12345678")
    phone = ask_on_phone(browser, served, "o-browser-loan", "创业贷款能贷好多")
    expect(phone.locator(BOT_BUBBLES).last).to_contain_text("浏览器里改的新答案：小额贴息贷款个人最高8万元")
    phone.close()
    assert "浏览器里改的新答案" in (served.policies / "support.toml").read_text(encoding="utf-8")


def test_add_an_unanswered_question_as_an_example(browser, page, served):
    question = "缺本钱能找政府借点不"
    first = send_as(page, served, "o-browser-shop", question)
    page.click("nav >> text=未答问题")
    item = page.locator("li", has_text=question)
    item.locator("select[name=topic]").select_option("support.loan")
    item.locator("button:has-text('加为例句')").click()
    expect(page.locator(".flash").first).to_contain_text("立即生效")
    expect(page.locator("li", has_text=question)).to_have_count(0)
    again = send_as(page, served, "o-browser-shop-2", question)
    assert again != first and "贷款" in again


def test_send_an_announcement_watch_progress_and_see_it_on_the_phone(browser, page, served):
    for openid in ("o-news-1", "o-news-2"):
        page.request.post(served.url + "/simulator/api/send", data={"openid": openid, "event": "subscribe"})
    page.click("nav >> text=通知")
    page.fill("textarea[name=text]", "浏览器测试通知：12月8日茶叶培训开班。")
    page.check("input[value=all]")
    page.click("button:has-text('预览')")
    expect(page.locator("#preview-message")).to_have_text("浏览器测试通知：12月8日茶叶培训开班。")
    page.click("button:has-text('确认发送')")
    expect(page.locator("#job-status")).to_have_text("已完成")
    expect(page.locator("progress#bar")).to_have_js_property("position", 1.0)
    total = int(page.locator("#n-total").inner_text())
    assert total >= 2 and page.locator("#n-delivered").inner_text() == str(total)
    expect(page.locator("#recipients")).to_contain_text("o-news-1")
    phone = open_phone(browser, served, "o-news-2")
    expect(phone.locator(PUSHES)).to_contain_text("浏览器测试通知：12月8日茶叶培训开班。")
    phone.close()


def test_approve_an_application_and_the_applicant_is_notified(browser, page, served):
    for said, expected in TRAINING_TO_SUMMARY:
        assert expected in send_as(page, served, "o-applicant", said)
    ref = PX.search(send_as(page, served, "o-applicant", "确认")).group()
    page.click("nav >> text=申请")
    page.select_option("select[name=type]", "training")
    page.fill("input[name=q]", "张三")
    page.click("button:has-text('筛选')")
    expect(page.locator("#applications")).to_contain_text("138****5678")
    page.click(f"a:has-text('{ref}')")
    page.select_option("select[name=status]", "审核中")  # the workflow reviews first
    page.click("button:has-text('保存并通知申请人')")
    expect(page.locator("#status")).to_contain_text("审核中")
    page.select_option("select[name=status]", "已通过")
    page.fill("textarea[name=note]", "请12月15日带身份证报到")
    page.click("button:has-text('保存并通知申请人')")
    expect(page.locator(".flash").first).to_contain_text("已通过微信通知申请人")
    expect(page.locator("#history")).to_contain_text("请12月15日带身份证报到")
    phone = open_phone(browser, served, "o-applicant")
    expect(phone.locator(PUSHES).last).to_contain_text(f"{ref}）状态已更新为：已通过")
    expect(phone.locator(PUSHES).last).to_contain_text("请12月15日带身份证报到")
    phone.close()


def test_script_sent_by_a_subscriber_does_not_run_in_the_console(page, served):
    send_as(page, served, "o-attacker", XSS)
    database = served.db()
    staff.request_human(database, "o-attacker", XSS)
    for path in ("/admin/conversations", "/admin/conversations/o-attacker", "/admin/unanswered",
                 "/admin/"):
        page.goto(served.url + path)
        page.wait_for_load_state("load")
        assert page.evaluate("typeof window.__xss") == "undefined", path
    page.goto(served.url + "/admin/conversations/o-attacker")
    expect(page.locator(".chat")).to_contain_text("<script>window.__xss=1</script>")
    page.click("button:has-text('结束转人工')")
    expect(page.locator("h1").first).to_contain_text("0 人等待")


def test_staff_reply_to_a_hand_off_reaches_the_phone(browser, page, served):
    staff.request_human(served.db(), "o-needs-help", "我想找工作人员问问")
    page.reload()
    expect(page.locator("#handoff-badge")).to_be_visible()
    page.click("nav >> text=对话")
    page.click("tr:has-text('o-needs-help') >> text=查看并回复")
    page.fill("textarea[name=text]", "您好，我是县人社局小王，请讲。")
    page.click("button:has-text('发送回复')")
    expect(page.locator(".flash").first).to_contain_text("回复已发出")
    expect(page.locator("#handoff-badge")).to_be_hidden()
    phone = open_phone(browser, served, "o-needs-help")
    expect(phone.locator(PUSHES)).to_contain_text("您好，我是县人社局小王，请讲。")
    phone.close()


def test_console_fits_a_phone_screen(browser, served):
    context = browser.new_context(viewport={"width": 375, "height": 740}, is_mobile=True)
    page = context.new_page()
    sign_in(page, served)
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 375
    context.close()


def test_a_question_the_bot_did_not_understand_has_no_topic_chosen(page, served):
    send_as(page, served, "o-browser-cooking", "红烧肉怎么做好吃")
    page.click("nav >> text=未答问题")
    select = page.locator("li", has_text="红烧肉怎么做好吃").locator("select[name=topic]")
    expect(select).to_have_value("")
    page.locator("li", has_text="红烧肉怎么做好吃").locator("button:has-text('加为例句')").click()
    # The browser refuses the empty choice: nothing is taught by one click.
    expect(page.locator("li", has_text="红烧肉怎么做好吃")).to_have_count(1)


def test_find_a_person_by_phone_tail_reveal_one_number_and_it_is_audited(browser, page, served):
    from tests.test_registration import ID, PHONE, make_id
    phone, id_number = "13700001111", make_id(777)
    swap = {PHONE: phone, ID: id_number, "张三": "赵六"}
    turns = [(swap.get(said, said), expected) for said, expected in TRAINING_TO_SUMMARY]
    for said, expected in turns:
        assert expected in send_as(page, served, "o-person", said)
    ref = PX.search(send_as(page, served, "o-person", "确认")).group()
    page.goto(served.url + "/admin/conversations/o-person")
    page.fill("textarea[name=text]", "赵六您好，开班前会再电话通知您。")
    page.click("button:has-text('发送回复')")
    expect(page.locator(".flash").first).to_contain_text("回复已发出")

    page.click("nav >> text=查找用户")
    page.fill("input[name=q]", "1111")
    page.click("button:has-text('查找')")
    page.click("#found >> text=赵六")
    expect(page.locator("#person-name")).to_contain_text("赵六")
    contact = page.locator("#contact")
    expect(contact).to_contain_text("137****1111")
    masked_id = id_number[:4] + "*" * 10 + id_number[-4:]
    expect(contact).to_contain_text(masked_id)
    timeline = page.locator("#timeline")
    expect(timeline).to_contain_text("我要报名培训")
    expect(timeline).to_contain_text("工作人员回复")
    expect(timeline).to_contain_text("赵六您好，开班前会再电话通知您。")
    assert phone not in page.content() and id_number not in page.content()

    contact.locator("tr", has_text="电话").locator("button:has-text('显示完整号码')").click()
    expect(contact.locator(".full")).to_have_text(phone)
    expect(page).to_have_url(re.compile(r"/admin/people/o-person$"))  # shown in place, no reload
    expect(contact.locator("tr", has_text="电话").locator("button")).to_have_count(0)
    expect(contact).to_contain_text(masked_id)  # the other number stays masked
    assert id_number not in page.content()

    page.click("nav >> text=操作记录")
    expect(page.locator("main")).to_contain_text(f"赵六（{ref}）的手机号")
    assert phone not in page.content()
