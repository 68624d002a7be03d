"""The application workflow: allowed status steps, the training waiting list and the
applicant's withdrawal, through the chat, the console, the CLI and the fake WeChat API."""
from __future__ import annotations

import re
import threading

import pytest
from click.testing import CliRunner
from werkzeug.security import generate_password_hash

from bot import casework
from bot.cli import cli
from bot.storage import applications, engine, staff
from handlers.registration.notices import NOTICES
from tests import wx
from tests.conftest import Chat, create_app, make_settings
from tests.fake_wechat import CUSTOM
from tests.test_cli import config_for
from tests.test_registration import (
    COURSES,
    DK,
    LOAN_TO_SUMMARY,
    PX,
    SUMMARY_MARK,
    TRAINING_TO_SUMMARY,
    as_person,
    converse,
)


@pytest.fixture
def settings(tmp_path):
    return make_settings(tmp_path, courses=COURSES)


@pytest.fixture
def app(settings):
    app = create_app(settings)
    yield app
    app.extensions["bot"].close()


def register(client, openid: str, n: int, course: str = "茶叶") -> str:
    """One person's training registration through the chat; returns its reference."""
    chat = Chat(client, openid)
    turns = as_person(TRAINING_TO_SUMMARY, n)
    turns[1] = (course, "姓名")
    converse(chat, turns)
    return PX.search(chat.say("确认")).group()


def apply_for_loan(client, openid: str) -> str:
    """A loan application by someone who registered for training before (details reused)."""
    chat = Chat(client, openid)
    converse(chat, LOAN_TO_SUMMARY[:4] + [("1", "还用上次的信息吗"), ("是", SUMMARY_MARK)])
    return DK.search(chat.say("确认")).group()


def inbox(client, openid: str) -> list[str]:
    return [m["text"] for m in client.get(f"/simulator/api/inbox?openid={openid}").get_json()["messages"]]


def deliver(app) -> None:
    with app.app_context():
        app.extensions["bot"].deliver_pending()


def staff_client(app):
    """A console client signed in as wang."""
    database = engine.connect(app.extensions["bot"].settings.storage.database)
    staff.add_staff(database, "wang", generate_password_hash("console-pass-1"))
    database.close()
    client = app.test_client()
    page = client.get("/admin/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    assert client.post("/admin/login", data={"username": "wang", "password": "console-pass-1",
                                             "csrf_token": token}).status_code == 302
    return client


def set_status(client, ref: str, status: str, note: str = "") -> str:
    """Post the status form as the page would; returns the page after the redirect."""
    page = client.get(f"/admin/applications/{ref}").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    resp = client.post(f"/admin/applications/{ref}/status", follow_redirects=True,
                       data={"status": status, "note": note, "csrf_token": token})
    return resp.get_data(as_text=True)


def offered(page: str) -> list[str]:
    """The statuses the page's select offers."""
    form = page[page.index('id="status-form"'):]
    return re.findall(r'<option value="([^"]+)"', form[:form.index("</select>")]) if "<select" in form else []


# --- withdrawing in the chat -------------------------------------------------------------

def test_applicant_withdraws_after_confirming_and_staff_see_it(app, client, database):
    ref = register(client, "o-a", 1, "高山")
    chat = Chat(client, "o-a")
    asked = chat.say("撤回申请")
    assert "确认撤回这份培训报名吗" in asked and ref in asked and "回复“是”撤回" in asked
    assert applications.get_application(database, ref)["status"] == "已提交"
    done = chat.say("是")
    assert "已撤回" in done and ref in done
    row = applications.get_application(database, ref)
    assert row["status"] == "已撤回" and row["staff_note"] == ""
    assert (row["history"][-1]["status"], row["history"][-1]["actor"]) == ("已撤回", "applicant")
    assert "状态：已撤回" in chat.say("查询进度")
    page = set_status(staff_client(app), ref, "")  # just open the page
    assert "申请人在微信中撤回" in page and "申请人" in page and "办理已结束" in page
    assert inbox(client, "o-a") == []  # answered in the chat, no extra notice


@pytest.mark.parametrize("said", ["我不想去培训了", "取消报名", "不想去了", "取消申请"])
def test_saying_no_keeps_the_application(client, database, said):
    ref = register(client, "o-a", 1, "高山")
    chat = Chat(client, "o-a")
    assert "确认撤回" in chat.say(said)
    assert "不撤回" in chat.say("否")
    assert applications.get_application(database, ref)["status"] == "已提交"
    assert "已撤回" not in chat.say("是")  # the question was answered: 是 now means nothing


def test_the_question_lapses_when_the_user_talks_of_something_else(client, database):
    ref = register(client, "o-a", 1, "高山")
    chat = Chat(client, "o-a")
    assert "确认撤回" in chat.say("撤回")
    chat.say("菜单")
    chat.say("是")
    assert applications.get_application(database, ref)["status"] == "已提交"


def test_with_several_open_applications_the_bot_asks_which_one(client, database):
    px = register(client, "o-a", 1, "高山")
    dk = apply_for_loan(client, "o-a")
    chat = Chat(client, "o-a")
    listed = chat.say("取消申请")
    assert "要撤回哪一份" in listed and "1. 贷款申请" in listed and "2. 培训报名：高山蔬菜" in listed
    assert px in listed and dk in listed
    assert "1 到 2" in chat.say("5")
    asked = chat.say("1")
    assert "确认撤回这份贷款申请吗" in asked and dk in asked
    assert "已撤回" in chat.say("是")
    assert applications.get_application(database, dk)["status"] == "已撤回"
    assert applications.get_application(database, px)["status"] == "已提交"
    # Naming the kind picks it without a list.
    assert "确认撤回这份培训报名吗" in chat.say("我不想去培训了")


def test_a_reference_number_leads_to_the_confirmation(client, database):
    ref = register(client, "o-a", 1, "高山")
    other = register(client, "o-b", 2, "高山")
    chat = Chat(client, "o-a")
    assert "确认撤回" in chat.say(ref.lower().replace("-", " "))
    assert "已撤回" in chat.say("是的")
    assert "已经办结" in chat.say(ref)
    assert "没有找到" in chat.say(other)  # someone else's number tells nothing
    assert applications.get_application(database, other)["status"] == "已提交"


def test_cancel_words_mean_the_form_while_one_is_open(client, database):
    chat = Chat(client, "o-a")
    nothing = chat.say("取消")
    assert "现在没有正在填写的内容" in nothing and "撤回申请" in nothing
    assert "没有正在办理的申请" in chat.say("取消申请")
    ref = register(client, "o-a", 1, "高山")
    converse(chat, [("申请贷款", "多少贷款")])
    assert "确定要取消贷款申请吗" in chat.say("取消申请")  # the form, not the registration
    assert "已取消贷款申请" in chat.say("是")
    assert applications.get_application(database, ref)["status"] == "已提交"
    converse(chat, [("申请贷款", "多少贷款")])
    asked = chat.say("撤回报名")  # 撤回 names the submitted one; the form goes on
    assert "确认撤回这份培训报名吗" in asked and "接着填贷款申请" in asked
    assert "已撤回" in chat.say("是")


# --- the waiting list --------------------------------------------------------------------

def test_a_withdrawal_moves_the_first_waitlisted_up_and_tells_them(app, client, database):
    first, second, third = (register(client, f"o-{i}", i) for i in range(3))
    assert applications.get_application(database, third)["waitlist_position"] == 2
    Chat(client, "o-0").say("我不想去培训了")
    Chat(client, "o-0").say("是")
    deliver(app)
    told = inbox(client, "o-1")
    assert len(told) == 1 and "有空位了" in told[0] and second in told[0]
    assert applications.get_application(database, second)["waitlist_position"] is None
    assert applications.get_application(database, third)["waitlist_position"] == 1
    assert "已从候补转为正式名额" in Chat(client, "o-1").say("查询进度")
    assert "候补第1位" in Chat(client, "o-2").say("查询进度")
    assert inbox(client, "o-2") == []
    # A newcomer queues behind the one still waiting.
    late = register(client, "o-late", 7)
    assert applications.get_application(database, late)["waitlist_position"] == 2
    history = applications.get_application(database, second)["history"]
    assert history[-1]["actor"] == "system" and "候补转正" in history[-1]["note"]


def test_nobody_jumps_the_queue_when_seats_are_free(tmp_path):
    """Capacity raised while people wait: the waiting get the seats, the newcomer waits."""
    small = [{**COURSES[0], "capacity": 1}]
    app = create_app(make_settings(tmp_path, courses=small))
    client = app.test_client()
    refs = [register(client, f"o-{i}", i) for i in range(3)]
    app.extensions["bot"].close()
    bigger = create_app(make_settings(tmp_path, courses=[{**COURSES[0], "capacity": 2}]))
    client = bigger.test_client()
    assert "已满，可报名候补" in Chat(client, "o-new").say("报名培训")
    late = register(client, "o-new", 9)
    database = engine.connect(tmp_path / "bot.db")
    assert applications.get_application(database, refs[1])["waitlist_position"] is None
    assert applications.get_application(database, refs[2])["waitlist_position"] == 1
    assert applications.get_application(database, late)["waitlist_position"] == 2
    deliver(bigger)
    assert any("有空位了" in t for t in inbox(client, "o-1"))
    database.close()
    bigger.extensions["bot"].close()


def test_not_approved_frees_the_seat_through_the_wechat_api(tmp_path, wechat_api):
    app = create_app(make_settings(tmp_path, courses=COURSES,
                                   wechat={"app_secret": "s3cret", "api_base_url": wechat_api.url}))
    client = app.test_client()
    first, second = register(client, "o-0", 0), register(client, "o-1", 1)
    console = staff_client(app)
    set_status(console, first, "审核中")
    refused = set_status(console, first, "未通过")
    assert "请写明原因" in refused
    database = engine.connect(tmp_path / "bot.db")
    assert applications.get_application(database, first)["status"] == "审核中"
    page = set_status(console, first, "未通过", "身份证号与户籍不符")
    assert "已转为正式名额" in page and second in page
    sent = {c["json"]["touser"]: c["json"]["text"]["content"] for c in wechat_api.calls_to(CUSTOM)}
    assert "未通过" in sent["o-0"] and "身份证号与户籍不符" in sent["o-0"]
    assert "有空位了" in sent["o-1"] and second in sent["o-1"]
    assert applications.get_application(database, second)["waitlist_position"] is None
    database.close()
    app.extensions["bot"].close()


def test_concurrent_withdrawals_and_registrations_never_give_a_seat_twice(tmp_path):
    course = {**COURSES[0], "capacity": 2}
    settings = make_settings(tmp_path, courses=[course])
    app = create_app(settings)
    client = app.test_client()
    refs = [register(client, f"o-{i}", i) for i in range(5)]  # 2 seated, 3 waiting
    app.extensions["bot"].close()
    seated, waiting = refs[:2], refs[2:]
    errors: list[BaseException] = []
    start = threading.Barrier(3)
    vault_record = {"type": "training", "openid": "o-new", "name": "新人", "phone_enc": "",
                    "phone_masked": "", "id_enc": "", "id_masked": "", "id_fingerprint": "fp-new",
                    "township": "城关镇", "village": "东门村", "course_id": course["id"],
                    "course_name": course["name"], "returning_worker": 0}

    def withdraw(ref: str) -> None:
        db = engine.connect(settings.storage.database)
        try:
            start.wait()
            with engine.transaction(db):
                casework.change_status(db, ref, "已撤回", "", "applicant", casework.APPLICANT,
                                       settings.courses, NOTICES)
        except BaseException as exc:
            errors.append(exc)
        finally:
            db.close()

    def newcomer() -> None:
        db = engine.connect(settings.storage.database)
        try:
            start.wait()
            with engine.transaction(db):
                casework.fill_seats(db, settings.courses[0], NOTICES)
                applications.add_application(db, vault_record, "PX", engine.now(), course["capacity"])
        except BaseException as exc:
            errors.append(exc)
        finally:
            db.close()

    threads = [threading.Thread(target=withdraw, args=(r,)) for r in seated]
    threads.append(threading.Thread(target=newcomer))
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    db = engine.connect(settings.storage.database)
    assert applications.seats_taken(db, course["id"]) == 2
    rows = {r["ref"]: r for r in applications.list_applications(db)}
    assert [rows[r]["waitlist_position"] for r in waiting[:2]] == [None, None]
    queue = [r for r in applications.waiting_list(db, course["id"])]
    assert [r["waitlist_position"] for r in queue] == [1, 2]
    assert [r["openid"] for r in queue] == ["o-4", "o-new"]
    db.close()


# --- the console's status select -------------------------------------------------------

def test_the_status_select_offers_only_the_next_steps(app, client):
    ref = register(client, "o-a", 1, "高山")
    console = staff_client(app)
    page = console.get(f"/admin/applications/{ref}").get_data(as_text=True)
    assert offered(page) == ["审核中", "已取消"]
    assert "工作人员取消" in page and "申请人本人在微信中操作" in page
    page = set_status(console, ref, "审核中")
    assert offered(page) == ["已通过", "未通过", "已取消"]
    page = set_status(console, ref, "已通过")
    assert offered(page) == ["已完成", "已取消"]
    page = set_status(console, ref, "已完成")
    assert offered(page) == [] and "办理已结束" in page


def test_a_forged_step_is_refused_and_nothing_changes(app, client, database):
    ref = register(client, "o-a", 1, "高山")
    console = staff_client(app)
    page = set_status(console, ref, "已完成")
    assert "“已提交”的申请不能改为“已完成”" in page and "现在可以改为：审核中、已取消" in page
    assert "只能由申请人本人" in set_status(console, ref, "已撤回")
    assert "没有“批准”这个状态" in set_status(console, ref, "批准")
    row = applications.get_application(database, ref)
    assert row["status"] == "已提交" and len(row["history"]) == 1
    deliver(app)
    assert inbox(client, "o-a") == []


def test_a_waitlisted_registration_can_only_be_cancelled(app, client, database):
    register(client, "o-0", 0)
    waiting = register(client, "o-1", 1)
    console = staff_client(app)
    page = console.get(f"/admin/applications/{waiting}").get_data(as_text=True)
    assert offered(page) == ["已取消"] and "候补第 1 位" in page
    assert "还在候补名单上" in set_status(console, waiting, "审核中")
    assert applications.get_application(database, waiting)["status"] == "已提交"


def test_rows_from_the_old_status_list_keep_working(app, client, database):
    ref = register(client, "o-a", 1, "高山")
    applications.change_status(database, ref, "已取消", "旧版本的撤回", "staff")  # old meaning
    console = staff_client(app)
    page = console.get(f"/admin/applications/{ref}").get_data(as_text=True)
    assert "已取消" in page and "办理已结束" in page
    assert "已经办结" in Chat(client, "o-a").say(ref)
    other = register(client, "o-b", 2, "高山")
    applications.change_status(database, other, "已通过", "", "staff")  # approved without review
    page = console.get(f"/admin/applications/{other}").get_data(as_text=True)
    assert offered(page) == ["已完成", "已取消"]


# --- the command line ----------------------------------------------------------------------

def test_cli_changes_a_status_notifies_and_refuses_a_wrong_step(tmp_path):
    config = config_for(tmp_path, f'[wechat]\ntoken = "{wx.TOKEN}"\napp_id = "{wx.APP_ID}"\n'
                                  '[[courses]]\nid = "tea"\nname = "茶叶种植加工"\ncapacity = 1\n')
    from bot.settings import load_settings
    app = create_app(load_settings(config))
    client = app.test_client()
    first, second = register(client, "o-0", 0), register(client, "o-1", 1)
    runner = CliRunner()
    base = ["--config", config, "applications", "status"]
    wrong = runner.invoke(cli, base + [first, "已通过"])
    assert wrong.exit_code != 0 and "不能改为“已通过”" in wrong.output and "审核中" in wrong.output
    ok = runner.invoke(cli, base + [first, "审核中"])
    assert ok.exit_code == 0, ok.output
    assert "已通知申请人" in ok.output
    assert any("审核中" in t and first in t for t in inbox(client, "o-0"))
    no_note = runner.invoke(cli, base + [first, "未通过"])
    assert no_note.exit_code != 0 and "请写明原因" in no_note.output
    done = runner.invoke(cli, base + [first, "未通过", "--note", "材料不全"])
    assert done.exit_code == 0 and second in done.output
    assert any("有空位了" in t for t in inbox(client, "o-1"))
    assert runner.invoke(cli, base + ["PX19990101-0001", "审核中"]).exit_code != 0
    database = engine.connect(tmp_path / "bot.db")
    row = applications.get_application(database, first)
    assert row["status"] == "未通过" and row["history"][-1]["actor"] == "cli"
    assert any(e["action"] == "更改申请状态" for e in staff.audit_entries(database))
    database.close()
    app.extensions["bot"].close()
