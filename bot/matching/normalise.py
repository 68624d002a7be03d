"""Text normalisation: the same question typed in different ways becomes the same text.

Full-width forms, traditional characters, case, punctuation, emoji, spoken fillers,
"A-not-A" questions and Chinese numerals are folded, so later steps see one spelling.
"""
from __future__ import annotations

import re
import unicodedata

import cn2an
from opencc import OpenCC

# Long voice transcriptions say what they want early; the cut keeps matching fast.
MAX_INPUT_CHARS = 600
MAX_QUERY_CHARS = 200

# Spoken padding that carries no meaning; longest first so 我想问一下 goes before 问一下.
FILLERS = (
    "麻烦问一下", "麻烦问下", "我想问一下", "我想问下", "我想了解一下", "想问一下", "想问下",
    "请问一下", "打听一下", "请问", "问一下", "你好", "您好", "那个", "这个", "就是说",
    "然后呢", "一下", "嗯", "呃", "哈", "啊", "噻", "嘛", "哦", "呀", "啦", "咧", "嘞",
)

CN_NUMBER = re.compile(
    r"(?:[0-9]+(?:\.[0-9]+)?|[零一二两三四五六七八九十]+)[十百千万亿][零一二两三四五六七八九十百千万亿0-9]*"
)
# "A-not-A" questions (要不要, 有没有, 允不允许) ask the same as the plain verb.
A_NOT_A = re.compile(r"([\u4e00-\u9fff])[不没]\1")
KEEP = re.compile(r"[^0-9a-z\u3400-\u4dbf\u4e00-\u9fff]+")
HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff]")
LATIN = re.compile(r"^[a-z]+$")
RUNS = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff]+|[a-z]+|[^a-z\u3400-\u4dbf\u4e00-\u9fff]+")
FILLER = re.compile("|".join(sorted(FILLERS, key=len, reverse=True)))

_T2S = OpenCC("t2s")


def normalise(text: str) -> str:
    """Lower-case simplified Chinese without punctuation, emoji, spaces, fillers or A-not-A."""
    text = unicodedata.normalize("NFKC", text[:MAX_INPUT_CHARS])
    text = _T2S.convert(text).lower()
    text = KEEP.sub("", text)
    text = FILLER.sub("", text)
    text = A_NOT_A.sub(r"\1", text)
    return CN_NUMBER.sub(_arabic, text)


def _arabic(m: re.Match[str]) -> str:
    """五万 -> 50000, 2万 -> 20000; leaves words like 十佳 alone (no magnitude after them)."""
    try:
        value = cn2an.cn2an(m.group(0), "smart")
    except (ValueError, KeyError):
        return m.group(0)
    return str(int(value)) if float(value).is_integer() else str(value)
