"""Wording shared by several handlers. User-facing text is short, plain Simplified Chinese."""
from __future__ import annotations

from bot.settings import Settings

# Words that show the main menu in any state (and pause an open form).
MENU_WORDS = ("菜单", "帮助", "0", "０", "主菜单", "menu", "help", "?", "？")

MAIN_MENU_ITEMS = (
    "五个放宽（开业、登记、场地）",
    "五个鼓励（返乡、干部、能人创业）",
    "五个扶持（贷款、培训、税费）",
    "我要报名培训",
    "我要申请贷款",
    "查询进度",
    "最新通知",
    "联系我们",
)


def main_menu(settings: Settings) -> str:
    """The numbered main menu, with how to use it."""
    lines = [f"{i}. {item}" for i, item in enumerate(MAIN_MENU_ITEMS, 1)]
    return ("请回复数字选择：\n" + "\n".join(lines)
            + "\n\n也可以直接打字或发语音提问，比如“贷款怎么申请”。"
            + f"\n电话：{settings.county.hotline}")


def welcome(settings: Settings) -> str:
    """First message after subscribing."""
    return (f"欢迎关注{settings.county.name}全民创业服务！"
            "这里可以查创业政策、报名免费培训、申请贴息贷款。\n\n" + main_menu(settings))


def error_reply(settings: Settings) -> str:
    """When something went wrong on our side."""
    return f"抱歉，系统刚才出了点问题，请稍后再试。着急可以打电话：{settings.county.hotline}"


def contact(settings: Settings) -> str:
    """How to reach the bureau."""
    c = settings.county
    return f"{c.bureau}\n地址：{c.address}\n时间：{c.hours}\n电话：{c.hotline}"
