"""The knowledge base: search topics, edit one, edit the synonyms, teach an unanswered question."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from flask import abort, flash, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from bot import current_runtime, get_db, labels
from bot.console import bp, record
from bot.knowledge import edit as knowledge_edit
from bot.storage import messages


def _backup_dir() -> Path:
    return current_runtime().settings.data_dir / "backups" / "policies"


@bp.get("/knowledge")
def knowledge() -> str:
    """Topics by category, with a search over titles, answers, keywords and examples."""
    kb = current_runtime().library.kb
    query = request.args.get("q", "").strip()
    sections = []
    for category in kb.categories:
        topics = [kb.topics[t] for t in category.topic_ids if _topic_has(kb.topics[t], query)]
        if topics:
            sections.append((category, topics))
    return render_template("console/knowledge.html", sections=sections, query=query,
                           total=sum(len(t) for _, t in sections))


def _topic_has(topic: Any, query: str) -> bool:
    if not query:
        return True
    haystack = [topic.id, topic.title, topic.answer, *topic.keywords, *topic.examples,
                *topic.details.values()]
    return any(query.lower() in text.lower() for text in haystack)


@bp.route("/knowledge/<topic_id>", methods=["GET", "POST"])
def topic(topic_id: str) -> str | Response | tuple[str, int]:
    """Edit one topic; saved to its policies/ file (previous version backed up) and live at once."""
    library = current_runtime().library
    current = library.kb.topics.get(topic_id)
    if current is None:
        abort(404)
    problems: list[str] = []
    form = {"title": current.title, "answer": current.answer,
            "keywords": "\n".join(current.keywords), "examples": "\n".join(current.examples),
            **{f"details.{k}": current.details.get(k, "") for k in labels.DETAILS}}
    if request.method == "POST":
        form = {k: request.form.get(k, "").replace("\r\n", "\n").strip() for k in form}
        changes: dict[str, Any] = {"title": form["title"], "answer": form["answer"],
                                   "keywords": _lines(form["keywords"]),
                                   "examples": _lines(form["examples"]),
                                   "details": {k: form[f"details.{k}"] for k in labels.DETAILS}}
        try:
            warnings = knowledge_edit.save_topic(
                current_runtime().settings.matcher.policies_dir, _backup_dir(),
                current_runtime().settings.matcher, topic_id, changes,
                before_write=lambda: record("编辑话题", topic_id))
        except knowledge_edit.EditError as exc:
            problems = exc.problems
        else:
            library.reload()
            flash("已保存，机器人已按新内容回答。")
            for warning in warnings:
                flash("提醒：" + warning)
            return redirect(url_for("console.topic", topic_id=topic_id))
    return render_template("console/topic.html", topic=current, form=form, problems=problems,
                           labels=labels.DETAILS, preview=library.answer_text(topic_id)), \
        (400 if problems else 200)


@bp.route("/knowledge/synonyms", methods=["GET", "POST"])
def synonyms() -> str | Response | tuple[str, int]:
    """Edit the synonym map: one line per term, "标准词 = 说法1，说法2"."""
    library = current_runtime().library
    problems: list[str] = []
    current: dict[str, list[str]] = {}
    for variant, term in library.kb.synonyms.items():
        current.setdefault(term, []).append(variant)
    text = "\n".join(f"{term} = {'，'.join(variants)}" for term, variants in current.items())
    if request.method == "POST":
        text = request.form.get("synonyms", "").replace("\r\n", "\n").strip()
        parsed, problems = _parse_synonyms(text)
        if not problems:
            try:
                knowledge_edit.save_synonyms(
                    current_runtime().settings.matcher.policies_dir, _backup_dir(),
                    current_runtime().settings.matcher, parsed,
                    before_write=lambda: record("编辑同义词", f"{len(parsed)} 个标准词"))
            except knowledge_edit.EditError as exc:
                problems = exc.problems
            else:
                library.reload()
                flash("同义词已保存并生效。")
                return redirect(url_for("console.synonyms"))
    return render_template("console/synonyms.html", text=text, problems=problems), \
        (400 if problems else 200)


def _parse_synonyms(text: str) -> tuple[dict[str, list[str]], list[str]]:
    """"标准词 = 说法1，说法2" lines -> {term: variants}, with problems named by line."""
    parsed: dict[str, list[str]] = {}
    problems = []
    for number, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        term, sep, rest = line.partition("=")
        variants = [v.strip() for v in re.split(r"[，,、]", rest) if v.strip()]
        if not sep or not term.strip() or not variants:
            problems.append(f"第 {number} 行应写成“标准词 = 说法1，说法2”：{line.strip()}")
        elif term.strip() in parsed:
            problems.append(f"第 {number} 行：标准词“{term.strip()}”重复")
        else:
            parsed[term.strip()] = variants
    return parsed, problems


def _lines(text: str) -> list[str]:
    """One item per line, blank lines dropped."""
    return [item.strip() for item in text.split("\n") if item.strip()]


def plain_problem(problem: str, titles: dict[str, str]) -> str:
    """A knowledge-base problem with topic ids replaced by the titles staff know them by."""
    if not titles:
        return problem
    ids = sorted(titles, key=len, reverse=True)
    pattern = re.compile(r"(?<![\w.])(" + "|".join(map(re.escape, ids)) + r")(?![\w.])")
    return pattern.sub(lambda m: f"“{titles[m.group(1)]}”", problem)


@bp.post("/unanswered/add-example")
def add_example() -> Response:
    """Teach the bot: add an unanswered question as an example of the chosen topic."""
    library = current_runtime().library
    database = get_db()
    ids = [int(i) for i in request.form.getlist("id") if i.isascii() and i.isdigit()]
    row = messages.get_unanswered(database, ids[0]) if ids else None
    topic_id = request.form.get("topic", "")
    if row is None or topic_id not in library.kb.topics:
        flash("请先选择要加入的话题。" if row else "问题不存在，请刷新页面。")
        return redirect(url_for("console.unanswered"))
    try:
        knowledge_edit.add_example(current_runtime().settings.matcher.policies_dir, _backup_dir(),
                                   current_runtime().settings.matcher, topic_id, row["question"],
                                   before_write=lambda: record("加为例句", f"{topic_id}: {row['question']}"))
    except knowledge_edit.EditError as exc:
        titles = {t.id: t.title for t in library.kb.topics.values()}
        flash(f"没有加入：把“{row['question']}”加到“{library.kb.topics[topic_id].title}”后，"
              "机器人会答错。" + "；".join(plain_problem(p, titles) for p in exc.problems)
              + "。请换一个话题，或标为超出范围。")
        return redirect(url_for("console.unanswered"))
    library.reload()
    messages.close_unanswered(database, ids, "added")
    flash(f"已把“{row['question']}”加为“{library.kb.topics[topic_id].title}”的例句，立即生效。")
    return redirect(url_for("console.unanswered"))
