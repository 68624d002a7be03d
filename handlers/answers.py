"""Answering a policy topic: the one-screen answer, its details, and the next step."""
from __future__ import annotations

from bot import db
from bot.router import Context, Inbound, Reply
from handlers import services

DETAIL_LABELS = {
    "eligibility": "谁能申请",
    "benefits": "能享受什么",
    "how_to_apply": "怎么办理",
    "documents": "要带什么",
    "office": "到哪里办",
}
NEXT_STEP = "\n\n回复“详情”看怎么办、带什么；回复“返回”看同类政策；回复“菜单”看全部。"


def answer_topic(ctx: Context, inbound: Inbound, topic_id: str, parent: str | None = None) -> Reply:
    """The bot's answer for a topic: a service runs, a policy is explained in one screen."""
    action = services.ACTIONS.get(topic_id)
    if action is not None:
        return action(inbound, ctx)
    topic = ctx.library.kb.topics[topic_id]
    state = db.load_state(ctx.db, inbound.openid)
    state["topic"] = {"id": topic_id, "parent": parent or topic.category}
    state.pop("list", None)  # digits mean the main menu again
    db.save_state(ctx.db, inbound.openid, state)
    return Reply(text=ctx.library.answer_text(topic_id) + NEXT_STEP, topic=topic_id, band="answer")


def details(ctx: Context, topic_id: str) -> Reply:
    """Who qualifies, what you get, how to apply, what to bring, where to go."""
    kb = ctx.library.kb
    filled = kb.render_details(topic_id, ctx.settings.county)
    body = "\n".join(f"【{label}】{filled[key]}" for key, label in DETAIL_LABELS.items() if filled.get(key))
    return Reply(text=f"{kb.topics[topic_id].title}\n{body}", topic=topic_id, band="answer")
