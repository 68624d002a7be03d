"""Last resort for text: match the question against the knowledge base and answer.

Three bands: answer (the topic), suggest ("您是不是想问" with numbered choices, picked
by digit through the menu module), unknown (menu and hotline; kept for staff).
"""
from __future__ import annotations

from bot import db
from bot.knowledge.live import Library
from bot.matching.matcher import Match
from bot.privacy import mask_text
from bot.router import Context, Inbound, Reply, Router
from bot.settings import Settings
from handlers import answers, menu, texts

router = Router()


def suggestion_text(match: Match) -> str:
    """The did-you-mean list for a suggest-band match."""
    lines = [f"{i}. {c.title}" for i, c in enumerate(match.candidates, 1)]
    return "您是不是想问：\n" + "\n".join(lines) + "\n回复数字选择；都不是的话，换个说法再问我。"


def unknown_text(settings: Settings) -> str:
    """What the bot says when it did not understand."""
    return ("抱歉，这个问题我没听懂，已经记下来请工作人员完善。\n"
            "您可以换个说法再问，或者看看下面的菜单；着急请打电话 "
            f"{settings.county.hotline}。\n\n" + texts.main_menu(settings))


def describe(match: Match, library: Library, settings: Settings) -> str:
    """What the bot would say for a match, recording nothing (/api/ask, `run.py ask`)."""
    if match.band == "answer":
        return library.answer_text(match.topic_id)
    if match.band == "suggest":
        return suggestion_text(match)
    return unknown_text(settings)


@router.text
def answer_question(inbound: Inbound, ctx: Context) -> Reply:
    """Answer, offer choices, or admit not knowing (and record it for staff)."""
    match = ctx.library.match(inbound.text)
    if match.band == "answer":
        return answers.answer_topic(ctx, inbound, match.topic_id)
    best = match.candidates[0].topic_id if match.candidates else None
    # People send their phone or ID number here too (e.g. to a form that timed out).
    db.record_unanswered(ctx.db, inbound.openid, mask_text(inbound.text), match.band, best, match.score)
    if match.band == "suggest":
        menu.remember_list(ctx, inbound.openid, "suggest", [c.topic_id for c in match.candidates])
        return Reply(text=suggestion_text(match), band="suggest")
    menu.remember_list(ctx, inbound.openid, "main", [])
    return Reply(text=unknown_text(ctx.settings), band="unknown")
