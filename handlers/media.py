"""Messages the bot cannot read: pictures, unrecognised voice, video, location, links."""
from __future__ import annotations

from bot.router import Context, Inbound, Reply, Router

router = Router()

_CANNOT_READ = {
    "image": "收到您的图片啦。",
    "video": "收到您的视频啦。",
    "shortvideo": "收到您的视频啦。",
    "location": "收到您的位置啦。",
    "link": "收到您分享的链接啦。",
    "file": "收到您的文件啦。",
}


@router.message("voice")
def on_unrecognised_voice(inbound: Inbound, ctx: Context) -> Reply:
    """Voice without WeChat's transcript: ask the user to type."""
    return Reply(text="抱歉，这条语音没听清。请再说一遍，或者直接打字问我，比如“贷款怎么申请”。")


@router.message(*_CANNOT_READ)
def on_media(inbound: Inbound, ctx: Context) -> Reply:
    """A short friendly note pointing to what the bot can do."""
    return Reply(text=_CANNOT_READ[inbound.kind]
                 + "我目前只能看懂文字和语音。请打字提问，或回复“菜单”看看我能帮您办什么。")


@router.message("unknown")
def on_unknown(inbound: Inbound, ctx: Context) -> Reply:
    """Message types WeChat may add later: acknowledge silently."""
    return Reply.empty()
