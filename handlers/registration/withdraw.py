"""The applicant withdraws an application in the chat: 撤回申请, 我不想去培训了, a reference number.

The bot asks first ("确认撤回…？"), and with several open applications asks which one; the
answer counts only as the very next message. The change itself (already 已撤回 for staff,
the freed seat for the waiting list) is bot/casework.py's.
"""
from __future__ import annotations

import re
from typing import Any

from bot import casework
from bot.conversation import Withdrawal, menu_state
from bot.router import Context, Inbound, Reply
from bot.storage import applications, messages
from handlers.registration.checks import plain, yes_no
from handlers.registration.notices import NOTICES
from handlers.registration.submit import LOAN, TITLE, TRAINING, describe, yuan

# Said with no form open (with a form open, 取消申请 and 取消报名 cancel the form).
WITHDRAW_WORDS = ("取消申请", "撤回申请", "撤销申请", "取消报名", "撤回报名", "撤销报名", "撤回",
                  "我要撤回", "不报了", "我不报了", "不去了", "我不去了", "不想去了", "我不想去了")
# "我想撤回培训报名", "取消我的贷款申请", "我不想去培训了", "不想贷款了".
_WITHDRAW_PHRASE = re.compile(
    r"^我?(要|想)?(取消|撤回|撤销)(我的|这个|这份)?(培训|贷款)?(报名|申请)?"
    r"|^我?不(想|要|打算)?(去|参加|报|办|申请)?(培训|贷款)了?$")
# A reference number as people type it: PX20261201-0001, px 20261201 0001.
REF = re.compile(r"(PX|DK)\s*(\d{8})\s*[-－—]?\s*(\d{4})", re.IGNORECASE)
_REST = re.compile(r"^(我要|我想)?(取消|撤回|撤销)?(申请|报名)?(编号)?[:：]?$")
# The application the bot records the withdrawal under, for staff.
NOTE = "申请人在微信中撤回"


def reference(text: str) -> str | None:
    """The reference number a short message consists of (perhaps with 撤回 before it)."""
    typed = plain(text).replace(" ", "")
    found = REF.search(typed)
    if found is None or not _REST.match(typed[:found.start()] + typed[found.end():]):
        return None
    return f"{found.group(1).upper()}{found.group(2)}-{found.group(3)}"


def is_request(text: str) -> bool:
    """The message asks to withdraw an application (or is a reference number)."""
    typed = plain(text).replace(" ", "")
    return typed in WITHDRAW_WORDS or bool(_WITHDRAW_PHRASE.fullmatch(typed)) or reference(text) is not None


def start(inbound: Inbound, ctx: Context) -> Reply:
    """Find the application meant and ask to confirm, or ask which one."""
    ref = reference(inbound.text)
    mine = applications.applications_for(ctx.db, inbound.openid)
    if ref is not None:
        row = next((r for r in mine if r["ref"] == ref), None)
        if row is None:
            return Reply(text=f"没有找到编号为 {ref} 的申请，请核对编号。回复“查询进度”可以查看您的申请。")
        if row["status"] not in applications.OPEN_STATUSES:
            return Reply(text="这份申请已经办结，不能再撤回：\n\n" + describe(row))
        return _ask_to_confirm(inbound, ctx, row)
    typed = plain(inbound.text)
    kinds = [k for k, words in ((TRAINING, ("培训", "报名", "去")), (LOAN, ("贷款",)))
             if any(w in typed for w in words)]
    wanted = [r for r in mine if r["status"] in applications.OPEN_STATUSES
              and (r["type"] in kinds or not kinds or len(kinds) == 2)]
    if not wanted:
        return Reply(text="您现在没有正在办理的申请，不用撤回。回复“查询进度”可以查看办理情况。")
    if len(wanted) == 1:
        return _ask_to_confirm(inbound, ctx, wanted[0])
    menu_state(ctx, inbound.openid).withdrawal = Withdrawal([r["ref"] for r in wanted],
                                                            inbound.dedupe_key)
    lines = [f"{i}. {_what(r)}（编号 {r['ref']}，{r['status']}）" for i, r in enumerate(wanted, 1)]
    return Reply(text=f"您有{len(wanted)}份正在办理的申请，要撤回哪一份？请回复编号：\n"
                      + "\n".join(lines) + "\n回复“否”都不撤回。")


def answer(inbound: Inbound, ctx: Context) -> Reply | None:
    """The reply to the question just asked (是 / 否, or which one); None when there was
    none, or the message is about something else (then the question lapses)."""
    state = menu_state(ctx, inbound.openid)
    pending = state.withdrawal
    if pending is None:
        return None
    state.withdrawal = None
    last = messages.recent_messages(ctx.db, inbound.openid, limit=1)
    if not last or last[0]["dedupe_key"] != pending.after:
        return None
    said = yes_no(inbound.text)
    if said is False:
        return Reply(text="好的，不撤回，您的申请继续办理。回复“查询进度”可随时查看。")
    if len(pending.refs) > 1:
        typed = plain(inbound.text)
        if not typed.isdigit():
            return None
        if not 1 <= int(typed) <= len(pending.refs):
            state.withdrawal = Withdrawal(pending.refs, inbound.dedupe_key)
            return Reply(text=f"请回复 1 到 {len(pending.refs)} 之间的编号，或回复“否”都不撤回。")
        row = applications.get_application(ctx.db, pending.refs[int(typed) - 1])
        return _ask_to_confirm(inbound, ctx, row) if row else None
    if said is None:
        return None
    return _withdraw(inbound, ctx, pending.refs[0])


def _ask_to_confirm(inbound: Inbound, ctx: Context, row: dict[str, Any]) -> Reply:
    menu_state(ctx, inbound.openid).withdrawal = Withdrawal([row["ref"]], inbound.dedupe_key)
    seat = "，名额会让给候补的人" if row["type"] == TRAINING and not row["waitlist_position"] else ""
    return Reply(text=f"确认撤回这份{TITLE[row['type']]}吗？撤回后不能恢复{seat}。\n\n{describe(row)}"
                      "\n\n回复“是”撤回，回复“否”保留。")


def _withdraw(inbound: Inbound, ctx: Context, ref: str) -> Reply:
    try:
        change = casework.change_status(ctx.db, ref, "已撤回", NOTE, "applicant", casework.APPLICANT,
                                        ctx.settings.courses, NOTICES, ctx.now())
    except casework.Refused as refused:
        if refused.code == "not_found":
            return Reply(text="没有找到这份申请。回复“查询进度”可以查看您的申请。")
        return Reply(text=f"这份申请现在是“{refused.current}”，不能撤回了。"
                          f"有疑问请打电话：{ctx.settings.county.hotline}")
    row = change.application
    again = "回复“报名培训”重新报名" if row["type"] == TRAINING else "回复“申请贷款”重新申请"
    return Reply(text=f"已撤回您的{TITLE[row['type']]}（编号 {row['ref']}）。以后需要的话，{again}。")


def _what(row: dict[str, Any]) -> str:
    if row["type"] == TRAINING:
        return f"培训报名：{row['course_name']}"
    return f"贷款申请：{yuan(row['amount_yuan'])}"
