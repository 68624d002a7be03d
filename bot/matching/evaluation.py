"""Measure the matcher on a labelled question set (TSV: question, topic, style).

Scoring is strict, because that is what a villager sees: a policy question counts as correct
only when the bot answers it with the right topic (band "answer"); a right first suggestion
("您是不是想问 1. ...") still costs the villager a reply, so it counts as a miss. An out-of-scope
question (topic "none") counts as correct when the bot does not answer it with a policy.
"""
from __future__ import annotations

import csv
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from bot.matching.matcher import Match, Matcher

OUT_OF_SCOPE = "none"


class EvaluationError(Exception):
    """A malformed evaluation file; the message names file and line."""


@dataclass(frozen=True)
class Outcome:
    question: str
    expected: str
    style: str
    match: Match

    @property
    def correct(self) -> bool:
        """Right topic answered, or an out-of-scope question left unanswered."""
        if self.expected == OUT_OF_SCOPE:
            return self.match.band != "answer"
        return self.match.band == "answer" and self.match.topic_id == self.expected


@dataclass(frozen=True)
class EvalReport:
    outcomes: tuple[Outcome, ...]

    @property
    def correct(self) -> int:
        """Number of questions handled correctly."""
        return sum(o.correct for o in self.outcomes)

    @property
    def accuracy(self) -> float:
        """Share of questions handled correctly (0-1)."""
        return self.correct / len(self.outcomes) if self.outcomes else 0.0

    @property
    def by_style(self) -> dict[str, tuple[int, int]]:
        """style -> (correct, total), styles in first-seen order."""
        counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        for o in self.outcomes:
            counts[o.style][0] += o.correct
            counts[o.style][1] += 1
        return {style: (c, n) for style, (c, n) in counts.items()}

    @property
    def out_of_scope_answered(self) -> tuple[int, int]:
        """(out-of-scope questions the bot answered with a policy, out-of-scope questions)."""
        none = [o for o in self.outcomes if o.expected == OUT_OF_SCOPE]
        return sum(o.match.band == "answer" for o in none), len(none)

    @property
    def suggested_right(self) -> int:
        """Misses where the right topic was the first suggestion (not counted as correct)."""
        return sum(not o.correct and o.match.band == "suggest" and o.match.candidates
                   and o.match.candidates[0].topic_id == o.expected for o in self.outcomes)

    @property
    def misses(self) -> tuple[Outcome, ...]:
        """Outcomes counted as wrong."""
        return tuple(o for o in self.outcomes if not o.correct)

    def format(self) -> str:
        """A plain-text report: totals, per style, wrong answers, then every miss."""
        lines = [f"top-1 accuracy: {_percent(self.correct, len(self.outcomes))}"]
        for style, (c, n) in self.by_style.items():
            lines.append(f"  {style}: {_percent(c, n)}")
        answered, none = self.out_of_scope_answered
        lines.append(f"out-of-scope answered with a policy: {_percent(answered, none)}")
        lines.append(f"misses whose first suggestion was right: {self.suggested_right}")
        if self.misses:
            lines.append("misses:")
        for o in self.misses:
            m = o.match
            got = m.topic_id if m.band == "answer" else (
                f"{m.band} [" + ", ".join(f"{c.topic_id} {c.score:.0f}" for c in m.candidates) + "]")
            lines.append(f"  [{o.style}] {o.question}  expected {o.expected}, got {got} ({m.score:.0f})")
        return "\n".join(lines)


def evaluate(matcher: Matcher, tsv_path: Path) -> EvalReport:
    """Match every question of a TSV file (header: question, topic, style) and score it."""
    tsv_path = Path(tsv_path)
    with tsv_path.open(encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    if not rows or [c.strip() for c in rows[0][:3]] != ["question", "topic", "style"]:
        raise EvaluationError(f"{tsv_path}:1: 表头应为 question<TAB>topic<TAB>style")
    outcomes = []
    for line, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) < 3:
            raise EvaluationError(f"{tsv_path}:{line}: 应有 3 列（question, topic, style）")
        question, topic, style = (cell.strip() for cell in row[:3])
        outcomes.append(Outcome(question, topic, style, matcher.match(question)))
    return EvalReport(tuple(outcomes))


def _percent(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}% ({part}/{whole})" if whole else "n/a (0/0)"
