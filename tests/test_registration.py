"""Training registration, loan applications and status queries, as whole conversations
through the signed webhook."""
from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import textwrap
import time

import pytest

from bot.storage import applications, engine, migrations, staff
from bot.validators import id_check_digit
from tests import wx
from tests.conftest import Chat, create_app, make_settings

COURSES = [
    {"id": "tea", "name": "茶叶种植加工", "dates": "12月8日-12月12日", "place": "县职教中心", "capacity": 1},
    {"id": "veg", "name": "高山蔬菜", "dates": "12月15日-12月19日", "place": "青山乡农技站", "capacity": 30},
]
ID = "11010519491231002X"
PHONE = "13812345678"
PX = re.compile(r"PX\d{8}-\d{4}")
DK = re.compile(r"DK\d{8}-\d{4}")
SUMMARY_MARK = "请核对您的"
HOTLINE = "0000-12345678"


def make_id(n: int) -> str:
    first = f"34010219900101{n:03d}"
    return first + id_check_digit(first)


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.t = time.time()

    def __call__(self) -> float:
        return self.t

    def advance(self, minutes: float) -> None:
        self.t += minutes * 60


@pytest.fixture
def settings(tmp_path):
    return make_settings(tmp_path, courses=COURSES)


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def app(settings, clock):
    app = create_app(settings)
    app.extensions["bot"].clock = clock
    yield app
    app.extensions["bot"].close()


def as_person(turns: list[tuple[str, str]], n: int) -> list[tuple[str, str]]:
    """The same conversation by another person: own ID card number."""
    return [(make_id(n) if said in (ID, make_id(999)) else said, expected) for said, expected in turns]


def converse(chat: Chat, turns: list[tuple[str, str]]) -> list[str]:
    """Say each text and check the reply contains the expected piece; returns the replies."""
    replies = []
    for said, expected in turns:
        reply = chat.say(said)
        assert expected in reply, f"after {said!r} expected {expected!r} in:\n{reply}"
        replies.append(reply)
    return replies


TRAINING_TO_SUMMARY = [
    ("我要报名培训", "请选择要报名的培训课程"),
    ("2", "姓名"),
    ("张三", "手机号"),
    (PHONE, "身份证号"),
    (ID, "乡镇"),
    ("石桥镇", "村"),
    ("石门村", "返乡农民工"),
    ("是", SUMMARY_MARK),
]

LOAN_TO_SUMMARY = [
    ("我要申请贷款", "多少贷款"),
    ("三万五", "用来做什么"),
    ("扩建茶厂", "哪个行业"),
    ("茶叶种植", "1. 已经在经营"),
    ("1", "姓名"),
    ("李四", "手机号"),
    ("13912345678", "身份证号"),
    (make_id(999), "乡镇"),
    ("青山乡", "村"),
    ("竹林村", SUMMARY_MARK),
]


# --- whole forms -------------------------------------------------------------------------

def test_training_form_from_start_to_reference_number(chat, app, database):
    replies = converse(chat, TRAINING_TO_SUMMARY)
    summary = replies[-1]
    for piece in ("高山蔬菜", "张三", PHONE, ID, "石桥镇", "石门村", "返乡农民工：是"):
        assert piece in summary
    done = chat.say("确认")
    ref = PX.search(done).group()
    assert "报名成功" in done and "查询进度" in done
    row = applications.get_application(database, ref)
    vault = app.extensions["bot"].vault
    assert row["type"] == "training" and row["status"] == "已提交" and row["course_id"] == "veg"
    assert row["name"] == "张三" and row["township"] == "石桥镇" and row["village"] == "石门村"
    assert row["returning_worker"] == 1 and row["waitlist_position"] is None
    assert vault.decrypt(row["id_enc"]) == ID and vault.decrypt(row["phone_enc"]) == PHONE
    assert row["id_masked"] == "1101**********002X" and row["phone_masked"] == "138****5678"
    assert [h["status"] for h in row["history"]] == ["已提交"]
    today = time.strftime("%Y%m%d", time.gmtime(time.time() + 8 * 3600))
    assert ref == f"PX{today}-0001"
    assert database["dialogues"].count == 0


def test_loan_form_from_start_to_reference_number(chat, app, database):
    summary = converse(chat, LOAN_TO_SUMMARY)[-1]
    assert "贷款金额：35000元" in summary and "已经在经营" in summary and "扩建茶厂" in summary
    done = chat.say("确认")
    ref = DK.search(done).group()
    row = applications.get_application(database, ref)
    assert row["type"] == "loan" and row["amount_yuan"] == 35000 and row["stage"] == "running"
    assert row["purpose"] == "扩建茶厂" and row["industry"] == "茶叶种植" and row["name"] == "李四"


def test_references_count_up_per_day_and_type(app, client):
    refs = []
    for i in range(3):
        chat = Chat(client, f"o-seq-{i}")
        converse(chat, as_person(TRAINING_TO_SUMMARY, i))
        refs.append(PX.search(chat.say("确认")).group())
    loan = Chat(client, "o-seq-loan")
    converse(loan, LOAN_TO_SUMMARY)
    dk = DK.search(loan.say("确认")).group()
    assert [r[-4:] for r in refs] == ["0001", "0002", "0003"] and dk.endswith("-0001")


@pytest.mark.parametrize("typed,shown", [
    ("5万", "5万元"), ("五万", "5万元"), ("50000元", "5万元"), ("5w", "5万元"), ("３万", "3万元"),
    ("2万5", "25000元"),
])
def test_loan_amount_in_words_or_digits(chat, typed, shown):
    converse(chat, [("申请贷款", "多少贷款"), (typed, "用来做什么")])
    converse(chat, [("买饲料", "行业"), ("养殖", "1. 已经在经营"), ("准备开", "姓名")])
    chat.say("王五")
    chat.say(PHONE)
    chat.say(ID)
    chat.say("城关镇")
    assert f"贷款金额：{shown}" in chat.say("东门社区")


def test_main_menu_digits_start_forms_and_show_status(chat):
    chat.say("菜单")
    assert "请选择要报名的培训课程" in chat.say("4")
    assert "张三" not in chat.say("菜单")
    assert "接着填培训报名" in chat.say("4")  # the paused form resumes
    chat.say("菜单")
    assert "多少贷款" in chat.say("5")
    chat.say("菜单")
    status = chat.say("6")
    assert "还没有提交过申请" in status and "继续报名" in status and "继续申请" in status


def test_menu_clicks_start_forms_and_show_status(chat):
    assert "请选择要报名的培训课程" in chat.event("CLICK", "MENU_TRAINING")
    assert "您还没有提交过申请" in chat.event("CLICK", "MENU_STATUS")
    loan = chat.event("CLICK", "MENU_LOAN")
    assert "多少贷款" in loan and "培训报名已暂停" in loan


# --- validation --------------------------------------------------------------------------

# (answers that reach the question, bad answer, expected hint, good answer, next question)
ERRORS = [
    (2, "张", "姓名要2到20个字", "张三", "手机号"),
    (2, "张3", "汉字或字母", "张三", "手机号"),
    (2, "好的", "这里请填写您的姓名", "张三", "手机号"),
    (3, "1381234567", "应该是11位数字", PHONE, "身份证号"),
    (3, "23812345678", "以13到19开头", PHONE, "身份证号"),
    (3, "138abcd5678", "只能是数字", PHONE, "身份证号"),
    (4, "110105194912310021", "身份证号最后一位校验不对，请再核对一下", ID, "乡镇"),
    (4, "11010519491331" + "0025", "出生日期不对", ID, "乡镇"),
    (4, "1101051949", "应该是18位", ID, "乡镇"),
    (5, "北京市", "没找到这个乡镇", "石桥镇", "村"),
    (6, "村", "村（社区）的名字", "石门村", "返乡农民工"),
    (6, "确认", "村（社区）的名字", "石门村", "返乡农民工"),
    (7, "也许吧", "请回复“是”或“否”", "否", SUMMARY_MARK),
    (1, "9", "没找到这门课程", "2", "姓名"),
]


@pytest.mark.parametrize("reached,bad,hint,good,after", ERRORS)
def test_each_wrong_answer_gets_its_reason_and_the_same_question(chat, reached, bad, hint, good, after):
    converse(chat, TRAINING_TO_SUMMARY[:reached])
    reply = chat.say(bad)
    assert hint in reply
    assert HOTLINE not in reply  # help is offered only after three misses
    pending = chat.say("报名培训").split("\n\n", 1)[1]  # the bot restating its open question
    assert reply.endswith(pending)
    replies = [chat.say(good)]
    assert after in replies[0]
    replies += [chat.say(said) for said, _ in TRAINING_TO_SUMMARY[reached + 1:]]
    # Everything answered before the mistake is kept.
    assert SUMMARY_MARK in replies[-1]
    assert all(piece in replies[-1] for piece in ("高山蔬菜", "张三", PHONE, ID, "石桥镇", "石门村"))


@pytest.mark.parametrize("typed,hint", [
    ("10万", "最多可以申请5万元"), ("很多钱", "没看懂这个金额"), ("零", "金额要大于0"),
])
def test_loan_amount_refusals(chat, typed, hint):
    chat.say("申请贷款")
    reply = chat.say(typed)
    assert hint in reply and "多少贷款" in reply
    assert "用来做什么" in chat.say("4万")


def test_full_width_digits_spaces_and_dashes_are_accepted(chat):
    converse(chat, TRAINING_TO_SUMMARY[:3])
    assert "身份证号" in chat.say("１３８-１２３４ ５６７８")
    assert "乡镇" in chat.say("110105 19491231 002x")
    chat.say("石桥")
    chat.say("石门村")
    summary = chat.say("否")
    assert PHONE in summary and ID in summary


def test_voice_answers_with_a_full_stop_are_accepted(chat):
    converse(chat, TRAINING_TO_SUMMARY[:2])
    for said, expected in (("张三。", "手机号"), (PHONE + "。", "身份证号"), (ID + "。", "乡镇")):
        resp = chat.post(wx.message_xml(chat.openid, "voice", MediaId="m", Format="amr", Recognition=said))
        assert expected in wx.reply_content(resp.get_data(as_text=True))


def test_unsure_township_is_confirmed_first(chat):
    converse(chat, TRAINING_TO_SUMMARY[:5])
    assert "您说的是“石桥镇”吗" in chat.say("石乔")
    assert "乡镇" in chat.say("不是")
    assert "您说的是“石桥镇”吗" in chat.say("石乔")
    assert "哪个村" in chat.say("是")
    chat.say("石门村")
    assert "乡镇：石桥镇" in chat.say("是")


def test_three_misses_at_one_question_offer_the_hotline(chat):
    converse(chat, TRAINING_TO_SUMMARY[:3])
    assert HOTLINE not in chat.say("123")
    assert HOTLINE not in chat.say("456")
    third = chat.say("789")
    assert HOTLINE in third and "转人工" in third and third.endswith("请输入您的手机号（11位数字）。")
    assert "身份证号" in chat.say(PHONE)
    assert HOTLINE not in chat.say("12")  # the count starts again at the next question


def test_asking_for_a_person_mid_form_reaches_staff_and_the_form_waits(chat, database):
    converse(chat, TRAINING_TO_SUMMARY[:3])
    human = chat.say("转人工")
    assert "人工客服" in human and "培训报名已暂停" in human and "继续报名" in human
    assert [r["openid"] for r in staff.open_handoffs(database)] == [chat.openid]
    assert "身份证号" not in chat.say(PHONE)  # paused: the form leaves text alone
    resumed = chat.say("继续报名")
    assert "之前填的都还在" in resumed and resumed.endswith("请输入您的手机号（11位数字）。")
    for said, _ in TRAINING_TO_SUMMARY[3:]:
        summary = chat.say(said)
    assert "张三" in summary and "高山蔬菜" in summary


@pytest.mark.parametrize("asked", ["我想找个工作人员问问", "能不能让人工客服跟我说"])
def test_asking_for_a_person_in_ones_own_words_mid_form_is_a_hand_off_too(chat, database, asked):
    converse(chat, TRAINING_TO_SUMMARY[:3])
    human = chat.say(asked)
    assert "人工客服" in human and "培训报名已暂停" in human and "继续报名" in human
    assert [r["openid"] for r in staff.open_handoffs(database)] == [chat.openid]
    resumed = chat.say("继续报名")
    assert resumed.endswith("请输入您的手机号（11位数字）。")


# --- dialogue control --------------------------------------------------------------------

def test_cancel_asks_first_then_ends_the_form(chat, database):
    converse(chat, TRAINING_TO_SUMMARY[:3])
    assert "确定要取消培训报名吗" in chat.say("取消")
    assert "手机号" in chat.say("否")
    assert "确定要取消" in chat.say("取消")
    assert "已取消培训报名" in chat.say("是")
    assert database["dialogues"].count == 0 and database["applications"].count == 0
    assert "手机号" not in chat.say(PHONE)  # no form takes the text any more


def test_back_goes_to_the_previous_question(chat):
    converse(chat, TRAINING_TO_SUMMARY[:3])
    assert "姓名" in chat.say("上一步")
    assert "课程" in chat.say("上一步")
    assert "已经是第一个问题" in chat.say("上一步")
    converse(chat, [("1", "姓名"), ("赵六", "手机号")])
    for said, _ in TRAINING_TO_SUMMARY[3:]:
        summary = chat.say(said)
    assert "赵六" in summary and "茶叶种植加工" in summary


@pytest.mark.parametrize("ask_for_edit", ["修改手机号", "改电话", "3"])
def test_one_answer_is_changed_from_the_summary(chat, ask_for_edit):
    converse(chat, TRAINING_TO_SUMMARY)
    assert "手机号（11位数字）" in chat.say(ask_for_edit)
    summary = chat.say("139 0000 1111")
    assert SUMMARY_MARK in summary and "13900001111" in summary and PHONE not in summary
    assert "张三" in summary and ID in summary


def test_unclear_reply_at_summary_repeats_how_to_confirm(chat):
    converse(chat, TRAINING_TO_SUMMARY)
    reply = chat.say("嗯嗯嗯嗯嗯嗯嗯嗯")
    assert "请回复“确认”提交" in reply and SUMMARY_MARK in reply


def test_policy_question_mid_form_is_answered_then_the_form_resumes(chat, database):
    converse(chat, TRAINING_TO_SUMMARY[:3])
    reply = chat.say("贷款利息怎么算？")
    assert "贴息贷款" in reply and reply.endswith("接着填培训报名：\n请输入您的手机号（11位数字）。")
    assert "身份证号" in chat.say(PHONE)
    assert database["unanswered"].count == 0  # form answers are not logged as questions


def test_policy_question_at_a_free_text_question_is_not_stored(chat):
    converse(chat, LOAN_TO_SUMMARY[:2])
    reply = chat.say("利息是多少？")
    assert "贴息贷款" in reply and reply.endswith("贷款主要用来做什么？（例如：扩建茶厂、买种苗和饲料）")
    assert "哪个行业" in chat.say("买什么设备还没定，先扩大养殖")  # not every 什么 is a question


def test_menu_pauses_and_continue_resumes(chat):
    converse(chat, TRAINING_TO_SUMMARY[:3])
    menu = chat.say("菜单")
    assert "请回复数字选择" in menu and "培训报名已暂停" in menu and "继续报名" in menu
    assert "身份证号" not in chat.say(PHONE)  # paused: the form leaves text alone
    resumed = chat.say("继续报名")
    assert "接着填培训报名" in resumed and "手机号" in resumed
    for said, _ in TRAINING_TO_SUMMARY[3:]:
        summary = chat.say(said)
    assert "张三" in summary and "高山蔬菜" in summary


def test_starting_the_other_form_pauses_the_first(chat):
    converse(chat, TRAINING_TO_SUMMARY[:3])
    reply = chat.say("申请贷款")
    assert "培训报名已暂停" in reply and "多少贷款" in reply
    status = chat.say("查询进度")
    assert "接着填贷款申请" in status
    assert "手机号" in chat.say("继续报名")
    assert "贷款申请" in chat.say("查询进度") and "继续申请" in chat.say("查询进度")


def test_questions_mid_form_keep_it_alive_to_the_minute(chat, clock, database):
    converse(chat, TRAINING_TO_SUMMARY[:3])
    touched = database.conn.execute("SELECT updated_at FROM dialogues").fetchone()[0]
    clock.advance(0.5)
    chat.say("贷款利息怎么算？")
    # Within a minute of the last save, a question changes nothing stored ...
    assert database.conn.execute("SELECT updated_at FROM dialogues").fetchone()[0] == touched
    clock.advance(20)
    chat.say("贷款利息怎么算？")
    # ... later it counts as activity, so the form is still open 29 minutes after that.
    clock.advance(29)
    assert "身份证号" in chat.say(PHONE)


def test_idle_form_expires_with_a_note_and_resumes_within_a_day(chat, clock):
    converse(chat, TRAINING_TO_SUMMARY[:3])
    clock.advance(31)
    reply = chat.say(PHONE)
    assert "超过30分钟没有回复" in reply and "继续报名" in reply and "“手机号”" in reply
    assert "超过30分钟" not in chat.say("你好")  # said once
    clock.advance(60 * 20)
    resumed = chat.say("继续报名")
    assert "之前填的都还在" in resumed and "手机号" in resumed
    assert "身份证号" in chat.say(PHONE)


def test_numbers_sent_after_expiry_are_not_stored_in_plain_text(chat, clock, settings):
    converse(chat, TRAINING_TO_SUMMARY[:4])
    clock.advance(45)
    assert "已经暂停" in chat.say(ID)  # goes to the matcher, which keeps unanswered questions
    database = engine.connect(settings.storage.database)
    unanswered = str(list(database["unanswered"].rows))
    assert ID not in unanswered and "1101" in unanswered
    database.close()


def test_form_left_longer_than_a_day_starts_over(chat, clock, database):
    converse(chat, TRAINING_TO_SUMMARY[:3])
    clock.advance(60 * 25)
    assert "已经过期" in chat.say("你好")
    assert "没有可以接着填" in chat.say("继续报名")
    assert database["dialogues"].count == 0
    assert "请选择要报名的培训课程" in chat.say("报名培训")


def test_a_form_too_old_to_resume_is_replaced_by_a_new_start(chat, clock, database):
    converse(chat, TRAINING_TO_SUMMARY[:3])
    clock.advance(60 * 25)
    # The first message after a day starts the form again; the old answers are gone.
    assert "请选择要报名的培训课程" in chat.say("报名培训")
    assert "姓名" in chat.say("2")
    assert database["dialogues"].count == 1


def test_a_restart_mid_form_carries_on(settings):
    first = create_app(settings)
    converse(Chat(first.test_client()), TRAINING_TO_SUMMARY[:4])
    first.extensions["bot"].close()
    second = create_app(settings)  # a new process on the same database file
    chat = Chat(second.test_client())
    for said, expected in TRAINING_TO_SUMMARY[4:]:
        assert expected in chat.say(said)
    assert PX.search(chat.say("确认"))
    second.extensions["bot"].close()


# --- duplicates, waiting list, identity reuse -----------------------------------------

def test_second_registration_for_the_same_course_shows_the_first(chat, database):
    converse(chat, TRAINING_TO_SUMMARY)
    ref = PX.search(chat.say("确认")).group()
    chat.say("报名培训")
    reply = chat.say("2")
    assert "已经报名了“高山蔬菜”" in reply and ref in reply and "已提交" in reply
    assert "还用上次的信息吗" in chat.say("1")  # another course is fine
    assert database["applications"].count == 1


def test_second_open_loan_shows_the_first(chat, database):
    converse(chat, LOAN_TO_SUMMARY)
    ref = DK.search(chat.say("确认")).group()
    reply = chat.say("申请贷款")
    assert "已经有一份贷款申请正在办理" in reply and ref in reply
    applications.change_status(database, ref, "未通过", "材料不全", "staff")
    assert "多少贷款" in chat.say("申请贷款")  # a closed one no longer blocks


def test_duplicate_submitted_elsewhere_meanwhile_is_not_stored_twice(chat, database):
    converse(chat, TRAINING_TO_SUMMARY)
    # The same user's other device (another worker) submits the same course first.
    other = applications.add_application(database, {"type": "training", "openid": chat.openid, "name": "张三",
                                          "course_id": "veg", "course_name": "高山蔬菜"}, "PX", time.time())
    reply = chat.say("确认")
    assert "不用重复提交" in reply and other.application["ref"] in reply
    assert database["applications"].count == 1 and database["dialogues"].count == 0


def test_same_id_number_from_another_account_is_not_stored_twice(client, database):
    first, second = Chat(client, "o-me"), Chat(client, "o-my-sons-phone")
    converse(first, LOAN_TO_SUMMARY)
    ref = DK.search(first.say("确认")).group()
    converse(second, LOAN_TO_SUMMARY)
    reply = second.say("确认")
    assert "这个身份证号已经有一份贷款申请正在办理" in reply and ref not in reply and HOTLINE in reply
    assert database["applications"].count == 1
    converse(second, TRAINING_TO_SUMMARY)
    assert PX.search(second.say("确认"))  # a different kind of application is fine


def test_full_course_puts_applicant_on_waiting_list(client):
    chats = [Chat(client, f"o-wait-{i}") for i in range(3)]
    for chat in chats:
        turns = as_person(TRAINING_TO_SUMMARY, chats.index(chat))
        turns[1] = ("茶叶", "姓名")  # course 1 has one seat
        converse(chat, turns)
    assert "候补" not in chats[0].say("确认")
    assert "候补名单第1位" in chats[1].say("确认")
    assert "候补名单第2位" in chats[2].say("确认")
    assert "已满，可报名候补" in Chat(client, "o-late").say("报名培训")
    assert "候补第1位" in chats[1].say("查询进度")


def test_identity_is_offered_for_reuse_masked(chat):
    converse(chat, TRAINING_TO_SUMMARY)
    chat.say("确认")
    converse(chat, LOAN_TO_SUMMARY[:4])
    offer = chat.say("2")
    assert "还用上次的信息吗" in offer and "138****5678" in offer and "1101**********002X" in offer
    assert PHONE not in offer and ID not in offer
    summary = chat.say("是")
    assert SUMMARY_MARK in summary and "张三" in summary and "准备开办" in summary
    assert DK.search(chat.say("确认"))
    chat.say("报名培训")
    chat.say("1")
    assert "姓名" in chat.say("否")  # declining asks the questions again


# --- status query and staff verbs ------------------------------------------------------

def test_status_query_shows_each_application_with_staff_note(chat, database):
    assert "还没有提交过申请" in chat.say("查询进度")
    converse(chat, TRAINING_TO_SUMMARY)
    px = PX.search(chat.say("确认")).group()
    converse(chat, LOAN_TO_SUMMARY[:4] + [("1", "还用上次的信息吗"), ("是", SUMMARY_MARK)])
    dk = DK.search(chat.say("确认")).group()
    changed = applications.change_status(database, px, "审核中", "请带身份证原件到窗口", "staff-wang")
    assert changed == chat.openid
    status = chat.say("查询进度")
    assert px in status and dk in status and "状态：审核中" in status and "请带身份证原件到窗口" in status
    assert "高山蔬菜" in status and "35000元" in status and "状态：已提交" in status
    assert PHONE not in status and ID not in status
    assert px in chat.say("我的申请") and px in chat.say("进度")


def test_staff_verbs_filter_get_and_change(client, database):
    for i, (course, town) in enumerate([("1", "石桥镇"), ("2", "青山乡"), ("2", "石桥镇")]):
        chat = Chat(client, f"o-staff-{i}")
        turns = as_person(TRAINING_TO_SUMMARY, i)
        turns[1], turns[2], turns[5] = (course, "姓名"), (f"张{'一二三'[i]}", "手机号"), (town, "村")
        converse(chat, turns)
        chat.say("确认")
    loan = Chat(client, "o-staff-loan")
    converse(loan, LOAN_TO_SUMMARY)
    loan.say("确认")
    assert len(applications.list_applications(database)) == 4
    assert len(applications.list_applications(database, type_="training")) == 3
    assert len(applications.list_applications(database, course_id="veg")) == 2
    assert len(applications.list_applications(database, township="石桥镇")) == 2
    assert [r["name"] for r in applications.list_applications(database, search="张二")] == ["张二"]
    ref = applications.list_applications(database, type_="loan")[0]["ref"]
    assert [r["ref"] for r in applications.list_applications(database, search=ref)] == [ref]
    now = time.time()
    assert len(applications.list_applications(database, since=now - 600, until=now + 600)) == 4
    assert applications.list_applications(database, until=now - 600) == []
    assert applications.change_status(database, ref, "审核中", "", "staff-li") == "o-staff-loan"
    assert applications.change_status(database, ref, "已通过", "下周放款", "staff-li") == "o-staff-loan"
    assert len(applications.list_applications(database, status="已通过")) == 1
    one = applications.get_application(database, ref)
    assert one["staff_note"] == "下周放款"
    assert [(h["status"], h["actor"]) for h in one["history"]] == [
        ("已提交", "applicant"), ("审核中", "staff-li"), ("已通过", "staff-li")]
    assert applications.change_status(database, "DK19990101-0001", "已通过", "", "x") is None
    with pytest.raises(ValueError):
        applications.change_status(database, ref, "批准", "", "x")
    assert applications.get_application(database, "nope") is None


# --- many users at once ------------------------------------------------------------------

def test_twenty_users_in_four_processes_get_unique_references(tmp_path):
    script = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {os.getcwd()!r})
        import itertools
        from pathlib import Path
        from bot import create_app
        from tests import wx
        from tests.conftest import Chat, make_settings
        from tests.test_registration import COURSES, LOAN_TO_SUMMARY, TRAINING_TO_SUMMARY, make_id
        worker = int(sys.argv[2])
        wx._ids = itertools.count(20_000_000_000 + worker * 1_000_000)  # MsgIds unique across processes
        app = create_app(make_settings(Path({str(tmp_path)!r}), courses=COURSES))
        client = app.test_client()
        chats = [Chat(client, f"o-{{worker}}-{{i}}") for i in range(5)]
        start = float(sys.argv[1])
        while time.time() < start:
            time.sleep(0.005)
        # Interleave the five users' turns so forms are open side by side.
        scripts = []
        for i, chat in enumerate(chats):
            turns = list(LOAN_TO_SUMMARY if i % 2 else TRAINING_TO_SUMMARY)
            n = worker * 5 + i
            turns = [(make_id(n) if t in ("11010519491231002X", make_id(999)) else
                      f"1380000{{n:04d}}" if t in ("13812345678", "13912345678") else t, e)
                     for t, e in turns]
            scripts.append(turns + [("确认", "编号")])
        for step in range(max(len(s) for s in scripts)):
            for chat, turns in zip(chats, scripts):
                if step < len(turns):
                    said, expected = turns[step]
                    reply = chat.say(said)
                    assert expected in reply, (said, reply)
                    if said == "确认":
                        print(reply.split("编号是：")[1].split()[0])
        app.extensions["bot"].close()
    """)
    migrations.migrate(tmp_path / "bot.db")
    start = str(time.time() + 3.0)
    procs = [subprocess.Popen([sys.executable, "-c", script, start, str(w)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for w in range(4)]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err[-2000:] for _, err in outputs]
    printed = [ref for out, _ in outputs for ref in out.split()]
    assert len(printed) == 20 and len(set(printed)) == 20
    database = engine.connect(tmp_path / "bot.db")
    stored = [r["ref"] for r in database["applications"].rows]
    assert sorted(stored) == sorted(printed)
    assert sorted(int(r[-4:]) for r in stored if r.startswith("PX")) == list(range(1, 13))
    assert sorted(int(r[-4:]) for r in stored if r.startswith("DK")) == list(range(1, 9))


# --- privacy -----------------------------------------------------------------------------

FULL_NUMBER = re.compile(r"(?<!\d)(1[3-9]\d{9}|\d{17}[\dXx])(?!\d)")


def test_numbers_appear_only_in_the_summary_never_in_logs_or_the_database_file(
        chat, settings, caplog, capfd):
    caplog.set_level(logging.DEBUG)
    said = ["我要报名培训", "2", "张三", "1381234567", PHONE, "110105194912310021", ID, "石乔", "是",
            "石门村", "是", "修改手机号", "13900001111", "上一步", "13900001111", "是", "确认",
            "查询进度", "申请贷款", "5万", "贷款利息多少", "买茶苗", "茶叶", "2", "是", "确认",
            "查询进度"]
    replies = [(text, chat.say(text)) for text in said]
    leaking = [(t, r) for t, r in replies if FULL_NUMBER.search(r) and SUMMARY_MARK not in r]
    assert leaking == []
    assert any(FULL_NUMBER.search(r) for _, r in replies)  # the summaries did show them
    assert DK.search(replies[-2][1])
    logs = caplog.text + capfd.readouterr().err
    for number in (PHONE, ID, "13900001111", "110105194912310021", "1381234567"):
        assert number not in logs
    database = engine.connect(settings.storage.database)
    database.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    database.close()
    for path in settings.storage.database.parent.glob("bot.db*"):
        data = path.read_bytes()
        for number in (ID, PHONE, "13900001111"):
            assert number.encode() not in data, (path.name, number)


# --- a crashing handler ----------------------------------------------------------------

def test_a_handler_that_crashes_after_writing_leaves_nothing_half_done(app, chat, database, caplog):
    from handlers import registration, services

    def start_then_crash(inbound, ctx):
        registration.start_loan(inbound, ctx)  # writes the dialogue row
        services.hand_to_staff(inbound, ctx)   # writes a hand-off and pauses the form
        raise RuntimeError("a bug after the writes")

    app.extensions["bot"].router.routes.insert(0, (lambda m: m.text == "崩溃", start_then_crash))
    reply = chat.say("崩溃")
    assert "系统刚才出了点问题" in reply and HOTLINE in reply
    assert "a bug after the writes" in caplog.text
    assert database["dialogues"].count == 0 and staff.open_handoffs(database) == []
    logged = database.conn.execute("SELECT content, reply FROM messages").fetchall()
    assert logged == [("崩溃", reply)]
    assert "多少贷款" in chat.say("申请贷款")  # nothing left over: the form starts afresh


# --- answers said as sentences, typed or spoken ------------------------------------------

SAID_AS_SENTENCES = [
    ("我要报名培训", "请选择要报名的培训课程"),
    ("养殖那个", "姓名"),
    ("第三个", "这里请填写您的姓名"),
    ("我叫王秀英", "手机号"),
    ("我的手机是1390000111", "应该是11位数字"),
    ("一三九零零零零一一一一", "身份证号"),
    ("我的身份证号码是110105194912310021", "身份证号最后一位校验不对"),
    (f"身份证号码是{ID}", "乡镇"),
    ("我是城关镇东门村的", "返乡农民工"),
    ("是的俺在外面打了十年工", SUMMARY_MARK),
]


def test_answers_said_as_sentences_fill_the_form(tmp_path):
    courses = COURSES + [{"id": "farm", "name": "生态养殖", "capacity": 30}]
    app = create_app(make_settings(tmp_path, courses=courses))
    chat = Chat(app.test_client())
    replies = converse(chat, SAID_AS_SENTENCES)
    asked_again = {2: "请告诉我您的姓名（例如：张三）。", 4: "请输入您的手机号（11位数字）。",
                   6: "请输入您的身份证号（18位，最后一位可能是X）。"}
    for turn, question in asked_again.items():  # the hint and the same question, no policy
        assert replies[turn].endswith("。\n\n" + question) and "——" not in replies[turn]
    summary = replies[-1]
    for piece in ("课程：生态养殖", "姓名：王秀英", "手机号：13900001111", f"身份证号：{ID}",
                  "乡镇：城关镇", "村（社区）：东门村", "返乡农民工：是"):
        assert piece in summary
    assert PX.search(chat.say("确认"))
    app.extensions["bot"].close()


@pytest.mark.parametrize("spoken", ["幺三九 零零零零 幺幺幺幺", "我的手机号是一三九零零零零一一一一。",
                                    "手机13900001111"])
def test_phone_numbers_read_out_or_inside_a_sentence(chat, spoken):
    converse(chat, TRAINING_TO_SUMMARY[:3])
    assert "身份证号" in chat.say(spoken)
    for said, _ in TRAINING_TO_SUMMARY[4:]:
        summary = chat.say(said)
    assert "手机号：13900001111" in summary and "张三" in summary


def test_zero_at_the_amount_question_is_a_wrong_amount_not_the_menu(chat):
    converse(chat, LOAN_TO_SUMMARY[:1])
    reply = chat.say("0")
    assert "金额要大于0" in reply and reply.endswith("（例如：5万、三万五、30000元）")
    assert "请回复数字选择" not in reply and "已暂停" not in reply
    assert "用来做什么" in chat.say("3万")
    assert "请回复数字选择" in chat.say("菜单")  # the word still opens the menu


def test_an_industry_picked_by_part_of_an_example(chat):
    converse(chat, LOAN_TO_SUMMARY[:3])
    assert "1. 已经在经营" in chat.say("养殖那个")
    for said, _ in LOAN_TO_SUMMARY[4:]:
        summary = chat.say(said)
    assert "行业：生态养殖" in summary


@pytest.mark.parametrize("said,hint", [
    ("不是，我一直在家种地", SUMMARY_MARK), ("是不是都能报", "请回复“是”或“否”"),
])
def test_returning_worker_question_reads_how_the_answer_starts(chat, said, hint):
    converse(chat, TRAINING_TO_SUMMARY[:7])
    reply = chat.say(said)
    assert hint in reply
    if hint == SUMMARY_MARK:
        assert "返乡农民工：否" in reply
