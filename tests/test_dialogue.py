"""The form engine and the answer parsers, without the webhook."""
from __future__ import annotations

import datetime as dt
import json

import pytest
from cryptography.fernet import Fernet

from bot import dialogue
from bot.dialogue import SUMMARY, Check, Field, Form
from bot.privacy import Vault
from bot.storage import engine, migrations, user_state
from bot.validators import (
    Invalid,
    id_check_digit,
    match_address,
    match_township,
    parse_amount,
    parse_id_number,
    parse_name,
    parse_phone,
)

TODAY = dt.date(2026, 11, 26)
TOWNS = ("城关镇", "石桥镇", "青山乡")


# --- parsers ---------------------------------------------------------------------------

@pytest.mark.parametrize("typed,expected", [
    ("13812345678", "13812345678"),
    ("138 1234 5678", "13812345678"),
    ("138-1234-5678", "13812345678"),
    ("１３８１２３４５６７８", "13812345678"),
    ("+86 138 1234 5678", "13812345678"),
    ("8613812345678", "13812345678"),
    ("我的手机是13812345678", "13812345678"),
    ("幺三八一二三四五六七八", "13812345678"),
])
def test_phone_accepts_what_people_type(typed, expected):
    assert parse_phone(typed) == expected


@pytest.mark.parametrize("typed,code", [
    ("1381234567", "length"), ("138123456789", "length"), ("12812345678", "prefix"),
    ("23812345678", "prefix"), ("138abcd5678", "chars"), ("", "chars"),
])
def test_phone_refusals_say_why(typed, code):
    with pytest.raises(Invalid) as exc:
        parse_phone(typed)
    assert exc.value.code == code


@pytest.mark.parametrize("number", ["11010519491231002X", "440524188001010014"])
def test_check_digit_matches_published_examples(number):
    # Both numbers are the worked examples printed with GB 11643-1999.
    assert id_check_digit(number[:17]) == number[17]


@pytest.mark.parametrize("typed,expected", [
    ("11010519491231002X", "11010519491231002X"),
    ("11010519491231002x", "11010519491231002X"),
    ("110105 19491231 002X", "11010519491231002X"),
    ("１１０１０５１９４９１２３１００２Ｘ", "11010519491231002X"),
])
def test_id_number_accepts_spacing_case_and_full_width(typed, expected):
    assert parse_id_number(typed, TODAY) == expected


def _with_check(first17: str) -> str:
    return first17 + id_check_digit(first17)


@pytest.mark.parametrize("typed,code", [
    ("110105194912310021", "checksum"),
    ("1101051949123100", "length"),
    ("11010519491231002Y", "chars"),
    (_with_check("11010519491331002"), "birth"),   # month 13
    (_with_check("11010519490230002"), "birth"),   # 30 February
    (_with_check("11010520991231002"), "birth"),   # born in the future
    (_with_check("11010518001231002"), "birth"),   # before 1900
])
def test_id_number_refusals_say_why(typed, code):
    with pytest.raises(Invalid) as exc:
        parse_id_number(typed, TODAY)
    assert exc.value.code == code


@pytest.mark.parametrize("typed,expected", [
    ("5万", 50000), ("五万", 50000), ("三万五", 35000), ("50000元", 50000), ("5w", 50000),
    ("5W", 50000), ("3.5万", 35000), ("50,000", 50000), ("５万元", 50000), ("两万", 20000),
    ("一万二", 12000), ("伍万", 50000), ("30000块", 30000), ("三万五千元", 35000),
])
def test_amount_understands_chinese_ways_of_saying_it(typed, expected):
    assert parse_amount(typed) == expected


@pytest.mark.parametrize("typed,code", [
    ("很多", "number"), ("", "empty"), ("0", "positive"), ("0.5元", "fraction"), ("abc", "number"),
])
def test_amount_refusals_say_why(typed, code):
    with pytest.raises(Invalid) as exc:
        parse_amount(typed)
    assert exc.value.code == code


@pytest.mark.parametrize("typed,name,sure", [
    ("石桥镇", "石桥镇", True), ("石桥", "石桥镇", True), ("青山", "青山乡", True),
    ("石桥镇石门村", "石桥镇", True), ("石乔", "石桥镇", False), ("城关真", "城关镇", False),
])
def test_township_fuzzy_match_is_sure_only_when_clear(typed, name, sure):
    found = match_township(typed, TOWNS)
    assert (found.name, found.sure) == (name, sure)


@pytest.mark.parametrize("typed,township,village", [
    ("我是城关镇东门村的", "城关镇", "东门村"), ("石桥镇石门村", "石桥镇", "石门村"),
    ("住在青山乡", "青山乡", ""), ("石桥", "石桥镇", ""),
])
def test_address_gives_township_and_the_village_named_after_it(typed, township, village):
    found, rest = match_address(typed, TOWNS)
    assert (found.name, rest) == (township, village)


def test_township_far_off_is_unknown():
    with pytest.raises(Invalid):
        match_township("北京市", TOWNS)


@pytest.mark.parametrize("typed,ok", [
    ("张三", True), ("欧阳娜娜", True), ("阿依古丽·买买提", True), ("阿依古丽•买买提", True),
    ("John Smith", True), ("张", False), ("张3", False), ("张" * 21, False), ("!!", False),
    ("第三个", False), ("这个", False), ("那英", True),
])
def test_names(typed, ok):
    if ok:
        assert parse_name(typed)
    else:
        with pytest.raises(Invalid):
            parse_name(typed)


# --- engine -----------------------------------------------------------------------------

def _digits(text, ctx, d):
    return Check(int(text)) if text.isdigit() else Check(hint="digits please")


def _unsure(text, ctx, d):
    return Check(text.upper(), confirm="sure?")


FORM = Form("demo", (
    Field("a", lambda ctx, d: "A?", _digits, "alpha"),
    Field("b", lambda ctx, d: "B?", _unsure, "beta", ("bee",)),
    Field("c", lambda ctx, d: "C?", lambda t, ctx, d: Check(t, also={"d": t + "!"}), "gamma"),
    Field("d", lambda ctx, d: "D?", lambda t, ctx, d: Check(t), "delta"),
))


def test_answers_move_through_fields_to_summary():
    d = dialogue.begin(FORM, "o1", 0.0)
    assert d.step == "a"
    assert not dialogue.give(FORM, d, "x", None).ok and d.attempts == 1 and d.step == "a"
    assert dialogue.give(FORM, d, "7", None).ok and d.attempts == 0 and d.step == "b"
    dialogue.give(FORM, d, "yes", None)
    assert d.step == "b" and d.pending == {"value": "YES", "also": {}}
    dialogue.accept_pending(FORM, d)
    assert d.step == "c" and d.answers["b"] == "YES"
    dialogue.give(FORM, d, "hi", None)  # also fills d, which is then skipped
    assert d.step == SUMMARY and d.answers == {"a": 7, "b": "YES", "c": "hi", "d": "hi!"}


def test_back_undoes_the_newest_answer_with_what_it_filled():
    d = dialogue.begin(FORM, "o1", 0.0)
    assert dialogue.back(d) is False
    dialogue.give(FORM, d, "1", None)
    dialogue.give(FORM, d, "x", None)
    dialogue.accept_pending(FORM, d)
    dialogue.give(FORM, d, "hi", None)
    assert dialogue.back(d) and d.step == "c" and "d" not in d.answers and "c" not in d.answers
    assert d.answers == {"a": 1, "b": "X"}


def test_edit_from_summary_returns_to_summary():
    d = dialogue.begin(FORM, "o1", 0.0, {"a": 1, "b": "B", "c": "c", "d": "d"})
    assert d.step == SUMMARY
    field = dialogue.find_field(FORM, d, "2")
    assert field.key == "b" and dialogue.find_field(FORM, d, "bee").key == "b"
    assert dialogue.find_field(FORM, d, "9") is None
    dialogue.edit(d, "a")
    dialogue.give(FORM, d, "5", None)
    assert d.step == SUMMARY and d.answers["a"] == 5


def test_idle_and_resume_windows():
    d = dialogue.begin(FORM, "o1", 1000.0)
    assert not dialogue.is_idle(d, 1000.0 + 1800, 1800)
    assert dialogue.is_idle(d, 1000.0 + 1801, 1800)
    assert dialogue.is_resumable(d, 1000.0 + 86400, 86400)
    assert not dialogue.is_resumable(d, 1000.0 + 86401, 86400)


def test_dialogue_round_trips_through_sqlite_encrypted(tmp_path):
    migrations.migrate(tmp_path / "t.db")
    database = engine.connect(tmp_path / "t.db")
    vault = Vault(Fernet.generate_key())
    d = dialogue.begin(FORM, "o1", 5.0, {"a": 11010519491231})
    d.history.append(["a"])
    dialogue.save(database, vault, d, 6.0)
    raw = next(database["dialogues"].rows)
    assert "11010519491231" not in str(raw)
    again = dialogue.load_all(database, vault, "o1")[0]
    assert (again.step, again.answers, again.history, again.updated_at) == (
        "b", {"a": 11010519491231}, [["a"]], 6.0)
    dialogue.drop(database, again)
    assert dialogue.load_all(database, vault, "o1") == []


def test_resaving_keeps_the_ciphertext_until_an_answer_changes(tmp_path):
    migrations.migrate(tmp_path / "t.db")
    database = engine.connect(tmp_path / "t.db")
    vault = Vault(Fernet.generate_key())
    dialogue.save(database, vault, dialogue.begin(FORM, "o1", 5.0, {"a": 1}), 5.0)
    stored = next(database["dialogues"].rows)["data"]
    d = dialogue.load_all(database, vault, "o1")[0]
    dialogue.save(database, vault, d, 7.0)  # a question asked mid-form: only the time moves
    assert next(database["dialogues"].rows)["data"] == stored
    d.answers["b"] = 2
    dialogue.save(database, vault, d, 8.0)
    assert next(database["dialogues"].rows)["data"] != stored
    assert dialogue.load_all(database, vault, "o1")[0].answers == {"a": 1, "b": 2}


def test_answers_stored_before_aes_gcm_still_load(tmp_path):
    migrations.migrate(tmp_path / "t.db")
    database = engine.connect(tmp_path / "t.db")
    key = Fernet.generate_key()
    plain = json.dumps({"answers": {"a": 1}, "history": [["a"]], "pending": None,
                        "cancelling": False})
    user_state.save_dialogue(database, {  # as the Fernet-only version wrote it
        "openid": "o1", "form": FORM.name, "step": "b", "status": "active", "attempts": 0,
        "data": Fernet(key).encrypt(plain.encode()).decode(), "started_at": 5.0, "updated_at": 5.0})
    d = dialogue.load_all(database, Vault(key.decode()), "o1")[0]
    assert (d.step, d.answers, d.history) == ("b", {"a": 1}, [["a"]])


def test_a_changed_token_is_refused_not_misread():
    vault = Vault(Fernet.generate_key())
    token = vault.encrypt("11010519491231002X")
    assert "1101" not in token and vault.decrypt(token) == "11010519491231002X"
    # A character in the middle: every bit of it is data (near the end, base64 padding
    # leaves bits that decode to nothing, so changing them changes nothing).
    i = len(token) // 2
    changed = token[:i] + ("B" if token[i] == "A" else "A") + token[i + 1:]
    with pytest.raises(ValueError, match="无法解密"):
        vault.decrypt(changed)


def test_id_fingerprints_match_only_under_the_same_key():
    key = Fernet.generate_key()
    one, same, other = Vault(key), Vault(key.decode()), Vault(Fernet.generate_key())
    print_ = one.fingerprint("11010519491231002X")
    assert print_ == same.fingerprint("11010519491231002X") != one.fingerprint("440524188001010014")
    assert print_ != other.fingerprint("11010519491231002X") and "1101" not in print_


def test_dialogue_under_a_replaced_key_is_dropped_not_fatal(tmp_path, caplog):
    migrations.migrate(tmp_path / "t.db")
    database = engine.connect(tmp_path / "t.db")
    dialogue.save(database, Vault(Fernet.generate_key()), dialogue.begin(FORM, "o1", 5.0), 5.0)
    assert dialogue.load_all(database, Vault(Fernet.generate_key()), "o1") == []
    assert database["dialogues"].count == 0 and "cannot be decrypted" in caplog.text
