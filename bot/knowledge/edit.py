"""Edits to the knowledge-base files from the console: checked, backed up, then written.

The policies/*.toml files stay the source of truth. An edit goes through tomlkit, which
keeps every comment, blank line and list layout of the file and changes only the values
edited: adding one example is a one-line diff. Each edit is checked like `policies check`
on a copy of the folder first, keeps the previous file in the backup folder, and is
written atomically under a lock. Running workers pick the new files up through
bot.knowledge.live's file watching.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import tomlkit
from tomlkit.exceptions import TOMLKitError
from tomlkit.items import Array, Table

from bot.knowledge.load import DETAIL_FIELDS, SYNONYMS_FILE, check_knowledge
from bot.settings import MatcherSettings

EDITABLE_FIELDS = ("title", "answer", "keywords", "examples")
_LOCATION = re.compile(r"^[^:]*(?::\d+)?: ")


class EditError(Exception):
    """An edit that would break the knowledge base; problems say why, in Chinese."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


def save_topic(policies_dir: Path, backup_dir: Path, settings: MatcherSettings, topic_id: str,
               changes: dict[str, Any], before_write: Callable[[], None] | None = None) -> list[str]:
    """Apply changes (title, answer, keywords, examples, details) to one topic and write it.

    Raises EditError when the result has problems `policies check` did not report
    before. Returns warnings: newly added examples that still look more like another
    topic (staff chose the topic on purpose, so that alone does not refuse the edit).
    before_write runs once the edit passed its checks, just before the file changes: the
    audit entry goes there, so no change of the knowledge base is ever left unaudited.
    """
    return _edit(policies_dir, backup_dir, settings, topic_id, lambda table: _apply(table, changes),
                 before_write=before_write)


def add_example(policies_dir: Path, backup_dir: Path, settings: MatcherSettings, topic_id: str,
                question: str, before_write: Callable[[], None] | None = None) -> None:
    """Add a question as an example of a topic (no change if already there).

    Raises EditError when `policies check` would then fail, the example itself included:
    a question taught to the wrong topic makes the bot answer it wrongly from then on.
    """
    question = question.strip()

    def append(table: Table) -> None:
        examples = table.get("examples")
        if isinstance(examples, Array):
            if question not in examples:
                examples.append(question)
        else:
            table["examples"] = [question]

    _edit(policies_dir, backup_dir, settings, topic_id, append, warn_examples=False,
          before_write=before_write)


def _edit(policies_dir: Path, backup_dir: Path, settings: MatcherSettings, topic_id: str,
          update: Callable[[Table], None], warn_examples: bool = True,
          before_write: Callable[[], None] | None = None) -> list[str]:
    """Read, change, check, back up and write one topic, holding the edit lock throughout."""
    policies_dir = Path(policies_dir)
    file = policies_dir / f"{topic_id.split('.')[0]}.toml"
    with _edit_lock(backup_dir):
        try:
            old_text = file.read_text(encoding="utf-8")
            doc = tomlkit.parse(old_text)
            table = doc["topics"][topic_id]
        except (OSError, KeyError, TypeError, TOMLKitError):
            raise EditError([f"话题 {topic_id} 不存在"]) from None
        if not isinstance(table, Table):
            raise EditError([f"话题 {topic_id} 在文件中的写法无法自动修改，请手工编辑"])
        before = table.unwrap()
        update(table)
        after = table.unwrap()
        if after == before:
            return []
        new_text = tomlkit.dumps(doc)
        added = [e for e in after.get("examples", []) if e not in before.get("examples", [])]
        warnings = _check(policies_dir, file.name, new_text, settings, added if warn_examples else [])
        _backup_and_write(file, old_text, new_text, backup_dir, before_write)
    return warnings


def save_synonyms(policies_dir: Path, backup_dir: Path, settings: MatcherSettings,
                  synonyms: dict[str, list[str]], before_write: Callable[[], None] | None = None) -> None:
    """Replace the synonym map (canonical -> variants) in synonyms.toml.

    Changed terms are rewritten in place, removed ones dropped and new ones appended; the
    file's grouping comments stay. Raises EditError when the result has problems
    `policies check` did not report before.
    """
    file = Path(policies_dir) / SYNONYMS_FILE
    with _edit_lock(backup_dir):
        old_text = file.read_text(encoding="utf-8")
        doc = tomlkit.parse(old_text)
        table = doc.get("synonyms")
        if not isinstance(table, Table):
            raise EditError([f"{SYNONYMS_FILE} 缺少 [synonyms] 表，请手工编辑"])
        if table.unwrap() == synonyms:
            return
        for term in [t for t in table if t not in synonyms]:
            del table[term]
        for term, variants in synonyms.items():
            if term not in table:
                table[term] = list(variants)
            elif isinstance(table[term], Array):
                _set_list(table[term], list(variants))
            else:
                table[term] = list(variants)
        new_text = tomlkit.dumps(doc)
        _check(policies_dir, file.name, new_text, settings, [])
        _backup_and_write(file, old_text, new_text, backup_dir, before_write)


def _backup_and_write(file: Path, old_text: str, new_text: str, backup_dir: Path,
                      before_write: Callable[[], None] | None) -> None:
    """Keep the previous file, then write the new one (before_write runs in between)."""
    try:
        _backup(file, old_text, backup_dir)
        if before_write is not None:
            before_write()
        _write(file, new_text)
    except OSError as exc:
        raise EditError([f"无法写入知识库文件 {file.name}：{exc.strerror}"]) from None


def _apply(table: Table, changes: dict[str, Any]) -> None:
    """Set the changed fields only, so untouched values keep their exact text."""
    for key in EDITABLE_FIELDS:
        if key not in changes:
            continue
        value = changes[key]
        current = table.get(key)
        if isinstance(value, list) and isinstance(current, Array):
            _set_list(current, list(value))
        elif isinstance(value, str):
            if current != value:
                table[key] = tomlkit.string(value, multiline="\n" in value)
        else:
            table[key] = value
    if "details" in changes:
        details = table.get("details")
        if not isinstance(details, Table):
            details = tomlkit.table()
            table["details"] = details
        for key, value in changes["details"].items():
            if key in DETAIL_FIELDS and details.get(key) != value:
                details[key] = tomlkit.string(value, multiline="\n" in value)


def _set_list(array: Array, values: list[Any]) -> None:
    """Make a TOML array hold values, touching as few of its lines as possible."""
    if list(array) == values:
        return
    for i in reversed(range(len(array))):
        if array[i] not in values:
            del array[i]
    kept = list(array)
    if kept == values[:len(kept)]:
        array.extend(values[len(kept):])  # removals and appends: other lines stay as written
    else:  # reordered: rewrite the list
        array.clear()
        array.extend(values)


def _check(policies_dir: Path, file_name: str, new_text: str, settings: MatcherSettings,
           added_examples: list[str]) -> list[str]:
    """Refuse new problems; new examples that look like another topic are only warnings."""
    before = {_strip(p, policies_dir) for p in check_knowledge(policies_dir, settings)}
    with tempfile.TemporaryDirectory() as tmp:
        trial = Path(tmp) / "policies"
        shutil.copytree(policies_dir, trial, ignore=shutil.ignore_patterns(".*"))
        (trial / file_name).write_text(new_text, encoding="utf-8")
        after = [_strip(p, trial) for p in check_knowledge(trial, settings)]
    new = [p for p in after if p not in before]
    warnings = [p for p in new if any(f"的例句「{e}」" in p for e in added_examples)]
    blocking = [p for p in new if p not in warnings]
    if blocking:
        raise EditError(blocking)
    return warnings


def _strip(problem: str, folder: Path) -> str:
    """A problem without its file and line, so problems compare across copies and edits."""
    return _LOCATION.sub("", problem.replace(str(folder), ""), count=1)


def _backup(file: Path, text: str, backup_dir: Path) -> None:
    backup_dir = Path(backup_dir)
    backup_dir.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S") + f"-{time.time_ns() % 1_000_000_000:09d}"
    (backup_dir / f"{file.stem}.{stamp}.toml").write_text(text, encoding="utf-8")


def _write(file: Path, text: str) -> None:
    """Write aside and rename, so a reader never sees half a file."""
    tmp = file.with_name(f".{file.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, file)


@contextlib.contextmanager
def _edit_lock(backup_dir: Path) -> Iterator[None]:
    """One edit at a time across workers, so two saves cannot lose each other's change."""
    Path(backup_dir).mkdir(parents=True, exist_ok=True)
    with open(Path(backup_dir) / ".edit.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield
