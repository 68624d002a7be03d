"""Form engine and lifecycle: one question per message, answers kept per user in SQLite.

A Form is an ordered list of Fields (key, prompt, check). The engine tracks which field is
pending, validates answers, goes back, edits single answers from the summary; the
lifecycle functions (start, resume, pause, cancel, finish, tidy) keep one user's forms in
step with storage during a message, so handlers never change a dialogue's state
themselves. It knows no wording: prompts, hints and labels come from handlers/. Answers
are personal data, so the dialogue row holds them encrypted with the Vault.
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
    # A wrong try at this answer (e.g. an ID number with a bad check digit), never a
    # question to look up: the hint is said, the text is not sent to the matcher.
    attempted: bool = False

    @property
    def ok(self) -> bool:
        """True when the answer was accepted (possibly pending confirmation)."""
        return not self.hint


@dataclass(frozen=True)
class Field:
    """One question of a form."""
    key: str
    prompt: Callable[[Context, Dialogue], str]
    check: Callable[[str, Context, Dialogue], Check]
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


# --- lifecycle: one user's forms during one message -------------------------------------

GONE = "gone"  # an active form left longer than the resume window: dropped, tell the user
TIMED_OUT = "timed out"  # an active form idle past the timeout: expired, tell the user


def stored(ctx: Context, openid: str) -> list[Dialogue]:
    """All the user's stored forms, read once per message.

    Handlers and the after-hook share these objects, which save, drop and set_status keep
    in step with storage.
    """
    forms = ctx.memo.get("forms")
    if forms is None:
        forms = ctx.memo["forms"] = load_all(ctx.db, ctx.vault, openid)
    return forms


def open_forms(ctx: Context, openid: str) -> list[Dialogue]:
    """The user's forms still within the resume window (tidy clears older ones)."""
    window = ctx.settings.dialogue.resume_hours * 3600
    return [d for d in stored(ctx, openid)
            if d.status != DROPPED and is_resumable(d, ctx.now(), window)]


def active(ctx: Context, openid: str) -> Dialogue | None:
    """The form being filled in, unless it idled past the timeout (tidy expires it)."""
    timeout = ctx.settings.dialogue.timeout_minutes * 60
    return next((d for d in open_forms(ctx, openid)
                 if d.status == ACTIVE and not is_idle(d, ctx.now(), timeout)), None)


def find(ctx: Context, openid: str, form: str) -> Dialogue | None:
    """The user's open dialogue of this form, if any."""
    return next((d for d in open_forms(ctx, openid) if d.form == form), None)


def start(ctx: Context, form: Form, openid: str,
          answers: Mapping[str, Any] | None = None) -> tuple[Dialogue, Dialogue | None]:
    """Begin a form (pausing another active one); returns it and the one paused."""
    paused = pause_others(ctx, openid, form.name)
    dialogue = begin(form, openid, ctx.now(), answers)
    save(ctx.db, ctx.vault, dialogue, ctx.now())
    # It replaces any one of this form too old to resume, which tidy must not drop.
    forms = stored(ctx, openid)
    forms[:] = [dialogue] + [d for d in forms if d.form != form.name]
    return dialogue, paused


def resume(ctx: Context, dialogue: Dialogue) -> Dialogue | None:
    """Make a paused or expired dialogue the active one; returns another one paused."""
    dialogue.cancelling = False  # coming back means the user wants to go on
    paused = None
    if dialogue.status != ACTIVE:
        paused = pause_others(ctx, dialogue.openid, dialogue.form)
        dialogue.status = ACTIVE
    save(ctx.db, ctx.vault, dialogue, ctx.now())
    return paused


def pause_others(ctx: Context, openid: str, form: str) -> Dialogue | None:
    """Only one form is active at a time: pause another active one and return it."""
    for other in open_forms(ctx, openid):
        if other.form != form and other.status == ACTIVE:
            other.status = PAUSED
            save(ctx.db, ctx.vault, other, ctx.now())
            return other
    return None


def pause_active(ctx: Context, openid: str) -> Dialogue | None:
    """Pause the form being filled in (the user went to the menu or asked for a person)."""
    dialogue = active(ctx, openid)
    if dialogue is not None:
        set_status(ctx.db, dialogue, PAUSED, ctx.now())
    return dialogue


def ask_to_cancel(dialogue: Dialogue, asking: bool) -> None:
    """Note (or forget) that the user was asked whether to really cancel."""
    dialogue.cancelling = asking


def forgive(dialogue: Dialogue) -> None:
    """A question asked instead of an answer is not a failed try."""
    dialogue.attempts = max(0, dialogue.attempts - 1)


def needs_help(ctx: Context, dialogue: Dialogue) -> bool:
    """The user failed the pending question often enough to be offered a person."""
    return dialogue.attempts >= ctx.settings.dialogue.max_attempts


def keep(ctx: Context, dialogue: Dialogue) -> None:
    """Store the dialogue after a message changed it, unless it was finished or cancelled."""
    if dialogue.status != DROPPED:
        save(ctx.db, ctx.vault, dialogue, ctx.now())


def finish(ctx: Context, dialogue: Dialogue) -> None:
    """The form was submitted or cancelled: forget it."""
    drop(ctx.db, dialogue)


def tidy(ctx: Context, openid: str) -> list[tuple[Dialogue, str]]:
    """Drop forms past the resume window and expire idle ones; returns what to tell.

    GONE for an active form dropped unseen, TIMED_OUT for one just expired. The resume
    window of an expired form runs from its last answer.
    """
    settings = ctx.settings.dialogue
    now = ctx.now()
    told = []
    for d in stored(ctx, openid):
        if d.status == DROPPED:
            continue
        if not is_resumable(d, now, settings.resume_hours * 3600):
            if d.status == ACTIVE:
                told.append((d, GONE))
            drop(ctx.db, d)
        elif is_idle(d, now, settings.timeout_minutes * 60):
            set_status(ctx.db, d, EXPIRED, d.updated_at)
            told.append((d, TIMED_OUT))
    return told


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
    if (before is not None and same and (before.step, before.status, before.attempts)
            == (dialogue.step, dialogue.status, dialogue.attempts)
            and now - before.updated_at < TOUCH_PRECISION):
        return
    dialogue.updated_at = now
    ciphertext = before.ciphertext if before is not None and same else vault.encrypt(plain)
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
