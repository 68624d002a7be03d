"""Answering a policy topic: the one-screen answer, its details, and the next step."""
from __future__ import annotations

from bot.conversation import LastTopic, Offer, menu_state
from bot.router import Context, Inbound, Reply
from handlers import registration, services

DETAIL_LABELS = {
    "eligibility": "谁能申请",
    "benefits": "能享受什么",
    "how_to_apply": "怎么办理",
    "documents": "要带什么",
    "office": "到哪里办",
}
# Answers that end by offering a form; a plain "好" soon after starts it. The two form
# services are among them: asked about or picked from a list of topics, they explain
# first (policy-spec: "explains, then offers"); as main-menu entries ("我要申请贷款")
# they start the form at once.
OFFERS = {"support.training": registration.start_training, "support.loan": registration.start_loan,
          "service.apply-training": registration.start_training,
          "service.apply-loan": registration.start_loan}
OFFER_SECONDS = 30 * 60
ACCEPT_WORDS = ("好", "好的", "要", "我要", "是", "是的", "可以", "行", "嗯", "嗯嗯", "要得",
                "中", "想", "我想", "愿意", "报", "办", "申请", "要报名", "想报名", "想申请")
NEXT_STEP = "\n\n回复“详情”看怎么办、带什么；回复“返回”看同类政策；回复“菜单”看全部。"


def answer_topic(ctx: Context, inbound: Inbound, topic_id: str, parent: str | None = None,
                 at_once: bool = False) -> Reply:
    """The bot's answer for a topic: a service runs, a policy is explained in one screen.

    at_once: run a form service instead of explaining it and offering the form.
    """
    action = services.ACTIONS.get(topic_id)
    if action is not None and (at_once or topic_id not in OFFERS):
        return action(inbound, ctx)
    topic = ctx.library.kb.topics[topic_id]
    state = menu_state(ctx, inbound.openid)
    state.topic = LastTopic(topic_id, parent or topic.category)
    if topic_id in OFFERS:
        state.offer = Offer(topic_id, ctx.now() + OFFER_SECONDS)
    state.listing = None  # digits mean the main menu again
    return Reply(text=ctx.library.answer_text(topic_id) + NEXT_STEP, topic=topic_id, band="answer")


def details(ctx: Context, topic_id: str) -> Reply:
    """Who qualifies, what you get, how to apply, what to bring, where to go."""
    kb = ctx.library.kb
    filled = ctx.library.details(topic_id)
    body = "\n".join(f"【{label}】{filled[key]}" for key, label in DETAIL_LABELS.items() if filled.get(key))
    return Reply(text=f"{kb.topics[topic_id].title}\n{body}", topic=topic_id, band="answer")


def accept_offer(ctx: Context, inbound: Inbound) -> Reply | None:
    """Start the form the last answer offered, if it was offered recently."""
    state = menu_state(ctx, inbound.openid)
    offer = state.offer
    if offer is None or offer.until < ctx.now() or offer.topic not in OFFERS:
        return None
    state.offer = None
    return OFFERS[offer.topic](inbound, ctx)
