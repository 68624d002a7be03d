"""Questions outside the policies: referrals, small talk, vague questions, chat pinyin.

Tested the way people meet them: through /api/ask and the signed webhook.
"""
from __future__ import annotations

import tomllib

import pytest
from click.testing import CliRunner

from bot.cli import cli
from bot.storage import engine, messages
from tests.conftest import ROOT, Chat, create_app, make_settings

CONFIG = tomllib.loads((ROOT / "config.toml").read_text(encoding="utf-8"))
OFFICES = CONFIG["county"]["offices"]


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ask")
    app = create_app(make_settings(tmp, county={"hotline": "0000-12345678", "offices": OFFICES}))
    app.config["TESTING"] = True
    yield app
    app.extensions["bot"].close()


@pytest.fixture
def client(app):
    return app.test_client()


def ask(client, question: str) -> dict:
    resp = client.post("/api/ask", json={"q": question})
    assert resp.status_code == 200
    return resp.get_json()


def unanswered(app) -> list[str]:
    database = engine.connect(app.extensions["bot"].settings.storage.database)
    return [row["question"] for row in messages.open_unanswered(database)]


def office_named(word: str) -> dict:
    return next(o for o in OFFICES if word in o["name"])


# Questions of other offices' business, in our own words, and a word of the right office.
REFERRALS = [
    ("开了个体户每个月怎么报税", "税务"),
    ("卖茶叶开发票要交多少税率", "税务"),
    ("农村医保今年交多少钱", "医疗保障"),
    ("合作医疗住院了回来怎么报销", "医疗保障"),
    ("养老保险断了几年还能补交吗", "社保"),
    ("失业金去哪里领", "社保"),
    ("家里老人能办低保吗", "民政"),
    ("种粮补贴什么时候打到卡上", "农业"),
    ("买房贷款利率现在多少", "银行"),
    ("事业单位的人怎么考公务员", "人事"),
    ("孩子户口迁到县城要什么材料", "派出所"),
    ("身份证丢了在哪补办", "派出所"),
    ("考事业单位要什么条件", "人事"),
    ("办理身份证要多久", "派出所"),
]


@pytest.mark.parametrize("question, office", REFERRALS)
def test_other_offices_business_gets_that_office_and_phone(client, question, office):
    found = ask(client, question)
    assert found["topic"] is None
    assert found["band"] == "referral"
    assert office in found["office"]["name"]
    assert found["office"]["phone"] == office_named(office)["phone"]
    assert office_named(office)["phone"] in found["answer"]
    assert "创业" in found["answer"]  # entrepreneurship questions can go on here


def test_referral_through_the_webhook_is_not_queued_for_staff(app, client):
    chat = Chat(client, "o-referral")
    reply = chat.say("农村医保今年交多少钱")
    assert office_named("医疗保障")["phone"] in reply
    assert "没听懂" not in reply
    assert "农村医保今年交多少钱" not in unanswered(app)


@pytest.mark.parametrize("question", [
    "国家征地一亩地赔多少钱", "事业编制怎么转成公务员", "明天下不下雨", "讲个笑话",
    "4050补贴怎么领", "买车有没有补贴",
])
def test_questions_no_topic_covers_get_no_policy_answer(client, question):
    found = ask(client, question)
    assert found["topic"] is None
    assert found["band"] != "answer"


@pytest.mark.parametrize("message", ["你好", "在吗", "谢谢", "好的", "hi", "👍", "[微笑]", "您好！",
                                     "谢谢啦"])
def test_small_talk_gets_a_friendly_line_not_i_dont_know(app, client, message):
    chat = Chat(client, "o-small-talk")
    reply = chat.say(message)
    assert "没听懂" not in reply
    assert "菜单" in reply
    assert len(reply) < 80
    assert message not in unanswered(app)


@pytest.mark.parametrize("question", ["有啥补贴", "政府有什么优惠政策", "我想创业 啥都不懂"])
def test_vague_questions_list_the_money_and_help_with_numbers(client, question):
    found = ask(client, question)
    assert found["topic"] is None
    listed = {s["topic"] for s in found["suggestions"]}
    assert {"support.loan", "support.startup-subsidy", "support.tax", "support.training"} <= listed
    assert "1." in found["answer"] and "4." in found["answer"]


def test_picking_a_number_from_the_overview_answers_that_help(client):
    chat = Chat(client, "o-vague")
    listing = chat.say("有啥补贴")
    line = next(line for line in listing.splitlines() if "创业补贴" in line)
    reply = chat.say(line.split(".")[0])
    assert "5000" in reply


@pytest.mark.parametrize("question, topics", [
    ("dk zm sq", {"support.loan", "service.apply-loan"}),
    ("chuangyebutie ds", {"support.startup-subsidy"}),
    ("peixun yq sm", {"support.training", "service.apply-training"}),
])
def test_chat_pinyin_and_abbreviations_are_understood(client, question, topics):
    assert ask(client, question)["topic"] in topics


@pytest.mark.parametrize("question, topic", [
    ("贷款到期还不上怎么办", "support.loan"),
    ("贷的款能提前还吗", "support.loan"),
    ("开业以后能领一次性补贴吗", "support.startup-subsidy"),
    ("租门面的房租政府给补吗", "support.startup-subsidy"),
    ("在自己家里开店能办执照吗", "relax.premises"),
    ("开个小吃店要啥条件", "relax.registration"),
    ("草根出身能创业吗", "encourage.private-owners"),
])
def test_new_coverage_is_answered(client, question, topic):
    assert ask(client, question)["topic"] == topic


# Each scores high on some topic's words, but its main words are about something else:
# another town's talent market, a club, a second topic's subject (用地 is support.land's).
@pytest.mark.parametrize("question, band", [
    ("隔壁市的人才市场几点开门", "suggest"),
    ("成立一个钓鱼协会要什么手续", "unknown"),
    ("家庭农场要建大棚用地怎么批", "suggest"),
])
def test_a_topic_that_does_not_explain_the_question_does_not_answer_it(client, question, band):
    found = ask(client, question)
    assert found["topic"] is None
    assert found["band"] == band


def test_the_candidate_that_explains_the_whole_question_answers(client):
    # The application form knows 贷款 and 贴息 but says nothing about returning home.
    assert ask(client, "返乡贷款有没有贴息")["topic"] == "support.loan"


def test_unexplained_question_is_listed_for_staff_with_choices(app, client):
    chat = Chat(client, "o-unexplained")
    reply = chat.say("家庭农场要建大棚用地怎么批")
    assert "您是不是想问" in reply and "用地" in reply
    assert "家庭农场要建大棚用地怎么批" in unanswered(app)


def test_ask_command_shows_the_referral_office(tmp_path):
    result = CliRunner().invoke(cli, ["--config", str(ROOT / "config.toml"), "ask", "个体户怎么报税"])
    assert result.exit_code == 0, result.output
    assert "referral" in result.output.splitlines()[0]
    assert "税务" in result.output


def test_eval_reports_none_answered_and_referrals_in_the_first_lines(tmp_path):
    tsv = tmp_path / "q.tsv"
    tsv.write_text("question\ttopic\tstyle\talt\toffice\tkind\n"
                   "贷款到期还不上怎么办\tsupport.loan\tcolloquial\t\t\tA\n"
                   "个体户怎么报税\tnone\tshort\t\t税务\tC\n"
                   "农村医保今年交多少钱\tnone\tshort\t\t医疗保障\tC\n", encoding="utf-8")
    result = CliRunner().invoke(cli, ["--config", str(ROOT / "config.toml"), "eval", str(tsv)])
    assert result.exit_code == 0, result.output
    first = result.output.splitlines()[:3]
    assert first[0].startswith("top-1 accuracy: 100.0% (3/3)")
    assert first[1].startswith("out-of-scope answered with a policy: 0.0% (0/2)")
    assert first[2].startswith("referred to the right office: 100.0% (2/2)")
    assert "per topic:" in result.output


def test_policies_check_wants_a_phone_for_every_office(tmp_path):
    config = (ROOT / "config.toml").read_text(encoding="utf-8")
    start = config.index('[[county.offices]]\nkey = "tax"')
    end = config.index("[[county.offices]]", start + 1)
    broken = tmp_path / "config.toml"
    broken.write_text((config[:start] + config[end:]).replace(
        'policies_dir = "policies"', f'policies_dir = "{ROOT / "policies"}"'), encoding="utf-8")
    result = CliRunner().invoke(cli, ["--config", str(broken), "policies", "check"])
    assert result.exit_code != 0
    assert "tax" in result.output
