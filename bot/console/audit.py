"""The audit log: every staff action, newest first."""
from __future__ import annotations

from flask import render_template

from bot import get_db
from bot.console import bp, page_number
from bot.storage import staff

PAGE_SIZE = 100


@bp.get("/audit")
def audit_log() -> str:
    """Every staff action, newest first."""
    page = page_number()
    entries = staff.audit_entries(get_db(), PAGE_SIZE, (page - 1) * PAGE_SIZE)
    return render_template("console/audit.html", entries=entries, page=page)
