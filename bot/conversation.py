"""The per-user menu state: the list on screen, the last topic, an offer, more pages, a
withdrawal awaiting its answer.

One typed object per user, read at most once per message (on first use, through
Context.memo) and written at most once, after the reply and only if it changed:
store_menu_state is the root router's last after-hook. Stored as JSON in user_state,
under the keys older rows already use.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bot.router import Context, Inbound, Reply
from bot.storage import user_state

_MEMO = "menu"


@dataclass
class Listing:
    """A numbered list on screen: the next digit picks from it."""
    kind: str  # main, category, suggest
    items: list[str] = field(default_factory=list)
    category: str | None = None


@dataclass
class LastTopic:
    """The topic answered last, for 详情 and 返回."""
    id: str
    parent: str | None = None


@dataclass
class Offer:
    """A form an answer offered; a plain "好" before `until` starts it."""
    topic: str
    until: float


@dataclass
class Pages:
    """The rest of a reply cut for length, served on 更多 right after that reply."""
    pages: list[str]
    after: str  # dedupe key of the message whose reply they continue


@dataclass
class Withdrawal:
    """Applications the bot just asked about withdrawing: one to confirm, or a numbered
    choice; it holds only for the message right after the one that asked."""
    refs: list[str]
    after: str  # dedupe key of the message whose reply asked


@dataclass
class MenuState:
    """Where the user is in the menus."""
    listing: Listing | None = None
    topic: LastTopic | None = None
    offer: Offer | None = None
    more: Pages | None = None
    withdrawal: Withdrawal | None = None

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> MenuState:
        """Read a stored row; parts in an older or unknown shape are left out."""
        return cls(listing=_part(Listing, raw.get("list")), topic=_part(LastTopic, raw.get("topic")),
                   offer=_part(Offer, raw.get("offer")), more=_part(Pages, raw.get("more")),
                   withdrawal=_part(Withdrawal, raw.get("withdraw")))

    def to_dict(self) -> dict[str, Any]:
        """The row to store (empty parts omitted)."""
        parts = {"list": self.listing, "topic": self.topic, "offer": self.offer, "more": self.more,
                 "withdraw": self.withdrawal}
        # The parts are flat (strings, numbers, lists of strings): a copy of each field, with
        # its lists copied, is the whole row. dataclasses.asdict deep-copies, at 60 µs a
        # message, since this runs twice for every message that reads the state.
        return {key: {name: list(item) if isinstance(item, list) else item
                      for name, item in vars(value).items()}
                for key, value in parts.items() if value is not None}


def _part(kind: Any, raw: Any) -> Any:
    if not isinstance(raw, dict):
        return None
    try:
        return kind(**raw)
    except TypeError:  # keys of another version
        return None


def menu_state(ctx: Context, openid: str) -> MenuState:
    """The user's menu state for this message (read from storage on first use)."""
    loaded = ctx.memo.get(_MEMO)
    if loaded is None:
        state = MenuState.from_dict(user_state.load_state(ctx.db, openid))
        loaded = ctx.memo[_MEMO] = (openid, state, state.to_dict())
    return loaded[1]


def store_menu_state(inbound: Inbound, ctx: Context, reply: Reply) -> Reply:
    """After-hook: write the menu state back if this message changed it."""
    loaded = ctx.memo.get(_MEMO)
    if loaded is not None:
        openid, state, before = loaded
        after = state.to_dict()
        if after != before:
            user_state.save_state(ctx.db, openid, after)
    return reply
