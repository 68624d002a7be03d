"""Edits to the knowledge-base files from the console: checked, backed up, then written.

The policies/*.toml files stay the source of truth. An edit rewrites only the edited
topic's tables inside its category file (comments and the other topics keep their
text, so a git diff shows just the change), is checked like `policies check` on a copy
of the folder first, and keeps the previous file in the backup folder. Running workers
pick the new files up through bot.library's file watching.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import tempfile
import time
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import tomli_w

from bot.knowledge import DETAIL_FIELDS, SYNONYMS_FILE, check_knowledge
from bot.settings import MatcherSettings

EDITABLE_FIELDS = ("title", "answer", "keywords", "examples")
# Lists of short items (keywords) are packed several to a line, as the files write them.
PACKED_ITEM_CHARS = 12
PACKED_LINE_CHARS = 40
_TABLE_HEADER = re.compile(r"^\s*\[")
_LOCATION = re.compile(r"^[^:]*(?::\d+)?: ")
_SYNONYM_LINE = re.compile(r'^"[^"]+"\s*=\s*\[.*\]\s*$')


class EditError(Exception):
    """An edit that would break the knowledge base; problems say why, in Chinese."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


def save_topic(policies_dir: Path, backup_dir: Path, settings: MatcherSettings, topic_id: str,
               changes: dict[str, Any]) -> list[str]:
    """Apply changes (title, answer, keywords, examples, details) to one topic and write it.

    Raises EditError when the result has problems `policies check` did not report
    before. Returns warnings: newly added examples that still look more like another
    topic (staff chose the topic on purpose, so that alone does not refuse the edit).
    """
    return _edit(policies_dir, backup_dir, settings, topic_id, lambda table: _apply(table, changes))


def add_example(policies_dir: Path, backup_dir: Path, settings: MatcherSettings, topic_id: str,
                question: str) -> None:
    """Add a question as an example of a topic (no change if already there).

    Raises EditError when `policies check` would then fail, the example itself included:
    a question taught to the wrong topic makes the bot answer it wrongly from then on.
    """
    question = question.strip()

    def append(table: dict[str, Any]) -> dict[str, Any]:
        examples = list(table.get("examples", []))
        return _apply(table, {"examples": examples + [question] if question not in examples else examples})

    _edit(policies_dir, backup_dir, settings, topic_id, append, warn_examples=False)


def _edit(policies_dir: Path, backup_dir: Path, settings: MatcherSettings, topic_id: str,
          update: Callable[[dict[str, Any]], dict[str, Any]], warn_examples: bool = True) -> list[str]:
    """Read, change, check, back up and write one topic, holding the edit lock throughout."""
    policies_dir = Path(policies_dir)
    file = policies_dir / f"{topic_id.split('.')[0]}.toml"
    with _edit_lock(backup_dir):
        try:
            old_text = file.read_text(encoding="utf-8")
            table = tomllib.loads(old_text)["topics"][topic_id]
        except (OSError, KeyError, TypeError, tomllib.TOMLDecodeError):
            raise EditError([f"话题 {topic_id} 不存在"]) from None
        new_table = update(table)
        if new_table == table:
            return []
        new_text = _replace_topic(old_text, topic_id, new_table)
        added = [e for e in new_table.get("examples", []) if e not in table.get("examples", [])]
        warnings = _check(policies_dir, file.name, new_text, settings, added if warn_examples else [])
        try:
            _backup(file, old_text, backup_dir)
            _write(file, new_text)
        except OSError as exc:
            raise EditError([f"无法写入知识库文件 {file.name}：{exc.strerror}"]) from None
    return warnings


def save_synonyms(policies_dir: Path, backup_dir: Path, settings: MatcherSettings,
                  synonyms: dict[str, list[str]]) -> None:
    """Replace the synonym map (canonical -> variants), editing synonyms.toml line by line.

    Each canonical term is one `"term" = [...]` line, so changed terms are rewritten in
    place, removed ones dropped and new ones appended: the file's grouping comments stay.
    Raises EditError when the result has problems `policies check` did not report before.
    """
    file = Path(policies_dir) / SYNONYMS_FILE
    with _edit_lock(backup_dir):
        old_text = file.read_text(encoding="utf-8")
        if tomllib.loads(old_text).get("synonyms") == synonyms:
            return
        kept: set[str] = set()
        lines = []
        for line in old_text.splitlines():
            entry = _SYNONYM_LINE.match(line)
            if entry is None:
                lines.append(line)
                continue
            term = next(iter(tomllib.loads(line)))
            if term in synonyms:
                lines.append(_synonym_line(term, synonyms[term]))
                kept.add(term)
        lines += [_synonym_line(term, variants) for term, variants in synonyms.items()
                  if term not in kept]
        new_text = "\n".join(lines) + "\n"
        _check(policies_dir, file.name, new_text, settings, [])
        try:
            _backup(file, old_text, backup_dir)
            _write(file, new_text)
        except OSError as exc:
            raise EditError([f"无法写入知识库文件 {file.name}：{exc.strerror}"]) from None


def _synonym_line(term: str, variants: list[str]) -> str:
    """One `"term" = ["a", "b"]` line (JSON strings are valid TOML basic strings)."""
    quoted = ", ".join(json.dumps(v, ensure_ascii=False) for v in variants)
    return f"{json.dumps(term, ensure_ascii=False)} = [{quoted}]"


def _apply(table: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    new = dict(table)
    for key in EDITABLE_FIELDS:
        if key in changes:
            new[key] = changes[key]
    if "details" in changes:
        new["details"] = {**table.get("details", {}),
                          **{k: v for k, v in changes["details"].items() if k in DETAIL_FIELDS}}
    # Keep the file's own key order, with details last (it is a subtable).
    order = [k for k in table if k != "details"] + [k for k in new if k not in table and k != "details"]
    result = {k: new[k] for k in order}
    if "details" in new:
        result["details"] = new["details"]
    return result


def _replace_topic(text: str, topic_id: str, table: dict[str, Any]) -> str:
    """The file text with the topic's tables (and its details subtable) replaced."""
    lines = text.splitlines(keepends=True)
    quoted = re.escape(topic_id)
    own = re.compile(rf"""^\s*\[\s*topics\s*\.\s*("{quoted}"|'{quoted}')\s*[\].]""")
    start = next((i for i, line in enumerate(lines) if own.match(line)), None)
    if start is None:
        raise EditError([f"话题 {topic_id} 在文件中的写法无法自动修改，请手工编辑"])
    end = start + 1
    while end < len(lines) and not (_TABLE_HEADER.match(lines[end]) and not own.match(lines[end])):
        end += 1
    # Comments and blank lines just before the next table belong to that table.
    while end > start + 1 and (not lines[end - 1].strip() or lines[end - 1].lstrip().startswith("#")):
        end -= 1
    tail = "".join(lines[end:]).lstrip("\n")
    return "".join(lines[:start]) + _render_topic(topic_id, table) + ("\n" + tail if tail else "")


def _render_topic(topic_id: str, table: dict[str, Any]) -> str:
    """TOML for one topic in the files' own layout: short lists packed, long ones one per line."""
    header = tomli_w.dumps({"topics": {topic_id: {"x": 1}}}).splitlines()[0]
    out = [header]
    for key, value in table.items():
        if key != "details":
            out.append(_render_value(key, value))
    if isinstance(table.get("details"), dict):
        out += ["", header[:-1] + ".details]"]
        out += [_render_value(key, value) for key, value in table["details"].items()]
    return "\n".join(out) + "\n"


def _render_value(key: str, value: Any) -> str:
    if not isinstance(value, list) or not value:
        return tomli_w.dumps({key: value}, multiline_strings=True).rstrip("\n")
    items = [tomli_w.dumps({"x": v}).rstrip("\n")[len("x = "):] for v in value]
    if all(len(str(v)) <= PACKED_ITEM_CHARS for v in value):
        rows: list[str] = []
        for item in items:
            if rows and len(rows[-1]) + len(item) + 2 <= PACKED_LINE_CHARS:
                rows[-1] += " " + item + ","
            else:
                rows.append("    " + item + ",")
    else:
        rows = ["    " + item + "," for item in items]
    return f"{tomli_w.dumps({key: 0}).split(' = ')[0]} = [\n" + "\n".join(rows) + "\n]"


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
