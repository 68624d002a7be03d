"""Training registration (培训报名) and loan applications (贷款申请), and "查询进度".

One question per message; the engine in bot/dialogue.py keeps the answers. This module
holds the wording, the checks' hints and what happens on submission. While a form is
active it sees every text before the menu and the matcher, except the menu words, which
pause it; a paused form is left alone until the user says "继续报名" / "继续申请".
start_training, start_loan and show_status are also run by the menu (4, 5, 6) and by the
matcher's service topics (handlers/services.py ACTIONS).
"""
from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable
from datetime import datetime

from rapidfuzz import fuzz, process

from bot import clock, labels
from bot import dialogue as engine
from bot.dialogue import SUMMARY, Check, Dialogue, Field, Form
from bot.privacy import mask_id, mask_phone
from bot.router import Context, Inbound, Reply, Router
from bot.settings import Course
from bot.storage import applications, user_state
from bot.validators import (
    Invalid,
    match_township,
    normalize,
    parse_amount,
    parse_id_number,
    parse_name,
    parse_phone,
)
from handlers.paging import MORE_WORDS
from handlers.texts import MENU_WORDS

router = Router()

TRAINING, LOAN = "training", "loan"
PREFIX = {TRAINING: "PX", LOAN: "DK"}
TITLE = labels.APPLICATION_TYPES
RESUME_WORD = {TRAINING: "继续报名", LOAN: "继续申请"}
START_WORD = {TRAINING: "报名培训", LOAN: "申请贷款"}

TRAINING_WORDS = ("我要报名培训", "报名培训", "培训报名", "我要报名", "报名", "我要培训")
LOAN_WORDS = ("我要申请贷款", "申请贷款", "贷款申请", "我要贷款")
STATUS_WORDS = ("查询进度", "我的申请", "进度", "查进度", "查询申请", "申请进度")
RESUME_WORDS = ("继续报名", "继续申请", "继续填写", "接着填")
CANCEL_WORDS = ("取消", "取消报名", "取消申请", "不填了", "退出")
BACK_WORDS = ("上一步", "返回上一步", "上一题", "返回")
CONFIRM_WORDS = ("确认", "确定", "提交", "确认提交", "确认无误", "没问题")
YES_WORDS = ("是", "是的", "对", "对的", "嗯", "好", "好的", "可以", "确认", "确定", "要", "沿用",
             "还用", "用", "yes", "y")
NO_WORDS = ("否", "不是", "不", "没有", "不用", "不要", "不对", "重新填", "重新填写", "no", "n")
EDIT_PREFIX = re.compile(r"^(我要|我想)?(修改|更改|改一下|改)")

_RUNNING = ("已经", "在经营", "正在", "经营中", "开了", "在做", "运营")
_PLANNED = ("准备", "计划", "打算", "还没", "筹备", "想开", "新开", "没开")
# A question typed where an answer was expected: sure signs, and words that are only
# a question when the knowledge base knows the topic ("买什么设备" is a fine purpose).
_QUESTION = re.compile(r"[?？]|[吗呢么]$")
_QUESTION_WORDS = re.compile(r"怎么|什么|多少|如何|能不能|可不可以|哪里|哪些|为什么|咋")
_TRAILING = re.compile(r"[\s。．.！!，,~～]+$")


# --- entry points (also called by the main menu and by policy answers) --------------------


@router.click("MENU_TRAINING")
@router.add(lambda m: m.kind == "text" and _plain(m.text) in TRAINING_WORDS)
def start_training(inbound: Inbound, ctx: Context) -> Reply:
    """Begin (or resume) the training registration."""
    return _start(TRAINING, inbound, ctx)


@router.click("MENU_LOAN")
@router.add(lambda m: m.kind == "text" and _plain(m.text) in LOAN_WORDS)
def start_loan(inbound: Inbound, ctx: Context) -> Reply:
    """Begin (or resume) the loan application."""
    return _start(LOAN, inbound, ctx)


@router.click("MENU_STATUS")
@router.add(lambda m: m.kind == "text" and _plain(m.text) in STATUS_WORDS)
def show_status(inbound: Inbound, ctx: Context) -> Reply:
    """The user's applications with status and staff notes; the open form, if any, goes on."""
    dialogues = _dialogues(ctx, inbound.openid)
    rows = applications.applications_for(ctx.db, inbound.openid)
    if rows:
        text = "您的申请：\n\n" + "\n\n".join(_describe(row) for row in rows)
    else:
        text = "您还没有提交过申请。回复“报名培训”或“申请贷款”开始办理。"
    for d in dialogues:
        if d.status != engine.ACTIVE:
            text += f"\n\n您还有一份没填完的{TITLE[d.form]}，回复“{RESUME_WORD[d.form]}”接着填。"
    active = _active(dialogues, ctx)
    if active is not None:
        text += f"\n\n——\n接着填{TITLE[active.form]}：\n" + _prompt(active, ctx)
    return Reply(text=text)


@router.add(lambda m: m.kind == "text" and _plain(m.text) in RESUME_WORDS)
def resume_form(inbound: Inbound, ctx: Context) -> Reply:
    """Continue a paused or expired form where it stopped."""
    word = _plain(inbound.text)
    # "继续报名" / "继续申请" name the form; "继续填写" takes the most recent one.
    forms = [kind for kind, resume in RESUME_WORD.items() if resume == word] or list(RESUME_WORD)
    dialogues = _dialogues(ctx, inbound.openid)
    wanted = [d for d in dialogues if d.form in forms]
    if not wanted:
        start = "”或“".join(START_WORD[kind] for kind in forms)
        return Reply(text=f"没有可以接着填的内容（超过{ctx.settings.dialogue.resume_hours}小时的会自动清除）。"
                          f"回复“{start}”重新开始。")
    return _resume(wanted[0], dialogues, ctx)


@router.text
def continue_form(inbound: Inbound, ctx: Context) -> Reply | None:
    """The answer to the active form's pending question (or 取消 / 上一步 / a question)."""
    text = _plain(inbound.text)
    if text in MORE_WORDS or text in MENU_WORDS:
        return None  # the next page of a long answer; the menu (which pauses the form)
    dialogue = _active(_dialogues(ctx, inbound.openid), ctx)
    if dialogue is None:
        return None
    reply = _advance(dialogue, inbound.text, ctx)
    if dialogue.status != engine.DROPPED:
        engine.save(ctx.db, ctx.vault, dialogue, ctx.now())
    return reply


@router.after
def tidy_forms(inbound: Inbound, ctx: Context, reply: Reply) -> Reply:
    """After any text: pause the form on 菜单, and expire idle forms with a note first."""
    if inbound.kind != "text":
        return reply
    settings = ctx.settings.dialogue
    now = ctx.now()
    notes = []
    for d in _stored(ctx, inbound.openid):
        if d.status == engine.DROPPED:
            continue
        if not engine.is_resumable(d, now, settings.resume_hours * 3600):
            if d.status == engine.ACTIVE:
                notes.append(f"您之前没填完的{TITLE[d.form]}已经过期，需要的话请重新开始。")
            engine.drop(ctx.db, d)
        elif engine.is_idle(d, now, settings.timeout_minutes * 60):
            # The resume window runs from the last answer.
            engine.set_status(ctx.db, d, engine.EXPIRED, d.updated_at)
            where = "确认提交" if d.step == SUMMARY else f"“{_short_label(d)}”"
            notes.append(f"您的{TITLE[d.form]}超过{settings.timeout_minutes}分钟没有回复，已经暂停。"
                         f"{settings.resume_hours}小时内回复“{RESUME_WORD[d.form]}”，可以从{where}接着填。")
        elif d.status == engine.ACTIVE and _plain(inbound.text) in MENU_WORDS:
            engine.set_status(ctx.db, d, engine.PAUSED, now)
            reply = reply.with_text(reply.text + f"\n\n（{TITLE[d.form]}已暂停，"
                                                 f"回复“{RESUME_WORD[d.form]}”可接着填。）")
    if notes:
        reply = Reply(text="\n".join(notes)) if reply.kind == "empty" else \
            reply.with_text("\n".join(notes) + "\n\n" + reply.text)
    return reply


# --- dialogue control --------------------------------------------------------------------


def _start(kind: str, inbound: Inbound, ctx: Context) -> Reply:
    dialogues = _dialogues(ctx, inbound.openid)
    mine = next((d for d in dialogues if d.form == kind), None)
    if mine is not None:
        return _resume(mine, dialogues, ctx)
    if kind == LOAN:
        existing = applications.open_application(ctx.db, inbound.openid, LOAN)
        if existing is not None:
            return Reply(text="您已经有一份贷款申请正在办理，不用重复申请：\n\n" + _describe(existing))
    elif not ctx.settings.courses:
        return Reply(text=f"目前没有开放报名的培训课程。有新课程会在这里通知，也可以打电话问："
                          f"{ctx.settings.county.hotline}")
    paused_note = _pause_others(dialogues, kind, ctx)
    # "Use last time's details?" only makes sense when there are some.
    answers = {} if _profile(ctx, inbound.openid) else {"reuse": False}
    form = FORMS[kind]
    dialogue = engine.begin(form, inbound.openid, ctx.now(), answers)
    engine.save(ctx.db, ctx.vault, dialogue, ctx.now())
    # Stored over any one of this form too old to resume, which tidy_forms must not drop.
    stored = _stored(ctx, inbound.openid)
    stored[:] = [dialogue] + [d for d in stored if d.form != kind]
    intro = (f"好的，开始{TITLE[kind]}，一共几个问题，每次回答一个。"
             "随时回复“上一步”返回上一题，回复“取消”退出。")
    return Reply(text=paused_note + intro + "\n\n" + _prompt(dialogue, ctx))


def _resume(dialogue: Dialogue, dialogues: list[Dialogue], ctx: Context) -> Reply:
    dialogue.cancelling = False  # coming back means the user wants to go on
    if dialogue.status == engine.ACTIVE:
        engine.save(ctx.db, ctx.vault, dialogue, ctx.now())
        return Reply(text=f"您正在填写{TITLE[dialogue.form]}，接着回答就好：\n\n" + _prompt(dialogue, ctx))
    paused_note = _pause_others(dialogues, dialogue.form, ctx)
    dialogue.status = engine.ACTIVE
    engine.save(ctx.db, ctx.vault, dialogue, ctx.now())
    return Reply(text=paused_note + f"好的，接着填{TITLE[dialogue.form]}，之前填的都还在。\n\n"
                      + _prompt(dialogue, ctx))


def _pause_others(dialogues: list[Dialogue], kind: str, ctx: Context) -> str:
    """Only one form is active at a time: pause another active one and say so."""
    for other in dialogues:
        if other.form != kind and other.status == engine.ACTIVE:
            other.status = engine.PAUSED
            engine.save(ctx.db, ctx.vault, other, ctx.now())
            return f"（{TITLE[other.form]}已暂停，回复“{RESUME_WORD[other.form]}”可接着填。）\n"
    return ""


def _advance(d: Dialogue, raw: str, ctx: Context) -> Reply:
    """Apply one message to the active dialogue; the caller saves it."""
    form = FORMS[d.form]
    text = _plain(raw)
    if d.cancelling:
        if text in YES_WORDS or text in CANCEL_WORDS:
            engine.drop(ctx.db, d)
            return Reply(text=f"已取消{TITLE[d.form]}，填写的内容没有保存。"
                              f"需要时回复“{START_WORD[d.form]}”重新开始。")
        if text in NO_WORDS:
            d.cancelling = False
            return Reply(text="好的，我们接着填。\n\n" + _prompt(d, ctx))
        return Reply(text="请回复“是”确认取消，或回复“否”接着填写。")
    if text in CANCEL_WORDS:
        d.cancelling = True
        return Reply(text=f"确定要取消{TITLE[d.form]}吗？已经填写的内容不会保存。\n"
                          "回复“是”确认取消，回复“否”接着填写。")
    if text in BACK_WORDS:
        if not engine.back(d):
            return Reply(text="已经是第一个问题了。\n\n" + _prompt(d, ctx))
        return Reply(text="好的，回到上一题。\n\n" + _prompt(d, ctx))
    if d.pending is not None:
        if text in YES_WORDS:
            engine.accept_pending(form, d)
            return _next(d, ctx)
        engine.forget_pending(d)
        if text in NO_WORDS:
            return Reply(text="好的，请重新输入。\n\n" + _prompt(d, ctx))
    if d.step == SUMMARY:
        return _at_summary(d, text, raw, ctx)
    # Voice transcripts end with "。"; typed answers often with a stray full stop.
    check = engine.give(form, d, _TRAILING.sub("", raw.strip()), ctx)
    if check.ok:
        return Reply(text=check.confirm) if check.confirm else _next(d, ctx)
    answered = _policy_answer(raw, d, ctx)
    if answered is not None:
        d.attempts -= 1  # a question is not a failed try
        return answered
    text = check.hint
    if d.attempts >= ctx.settings.dialogue.max_attempts:
        county = ctx.settings.county
        text += (f"\n\n填写有困难的话，可以回复“转人工”，或拨打{county.hotline}，"
                 f"也可以到{county.address}请工作人员帮您办理；回复“取消”可以先退出。")
    return Reply(text=text + "\n\n" + _prompt(d, ctx))


def _at_summary(d: Dialogue, text: str, raw: str, ctx: Context) -> Reply:
    form = FORMS[d.form]
    if text in CONFIRM_WORDS:
        return _submit(d, ctx)
    target = engine.find_field(form, d, EDIT_PREFIX.sub("", text).strip())
    if target is not None and (EDIT_PREFIX.match(text) or text.isdigit() or len(text) <= 6):
        engine.edit(d, target.key)
        return Reply(text=f"好的，修改{target.label}。\n\n" + _prompt(d, ctx))
    answered = _policy_answer(raw, d, ctx)
    if answered is not None:
        return answered
    return Reply(text="请回复“确认”提交；要修改某一项，回复“修改”加项目名（如“修改手机号”）或项目编号。\n\n"
                      + _summary(d, ctx))


def _next(d: Dialogue, ctx: Context) -> Reply:
    return Reply(text=_summary(d, ctx) if d.step == SUMMARY else _prompt(d, ctx))


def _policy_answer(raw: str, d: Dialogue, ctx: Context) -> Reply | None:
    """A policy question asked mid-form: answer it, then repeat the pending question."""
    match = ctx.library.match(raw)
    if match.band != "answer":
        return None
    pending = _summary(d, ctx) if d.step == SUMMARY else _prompt(d, ctx)
    return Reply(text=ctx.library.answer_text(match.topic_id)
                 + f"\n\n——\n接着填{TITLE[d.form]}：\n" + pending,
                 topic=match.topic_id, band=match.band)


def _dialogues(ctx: Context, openid: str) -> list[Dialogue]:
    """The user's forms still within the resume window (tidy_forms clears older ones)."""
    hours = ctx.settings.dialogue.resume_hours
    return [d for d in _stored(ctx, openid)
            if d.status != engine.DROPPED and engine.is_resumable(d, ctx.now(), hours * 3600)]


def _stored(ctx: Context, openid: str) -> list[Dialogue]:
    """All the user's stored forms, read once per message: the handler and tidy_forms
    share these objects, which engine.save, drop and set_status keep in step with storage
    (most text messages used to read the table twice)."""
    forms = ctx.memo.get("forms")
    if forms is None:
        forms = ctx.memo["forms"] = engine.load_all(ctx.db, ctx.vault, openid)
    return forms


def _active(dialogues: list[Dialogue], ctx: Context) -> Dialogue | None:
    """The form being filled in, unless it idled past the timeout (it expires after this reply)."""
    timeout = ctx.settings.dialogue.timeout_minutes * 60
    return next((d for d in dialogues
                 if d.status == engine.ACTIVE and not engine.is_idle(d, ctx.now(), timeout)), None)


# --- submission --------------------------------------------------------------------------


def _submit(d: Dialogue, ctx: Context) -> Reply:
    a = d.answers
    vault = ctx.vault
    record = {
        "type": d.form, "openid": d.openid, "name": a["name"],
        "phone_enc": vault.encrypt(a["phone"]), "phone_masked": mask_phone(a["phone"]),
        "id_enc": vault.encrypt(a["id_number"]), "id_masked": mask_id(a["id_number"]),
        "id_fingerprint": vault.fingerprint(a["id_number"]),
        "township": a["township"], "village": a["village"],
    }
    capacity = None
    if d.form == TRAINING:
        course = _course(ctx, a["course"])
        if course is None:  # the course left config.toml while the form was open
            engine.edit(d, "course")
            return Reply(text="这门课程已经停止报名，请重新选择。\n\n" + _prompt(d, ctx))
        record.update(course_id=course.id, course_name=course.name, returning_worker=int(a["returning"]))
        capacity = course.capacity
    else:
        record.update(amount_yuan=a["amount"], purpose=a["purpose"], industry=a["industry"],
                      stage=a["stage"])
    result = applications.add_application(ctx.db, record, PREFIX[d.form], ctx.now(), capacity)
    engine.drop(ctx.db, d)
    row = result.application
    if not result.created:
        if row["openid"] != d.openid:  # same ID number from another WeChat account: no details
            return Reply(text=f"这个身份证号已经有一份{TITLE[d.form]}正在办理，不用重复提交。"
                              f"有疑问请打电话：{ctx.settings.county.hotline}")
        return Reply(text="您已经有一份同样的申请正在办理，不用重复提交：\n\n" + _describe(row))
    identity = {k: a[k] for k in ("name", "phone", "id_number", "township", "village")}
    user_state.save_profile(ctx.db, d.openid, vault.encrypt(json.dumps(identity, ensure_ascii=False)), ctx.now())
    if d.form == TRAINING:
        text = f"报名成功！您的报名编号是：{row['ref']}\n课程：{row['course_name']}"
        if row["waitlist_position"]:
            text += f"\n这门课名额已满，您在候补名单第{row['waitlist_position']}位，有空位会通知您。"
        else:
            text += "\n工作人员审核后会电话联系您。"
    else:
        text = (f"申请已提交！您的申请编号是：{row['ref']}\n贷款金额：{_yuan(row['amount_yuan'])}"
                "\n工作人员审核后会电话联系您。")
    return Reply(text=text + "\n请记下编号，回复“查询进度”可随时查看办理情况。")


def _describe(row: dict) -> str:
    """One application for the user: reference, what, status, staff note, date."""
    what = (f"培训报名：{row['course_name']}" if row["type"] == TRAINING
            else f"贷款申请：{_yuan(row['amount_yuan'])}")
    status = row["status"]
    if row["waitlist_position"] and status in applications.OPEN_STATUSES:
        status += f"（候补第{row['waitlist_position']}位）"
    lines = [f"编号：{row['ref']}", what, f"状态：{status}"]
    if row["staff_note"]:
        lines.append(f"工作人员备注：{row['staff_note']}")
    when = datetime.fromtimestamp(row["created_at"], clock.CHINA_TZ)
    lines.append(f"提交时间：{when:%Y-%m-%d %H:%M}")
    return "\n".join(lines)


# --- questions and checks ------------------------------------------------------------


@functools.lru_cache(maxsize=64)  # asked of the same text by several routes per message
def _plain(text: str) -> str:
    """Text as compared with command words: NFKC, no trailing punctuation, lower case."""
    return _TRAILING.sub("", normalize(text)).lower()


def _yuan(amount: int) -> str:
    return f"{amount // 10000}万元" if amount % 10000 == 0 else f"{amount}元"


def _course(ctx: Context, course_id: str) -> Course | None:
    return next((c for c in ctx.settings.courses if c.id == course_id), None)


def _course_line(ctx: Context, course: Course, seats: bool = True) -> str:
    """Name, dates and place; with seats, how many are left or that it is full."""
    details = "，".join(x for x in (course.dates, course.place) if x)
    text = f"{course.name}（{details}）" if details else course.name
    left = course.capacity - applications.seats_taken(ctx.db, course.id)
    if left <= 0:
        return text + " 已满，可报名候补"
    return text + (f" 剩余{left}个名额" if seats else "")


def _prompt(d: Dialogue, ctx: Context) -> str:
    """The pending question (the summary when every field is answered)."""
    if d.step == SUMMARY:
        return _summary(d, ctx)
    return FORMS[d.form].field(d.step).prompt(ctx, d)


def _short_label(d: Dialogue) -> str:
    field = FORMS[d.form].field(d.step)
    return field.label or "上次的问题"


def _summary(d: Dialogue, ctx: Context) -> str:
    form = FORMS[d.form]
    lines = [f"请核对您的{TITLE[d.form]}信息："]
    for i, f in enumerate(form.summary_fields(d.answers), 1):
        value = d.answers[f.key]
        course = _course(ctx, value) if f.key == "course" else None
        shown = _course_line(ctx, course, seats=False) if course else f.show(value)
        lines.append(f"{i}. {f.label}：{shown}")
    lines.append("\n无误请回复“确认”提交；要修改某一项，回复“修改手机号”这样的项目名，或项目编号（如“3”）；"
                 "回复“取消”放弃。")
    return "\n".join(lines)


def _ask_course(ctx: Context, d: Dialogue) -> str:
    courses = ctx.settings.courses
    lines = [f"{i}. {_course_line(ctx, c)}" for i, c in enumerate(courses, 1)]
    return "请选择要报名的培训课程，回复编号（例如：1）：\n" + "\n".join(lines)


def _check_course(text: str, ctx: Context, d: Dialogue) -> Check:
    courses = ctx.settings.courses
    typed = normalize(text).replace(" ", "")
    chosen = None
    if typed.isdigit() and 1 <= int(typed) <= len(courses):
        chosen = courses[int(typed) - 1]
    elif typed:
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
        return Check(hint=f"您已经报名了“{chosen.name}”，不用重复报名：\n{_describe(existing)}\n\n"
                          "可以选择其他课程，或回复“取消”退出。")
    return Check(chosen.id)


def _ask_reuse(ctx: Context, d: Dialogue) -> str:
    p = _profile(ctx, d.openid) or {}
    return ("还用上次的信息吗？\n"
            f"姓名：{p.get('name', '')}\n手机号：{mask_phone(p.get('phone', ''))}\n"
            f"身份证号：{mask_id(p.get('id_number', ''))}\n"
            f"住址：{p.get('township', '')}{p.get('village', '')}\n"
            "回复“是”沿用，回复“否”重新填写。")


def _check_reuse(text: str, ctx: Context, d: Dialogue) -> Check:
    answer = _yes_no(text)
    if answer is None:
        return Check(hint="请回复“是”沿用上次的信息，或回复“否”重新填写。")
    profile = _profile(ctx, d.openid) if answer else None
    if answer and profile is None:  # the profile vanished: ask the questions instead
        return Check(False)
    return Check(answer, also=profile or {})


def _profile(ctx: Context, openid: str) -> dict | None:
    token = user_state.load_profile(ctx.db, openid)
    try:
        return json.loads(ctx.vault.decrypt(token)) if token else None
    except ValueError:  # saved under a replaced key: ask the questions again
        return None


def _check_name(text: str, ctx: Context, d: Dialogue) -> Check:
    if _is_reply_word(text):
        return Check(hint="这里请填写您的姓名，例如：张三。")
    try:
        return Check(parse_name(text))
    except Invalid as exc:
        if exc.code == "length":
            return Check(hint="姓名要2到20个字，请再输入一次。")
        return Check(hint="姓名只能是汉字或字母（少数民族姓名中间可以用“·”），请再输入一次。")


_PHONE_HINTS = {
    "chars": "手机号只能是数字，请再核对一下。",
    "length": "手机号应该是11位数字，请再核对一下。",
    "prefix": "手机号应该以13到19开头，请再核对一下。",
}


def _check_phone(text: str, ctx: Context, d: Dialogue) -> Check:
    try:
        return Check(parse_phone(text))
    except Invalid as exc:
        return Check(hint=_PHONE_HINTS[exc.code])


_ID_HINTS = {
    "length": "身份证号应该是18位，请再核对一下。",
    "chars": "身份证号前17位是数字，最后一位是数字或X，请再核对一下。",
    "birth": "身份证号里的出生日期不对，请再核对一下。",
    "checksum": "身份证号最后一位校验不对，请再核对一下。",
}


def _check_id_number(text: str, ctx: Context, d: Dialogue) -> Check:
    today = datetime.fromtimestamp(ctx.now(), clock.CHINA_TZ).date()
    try:
        return Check(parse_id_number(text, today))
    except Invalid as exc:
        return Check(hint=_ID_HINTS[exc.code])


def _ask_township(ctx: Context, d: Dialogue) -> str:
    towns = ctx.settings.county.townships
    example = towns[0] if towns else "城关镇"
    listed = f"\n本县乡镇：{'、'.join(towns)}" if towns else ""
    return f"您住在哪个乡镇？（例如：{example}）" + listed


def _check_township(text: str, ctx: Context, d: Dialogue) -> Check:
    towns = ctx.settings.county.townships
    try:
        found = match_township(text, towns)
    except Invalid:
        listed = f"本县的乡镇有：{'、'.join(towns)}。" if towns else ""
        return Check(hint=f"没找到这个乡镇。{listed}请再输入一次。")
    if found.sure:
        return Check(found.name)
    return Check(found.name, confirm=f"您说的是“{found.name}”吗？回复“是”确认，或重新输入乡镇名。")


def _check_village(text: str, ctx: Context, d: Dialogue) -> Check:
    return _free_text(text, ctx, 2, 30, "请输入村（社区）的名字，例如：石门村。")


def _check_returning(text: str, ctx: Context, d: Dialogue) -> Check:
    answer = _yes_no(text)
    if answer is None:
        return Check(hint="请回复“是”或“否”。")
    return Check(answer)


def _ask_amount(ctx: Context, d: Dialogue) -> str:
    ceiling = _yuan(ctx.settings.loan.ceiling_yuan)
    return f"您想申请多少贷款？最多{ceiling}。\n（例如：5万、三万五、30000元）"


_AMOUNT_HINTS = {
    "empty": "请告诉我金额，例如：5万、三万五 或 30000元。",
    "number": "没看懂这个金额，请像这样回复：5万、三万五 或 30000元。",
    "fraction": "金额请精确到元，例如：35000元。",
    "positive": "金额要大于0，请重新输入。",
}


def _check_amount(text: str, ctx: Context, d: Dialogue) -> Check:
    try:
        amount = parse_amount(text)
    except Invalid as exc:
        return Check(hint=_AMOUNT_HINTS[exc.code])
    ceiling = ctx.settings.loan.ceiling_yuan
    if amount > ceiling:
        return Check(hint=f"贴息贷款最多可以申请{_yuan(ceiling)}，您填的是{_yuan(amount)}，请重新输入金额。")
    return Check(amount)


def _check_purpose(text: str, ctx: Context, d: Dialogue) -> Check:
    return _free_text(text, ctx, 2, 100, "请用一句话说明贷款用途，例如：扩建茶厂、买种苗和饲料。")


def _check_industry(text: str, ctx: Context, d: Dialogue) -> Check:
    return _free_text(text, ctx, 2, 30, "请说一下您做的行业，例如：茶叶种植、生态养殖、农村电商。")


def _ask_stage(ctx: Context, d: Dialogue) -> str:
    return "项目现在是什么情况？\n1. 已经在经营\n2. 准备开办\n请回复 1 或 2。"


def _check_stage(text: str, ctx: Context, d: Dialogue) -> Check:
    typed = _plain(text)
    if typed in ("1", "一") or any(w in typed for w in _RUNNING):
        return Check("running")
    if typed in ("2", "二") or any(w in typed for w in _PLANNED):
        return Check("planned")
    return Check(hint="请回复 1（已经在经营）或 2（准备开办）。")


def _free_text(text: str, ctx: Context, shortest: int, longest: int, hint: str) -> Check:
    """Any short text, except a reply word ("好的") or a policy question."""
    value = re.sub(r"\s+", " ", normalize(text))
    if not shortest <= len(value) <= longest or _is_reply_word(value) or _QUESTION.search(value):
        return Check(hint=hint)
    if _QUESTION_WORDS.search(value) and ctx.library.match(value).band == "answer":
        return Check(hint=hint)
    return Check(value)


def _is_reply_word(text: str) -> bool:
    """A word that answers the bot ("确认", "好的"), never a name or a place."""
    typed = _plain(text)
    return typed in YES_WORDS or typed in NO_WORDS or typed in CONFIRM_WORDS


def _yes_no(text: str) -> bool | None:
    typed = _plain(text)
    if typed in YES_WORDS:
        return True
    if typed in NO_WORDS:
        return False
    return None


def _ask(text: str) -> Callable[[Context, Dialogue], str]:
    """A prompt that is always the same text."""
    return lambda ctx, d: text


def _yes_no_text(value: bool) -> str:
    return "是" if value else "否"


IDENTITY = (
    Field("reuse", _ask_reuse, _check_reuse),
    Field("name", _ask("请告诉我您的姓名（例如：张三）。"), _check_name, "姓名", ("名字",)),
    Field("phone", _ask("请输入您的手机号（11位数字）。"), _check_phone, "手机号", ("电话", "手机")),
    Field("id_number", _ask("请输入您的身份证号（18位，最后一位可能是X）。"), _check_id_number,
          "身份证号", ("身份证",)),
    Field("township", _ask_township, _check_township, "乡镇", ("镇",)),
    Field("village", _ask("您住在哪个村（社区）？（例如：石门村）"), _check_village, "村（社区）",
          ("村", "社区")),
)

FORMS = {
    TRAINING: Form(TRAINING, (
        Field("course", _ask_course, _check_course, "课程", ("培训",)),
        *IDENTITY,
        Field("returning", _ask("您是返乡农民工吗？回复“是”或“否”。"), _check_returning,
              "返乡农民工", ("返乡",), _yes_no_text),
    )),
    LOAN: Form(LOAN, (
        Field("amount", _ask_amount, _check_amount, "贷款金额", ("金额", "钱"), _yuan),
        Field("purpose", _ask("贷款主要用来做什么？（例如：扩建茶厂、买种苗和饲料）"), _check_purpose,
              "用途"),
        Field("industry", _ask("您做的是哪个行业？（例如：茶叶种植、生态养殖、农村电商）"),
              _check_industry, "行业"),
        Field("stage", _ask_stage, _check_stage, "经营情况", ("情况",), labels.STAGES.__getitem__),
        *IDENTITY,
    )),
}
