"""Small talk: greetings, thanks and acknowledgements, recognised from word lists (data)."""
from __future__ import annotations

import re
import unicodedata

from opencc import OpenCC

# WeChat sends its built-in emoticons as codes in brackets: [微笑], [抱拳], [OK].
EMOTICON = re.compile(r"\[[^\[\]\s]{1,6}\]|/:[^\s/]{1,8}")
# Everything that is not a letter, digit or Chinese character: punctuation, spaces, emoji.
NOT_WORD = re.compile(r"[^0-9a-z\u3400-\u4dbf\u4e00-\u9fff]+")
MAX_CHARS = 30

_T2S = OpenCC("t2s")


class SmallTalk:
    """Tells whether a message is only small talk, and which kind (greeting, thanks, ack)."""

    def __init__(self, words: dict[str, tuple[str, ...]]) -> None:
        self._kind: dict[str, str] = {}
        for kind, items in words.items():
            if kind == "particles":
                continue
            for item in items:
                self._kind.setdefault(self._clean(item), kind)
        self._kind.pop("", None)
        padding = [self._clean(p) for p in words.get("particles", ())]
        terms = sorted([*self._kind, *filter(None, padding)], key=len, reverse=True)
        self._pattern = re.compile("|".join(map(re.escape, terms))) if terms else None

    def kind(self, message: str) -> str | None:
        """'greeting', 'thanks' or 'ack' when the message is only small talk, else None."""
        if self._pattern is None or len(message) > MAX_CHARS or not message.strip():
            return None
        had_emoticon = bool(EMOTICON.search(message))
        text = self._clean(EMOTICON.sub(" ", message))
        if not text:
            # Only emoji or WeChat emoticons (👍, [微笑]): a friendly acknowledgement.
            # Bare punctuation (？？) is not: it may be a confused user.
            return "ack" if had_emoticon or any(_is_emoji(c) for c in message) else None
        found: list[str] = []

        def take(m: re.Match[str]) -> str:
            found.append(m.group(0))
            return ""

        rest = self._pattern.sub(take, text)
        kinds = [self._kind[w] for w in found if w in self._kind]
        if rest or not kinds:
            return None
        # "你好，谢谢" thanks; "好的谢谢" thanks; a greeting wins over a plain acknowledgement.
        for kind in ("thanks", "greeting", "ack"):
            if kind in kinds:
                return kind
        return kinds[0]

    @staticmethod
    def _clean(text: str) -> str:
        text = _T2S.convert(unicodedata.normalize("NFKC", text)).lower()
        return NOT_WORD.sub("", text)


def _is_emoji(char: str) -> bool:
    """Pictographs and symbols (👍 😀 ✌ ❤), not punctuation or invisible characters."""
    return unicodedata.category(char) == "So"
