"""Menu navigation and policy answers, as a subscriber sees them through the webhook."""
from __future__ import annotations

import pytest

from bot.storage import engine, staff

MENU_MARK = "请回复数字选择"


def test_digit_opens_category_and_picks_a_policy(chat):
    chat.say("菜单")
    listing = chat.say("3")
    assert "【五个扶持】" in listing and "1. " in listing and "小额贴息贷款" in listing
    lines = [line for line in listing.splitlines() if line[:1].isdigit()]
    loan_no = next(line.split(".")[0] for line in lines if "贷款" in line)
    answer = chat.say(loan_no)
    assert "5万" in answer and "示例数字" in answer and "申请贷款" in answer
    assert "{" not in answer and "人力资源和社会保障局" in answer


def test_full_width_digit_and_back_navigation(chat):
    chat.say("菜单")
    assert "【五个放宽】" in chat.say("１")
    chat.say("1")
    assert "【五个放宽】" in chat.say("返回")
    assert MENU_MARK in chat.say("返回")


def test_details_show_how_to_apply_and_documents(chat):
    chat.say("2")
    chat.say("2")
    details = chat.say("详情")
    assert "【怎么办理】" in details and "【要带什么】" in details and "【到哪里办】" in details


def test_out_of_range_digit_explains_choices(chat):
    chat.say("菜单")
    chat.say("1")
    reply = chat.say("9")
    assert "没有第9项" in reply and "1 到 5" in reply


def test_contact_entry_uses_configured_details(chat):
    chat.say("菜单")
    reply = chat.say("8")
    assert "0000-12345678" in reply and "地址" in reply


def test_click_event_opens_category(chat):
    assert "【五个鼓励】" in chat.event("CLICK", "MENU_ENCOURAGE")


@pytest.mark.parametrize("question,expected", [
    ("贷款最多能贷几万", "support.loan"),
    ("免费培训在哪里报名学技术", None),
])
def test_policy_question_is_answered_or_suggested(chat, app, question, expected):
    reply = chat.say(question)
    assert reply
    if expected:
        database = engine.connect(app.extensions["bot"].settings.storage.database)
        assert next(database["messages"].rows_where(order_by="id desc"))["topic"] == expected


def test_off_topic_question_gets_menu_and_hotline_and_is_recorded(chat, app):
    reply = chat.say("明天天气怎么样")
    assert "没听懂" in reply and "0000-12345678" in reply and MENU_MARK in reply
    database = engine.connect(app.extensions["bot"].settings.storage.database)
    row = next(database["unanswered"].rows)
    assert row["question"] == "明天天气怎么样" and row["openid"] == chat.openid


def test_did_you_mean_is_answered_with_a_digit(tmp_path):
    from tests.conftest import Chat, create_app, make_settings
    # With the answer threshold out of reach, every match lands in the did-you-mean band.
    app = create_app(make_settings(tmp_path, matcher={"answer_threshold": 100.0,
                                                      "suggest_threshold": 10.0}))
    chat = Chat(app.test_client())
    library = app.extensions["bot"].library
    question = "开饭店要办营业执照吗"
    match = library.match(question)
    assert match.band == "suggest" and len(match.candidates) >= 2
    reply = chat.say(question)
    assert "您是不是想问" in reply
    for i, candidate in enumerate(match.candidates, 1):
        assert f"{i}. {candidate.title}" in reply
    second = match.candidates[1].topic_id
    answer = chat.say("2")
    assert library.answer_text(second)[:20] in answer
    database = engine.connect(app.extensions["bot"].settings.storage.database)
    assert next(database["unanswered"].rows)["band"] == "suggest"
    app.extensions["bot"].close()


def test_api_ask_answer_band(client):
    resp = client.post("/api/ask", json={"q": "创业贷款个人最高能贷多少钱"})
    data = resp.get_json()
    assert resp.status_code == 200
    assert data["band"] == "answer" and data["topic"] == "support.loan"
    assert 0 <= data["score"] <= 100 and "5万" in data["answer"]
    assert data["suggestions"][0]["topic"] == "support.loan"


def test_api_ask_unknown_band_records_nothing(client, app):
    data = client.post("/api/ask", json={"q": "讲个笑话听听"}).get_json()
    assert data["band"] == "unknown" and data["topic"] is None
    database = engine.connect(app.extensions["bot"].settings.storage.database)
    assert database["unanswered"].count == 0 and database["messages"].count == 0


@pytest.mark.parametrize("body", [None, {}, {"q": ""}, {"q": 5}, ["q"]])
def test_api_ask_bad_requests(client, body):
    resp = client.post("/api/ask", json=body) if body is not None else client.post("/api/ask", data="x")
    assert resp.status_code == 400 and "error" in resp.get_json()


def test_api_key_required_when_configured(tmp_path):
    from tests.conftest import create_app, make_settings
    app = create_app(make_settings(tmp_path, api={"key": "k3y"}))
    client = app.test_client()
    assert client.post("/api/ask", json={"q": "贷款"}).status_code == 401
    ok = client.post("/api/ask", json={"q": "贷款"}, headers={"Authorization": "Bearer k3y"})
    assert ok.status_code == 200
    app.extensions["bot"].close()


def test_latest_announcements_from_menu_and_words(chat, app):
    from bot.push import announcements
    database = engine.connect(app.extensions["bot"].settings.storage.database)
    assert "最近没有新通知" in chat.say("最新通知")
    announcements.create_announcement(database, "12月8日茶叶培训开班，欢迎报名", None, "all", "staff")
    announcements.create_announcement(database, "石桥镇专场招聘会", None, "township:石桥镇", "staff")
    chat.say("菜单")
    reply = chat.say("7")
    assert "茶叶培训开班" in reply
    # An announcement for one township's applicants is not shown to everyone.
    assert "招聘会" not in reply
    assert "茶叶培训开班" in chat.event("CLICK", "MENU_NEWS")


def test_yes_after_training_answer_starts_registration(chat):
    chat.say("菜单")
    listing = chat.say("3")
    training_no = next(line.split(".")[0] for line in listing.splitlines()
                       if "培训" in line and line[:1].isdigit())
    answer = chat.say(training_no)
    assert "报名" in answer
    reply = chat.say("好的")
    assert "培训报名" in reply or "课程" in reply


def test_asking_how_to_apply_explains_and_offers_then_yes_starts_the_form(chat):
    # policy-spec: service.apply-loan / -training explain first, then offer the form.
    answer = chat.say("贷款怎么申请")
    assert "小额贴息贷款" in answer and "申请贷款" in answer
    assert "多少贷款" not in answer  # not dropped into the form unasked
    assert "多少贷款" in chat.say("好")
    chat.say("取消")
    chat.say("是")
    answer = chat.say("培训在哪报名")
    assert "免费" in answer and "请选择要报名的培训课程" not in answer
    assert "没有开放报名的培训课程" in chat.say("好的")  # the registration ran (no courses here)


def test_menu_entries_to_apply_start_the_form_at_once(chat):
    chat.say("菜单")
    assert "多少贷款" in chat.say("5")


def test_the_loan_service_picked_from_a_topic_list_is_explained_first(chat):
    chat.say("申请贷款的入口在哪")
    listing = chat.say("返回")  # the service category, numbered
    number = next(line.split(".")[0] for line in listing.splitlines() if "申请小额贴息贷款" in line)
    answer = chat.say(number)
    assert "小额贴息贷款" in answer and "多少贷款" not in answer
    assert "多少贷款" in chat.say("好")


def test_yes_without_an_offer_is_not_a_form(chat):
    chat.say("菜单")
    reply = chat.say("好的")
    assert "课程" not in reply and "贷款申请" not in reply


def test_asking_for_a_person_puts_user_on_staff_waiting_list(chat, app):
    reply = chat.say("转人工")
    assert "人工" in reply and "0000-12345678" in reply
    chat.event("CLICK", "MENU_HUMAN")
    chat.say("我要找个真人工作人员问问我的贷款")  # matched to service.human by the matcher
    database = engine.connect(app.extensions["bot"].settings.storage.database)
    assert [r["openid"] for r in staff.open_handoffs(database)] == [chat.openid]


def test_menu_state_is_read_at_most_once_and_written_only_when_changed(chat, monkeypatch):
    from bot.storage import user_state
    calls = []
    for verb in ("load_state", "save_state"):
        original = getattr(user_state, verb)

        def counted(*args, _verb=verb, _original=original):
            calls.append(_verb)
            return _original(*args)
        monkeypatch.setattr(user_state, verb, counted)

    def say(text):
        calls.clear()
        reply = chat.say(text)
        return reply, calls.count("load_state"), calls.count("save_state")

    assert say("菜单")[1:] == (1, 1)
    assert say("菜单")[1:] == (1, 0)  # the same list again: nothing to write
    listing, *counts = say("3")
    assert "【五个扶持】" in listing and counts == [1, 1]
    loan_no = next(line.split(".")[0] for line in listing.splitlines() if "贷款" in line)
    answer, *counts = say(loan_no)  # topic, offer and list change together: one write
    assert "申请贷款" in answer and counts == [1, 1]
    assert say("详情")[1:] == (1, 0)
    assert "多少贷款" in say("好")[0]
    assert say("三万")[1:] == (0, 0)  # a form answer never touches the menu state


def test_menu_state_stored_by_the_previous_version_still_reads(chat, app):
    from bot.storage import user_state
    database = engine.connect(app.extensions["bot"].settings.storage.database)
    user_state.save_state(database, chat.openid, {  # as handlers wrote the raw dict
        "list": {"kind": "category", "items": ["support.loan", "support.training"],
                 "category": "support"}, "more": ["第二页"]})
    assert "5万" in chat.say("1")
    assert "【五个扶持】" in chat.say("返回")
    assert "没有更多内容了" in chat.say("更多")
