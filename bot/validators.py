"""Parsing of form answers: phone, ID card, name, loan amount, township and village.

Each parser returns the cleaned value or raises Invalid with a short English reason code;
handlers turn the code into a Chinese hint. Full-width digits, spaces and dashes are
accepted wherever people type numbers, and answers may come as a sentence, typed or
spoken ("我的手机是一三九…", "我叫王秀英", "我是城关镇东门村的").
"""
from __future__ import annotations

import datetime as dt
import re
import unicodedata
from dataclasses import dataclass

import cn2an
from rapidfuzz import fuzz


class Invalid(ValueError):
    """An answer that cannot be used; `code` says why (e.g. "checksum")."""

    def __init__(self, code: str):
        super().__init__(code)
        self.code = code


def normalise(text: str) -> str:
    """Full-width letters and digits to ASCII (NFKC), trimmed."""
    return unicodedata.normalize("NFKC", text).strip()


def compact_number(text: str) -> str:
    """A typed number without spaces, dashes or dots used as separators."""
    return re.sub(r"[\s\-‐‑–—_.·]", "", normalise(text))


# Digits read out one by one, as voice input transcribes them (幺 is how 1 is said).
_SPOKEN_DIGITS = str.maketrans("零〇幺一二两三四五六七八九", "0011223456789")
_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff]")


def spoken_digits(text: str) -> str:
    """Chinese digit characters to ASCII digits ("一三九" -> "139"), nothing else changed."""
    return normalise(text).translate(_SPOKEN_DIGITS)


def _number_in(text: str, pattern: str) -> str:
    """The number in an answer: the whole answer, or the one number in a sentence."""
    number = compact_number(spoken_digits(text)).upper()
    if _CJK.search(number):  # a sentence ("我的手机是…"): take the number it holds
        runs = re.findall(pattern, number)
        if len(runs) == 1:
            return runs[0]
    return number


def has_number(text: str, digits: int = 6) -> bool:
    """The answer holds a number of at least that many digits (an attempt at one)."""
    return re.search(rf"\d{{{digits},}}", compact_number(spoken_digits(text))) is not None


# --- mobile phone ------------------------------------------------------------------------

def parse_phone(text: str) -> str:
    """A mainland mobile number: 11 digits starting 1[3-9]; +86 / 86 prefixes dropped."""
    digits = _number_in(text, r"\+?\d{6,}")
    digits = re.sub(r"^(\+?86)(?=1\d{10}$)", "", digits)
    if not digits.isdigit():
        raise Invalid("chars")
    if len(digits) != 11:
        raise Invalid("length")
    if not re.fullmatch(r"1[3-9]\d{9}", digits):
        raise Invalid("prefix")
    return digits


# --- ID card (GB 11643-1999) ----------------------------------------------------------

_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"


def id_check_digit(first17: str) -> str:
    """The GB 11643 check character for the first 17 digits."""
    return _ID_CHECK[sum(int(d) * w for d, w in zip(first17, _ID_WEIGHTS, strict=True)) % 11]


def parse_id_number(text: str, today: dt.date) -> str:
    """An 18-character resident ID: 17 digits, a real birth date, the right check digit."""
    number = _number_in(text, r"\d{6,}X?")
    if len(number) != 18:
        raise Invalid("length")
    if not (number[:17].isdigit() and (number[17].isdigit() or number[17] == "X")):
        raise Invalid("chars")
    try:
        born = dt.date(int(number[6:10]), int(number[10:12]), int(number[12:14]))
    except ValueError:
        raise Invalid("birth") from None
    if born.year < 1900 or born > today:
        raise Invalid("birth")
    if id_check_digit(number[:17]) != number[17]:
        raise Invalid("checksum")
    return number


# --- name --------------------------------------------------------------------------------

_CHINESE_NAME = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff]+(?:·[\u3400-\u4dbf\u4e00-\u9fff]+)*")
_LATIN_NAME = re.compile(r"[A-Za-z]+(?:[ .·'\-][A-Za-z]+)*")


# How people introduce themselves before their name, and pointers that are no name.
_NAME_PREAMBLE = re.compile(r"^(?:(?:我的)?(?:名字|姓名)(?:是|叫|为)?|本人(?:是|叫)?|我(?:是|叫)|叫)"
                            r"[:：,， ]*")
_POINTER = re.compile(r"(第[\d一二三四五六七八九十]+[个位项条种门]?|[这那哪][个位项条种门])[吧啊呀]?")


def parse_name(text: str) -> str:
    """2-20 characters of Chinese (with · between parts) or Latin letters.

    "我叫王秀英" is 王秀英; "第三个" (a choice from a list) raises Invalid("pointer").
    """
    name = re.sub(r"[•・‧∙⋅]", "·", normalise(text))
    name = re.sub(r"\s+", " ", name)
    if _POINTER.fullmatch(name):
        raise Invalid("pointer")
    introduced = _NAME_PREAMBLE.sub("", name)
    if introduced != name and 2 <= len(introduced):
        name = introduced
    if not 2 <= len(name) <= 20:
        raise Invalid("length")
    if not (_CHINESE_NAME.fullmatch(name) or _LATIN_NAME.fullmatch(name)):
        raise Invalid("chars")
    return name


# --- loan amount ---------------------------------------------------------------------

_UNIT = re.compile(r"(元|块钱|块|人民币|rmb)$", re.IGNORECASE)
# What an amount can be written with; anything else (a question typed at this step) is
# refused before cn2an, which takes a while to say no.
_AMOUNT_CHARS = re.compile(r"[\d.负零〇一二两三四五六七八九十百千万亿壹贰叁肆伍陆柒捌玖拾佰仟点]+")


def parse_amount(text: str) -> int:
    """Yuan as an integer from 5万, 五万, 三万五, 3.5万, 50000元, 5w, 50,000."""
    raw = normalise(text).replace(",", "").replace("，", "").replace(" ", "")
    raw = _UNIT.sub("", raw)
    raw = re.sub(r"(?<=[\d.])[wW]$", "万", raw)
    if not raw:
        raise Invalid("empty")
    if not _AMOUNT_CHARS.fullmatch(raw):
        raise Invalid("number")
    try:
        value = float(raw) if re.fullmatch(r"\d+(\.\d+)?", raw) else cn2an.cn2an(raw, "smart")
    except ValueError:
        raise Invalid("number") from None
    if value != int(value):
        raise Invalid("fraction")
    if value <= 0:
        raise Invalid("positive")
    return int(value)


# --- township --------------------------------------------------------------------------

_SUFFIX = re.compile(r"(街道办事处|街道|镇|乡)$")


@dataclass(frozen=True)
class PlaceMatch:
    """The best township for what was typed; sure=False means ask the user to confirm."""
    name: str
    sure: bool


# How people say where they live around the place names.
_PLACE_PREAMBLE = re.compile(r"^(我是|我住在|我家住在|我家在|住在|家在|我在|在)")
_PLACE_ENDING = re.compile(r"(的人|的|人)$")
_VILLAGE = re.compile(r".{1,28}(村|社区|居委会)")


def place_words(text: str) -> str:
    """An address answer without "我是…的" around it."""
    typed = normalise(text).replace(" ", "")
    return _PLACE_ENDING.sub("", _PLACE_PREAMBLE.sub("", typed)) or typed


def match_address(text: str, townships: tuple[str, ...]) -> tuple[PlaceMatch, str]:
    """The township and, when the answer names one after it, the village ("" if not)."""
    typed = place_words(text)
    for name in townships:
        at = typed.find(name)
        if at >= 0:
            village = typed[at + len(name):]
            return PlaceMatch(name, True), village if _VILLAGE.fullmatch(village) else ""
    return match_township(typed, townships), ""


def match_township(text: str, townships: tuple[str, ...]) -> PlaceMatch:
    """Fuzzy-match a township name; raise Invalid("unknown") when nothing is close."""
    typed = normalise(text).replace(" ", "")
    if not townships:
        if 2 <= len(typed) <= 20:
            return PlaceMatch(typed, True)
        raise Invalid("unknown")
    stem = _SUFFIX.sub("", typed)
    for name in townships:
        if typed == name or (stem and stem == _SUFFIX.sub("", name)):
            return PlaceMatch(name, True)
    # A township named at the start of a longer answer ("石桥镇石门村") counts as sure.
    for name in townships:
        if typed.startswith(name):
            return PlaceMatch(name, True)
    best_score, best = max((fuzz.ratio(stem, _SUFFIX.sub("", n)), n) for n in townships)
    if best_score >= 50:
        return PlaceMatch(best, False)
    raise Invalid("unknown")
