"""Menu navigation: numbered main menu, category lists, picking by digit, 详情 and 返回.

The last list shown is kept in the user's MenuState (bot/conversation.py), so a digit
means the entry of the list the user is looking at; with no list on screen a digit means
the main menu. 菜单 itself is a command (handlers/commands.py).
"""
from __future__ import annotations

import unicodedata

from bot.conversation import Listing, menu_state
from bot.router import Context, Inbound, Reply, Router
from handlers import answers, texts

router = Router()

# Main-menu entries 1-3 open these categories; the custom menu's CLICK keys do the same.
MAIN_CATEGORIES = ("relax", "encourage", "support")
# Entries 4-8 are services; answering their topic runs the service (forms, status, …).
MAIN_ENTRIES = {4: "service.apply-training", 5: "service.apply-loan", 6: "service.status",
                7: "service.announcements", 8: "service.contact"}
CLICK_CATEGORIES = {"MENU_RELAX": "relax", "MENU_ENCOURAGE": "encourage", "MENU_SUPPORT": "support"}
BACK_WORDS = ("返回", "上一级", "回去", "back")
DETAIL_WORDS = ("详情", "详细", "具体", "怎么办", "材料")


def digit(text: str) -> int | None:
    """A menu choice typed as 1-99 (full-width digits too), else None."""
    text = unicodedata.normalize("NFKC", text).strip().rstrip(".、。")
    return int(text) if text.isdigit() and len(text) <= 2 else None


def show_category(ctx: Context, openid: str, category_id: str) -> Reply:
    """List a category's topics, numbered, and remember the list."""
    kb = ctx.library.kb
    category = next((c for c in kb.categories if c.id == category_id), None)
    if category is None:
        return show_main_menu(ctx, openid)
    lines = [f"{i}. {kb.topics[t].title}" for i, t in enumerate(category.topic_ids, 1)]
    remember_list(ctx, openid, "category", list(category.topic_ids), category=category_id)
    return Reply(text=f"【{category.title}】\n" + "\n".join(lines)
                 + "\n\n回复数字看详情，回复“返回”回主菜单。")


def show_main_menu(ctx: Context, openid: str) -> Reply:
    """The main menu; digits now mean its entries."""
    remember_list(ctx, openid, "main", [])
    return Reply(text=texts.main_menu(ctx.settings))


def remember_list(ctx: Context, openid: str, kind: str, items: list[str],
                  category: str | None = None) -> None:
    """Note the list on screen so the next digit picks from it."""
    menu_state(ctx, openid).listing = Listing(kind, items, category)


@router.click(*CLICK_CATEGORIES)
def on_category_click(inbound: Inbound, ctx: Context) -> Reply:
    """Custom-menu button for a category."""
    return show_category(ctx, inbound.openid, CLICK_CATEGORIES[inbound.event_key])


@router.add(lambda m: m.kind == "text" and digit(m.text) is not None)
def on_digit(inbound: Inbound, ctx: Context) -> Reply | None:
    """A number picks from the list on screen (the main menu when none is)."""
    n = digit(inbound.text)
    if n is None:
        return None
    listing = menu_state(ctx, inbound.openid).listing or Listing("main")
    if listing.kind == "main":
        if 1 <= n <= len(MAIN_CATEGORIES):
            return show_category(ctx, inbound.openid, MAIN_CATEGORIES[n - 1])
        if n in MAIN_ENTRIES:
            return answers.answer_topic(ctx, inbound, MAIN_ENTRIES[n], at_once=True)
        return Reply(text=f"没有第{n}项。" + texts.main_menu(ctx.settings))
    items = listing.items
    if not 1 <= n <= len(items):
        return Reply(text=f"没有第{n}项，请回复 1 到 {len(items)} 之间的数字，或回复“菜单”。")
    topic_id = items[n - 1]
    if topic_id not in ctx.library.kb.topics:  # removed by an edit since the list was shown
        return show_main_menu(ctx, inbound.openid)
    return answers.answer_topic(ctx, inbound, topic_id, parent=listing.category)


@router.add(lambda m: m.kind == "text" and m.text.rstrip("。！!.~") in answers.ACCEPT_WORDS)
def on_yes(inbound: Inbound, ctx: Context) -> Reply | None:
    """"好" after a loan or training answer starts the application it offered."""
    return answers.accept_offer(ctx, inbound)


@router.keyword(*BACK_WORDS)
def on_back(inbound: Inbound, ctx: Context) -> Reply:
    """Back: from an answer to its category list, from a list to the main menu."""
    state = menu_state(ctx, inbound.openid)
    parent = state.topic.parent if state.topic else None
    if parent and (state.listing is None or state.listing.kind != "category"):
        return show_category(ctx, inbound.openid, parent)
    return show_main_menu(ctx, inbound.openid)


@router.keyword(*DETAIL_WORDS)
def on_details(inbound: Inbound, ctx: Context) -> Reply | None:
    """Full details (who, what, how, documents, where) of the topic last answered."""
    topic = menu_state(ctx, inbound.openid).topic
    if topic is None or topic.id not in ctx.library.kb.topics:
        return None  # nothing answered yet: let the matcher read it as a question
    return answers.details(ctx, topic.id)
