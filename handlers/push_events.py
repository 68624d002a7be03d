"""WeChat's reports on pushed messages: whether a template or mass message reached its users.

They are events from WeChat, not from a user: nothing is replied.
https://developers.weixin.qq.com/doc/offiaccount/Message_Management/Template_Message_Interface.html
https://developers.weixin.qq.com/doc/offiaccount/Message_Management/Batch_Sends_and_Originality_Checks.html
"""
from __future__ import annotations

from bot.push import announcements
from bot.router import Context, Inbound, Reply, Router

router = Router()


@router.event("templatesendjobfinish")
def on_template_finished(inbound: Inbound, ctx: Context) -> Reply:
    """Record whether one template message reached the user."""
    announcements.record_template_report(ctx.db, inbound.msg_id, inbound.fields.get("Status", ""))
    return Reply.empty()


@router.event("masssendjobfinish")
def on_mass_finished(inbound: Inbound, ctx: Context) -> Reply:
    """Record how many users a mass send reached."""
    announcements.record_mass_report(ctx.db, inbound.msg_id, inbound.fields.get("Status", ""),
                                     inbound.fields)
    return Reply.empty()
