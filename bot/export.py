"""Staff export of applications to CSV or Excel: the one place full phone and ID numbers appear."""
from __future__ import annotations

import contextlib
import csv
import io
import os
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO

from openpyxl import Workbook
from openpyxl.utils import get_column_letter
from sqlite_utils import Database

from bot import clock, labels
from bot.privacy import Vault
from bot.storage import applications

# The columns staff get, as headed in the file.
COLUMNS = ("编号", "类型", "状态", "姓名", "手机号", "身份证号", "乡镇", "村/社区", "培训课程",
           "贷款金额（元）", "资金用途", "行业", "经营情况", "返乡人员", "候补位次", "工作人员备注",
           "提交时间", "更新时间")
# Indexes of the phone and ID columns.
NUMBER_COLUMNS = (COLUMNS.index("手机号"), COLUMNS.index("身份证号"))
# A cell starting with one of these is a formula to Excel, WPS or LibreOffice.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def application_rows(database: Database, vault: Vault, type_: str | None = None,
                     status: str | None = None) -> list[list[Any]]:
    """One list of values per application (COLUMNS order), numbers decrypted, oldest first."""
    rows = applications.list_applications(database, type_=type_, status=status)
    return [_values(row, vault) for row in reversed(rows)]


def export_applications(database: Database, vault: Vault, out: Path, fmt: str,
                        type_: str | None = None, status: str | None = None) -> int:
    """Write the applications to out as "csv" (UTF-8 with BOM) or "xlsx"; returns the row count.

    The file is created owner-only (0600): it holds full phone and ID numbers. Text that
    a spreadsheet would run as a formula is written as text.
    """
    if fmt not in ("csv", "xlsx"):
        raise ValueError(f"unknown format: {fmt}")
    rows = application_rows(database, vault, type_, status)
    out.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "csv":
        # The BOM makes Excel read the file as UTF-8 instead of the local code page.
        with _private(out) as raw, io.TextIOWrapper(raw, encoding="utf-8-sig", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(COLUMNS)
            writer.writerows([csv_cell(v, i in NUMBER_COLUMNS) for i, v in enumerate(row)]
                             for row in rows)
    else:
        book = Workbook()
        sheet = book.active
        sheet.title = "申请"
        sheet.append(COLUMNS)
        for row in rows:
            sheet.append(row)
        for cells in sheet.iter_rows(min_row=2):
            for cell in cells:
                if isinstance(cell.value, str):
                    # openpyxl stores "=..." as a formula; staff-typed text stays text.
                    cell.data_type = "s"
        # Phone and ID numbers as text, so Excel neither rounds nor reformats them.
        for index in NUMBER_COLUMNS:
            for cell in sheet[get_column_letter(index + 1)][1:]:
                cell.number_format = "@"
        with _private(out) as f:
            book.save(f)
    return len(rows)


def csv_cell(value: Any, is_number: bool = False) -> str:
    """A value as CSV text Excel and WPS keep as typed: long numbers whole, formulas inert.

    A leading apostrophe marks text (OWASP's advice for CSV injection); phone and ID
    numbers always get it, or Excel shows 3.32522E+17 and loses the last digits.
    """
    text = "" if value is None else str(value)
    if text and (is_number or text.startswith(FORMULA_STARTS)):
        return "'" + text
    return text


@contextlib.contextmanager
def _private(path: Path) -> Iterator[BinaryIO]:
    """path opened for writing, created (or reset to) owner-only before any byte is written."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "wb") as f:
        yield f


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
