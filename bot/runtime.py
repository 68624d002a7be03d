"""Process-wide services: settings, router, knowledge, crypto, API client, handler threads.

One Runtime per app (in app.extensions["bot"]); nothing here is module-level state.
"""
from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field

from sqlite_utils import Database

from bot import startup
from bot.casework import Notices
from bot.claims import Claims
from bot.faults import is_storage_failure
from bot.knowledge.live import Library
from bot.matching.matcher import Match
from bot.privacy import mask_text
from bot.push.courier import Courier
from bot.router import Context, Inbound, Reply, Router
from bot.settings import Settings
from bot.storage import engine, messages, nonces, push
from bot.voice import build_transcriber
from bot.wechat.client import SQLiteSessionStorage, WeChatApi
from bot.wechat.protocol import Crypto

logger = logging.getLogger(__name__)

_LAST_SEEN_MEMORY = 10_000  # users whose last-seen time a process remembers
_NONCE_PRUNE_INTERVAL = 60.0  # seconds between deletions of expired nonces, per process
_HELD_LIMIT = 1000  # messages a process keeps for a retry while the database takes no writes


@dataclass
class _Job:
    received_at: float
    nonce: str
    lock: threading.Lock = field(default_factory=threading.Lock)
    finished: bool = False
    deferred: bool = False


class _AlreadyAnswered(Exception):
    """The message was answered before: this second answer is undone."""


class ReplayRefused(Exception):
    """A signed nonce seen before with another message: a replayed request URL."""


class Runtime:
    """Everything a message needs that outlives one request."""

    def __init__(self, settings: Settings, router: Router, library: Library,
                 describe_match: Callable[[Match, Library, Settings], str], notices: Notices):
        self.settings = settings
        self.router = router
        self.library = library
        # Time for handlers (ctx.now()); tests replace it to move the clock.
        self.clock: Callable[[], float] = time.time
        # The bot's words for a match without a conversation (/api/ask, `run.py ask`).
        self.describe_match = describe_match
        # What applicants are told when their application changes (console, CLI).
        self.notices = notices
        self.vault = startup.prepare_storage(settings)  # migrated, writable, key checked
        wx = settings.wechat
        self.crypto = Crypto(wx.token, wx.encoding_aes_key, wx.app_id) if wx.encoding_aes_key else None
        self.api: WeChatApi | None = None
        if not wx.demo:
            self.api = WeChatApi(wx.app_id, wx.app_secret, wx.api_base_url,
                                 SQLiteSessionStorage(self.connect))
        self.voice = build_transcriber(settings, self.api)
        database = settings.storage.database
        self.claims = Claims(database.with_name(database.name + ".claims"))
        # openid -> the last-seen time this process knows is stored, so that most messages
        # of a conversation need not even read it (storage keeps it to a minute).
        self._last_seen: dict[str, float] = {}
        self._nonces_pruned_at = 0.0
        # Messages a storage failure (read-only database, full disk) kept from being
        # answered: WeChat got "success" and will not resend, so they are answered later.
        self._held: deque[tuple[Inbound, float]] = deque(maxlen=_HELD_LIMIT)
        self._executor = ThreadPoolExecutor(max_workers=8, thread_name_prefix="handler")
        self._local = threading.local()
        self._stopping = threading.Event()
        # Set by start_courier: its thread checkpoints the WAL, so commits need not.
        self._checkpoints_in_background = False
        self.courier = Courier(self, self.connect, self._stopping)

    # --- storage -------------------------------------------------------------------

    def connect(self) -> Database:
        """A database connection for the calling thread (reused across its messages)."""
        database = getattr(self._local, "db", None)
        if database is None:
            database = self._local.db = self.open_db()
        return database

    def _drop_connection(self) -> None:
        """Close the calling thread's connection: one opened while the file was read-only
        stays read-only, so the next message opens a fresh one."""
        database = self._local.__dict__.pop("db", None)
        if database is not None:
            database.close()

    def open_db(self) -> Database:
        """A new connection; the caller closes it."""
        return engine.connect(self.settings.storage.database,
                               autocheckpoint=not self._checkpoints_in_background)

    def context(self, database: Database) -> Context:
        """A handler context on the given connection."""
        return Context(settings=self.settings, db=database, library=self.library, vault=self.vault,
                       clock=self.clock, router=self.router, voice=self.voice)

    # --- answering -----------------------------------------------------------------

    def answer_once(self, inbound: Inbound, nonce: str) -> Reply:
        """Answer a message once however often WeChat resends it; raise ReplayRefused when
        the request's signed nonce came before with another message.

        A claim covers a message being answered; the message log's unique key covers one
        answered before, found when the answer is recorded rather than by a read up front:
        such resends are rare (WeChat resends only when our reply was lost or late), and
        for them the handlers run again and their changes are rolled back. The nonce is
        checked the same way, when the answer is recorded.
        """
        key = inbound.dedupe_key
        if not self.claims.claim(key):
            # Another thread or process is answering it and will reply, or send the
            # answer later through the customer-service API.
            return Reply.empty()
        job = _Job(received_at=engine.now(), nonce=nonce)
        try:
            future = self._executor.submit(self._handle, inbound, job)  # releases the claim
        except BaseException:
            self.claims.release(key)
            raise
        return self._within_budget(future, job, inbound)

    def _within_budget(self, future: Future[Reply], job: _Job, inbound: Inbound) -> Reply:
        """The handlers' reply if they finish within the budget, else "success" now and the
        answer later via the outbox."""
        try:
            return future.result(timeout=self.settings.wechat.reply_budget_seconds)
        except FutureTimeout:
            with job.lock:
                if not job.finished:
                    job.deferred = True
                    logger.warning("reply deferred past the budget for a %s message", inbound.kind)
                    return Reply.empty()
            return future.result()

    def _handle(self, inbound: Inbound, job: _Job) -> Reply:
        try:
            return self._answer(inbound, job)
        except _AlreadyAnswered:
            return self._earlier_reply(inbound.dedupe_key)
        except sqlite3.DatabaseError as exc:
            if not is_storage_failure(exc):
                raise
            # Nothing was recorded and the claim goes, so a resend is answered afresh;
            # "success" spares the user WeChat's "cannot serve you" notice, and the
            # message is kept here to be answered once the database takes writes again.
            logger.error("a %s message was not recorded, answered \"success\"", inbound.kind,
                         exc_info=exc)
            self._drop_connection()
            self._held.append((inbound, job.received_at))
            return Reply.empty()
        finally:
            self.claims.release(inbound.dedupe_key)

    def retry_held(self) -> int:
        """Answer the messages a storage failure held back, through the customer-service
        API like a late answer; returns how many were answered. Stops at the first failure."""
        answered = 0
        while self._held:
            inbound, received_at = self._held.popleft()
            if not self.claims.claim(inbound.dedupe_key):
                continue  # WeChat's resend of it is being answered right now
            try:
                self._answer(inbound, _Job(received_at=received_at, nonce="", deferred=True))
                answered += 1
            except _AlreadyAnswered:
                pass  # a resend was answered meanwhile
            except sqlite3.DatabaseError as exc:
                if not is_storage_failure(exc):
                    raise
                self._held.appendleft((inbound, received_at))
                self._drop_connection()
                break
            finally:
                self.claims.release(inbound.dedupe_key)
        return answered

    def _earlier_reply(self, key: str) -> Reply:
        """A resend of a message answered before: the reply it got in time, else "success"
        (the late answer went out through the customer-service API)."""
        seen = messages.find_message(self.connect(), key)
        if seen is not None and seen.state == "replied" and seen.reply_kind == "text" and seen.reply:
            return Reply(text=seen.reply)
        return Reply.empty()

    def _answer(self, inbound: Inbound, job: _Job) -> Reply:
        database = self.connect()
        # One commit for everything the message changes, its log record included. If it
        # fails, nothing is recorded and WeChat's resend is answered afresh.
        with engine.transaction(database):
            reply = self.router.dispatch(inbound, self.context(database))
            with job.lock:
                job.finished = True
                deferred = job.deferred
            if inbound.from_subscriber:
                self._touch(database, inbound.openid)
            if job.nonce:  # a held message answered later came with no request of its own
                self._check_nonce(database, job.nonce, inbound.dedupe_key)
            try:
                messages.record_message(
                    database, inbound.dedupe_key, inbound.openid, inbound.msg_id,
                    inbound.msg_type, mask_text(inbound.content or reply.transcript),
                    job.received_at, mask_text(reply.text), reply.kind, reply.topic, reply.band,
                    "deferred" if deferred else "replied", reply.transcribe_ms)
            except sqlite3.IntegrityError:
                # Answered before (WeChat resends when our reply was lost or late): undo
                # this second answer; the first one stands.
                raise _AlreadyAnswered from None
            late = deferred and reply.kind == "text" and bool(reply.text)
            if late:
                push.enqueue_message(database, inbound.openid, reply.text, "late-reply")
        if late:
            self.deliver_pending()
        return reply

    def _check_nonce(self, database: Database, nonce: str, key: str) -> None:
        """Remember the nonce with the message it carried, dropping expired nonces once a
        minute; raise ReplayRefused (undoing the answer) if it carried another message."""
        now = engine.now()
        if now - self._nonces_pruned_at >= _NONCE_PRUNE_INTERVAL:
            nonces.forget_nonces(database, now - self.settings.wechat.max_clock_skew_seconds)
            self._nonces_pruned_at = now
        if not nonces.remember_nonce(database, nonce, key, now):
            raise ReplayRefused(nonce)

    def _touch(self, database: Database, openid: str) -> None:
        """Note the user's activity, asking storage at most once a minute per user."""
        now = engine.now()
        if now - self._last_seen.get(openid, 0.0) < messages.LAST_SEEN_PRECISION:
            return
        if len(self._last_seen) >= _LAST_SEEN_MEMORY:
            self._last_seen.clear()  # a burst of new users: start remembering afresh
        self._last_seen[openid] = messages.touch_subscriber(database, openid)

    # --- outbound ------------------------------------------------------------------

    def start_courier(self, notice_interval: float = 2.0, job_interval: float = 15.0,
                      checkpoint_interval: float = 0.2, prune_interval: float = 3600.0) -> None:
        """Start the background threads of a serving process (see bot.push.courier), and
        pruning of the message log past [storage] keep_days. Call before the process opens
        its connections: the courier checkpoints the WAL."""
        self._checkpoints_in_background = True
        self.courier.start(notice_interval, job_interval, checkpoint_interval)
        self.courier.every(notice_interval, self.retry_held, "held-retry")
        self.courier.every(prune_interval, lambda: messages.prune_messages(
            self.connect(), engine.now() - self.settings.storage.keep_days * 86400), "log-pruner")

    def deliver_pending(self, limit: int = 50) -> int:
        """Send due outbox messages now; returns how many."""
        return self.courier.deliver_pending(limit)

    def close(self) -> None:
        """Stop the handler and courier threads (tests create many apps)."""
        self._stopping.set()
        self._executor.shutdown(wait=True)

