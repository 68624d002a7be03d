"""What staff and applicants read for stored codes: console pages, exports and the forms.

One set of staff-facing labels: the console, the exports and the CLI read them from here.
"""
from __future__ import annotations

APPLICATION_TYPES = {"training": "培训报名", "loan": "贷款申请"}
STAGES = {"running": "已经在经营", "planned": "准备开办"}

# Announcement jobs and their recipients.
JOB_STATUS = {"queued": "排队中", "running": "发送中", "waiting": "等待重试", "done": "已完成",
              "cancelled": "已取消"}
RECIPIENT_STATUS = {"pending": "待发送", "sending": "发送中", "delivered": "已送达", "failed": "失败",
                    "unknown": "不确定（中断时正在发送）", "cancelled": "已取消"}
CHANNELS = {"custom": "客服消息", "template": "模板消息", "mass": "群发", "simulator": "模拟器"}
# Audience kinds, as in "township:城关镇".
AUDIENCES = {"all": "全部关注用户", "township": "乡镇申请人", "course": "课程报名人",
             "loan": "贷款申请人"}

# The parts of a topic's answer staff edit, by details key.
DETAILS = {"eligibility": "适用对象", "benefits": "政策内容", "how_to_apply": "办理流程",
           "documents": "所需材料", "office": "办理地点"}
# How well the bot understood a question, by match band.
BANDS = {"answer": "直接答复", "suggest": "您是不是想问", "unknown": "没听懂"}

# Where a user stands in a form (the person page and the 转人工 queue show no answers).
FORM_STEPS = {"reuse": "是否沿用上次信息", "name": "姓名", "phone": "手机号", "id_number": "身份证号",
              "township": "乡镇", "village": "村（社区）", "course": "课程", "returning": "是否返乡",
              "amount": "贷款金额", "purpose": "用途", "industry": "行业", "stage": "经营情况",
              "@summary": "核对信息，待确认"}
FORM_STATUS = {"active": "正在填写", "paused": "已暂停", "expired": "超时暂停"}
# A conversation's entries by who spoke, and what a user sent that is not text.
SPEAKERS = {"user": "用户", "bot": "机器人", "staff-reply": "工作人员回复", "notice": "状态通知",
            "announcement": "通知"}
MESSAGE_TYPES = {"event": "关注或点菜单", "voice": "语音", "image": "图片", "video": "视频",
                 "shortvideo": "小视频", "location": "位置", "link": "链接", "file": "文件"}
# A staff account's number that may be revealed, as the audit log names it.
NUMBER_KINDS = {"phone": "手机号", "id": "身份证号"}


def yuan(amount: int) -> str:
    """An amount as people say it: 5万元, 35000元."""
    return f"{amount // 10000}万元" if amount % 10000 == 0 else f"{amount}元"


# Application statuses as the console's status select explains them.
STATUS_HELP = {
    "已提交": "申请人已提交，等待受理",
    "审核中": "工作人员正在审核",
    "已通过": "审核通过",
    "未通过": "审核未通过，须写明原因（会发给申请人）",
    "已完成": "培训已结业或贷款已发放",
    "已取消": "工作人员取消，如申请人来电放弃、课程停办",
    "已撤回": "申请人本人在微信中撤回",
}
# Who made a change in an application's history, for actors that are not staff names.
ACTORS = {"applicant": "申请人", "system": "系统", "cli": "命令行"}
# The history note when a waitlisted registration gets a freed seat.
PROMOTED_NOTE = "候补转正：有空位了，已通知申请人"
# Why a status change was refused (bot/casework.py Refused codes).
REFUSALS = {
    "not_found": "没有找到这份申请。",
    "unknown": "没有“{wanted}”这个状态。",
    "not_allowed": "“{current}”的申请不能改为“{wanted}”。",
    "note_required": "改为“{wanted}”时请写明原因，申请人会收到这条说明。",
    "waitlisted": "这份报名还在候补名单上，有空位后才能审核。",
    "applicant_only": "“已撤回”只能由申请人本人在微信中操作；工作人员请选“已取消”。",
    "staff_only": "只有工作人员可以改为“{wanted}”。",
}


def refusal(code: str, current: str, wanted: str, allowed: tuple[str, ...]) -> str:
    """A refused status change in one line: why, and what may be chosen instead."""
    text = REFUSALS[code].format(current=current, wanted=wanted)
    if code in ("not_found", "note_required"):
        return text
    if allowed:
        return text + "现在可以改为：" + "、".join(allowed) + "。"
    return text + f"这份申请已经是“{current}”，状态不能再改。"
