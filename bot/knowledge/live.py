"""The knowledge base and its matcher as one live object, reloaded when the files change.

Every worker process watches the policies/ files itself (at most once per
RELOAD_CHECK_SECONDS), so an edit — from the console or by hand — reaches all gunicorn
workers without a restart. A broken edit keeps the old base serving.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from bot.knowledge.load import KnowledgeBase, KnowledgeError, load_knowledge, placeholder_values
from bot.matching.matcher import Match, Matcher
from bot.settings import Settings

logger = logging.getLogger(__name__)

RELOAD_CHECK_SECONDS = 2.0


@dataclass(frozen=True)
class _Loaded:
    kb: KnowledgeBase
    matcher: Matcher
    answers: dict[str, str]  # topic id -> answer with the county's details filled in


class Library:
    """Answers "which topic is this question about" against the current knowledge base."""

    def __init__(self, settings: Settings):
        self._settings = settings
        self._values = placeholder_values(settings.county, settings.loan)
        self._loaded = self._build(load_knowledge(settings.matcher.policies_dir), None)
        self._lock = threading.Lock()
        self._checked_at = time.monotonic()
        self.last_error: str | None = None

    @property
    def kb(self) -> KnowledgeBase:
        """The knowledge base now serving."""
        self._maybe_reload()
        return self._loaded.kb

    def match(self, question: str) -> Match:
        """Match a question against the current knowledge base."""
        self._maybe_reload()
        return self._loaded.matcher.match(question)

    def answer_text(self, topic_id: str) -> str:
        """A topic's answer with the county's details and the loan figures filled in."""
        return self._loaded.answers[topic_id]

    def details(self, topic_id: str) -> dict[str, str]:
        """A topic's details, filled in like its answer, in DETAIL_FIELDS order."""
        return self._loaded.kb.render_details(topic_id, self._values)

    def reload(self) -> bool:
        """Reload now if the files changed; on a broken edit keep serving the old base."""
        with self._lock:
            self._checked_at = time.monotonic()
            try:
                kb = self._loaded.kb.reload()
            except KnowledgeError as exc:
                if self.last_error != str(exc):
                    logger.error("knowledge base not reloaded, old version still serving: %s", exc)
                self.last_error = str(exc)
                return False
            self.last_error = None
            if kb is self._loaded.kb:
                return False
            self._loaded = self._build(kb, self._loaded.matcher)
            logger.info("knowledge base reloaded: %d topics", len(kb.topics))
            return True

    def _maybe_reload(self) -> None:
        if time.monotonic() - self._checked_at >= RELOAD_CHECK_SECONDS:
            self.reload()

    def _build(self, kb: KnowledgeBase, previous: Matcher | None) -> _Loaded:
        matcher = previous.reload(kb) if previous else Matcher(kb, self._settings.matcher)
        # Filled once per load: every answered question needs one.
        answers = {tid: kb.render_answer(tid, self._values) for tid in kb.topics}
        return _Loaded(kb, matcher, answers)
