"""What applicants are told by WeChat notice when their application changes."""
from __future__ import annotations

from typing import Any

from bot.casework import Notices
from bot.labels import APPLICATION_TYPES


def status_changed(row: dict[str, Any]) -> str:
    """Staff changed the status: the new one and staff's note."""
    kind = APPLICATION_TYPES.get(row["type"], "申请")
    text = f"您的{kind}（编号 {row['ref']}）状态已更新为：{row['status']}。"
    if row["staff_note"]:
        text += f"\n说明：{row['staff_note']}"
    return text + "\n回复“查询进度”可随时查看。"


def seat_freed(row: dict[str, Any]) -> str:
    """A waitlisted registration got a seat someone gave up."""
    return (f"有空位了！您报名的“{row['course_name']}”（编号 {row['ref']}）已从候补转为正式名额，"
            "工作人员审核后会电话联系您。\n回复“查询进度”可随时查看；不能参加请回复“撤回申请”。")


NOTICES = Notices(status_changed=status_changed, seat_freed=seat_freed)
