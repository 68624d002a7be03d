"""Commands valid in any state, tried before everything else: 取消, 转人工, 菜单/帮助, 更多.

As python-telegram-bot's ConversationHandler fallbacks: an open form does not swallow
them. 菜单 and 转人工 put the form aside (it resumes with 继续报名 / 继续申请); 取消 ends it.
"""
from __future__ import annotations

from bot.router import Context, Inbound, Reply, Router
from handlers import menu, paging, registration, services, texts
from handlers.registration.checks import plain

router = Router()

HUMAN_WORDS = ("转人工", "人工", "人工客服", "找人工", "真人", "客服", "找工作人员")
_NOTHING_TO_CANCEL = ("现在没有正在填写的内容。要撤回已经提交的申请，请回复“撤回申请”；"
                      "回复“菜单”看看还能帮您办什么。")


@router.add(lambda m: m.kind == "text" and plain(m.text) in registration.CANCEL_WORDS)
def on_cancel(inbound: Inbound, ctx: Context) -> Reply:
    """Cancel the form being filled in (asking first)."""
    return registration.cancel(inbound, ctx) or Reply(text=_NOTHING_TO_CANCEL)


@router.click("MENU_HUMAN")
@router.keyword(*HUMAN_WORDS)
def on_human(inbound: Inbound, ctx: Context) -> Reply:
    """Ask for a person: the staff's waiting list (the form being filled in waits)."""
    return services.hand_to_staff(inbound, ctx)


@router.keyword(*texts.MENU_WORDS)
def on_menu_word(inbound: Inbound, ctx: Context) -> Reply | None:
    """The main menu (菜单, 帮助, 0, …); the form being filled in is put aside."""
    if inbound.text.isdigit() and registration.is_filling(inbound, ctx):
        return None  # "0" is an answer to the form's question (an amount, a choice)
    return registration.pause(inbound, ctx, menu.show_main_menu(ctx, inbound.openid))


@router.keyword(*paging.MORE_WORDS)
def on_more(inbound: Inbound, ctx: Context) -> Reply:
    """The next page of a reply cut for length."""
    return paging.next_page(inbound, ctx)
