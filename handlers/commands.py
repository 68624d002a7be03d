"""Words that work in any state: 菜单 / 帮助 / 0 show the main menu."""
from __future__ import annotations

from bot.router import Context, Inbound, Reply, Router
from handlers import texts

router = Router()

MENU_WORDS = ("菜单", "帮助", "0", "０", "主菜单", "menu", "help", "?", "？")


@router.keyword(*MENU_WORDS)
def show_menu(inbound: Inbound, ctx: Context) -> Reply:
    """Main menu on request."""
    return Reply(text=texts.main_menu(ctx.settings))
