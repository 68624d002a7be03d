"""Form engine: one question per message, answers kept per user in SQLite.

A Form is an ordered list of Fields (key, prompt, check). The engine tracks which field is
pending, validates answers, goes back, edits single answers from the summary, pauses and
expires. It knows no wording: prompts, hints and labels come from handlers/. Answers are
personal data, so the dialogue row holds them encrypted with the Vault.
"""
from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from sqlite_utils import Database

from bot.privacy import Vault
from bot.router import Context
from bot.storage import user_state

logger = logging.getLogger(__name__)

SUMMARY = "@summary"  # the step after the last field: show everything, wait for confirmation

ACTIVE = "active"
PAUSED = "paused"    # by the user (menu) or by idling past the timeout
EXPIRED = "expired"  # paused by the timeout: the user is told once on the next message
DROPPED = "dropped"  # finished or cancelled: deleted from storage, not to be saved again

# A save that would change only the time is skipped while the stored time is younger than
# this: idling is counted in minutes, and a question asked mid-form then writes nothing.
TOUCH_PRECISION = 60.0  # seconds


@dataclass(frozen=True)
class Check:
    """The outcome of checking one answer: a value, or a hint saying what was wrong."""
    value: Any = None
    hint: str = ""
    confirm: str = ""  # ask this yes/no question before keeping an unsure value
    also: Mapping[str, Any] = field(default_factory=dict)  # further answers filled at once

    @property
    def ok(self) -> bool:
        """True when the answer was accepted (possibly pending confirmation)."""
        return not self.hint


@dataclass(frozen=True)
class Field:
    """One question of a form."""
    key: str
    prompt: Callable[[Context, "Dialogue"], str]
    check: Callable[[str, Context, "Dialogue"], Check]
    label: str = ""  # name in the summary; empty keeps the field out of it
    aliases: tuple[str, ...] = ()  # other names users give the field when editing it
    show: Callable[[Any], str] = str


@dataclass(frozen=True)
class Form:
    """A named, ordered set of fields."""
    name: str
    fields: tuple[Field, ...]

    def field(self, key: str) -> Field:
        """The field with this key."""
        return next(f for f in self.fields if f.key == key)

    def summary_fields(self, answers: Mapping[str, Any]) -> list[Field]:
        """Answered fields shown in the summary, in form order (numbered from 1 there)."""
        return [f for f in self.fields if f.label and f.key in answers]


@dataclass
class Dialogue:
    """One user's progress through one form."""
    openid: str
    form: str
    step: str
    answers: dict[str, Any] = field(default_factory=dict)
    # Keys set by each accepted answer, oldest first: "back" undoes the newest.
    history: list[list[str]] = field(default_factory=list)
    attempts: int = 0  # failed tries at the current step
    status: str = ACTIVE
    pending: dict[str, Any] | None = None  # an unsure value waiting for yes/no
    cancelling: bool = False  # asked "really cancel?"
    started_at: float = 0.0
    updated_at: float = 0.0
    # The row as last loaded or saved, so an unchanged dialogue is not encrypted again.
    stored: _Stored | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class _Stored:
    step: str
    status: str
    attempts: int
    updated_at: float
    plain: str  # the answers' JSON
    ciphertext: str


def first_open_step(form: Form, answers: Mapping[str, Any]) -> str:
    """The first unanswered field, or SUMMARY when all are answered."""
    return next((f.key for f in form.fields if f.key not in answers), SUMMARY)


def begin(form: Form, openid: str, now: float, answers: Mapping[str, Any] | None = None) -> Dialogue:
    """A new dialogue at the first field not already answered."""
    given = dict(answers or {})
    return Dialogue(openid=openid, form=form.name, step=first_open_step(form, given),
                    answers=given, started_at=now, updated_at=now)


def give(form: Form, dialogue: Dialogue, text: str, ctx: Context) -> Check:
    """Check an answer to the pending field; keep it, hold it for confirmation, or count a miss."""
    check = form.field(dialogue.step).check(text, ctx, dialogue)
    if not check.ok:
        dialogue.attempts += 1
    elif check.confirm:
        dialogue.pending = {"value": check.value, "also": dict(check.also)}
    else:
        accept(form, dialogue, check.value, check.also)
    return check


def accept(form: Form, dialogue: Dialogue, value: Any, also: Mapping[str, Any] | None = None) -> None:
    """Store the answer to the pending field and move to the next open step."""
    also = dict(also or {})
    dialogue.answers[dialogue.step] = value
    dialogue.answers.update(also)
    dialogue.history.append([dialogue.step, *also])
    dialogue.attempts = 0
    dialogue.pending = None
    dialogue.step = first_open_step(form, dialogue.answers)


def accept_pending(form: Form, dialogue: Dialogue) -> None:
    """The user confirmed the unsure value."""
    pending = dialogue.pending or {}
    accept(form, dialogue, pending.get("value"), pending.get("also"))


def forget_pending(dialogue: Dialogue) -> None:
    """The user rejected the unsure value: ask the same field again."""
    dialogue.pending = None


def back(dialogue: Dialogue) -> bool:
    """Undo the newest answer and ask that field again; False when nothing was answered."""
    dialogue.pending = None
    dialogue.attempts = 0
    if not dialogue.history:
        return False
    keys = dialogue.history.pop()
    for key in keys:
        dialogue.answers.pop(key, None)
    dialogue.step = keys[0]
    return True


def edit(dialogue: Dialogue, key: str) -> None:
    """Ask one field again from the summary; the old answer stays until a new one is given."""
    dialogue.step = key
    dialogue.pending = None
    dialogue.attempts = 0


def find_field(form: Form, dialogue: Dialogue, text: str) -> Field | None:
    """The summary field a user names by number ("3") or by label/alias ("手机号")."""
    shown = form.summary_fields(dialogue.answers)
    if text.isdigit() and 1 <= int(text) <= len(shown):
        return shown[int(text) - 1]
    for f in shown:
        if text and any(name and (name in text or text in name) for name in (f.label, *f.aliases)):
            return f
    return None


# --- time -------------------------------------------------------------------------------


def is_idle(dialogue: Dialogue, now: float, timeout_seconds: float) -> bool:
    """An active dialogue nobody answered within the timeout."""
    return dialogue.status == ACTIVE and now - dialogue.updated_at > timeout_seconds


def is_resumable(dialogue: Dialogue, now: float, resume_seconds: float) -> bool:
    """A paused or expired dialogue still young enough to continue where it stopped."""
    return now - dialogue.updated_at <= resume_seconds


# --- storage ----------------------------------------------------------------------------


def load_all(database: Database, vault: Vault, openid: str) -> list[Dialogue]:
    """The user's dialogues (at most one per form), most recently touched first."""
    dialogues = []
    for row in user_state.load_dialogues(database, openid):
        try:
            dialogues.append(_from_row(row, vault))
        except ValueError:
            # Encrypted under another key (the key was replaced): unusable, so start afresh
            # rather than failing every message this user sends.
            logger.warning("dropped a %s dialogue that cannot be decrypted", row["form"])
            user_state.delete_dialogue(database, row["openid"], row["form"])
    return dialogues


def set_status(database: Database, dialogue: Dialogue, status: str, at: float) -> None:
    """Pause or expire a stored dialogue, stamping it as touched at `at`; answers unchanged."""
    user_state.set_dialogue_status(database, dialogue.openid, dialogue.form, status, at)
    dialogue.status, dialogue.updated_at = status, at
    if dialogue.stored is not None:
        dialogue.stored = replace(dialogue.stored, status=status, updated_at=at)


def save(database: Database, vault: Vault, dialogue: Dialogue, now: float) -> None:
    """Store the dialogue, stamping it as touched now (to TOUCH_PRECISION)."""
    plain = json.dumps({"answers": dialogue.answers, "history": dialogue.history,
                        "pending": dialogue.pending, "cancelling": dialogue.cancelling},
                       ensure_ascii=False)
    before = dialogue.stored
    same = before is not None and before.plain == plain
    if (same and (before.step, before.status, before.attempts)
            == (dialogue.step, dialogue.status, dialogue.attempts)
            and now - before.updated_at < TOUCH_PRECISION):
        return
    dialogue.updated_at = now
    ciphertext = before.ciphertext if same else vault.encrypt(plain)
    user_state.save_dialogue(database, {
        "openid": dialogue.openid, "form": dialogue.form, "step": dialogue.step,
        "status": dialogue.status, "attempts": dialogue.attempts, "data": ciphertext,
        "started_at": dialogue.started_at, "updated_at": now,
    })
    dialogue.stored = _Stored(dialogue.step, dialogue.status, dialogue.attempts, now, plain,
                              ciphertext)


def drop(database: Database, dialogue: Dialogue) -> None:
    """Forget the dialogue (finished, cancelled or too old)."""
    user_state.delete_dialogue(database, dialogue.openid, dialogue.form)
    dialogue.status = DROPPED


def _from_row(row: Mapping[str, Any], vault: Vault) -> Dialogue:
    plain = vault.decrypt(row["data"])
    secret = json.loads(plain)
    stored = _Stored(row["step"], row["status"], row["attempts"], row["updated_at"], plain,
                     row["data"])
    return Dialogue(openid=row["openid"], form=row["form"], step=row["step"],
                    answers=secret["answers"], history=secret["history"],
                    attempts=row["attempts"], status=row["status"], pending=secret["pending"],
                    cancelling=secret["cancelling"], started_at=row["started_at"],
                    updated_at=row["updated_at"], stored=stored)
