"""Staff export of applications to CSV or Excel: the one place full phone and ID numbers appear."""
from __future__ import annotations

import csv
from datetime import datetime
from pathlib import Path
from typing import Any

from openpyxl import Workbook
from sqlite_utils import Database

from bot import clock, labels
from bot.privacy import Vault
from bot.storage import applications

# The columns staff get, as headed in the file.
COLUMNS = ("编号", "类型", "状态", "姓名", "手机号", "身份证号", "乡镇", "村/社区", "培训课程",
           "贷款金额（元）", "资金用途", "行业", "经营情况", "返乡人员", "候补位次", "工作人员备注",
           "提交时间", "更新时间")


def application_rows(database: Database, vault: Vault, type_: str | None = None,
                     status: str | None = None) -> list[list[Any]]:
    """One list of values per application (COLUMNS order), numbers decrypted, oldest first."""
    rows = applications.list_applications(database, type_=type_, status=status)
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
        sheet.title = "申请"
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
    returning = row["returning_worker"]
    return [
        row["ref"], labels.APPLICATION_TYPES.get(row["type"], row["type"]), row["status"], row["name"],
        vault.decrypt(row["phone_enc"]) if row["phone_enc"] else "",
        vault.decrypt(row["id_enc"]) if row["id_enc"] else "",
        row["township"], row["village"], row["course_name"], row["amount_yuan"], row["purpose"],
        row["industry"], labels.STAGES.get(row["stage"], row["stage"]),
        None if returning is None else ("是" if returning else "否"), row["waitlist_position"],
        row["staff_note"], _time(row["created_at"]), _time(row["updated_at"]),
    ]


def _time(ts: float | None) -> str:
    return datetime.fromtimestamp(ts, clock.CHINA_TZ).strftime("%Y-%m-%d %H:%M:%S") if ts else ""
