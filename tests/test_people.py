"""People in the console: search, the person page, revealing one number, names in lists,
the 转人工 queue, and the staff account commands."""
from __future__ import annotations

import re

import pytest
from click.testing import CliRunner

from bot.cli import cli
from bot.push import announcements, runner
from bot.storage import engine, staff
from tests.conftest import Chat, create_app, make_settings
from tests.test_console import (
    PASSWORD,
    add_staff,
    apply_both,
    csrf_from,
    page_token,
    sign_in,
    signed_in,
)
from tests.test_registration import COURSES, ID, PHONE, TRAINING_TO_SUMMARY, converse


@pytest.fixture
def app(tmp_path):
    app = create_app(make_settings(tmp_path, courses=COURSES))
    yield app
    app.extensions["bot"].close()


@pytest.fixture
def staff_client(app):
    return signed_in(app)


def text_of(resp) -> str:
    return resp.get_data(as_text=True)


def audit_details(app) -> list[tuple[str, str, str]]:
    database = engine.connect(app.extensions["bot"].settings.storage.database)
    return [(e["staff"], e["action"], e["detail"]) for e in staff.audit_entries(database)]


# --- search ---------------------------------------------------------------------------


def test_people_are_found_by_name_reference_number_and_phone_tail(staff_client):
    px, dk = apply_both(staff_client)
    by_name = text_of(staff_client.get("/admin/people?q=张"))
    assert 'href="/admin/people/o-zhang">张三</a>' in by_name and "李四" not in by_name
    assert "138****5678" in by_name and PHONE not in by_name
    by_ref = text_of(staff_client.get(f"/admin/people?q={dk}"))
    assert "李四" in by_ref and "张三" not in by_ref
    # Both phones end in 5678 (13812345678, 13912345678); 1234 is inside them, not their end.
    by_tail = text_of(staff_client.get("/admin/people?q=5678"))
    assert "张三" in by_tail and "李四" in by_tail
    middle = text_of(staff_client.get("/admin/people?q=1234"))
    assert "张三" not in middle and "没有找到“1234”" in middle
    wildcard = text_of(staff_client.get("/admin/people?q=%25"))
    assert "张三" not in wildcard and "李四" not in wildcard


def test_phone_tail_search_uses_an_index(app):
    database = engine.connect(app.extensions["bot"].settings.storage.database)
    plan = " ".join(str(row) for row in database.conn.execute(
        "EXPLAIN QUERY PLAN SELECT id FROM applications WHERE substr(phone_masked, -4) = '5678'"))
    assert "applications_phone_tail" in plan


# --- the person page and revealing a number -------------------------------------------


def test_person_page_has_masked_numbers_history_and_the_whole_conversation(app, staff_client):
    px, _ = apply_both(staff_client)
    detail = text_of(staff_client.get(f"/admin/applications/{px}"))
    for status, note in (("审核中", ""), ("已通过", "请12月15日报到")):  # the workflow's steps
        staff_client.post(f"/admin/applications/{px}/status", data={
            "status": status, "note": note, "csrf_token": csrf_from(detail)})
    staff_client.post("/admin/conversations/o-zhang/reply", data={
        "text": "您好，我是小王，课程会准时开班。", "csrf_token": page_token(staff_client)})
    runtime = app.extensions["bot"]
    database = runtime.open_db()
    job_id = announcements.start_job(database, announcements.create_announcement(
        database, "茶叶培训改到县职教中心三楼", "", "all", "wang"))
    runner.run_job(runtime, job_id)

    page = text_of(staff_client.get("/admin/people/o-zhang"))
    assert "张三" in page and "138****5678" in page and "1101**********002X" in page
    assert PHONE not in page and ID not in page
    assert px in page and "已提交" in page and "已通过" in page and "请12月15日报到" in page
    said = ["我要报名培训", "确认", "状态通知", "已通过", "工作人员回复", "您好，我是小王",
            "茶叶培训改到县职教中心三楼"]
    timeline = page[page.index('id="timeline"'):]
    positions = [timeline.find(text) for text in said]
    assert -1 not in positions and positions == sorted(positions), dict(zip(said, positions))
    assert "报名成功" in timeline  # the bot's reply
    assert staff_client.get("/admin/people/o-nobody").status_code == 404


def test_a_second_staff_member_sees_that_someone_already_replied(app, staff_client):
    Chat(staff_client, "o-help").say("转人工")
    staff_client.post("/admin/conversations/o-help/reply", data={
        "text": "已电话联系您，请留意。", "csrf_token": page_token(staff_client)})
    colleague = app.test_client()
    add_staff(app, "li")
    sign_in(colleague, "li")
    page = text_of(colleague.get("/admin/conversations/o-help"))
    assert "工作人员回复" in page and "已电话联系您，请留意。" in page


def test_reveal_shows_one_number_and_the_audit_names_whose_but_not_the_number(app, staff_client):
    px, _ = apply_both(staff_client)
    token = page_token(staff_client, "/admin/people/o-zhang")
    as_json = staff_client.post("/admin/people/o-zhang/reveal", data={
        "ref": px, "kind": "phone", "csrf_token": token}, headers={"Accept": "application/json"})
    assert as_json.status_code == 200 and as_json.get_json() == {"number": PHONE}
    as_page = text_of(staff_client.post("/admin/people/o-zhang/reveal", data={
        "ref": px, "kind": "id", "csrf_token": token}))
    assert ID in as_page and PHONE not in as_page and "138****5678" in as_page
    reveals = [(who, detail) for who, action, detail in audit_details(app) if action == "查看完整号码"]
    assert reveals == [("wang", f"张三（{px}）的身份证号"), ("wang", f"张三（{px}）的手机号")]
    audit_page = text_of(staff_client.get("/admin/audit"))
    assert "查看完整号码" in audit_page and PHONE not in audit_page and ID not in audit_page


def test_reveal_refuses_no_csrf_token_a_stranger_and_another_persons_application(app, staff_client):
    px, dk = apply_both(staff_client)
    no_token = staff_client.post("/admin/people/o-zhang/reveal", data={"ref": px, "kind": "phone"})
    assert no_token.status_code == 400 and PHONE not in text_of(no_token)
    stranger = app.test_client()
    refused = stranger.post("/admin/people/o-zhang/reveal", data={"ref": px, "kind": "phone"})
    assert refused.status_code == 302 and "/admin/login" in refused.headers["Location"]
    token = page_token(staff_client, "/admin/people/o-zhang")
    elsewhere = staff_client.post("/admin/people/o-zhang/reveal",
                                  data={"ref": dk, "kind": "phone", "csrf_token": token})
    assert elsewhere.status_code == 404 and "13912345678" not in text_of(elsewhere)
    odd = staff_client.post("/admin/people/o-zhang/reveal",
                            data={"ref": px, "kind": "id_enc", "csrf_token": token})
    assert odd.status_code == 400
    assert not [a for a in audit_details(app) if a[1] == "查看完整号码"]


# --- names in lists and the 转人工 queue -------------------------------------------------


def test_lists_show_names_where_a_name_is_known(staff_client):
    apply_both(staff_client)
    Chat(staff_client, "o-zhang").say("红烧肉怎么做好吃")
    Chat(staff_client, "o-anonymous").say("你好")
    recent = text_of(staff_client.get("/admin/conversations"))
    assert 'href="/admin/people/o-zhang">张三</a>' in recent and "<code>o-zhang</code>" not in recent
    assert "<code>o-anonymous</code>" in recent  # no name given: the openid it is
    unanswered = text_of(staff_client.get("/admin/unanswered"))
    assert "提问人 <a href=\"/admin/people/o-zhang\">张三</a>" in unanswered


def test_hand_off_queue_shows_the_last_messages_open_form_and_application(staff_client):
    applicant = Chat(staff_client, "o-reg")
    converse(applicant, TRAINING_TO_SUMMARY)
    px = re.search(r"PX\d{8}-\d{4}", applicant.say("确认")).group()
    applicant.say("课程什么时候开始")
    applicant.say("转人工")
    midway = Chat(staff_client, "o-loan")
    midway.say("我要申请贷款")
    midway.say("三万五")
    midway.say("人工客服")
    queue = text_of(staff_client.get("/admin/conversations"))
    rows = queue[queue.index('id="handoffs"'):queue.index('id="recent"')]
    reg_row = rows[rows.index("张三"):rows.index("o-loan")]
    assert "课程什么时候开始" in reg_row and "培训报名 <a" in reg_row and px in reg_row
    assert "已提交" in reg_row
    loan_row = rows[rows.index("o-loan"):]
    assert "正在填写贷款申请：用途（已暂停）" in loan_row and "三万五" in loan_row
    assert PHONE not in rows and ID not in rows and "1101" not in rows


# --- staff accounts -------------------------------------------------------------------


def staff_command(tmp_path):
    """`run.py staff …` on the test's database: run("list"), run("add", "li", text=…)."""
    config = tmp_path / "config.toml"
    config.write_text(f'[storage]\ndatabase = "{tmp_path / "bot.db"}"\n', encoding="utf-8")

    def run(*args, text=None):
        return CliRunner().invoke(cli, ["--config", str(config), "staff", *args], input=text)
    return run


def test_staff_disable_ends_sessions_and_sign_in_until_enabled(tmp_path):
    app = create_app(make_settings(tmp_path))
    try:
        run = staff_command(tmp_path)
        client = signed_in(app)
        assert client.get("/admin/").status_code == 200
        result = run("disable", "wang")
        assert result.exit_code == 0 and "已停用后台账号 wang" in result.output
        assert "/admin/login" in client.get("/admin/").headers["Location"]
        refused = text_of(sign_in(client))
        assert "这个账号已停用" in refused and client.get("/admin/").status_code == 302
        listed = run("list")
        assert listed.exit_code == 0
        assert re.search(r"wang  已停用（\d{4}-\d\d-\d\d \d\d:\d\d）", listed.output)
        assert run("enable", "wang").exit_code == 0
        assert sign_in(client).status_code == 302 and client.get("/admin/").status_code == 200
        assert "wang  可用  最近登录" in run("list").output
        missing = run("disable", "nobody")
        assert missing.exit_code != 0 and "没有后台账号 nobody" in missing.output
        actions = [(who, action, detail) for who, action, detail in audit_details(app)
                   if action in ("停用后台账号", "启用后台账号", "登录被拒绝")]
        assert [a[:2] for a in actions] == [("cli", "启用后台账号"), ("wang", "登录被拒绝"),
                                            ("cli", "停用后台账号")]
    finally:
        app.extensions["bot"].close()


def test_staff_reset_password_ends_sessions_and_asks_nothing_for_an_unknown_name(tmp_path):
    app = create_app(make_settings(tmp_path))
    try:
        run = staff_command(tmp_path)
        unknown = run("reset-password", "nobody")
        assert unknown.exit_code != 0 and "没有后台账号 nobody" in unknown.output
        assert "新密码" not in unknown.output
        client = signed_in(app)
        result = run("reset-password", "wang", text="brand-new-pass\nbrand-new-pass\n")
        assert result.exit_code == 0 and "已为 wang 设置新密码" in result.output
        assert client.get("/admin/").status_code == 302
        assert sign_in(client, password=PASSWORD).status_code == 200
        assert sign_in(client, password="brand-new-pass").status_code == 302
        assert ("cli", "重设后台密码", "wang") in audit_details(app)
        assert run("list").output.startswith("wang  可用")
    finally:
        app.extensions["bot"].close()


def test_staff_list_with_no_accounts_says_how_to_add_one(tmp_path):
    config = tmp_path / "config.toml"
    config.write_text(f'[storage]\ndatabase = "{tmp_path / "bot.db"}"\n', encoding="utf-8")
    result = CliRunner().invoke(cli, ["--config", str(config), "staff", "list"])
    assert result.exit_code == 0 and "python run.py staff add" in result.output
