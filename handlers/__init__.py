"""Product behaviour: what the bot says and does. Routers are tried in this order."""
from __future__ import annotations

from bot.conversation import store_menu_state
from bot.router import Reply, Router
from handlers import (
    ask,
    commands,
    events,
    flood,
    media,
    menu,
    paging,
    push_events,
    registration,
    services,
    texts,
)
from handlers.ask import describe as describe_match
from handlers.registration.notices import NOTICES

__all__ = ["HANDLER_MODULES", "NOTICES", "build_router", "describe_match"]

# Order matters: floods are held back before any handler works on them; commands
# valid in any state (取消, 转人工, 菜单, 更多); events and WeChat's delivery reports;
# the active form (it must see answers such as digits before the menu does); menu
# digits and words, paging, services, then the policy matcher as the last resort.
HANDLER_MODULES = (flood, commands, events, push_events, registration, menu, media, paging,
                   services, ask)


def build_router() -> Router:
    """The root router: every handler module's routes, in HANDLER_MODULES order."""
    root = Router()
    for module in HANDLER_MODULES:
        root.include(module.router)
    # Last, so every handler and hook before it may change the menu state: one write.
    root.after(store_menu_state)
    root.error_reply = lambda ctx: Reply(text=texts.error_reply(ctx.settings))
    return root
