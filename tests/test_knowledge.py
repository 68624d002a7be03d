import os
import shutil
from pathlib import Path

import pytest

from bot.knowledge.load import (
    CONTRACT_IDS,
    MIN_EXAMPLES,
    KnowledgeError,
    check_knowledge,
    load_knowledge,
    placeholder_values,
)
from bot.settings import CountySettings, LoanSettings, MatcherSettings

FIXTURES = Path(__file__).parent / "fixtures" / "policies"
SHIPPED = Path(__file__).parent.parent / "policies"

DETAILS = """
[topics."{id}".details]
eligibility = "所有人"
benefits = "免费"
how_to_apply = "到窗口"
documents = "身份证"
office = "{{bureau}}"
"""


def topic_toml(topic_id: str, *, answer: str = "去窗口办理。", examples: int = 6,
               details: bool = True) -> str:
    """A valid topic table in the policies/ format, with knobs to break it."""
    lines = [f'[topics."{topic_id}"]', 'title = "示例话题"']
    if answer is not None:
        lines.append(f'answer = "{answer}"')
    lines.append('keywords = ["示例"]')
    lines.append("examples = [" + ", ".join(f'"示例问题{i}"' for i in range(examples)) + "]")
    text = "\n".join(lines) + "\n"
    return text + (DETAILS.format(id=topic_id) if details else "")


def write(folder: Path, name: str, *topics: str, header: str = 'title = "五个扶持"\norder = 3\n') -> Path:
    folder.mkdir(exist_ok=True)
    path = folder / name
    path.write_text(header + "\n" + "\n".join(topics), encoding="utf-8")
    return path


def line_of(path: Path, text: str, after: int = 0) -> int:
    """Number of the first line after line `after` that contains text."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return next(i for i, line in enumerate(lines, 1) if i > after and text in line)


def test_loads_topics_categories_and_synonyms():
    kb = load_knowledge(FIXTURES)
    assert kb.topics["support.loan"].title == "小额贴息贷款"
    assert kb.topics["support.loan"].category == "support"
    assert len(kb.topics["support.loan"].examples) >= MIN_EXAMPLES
    assert kb.topics["support.loan"].details["documents"] == "身份证、户口本、创业计划。"
    assert [c.id for c in kb.categories] == ["relax", "encourage", "support", "service"]
    assert kb.categories[0].topic_ids == ("relax.registration", "relax.premises")
    assert kb.synonyms["借钱"] == "贷款"
    assert kb.synonyms["么子"] == "什么"


def test_render_answer_fills_county_placeholders():
    kb = load_knowledge(FIXTURES)
    county = CountySettings(name="青山县", bureau="青山县人社局", address="政务中心二楼",
                            hours="工作日", hotline="0000-1")
    values = placeholder_values(county, LoanSettings())
    assert kb.render_answer("service.contact", values) == "地址：政务中心二楼；时间：工作日；电话：0000-1。"
    assert "青山县人社局公布为准" in kb.render_answer("support.loan", values)
    assert kb.render_details("relax.registration", values)["office"] == "政务中心二楼"


def test_reload_returns_same_object_until_a_file_changes(tmp_path):
    folder = tmp_path / "policies"
    shutil.copytree(FIXTURES, folder)
    kb = load_knowledge(folder)
    assert kb.reload() is kb
    path = folder / "support.toml"
    path.write_text(path.read_text(encoding="utf-8").replace("小额贴息贷款", "创业贴息贷款", 1),
                    encoding="utf-8")
    os.utime(path, ns=(0, 0))  # a different mtime even on coarse file-system clocks
    fresh = kb.reload()
    assert fresh is not kb
    assert fresh.topics["support.loan"].title == "创业贴息贷款"


@pytest.mark.parametrize("topic, marker, message", [
    (topic_toml("support.loan", answer=None), '[topics."support.loan"]', "缺少 answer"),
    (topic_toml("support.loan", examples=3), "examples =", "至少需要 6 条"),
    (topic_toml("support.loan", details=False), '[topics."support.loan"]', "缺少 details"),
    (topic_toml("support.Loan!"), '[topics."support.Loan!"]', "不合格式"),
    (topic_toml("relax.loan"), '[topics."relax.loan"]', "前缀应为分类名 support"),
    (topic_toml("support.loan", answer="请拨打{phone}"), "answer =", "未知占位符 {phone}"),
])
def test_broken_topic_names_file_and_line(tmp_path, topic, marker, message):
    path = write(tmp_path / "policies", "support.toml", topic_toml("support.tax"), topic)
    with pytest.raises(KnowledgeError) as error:
        load_knowledge(path.parent)
    # The broken topic comes second, so the line must be found inside its own table.
    header = line_of(path, "[topics.", after=line_of(path, '[topics."support.tax"]'))
    assert f"{path}:{line_of(path, marker, after=header - 1)}:" in str(error.value)
    assert message in str(error.value)


def test_missing_detail_field_points_at_details_table(tmp_path):
    topic = topic_toml("support.loan").replace('documents = "身份证"\n', "")
    path = write(tmp_path / "policies", "support.toml", topic)
    with pytest.raises(KnowledgeError, match="details 缺少 documents") as error:
        load_knowledge(path.parent)
    assert f"{path}:1" not in str(error.value)
    header = line_of(path, '[topics."support.loan"]')
    assert f"{path}:{header}:" in str(error.value)


def test_toml_syntax_error_names_file_and_line(tmp_path):
    path = write(tmp_path / "policies", "support.toml", topic_toml("support.loan"),
                 'oops = "unterminated\n')
    with pytest.raises(KnowledgeError) as error:
        load_knowledge(path.parent)
    assert f"{path}:{line_of(path, 'oops')}:" in str(error.value)


def test_unknown_category_file_is_refused(tmp_path):
    path = write(tmp_path / "policies", "subsidies.toml", topic_toml("subsidies.loan"))
    with pytest.raises(KnowledgeError, match="未知分类 subsidies") as error:
        load_knowledge(path.parent)
    assert f"{path}:1:" in str(error.value)


def test_duplicate_id_across_files_names_both_files(tmp_path):
    folder = tmp_path / "policies"
    write(folder, "relax.toml", topic_toml("relax.capital"), header='title = "五个放宽"\norder = 1\n')
    second = write(folder, "support.toml", topic_toml("relax.capital"))
    with pytest.raises(KnowledgeError) as error:
        load_knowledge(folder)
    assert f"{second}:{line_of(second, '[topics.')}:" in str(error.value)
    assert "重复" in str(error.value) and "relax.toml" in str(error.value)


def test_check_reports_every_problem_not_just_the_first(tmp_path):
    folder = tmp_path / "policies"
    write(folder, "support.toml", topic_toml("support.loan", answer=None),
          topic_toml("support.tax", examples=2))
    problems = check_knowledge(folder, MatcherSettings())
    assert any("support.loan" in p and "缺少 answer" in p for p in problems)
    assert any("support.tax" in p and "至少需要 6 条" in p for p in problems)


def test_check_reports_missing_contract_ids():
    problems = check_knowledge(FIXTURES, MatcherSettings())
    missing = [p for p in problems if "缺少规格约定的话题" in p]
    assert any("encourage.cadres" in p for p in missing)
    assert not any("support.loan" in p for p in missing)
    assert len(missing) == len(CONTRACT_IDS) - 8  # the fixture has 8 of the contract ids


def test_check_reports_example_that_matches_another_topic(tmp_path):
    folder = tmp_path / "policies"
    shutil.copytree(FIXTURES, folder)
    path = folder / "service.toml"
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace('"找个真人说话",', '"创业贷款最多能贷多少钱",'), encoding="utf-8")
    problems = check_knowledge(folder, MatcherSettings())
    header = line_of(path, '[topics."service.human"]')
    planted = f"{path}:{header}: 话题 service.human 的例句「创业贷款最多能贷多少钱」更像 support.loan"
    assert planted in problems


def test_fixture_examples_all_match_their_own_topic():
    problems = check_knowledge(FIXTURES, MatcherSettings())
    assert [p for p in problems if "缺少规格约定的话题" not in p] == []


def test_shipped_knowledge_base_keeps_the_spec_contract():
    kb = load_knowledge(SHIPPED)
    for topic_id in CONTRACT_IDS:
        assert topic_id in kb.topics, topic_id
        assert len(kb.topics[topic_id].examples) >= MIN_EXAMPLES, topic_id


def test_shipped_knowledge_base_passes_the_check():
    assert check_knowledge(SHIPPED, MatcherSettings()) == []


def test_load_error_says_how_many_more_problems_there_are(tmp_path):
    path = write(tmp_path / "policies", "support.toml", topic_toml("support.loan", answer=None),
                 topic_toml("support.tax", examples=2))
    with pytest.raises(KnowledgeError, match="另有 1 个问题"):
        load_knowledge(path.parent)


def test_missing_folder_is_one_problem(tmp_path):
    missing = tmp_path / "nowhere"
    assert check_knowledge(missing, MatcherSettings()) == [f"{missing}: 知识库目录不存在"]
