"""Casework: which status may follow which, who may set it, and what a change sets off.

    已提交 → 审核中 → 已通过 / 未通过;  已通过 → 已完成
    已取消 (by staff) and 已撤回 (by the applicant) from any open status

change_status is the one way the console, the CLI and the chat change a status: in one
write transaction it checks the step, records it, gives a freed course seat to the first
applicant on the waiting list and queues the notices. Rows written before these rules keep
their status; a closed one simply has no next step.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlite_utils import Database

from bot import labels
from bot.push import courier
from bot.settings import Course
from bot.storage import applications as store
from bot.storage.engine import immediate, now

STAFF, APPLICANT = "staff", "applicant"

# Open status -> the statuses that may follow it (anyone's; who may set each is below).
_STEPS = {
    "已提交": ("审核中", "已取消", "已撤回"),
    "审核中": ("已通过", "未通过", "已取消", "已撤回"),
    "已通过": ("已完成", "已取消", "已撤回"),
}
# The applicant's own step; every other step is staff's.
_APPLICANT_STEPS = frozenset({"已撤回"})
# Steps the applicant must be told the reason for.
NOTE_REQUIRED = frozenset({"未通过"})
# A waitlisted registration has no seat to review yet: it can only be given up.
_WAITLISTED_STEPS = frozenset({"已取消", "已撤回"})


class Refused(Exception):
    """A status change the rules do not allow; nothing was changed.

    code: not_found, unknown, not_allowed, note_required, waitlisted, applicant_only,
    staff_only. current is the application's status ("" when not found), allowed the
    steps the same person could take instead.
    """

    def __init__(self, code: str, current: str = "", wanted: str = "",
                 allowed: tuple[str, ...] = ()):
        super().__init__(code)
        self.code, self.current, self.wanted, self.allowed = code, current, wanted, allowed


@dataclass(frozen=True)
class Notices:
    """What the applicants are told (wording from handlers/), given the changed row."""
    status_changed: Callable[[dict[str, Any]], str]  # after a staff change
    seat_freed: Callable[[dict[str, Any]], str]  # a waitlisted applicant moved onto a seat


@dataclass(frozen=True)
class Change:
    """A change made: the application as it is now (with history), and who moved up."""
    application: dict[str, Any]
    promoted: list[dict[str, Any]] = field(default_factory=list)


def next_statuses(application: dict[str, Any], role: str) -> tuple[str, ...]:
    """The statuses this role (STAFF or APPLICANT) may set next, in workflow order."""
    steps = _STEPS.get(application["status"], ())
    if application.get("waitlist_position"):
        steps = tuple(s for s in steps if s in _WAITLISTED_STEPS)
    return tuple(s for s in steps if (s in _APPLICANT_STEPS) == (role == APPLICANT))


def check_step(application: dict[str, Any], status: str, note: str, role: str) -> None:
    """Raise Refused unless this role may move the application to status (with this note)."""
    current = application["status"]
    allowed = next_statuses(application, role)
    if status not in store.STATUSES:
        raise Refused("unknown", current, status, allowed)
    if status in allowed:
        if status in NOTE_REQUIRED and not note.strip():
            raise Refused("note_required", current, status, allowed)
        return
    anyone = _STEPS.get(current, ())
    if status in anyone and application.get("waitlist_position") and status not in _WAITLISTED_STEPS:
        raise Refused("waitlisted", current, status, allowed)
    if status in anyone and role == STAFF and status in _APPLICANT_STEPS:
        raise Refused("applicant_only", current, status, allowed)
    if status in anyone and role == APPLICANT:
        raise Refused("staff_only", current, status, allowed)
    raise Refused("not_allowed", current, status, allowed)


def change_status(db: Database, ref: str, status: str, note: str, actor: str, role: str,
                  courses: Sequence[Course], notices: Notices, at: float | None = None) -> Change:
    """Apply one status change with everything it sets off, or raise Refused.

    Run it inside transaction() (the chat's message transaction, or one the console and
    CLI open), so the change, the seat it frees and the queued notices commit together;
    deliver the outbox afterwards. A staff change notifies the applicant; the applicant's
    own withdrawal does not (they are answered in the chat), and their words stay out of
    the staff note.
    """
    at = now() if at is None else at
    with immediate(db):  # read, check and write under the write lock: no lost update
        row = store.get_application(db, ref)
        if row is None:
            raise Refused("not_found", wanted=status)
        check_step(row, status, note, role)
        store.set_status(db, row["id"], status, note.strip(), actor, at, staff_note=role == STAFF)
        promoted: list[dict[str, Any]] = []
        if row["type"] == "training" and row["course_id"]:
            chosen = next((c for c in courses if c.id == row["course_id"]), None)
            if chosen is None:  # the course left config.toml: nobody to move up, keep the order
                store.renumber_waitlist(db, row["course_id"])
            else:
                promoted = fill_seats(db, chosen, notices, at)
        changed = store.get_application(db, ref)
        assert changed is not None
        if role == STAFF:
            courier.notify(db, changed["openid"], notices.status_changed(changed))
    return Change(changed, promoted)


def fill_seats(db: Database, course: Course, notices: Notices,
               at: float | None = None) -> list[dict[str, Any]]:
    """Give the course's free seats to the waiting list in order, telling each one moved up.

    Returns the promoted applications. Also called before a new registration, so seats a
    raised capacity freed go to those waiting, never to the newcomer. Like change_status,
    run it inside transaction().
    """
    at = now() if at is None else at
    promoted = []
    with immediate(db):
        store.renumber_waitlist(db, course.id)
        free = course.capacity - store.seats_taken(db, course.id)
        for waiting in store.waiting_list(db, course.id)[:max(free, 0)]:
            store.take_seat(db, waiting["id"], labels.PROMOTED_NOTE, at)
            row = store.get_application(db, waiting["ref"])
            assert row is not None
            courier.notify(db, row["openid"], notices.seat_freed(row))
            promoted.append(row)
        if promoted:
            store.renumber_waitlist(db, course.id)
    return promoted
