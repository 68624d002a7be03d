"""The staff console through the Flask test client: accounts, sign-in, CSRF, lock-out, audit."""
from __future__ import annotations

import re
import shutil
import stat
from collections import Counter

import pytest
from click.testing import CliRunner

from bot.cli import cli
from bot.storage import applications, engine, messages, staff
from tests.conftest import ROOT, Chat, make_settings

PASSWORD = "correct horse 42"
XSS = '<script>window.__xss=1</script><img src=x onerror="window.__xss=1">'


def database(app):
    return engine.connect(app.extensions["bot"].settings.storage.database)


def add_staff(app, name: str = "wang", password: str = PASSWORD) -> None:
    from werkzeug.security import generate_password_hash
    assert staff.add_staff(database(app), name, generate_password_hash(password))


def csrf_from(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, "page has no CSRF field"
    return found.group(1)


def sign_in(client, name: str = "wang", password: str = PASSWORD, next_url: str = ""):
    token = csrf_from(client.get("/admin/login").get_data(as_text=True))
    return client.post("/admin/login", data={"username": name, "password": password,
                                              "csrf_token": token, "next": next_url})


@pytest.fixture
def staff_client(app, client):
    add_staff(app)
    assert sign_in(client).status_code == 302
    return client


def signed_in(app):
    """A test client of app, signed in as a new staff member (the app at client.application)."""
    client = app.test_client()
    add_staff(app)
    sign_in(client)
    client.application = app
    return client


def page_token(client, path: str = "/admin/") -> str:
    return csrf_from(client.get(path).get_data(as_text=True))


# --- accounts ------------------------------------------------------------------------


def write_config(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text(f'[storage]\ndatabase = "{tmp_path / "bot.db"}"\n', encoding="utf-8")
    return path


def test_staff_add_asks_twice_and_stores_only_a_slow_hash(tmp_path):
    config = write_config(tmp_path)
    result = CliRunner().invoke(cli, ["--config", str(config), "staff", "add", "li"],
                                input="s3cret-pass\ns3cret-pass\n")
    assert result.exit_code == 0, result.output
    assert "s3cret-pass" not in result.output
    row = staff.get_staff(engine.connect(tmp_path / "bot.db"), "li")
    assert row["password_hash"].startswith("scrypt:") and "s3cret-pass" not in row["password_hash"]


def test_staff_add_refuses_mismatch_short_password_and_duplicate(tmp_path):
    config = write_config(tmp_path)
    def run(text):
        return CliRunner().invoke(cli, ["--config", str(config), "staff", "add", "li"], input=text)
    short = run("short\nshort\n")
    assert short.exit_code != 0 and "至少 8 个字符" in short.output
    # A mismatch asks again; the account is made once both entries agree.
    mismatch = run("s3cret-pass\nother-pass\ns3cret-pass\ns3cret-pass\n")
    assert mismatch.exit_code == 0 and mismatch.output.count("再输入一次密码") == 2
    again = run("s3cret-pass\ns3cret-pass\n")
    assert again.exit_code != 0 and "已存在" in again.output


def test_staff_password_resets_and_lifts_the_lock(tmp_path):
    config = write_config(tmp_path)
    def invoke(*args, text):
        return CliRunner().invoke(cli, ["--config", str(config), "staff", *args], input=text)
    assert invoke("reset-password", "nobody", text="new-pass-123\nnew-pass-123\n").exit_code != 0
    assert invoke("add", "li", text="s3cret-pass\ns3cret-pass\n").exit_code == 0
    d = engine.connect(tmp_path / "bot.db")
    staff.record_login_failure(d, "li", "10.0.0.9", 1, 900)
    assert staff.login_blocked_until(d, "li", "10.0.0.9")
    result = invoke("reset-password", "li", text="new-pass-123\nnew-pass-123\n")
    assert result.exit_code == 0, result.output
    from werkzeug.security import check_password_hash
    assert check_password_hash(staff.get_staff(d, "li")["password_hash"], "new-pass-123")
    assert staff.login_blocked_until(d, "li", "10.0.0.9") is None


def test_no_default_account_exists(client):
    for name, password in [("admin", "admin"), ("admin", "123456"), ("staff", "password")]:
        resp = sign_in(client, name, password)
        assert resp.status_code == 200 and "用户名或密码错误" in resp.get_data(as_text=True)
    assert client.get("/admin/").status_code == 302


# --- sign-in --------------------------------------------------------------------------


def test_sign_in_sets_a_hardened_cookie_and_lands_on_the_overview(app, client):
    add_staff(app)
    resp = sign_in(client)
    assert resp.status_code == 302 and resp.headers["Location"].endswith("/admin/")
    cookie = resp.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    page = client.get("/admin/")
    assert page.status_code == 200 and "每日消息数" in page.get_data(as_text=True)


def test_secret_key_is_generated_owner_only_and_kept(tmp_path):
    from tests.conftest import create_app
    settings = make_settings(tmp_path)
    first = create_app(settings)
    key_file = tmp_path / "console.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    second = create_app(settings)
    assert first.secret_key == second.secret_key == key_file.read_text().strip()
    for app in (first, second):
        app.extensions["bot"].close()


def test_configured_secret_key_is_used(tmp_path):
    from tests.conftest import create_app
    app = create_app(make_settings(tmp_path, console={"secret_key": "x" * 40}))
    assert app.secret_key == "x" * 40 and not (tmp_path / "console.key").exists()
    app.extensions["bot"].close()


def test_wrong_password_is_refused(app, client):
    add_staff(app)
    resp = sign_in(client, password="wrong password")
    assert resp.status_code == 200 and "用户名或密码错误" in resp.get_data(as_text=True)
    assert client.get("/admin/").status_code == 302


def client_from(app, address: str):
    """A test client whose requests come from address."""
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = address
    return client


def test_failures_make_that_address_wait_even_with_the_right_password(tmp_path):
    from tests.conftest import create_app
    app = create_app(make_settings(tmp_path, console={"max_failed_logins": 3, "lockout_minutes": 15}))
    client = client_from(app, "10.0.0.7")
    add_staff(app)
    for _ in range(2):
        assert "用户名或密码错误" in sign_in(client, password="nope").get_data(as_text=True)
    third = sign_in(client, password="nope").get_data(as_text=True)
    assert "秒后再试" in third
    blocked = sign_in(client)
    assert blocked.status_code == 200 and "后再试" in blocked.get_data(as_text=True)
    assert client.get("/admin/").status_code == 302
    # When the wait is over the right password works again.
    d = database(app)
    d.conn.execute("UPDATE login_throttle SET blocked_until = 1")
    d.conn.commit()
    assert sign_in(client).status_code == 302
    app.extensions["bot"].close()


def test_a_stranger_guessing_cannot_lock_staff_out(tmp_path):
    from tests.conftest import create_app
    app = create_app(make_settings(tmp_path, console={"max_failed_logins": 5, "lockout_minutes": 15}))
    add_staff(app)
    stranger, d = client_from(app, "203.0.113.9"), database(app)
    waits = []
    for _ in range(16):
        sign_in(stranger, password="guess")
        row = d.execute("SELECT * FROM login_throttle WHERE address = '203.0.113.9'").fetchone()
        waits.append(round(row[4] - row[3]) if row[4] else 0)
        d.conn.execute("UPDATE login_throttle SET blocked_until = 1")  # the stranger waits it out
        d.conn.commit()
    # Five free tries, then 1, 2, 4 ... seconds, never more than lockout_minutes.
    assert waits[:8] == [0, 0, 0, 0, 1, 2, 4, 8] and waits[-1] == 15 * 60
    # Staff at their own desk sign in at once, while the stranger still has to wait.
    assert sign_in(client_from(app, "192.168.1.20")).status_code == 302
    sign_in(stranger, password="guess")
    assert "分钟后再试" in sign_in(stranger).get_data(as_text=True)
    log = [(e["action"], e["detail"]) for e in staff.audit_entries(d)]
    assert ("登录失败", "来自 203.0.113.9") in log and ("登录", "来自 192.168.1.20") in log
    assert ("登录被限制", "来自 203.0.113.9") in log
    app.extensions["bot"].close()


def test_sign_in_only_redirects_within_the_console(app, client):
    add_staff(app)
    assert sign_in(client, next_url="https://evil.example/").headers["Location"].endswith("/admin/")
    client.post("/admin/logout", data={"csrf_token": page_token(client)})
    assert sign_in(client, next_url="/admin/audit").headers["Location"].endswith("/admin/audit")


def test_sign_out_ends_the_session_even_for_a_copied_cookie(staff_client):
    copied = staff_client.get_cookie("cyt_console").value
    resp = staff_client.post("/admin/logout", data={"csrf_token": page_token(staff_client)})
    assert resp.status_code == 302
    assert staff_client.get("/admin/").status_code == 302
    staff_client.set_cookie("cyt_console", copied)
    assert staff_client.get("/admin/").status_code == 302
    assert staff_client.get("/admin/api/handoffs").status_code == 401
    assert sign_in(staff_client).status_code == 302  # signing in again works
    assert staff_client.get("/admin/").status_code == 200


# --- anonymous visitors and CSRF ----------------------------------------------------------


def console_rules(app):
    return [r for r in app.url_map.iter_rules()
            if r.endpoint.startswith("console.") and r.endpoint not in ("console.login", "console.static")]


def concrete(rule) -> str:
    path = rule.rule
    for arg in rule.arguments:
        path = re.sub(r"<(?:[a-z]+:)?" + arg + ">", "1", path)
    return path


def test_every_console_url_refuses_anonymous_visitors(app, client):
    rules = console_rules(app)
    assert len(rules) >= 8
    for rule in rules:
        path = concrete(rule)
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            resp = client.open(path, method=method)
            if path.startswith("/admin/api/"):
                assert resp.status_code == 401, (method, path)
                assert resp.get_json()["error"]
            else:
                assert resp.status_code == 302, (method, path)
                assert "/admin/login" in resp.headers["Location"]


def test_posts_without_the_csrf_token_are_refused(app, staff_client):
    for rule in console_rules(app):
        if "POST" not in rule.methods:
            continue
        path = concrete(rule)
        resp = staff_client.post(path, data={"csrf_token": "forged"})
        assert resp.status_code == 400, path
        resp = staff_client.post(path, json={})
        assert resp.status_code == 400, path
    # Still signed in: the refusals did nothing.
    assert staff_client.get("/admin/").status_code == 200


def test_unknown_records_get_a_chinese_404(staff_client):
    page = staff_client.get("/admin/applications/PX00000000-0000")
    assert page.status_code == 404 and "没有找到" in page.get_data(as_text=True)
    api = staff_client.get("/admin/api/announcements/999/progress")
    assert api.status_code == 404 and api.get_json()["error"]


def test_sign_in_form_needs_the_csrf_token(app, client):
    add_staff(app)
    resp = client.post("/admin/login", data={"username": "wang", "password": PASSWORD})
    assert resp.status_code == 400 and "页面已过期" in resp.get_data(as_text=True)


def test_pages_forbid_inline_scripts(staff_client):
    policy = staff_client.get("/admin/").headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy


# --- audit log ---------------------------------------------------------------------------


def test_actions_are_written_to_the_audit_log(app, client):
    add_staff(app)
    sign_in(client, password="wrong password")
    sign_in(client)
    chat = Chat(client, "o-asker")
    chat.say("我想找人工")
    token = page_token(client)
    client.post("/admin/conversations/o-asker/reply", data={"text": "您好，我是县人社局小王。",
                                                             "csrf_token": token})
    page = client.get("/admin/audit").get_data(as_text=True)
    for action in ("登录失败", "登录", "回复用户"):
        assert action in page
    rows = staff.audit_entries(database(app))
    assert [r["action"] for r in rows][:3] == ["回复用户", "登录", "登录失败"]
    assert all(r["staff"] == "wang" and r["created_at"] for r in rows)


# --- pages ------------------------------------------------------------------------------


def test_overview_counts_messages_bands_topics_and_subscribers(app, staff_client):
    chat = Chat(staff_client, "o-new")
    chat.event("subscribe")
    chat.say("你好")
    d = database(app)
    d.conn.execute("UPDATE messages SET band = 'unknown' WHERE content = '你好'")
    d.conn.commit()
    page = staff_client.get("/admin/").get_data(as_text=True)
    assert "100%（1）" in page  # the only question was not understood
    assert re.search(r"<b>1</b><span>近 7 天新关注", page)
    assert "<rect" in page


def test_unanswered_questions_are_grouped_and_can_be_put_out_of_scope(app, staff_client):
    d = database(app)
    for q in ("贷款利息是多少", "贷款的利息是多少啊", "贷款利息多少", "养猪场怎么消毒"):
        messages.record_unanswered(d, "o-x", q, "unknown", None, 10.0)
    page = staff_client.get("/admin/unanswered").get_data(as_text=True)
    assert "4 条待处理" in page
    groups = re.findall(r"<h2>(.*?) <small>(\d+) 条</small></h2>", page)
    assert sorted(int(n) for _, n in groups) == [1, 3]
    pig = [r["id"] for r in d.query("SELECT id FROM unanswered WHERE question LIKE '养猪%'")]
    staff_client.post("/admin/unanswered/out-of-scope",
                      data={"id": pig, "csrf_token": page_token(staff_client)})
    page = staff_client.get("/admin/unanswered").get_data(as_text=True)
    assert "3 条待处理" in page and "养猪场" not in page
    assert d.execute("SELECT status FROM unanswered WHERE id = ?", pig).fetchone()[0] == "out_of_scope"


def test_staff_reply_reaches_the_user_and_closes_the_hand_off(app, staff_client):
    d = database(app)
    staff.request_human(d, "o-help", "我想问贷款的事")
    assert staff.request_human(d, "o-help") == staff.request_human(d, "o-help")  # one open request
    listing = staff_client.get("/admin/conversations").get_data(as_text=True)
    assert "o-help" in listing and "我想问贷款的事" in listing
    assert staff_client.get("/admin/api/handoffs").get_json() == {"open": 1}
    staff_client.post("/admin/conversations/o-help/reply",
                      data={"text": "您好，贷款请带身份证到窗口办理。",
                            "csrf_token": page_token(staff_client)})
    inbox = staff_client.get("/simulator/api/inbox?openid=o-help").get_json()["messages"]
    assert [m["text"] for m in inbox] == ["您好，贷款请带身份证到窗口办理。"]
    assert staff_client.get("/admin/api/handoffs").get_json() == {"open": 0}


def test_a_conversation_is_found_by_openid(staff_client):
    Chat(staff_client, "o-find-me").say("培训在哪里")
    resp = staff_client.get("/admin/conversations/find?openid=o-find-me", follow_redirects=True)
    assert "培训在哪里" in resp.get_data(as_text=True)


def test_empty_reply_is_refused_with_a_message(app, staff_client):
    resp = staff_client.post("/admin/conversations/o-help/reply",
                             data={"text": "  ", "csrf_token": page_token(staff_client)},
                             follow_redirects=True)
    assert "请填写回复内容" in resp.get_data(as_text=True)
    assert database(app)["outbox"].count == 0


def test_subscriber_text_is_escaped_everywhere_it_is_shown(app, staff_client):
    chat = Chat(staff_client, "o-attacker")
    chat.say(XSS)
    d = database(app)
    messages.record_unanswered(d, "o-attacker", XSS, "unknown", None, 1.0)
    staff.request_human(d, "o-attacker", XSS)
    for path in ("/admin/conversations", "/admin/conversations/o-attacker", "/admin/unanswered"):
        html = staff_client.get(path).get_data(as_text=True)
        assert "&lt;script&gt;window.__xss=1&lt;/script&gt;" in html, path
        assert "<script>window.__xss" not in html and "<img src=x" not in html, path


def test_phone_numbers_in_messages_are_masked_in_the_console(staff_client):
    Chat(staff_client, "o-phone").say("我的电话13812345678")
    html = staff_client.get("/admin/conversations/o-phone").get_data(as_text=True)
    assert "138****5678" in html and "13812345678" not in html


# --- knowledge base ------------------------------------------------------------------


@pytest.fixture
def kb_client(tmp_path):
    """A signed-in client on an app whose policies/ is a copy this test may edit."""
    from tests.conftest import create_app
    shutil.copytree(ROOT / "policies", tmp_path / "policies")
    app = create_app(make_settings(tmp_path, matcher={"policies_dir": str(tmp_path / "policies")}))
    yield signed_in(app)
    app.extensions["bot"].close()


def topic_form(client, topic_id: str) -> dict[str, str]:
    html = client.get(f"/admin/knowledge/{topic_id}").get_data(as_text=True)
    import html as html_lib
    fields = dict(re.findall(r'<input name="(\w+)" value="([^"]*)"', html))
    fields.update(re.findall(r'<textarea name="([\w.]+)"[^>]*>(.*?)</textarea>', html, re.S))
    fields = {k: html_lib.unescape(v) for k, v in fields.items()}
    fields["csrf_token"] = csrf_from(html)
    return fields


def test_knowledge_search_finds_topics_by_example_wording(kb_client):
    page = kb_client.get("/admin/knowledge?q=代款").get_data(as_text=True)
    assert "support.loan" in page and "support.tax" not in page


def test_topic_edit_is_saved_backed_up_and_answered_at_once(kb_client, tmp_path):
    before = (tmp_path / "policies" / "support.toml").read_text(encoding="utf-8")
    form = topic_form(kb_client, "support.loan")
    form["answer"] = "贷款新规：个人最高10万元。电话：{hotline}"
    resp = kb_client.post("/admin/knowledge/support.loan", data=form)
    assert resp.status_code == 302
    text = (tmp_path / "policies" / "support.toml").read_text(encoding="utf-8")
    assert "贷款新规：个人最高10万元" in text and 'title = "五个扶持"' in text
    assert text.startswith(before.split("\n")[0])  # the file's header comment is kept
    backups = list((tmp_path / "backups" / "policies").glob("support.*.toml"))
    assert [b.read_text(encoding="utf-8") for b in backups] == [before]
    reply = Chat(kb_client, "o-loan").say("创业贷款能贷好多")
    assert "贷款新规：个人最高10万元。电话：0000-12345678" in reply
    assert "编辑话题" in kb_client.get("/admin/audit").get_data(as_text=True)


def test_topic_edit_keeps_the_rest_of_the_file_as_written(kb_client, tmp_path):
    import tomllib
    file = tmp_path / "policies" / "support.toml"
    before = file.read_text(encoding="utf-8")
    form = topic_form(kb_client, "support.loan")
    form["keywords"] += "\n借本钱"
    assert kb_client.post("/admin/knowledge/support.loan", data=form).status_code == 302
    after = file.read_text(encoding="utf-8")
    head = before.split('[topics."support.loan"]')[0]
    tail = before.split('[topics."support.tax"]')[1]
    assert after.startswith(head) and after.endswith(tail)
    old, new = tomllib.loads(before), tomllib.loads(after)
    assert new["topics"]["support.loan"]["keywords"] == old["topics"]["support.loan"]["keywords"] + ["借本钱"]
    assert {k: v for k, v in new["topics"].items() if k != "support.loan"} == \
        {k: v for k, v in old["topics"].items() if k != "support.loan"}
    assert new["topics"]["support.loan"]["details"] == old["topics"]["support.loan"]["details"]


def test_an_answer_with_lines_starting_with_a_bracket_can_be_edited_again(kb_client, tmp_path):
    form = topic_form(kb_client, "support.loan")
    form["answer"] = "[注意] 个人最高{loan_ceiling}。\n[提示] 电话：{hotline}"
    assert kb_client.post("/admin/knowledge/support.loan", data=form).status_code == 302
    form = topic_form(kb_client, "support.loan")
    assert form["answer"].startswith("[注意]")
    form["keywords"] += "\n借本钱"
    assert kb_client.post("/admin/knowledge/support.loan", data=form).status_code == 302
    reply = Chat(kb_client, "o-bracket").say("创业贷款能贷好多")
    assert "[注意] 个人最高5万元。" in reply and "[提示] 电话：0000-12345678" in reply


def test_an_edit_killed_right_after_the_write_is_in_the_audit_log(kb_client, tmp_path, monkeypatch):
    from bot.knowledge import edit

    def write_then_die(file, text):
        real_write(file, text)
        raise KeyboardInterrupt  # the process is killed before anything else runs

    real_write = edit._write
    monkeypatch.setattr(edit, "_write", write_then_die)
    form = topic_form(kb_client, "support.loan")
    form["answer"] = "贷款新规：个人最高{loan_ceiling}。"
    with pytest.raises(KeyboardInterrupt):
        kb_client.post("/admin/knowledge/support.loan", data=form)
    assert "贷款新规" in (tmp_path / "policies" / "support.toml").read_text(encoding="utf-8")
    monkeypatch.setattr(edit, "_write", real_write)
    audit = kb_client.get("/admin/audit").get_data(as_text=True)
    assert "编辑话题" in audit and "support.loan" in audit


@pytest.mark.parametrize("field,value,problem", [
    ("answer", "请打电话 {phone}", "未知占位符"),
    ("examples", "贷款\n借钱", "至少需要 6 条"),
    ("details.office", "", "details 缺少 office"),
])
def test_invalid_topic_edit_is_refused_and_changes_nothing(kb_client, tmp_path, field, value, problem):
    before = (tmp_path / "policies" / "support.toml").read_text(encoding="utf-8")
    form = topic_form(kb_client, "support.loan")
    form[field] = value
    resp = kb_client.post("/admin/knowledge/support.loan", data=form)
    assert resp.status_code == 400 and problem in resp.get_data(as_text=True)
    assert (tmp_path / "policies" / "support.toml").read_text(encoding="utf-8") == before
    assert not (tmp_path / "backups").exists() or not list((tmp_path / "backups" / "policies").glob("*.toml"))


def test_unanswered_question_added_as_example_is_matched_at_once(kb_client, tmp_path):
    question = "缺本钱能找政府借点不"
    first = Chat(kb_client, "o-shop").say(question)
    Chat(kb_client, "o-shop-b").say(question)
    d = database(kb_client.application)
    ids = [r["id"] for r in d.query("SELECT id FROM unanswered WHERE question = ?", [question])]
    page = kb_client.get("/admin/unanswered").get_data(as_text=True)
    assert question + "</span> <b class=\"count\">×2</b>" in page  # repeats are one item
    done = kb_client.post("/admin/unanswered/add-example", follow_redirects=True,
                          data={"id": ids, "topic": "support.loan", "csrf_token": csrf_from(page)})
    assert "立即生效" in done.get_data(as_text=True), done.get_data(as_text=True)
    assert question in (tmp_path / "policies" / "support.toml").read_text(encoding="utf-8")
    assert question not in kb_client.get("/admin/unanswered").get_data(as_text=True)
    again = Chat(kb_client, "o-shop2").say(question)
    assert again != first and "小额贴息贷款" in again
    rows = d.query("SELECT status FROM unanswered WHERE question = ?", [question])
    assert {r["status"] for r in rows} == {"added"}


# --- announcements ------------------------------------------------------------------------


def wait_for_job(client, announcement_id: int, statuses=("done", "cancelled")) -> dict:
    """Poll the progress endpoint as the page does until the job settles."""
    import time
    deadline = time.monotonic() + 20
    while True:
        progress = client.get(f"/admin/api/announcements/{announcement_id}/progress").get_json()
        if progress["status"] in statuses or time.monotonic() > deadline:
            return progress
        time.sleep(0.05)


def compose(client, **fields) -> str:
    token = page_token(client, "/admin/announcements")
    data = {"text": "培训报名开始了", "url": "", "audience": "all", "csrf_token": token, **fields}
    return client.post("/admin/announcements/preview", data=data).get_data(as_text=True)


def confirm(client, preview_html: str):
    import html as html_lib
    fields = {k: html_lib.unescape(v) for k, v in
              re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"', preview_html)}
    return client.post("/admin/announcements", data=fields)


def test_announcement_preview_send_progress_and_simulator(app, staff_client):
    for openid in ("o-a", "o-b", "o-c"):
        Chat(staff_client, openid).event("subscribe")
    preview = compose(staff_client, text="12月8日茶叶培训开班，请准时参加。", url="https://example.org/n/1")
    assert 'id="audience-count">3<' in preview
    assert "12月8日茶叶培训开班，请准时参加。\nhttps://example.org/n/1" in preview
    assert database(app)["announcements"].count == 0  # a preview sends nothing
    resp = confirm(staff_client, preview)
    assert resp.status_code == 302
    announcement_id = int(resp.headers["Location"].rsplit("/", 1)[1])
    progress = wait_for_job(staff_client, announcement_id)
    assert progress["status"] == "done" and progress["delivered"] == progress["total"] == 3
    for openid in ("o-a", "o-b", "o-c"):
        inbox = staff_client.get(f"/simulator/api/inbox?openid={openid}").get_json()["messages"]
        assert [m["text"] for m in inbox] == ["12月8日茶叶培训开班，请准时参加。\nhttps://example.org/n/1"]
    page = staff_client.get(f"/admin/announcements/{announcement_id}").get_data(as_text=True)
    assert page.count("已送达") >= 3 and "已完成" in page
    assert "发送通知" in staff_client.get("/admin/audit").get_data(as_text=True)


@pytest.mark.parametrize("fields,message", [
    ({"text": " "}, "请填写通知内容"),
    ({"url": "javascript:alert(1)"}, "链接应以"),
    ({"text": "长" * 601}, "600 字以内"),
])
def test_bad_announcements_are_refused_before_preview(staff_client, fields, message):
    html = compose(staff_client, **fields)
    assert message in html and "确认发送" not in html


def test_empty_audience_cannot_be_sent(staff_client):
    html = compose(staff_client, audience="loan")
    assert 'id="audience-count">0<' in html and "确认发送" not in html


def test_failed_recipients_are_shown_and_retried(tmp_path, wechat_api):
    from tests.conftest import create_app
    from tests.fake_wechat import CUSTOM
    app = create_app(make_settings(tmp_path, wechat={"app_secret": "s3cret", "api_base_url": wechat_api.url},
                                   push={"template_id": "TPL-1", "rate_per_second": 0.0}))
    client = app.test_client()
    add_staff(app)
    sign_in(client)
    for openid in ("o-ok", "o-bad"):
        Chat(client, openid).say("你好")
    wechat_api.fail(CUSTOM, 40003, times=1)
    resp = confirm(client, compose(client, text="贷款政策有更新"))
    announcement_id = int(resp.headers["Location"].rsplit("/", 1)[1])
    progress = wait_for_job(client, announcement_id)
    assert (progress["delivered"], progress["failed"]) == (1, 1)
    page = client.get(f"/admin/announcements/{announcement_id}?status=failed").get_data(as_text=True)
    assert "40003" in page and "重试失败的" in page
    client.post(f"/admin/announcements/{announcement_id}/retry", data={"csrf_token": csrf_from(page)})
    progress = wait_for_job(client, announcement_id)
    assert (progress["delivered"], progress["failed"]) == (2, 0)
    # The refused recipient was tried twice, the other one once: nobody got it twice.
    calls = Counter(c["json"]["touser"] for c in wechat_api.calls_to(CUSTOM))
    assert sorted(calls.values()) == [1, 2] and set(calls) == {"o-ok", "o-bad"}
    app.extensions["bot"].close()


def test_cancel_stops_a_queued_announcement(app, staff_client):
    from bot.push import announcements
    Chat(staff_client, "o-a").event("subscribe")
    d = database(app)
    announcement_id = announcements.create_announcement(d, "明天停电", "", "all", "wang")
    announcements.start_job(d, announcement_id)  # queued, no sender started yet
    page = staff_client.get(f"/admin/announcements/{announcement_id}").get_data(as_text=True)
    assert "排队中" in page and "取消发送" in page
    staff_client.post(f"/admin/announcements/{announcement_id}/cancel", data={"csrf_token": csrf_from(page)})
    progress = staff_client.get(f"/admin/api/announcements/{announcement_id}/progress").get_json()
    assert progress["status"] == "cancelled" and progress["delivered"] == 0
    assert "取消通知" in staff_client.get("/admin/audit").get_data(as_text=True)


# --- applications ----------------------------------------------------------------------


@pytest.fixture
def reg_client(tmp_path):
    """A signed-in client on an app with the registration tests' courses."""
    from tests.conftest import create_app
    from tests.test_registration import COURSES
    app = create_app(make_settings(tmp_path, courses=COURSES))
    yield signed_in(app)
    app.extensions["bot"].close()


def apply_both(client) -> tuple[str, str]:
    """A training registration and a loan application, made through the chat."""
    from tests.test_registration import (
        DK,
        LOAN_TO_SUMMARY,
        PX,
        TRAINING_TO_SUMMARY,
        converse,
    )
    training = Chat(client, "o-zhang")
    converse(training, TRAINING_TO_SUMMARY)
    px = PX.search(training.say("确认")).group()
    loan = Chat(client, "o-li")
    converse(loan, LOAN_TO_SUMMARY)
    dk = DK.search(loan.say("确认")).group()
    return px, dk


def test_applications_are_listed_masked_filtered_and_searched(reg_client):
    from tests.test_registration import ID, PHONE
    px, dk = apply_both(reg_client)
    page = reg_client.get("/admin/applications").get_data(as_text=True)
    assert px in page and dk in page
    assert "138****5678" in page and PHONE not in page and ID not in page
    only_loans = reg_client.get("/admin/applications?type=loan").get_data(as_text=True)
    assert dk in only_loans and px not in only_loans and "3.5万元" in only_loans
    by_course = reg_client.get("/admin/applications?course=veg").get_data(as_text=True)
    assert px in by_course and dk not in by_course
    by_township = reg_client.get("/admin/applications?township=青山乡").get_data(as_text=True)
    assert dk in by_township and px not in by_township
    by_name = reg_client.get("/admin/applications?q=张三").get_data(as_text=True)
    assert px in by_name and dk not in by_name
    by_ref = reg_client.get(f"/admin/applications?q={dk[-4:]}").get_data(as_text=True)
    assert dk in by_ref
    tomorrow = reg_client.get("/admin/applications?since=2999-01-01").get_data(as_text=True)
    assert px not in tomorrow and "没有符合条件的申请" in tomorrow
    overview = reg_client.get("/admin/").get_data(as_text=True)
    assert "高山蔬菜" in overview and "已提交" in overview and "共 2 份" in overview


def test_status_change_is_recorded_and_the_applicant_is_told(reg_client):
    px, _ = apply_both(reg_client)
    detail = reg_client.get(f"/admin/applications/{px}").get_data(as_text=True)
    assert "张三" in detail and "1101**********002X" in detail
    # The workflow goes through review first (tests/test_workflow.py has the rules).
    reg_client.post(f"/admin/applications/{px}/status", data={
        "status": "审核中", "note": "", "csrf_token": csrf_from(detail)})
    reg_client.post(f"/admin/applications/{px}/status", data={
        "status": "已通过", "note": "请12月15日带身份证到青山乡农技站报到", "csrf_token": csrf_from(detail)})
    inbox = reg_client.get("/simulator/api/inbox?openid=o-zhang").get_json()["messages"]
    assert len(inbox) == 2
    assert px in inbox[-1]["text"] and "已通过" in inbox[-1]["text"]
    assert "请12月15日带身份证到青山乡农技站报到" in inbox[-1]["text"]
    row = applications.get_application(database(reg_client.application), px)
    assert row["status"] == "已通过"
    assert [(h["status"], h["actor"]) for h in row["history"]][-1] == ("已通过", "wang")
    detail = reg_client.get(f"/admin/applications/{px}").get_data(as_text=True)
    assert detail.count("已通过") >= 2
    assert f"{px} → 已通过" in reg_client.get("/admin/audit").get_data(as_text=True)
    status_reply = Chat(reg_client, "o-zhang").say("查询进度")
    assert "已通过" in status_reply


def test_loan_details_read_in_chinese(reg_client):
    _, dk = apply_both(reg_client)
    detail = reg_client.get(f"/admin/applications/{dk}").get_data(as_text=True)
    assert "贷款申请" in detail and "扩建茶厂" in detail and "已经在经营" in detail
    assert "running" not in detail


def test_an_application_links_to_its_applicants_page_by_name(reg_client):
    px, _ = apply_both(reg_client)
    detail = reg_client.get(f"/admin/applications/{px}").get_data(as_text=True)
    assert '<a href="/admin/people/o-zhang">张三</a>' in detail


def test_unknown_status_is_refused_and_nobody_is_told(reg_client):
    px, _ = apply_both(reg_client)
    token = page_token(reg_client, f"/admin/applications/{px}")
    reg_client.post(f"/admin/applications/{px}/status", data={"status": "随便", "csrf_token": token})
    assert applications.get_application(database(reg_client.application), px)["status"] == "已提交"
    assert reg_client.get("/simulator/api/inbox?openid=o-zhang").get_json()["messages"] == []


@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
def test_export_downloads_every_application_and_is_audited(reg_client, fmt):
    from tests.test_registration import PHONE
    px, dk = apply_both(reg_client)
    resp = reg_client.get(f"/admin/applications/export?format={fmt}")
    assert resp.status_code == 200 and f".{fmt}" in resp.headers["Content-Disposition"]
    if fmt == "csv":
        text = resp.get_data().decode("utf-8-sig")
        assert px in text and dk in text and PHONE in text
    else:
        import io

        from openpyxl import load_workbook
        sheet = load_workbook(io.BytesIO(resp.get_data())).active
        refs = [row[0].value for row in sheet.iter_rows(min_row=2)]
        assert sorted(refs) == sorted([px, dk])
    assert "导出申请" in reg_client.get("/admin/audit").get_data(as_text=True)


# --- synonyms ------------------------------------------------------------------------


def synonyms_form(client) -> dict[str, str]:
    import html as html_lib
    page = client.get("/admin/knowledge/synonyms").get_data(as_text=True)
    text = re.search(r'<textarea name="synonyms"[^>]*>(.*?)</textarea>', page, re.S).group(1)
    return {"synonyms": html_lib.unescape(text), "csrf_token": csrf_from(page)}


def test_new_dialect_word_is_understood_at_once_and_file_keeps_its_comments(kb_client, tmp_path):
    file = tmp_path / "policies" / "synonyms.toml"
    before = file.read_text(encoding="utf-8")
    library = kb_client.application.extensions["bot"].library
    assert library.match("学本事要钱不").band != "answer"
    form = synonyms_form(kb_client)
    assert "贷款 = 借钱" in form["synonyms"]
    form["synonyms"] = form["synonyms"].replace("培训 = 学手艺", "培训 = 学本事，学手艺")
    assert kb_client.post("/admin/knowledge/synonyms", data=form).status_code == 302
    after = file.read_text(encoding="utf-8")
    assert '"学本事"' in after
    assert [line for line in after.splitlines() if line.startswith("#")] == \
        [line for line in before.splitlines() if line.startswith("#")]
    assert list((tmp_path / "backups" / "policies").glob("synonyms.*.toml"))
    assert library.match("学本事要钱不").topic_id == "support.training"
    assert "编辑同义词" in kb_client.get("/admin/audit").get_data(as_text=True)


@pytest.mark.parametrize("text,problem", [
    ("贷款 借钱", "第 1 行"),
    ("贷款 = 借钱\n培训 = 借钱", "同时是"),
    ("贷款 = 借钱\n贷款 = 代款", "重复"),
])
def test_bad_synonyms_are_refused_and_nothing_changes(kb_client, tmp_path, text, problem):
    file = tmp_path / "policies" / "synonyms.toml"
    before = file.read_text(encoding="utf-8")
    form = synonyms_form(kb_client)
    form["synonyms"] = text
    resp = kb_client.post("/admin/knowledge/synonyms", data=form)
    assert resp.status_code == 400 and problem in resp.get_data(as_text=True)
    assert file.read_text(encoding="utf-8") == before



# --- what staff see: paging, next=, HTTPS --------------------------------------------


@pytest.mark.parametrize("path", ["/admin/applications", "/admin/audit", "/admin/unanswered"])
@pytest.mark.parametrize("page", ["1e30", "-5", "0", "abc", "9" * 30, "²", "1" * 5000])
def test_garbage_page_numbers_show_the_first_page(staff_client, path, page):
    resp = staff_client.get(path, query_string={"page": page})
    assert resp.status_code == 200


@pytest.mark.parametrize("target", ["/admin/audit\r\nSet-Cookie: x=1", "/admin/\n", "//evil.example/",
                                    "\\\\evil.example", "/\\evil.example", "/admin//evil.example",
                                    "/admin/\t/evil.example", "https://evil.example/admin/"])
def test_sign_in_never_follows_next_off_the_console(app, client, target):
    add_staff(app)
    resp = sign_in(client, next_url=target)
    assert resp.status_code == 302
    assert resp.headers["Location"] in ("/admin/", "http://localhost/admin/")


def test_https_gets_a_secure_cookie_and_hsts(tmp_path):
    from tests.conftest import create_app
    plain = create_app(make_settings(tmp_path / "a"))
    add_staff(plain)
    resp = sign_in(plain.test_client())
    assert "Secure" not in resp.headers["Set-Cookie"] and "Strict-Transport-Security" not in resp.headers
    plain.extensions["bot"].close()
    https = create_app(make_settings(tmp_path / "b", console={"https": True}))
    add_staff(https)
    resp = sign_in(https.test_client())
    assert "Secure" in resp.headers["Set-Cookie"] and "max-age" in resp.headers["Strict-Transport-Security"]
    https.extensions["bot"].close()


def test_only_the_trusted_proxy_is_believed(tmp_path):
    from tests.conftest import create_app
    app = create_app(make_settings(tmp_path, console={"trusted_proxy": "10.0.0.1"}))
    add_staff(app)
    forwarded = {"X-Forwarded-For": "6.6.6.6, 198.51.100.7", "X-Forwarded-Proto": "https"}
    via_proxy, direct = client_from(app, "10.0.0.1"), client_from(app, "203.0.113.5")
    via_proxy.environ_base.update({"HTTP_" + k.upper().replace("-", "_"): v for k, v in forwarded.items()})
    direct.environ_base.update({"HTTP_" + k.upper().replace("-", "_"): v for k, v in forwarded.items()})
    proxied = sign_in(via_proxy, password="wrong")
    assert "Strict-Transport-Security" in proxied.headers
    forged = sign_in(direct, password="wrong")
    assert "Strict-Transport-Security" not in forged.headers
    # The proxy appends the address it saw; the hop before it was typed by the client.
    details = [e["detail"] for e in staff.audit_entries(database(app)) if e["action"] == "登录失败"]
    assert details == ["来自 203.0.113.5", "来自 198.51.100.7"]
    app.extensions["bot"].close()


def test_unanswered_page_counts_and_pages_through_every_open_question(app, staff_client):
    d = database(app)
    for n in range(1203):
        messages.record_unanswered(d, f"o-{n}", f"第{n}号问题{'甲乙丙丁戊己庚辛'[n % 8] * (n % 7)}",
                                   "unknown", None, 10.0)
    d.conn.execute("UPDATE unanswered SET created_at = 1000 + id")
    d.conn.commit()
    first = staff_client.get("/admin/unanswered").get_data(as_text=True)
    assert "1203 条待处理" in first and "第 1 / 3 页" in first and "第1202号问题" in first
    assert "第0号问题" not in first and "page=2" in first
    last = staff_client.get("/admin/unanswered?page=3").get_data(as_text=True)
    assert "第0号问题" in last and "第1202号问题" not in last and "page=2" in last
    overview = staff_client.get("/admin/").get_data(as_text=True)
    assert "1203" in overview


def selected_topic(page: str, question: str) -> str:
    """The value of the option selected in the topic select of a question's item."""
    item = page[page.index(f'<span class="text">{question}</span>'):]
    select = item[:item.index("</select>")]
    found = re.search(r'<option value="([^"]*)" selected>', select)
    return found.group(1) if found else ""


def test_a_guess_the_matcher_did_not_offer_is_not_preselected(app, staff_client):
    d = database(app)
    messages.record_unanswered(d, "o-1", "医保怎么交", "unknown", "encourage.cadres", 32.0)
    messages.record_unanswered(d, "o-2", "开个小店有补贴吗", "suggest", "support.loan", 62.0)
    page = staff_client.get("/admin/unanswered").get_data(as_text=True)
    assert selected_topic(page, "医保怎么交") == ""
    assert selected_topic(page, "开个小店有补贴吗") == "support.loan"
    assert "请选择" in page and "（encourage.cadres）" not in page


def test_example_that_would_break_policies_check_is_refused_in_plain_chinese(kb_client, tmp_path):
    question = "做生意缺本钱政府能帮不"  # policies check: it looks more like the premises topic
    Chat(kb_client, "o-shop").say(question)
    before = (tmp_path / "policies" / "support.toml").read_text(encoding="utf-8")
    page = kb_client.get("/admin/unanswered").get_data(as_text=True)
    ids = [r["id"] for r in database(kb_client.application).query("SELECT id FROM unanswered")]
    done = kb_client.post("/admin/unanswered/add-example", follow_redirects=True,
                          data={"id": ids, "topic": "support.loan", "csrf_token": csrf_from(page)})
    flash = re.search(r'class="flash[^"]*">([^<]*)<', done.get_data(as_text=True)).group(1)
    assert "没有加入" in flash and "放宽经营场所" in flash
    assert not re.search(r"[a-z]+\.[a-z-]+", flash)  # no topic ids
    assert (tmp_path / "policies" / "support.toml").read_text(encoding="utf-8") == before
    assert question in kb_client.get("/admin/unanswered").get_data(as_text=True)
