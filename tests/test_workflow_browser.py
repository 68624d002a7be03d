"""The application page's status form in headless Chromium: only the next steps, and a
reason required for 未通过 before the form can be sent."""
from __future__ import annotations

from tests.test_console_browser import (  # noqa: F401  (fixtures)
    expect,
    page,
    send_as,
    served,
)
from tests.test_registration import PX, TRAINING_TO_SUMMARY


def test_not_approved_needs_a_reason_and_the_select_offers_only_next_steps(page, served):  # noqa: F811
    for said, _ in TRAINING_TO_SUMMARY:
        send_as(page, served, "o-browser-flow", said)
    ref = PX.search(send_as(page, served, "o-browser-flow", "确认")).group()
    page.goto(f"{served.url}/admin/applications/{ref}")
    select = page.locator("#status-form select[name=status]")
    values = select.locator("option").evaluate_all("options => options.map(o => o.value)")
    assert values == ["", "审核中", "已取消"]
    select.select_option("审核中")
    page.click("#status-form button[type=submit]")
    expect(page.locator("#status")).to_contain_text("审核中")
    select.select_option("未通过")
    page.click("#status-form button[type=submit]")
    # The browser keeps the form: the reason is required, so nothing was sent.
    assert page.locator("#status-form textarea[name=note]").evaluate("n => n.validity.valueMissing")
    expect(page.locator("#status")).to_contain_text("审核中")
    page.fill("#status-form textarea[name=note]", "不是本县户籍")
    page.click("#status-form button[type=submit]")
    expect(page.locator("#status")).to_contain_text("未通过")
    expect(page.locator("#history")).to_contain_text("不是本县户籍")
    expect(page.locator("#status-form")).to_contain_text("办理已结束")
