"""Knowledge-base edits touch only what staff changed, so a git diff shows just the edit."""
from __future__ import annotations

import difflib
import shutil
import tomllib

import pytest

from bot.knowledge.edit import add_example, save_synonyms, save_topic
from bot.settings import MatcherSettings
from tests.conftest import ROOT


@pytest.fixture
def policies(tmp_path):
    folder = tmp_path / "policies"
    shutil.copytree(ROOT / "policies", folder)
    return folder


def changed_lines(before: str, after: str) -> list[str]:
    diff = difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm="", n=0)
    return [line for line in diff if line[:1] in "+-" and line[:3] not in ("+++", "---")]


def test_adding_one_example_changes_exactly_one_line(policies, tmp_path):
    file = policies / "support.toml"
    before = file.read_text(encoding="utf-8")
    add_example(policies, tmp_path / "backups", MatcherSettings(policies_dir=policies),
                "support.loan", "贷款到期还不上咋办")
    after = file.read_text(encoding="utf-8")
    assert changed_lines(before, after) == ['+    "贷款到期还不上咋办",']
    assert "贷款到期还不上咋办" in tomllib.loads(after)["topics"]["support.loan"]["examples"]
    assert len(list((tmp_path / "backups").glob("support.*.toml"))) == 1


def test_editing_an_answer_keeps_comments_and_other_topics(policies, tmp_path):
    file = policies / "support.toml"
    before = file.read_text(encoding="utf-8")
    old = tomllib.loads(before)["topics"]["support.tax"]["answer"]
    save_topic(policies, tmp_path / "backups", MatcherSettings(policies_dir=policies),
               "support.tax", {"answer": old + "\n新增一行说明。"})
    after = file.read_text(encoding="utf-8")
    assert [line for line in before.splitlines() if line.startswith("#")] == \
        [line for line in after.splitlines() if line.startswith("#")]
    assert tomllib.loads(after)["topics"]["support.tax"]["answer"].endswith("新增一行说明。")
    assert tomllib.loads(after)["topics"]["support.loan"] == tomllib.loads(before)["topics"]["support.loan"]
    assert len(changed_lines(before, after)) <= 4


def test_changing_one_synonym_changes_one_line(policies, tmp_path):
    file = policies / "synonyms.toml"
    before = file.read_text(encoding="utf-8")
    synonyms = tomllib.loads(before)["synonyms"]
    synonyms["知道"] = synonyms["知道"] + ["晓不晓得"]
    save_synonyms(policies, tmp_path / "backups", MatcherSettings(policies_dir=policies), synonyms)
    after = file.read_text(encoding="utf-8")
    assert len([line for line in changed_lines(before, after) if line.startswith("+")]) == 1
    assert tomllib.loads(after)["synonyms"] == synonyms
