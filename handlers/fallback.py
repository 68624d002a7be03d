"""Last resort for text nobody else answered."""
from __future__ import annotations

from bot.router import Context, Inbound, Reply, Router
from handlers import texts

router = Router()


@router.text
def show_menu_for_text(inbound: Inbound, ctx: Context) -> Reply:
    """Until a handler understands the text, offer the main menu."""
    return Reply(text="您好！" + texts.main_menu(ctx.settings))
