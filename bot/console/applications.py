"""Applications: list, filter and search them, change a status, export with full numbers."""
from __future__ import annotations

import io
import tempfile
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from flask import abort, flash, g, redirect, render_template, request, send_file, url_for
from werkzeug.wrappers import Response

from bot import casework, current_runtime, export, get_db, labels
from bot.clock import CHINA_TZ
from bot.console import bp, page_number, record

# The view below is called "applications" (its endpoint name), so the store gets another name.
from bot.storage import applications as store
from bot.storage.engine import transaction

PAGE_SIZE = 100


@bp.app_template_filter("yuan")
def format_yuan(amount: int | None) -> str:
    """50000 -> '5万元', 8000 -> '8000元'."""
    if not amount:
        return ""
    return f"{amount / 10000:g}万元" if amount >= 10000 else f"{amount}元"


def _application_filters() -> dict[str, Any]:
    args = request.args
    return {key: args.get(key, "").strip() for key in
            ("type", "course", "status", "township", "since", "until", "q")}


def _day_start(text: str, days_after: int = 0) -> float | None:
    try:
        day = datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=CHINA_TZ)
    except ValueError:
        return None
    return (day + timedelta(days=days_after)).timestamp()


@bp.get("/applications")
def applications() -> str:
    """Applications filtered by type, course, status, township and date, or searched by name or number."""
    f = _application_filters()
    page = page_number()
    rows = store.list_applications(
        get_db(), type_=f["type"] or None, course_id=f["course"] or None, status=f["status"] or None,
        township=f["township"] or None, since=_day_start(f["since"]), until=_day_start(f["until"], 1),
        search=f["q"][:40] or None, limit=PAGE_SIZE + 1, offset=(page - 1) * PAGE_SIZE)
    return render_template("console/applications.html", rows=rows[:PAGE_SIZE], more=len(rows) > PAGE_SIZE,
                           page=page, f=f, types=labels.APPLICATION_TYPES, statuses=store.STATUSES,
                           settings=current_runtime().settings)


@bp.get("/applications/export")
def export_applications() -> Response:
    """Download applications (of a type and status, if chosen) as csv or xlsx, full numbers included."""
    fmt = request.args.get("format", "xlsx")
    if fmt not in ("csv", "xlsx"):
        abort(400, "导出格式只能是 csv 或 xlsx。")
    type_ = request.args.get("type") or None
    status = request.args.get("status") or None
    # TemporaryDirectory is created 0700 and export writes the file 0600: no other local
    # user can read the numbers while the file exists.
    with tempfile.TemporaryDirectory(prefix="cyt-export-") as tmp:
        out = Path(tmp) / f"applications.{fmt}"
        count = export.export_applications(get_db(), current_runtime().vault, out, fmt, type_, status)
        data = out.read_bytes()
    record("导出申请", f"{count} 条（{fmt}，类型 {type_ or '全部'}，状态 {status or '全部'}）")
    stamp = datetime.now(CHINA_TZ).strftime("%Y%m%d-%H%M")
    return send_file(io.BytesIO(data), as_attachment=True, download_name=f"applications-{stamp}.{fmt}",
                     mimetype="text/csv" if fmt == "csv" else
                     "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")


@bp.get("/applications/<ref>")
def application(ref: str) -> str:
    """One application with masked numbers, its status history and the status form."""
    row = store.get_application(get_db(), ref)
    if row is None:
        abort(404)
    return render_template("console/application.html", a=row, types=labels.APPLICATION_TYPES,
                           stages=labels.STAGES, steps=casework.next_statuses(row, casework.STAFF),
                           help=labels.STATUS_HELP, note_required=casework.NOTE_REQUIRED,
                           actors=labels.ACTORS)


@bp.post("/applications/<ref>/status")
def change_application_status(ref: str) -> Response:
    """Change the status with a note, as the workflow allows; the applicant is told at once
    through WeChat, and a freed seat goes to the first on the waiting list."""
    status = request.form.get("status", "")
    note = request.form.get("note", "").strip()[:300]
    database = get_db()
    if not status:
        flash("请选择新的状态。")
        return redirect(url_for("console.application", ref=ref))
    rt = current_runtime()
    try:
        with transaction(database):
            change = casework.change_status(database, ref, status, note, g.staff, casework.STAFF,
                                            rt.settings.courses, rt.notices)
    except casework.Refused as refused:
        if refused.code == "not_found":
            abort(404)
        flash(labels.refusal(refused.code, refused.current, refused.wanted, refused.allowed))
        return redirect(url_for("console.application", ref=ref))
    rt.deliver_pending()
    record("更改申请状态", f"{ref} → {status}" + (f"：{note}" if note else ""))
    moved = "".join(f"候补的{p['name']}（{p['ref']}）已转为正式名额并收到通知。" for p in change.promoted)
    flash(f"状态已改为“{status}”，已通过微信通知申请人。{moved}")
    return redirect(url_for("console.application", ref=ref))
