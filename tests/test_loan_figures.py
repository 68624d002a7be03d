"""The loan figures come from [loan] alone: the policy answers and the loan form agree."""
from __future__ import annotations

import pytest

from tests.conftest import Chat, create_app, make_settings


@pytest.fixture
def chat(tmp_path):
    settings = make_settings(tmp_path, loan={"ceiling_yuan": 30000, "partnership_ceiling_yuan": 100000,
                                             "term_years": 3})
    app = create_app(settings)
    yield Chat(app.test_client())
    app.extensions["bot"].close()


def test_the_answer_quotes_the_configured_figures_with_one_sample_note(chat):
    answer = chat.say("创业贷款个人最高能贷多少")
    assert "个人最高3万元" in answer and "合伙最高10万元" in answer and "期限最长3年" in answer
    assert "5万" not in answer and "20万" not in answer
    assert answer.count("示例数字") == 1


def test_the_form_enforces_the_figure_the_answer_quoted(chat):
    assert "3万元" in chat.say("贷款怎么申请")
    assert "最多3万元" in chat.say("好")
    refused = chat.say("4万")
    assert "最多可以申请3万元" in refused


def test_details_carry_the_figures_and_the_note_once(chat):
    chat.say("创业贷款个人最高能贷多少")
    details = chat.say("详情")
    assert "个人最高3万元" in details and "期限最长3年" in details
    assert details.count("示例数字") == 1
