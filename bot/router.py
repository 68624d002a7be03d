"""Routing: Inbound messages, Reply values, and the Router that maps one to the other.

Handlers are plain functions `(inbound, ctx) -> Reply | None`; None means "not mine" and
the next route is tried. The first Reply wins. Knows no topic ids and no wording: the
error reply is given by handlers/.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from sqlite_utils import Database

from bot.knowledge.live import Library
from bot.privacy import Vault
from bot.settings import Settings
from bot.storage.engine import savepoint

if TYPE_CHECKING:
    from bot.voice import Transcriber

logger = logging.getLogger(__name__)

# Events caused by the subscriber's own action (a CLICK menu button, the two scan-code
# buttons, following, scanning a QR code).
_SUBSCRIBER_EVENTS = frozenset({"click", "scancode_push", "scancode_waitmsg", "subscribe",
                                "subscribe_scan", "scan"})


@dataclass(frozen=True)
class Inbound:
    """One message or event from a subscriber, protocol details removed."""
    openid: str
    kind: str  # text, event, image, voice (unrecognised), video, shortvideo, location, link, file, unknown
    content: str = ""
    msg_type: str = ""
    event: str = ""
    event_key: str = ""
    msg_id: str = ""
    create_time: int = 0
    account: str = ""
    # Every top-level element with text, by tag, as WeChat sent it (trimmed): a handler
    # for a new message or event type reads its details here.
    fields: Mapping[str, str] = field(default_factory=dict, compare=False, hash=False)
    media_id: str = ""  # voice (and other media): what /cgi-bin/media/get fetches

    @property
    def dedupe_key(self) -> str:
        """The sender plus MsgId for messages (MsgIds are not secret, so another sender's
        must not collide); plus CreateTime and event for events, which have no MsgId."""
        if self.msg_id:
            return f"msg:{self.openid}:{self.msg_id}"
        return f"evt:{self.openid}:{self.create_time}:{self.event}:{self.event_key}"

    @property
    def from_subscriber(self) -> bool:
        """Whether the subscriber did this: a message, menu click, follow or scan, which
        opens WeChat's 48-hour customer-service window; reports and job results do not.
        https://developers.weixin.qq.com/doc/offiaccount/Message_Management/Service_Center_messages.html
        """
        return self.kind != "event" or self.event in _SUBSCRIBER_EVENTS

    @property
    def text(self) -> str:
        """The text to act on, trimmed."""
        return self.content.strip()


@dataclass(frozen=True)
class Reply:
    """What the bot answers. Only bot.wechat turns it into XML."""
    kind: Literal["text", "empty"] = "text"
    text: str = ""
    topic: str | None = None  # policy topic answered, for the log and analytics
    band: str | None = None   # matcher band, for the log and analytics
    transcript: str = ""      # what a voice message was heard as, for the log
    transcribe_ms: float | None = None  # time the voice took to become text, for the log

    @classmethod
    def empty(cls) -> Reply:
        """No message back (WeChat gets "success")."""
        return cls(kind="empty")

    def with_text(self, text: str) -> Reply:
        """The same reply with other text."""
        return replace(self, text=text)


@dataclass
class Context:
    """What a handler may use while answering one message."""
    settings: Settings
    db: Database
    library: Library
    vault: Vault  # encryption of personal data at rest
    clock: Callable[[], float] = time.time
    # What a handler module reads once per message and shares between its handlers and
    # after-hooks (e.g. the user's forms); each message starts with an empty one.
    memo: dict[str, Any] = field(default_factory=dict)
    # The root router, for a handler that turns one message into another (voice -> text).
    router: Router | None = None
    voice: Transcriber | None = None  # speech to text; None when recognition is off

    def now(self) -> float:
        """Current time (tests move the clock to exercise expiry)."""
        return self.clock()


Handler = Callable[[Inbound, Context], "Reply | None"]
AfterHook = Callable[[Inbound, Context, Reply], Reply]
# A decorated handler keeps its own type (e.g. one that always answers returns Reply).
H = TypeVar("H", bound=Handler)


class Router:
    """An ordered list of (predicate, handler) routes, composed from handler modules."""

    def __init__(self) -> None:
        self.routes: list[tuple[Callable[[Inbound], bool], Handler]] = []
        self.after_hooks: list[AfterHook] = []
        self.error_reply: Callable[[Context], Reply] = lambda ctx: Reply.empty()

    def add(self, predicate: Callable[[Inbound], bool]) -> Callable[[H], H]:
        """Register a handler for messages the predicate accepts."""
        def decorator(fn: H) -> H:
            self.routes.append((predicate, fn))
            return fn
        return decorator

    def text(self, fn: H) -> H:
        """Any text message (voice with recognition included)."""
        return self.add(lambda m: m.kind == "text")(fn)

    def keyword(self, *words: str) -> Callable[[H], H]:
        """A text message that is exactly one of the words (trimmed)."""
        wanted = set(words)
        return self.add(lambda m: m.kind == "text" and m.text in wanted)

    def event(self, *names: str) -> Callable[[H], H]:
        """An event such as subscribe, unsubscribe, scan, location, click, view."""
        wanted = {n.lower() for n in names}
        return self.add(lambda m: m.kind == "event" and m.event in wanted)

    def click(self, *keys: str) -> Callable[[H], H]:
        """A custom-menu CLICK event with one of the keys."""
        wanted = set(keys)
        return self.add(lambda m: m.kind == "event" and m.event == "click" and m.event_key in wanted)

    def message(self, *kinds: str) -> Callable[[H], H]:
        """A message of one of the kinds (image, voice, location, link, unknown, …)."""
        wanted = set(kinds)
        return self.add(lambda m: m.kind in wanted)

    def after(self, hook: AfterHook) -> AfterHook:
        """Post-process every reply (e.g. split long text)."""
        self.after_hooks.append(hook)
        return hook

    def include(self, other: Router) -> None:
        """Append another router's routes and hooks after this one's."""
        self.routes.extend(other.routes)
        self.after_hooks.extend(other.after_hooks)

    def dispatch(self, inbound: Inbound, ctx: Context) -> Reply:
        """Run the first handler that answers; a crash becomes the polite error reply.

        The handlers' writes are a savepoint of the message's transaction: a crash rolls
        back what they half did, and the apology is still logged with the message.
        """
        try:
            with savepoint(ctx.db):
                reply = self._first_reply(inbound, ctx)
                for hook in self.after_hooks:
                    reply = hook(inbound, ctx, reply)
            return reply
        except Exception:
            # The only broad except: a bug must cost the user one polite message, not a 500.
            logger.exception("handler failed for a %s message", inbound.kind)
            ctx.memo.clear()  # what was read may describe the rolled-back writes
            return self.error_reply(ctx)

    def _first_reply(self, inbound: Inbound, ctx: Context) -> Reply:
        for predicate, handler in self.routes:
            if predicate(inbound):
                reply = handler(inbound, ctx)
                if reply is not None:
                    return reply
        return Reply.empty()
