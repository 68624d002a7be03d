"""Long replies: WeChat refuses passive text over 2,048 bytes, so split and serve on 更多."""
from __future__ import annotations

import re

from bot.conversation import Pages, menu_state
from bot.router import Context, Inbound, Reply, Router
from bot.storage import messages

router = Router()

LIMIT_BYTES = 2048
MORE_WORDS = ("更多", "下一页", "继续看")
_MORE_HINT = "\n（回复“更多”看下一页）"
_NO_MORE = "没有更多内容了。回复“菜单”看看还能帮您办什么。"
# Split after sentence ends; a sentence longer than a page is cut at the byte limit.
_SENTENCE = re.compile(r"(?<=[。！？!?；;\n])")


def split_pages(text: str, limit: int = LIMIT_BYTES - len(_MORE_HINT.encode())) -> list[str]:
    """Cut text into pages of at most limit UTF-8 bytes, at sentence boundaries."""
    pages: list[str] = []
    page = ""
    for sentence in _SENTENCE.split(text):
        while len(sentence.encode()) > limit:  # a single overlong sentence
            cut = len(sentence.encode()[:limit].decode("utf-8", "ignore"))
            if page:
                pages.append(page)
                page = ""
            pages.append(sentence[:cut])
            sentence = sentence[cut:]
        if len((page + sentence).encode()) > limit:
            pages.append(page)
            page = sentence
        else:
            page += sentence
    if page or not pages:
        pages.append(page)
    return [p.strip("\n") for p in pages]


def next_page(inbound: Inbound, ctx: Context) -> Reply:
    """Serve the next page of the user's last reply, if it was cut (更多, a command)."""
    state = menu_state(ctx, inbound.openid)
    more = state.more
    # Pages are kept until replaced, but only the reply just before this "更多" goes on.
    last = messages.recent_messages(ctx.db, inbound.openid, limit=1) if more and more.pages else []
    if more is None or not last or last[0]["dedupe_key"] != more.after:
        return Reply(text=_NO_MORE)
    text, *rest = more.pages
    state.more = Pages(rest, inbound.dedupe_key)
    return Reply(text=text + (_MORE_HINT if rest else ""))


@router.after
def fit_reply(inbound: Inbound, ctx: Context, reply: Reply) -> Reply:
    """Keep the first page of an overlong reply and store the rest for 更多.

    Only a cut reply touches storage: stale pages need no clearing, since next_page
    serves pages only for the message just before it (saves a read on every message).
    """
    if (inbound.kind != "text" or inbound.text in MORE_WORDS or reply.kind != "text"
            or len(reply.text.encode()) <= LIMIT_BYTES):
        return reply
    first, *rest = split_pages(reply.text)
    menu_state(ctx, inbound.openid).more = Pages(rest, inbound.dedupe_key)
    return reply.with_text(first + _MORE_HINT)
