"""The forms' routes: start, resume, answer, status, and the notes after each message.

One question per message; the lifecycle in bot/dialogue.py keeps the answers. While a form
is active it sees every text after the commands (handlers/commands.py: 取消, 转人工, 菜单,
更多) and before the menu and the matcher; a paused form is left alone until the user says
"继续报名" / "继续申请". start_training, start_loan and show_status are also run by the
menu (4, 5, 6) and by the matcher's service topics (handlers/services.py ACTIONS).
"取消申请" / "取消报名" are not commands: with a form open they cancel it, otherwise they
withdraw a submitted application (withdraw.py), as 撤回申请 does.
"""
from __future__ import annotations

import re

from bot import dialogue as engine
from bot.dialogue import SUMMARY, Dialogue
from bot.router import Context, Inbound, Reply, Router
from bot.storage import applications
from handlers.registration import withdraw
from handlers.registration.checks import CONFIRM_WORDS, NO_WORDS, YES_WORDS, plain, trimmed, yes_no
from handlers.registration.forms import (
    FORMS,
    RESUME_WORD,
    START_WORD,
    paused_note,
    prompt,
    short_label,
    summary,
)
from handlers.registration.submit import LOAN, TITLE, TRAINING, describe, profile, submit

router = Router()

HUMAN_TOPIC = "service.human"  # asked for in words mid-form: handed off like 转人工

TRAINING_WORDS = ("我要报名培训", "报名培训", "培训报名", "我要报名", "报名", "我要培训")
LOAN_WORDS = ("我要申请贷款", "申请贷款", "贷款申请", "我要贷款")
STATUS_WORDS = ("查询进度", "我的申请", "进度", "查进度", "查询申请", "申请进度")
RESUME_WORDS = ("继续报名", "继续申请", "继续填写", "接着填")
CANCEL_WORDS = ("取消", "不填了", "退出")
# Cancel the open form if there is one, else withdraw a submitted application (withdraw.py).
_CANCEL_OR_WITHDRAW = ("取消报名", "取消申请")
BACK_WORDS = ("上一步", "返回上一步", "上一题", "返回")
EDIT_PREFIX = re.compile(r"^(我要|我想)?(修改|更改|改一下|改)")


# --- entry points (also called by the main menu and by policy answers) --------------------


@router.click("MENU_TRAINING")
@router.add(lambda m: m.kind == "text" and plain(m.text) in TRAINING_WORDS)
def start_training(inbound: Inbound, ctx: Context) -> Reply:
    """Begin (or resume) the training registration."""
    return _start(TRAINING, inbound, ctx)


@router.click("MENU_LOAN")
@router.add(lambda m: m.kind == "text" and plain(m.text) in LOAN_WORDS)
def start_loan(inbound: Inbound, ctx: Context) -> Reply:
    """Begin (or resume) the loan application."""
    return _start(LOAN, inbound, ctx)


@router.click("MENU_STATUS")
@router.add(lambda m: m.kind == "text" and plain(m.text) in STATUS_WORDS)
def show_status(inbound: Inbound, ctx: Context) -> Reply:
    """The user's applications with status and staff notes; the open form, if any, goes on."""
    rows = applications.applications_for(ctx.db, inbound.openid)
    if rows:
        text = "您的申请：\n\n" + "\n\n".join(describe(row) for row in rows)
    else:
        text = "您还没有提交过申请。回复“报名培训”或“申请贷款”开始办理。"
    for d in engine.open_forms(ctx, inbound.openid):
        if d.status != engine.ACTIVE:
            text += f"\n\n您还有一份没填完的{TITLE[d.form]}，回复“{RESUME_WORD[d.form]}”接着填。"
    active = engine.active(ctx, inbound.openid)
    if active is not None:
        text += f"\n\n——\n接着填{TITLE[active.form]}：\n" + prompt(active, ctx)
    return Reply(text=text)


@router.add(lambda m: m.kind == "text" and plain(m.text) in RESUME_WORDS)
def resume_form(inbound: Inbound, ctx: Context) -> Reply:
    """Continue a paused or expired form where it stopped."""
    word = plain(inbound.text)
    # "继续报名" / "继续申请" name the form; "继续填写" takes the most recent one.
    forms = [kind for kind, resume in RESUME_WORD.items() if resume == word] or list(RESUME_WORD)
    wanted = [d for d in engine.open_forms(ctx, inbound.openid) if d.form in forms]
    if not wanted:
        start = "”或“".join(START_WORD[kind] for kind in forms)
        hours = ctx.settings.dialogue.resume_hours
        return Reply(text=f"没有可以接着填的内容（超过{hours}小时的会自动清除）。"
                          f"回复“{start}”重新开始。")
    return _resume(wanted[0], ctx)


@router.add(lambda m: m.kind == "text" and (yes_no(m.text) is not None or plain(m.text).isdigit()))
def answer_withdrawal(inbound: Inbound, ctx: Context) -> Reply | None:
    """是 / 否 (or a number) right after the bot asked about withdrawing an application."""
    return _with_form_prompt(withdraw.answer(inbound, ctx), inbound, ctx)


@router.add(lambda m: m.kind == "text" and withdraw.is_request(m.text))
def withdraw_application(inbound: Inbound, ctx: Context) -> Reply | None:
    """撤回申请, 我不想去培训了, a reference number: withdraw a submitted application, asking
    first. With a form open, 取消申请 and words without 撤回 cancel the form instead."""
    typed = plain(inbound.text)
    if (is_filling(inbound, ctx) and withdraw.reference(inbound.text) is None
            and (typed in _CANCEL_OR_WITHDRAW or not any(w in typed for w in ("撤回", "撤销")))):
        return cancel(inbound, ctx)
    return _with_form_prompt(withdraw.start(inbound, ctx), inbound, ctx)


def _with_form_prompt(reply: Reply | None, inbound: Inbound, ctx: Context) -> Reply | None:
    """The reply, then the active form's pending question (the form goes on)."""
    active = engine.active(ctx, inbound.openid)
    if reply is None or active is None:
        return reply
    return reply.with_text(reply.text + f"\n\n——\n接着填{TITLE[active.form]}：\n" + prompt(active, ctx))


@router.text
def continue_form(inbound: Inbound, ctx: Context) -> Reply | None:
    """The answer to the active form's pending question (or 上一步, or a question)."""
    dialogue = engine.active(ctx, inbound.openid)
    if dialogue is None:
        return None
    reply = _advance(dialogue, inbound, ctx)
    engine.keep(ctx, dialogue)
    return reply


@router.after
def tidy_forms(inbound: Inbound, ctx: Context, reply: Reply) -> Reply:
    """After any text: expire idle forms and drop old ones, saying so before the reply."""
    if inbound.kind != "text":
        return reply
    settings = ctx.settings.dialogue
    notes = []
    for d, what in engine.tidy(ctx, inbound.openid):
        if what == engine.GONE:
            notes.append(f"您之前没填完的{TITLE[d.form]}已经过期，需要的话请重新开始。")
        else:
            where = "确认提交" if d.step == SUMMARY else f"“{short_label(d)}”"
            notes.append(f"您的{TITLE[d.form]}超过{settings.timeout_minutes}分钟没有回复，已经暂停。"
                         f"{settings.resume_hours}小时内回复“{RESUME_WORD[d.form]}”，可以从{where}接着填。")
    if not notes:
        return reply
    if reply.kind == "empty":
        return Reply(text="\n".join(notes))
    return reply.with_text("\n".join(notes) + "\n\n" + reply.text)


# --- what commands (handlers/commands.py) ask of the forms ------------------------------


def cancel(inbound: Inbound, ctx: Context) -> Reply | None:
    """取消 in a form: ask first, and end it on a second 取消; None when no form is active."""
    d = engine.active(ctx, inbound.openid)
    if d is None:
        return None
    if d.cancelling:
        return _cancelled(d, ctx)
    engine.ask_to_cancel(d, True)
    engine.keep(ctx, d)
    return Reply(text=f"确定要取消{TITLE[d.form]}吗？已经填写的内容不会保存。\n"
                      "回复“是”确认取消，回复“否”接着填写。")


def is_filling(inbound: Inbound, ctx: Context) -> bool:
    """The user has a form open at a question (their text is an answer to it)."""
    return engine.active(ctx, inbound.openid) is not None


def pause(inbound: Inbound, ctx: Context, reply: Reply) -> Reply:
    """Put the active form aside (menu, hand-off), adding how to come back to the reply."""
    d = engine.pause_active(ctx, inbound.openid)
    if d is None:
        return reply
    return reply.with_text(reply.text + "\n\n" + paused_note(d))


# --- dialogue control --------------------------------------------------------------------


def _start(kind: str, inbound: Inbound, ctx: Context) -> Reply:
    mine = engine.find(ctx, inbound.openid, kind)
    if mine is not None:
        return _resume(mine, ctx)
    if kind == LOAN:
        existing = applications.open_application(ctx.db, inbound.openid, LOAN)
        if existing is not None:
            return Reply(text="您已经有一份贷款申请正在办理，不用重复申请：\n\n" + describe(existing))
    elif not ctx.settings.courses:
        return Reply(text=f"目前没有开放报名的培训课程。有新课程会在这里通知，也可以打电话问："
                          f"{ctx.settings.county.hotline}")
    # "Use last time's details?" only makes sense when there are some.
    answers = {} if profile(ctx, inbound.openid) else {"reuse": False}
    dialogue, paused = engine.start(ctx, FORMS[kind], inbound.openid, answers)
    intro = (f"好的，开始{TITLE[kind]}，一共几个问题，每次回答一个。"
             "随时回复“上一步”返回上一题，回复“取消”退出。")
    return Reply(text=_paused_line(paused) + intro + "\n\n" + prompt(dialogue, ctx))


def _resume(dialogue: Dialogue, ctx: Context) -> Reply:
    if dialogue.status == engine.ACTIVE:
        engine.resume(ctx, dialogue)
        return Reply(text=f"您正在填写{TITLE[dialogue.form]}，接着回答就好：\n\n" + prompt(dialogue, ctx))
    paused = engine.resume(ctx, dialogue)
    return Reply(text=_paused_line(paused) + f"好的，接着填{TITLE[dialogue.form]}，之前填的都还在。\n\n"
                      + prompt(dialogue, ctx))


def _paused_line(paused: Dialogue | None) -> str:
    return paused_note(paused) + "\n" if paused is not None else ""


def _cancelled(d: Dialogue, ctx: Context) -> Reply:
    engine.finish(ctx, d)
    return Reply(text=f"已取消{TITLE[d.form]}，填写的内容没有保存。"
                      f"需要时回复“{START_WORD[d.form]}”重新开始。")


def _advance(d: Dialogue, inbound: Inbound, ctx: Context) -> Reply:
    """Apply one message to the active dialogue; the caller keeps it."""
    form = FORMS[d.form]
    raw = inbound.text
    text = plain(raw)
    if d.cancelling:
        if text in YES_WORDS:
            return _cancelled(d, ctx)
        if text in NO_WORDS:
            engine.ask_to_cancel(d, False)
            return Reply(text="好的，我们接着填。\n\n" + prompt(d, ctx))
        return Reply(text="请回复“是”确认取消，或回复“否”接着填写。")
    if text in BACK_WORDS:
        if not engine.back(d):
            return Reply(text="已经是第一个问题了。\n\n" + prompt(d, ctx))
        return Reply(text="好的，回到上一题。\n\n" + prompt(d, ctx))
    if d.pending is not None:
        if text in YES_WORDS:
            engine.accept_pending(form, d)
            return _next(d, ctx)
        engine.forget_pending(d)
        if text in NO_WORDS:
            return Reply(text="好的，请重新输入。\n\n" + prompt(d, ctx))
    if d.step == SUMMARY:
        return _at_summary(d, text, inbound, ctx)
    check = engine.give(form, d, trimmed(raw), ctx)
    if check.ok:
        return Reply(text=check.confirm) if check.confirm else _next(d, ctx)
    answered = None if check.attempted else _policy_answer(inbound, d, ctx)
    if answered is not None:
        engine.forgive(d)
        return answered
    hint = check.hint
    if engine.needs_help(ctx, d):
        county = ctx.settings.county
        hint += (f"\n\n填写有困难的话，可以回复“转人工”，或拨打{county.hotline}，"
                 f"也可以到{county.address}请工作人员帮您办理；回复“取消”可以先退出。")
    return Reply(text=hint + "\n\n" + prompt(d, ctx))


def _at_summary(d: Dialogue, text: str, inbound: Inbound, ctx: Context) -> Reply:
    form = FORMS[d.form]
    if text in CONFIRM_WORDS:
        done = submit(d, ctx)
        if done is None:
            return Reply(text="这门课程已经停止报名，请重新选择。\n\n" + prompt(d, ctx))
        return done
    target = engine.find_field(form, d, EDIT_PREFIX.sub("", text).strip())
    if target is not None and (EDIT_PREFIX.match(text) or text.isdigit() or len(text) <= 6):
        engine.edit(d, target.key)
        return Reply(text=f"好的，修改{target.label}。\n\n" + prompt(d, ctx))
    answered = _policy_answer(inbound, d, ctx)
    if answered is not None:
        return answered
    return Reply(text="请回复“确认”提交；要修改某一项，回复“修改”加项目名（如“修改手机号”）或项目编号。\n\n"
                      + summary(d, ctx))


def _next(d: Dialogue, ctx: Context) -> Reply:
    return Reply(text=prompt(d, ctx))


def _policy_answer(inbound: Inbound, d: Dialogue, ctx: Context) -> Reply | None:
    """A policy question asked mid-form: answer it, then repeat the pending question. Asking
    for a person in one's own words does what 转人工 does: the hand-off, the form paused."""
    match = ctx.library.match(inbound.text)
    if match.band != "answer" or match.topic_id is None:
        return None
    if match.topic_id == HUMAN_TOPIC:
        from handlers import services  # services imports this package at load time
        return services.hand_to_staff(inbound, ctx)
    return Reply(text=ctx.library.answer_text(match.topic_id)
                 + f"\n\n——\n接着填{TITLE[d.form]}：\n" + prompt(d, ctx),
                 topic=match.topic_id, band=match.band)
