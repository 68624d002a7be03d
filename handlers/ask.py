"""Last resort for text: match the question against the knowledge base and answer.

Bands: answer (the topic); suggest ("您是不是想问" with numbered choices, picked by digit
through the menu module); overview (a vague question: the money and help available, as
numbered choices); referral (another office's business: that office's phone and address);
small talk (one friendly line); unknown (menu and hotline; kept for staff). Only suggest
and unknown are recorded as unanswered.
"""
from __future__ import annotations

from bot.knowledge.live import Library
from bot.matching.matcher import Match
from bot.privacy import mask_text
from bot.router import Context, Inbound, Reply, Router
from bot.settings import Settings
from bot.storage import messages
from handlers import answers, menu, texts

router = Router()

MENU_HINT = "回复“菜单”看全部服务。"
SMALL_TALK = {
    "greeting": "您好！我是创业政策小助手，贷款、补贴、培训、办执照的问题都可以直接问我。",
    "thanks": "不客气！还有问题随时问我。",
    "ack": "好的！有问题随时问我。",
}
# Bands whose question the bot did not answer: staff see them on the unanswered page.
UNANSWERED_BANDS = ("suggest", "unknown")


def suggestion_text(match: Match) -> str:
    """The did-you-mean list for a suggest-band match."""
    lines = [f"{i}. {c.title}" for i, c in enumerate(match.candidates, 1)]
    return "您是不是想问：\n" + "\n".join(lines) + "\n回复数字选择；都不是的话，换个说法再问我。"


def overview_text(match: Match, library: Library) -> str:
    """The money and help available, numbered, for a vague question."""
    overview = library.kb.overview
    title = overview.title if overview else "创业可以享受的扶持"
    lines = [f"{i}. {c.title}" for i, c in enumerate(match.candidates, 1)]
    return (f"{title}：\n" + "\n".join(lines)
            + "\n回复数字看详情；也可以直接说说您想做什么，比如“回乡养牛能贷款吗”。")


def referral_text(match: Match, settings: Settings) -> str:
    """Which office handles a question outside this service, with its phone and address."""
    office = settings.county.office(match.office or "")
    if office is None:
        where = f"这个问题不归创业服务管，可以打 {settings.county.hotline} 问清楚该找哪个部门。"
    else:
        where = f"这个问题归{office.name}管"
        where += f"，电话 {office.phone}" if office.phone else ""
        where += f"，地址：{office.address}。" if office.address else "。"
    return where + "\n创业方面的问题（贷款、补贴、培训、办执照）可以接着问我。"


def small_talk_text(match: Match) -> str:
    """One short friendly line and the menu hint."""
    return SMALL_TALK.get(match.small_talk or "", SMALL_TALK["ack"]) + MENU_HINT


def unknown_text(settings: Settings) -> str:
    """What the bot says when it did not understand."""
    return ("抱歉，这个问题我没听懂，已经记下来请工作人员完善。\n"
            "您可以换个说法再问，或者看看下面的菜单；着急请打电话 "
            f"{settings.county.hotline}。\n\n" + texts.main_menu(settings))


def describe(match: Match, library: Library, settings: Settings) -> str:
    """What the bot would say for a match, recording nothing (/api/ask, `run.py ask`)."""
    if match.band == "answer" and match.topic_id:
        return library.answer_text(match.topic_id)
    if match.band == "suggest":
        return suggestion_text(match)
    if match.band == "overview":
        return overview_text(match, library)
    if match.band == "referral":
        return referral_text(match, settings)
    if match.band == "small_talk":
        return small_talk_text(match)
    return unknown_text(settings)


@router.text
def answer_question(inbound: Inbound, ctx: Context) -> Reply:
    """Answer, list choices, refer, chat back, or admit not knowing (and record it for staff)."""
    match = ctx.library.match(inbound.text)
    if match.band == "answer" and match.topic_id:
        return answers.answer_topic(ctx, inbound, match.topic_id)
    if match.band in UNANSWERED_BANDS:
        best = match.candidates[0].topic_id if match.candidates else None
        # People send their phone or ID number here too (e.g. to a form that timed out).
        messages.record_unanswered(ctx.db, inbound.openid, mask_text(inbound.text), match.band, best,
                                   match.score)
    if match.band in ("suggest", "overview"):
        menu.remember_list(ctx, inbound.openid, "suggest", [c.topic_id for c in match.candidates])
    else:
        menu.remember_list(ctx, inbound.openid, "main", [])
    return Reply(text=describe(match, ctx.library, ctx.settings), band=match.band)
