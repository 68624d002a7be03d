"""Phone and ID numbers are masked in every form a person might type them: in the message
log, the questions kept for staff, hand-offs and the console's pages."""
from __future__ import annotations

import sqlite3
import unicodedata

import pytest

from bot.privacy import mask_text
from tests.conftest import Chat
from tests.test_console import staff_client  # noqa: F401  (fixture)

PHONE, ID = "13812345678", "11010519491231002X"
# As the validators accept them (and near misses), in the words people wrap them in.
TYPED = [
    "我的手机13812345678",
    "电话 138 1234 5678",
    "+86 138-1234-5678",
    "8613812345678",
    "手机１３８１２３４５６７８",
    "138.1234.5678",
    "138·1234·5678",
    "138_1234_5678",
    "𝟏𝟑𝟖𝟏𝟐𝟑𝟒𝟓𝟔𝟕𝟖",
    "一三八一二三四五六七八",
    "幺三八幺二三四五六七八",
    "身份证11010519491231002X",
    "身份证 110105.19491231.002X",
    "110105·19491231·002x",
    "110105_19491231_002X",
    "110105—19491231—002X",
    "110105－19491231－002X",
    "１１０１０５１９４９１２３１００２Ｘ",
]
NEAR_MISSES = ["身份证少一位11010519491231002", "手机少一位1381234567"]


@pytest.mark.parametrize("typed", TYPED + NEAR_MISSES)
def test_every_typed_form_is_masked(typed):
    masked = mask_text(typed)
    digits = "".join(ch for ch in masked if ch.isdigit())
    assert "*" in masked and len(digits) <= 8, masked


@pytest.mark.parametrize("text", ["热线 0000-12345678", "编号 PX20261202-0007", "2026-12-02 15:30",
                                  "贷款最高5万元，期限2年", "一二三四五六七八九十"])
def test_other_numbers_are_left_alone(text):
    assert mask_text(text) == text


def test_typed_numbers_never_reach_the_log_the_review_queue_or_the_console(app, staff_client):  # noqa: F811
    for n, typed in enumerate(TYPED + NEAR_MISSES):
        Chat(staff_client, f"o-typed-{n}").say(typed)
    Chat(staff_client, "o-typed-human").say("转人工 我的电话+86 138-1234-5678")
    database = sqlite3.connect(app.extensions["bot"].settings.storage.database)
    stored = [row[0] for row in database.execute("SELECT content FROM messages")]
    stored += [row[0] for row in database.execute("SELECT question FROM unanswered")]
    stored += [row[0] for row in database.execute("SELECT text FROM handoffs")]
    pages = [staff_client.get(path).get_data(as_text=True)
             for path in ("/admin/conversations", "/admin/unanswered", "/admin/conversations/o-typed-2",
                          "/admin/people/o-typed-human")]
    for text in stored + pages:
        plain = "".join(ch for ch in unicodedata.normalize("NFKC", text) if ch.isdigit())
        assert PHONE[:10] not in plain and ID[:16] not in plain, text[:200]
        assert "一三八一二三四" not in text and "幺三八幺二三四" not in text, text[:200]
