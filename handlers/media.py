"""Voice the service recognises itself, and messages the bot cannot read: pictures,
video, location, links (and voice when recognition is off)."""
from __future__ import annotations

import dataclasses
import logging

from bot.privacy import mask_text
from bot.router import Context, Inbound, Reply, Router
from bot.storage import messages
from bot.voice import VoiceError

logger = logging.getLogger(__name__)

router = Router()

_TYPE_PLEASE = "抱歉，这条语音没听清。请再说一遍，或者直接打字问我，比如“贷款怎么申请”。"
_NOT_HEARD = "没听清，请再说一遍或打字。"
_TOO_LONG = "语音太长了，没听清。请说短一点（一分钟以内），或者打字。"
_HEARD = "您说的是：“{}”\n\n"
_HEARD_CHARS = 40  # a long transcript is shortened in the echo; the reply must stay short

_CANNOT_READ = {
    "image": "收到您的图片啦。",
    "video": "收到您的视频啦。",
    "shortvideo": "收到您的视频啦。",
    "location": "收到您的位置啦。",
    "link": "收到您分享的链接啦。",
    "file": "收到您的文件啦。",
}


@router.message("voice")
def on_voice(inbound: Inbound, ctx: Context) -> Reply:
    """Voice without WeChat's transcript: recognise it and answer it as typed text,
    saying first what was heard so a mishearing shows."""
    if ctx.voice is None or ctx.router is None:
        return Reply(text=_TYPE_PLEASE)
    if messages.find_message(ctx.db, inbound.dedupe_key) is not None:
        # WeChat's resend of voice answered before: worth a read to spare a second
        # recognition; the runtime gives the earlier answer.
        return Reply.empty()
    try:
        heard = ctx.voice.transcribe(inbound.media_id)
    except VoiceError as exc:
        logger.warning("voice message not recognised: %s", exc)
        return Reply(text=_TOO_LONG if exc.reason == "too_long" else _NOT_HEARD,
                     transcribe_ms=exc.elapsed_ms)
    said = dataclasses.replace(inbound, kind="text", content=heard.text)
    ctx.memo["voice_heard"] = heard.text  # echoed by echo_transcript, before paging
    reply = ctx.router.dispatch(said, ctx)
    return dataclasses.replace(reply, transcript=heard.text, transcribe_ms=heard.elapsed_ms)


@router.after
def echo_transcript(inbound: Inbound, ctx: Context, reply: Reply) -> Reply:
    """Start the answer to recognised voice with what was heard (before long replies are
    cut into pages, so the echo counts towards the page)."""
    heard = ctx.memo.pop("voice_heard", None) if inbound.kind == "text" else None
    if heard is None:
        return reply
    echo = mask_text(heard)
    if len(echo) > _HEARD_CHARS:
        echo = echo[:_HEARD_CHARS] + "…"
    return dataclasses.replace(reply, kind="text", text=(_HEARD.format(echo) + reply.text).strip())


@router.message(*_CANNOT_READ)
def on_media(inbound: Inbound, ctx: Context) -> Reply:
    """A short friendly note pointing to what the bot can do."""
    return Reply(text=_CANNOT_READ[inbound.kind]
                 + "我目前只能看懂文字和语音。请打字提问，或回复“菜单”看看我能帮您办什么。")


@router.message("unknown")
def on_unknown(inbound: Inbound, ctx: Context) -> Reply:
    """Message types WeChat may add later: acknowledge silently."""
    return Reply.empty()
