"""The training and loan forms: their questions, the summary, and the words about them."""
from __future__ import annotations

from collections.abc import Callable

from bot import labels
from bot.dialogue import SUMMARY, Dialogue, Field, Form
from bot.labels import yuan
from bot.privacy import mask_id, mask_phone
from bot.router import Context
from bot.settings import Course
from bot.storage import applications
from handlers.registration import checks
from handlers.registration.submit import LOAN, TITLE, TRAINING, course, profile

RESUME_WORD = {TRAINING: "继续报名", LOAN: "继续申请"}
START_WORD = {TRAINING: "报名培训", LOAN: "申请贷款"}


def prompt(d: Dialogue, ctx: Context) -> str:
    """The pending question (the summary when every field is answered)."""
    if d.step == SUMMARY:
        return summary(d, ctx)
    return FORMS[d.form].field(d.step).prompt(ctx, d)


def short_label(d: Dialogue) -> str:
    """The pending question's name, for "you can go on from …"."""
    return FORMS[d.form].field(d.step).label or "上次的问题"


def paused_note(d: Dialogue) -> str:
    """Said when a form is put aside."""
    return f"（{TITLE[d.form]}已暂停，回复“{RESUME_WORD[d.form]}”可接着填。）"


def summary(d: Dialogue, ctx: Context) -> str:
    """Every answer, numbered, with how to confirm or change one."""
    form = FORMS[d.form]
    lines = [f"请核对您的{TITLE[d.form]}信息："]
    for i, f in enumerate(form.summary_fields(d.answers), 1):
        value = d.answers[f.key]
        chosen = course(ctx, value) if f.key == "course" else None
        shown = course_line(ctx, chosen, seats=False) if chosen else f.show(value)
        lines.append(f"{i}. {f.label}：{shown}")
    lines.append("\n无误请回复“确认”提交；要修改某一项，回复“修改手机号”这样的项目名，或项目编号（如“3”）；"
                 "回复“取消”放弃。")
    return "\n".join(lines)


def course_line(ctx: Context, chosen: Course, seats: bool = True) -> str:
    """Name, dates and place; with seats, how many are left or that it is full."""
    details = "，".join(x for x in (chosen.dates, chosen.place) if x)
    text = f"{chosen.name}（{details}）" if details else chosen.name
    # Those waiting come first: a seat they have not been given yet is not free.
    left = (chosen.capacity - applications.seats_taken(ctx.db, chosen.id)
            - applications.waiting_count(ctx.db, chosen.id))
    if left <= 0:
        return text + " 已满，可报名候补"
    return text + (f" 剩余{left}个名额" if seats else "")


def _ask_course(ctx: Context, d: Dialogue) -> str:
    lines = [f"{i}. {course_line(ctx, c)}" for i, c in enumerate(ctx.settings.courses, 1)]
    return "请选择要报名的培训课程，回复编号（例如：1）：\n" + "\n".join(lines)


def _ask_reuse(ctx: Context, d: Dialogue) -> str:
    p = profile(ctx, d.openid) or {}
    return ("还用上次的信息吗？\n"
            f"姓名：{p.get('name', '')}\n手机号：{mask_phone(p.get('phone', ''))}\n"
            f"身份证号：{mask_id(p.get('id_number', ''))}\n"
            f"住址：{p.get('township', '')}{p.get('village', '')}\n"
            "回复“是”沿用，回复“否”重新填写。")


def _ask_township(ctx: Context, d: Dialogue) -> str:
    towns = ctx.settings.county.townships
    example = towns[0] if towns else "城关镇"
    listed = f"\n本县乡镇：{'、'.join(towns)}" if towns else ""
    return f"您住在哪个乡镇？（例如：{example}）" + listed


def _ask_amount(ctx: Context, d: Dialogue) -> str:
    ceiling = yuan(ctx.settings.loan.ceiling_yuan)
    return f"您想申请多少贷款？最多{ceiling}。\n（例如：5万、三万五、30000元）"


def _ask_stage(ctx: Context, d: Dialogue) -> str:
    return "项目现在是什么情况？\n1. 已经在经营\n2. 准备开办\n请回复 1 或 2。"


def _ask(text: str) -> Callable[[Context, Dialogue], str]:
    """A prompt that is always the same text."""
    return lambda ctx, d: text


def _yes_no_text(value: bool) -> str:
    return "是" if value else "否"


IDENTITY = (
    Field("reuse", _ask_reuse, checks.check_reuse),
    Field("name", _ask("请告诉我您的姓名（例如：张三）。"), checks.check_name, "姓名", ("名字",)),
    Field("phone", _ask("请输入您的手机号（11位数字）。"), checks.check_phone, "手机号", ("电话", "手机")),
    Field("id_number", _ask("请输入您的身份证号（18位，最后一位可能是X）。"), checks.check_id_number,
          "身份证号", ("身份证",)),
    Field("township", _ask_township, checks.check_township, "乡镇", ("镇",)),
    Field("village", _ask("您住在哪个村（社区）？（例如：石门村）"), checks.check_village, "村（社区）",
          ("村", "社区")),
)

FORMS = {
    TRAINING: Form(TRAINING, (
        Field("course", _ask_course, checks.check_course, "课程", ("培训",)),
        *IDENTITY,
        Field("returning", _ask("您是返乡农民工吗？回复“是”或“否”。"), checks.check_returning,
              "返乡农民工", ("返乡",), _yes_no_text),
    )),
    LOAN: Form(LOAN, (
        Field("amount", _ask_amount, checks.check_amount, "贷款金额", ("金额", "钱"), yuan),
        Field("purpose", _ask("贷款主要用来做什么？（例如：扩建茶厂、买种苗和饲料）"),
              checks.check_purpose, "用途"),
        Field("industry", _ask(f"您做的是哪个行业？（例如：{'、'.join(checks.INDUSTRY_EXAMPLES)}）"),
              checks.check_industry, "行业"),
        Field("stage", _ask_stage, checks.check_stage, "经营情况", ("情况",), labels.STAGES.__getitem__),
        *IDENTITY,
    )),
}
