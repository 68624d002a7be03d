"""The push job runner: send one announcement to its recipients, resumably.

    send_in_background(runtime, job)    # the console's way; or run_job(runtime, job) to block
    resume_jobs(runtime)                # jobs a crash or restart left unfinished
    PushSender(settings)                # stands in for the runtime in the CLI and the bench

Delivery: users seen within 48 hours get a customer-service message; the others, and
anyone the API answers 45015 (out of the window) or 45047 (the user's customer-service
quota is used up) for, get the [push] fallback_channel (a template message, or a mass
send to a per-batch user tag), counted against [push] daily_quota per China-time day.
43004 marks the subscriber unsubscribed; 45009 and connection failures back off and
retry; other errors fail that recipient and the job carries on. In demo mode (no API
client) messages go to the simulator inbox. WeChat reports later whether a template or
mass message reached the user (bot.push.announcements.record_*_report).

Crashes: a recipient is marked "sending" (one commit) before its call and settled after
it. A customer-service call cannot be made idempotent, so a job resumed after its runner
died turns such rows left in "sending" into "unknown" and does not send them again (at
most once: at most one row per sender thread, whose call was in flight, and most likely
arrived). They are counted apart and retry_failed(include_unknown=True) sends them on
purpose. A template send carries a client_msg_id per job and recipient, so one
interrupted less than TEMPLATE_REPEAT_SECONDS ago is simply repeated (older ones become
"unknown": WeChat keeps the key only for minutes). A mass batch carries a clientmsgid,
so an interrupted batch is repeated too; WeChat answers 45065 if it already went out.

Each mass batch has a user tag named TAG_PREFIX + job + random part; only such tags of
batches recorded here are deleted, once their send finished (see _drop_old_tags).
"""
from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

import requests
from sqlite_utils import Database
from wechatpy.exceptions import WeChatClientException

from bot.push.announcements import UNSUBSCRIBED, job_progress, message_text, next_quota_day_start, quota_day
from bot.settings import Settings
from bot.storage import engine, messages, migrations, push
from bot.wechat.client import SQLiteSessionStorage, WeChatApi

logger = logging.getLogger(__name__)

# Customer-service messages reach only users who interacted within this window.
WINDOW_SECONDS = 48 * 3600
# Rate limits: back off and try again later.
LIMIT_ERRORS = frozenset({45009})
# The customer-service channel cannot reach the user (out of the 48-hour window, or the
# user's customer-service message quota is used up): use the fallback channel.
FALLBACK_ERRORS = frozenset({45015, 45047})
MASS_DUPLICATE = 45065
SYSTEM_BUSY = -1
MAX_ATTEMPTS = 6
# WeChat takes at most this many openids per tagging call.
TAG_BATCH = 50
# Names of the user tags (and clientmsgids) this service makes; other tags are never touched.
TAG_PREFIX = "cyt-push-"
# A template send interrupted this recently is repeated: WeChat drops a repeat with the
# same client_msg_id for about ten minutes.
TEMPLATE_REPEAT_SECONDS = 5 * 60.0
# A batch's tag is deleted this long after its send even if WeChat's report never came.
MASS_REPORT_GRACE_SECONDS = 24 * 3600.0


class Sender(Protocol):
    """What a job needs from its caller; bot.runtime.Runtime is one."""
    settings: Settings
    api: WeChatApi | None

    def open_db(self) -> Database: ...


class PushSender:
    """A Sender without handlers or knowledge base, for the CLI and the bench.

    The web app passes its Runtime instead; both share the token through SQLite.
    """

    def __init__(self, settings: Settings):
        migrations.migrate(settings.storage.database)
        self.settings = settings
        self._local = threading.local()
        wx = settings.wechat
        self.api: WeChatApi | None = None if wx.demo else WeChatApi(
            wx.app_id, wx.app_secret, wx.api_base_url, SQLiteSessionStorage(self._connect))

    def open_db(self) -> Database:
        """A new connection; the caller closes it."""
        return engine.connect(self.settings.storage.database)

    def _connect(self) -> Database:
        # The token storage is used from every sender thread: one connection per thread.
        database = getattr(self._local, "db", None)
        if database is None:
            database = self._local.db = self.open_db()
        return database


# --- sending --------------------------------------------------------------------------


def send_in_background(sender: Sender, job_id: int, **options: Any) -> threading.Thread:
    """Run a job in a daemon thread (the console's way); options as for run_job."""
    def run_logged() -> None:
        try:
            run_job(sender, job_id, **options)
        except Exception:  # the thread has no caller to raise to; the job resumes later
            logger.exception("push job %s stopped", job_id)

    thread = threading.Thread(target=run_logged, name=f"push-job-{job_id}", daemon=True)
    thread.start()
    return thread


def resume_jobs(sender: Sender, **options: Any) -> list[int]:
    """Run every unfinished job whose runner is gone (after a crash or restart); returns their ids."""
    database = sender.open_db()
    try:
        jobs = [j["id"] for j in push.unfinished_push_jobs(database)]
    finally:
        database.close()
    ran = []
    for job_id in jobs:
        if run_job(sender, job_id, **options)["ran"]:
            ran.append(job_id)
    return ran


def run_job(sender: Sender, job_id: int, *, senders: int = 4, backoff: float = 2.0,
            max_wait: float = 300.0, lease_seconds: float = 30.0,
            stop: threading.Event | None = None) -> dict[str, Any]:
    """Send a job until nothing is due within max_wait seconds; returns job_progress plus "ran".

    Only one runner works on a job at a time (a lease in push_jobs); if another live
    runner has it, this returns at once with ran=False. backoff is the first retry delay
    after a rate limit, doubled per attempt.
    """
    database = sender.open_db()
    runner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex}"
    try:
        if not push.claim_push_job(database, job_id, runner, lease_seconds, _runner_gone,
                                   engine.now() - TEMPLATE_REPEAT_SECONDS):
            return {**job_progress(database, job_id), "ran": False}
        try:
            if _api_ready(sender, database, job_id):
                _JobRun(sender, database, job_id, runner, senders, backoff, lease_seconds,
                        stop or threading.Event()).run(max_wait)
        finally:
            push.release_push_job(database, job_id, runner)
        progress = job_progress(database, job_id)
        logger.info("push job %s %s: %s delivered, %s failed, %s unknown, %s pending", job_id,
                    progress["status"], progress["delivered"], progress["failed"],
                    progress["unknown"], progress["pending"])
        return {**progress, "ran": True}
    finally:
        database.close()


def _api_ready(sender: Sender, database: Database, job_id: int) -> bool:
    """Get the access token once up front: with a wrong AppSecret every send would fail alike."""
    if sender.api is not None:
        try:
            _ = sender.api.access_token
        except WeChatClientException as exc:
            push.set_push_job_error(database, job_id,
                                    f"access token: errcode {exc.errcode} {exc.errmsg or ''}")
            return False
        except requests.RequestException as exc:
            push.set_push_job_error(database, job_id, f"access token: {type(exc).__name__}")
            return False
    push.set_push_job_error(database, job_id, "")
    return True


def _runner_gone(runner: str) -> bool:
    """Whether a runner on this machine has died (its lease may not have expired yet)."""
    host, _, rest = runner.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit() or int(pid_text) == os.getpid():
        return False
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


@dataclass(frozen=True)
class _Failure:
    errcode: int
    error: str
    retry: bool = False      # transient: try again after a back-off
    uncertain: bool = False  # the call may have been delivered


class _Pacer:
    """Spaces calls to at most rate per second across sender threads (0: no limit)."""

    def __init__(self, rate: float):
        self._interval = 1.0 / rate if rate > 0 else 0.0
        self._next = time.monotonic()
        self._lock = threading.Lock()

    def wait(self) -> None:
        if not self._interval:
            return
        with self._lock:
            slot = max(self._next, time.monotonic())
            self._next = slot + self._interval
        delay = slot - time.monotonic()
        if delay > 0:
            time.sleep(delay)


class _JobRun:
    """One runner's pass over a job: per-recipient sends in a thread pool, then mass batches."""

    def __init__(self, sender: Sender, database: Database, job_id: int, runner: str,
                 senders: int, backoff: float, lease_seconds: float, stop: threading.Event):
        self.sender = sender
        self.api = sender.api
        self.push = sender.settings.push
        self.database = database
        self.job_id = job_id
        self.runner = runner
        self.senders = max(1, senders)
        self.backoff = backoff
        self.lease_seconds = lease_seconds
        self.stop = stop
        job = push.get_push_job(database, job_id)
        if job is None:
            raise ValueError(f"no push job {job_id}")
        self.text = message_text(job["text"], job["url"])
        self.plain = job["text"]
        self.url = job["url"]
        self.pacer = _Pacer(self.push.rate_per_second)
        self._local = threading.local()
        self._connections: list[Database] = []
        self._lock = threading.Lock()

    def run(self, max_wait: float) -> None:
        rate = self.push.rate_per_second
        chunk = self.senders * 10 if rate <= 0 else max(self.senders, min(self.senders * 10, int(rate * 5)))
        try:
            with ThreadPoolExecutor(self.senders, thread_name_prefix=f"push-{self.job_id}") as pool:
                while not self.stop.is_set():
                    if not push.renew_push_job(self.database, self.job_id, self.runner, self.lease_seconds):
                        return  # cancelled, or taken over after our lease ran out
                    rows = push.due_recipients(self.database, self.job_id, chunk)
                    if rows:
                        list(pool.map(self._send_one, rows))
                        continue
                    mass = push.queued_for_mass(self.database, self.job_id)
                    if mass:
                        self._send_mass(mass)
                        continue
                    due = push.next_push_due(self.database, self.job_id)
                    if due is None or due - engine.now() > max_wait:
                        return
                    self.stop.wait(min(max(due - engine.now(), 0.01), 1.0))
        finally:
            for connection in self._connections:
                connection.close()

    def _db(self) -> Database:
        connection = getattr(self._local, "db", None)
        if connection is None:
            connection = self._local.db = self.sender.open_db()
            with self._lock:
                self._connections.append(connection)
        return connection

    # --- one recipient ----------------------------------------------------------------

    def _send_one(self, row: dict[str, Any]) -> None:
        database = self._db()
        openid = row["openid"]
        if row["subscribed"] == 0:
            push.finish_push(database, row["id"], "failed", errcode=UNSUBSCRIBED, error="unsubscribed",
                           expect="pending")
            return
        api = self.api
        if api is None:
            push.deliver_push_to_inbox(database, row["id"], openid, self.text)
            return
        seen = row["last_seen_at"]
        in_window = seen is not None and engine.now() - seen < WINDOW_SECONDS
        expect = "pending"
        if row["channel"] in (None, "custom") and in_window:
            if push.mark_push_sending(database, row["id"], "custom") != "ok":
                return  # another runner took it over
            _, failure = self._call(lambda: api.send_text(openid, self.text))
            if failure is None:
                push.finish_push(database, row["id"], "delivered")
                return
            if failure.errcode not in FALLBACK_ERRORS:
                self._settle(database, row, failure)
                return
            expect = "sending"  # still ours: carry on with the fallback channel
        if self.push.fallback_channel == "mass":
            push.finish_push(database, row["id"], "pending", channel="mass", expect=expect)
            return
        self._send_template(api, database, row, expect)

    def _send_template(self, api: WeChatApi, database: Database, row: dict[str, Any],
                       expect: str) -> None:
        if not self.push.template_id:
            push.finish_push(database, row["id"], "failed", channel="template", errcode=-1,
                           error="[push] template_id is not configured", expect=expect)
            return
        day = quota_day()
        claim = push.mark_push_sending(database, row["id"], "template", (day, self.push.daily_quota), expect)
        if claim == "taken":
            return
        if claim == "quota":
            push.finish_push(database, row["id"], "pending", channel="template", errcode=None,
                           error="daily quota used up", retry_at=next_quota_day_start(engine.now()),
                           expect=expect)
            return
        msg_id, failure = self._call(lambda: api.send_template(
            row["openid"], self.push.template_id, {"content": {"value": self.plain}}, self.url,
            client_msg_id=f"{TAG_PREFIX}{self.job_id}-{row['id']}"))
        if failure is None:
            push.finish_push(database, row["id"], "delivered", msg_id=msg_id or None)
            return
        refund_day = None if failure.uncertain else day
        if failure.uncertain:  # the client_msg_id makes a prompt repeat safe
            failure = _Failure(failure.errcode, failure.error, retry=True)
        self._settle(database, row, failure, refund_day=refund_day)

    def _call(self, send: Callable[[], Any]) -> tuple[Any, _Failure | None]:
        """(what send returned, None), or (None, why it failed)."""
        self.pacer.wait()
        try:
            return send(), None
        except WeChatClientException as exc:
            if exc.errcode is None:  # an HTTP error status: WeChat answered, nothing was sent
                return None, _Failure(-1, "HTTP error", retry=True)
            code = int(exc.errcode)
            # -1 is WeChat's "system busy, try again later" (and our token-wait timeout).
            return None, _Failure(code, str(exc.errmsg or ""), retry=code == SYSTEM_BUSY)
        except (requests.ConnectTimeout, requests.ConnectionError) as exc:
            if isinstance(exc, requests.ConnectTimeout) or "NewConnectionError" in repr(exc):
                return None, _Failure(-1, "connection failed", retry=True)
            return None, _Failure(-1, "connection lost during the call", uncertain=True)
        except requests.RequestException as exc:
            return None, _Failure(-1, type(exc).__name__, uncertain=True)

    def _settle(self, database: Database, row: dict[str, Any], failure: _Failure,
                refund_day: str | None = None) -> None:
        attempts = row["attempts"] + 1
        if failure.uncertain:
            push.finish_push(database, row["id"], "unknown", errcode=failure.errcode, error=failure.error)
            return
        if failure.errcode == UNSUBSCRIBED:
            messages.mark_unsubscribed(database, row["openid"])
        retry = failure.retry or failure.errcode in LIMIT_ERRORS
        if retry and attempts < MAX_ATTEMPTS:
            logger.warning("push job %s: errcode %s, retrying a recipient later",
                           self.job_id, failure.errcode)
            push.finish_push(database, row["id"], "pending", errcode=failure.errcode,
                           error=failure.error, retry_at=self._retry_at(attempts),
                           refund_day=refund_day)
            return
        push.finish_push(database, row["id"], "failed", errcode=failure.errcode, error=failure.error,
                       refund_day=refund_day)

    def _retry_at(self, attempts: int) -> float:
        """Exponential back-off after a limit or a busy answer, at most 10 minutes."""
        return engine.now() + min(self.backoff * 2 ** (attempts - 1), 600.0)

    # --- mass batches -----------------------------------------------------------------

    def _send_mass(self, rows: list[dict[str, Any]]) -> None:
        api = self.api
        assert api is not None  # demo mode delivers to the inbox before any row reaches mass
        interrupted: dict[str, list[dict[str, Any]]] = {}
        for r in rows:
            if r["status"] == "sending":
                interrupted.setdefault(r["batch"], []).append(r)
        for batch, members in interrupted.items():
            self._mass_batch(api, batch, [r["openid"] for r in members],
                             max(r["attempts"] for r in members))
        fresh = [r for r in rows if r["status"] == "pending"]
        if not fresh:
            return
        batch = f"{TAG_PREFIX}{self.job_id}-{uuid.uuid4().hex[:10]}"
        fit = set(push.start_mass_batch(self.database, self.job_id, [r["id"] for r in fresh], batch,
                                      (quota_day(), self.push.daily_quota)))
        for r in fresh:
            if r["id"] not in fit:
                push.finish_push(self.database, r["id"], "pending", error="daily quota used up",
                               retry_at=next_quota_day_start(engine.now()), expect="pending")
        if fit:
            self._drop_old_tags(api, keep=batch)
            members = [r for r in fresh if r["id"] in fit]
            self._mass_batch(api, batch, [r["openid"] for r in members],
                             max(r["attempts"] for r in members) + 1)

    def _mass_batch(self, api: WeChatApi, batch: str, openids: list[str], attempts: int) -> None:
        try:
            tag = _tag_id(api, batch)
            for i in range(0, len(openids), TAG_BATCH):
                api.tag.tag_user(tag, openids[i:i + TAG_BATCH])
            sent = api.mass_send_text(tag, self.text, client_msg_id=batch)
        except WeChatClientException as exc:
            code = int(exc.errcode) if exc.errcode is not None else -1
            if code == MASS_DUPLICATE:  # this batch went out before an interruption
                push.finish_mass_batch(self.database, self.job_id, batch, "delivered")
            elif (code in LIMIT_ERRORS or code == SYSTEM_BUSY) and attempts < MAX_ATTEMPTS:
                push.finish_mass_batch(self.database, self.job_id, batch, "pending", code,
                                     str(exc.errmsg or ""), retry_at=self._retry_at(attempts))
            else:
                push.finish_mass_batch(self.database, self.job_id, batch, "failed", code,
                                     str(exc.errmsg or ""))
            return
        except requests.RequestException as exc:
            # Safe to repeat: the clientmsgid stops WeChat sending a batch twice.
            status = "pending" if attempts < MAX_ATTEMPTS else "failed"
            push.finish_mass_batch(self.database, self.job_id, batch, status, -1,
                                 type(exc).__name__, retry_at=self._retry_at(attempts))
            return
        push.finish_mass_batch(self.database, self.job_id, batch, "delivered",
                               msg_id=int(sent.get("msg_id") or 0) or None)

    def _drop_old_tags(self, api: WeChatApi, keep: str) -> None:
        """Delete the tags of our batches whose send finished: an account may hold at most
        100 tags, and a tag deleted while WeChat still sends to it could cut the send short."""
        ours = {str(t.get("name", "")): int(t["id"]) for t in api.tag.get()
                if str(t.get("name", "")).startswith(TAG_PREFIX) and t.get("name") != keep}
        done = push.finished_batches(self.database, list(ours),
                                     engine.now() - MASS_REPORT_GRACE_SECONDS)
        for name in sorted(done):
            api.tag.delete(ours[name])


def _tag_id(api: WeChatApi, name: str) -> int:
    """The id of the user tag called name, created if missing (a repeated batch has one).

    https://developers.weixin.qq.com/doc/offiaccount/User_Management/User_Tag_Management.html
    """
    for tag in api.tag.get():
        if tag.get("name") == name:
            return int(tag["id"])
    return int(api.tag.create(name)["id"])

