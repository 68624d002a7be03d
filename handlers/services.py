"""Service topics that run code instead of reciting an answer: contact, hand-off, …"""
from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from bot.clock import CHINA_TZ
from bot.privacy import mask_text
from bot.push import announcements as news
from bot.router import Context, Inbound, Reply, Router
from bot.storage import staff
from handlers import registration, texts

router = Router()


@router.click("MENU_CONTACT")
@router.keyword("联系我们", "联系方式", "电话", "地址")
def contact(inbound: Inbound, ctx: Context) -> Reply:
    """The bureau's address, hours and hotline, from configuration."""
    return Reply(text=texts.contact(ctx.settings), topic="service.contact", band="answer")


@router.click("MENU_NEWS")
@router.keyword("最新通知", "通知", "公告", "通知公告", "最新消息")
def announcements(inbound: Inbound, ctx: Context) -> Reply:
    """The latest announcements staff published to this user (newest first)."""
    rows = news.list_recent_announcements(ctx.db, limit=3, openid=inbound.openid)
    if not rows:
        return Reply(text="最近没有新通知。有新通知会第一时间推送给您。\n回复“菜单”看看还能办什么。",
                     topic="service.announcements", band="answer")
    items = []
    for row in rows:
        day = datetime.fromtimestamp(row["created_at"], CHINA_TZ).strftime("%m月%d日")
        items.append(f"【{day}】{news.message_text(row['text'], row['url'])}")
    return Reply(text="最新通知：\n\n" + "\n\n".join(items), topic="service.announcements",
                 band="answer")


def hand_to_staff(inbound: Inbound, ctx: Context) -> Reply:
    """Put the user on the staff's waiting list (staff answer from the console); a form
    being filled in is paused, to go on with 继续报名 / 继续申请 afterwards."""
    staff.request_human(ctx.db, inbound.openid, mask_text(inbound.text))
    reply = Reply(text=ctx.library.answer_text("service.human"), topic="service.human", band="answer")
    return registration.pause(inbound, ctx, reply)


# Topic id -> what the bot does when a question or menu entry lands on that topic.
ACTIONS: dict[str, Callable[[Inbound, Context], Reply]] = {
    "service.contact": contact,
    "service.apply-training": registration.start_training,
    "service.apply-loan": registration.start_loan,
    "service.status": registration.show_status,
    "service.announcements": announcements,
    "service.human": hand_to_staff,
}
