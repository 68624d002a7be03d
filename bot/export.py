"""Staff export of applications to CSV or Excel: the one place full phone and ID numbers appear."""
from __future__ import annotations

import csv
from datetime import datetime
from pathlib import Path
from typing import Any

from openpyxl import Workbook
from sqlite_utils import Database

from bot import db
from bot.privacy import Vault

COLUMNS = ("reference", "type", "status", "name", "phone", "id_number", "township", "village",
           "course", "amount_yuan", "purpose", "industry", "stage", "returning_worker",
           "waitlist_position", "staff_note", "created_at", "updated_at")


def application_rows(database: Database, vault: Vault, type_: str | None = None,
                     status: str | None = None) -> list[list[Any]]:
    """One list of values per application (COLUMNS order), numbers decrypted, oldest first."""
    rows = db.list_applications(database, type_=type_, status=status)
    return [_values(row, vault) for row in reversed(rows)]


def export_applications(database: Database, vault: Vault, out: Path, fmt: str,
                        type_: str | None = None, status: str | None = None) -> int:
    """Write the applications to out as "csv" (UTF-8 with BOM) or "xlsx"; returns the row count."""
    rows = application_rows(database, vault, type_, status)
    out.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "csv":
        # The BOM makes Excel read the file as UTF-8 instead of the local code page.
        with open(out, "w", encoding="utf-8-sig", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(COLUMNS)
            writer.writerows(["" if v is None else v for v in row] for row in rows)
    elif fmt == "xlsx":
        book = Workbook()
        sheet = book.active
        sheet.title = "applications"
        sheet.append(COLUMNS)
        for row in rows:
            sheet.append(row)
        # Phone and ID numbers as text, so Excel neither rounds nor reformats them.
        for column in ("E", "F"):
            for cell in sheet[column][1:]:
                cell.number_format = "@"
        book.save(out)
    else:
        raise ValueError(f"unknown format: {fmt}")
    return len(rows)


def _values(row: dict[str, Any], vault: Vault) -> list[Any]:
    return [
        row["ref"], row["type"], row["status"], row["name"],
        vault.decrypt(row["phone_enc"]) if row["phone_enc"] else "",
        vault.decrypt(row["id_enc"]) if row["id_enc"] else "",
        row["township"], row["village"], row["course_name"], row["amount_yuan"], row["purpose"],
        row["industry"], row["stage"], row["returning_worker"], row["waitlist_position"],
        row["staff_note"], _time(row["created_at"]), _time(row["updated_at"]),
    ]


def _time(ts: float | None) -> str:
    return datetime.fromtimestamp(ts, db.CHINA_TZ).strftime("%Y-%m-%d %H:%M:%S") if ts else ""
