from pathlib import Path

import pytest

from bot.knowledge.load import load_knowledge
from bot.matching.evaluation import EvaluationError, evaluate
from bot.matching.matcher import Matcher
from bot.settings import MatcherSettings

FIXTURES = Path(__file__).parent / "fixtures" / "policies"

QUESTIONS = """question\ttopic\tstyle
创业贷款最多能贷几万\tsupport.loan\tcolloquial
陪训要钱不\tsupport.training\ttypo
转人工\tservice.human\tshort
贷款\tsupport.loan\tshort
明天下不下雨\tnone\toos
你们电话多少\tnone\toos
"""


@pytest.fixture(scope="module")
def matcher() -> Matcher:
    return Matcher(load_knowledge(FIXTURES), MatcherSettings())


@pytest.fixture
def report(tmp_path, matcher):
    path = tmp_path / "questions.tsv"
    path.write_text(QUESTIONS, encoding="utf-8")
    return evaluate(matcher, path)


def test_counts_right_answers_and_unanswered_off_topic_questions(report):
    # Wrong: 贷款 (only suggested) and 你们电话多少 (labelled off-topic here, yet answered).
    assert (report.correct, len(report.outcomes)) == (4, 6)
    assert report.accuracy == pytest.approx(4 / 6)
    assert report.out_of_scope_answered == (1, 2)


def test_a_right_suggestion_is_not_a_right_answer(report):
    loan = next(o for o in report.outcomes if o.question == "贷款")
    assert loan.match.band == "suggest"
    assert loan.match.candidates[0].topic_id in ("support.loan", "service.apply-loan")
    assert not loan.correct
    assert loan in report.misses


def test_accuracy_per_style(report):
    assert report.by_style == {"colloquial": (1, 1), "typo": (1, 1), "short": (1, 2), "oos": (1, 2)}


def test_format_prints_totals_styles_and_misses(report):
    text = report.format()
    lines = text.splitlines()
    assert lines[0] == "top-1 accuracy: 66.7% (4/6)"
    assert "  short: 50.0% (1/2)" in lines
    assert "out-of-scope answered with a policy: 50.0% (1/2)" in lines
    assert any("你们电话多少" in line and "expected none, got service.contact" in line for line in lines)
    assert any("贷款" in line and "got suggest [" in line for line in lines)


def test_bad_header_names_file_and_line(tmp_path, matcher):
    path = tmp_path / "questions.tsv"
    path.write_text("q\tt\n贷款\tsupport.loan\n", encoding="utf-8")
    with pytest.raises(EvaluationError, match=f"{path}:1:"):
        evaluate(matcher, path)


def test_short_row_names_its_line(tmp_path, matcher):
    path = tmp_path / "questions.tsv"
    path.write_text("question\ttopic\tstyle\n转人工\tservice.human\tshort\n贷款\n", encoding="utf-8")
    with pytest.raises(EvaluationError, match=f"{path}:3:"):
        evaluate(matcher, path)
