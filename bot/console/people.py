"""People: find a subscriber by name, reference number or phone tail; one person's page
with their applications and whole conversation; reveal one full number, audited."""
from __future__ import annotations

from typing import Any, cast

from flask import Flask, abort, jsonify, render_template, request
from flask.sansio.blueprints import BlueprintSetupState
from werkzeug.wrappers import Response

from bot import current_runtime, get_db, labels
from bot.console import bp, record
from bot.privacy import mask_text
from bot.storage import applications as store
from bot.storage import messages, staff
from bot.storage.engine import now

MAX_QUERY_CHARS = 40
RESULTS = 50
TIMELINE_LIMIT = 500
# The stored column each revealable number kind is read from.
ENCRYPTED = {"phone": "phone_enc", "id": "id_enc"}


@bp.record_once
def share_labels(state: BlueprintSetupState) -> None:
    """Templates (and the macros they import) read staff-facing labels as `labels`."""
    cast(Flask, state.app).jinja_env.globals["labels"] = labels


def display_names(openids: list[str]) -> dict[str, str]:
    """openid -> name, for the users of a list who gave a name on an application."""
    return staff.names_for(get_db(), openids)


def forms_in_progress(openid: str) -> list[dict[str, Any]]:
    """The user's forms still open (within the resume window): form and step labels, no answers."""
    window = current_runtime().settings.dialogue.resume_hours * 3600
    database = get_db()
    oldest = now() - window
    return [{"form": labels.APPLICATION_TYPES.get(row["form"], row["form"]),
             "step": labels.FORM_STEPS.get(row["step"], "填写中"),
             "status": labels.FORM_STATUS.get(row["status"], ""),
             "updated_at": row["updated_at"]}
            for row in staff.handoff_forms(database, openid) if (row["updated_at"] or 0) >= oldest]


def open_applications(openid: str) -> list[dict[str, Any]]:
    """The user's applications still being handled (type, reference number, status)."""
    return [a for a in store.applications_for(get_db(), openid) if a["status"] in store.OPEN_STATUSES]


def timeline(openid: str) -> list[dict[str, Any]]:
    """The whole conversation, oldest first, with what was sent later masked like the log."""
    entries = messages.conversation(get_db(), openid, TIMELINE_LIMIT)
    for entry in entries:
        if entry["kind"] not in ("user", "bot"):  # the message log is masked when written
            entry["text"] = mask_text(entry["text"] or "")
    return entries


@bp.get("/people")
def people() -> str:
    """Find people by name, reference number or the last four digits of their phone."""
    text = request.args.get("q", "").strip()[:MAX_QUERY_CHARS]
    found = staff.find_people(get_db(), text, RESULTS) if text else []
    return render_template("console/people.html", q=text, found=found,
                           types=labels.APPLICATION_TYPES, limit=RESULTS)


def _person_page(openid: str, revealed: dict[str, str] | None = None) -> str:
    database = get_db()
    applied = [store.get_application(database, a["ref"])
               for a in store.applications_for(database, openid)]
    entries = timeline(openid)
    waiting = [h for h in staff.open_handoffs(database) if h["openid"] == openid]
    if not applied and not entries and not waiting:
        abort(404, "没有这个用户的记录。")
    return render_template("console/person.html", openid=openid, applied=applied,
                           latest=applied[0] if applied else None, entries=entries,
                           forms=forms_in_progress(openid), handoff=waiting[0] if waiting else None,
                           revealed=revealed or {}, types=labels.APPLICATION_TYPES,
                           number_kinds=labels.NUMBER_KINDS)


@bp.get("/people/<openid>")
def person(openid: str) -> str:
    """One person: name, masked numbers, applications with history, the whole conversation."""
    return _person_page(openid)


@bp.post("/people/<openid>/reveal")
def reveal_number(openid: str) -> str | Response:
    """Show one full number of one application (phone or ID) and note it in the audit log.

    A script asking for JSON gets {"number": …}; a plain form post gets the page with that
    number in place. The number itself never goes to the audit log.
    """
    kind = request.values.get("kind", "")
    ref = request.values.get("ref", "")
    if kind not in ENCRYPTED:
        abort(400, "请选择要显示的号码。")
    application = store.get_application(get_db(), ref)
    if application is None or application["openid"] != openid:
        abort(404)
    try:
        number = current_runtime().vault.decrypt(application[ENCRYPTED[kind]] or "")
    except ValueError:
        abort(400, "这个号码无法读取，请联系系统管理员。")
    record("查看完整号码", f"{application['name'] or openid}（{ref}）的{labels.NUMBER_KINDS[kind]}")
    if request.accept_mimetypes.best == "application/json":
        return jsonify(number=number)
    return _person_page(openid, {"ref": ref, "kind": kind, "number": number})
