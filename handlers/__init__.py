"""Product behaviour: what the bot says and does. Routers are tried in this order."""
from __future__ import annotations

from bot.router import Reply, Router
from handlers import ask, events, flood, media, menu, paging, registration, services, texts
from handlers.ask import describe as describe_match

__all__ = ["HANDLER_MODULES", "build_router", "describe_match"]

# Order matters: events, then the active form (it must see answers such as digits before
# the menu does; it lets the menu words through and pauses itself), menu words and digits,
# paging, services, then the policy matcher as the last resort for any text.
# Floods go first: held back before any handler works on them.
HANDLER_MODULES = (flood, events, registration, menu, media, paging, services, ask)


def build_router() -> Router:
    """The root router: every handler module's routes, in HANDLER_MODULES order."""
    root = Router()
    for module in HANDLER_MODULES:
        root.include(module.router)
    root.error_reply = lambda ctx: Reply(text=texts.error_reply(ctx.settings))
    return root
