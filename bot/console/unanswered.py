"""Unanswered questions: grouped by similarity, taught to the bot or put out of scope."""
from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from flask import flash, redirect, render_template, request, url_for
from rapidfuzz import fuzz, process
from werkzeug.wrappers import Response

from bot import current_runtime, get_db
from bot.console import bp, page_number, people, record
from bot.console.overview import topic_title
from bot.storage import messages, staff

# Two unanswered questions with a character similarity at or above this share a group.
GROUP_SIMILARITY = 60
# Questions per page; grouping happens within a page.
PAGE_SIZE = 500
_PUNCTUATION = re.compile(r"[\s\W_]+", re.UNICODE)


def group_similar(rows: list[dict[str, Any]], key: Callable[[dict[str, Any]], str],
                  threshold: float = GROUP_SIMILARITY) -> list[list[dict[str, Any]]]:
    """Group rows whose texts are alike (rapidfuzz ratio), largest groups first."""
    groups: list[list[dict[str, Any]]] = []
    heads: list[str] = []
    for row in rows:
        text = _PUNCTUATION.sub("", key(row)).lower()
        found = process.extractOne(text, heads, scorer=fuzz.ratio, score_cutoff=threshold)
        if found is None:
            heads.append(text)
            groups.append([row])
        else:
            groups[found[2]].append(row)
    return sorted(groups, key=len, reverse=True)


@bp.get("/unanswered")
def unanswered() -> str:
    """Open questions the bot did not understand, a page at a time, grouped by similarity."""
    database = get_db()
    page = page_number()
    total = staff.count_open_unanswered(database)
    rows = staff.open_unanswered_page(database, PAGE_SIZE, (page - 1) * PAGE_SIZE)
    topics = sorted(current_runtime().library.kb.topics.values(), key=lambda t: t.id)
    groups = [_fold_repeats(group) for group in group_similar(rows, lambda r: r["question"])]
    pages = max(1, -(-total // PAGE_SIZE))
    names = people.display_names([r["openid"] for r in rows if r["openid"]])
    return render_template("console/unanswered.html", groups=groups, topics=topics, total=total,
                           page=page, pages=pages, topic_title=topic_title, names=names)


def _fold_repeats(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One item per distinct question, with every row id, so one action handles all repeats.

    suggested_topic is the matcher's best topic only when it offered that topic ("suggest"):
    below that score its guess is a poor one, and a pre-selected guess gets taught by one click.
    """
    items: dict[str, dict[str, Any]] = {}
    for row in rows:
        item = items.setdefault(row["question"], {**row, "ids": [], "suggested_topic": None})
        item["ids"].append(row["id"])
        item["best_topic"] = item["best_topic"] or row["best_topic"]
        if row["band"] == "suggest" and not item["suggested_topic"]:
            item["suggested_topic"] = row["best_topic"]
    return list(items.values())


@bp.post("/unanswered/out-of-scope")
def unanswered_out_of_scope() -> Response:
    """Take questions off the list as outside what the bot should answer."""
    ids = [int(i) for i in request.form.getlist("id") if i.isascii() and i.isdigit()]
    closed = messages.close_unanswered(get_db(), ids, "out_of_scope")
    record("标记超出范围", f"{closed} 条未答问题（id {', '.join(map(str, ids))}）")
    flash(f"已将 {closed} 条问题标为超出范围。")
    return redirect(url_for("console.unanswered"))
