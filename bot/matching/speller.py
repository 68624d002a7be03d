"""The speller: homophone typos and typed pinyin become the knowledge-base term they sound like."""
from __future__ import annotations

import re

from pypinyin import lazy_pinyin

from bot.matching.normalise import HAN, LATIN, RUNS
from bot.matching.pinyin import fuzzy, split_pinyin

# Phrases such as 教什么 or 贷多少 are keywords but not words: a typo of them is too likely
# to be a different question (你叫什么 is not 你教什么), so the speller leaves them out.
QUESTION_WORD = re.compile("什么|怎么|多少|哪|谁|几|啥|吗|呢|不|没")
# Longest knowledge-base term the speller and the jieba dictionary deal with.
MAX_TERM = 6
# jieba frequency from which a two-character word counts as common (人才 8742, 食堂 660).
COMMON_WORD = 100


class Speller:
    """Replaces homophone typos and typed pinyin with knowledge-base terms.

    营页执照 -> 营业执照 and daikuan -> 贷款, so a typo or pinyin question gains the word
    features of the term it means, not just its pinyin.
    """

    def __init__(self, vocabulary: set[str], synonyms: dict[str, str], words: dict[str, int]) -> None:
        replacements = {word: word for word in vocabulary}
        replacements.update((v, c) for v, c in synonyms.items() if HAN.match(v) and len(v) >= 2)
        self._words = words
        self._char_sounds: dict[str, str] = {}
        # Pinyin -> replacement; None where two different terms sound alike. Typed hanzi are
        # compared by each character's own reading (exact), typed pinyin by the term's
        # reading as a phrase with fuzzy initials and finals.
        self._exact: dict[tuple[str, ...], str | None] = {}
        self._fuzzy: dict[tuple[str, ...], str | None] = {}
        for term, target in sorted(replacements.items()):
            if not all(HAN.match(c) for c in term) or len(term) > MAX_TERM or QUESTION_WORD.search(term):
                continue
            exact = tuple(self._sound(c) for c in term)
            spoken = tuple(fuzzy(s) for s in lazy_pinyin(term))
            for table, key in ((self._exact, exact), (self._fuzzy, spoken)):
                table[key] = target if table.get(key, target) == target else None

    def correct(self, text: str) -> str:
        """The text with typo'd words and pinyin runs replaced where a term sounds the same."""
        out = []
        for run in RUNS.findall(text):
            if HAN.match(run):
                out.append(self._correct_hanzi(run))
            elif LATIN.match(run):
                out.append(self._correct_pinyin(run))
            else:
                out.append(run)
        return "".join(out)

    def _sound(self, char: str) -> str:
        sound = self._char_sounds.get(char)
        if sound is None:
            sound = self._char_sounds[char] = lazy_pinyin(char)[0]
        return sound

    def _correct_hanzi(self, run: str) -> str:
        sounds = [self._sound(c) for c in run]
        out = []
        i = 0
        while i < len(run):
            for size in range(min(MAX_TERM, len(run) - i), 1, -1):
                window = run[i:i + size]
                target = self._exact.get(tuple(sounds[i:i + size]))
                if target == window:
                    break
                # A real word is not a typo; a typo keeps most of its characters, and it
                # does not cut through a common word (人才市场 is not 人 + 菜市场).
                if (target and not self._words.get(window)
                        and sum(a != b for a, b in zip(window, target)) <= max(1, size // 2)
                        and not self._cuts_word(run, i, i + size)):
                    break
            else:
                out.append(run[i])
                i += 1
                continue
            out.append(target)
            i += size
        return "".join(out)

    def _cuts_word(self, run: str, start: int, end: int) -> bool:
        """True when run[start:end] splits a common word at either edge (才 of 人才)."""
        edges = (run[start - 1:start + 1] if start else "", run[end - 1:end + 1] if end < len(run) else "")
        return any(self._words.get(edge, 0) >= COMMON_WORD for edge in edges)

    def _correct_pinyin(self, run: str) -> str:
        pieces = split_pinyin(run)
        if pieces is None:
            return run
        keys = [fuzzy(p) for p in pieces]
        out = []
        i = 0
        while i < len(pieces):
            for size in range(min(MAX_TERM, len(pieces) - i), 1, -1):
                target = self._fuzzy.get(tuple(keys[i:i + size]))
                if target:
                    out.append(target)
                    i += size
                    break
            else:
                # Leftover syllables stay pinyin; neighbouring ones stay joined for re-splitting.
                if out and LATIN.match(out[-1]):
                    out[-1] += pieces[i]
                else:
                    out.append(pieces[i])
                i += 1
        return "".join(out)
