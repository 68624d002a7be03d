"""What happens when a form is confirmed, and how an application is described to its user."""
from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from bot import casework, clock, labels
from bot import dialogue as engine
from bot.dialogue import Dialogue
from bot.labels import yuan
from bot.privacy import mask_id, mask_phone
from bot.router import Context, Reply
from bot.settings import Course
from bot.storage import applications, user_state
from handlers.registration.notices import NOTICES

TRAINING, LOAN = "training", "loan"
PREFIX = {TRAINING: "PX", LOAN: "DK"}
TITLE = labels.APPLICATION_TYPES


def submit(d: Dialogue, ctx: Context) -> Reply | None:
    """Store the application and say its reference; None when the chosen course is gone."""
    a = d.answers
    vault = ctx.vault
    record = {
        "type": d.form, "openid": d.openid, "name": a["name"],
        "phone_enc": vault.encrypt(a["phone"]), "phone_masked": mask_phone(a["phone"]),
        "id_enc": vault.encrypt(a["id_number"]), "id_masked": mask_id(a["id_number"]),
        "id_fingerprint": vault.fingerprint(a["id_number"]),
        "township": a["township"], "village": a["village"],
    }
    capacity = None
    if d.form == TRAINING:
        chosen = course(ctx, a["course"])
        if chosen is None:  # the course left config.toml while the form was open
            engine.edit(d, "course")
            return None
        record.update(course_id=chosen.id, course_name=chosen.name,
                      returning_worker=int(a["returning"]))
        capacity = chosen.capacity
        # Seats freed meanwhile (a raised capacity) go to those already waiting first.
        casework.fill_seats(ctx.db, chosen, NOTICES, ctx.now())
    else:
        record.update(amount_yuan=a["amount"], purpose=a["purpose"], industry=a["industry"],
                      stage=a["stage"])
    result = applications.add_application(ctx.db, record, PREFIX[d.form], ctx.now(), capacity)
    engine.finish(ctx, d)
    row = result.application
    if not result.created:
        if row["openid"] != d.openid:  # same ID number from another WeChat account: no details
            return Reply(text=f"这个身份证号已经有一份{TITLE[d.form]}正在办理，不用重复提交。"
                              f"有疑问请打电话：{ctx.settings.county.hotline}")
        return Reply(text="您已经有一份同样的申请正在办理，不用重复提交：\n\n" + describe(row))
    identity = {k: a[k] for k in ("name", "phone", "id_number", "township", "village")}
    user_state.save_profile(ctx.db, d.openid, vault.encrypt(json.dumps(identity, ensure_ascii=False)),
                            ctx.now())
    if d.form == TRAINING:
        text = f"报名成功！您的报名编号是：{row['ref']}\n课程：{row['course_name']}"
        if row["waitlist_position"]:
            text += f"\n这门课名额已满，您在候补名单第{row['waitlist_position']}位，有空位会通知您。"
        else:
            text += "\n工作人员审核后会电话联系您。"
    else:
        text = (f"申请已提交！您的申请编号是：{row['ref']}\n贷款金额：{yuan(row['amount_yuan'])}"
                "\n工作人员审核后会电话联系您。")
    return Reply(text=text + "\n请记下编号，回复“查询进度”可随时查看办理情况。")


def describe(row: dict[str, Any]) -> str:
    """One application for the user: reference, what, status, staff note, date."""
    what = (f"培训报名：{row['course_name']}" if row["type"] == TRAINING
            else f"贷款申请：{yuan(row['amount_yuan'])}")
    status = row["status"]
    if status in applications.OPEN_STATUSES:
        if row["waitlist_position"]:
            status += f"（候补第{row['waitlist_position']}位）"
        elif row.get("promoted_at"):
            status += "（已从候补转为正式名额）"
    lines = [f"编号：{row['ref']}", what, f"状态：{status}"]
    if row["staff_note"]:
        lines.append(f"工作人员备注：{row['staff_note']}")
    when = datetime.fromtimestamp(row["created_at"], clock.CHINA_TZ)
    lines.append(f"提交时间：{when:%Y-%m-%d %H:%M}")
    return "\n".join(lines)


def course(ctx: Context, course_id: str) -> Course | None:
    """The configured course with this id (None once it left config.toml)."""
    return next((c for c in ctx.settings.courses if c.id == course_id), None)


def profile(ctx: Context, openid: str) -> dict[str, Any] | None:
    """The identity the user gave with their last application, if it can be read."""
    token = user_state.load_profile(ctx.db, openid)
    try:
        return json.loads(ctx.vault.decrypt(token)) if token else None
    except ValueError:  # saved under a replaced key: ask the questions again
        return None
