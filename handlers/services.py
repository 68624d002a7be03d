"""Service topics that run code instead of reciting an answer: contact, hand-off, …"""
from __future__ import annotations

from collections.abc import Callable

from bot.router import Context, Inbound, Reply, Router
from handlers import registration, texts

router = Router()


@router.click("MENU_CONTACT")
@router.keyword("联系我们", "联系方式", "电话", "地址")
def contact(inbound: Inbound, ctx: Context) -> Reply:
    """The bureau's address, hours and hotline, from configuration."""
    return Reply(text=texts.contact(ctx.settings), topic="service.contact", band="answer")


# Topic id -> what the bot does when a question or menu entry lands on that topic.
ACTIONS: dict[str, Callable[[Inbound, Context], Reply]] = {
    "service.contact": contact,
    "service.apply-training": registration.start_training,
    "service.apply-loan": registration.start_loan,
    "service.status": registration.show_status,
}
