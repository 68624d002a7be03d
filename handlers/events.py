"""Events: subscribe, unsubscribe, scans. Others (LOCATION, VIEW, …) get no reply."""
from __future__ import annotations

from bot.router import Context, Inbound, Reply, Router
from bot.storage import messages
from handlers import texts

router = Router()


@router.event("subscribe", "subscribe_scan")
def on_subscribe(inbound: Inbound, ctx: Context) -> Reply:
    """Welcome a new subscriber with the main menu."""
    messages.touch_subscriber(ctx.db, inbound.openid, subscribed=True)
    return Reply(text=texts.welcome(ctx.settings))


@router.event("unsubscribe")
def on_unsubscribe(inbound: Inbound, ctx: Context) -> Reply:
    """Stop counting the user as a subscriber; nothing can be sent back."""
    messages.touch_subscriber(ctx.db, inbound.openid, subscribed=False)
    return Reply.empty()


@router.event("scan")
def on_scan(inbound: Inbound, ctx: Context) -> Reply:
    """An existing subscriber scanned a QR code: show what the bot can do."""
    return Reply(text=texts.main_menu(ctx.settings))
