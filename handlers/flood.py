"""Floods: a subscriber sending faster than [ratelimit] allows gets one notice, then silence.

The flooded messages are still logged (with the band below), but they reach no other
handler, so they never fill the unanswered queue staff review.
"""
from __future__ import annotations

from bot.router import Context, Inbound, Reply, Router
from bot.storage import messages

router = Router()

NOTICE = "您发得太快了，请稍后再发。"
BAND = "flood"  # marks the messages held back, in the message log


@router.add(lambda m: not (m.kind == "event" and m.event == "unsubscribe"))
def hold_back_flood(inbound: Inbound, ctx: Context) -> Reply | None:
    """Past the limit: the notice once, then "success" until the window has passed."""
    limit = ctx.settings.ratelimit
    if not limit.max_messages:
        return None
    answered, noticed = messages.count_recent(ctx.db, inbound.openid, limit.window_seconds, BAND)
    if answered < limit.max_messages:
        return None
    if noticed:
        return Reply(kind="empty", band=BAND)
    return Reply(text=NOTICE, band=BAND)
