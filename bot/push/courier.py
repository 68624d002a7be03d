"""The courier: a serving process's background threads for outbound messages.

Every few seconds it sends queued notices and late replies (the outbox), now and then it
resumes push jobs a crash or restart left unfinished, and it checkpoints the WAL so that
commits need not.

    notify(database, openid, text)      # one notice through the outbox
    courier.deliver_pending()           # send due outbox rows now
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from sqlite_utils import Database
from wechatpy.exceptions import WeChatClientException

from bot.push.runner import Sender, resume_jobs
from bot.storage import engine, push

logger = logging.getLogger(__name__)

# Errors after which a customer-service message is not retried: the user is out of the
# 48-hour window (45015) or has unsubscribed (43004).
_FINAL_ERRORS = frozenset({45015, 43004})


def notify(database: Database, openid: str, text: str) -> int:
    """Queue one notice (e.g. an application status change) in the outbox; returns its id.

    The courier sends it (or, in demo mode, puts it in the simulator inbox); call
    deliver_pending() right after to send at once.
    """
    return push.enqueue_message(database, openid, text, "notice")


class Courier:
    """Delivers the outbox and resumes push jobs for one sender (the app's Runtime).

    connect gives the calling thread's own connection; the threads stop when stopping is set.
    """

    def __init__(self, sender: Sender, connect: Callable[[], Database], stopping: threading.Event):
        self.sender = sender
        self.connect = connect
        self.stopping = stopping

    def start(self, notice_interval: float = 2.0, job_interval: float = 15.0,
              checkpoint_interval: float = 0.2) -> None:
        """Start the notice, push-job and WAL-checkpoint threads (daemons)."""
        self.every(checkpoint_interval, lambda: engine.checkpoint(self.connect()), "wal-checkpointer")
        self.every(notice_interval, self.deliver_pending, "outbox-courier")
        self.every(job_interval, lambda: resume_jobs(self.sender), "push-resumer")

    def every(self, interval: float, work: Callable[[], object], name: str) -> None:
        """Run work every interval seconds in a daemon thread until stopping is set."""
        def loop() -> None:
            while not self.stopping.wait(interval):
                try:
                    work()
                except Exception:  # a thread with no caller: log, keep delivering
                    logger.exception("%s failed; retrying in %.0f s", name, interval)
        threading.Thread(target=loop, name=name, daemon=True).start()

    def deliver_pending(self, limit: int = 50) -> int:
        """Send due outbox messages (to the simulator inbox in demo mode); returns how many."""
        database = self.connect()
        api = self.sender.api
        sent = 0
        for row in push.claim_outbox(database, limit):
            if api is None:
                push.add_to_inbox(database, row["openid"], row["text"])
                push.finish_outbox(database, row["id"])
                sent += 1
                continue
            try:
                api.send_text(row["openid"], row["text"])
            except WeChatClientException as exc:
                code = int(exc.errcode or -1)
                logger.warning("customer-service send failed: errcode %s", code)
                push.finish_outbox(database, row["id"], code, str(exc.errmsg or ""),
                                   retry_in=None if code in _FINAL_ERRORS else 30.0)
                continue
            push.finish_outbox(database, row["id"])
            sent += 1
        return sent
