"""Product behaviour: what the bot says and does. Routers are tried in this order."""
from __future__ import annotations

from bot.router import Reply, Router
from handlers import commands, events, fallback, media, paging, registration, texts

# Order matters: commands first, then the active form (registration also claims its three
# menu CLICK keys, which the events module's catch-all would otherwise swallow), events,
# then paging, then the fallback.
HANDLER_MODULES = (commands, registration, events, media, paging, fallback)


def build_router() -> Router:
    """The root router: every handler module's routes, in HANDLER_MODULES order."""
    root = Router()
    for module in HANDLER_MODULES:
        root.include(module.router)
    root.error_reply = lambda ctx: Reply(text=texts.error_reply(ctx.settings))
    return root
