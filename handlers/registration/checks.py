"""The checks of the forms' answers, each with the hint that says what was wrong."""
from __future__ import annotations

import functools
import re
from datetime import datetime

from rapidfuzz import fuzz, process

from bot import clock
from bot.dialogue import Check, Dialogue
from bot.labels import yuan
from bot.router import Context
from bot.storage import applications
from bot.validators import (
    Invalid,
    has_number,
    match_address,
    normalise,
    parse_amount,
    parse_id_number,
    parse_name,
    parse_phone,
    place_words,
    spoken_digits,
)
from handlers.registration.submit import TRAINING, describe, profile

YES_WORDS = ("是", "是的", "对", "对的", "嗯", "好", "好的", "可以", "确认", "确定", "要", "沿用",
             "还用", "用", "yes", "y")
NO_WORDS = ("否", "不是", "不", "没有", "不用", "不要", "不对", "重新填", "重新填写", "no", "n")
CONFIRM_WORDS = ("确认", "确定", "提交", "确认提交", "确认无误", "没问题")
# A sentence that starts with one of these is a yes ("是的，在外面打了十年工") or a no.
_YES_OPENINGS = ("是的", "是啊", "是", "对的", "对", "嗯", "没错")
_NO_OPENINGS = ("不是", "没有", "不对", "否")
# The examples the industry question gives, so "养殖那个" can point at one of them.
INDUSTRY_EXAMPLES = ("茶叶种植", "生态养殖", "农村电商")
# Words around a choice from a list: "养殖那个", "我要报茶叶的", "第二个".
_POINTING = re.compile(r"那个|这个|那种|这种|那门|这门|那一个|这一个")
_FILLER = re.compile(r"^(我要报|我想报|我要学|我想学|我要|我想|报|学)|(的|吧|啊|呀|课|班)$")
_ORDINAL = re.compile(r"第?([1-9]|[一二三四五六七八九])[个门项]?")

_RUNNING = ("已经", "在经营", "正在", "经营中", "开了", "在做", "运营")
_PLANNED = ("准备", "计划", "打算", "还没", "筹备", "想开", "新开", "没开")
# A question typed where an answer was expected: sure signs, and words that are only
# a question when the knowledge base knows the topic ("买什么设备" is a fine purpose).
_QUESTION = re.compile(r"[?？]|[吗呢么]$")
_QUESTION_WORDS = re.compile(r"怎么|什么|多少|如何|能不能|可不可以|哪里|哪些|为什么|咋")
_TRAILING = re.compile(r"[\s。．.！!，,~～]+$")


@functools.lru_cache(maxsize=64)  # asked of the same text by several routes per message
def plain(text: str) -> str:
    """Text as compared with command words: NFKC, no trailing punctuation, lower case."""
    return _TRAILING.sub("", normalise(text)).lower()


def trimmed(text: str) -> str:
    """An answer without the full stop voice transcripts (and some typists) end with."""
    return _TRAILING.sub("", text.strip())


def yes_no(text: str) -> bool | None:
    """True for a yes, False for a no, None for neither; a sentence counts by how it starts."""
    typed = plain(text)
    if typed in YES_WORDS:
        return True
    if typed in NO_WORDS:
        return False
    if typed.startswith(_NO_OPENINGS):
        return False
    for opening in _YES_OPENINGS:
        # "是不是…" and "对不对" are questions, not a yes.
        if typed.startswith(opening) and not typed[len(opening):].startswith(("不", "否")):
            return True
    return None


def is_reply_word(text: str) -> bool:
    """A word that answers the bot ("确认", "好的"), never a name or a place."""
    typed = plain(text)
    return typed in YES_WORDS or typed in NO_WORDS or typed in CONFIRM_WORDS


def check_course(text: str, ctx: Context, d: Dialogue) -> Check:
    """A course by its number in the list or by (part of) its name."""
    courses = ctx.settings.courses
    typed = _FILLER.sub("", _POINTING.sub("", normalise(text).replace(" ", ""))) or text
    ordinal = _ORDINAL.fullmatch(typed)
    number = int(spoken_digits(ordinal.group(1))) if ordinal else 0
    chosen = None
    if 1 <= number <= len(courses):
        chosen = courses[number - 1]
    elif typed and not typed.isdigit():
        names = [c.name for c in courses]
        contained = [c for c in courses if typed in c.name or c.name in typed]
        if len(contained) == 1:
            chosen = contained[0]
        else:
            best = process.extractOne(typed, names, scorer=fuzz.ratio, score_cutoff=60)
            chosen = courses[best[2]] if best else None
    if chosen is None:
        return Check(hint=f"没找到这门课程，请回复课程编号（1到{len(courses)}）。")
    existing = applications.open_application(ctx.db, d.openid, TRAINING, chosen.id)
    if existing is not None:
        return Check(hint=f"您已经报名了“{chosen.name}”，不用重复报名：\n{describe(existing)}\n\n"
                          "可以选择其他课程，或回复“取消”退出。")
    return Check(chosen.id)


def check_reuse(text: str, ctx: Context, d: Dialogue) -> Check:
    """Yes fills the identity questions from the last application; no asks them."""
    answer = yes_no(text)
    if answer is None:
        return Check(hint="请回复“是”沿用上次的信息，或回复“否”重新填写。")
    saved = profile(ctx, d.openid) if answer else None
    if answer and saved is None:  # the profile vanished: ask the questions instead
        return Check(False)
    return Check(answer, also=saved or {})


def check_name(text: str, ctx: Context, d: Dialogue) -> Check:
    """A person's name."""
    if is_reply_word(text):
        return Check(hint="这里请填写您的姓名，例如：张三。")
    try:
        return Check(parse_name(text))
    except Invalid as exc:
        if exc.code == "pointer":
            return Check(hint="这里请填写您的姓名，例如：张三。")
        if exc.code == "length":
            return Check(hint="姓名要2到20个字，请再输入一次。")
        return Check(hint="姓名只能是汉字或字母（少数民族姓名中间可以用“·”），请再输入一次。")


_PHONE_HINTS = {
    "chars": "手机号只能是数字，请再核对一下。",
    "length": "手机号应该是11位数字，请再核对一下。",
    "prefix": "手机号应该以13到19开头，请再核对一下。",
}


def check_phone(text: str, ctx: Context, d: Dialogue) -> Check:
    """A mainland mobile number."""
    try:
        return Check(parse_phone(text))
    except Invalid as exc:
        return Check(hint=_PHONE_HINTS[exc.code], attempted=has_number(text))


_ID_HINTS = {
    "length": "身份证号应该是18位，请再核对一下。",
    "chars": "身份证号前17位是数字，最后一位是数字或X，请再核对一下。",
    "birth": "身份证号里的出生日期不对，请再核对一下。",
    "checksum": "身份证号最后一位校验不对，请再核对一下。",
}


def check_id_number(text: str, ctx: Context, d: Dialogue) -> Check:
    """A resident ID card number with a valid birth date and check digit."""
    today = datetime.fromtimestamp(ctx.now(), clock.CHINA_TZ).date()
    try:
        return Check(parse_id_number(text, today))
    except Invalid as exc:
        return Check(hint=_ID_HINTS[exc.code], attempted=has_number(text))


def check_township(text: str, ctx: Context, d: Dialogue) -> Check:
    """One of the county's townships (a near miss is confirmed first), and the village
    too when the answer names it ("我是城关镇东门村的")."""
    towns = ctx.settings.county.townships
    try:
        found, village = match_address(text, towns)
    except Invalid:
        listed = f"本县的乡镇有：{'、'.join(towns)}。" if towns else ""
        return Check(hint=f"没找到这个乡镇。{listed}请再输入一次。")
    also = {"village": village} if village else {}
    if found.sure:
        return Check(found.name, also=also)
    return Check(found.name, also=also,
                 confirm=f"您说的是“{found.name}”吗？回复“是”确认，或重新输入乡镇名。")


def check_village(text: str, ctx: Context, d: Dialogue) -> Check:
    """A village or neighbourhood name."""
    return free_text(place_words(text), ctx, 2, 30, "请输入村（社区）的名字，例如：石门村。")


def check_returning(text: str, ctx: Context, d: Dialogue) -> Check:
    """Yes or no: is the applicant a returning migrant worker."""
    answer = yes_no(text)
    if answer is None:
        return Check(hint="请回复“是”或“否”。")
    return Check(answer)


_AMOUNT_HINTS = {
    "empty": "请告诉我金额，例如：5万、三万五 或 30000元。",
    "number": "没看懂这个金额，请像这样回复：5万、三万五 或 30000元。",
    "fraction": "金额请精确到元，例如：35000元。",
    "positive": "金额要大于0，请重新输入。",
}


def check_amount(text: str, ctx: Context, d: Dialogue) -> Check:
    """A loan amount in yuan, up to the configured ceiling."""
    try:
        amount = parse_amount(text)
    except Invalid as exc:
        return Check(hint=_AMOUNT_HINTS[exc.code])
    ceiling = ctx.settings.loan.ceiling_yuan
    if amount > ceiling:
        return Check(hint=f"贴息贷款最多可以申请{yuan(ceiling)}，您填的是{yuan(amount)}，请重新输入金额。")
    return Check(amount)


def check_purpose(text: str, ctx: Context, d: Dialogue) -> Check:
    """What the loan is for, in a sentence."""
    return free_text(text, ctx, 2, 100, "请用一句话说明贷款用途，例如：扩建茶厂、买种苗和饲料。")


def check_industry(text: str, ctx: Context, d: Dialogue) -> Check:
    """The applicant's line of business; "养殖那个" picks the example it points at."""
    if _POINTING.search(text):
        part = _FILLER.sub("", _POINTING.sub("", plain(text)))
        picked = [name for name in INDUSTRY_EXAMPLES if part and part in name]
        if len(picked) == 1:
            return Check(picked[0])
    return free_text(text, ctx, 2, 30, f"请说一下您做的行业，例如：{'、'.join(INDUSTRY_EXAMPLES)}。")


def check_stage(text: str, ctx: Context, d: Dialogue) -> Check:
    """Whether the business is running already or planned."""
    typed = plain(text)
    if typed in ("1", "一") or any(w in typed for w in _RUNNING):
        return Check("running")
    if typed in ("2", "二") or any(w in typed for w in _PLANNED):
        return Check("planned")
    return Check(hint="请回复 1（已经在经营）或 2（准备开办）。")


def free_text(text: str, ctx: Context, shortest: int, longest: int, hint: str) -> Check:
    """Any short text, except a reply word ("好的") or a policy question."""
    value = re.sub(r"\s+", " ", normalise(text))
    if not shortest <= len(value) <= longest or is_reply_word(value) or _QUESTION.search(value):
        return Check(hint=hint)
    if _QUESTION_WORDS.search(value) and ctx.library.match(value).band == "answer":
        return Check(hint=hint)
    return Check(value)
