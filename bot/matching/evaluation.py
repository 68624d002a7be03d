"""Measure the matcher on a labelled question set (TSV: question, topic, style[, alt, office, kind]).

Scoring is strict, because that is what a villager sees: a policy question counts as correct
only when the bot answers it with the right topic (band "answer"); a right first suggestion
("您是不是想问 1. ...") still costs the villager a reply, so it counts as a miss, and so does an
answer with the row's acceptable alternative (alt column; reported apart). An out-of-scope
question (topic "none") counts as correct when the bot does not answer it with a policy; when
its office column names a word of the right office's name, the referral is checked too.
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
    alt: str = ""
    office: str = ""  # a word the right office's name contains (none rows)
    kind: str = ""  # where the question came from (A message board, B Q&A, C search, F FAQ)
    referred_to: str = ""  # name of the office the bot referred to, if it did

    @property
    def referred_right(self) -> bool:
        """A referral to an office whose name contains the expected office word."""
        return bool(self.office) and self.match.band == "referral" and self.office in self.referred_to

    @property
    def got(self) -> str:
        """What the bot did, in one word: the topic answered, or the band."""
        return self.match.topic_id if self.match.band == "answer" and self.match.topic_id else self.match.band

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
    def referrals(self) -> tuple[int, int]:
        """(right office given, out-of-scope questions whose row names an office)."""
        named = [o for o in self.outcomes if o.expected == OUT_OF_SCOPE and o.office]
        return sum(o.referred_right for o in named), len(named)

    @property
    def by_topic(self) -> dict[str, tuple[int, int]]:
        """expected topic -> (correct, total), sorted by topic."""
        counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        for o in self.outcomes:
            counts[o.expected][0] += o.correct
            counts[o.expected][1] += 1
        return {t: (c, n) for t, (c, n) in sorted(counts.items())}

    @property
    def by_kind(self) -> dict[str, tuple[int, int]]:
        """question source kind -> (correct, total), for rows that have one."""
        counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        for o in self.outcomes:
            if o.kind:
                counts[o.kind][0] += o.correct
                counts[o.kind][1] += 1
        return {k: (c, n) for k, (c, n) in sorted(counts.items())}

    @property
    def confusions(self) -> list[tuple[str, str, int]]:
        """(expected, got, count) of the misses, most frequent first."""
        pairs: dict[tuple[str, str], int] = defaultdict(int)
        for o in self.misses:
            pairs[(o.expected, o.got)] += 1
        return sorted(((e, g, n) for (e, g), n in pairs.items()), key=lambda x: (-x[2], x[0], x[1]))

    @property
    def suggested_right(self) -> int:
        """Misses where the right topic was the first suggestion (not counted as correct)."""
        return sum(not o.correct and o.match.band == "suggest" and bool(o.match.candidates)
                   and o.match.candidates[0].topic_id == o.expected for o in self.outcomes)

    @property
    def misses(self) -> tuple[Outcome, ...]:
        """Outcomes counted as wrong."""
        return tuple(o for o in self.outcomes if not o.correct)

    def format(self) -> str:
        """A plain-text report: totals, per style, wrong answers, then every miss."""
        lines = [f"top-1 accuracy: {_percent(self.correct, len(self.outcomes))}"]
        answered, none = self.out_of_scope_answered
        lines.append(f"out-of-scope answered with a policy: {_percent(answered, none)}")
        right, named = self.referrals
        if named:
            lines.append(f"referred to the right office: {_percent(right, named)}")
        lines.append("per style:")
        for style, (c, n) in self.by_style.items():
            lines.append(f"  {style}: {_percent(c, n)}")
        if self.by_kind:
            lines.append("per kind:")
            lines += [f"  {kind}: {_percent(c, n)}" for kind, (c, n) in self.by_kind.items()]
        lines.append("per topic:")
        lines += [f"  {topic}: {_percent(c, n)}" for topic, (c, n) in self.by_topic.items()]
        alt = sum(bool(not o.correct and o.alt and o.got == o.alt) for o in self.outcomes)
        lines.append(f"misses whose first suggestion was right: {self.suggested_right}")
        if any(o.alt for o in self.outcomes):
            lines.append(f"misses answered with the row's alternative topic: {alt}")
        wrong_office = [o for o in self.outcomes if o.office and o.match.band == "referral"
                        and not o.referred_right]
        if wrong_office:
            lines.append("referred to the wrong office:")
            lines += [f"  {o.question}  expected {o.office}, got {o.referred_to}" for o in wrong_office]
        if self.confusions:
            lines.append("confusions (expected -> got):")
            lines += [f"  {e} -> {g}: {n}" for e, g, n in self.confusions]
        if self.misses:
            lines.append("misses:")
        for o in self.misses:
            m = o.match
            got = m.topic_id if m.band == "answer" else (
                f"{m.band} [" + ", ".join(f"{c.topic_id} {c.score:.0f}" for c in m.candidates) + "]")
            lines.append(f"  [{o.style}] {o.question}  expected {o.expected}, got {got} ({m.score:.0f})")
        return "\n".join(lines)


def evaluate(matcher: Matcher, tsv_path: Path, office_names: dict[str, str] | None = None) -> EvalReport:
    """Match every question of a TSV file (header: question, topic, style) and score it.

    office_names: office key -> name, to check referrals against the office column.
    """
    office_names = office_names or {}
    tsv_path = Path(tsv_path)
    with tsv_path.open(encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    if not rows or [c.strip() for c in rows[0][:3]] != ["question", "topic", "style"]:
        raise EvaluationError(f"{tsv_path}:1: 表头应为 question<TAB>topic<TAB>style")
    header = [c.strip() for c in rows[0]]
    extra = {name: header.index(name) for name in ("alt", "office", "kind") if name in header}
    outcomes = []
    for line, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) < 3:
            raise EvaluationError(f"{tsv_path}:{line}: 应有 3 列（question, topic, style）")
        question, topic, style = (cell.strip() for cell in row[:3])
        more = {name: row[i].strip() if i < len(row) else "" for name, i in extra.items()}
        match = matcher.match(question)
        referred = office_names.get(match.office, match.office) if match.office else ""
        outcomes.append(Outcome(question, topic, style, match, referred_to=referred or "", **more))
    return EvalReport(tuple(outcomes))


def _percent(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}% ({part}/{whole})" if whole else "n/a (0/0)"
