"""Announcements and push jobs through the fake WeChat API (and the demo inbox)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner

from bot import create_app
from bot.cli import cli
from bot.push import announcements, courier, runner
from bot.push.runner import PushSender as Sender
from bot.storage import engine, push
from tests import wx
from tests.conftest import ROOT, make_settings, wait_for
from tests.fake_wechat import CUSTOM, MASS, TEMPLATE

HOUR = 3600.0


def make_runtime(tmp_path: Path, api=None, **push) -> Sender:
    """A sender with the API client pointed at the fake (demo mode without api)."""
    wechat = {"app_secret": "s3cret", "api_base_url": api.url} if api else {}
    settings = make_settings(tmp_path, wechat=wechat,
                             push={"template_id": "TPL-1", "rate_per_second": 0.0, **push})
    return Sender(settings)


def add_subscribers(runtime: Sender, seen_hours_ago: dict[str, float | None],
                    subscribed: int = 1) -> None:
    """Subscribers last seen that many hours ago (None: never wrote to us)."""
    database = runtime.open_db()
    now = time.time()
    database["subscribers"].insert_all(
        [{"openid": o, "subscribed": subscribed, "subscribed_at": now - 1000 * HOUR,
          "last_seen_at": None if h is None else now - h * HOUR} for o, h in seen_hours_ago.items()])
    database.close()


def add_applications(runtime: Sender, rows: list[dict]) -> None:
    """Application rows as the registration forms store them (type, course_id, township, status)."""
    database = runtime.open_db()
    now = time.time()
    database["applications"].insert_all(
        [{"ref": f"T{i}", "created_at": now, "updated_at": now, "status": "已提交", **r}
         for i, r in enumerate(rows)])
    database.close()


def new_job(database, text: str = "x", url: str = "", audience: str = "all") -> int:
    """A queued push job for a new announcement; returns its id."""
    return announcements.start_job(
        database, announcements.create_announcement(database, text, url, audience, "test"))


def announce(runtime: Sender, text: str = "培训报名开始了", url: str = "", audience: str = "all",
             **options) -> dict:
    """Create an announcement, send it to the end, return the job's progress."""
    database = runtime.open_db()
    job_id = new_job(database, text, url, audience)
    database.close()
    return runner.run_job(runtime, job_id, backoff=0.01, **options)


def received(api) -> Counter:
    return Counter(d["openid"] for d in api.deliveries)


# --- delivery channels ---------------------------------------------------------------


def test_recent_users_get_customer_service_messages_others_a_template(tmp_path, wechat_api):
    runtime = make_runtime(tmp_path, wechat_api)
    add_subscribers(runtime, {"o-recent": 2, "o-yesterday": 47, "o-old": 49, "o-silent": None})
    result = announce(runtime, "贷款政策有更新", url="https://example.org/n/1")
    assert result["status"] == "done"
    assert (result["total"], result["delivered"], result["failed"], result["pending"]) == (4, 4, 0, 0)
    assert result["by_channel"] == {"custom": 2, "template": 2}
    channels = {d["openid"]: d["channel"] for d in wechat_api.deliveries}
    assert channels == {"o-recent": "custom", "o-yesterday": "custom",
                        "o-old": "template", "o-silent": "template"}
    custom = wechat_api.calls_to(CUSTOM)[0]["json"]
    assert custom["text"]["content"] == "贷款政策有更新\nhttps://example.org/n/1"
    template = wechat_api.calls_to(TEMPLATE)[0]["json"]
    assert template["template_id"] == "TPL-1" and template["url"] == "https://example.org/n/1"
    assert template["data"]["content"]["value"] == "贷款政策有更新"


def test_out_of_window_answer_falls_back_to_the_template(tmp_path, wechat_api):
    runtime = make_runtime(tmp_path, wechat_api)
    add_subscribers(runtime, {"o-1": 1, "o-2": 1})
    wechat_api.out_of_window.add("o-2")  # WeChat disagrees with our last_seen_at
    result = announce(runtime)
    assert result["delivered"] == 2 and result["by_channel"] == {"custom": 1, "template": 1}
    assert [d["channel"] for d in wechat_api.received("o-2")] == ["template"]
    assert announcements.quota_status(runtime.open_db(), runtime.settings.push)["used"] == 1


def test_mass_fallback_tags_the_users_and_sends_to_the_tag(tmp_path, wechat_api):
    runtime = make_runtime(tmp_path, wechat_api, fallback_channel="mass")
    add_subscribers(runtime, {"o-recent": 1, **{f"o-old-{i:02}": 100 for i in range(60)}})
    result = announce(runtime, "县里新开电商培训")
    assert result["status"] == "done" and result["delivered"] == 61
    assert result["by_channel"] == {"custom": 1, "mass": 60}
    tagging = wechat_api.calls_to("/cgi-bin/tags/members/batchtagging")
    assert [len(c["json"]["openid_list"]) for c in tagging] == [50, 10]  # WeChat takes 50 a call
    (mass,) = wechat_api.calls_to(MASS)
    assert mass["json"]["filter"] == {"is_to_all": False, "tag_id": tagging[0]["json"]["tagid"]}
    assert mass["json"]["msgtype"] == "text" and mass["json"]["text"]["content"] == "县里新开电商培训"
    assert mass["json"]["clientmsgid"]
    assert received(wechat_api) == Counter({"o-recent": 1, **{f"o-old-{i:02}": 1 for i in range(60)}})
    assert "o-recent" not in wechat_api.tags[tagging[0]["json"]["tagid"]]["users"]


def test_a_used_up_customer_service_quota_falls_back_to_the_template(tmp_path, wechat_api):
    runtime = make_runtime(tmp_path, wechat_api)
    add_subscribers(runtime, {"o-1": 1, "o-2": 1})
    wechat_api.fail(CUSTOM, 45047)  # o-1 has had too many customer-service messages
    result = announce(runtime, senders=1)
    assert (result["delivered"], result["failed"], result["status"]) == (2, 0, "done")
    assert [d["channel"] for d in wechat_api.received("o-1")] == ["template"]
    assert [c["json"]["touser"] for c in wechat_api.calls_to(CUSTOM)] == ["o-1", "o-2"]


def test_unsubscribed_user_fails_with_43004_and_is_marked(tmp_path, wechat_api):
    runtime = make_runtime(tmp_path, wechat_api)
    add_subscribers(runtime, {"o-1": 1, "o-gone": 1, "o-3": 1})
    wechat_api.unsubscribed.add("o-gone")
    result = announce(runtime)
    assert (result["delivered"], result["failed"], result["status"]) == (2, 1, "done")
    (failed,) = announcements.job_recipients(runtime.open_db(), result["job_id"], "failed")
    assert (failed["openid"], failed["errcode"]) == ("o-gone", 43004)
    assert runtime.open_db()["subscribers"].get("o-gone")["subscribed"] == 0


@pytest.mark.parametrize("errcode", [45009, -1])
def test_rate_limits_back_off_and_retry(tmp_path, wechat_api, errcode):
    runtime = make_runtime(tmp_path, wechat_api)
    add_subscribers(runtime, {"o-1": 1, "o-2": 1, "o-3": 1})
    wechat_api.fail(CUSTOM, errcode, times=2)
    result = announce(runtime, senders=1)
    assert (result["delivered"], result["failed"], result["status"]) == (3, 0, "done")
    assert received(wechat_api) == Counter({"o-1": 1, "o-2": 1, "o-3": 1})
    rows = announcements.job_recipients(runtime.open_db(), result["job_id"])
    attempts = {r["openid"]: r["attempts"] for r in rows}
    # o-1 and o-2 were refused once and retried after a pause; o-3 was not held up.
    assert attempts == {"o-1": 2, "o-2": 2, "o-3": 1}
    assert [c["json"]["touser"] for c in wechat_api.calls_to(CUSTOM)] == ["o-1", "o-2", "o-3", "o-1", "o-2"]


def test_other_errors_fail_the_recipient_and_the_job_carries_on(tmp_path, wechat_api):
    runtime = make_runtime(tmp_path, wechat_api)
    add_subscribers(runtime, {"o-1": 1, "o-2": 1})
    wechat_api.fail(CUSTOM, 40003)
    result = announce(runtime, senders=1)
    assert (result["delivered"], result["failed"]) == (1, 1)
    database = runtime.open_db()
    assert announcements.retry_failed(database, result["job_id"]) == 1
    again = runner.run_job(runtime, result["job_id"])
    assert (again["delivered"], again["failed"], again["status"]) == (2, 0, "done")
    assert received(wechat_api) == Counter({"o-1": 1, "o-2": 1})


def test_daily_quota_defers_the_rest_to_tomorrow(tmp_path, wechat_api):
    runtime = make_runtime(tmp_path, wechat_api, daily_quota=2)
    add_subscribers(runtime, {"o-recent": 1, **{f"o-old-{i}": 100 for i in range(5)}})
    result = announce(runtime)
    assert (result["delivered"], result["pending"], result["status"]) == (3, 3, "waiting")
    assert len(wechat_api.calls_to(TEMPLATE)) == 2  # customer-service sends do not count
    quota = announcements.quota_status(runtime.open_db(), runtime.settings.push)
    assert (quota["used"], quota["limit"], quota["remaining"]) == (2, 2, 0)


def test_quota_counts_a_mass_batch_per_recipient(tmp_path, wechat_api):
    runtime = make_runtime(tmp_path, wechat_api, fallback_channel="mass", daily_quota=3)
    add_subscribers(runtime, {f"o-old-{i}": 100 for i in range(5)})
    result = announce(runtime)
    assert (result["delivered"], result["pending"], result["status"]) == (3, 2, "waiting")
    assert len(wechat_api.deliveries) == 3


def test_cancel_stops_a_job_before_it_sends(tmp_path, wechat_api):
    runtime = make_runtime(tmp_path, wechat_api)
    add_subscribers(runtime, {"o-1": 1, "o-2": 1})
    database = runtime.open_db()
    job_id = new_job(database)
    assert announcements.cancel_job(database, job_id)
    result = runner.run_job(runtime, job_id)
    assert (result["status"], result["cancelled"], result["ran"]) == ("cancelled", 2, False)
    assert wechat_api.deliveries == []
    assert announcements.list_recent_announcements(database) == []


def test_two_runners_on_one_job_send_each_message_once(tmp_path, wechat_api):
    import threading
    runtime = make_runtime(tmp_path, wechat_api)
    add_subscribers(runtime, {f"o-{i}": 1 for i in range(40)})
    database = runtime.open_db()
    job_id = new_job(database)
    threads = [threading.Thread(target=runner.run_job, args=(runtime, job_id)) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert announcements.job_progress(database, job_id)["delivered"] == 40
    assert received(wechat_api) == Counter({f"o-{i}": 1 for i in range(40)})


# --- audiences and the bot's "最新通知" -------------------------------------------------


def test_audiences_township_course_and_loan(tmp_path, wechat_api):
    runtime = make_runtime(tmp_path, wechat_api)
    add_subscribers(runtime, {"o-a": 1, "o-b": 1, "o-c": 1, "o-d": 1})
    add_subscribers(runtime, {"o-left": 1}, subscribed=0)
    add_applications(runtime, [
        {"openid": "o-a", "type": "training", "course_id": "tea", "township": "城关镇"},
        {"openid": "o-a", "type": "loan", "township": "城关镇"},
        {"openid": "o-b", "type": "training", "course_id": "veg", "township": "石桥镇", "status": "已通过"},
        {"openid": "o-c", "type": "loan", "township": "石桥镇"},
        {"openid": "o-d", "type": "loan", "township": "石桥镇", "status": "已取消"},
        {"openid": "o-left", "type": "loan", "township": "石桥镇"},
    ])
    database = runtime.open_db()
    assert announcements.audience_openids(database, "all") == ["o-a", "o-b", "o-c", "o-d"]
    assert announcements.audience_openids(database, "township:石桥镇") == ["o-b", "o-c"]
    assert announcements.audience_openids(database, "course:tea") == ["o-a"]
    assert announcements.audience_openids(database, "loan") == ["o-a", "o-c"]
    result = announce(runtime, "石桥镇通知", audience="township:石桥镇")
    assert result["total"] == 2 and set(received(wechat_api)) == {"o-b", "o-c"}
    with pytest.raises(ValueError):
        announcements.create_announcement(database, "x", "", "village:x", "t")


def test_applicant_audiences_are_empty_before_any_application(tmp_path):
    runtime = make_runtime(tmp_path)
    assert announcements.audience_openids(runtime.open_db(), "loan") == []


def test_recent_announcements_for_a_user(tmp_path, wechat_api):
    runtime = make_runtime(tmp_path, wechat_api)
    add_subscribers(runtime, {"o-a": 1, "o-b": 1})
    add_applications(runtime, [{"openid": "o-a", "type": "loan", "township": "城关镇"}])
    announce(runtime, "全体通知")
    announce(runtime, "贷款通知", audience="loan")
    database = runtime.open_db()
    def texts(openid=None):
        return [a["text"] for a in announcements.list_recent_announcements(database, 5, openid)]
    assert texts() == texts("o-a") == ["贷款通知", "全体通知"]
    assert texts("o-b") == ["全体通知"]


# --- WeChat's reports and the mass batches' tags ----------------------------------------


def serving_app(tmp_path: Path, api, **push):
    """The web app (webhook included) with the API client pointed at the fake."""
    settings = make_settings(tmp_path, wechat={"app_secret": "s3cret", "api_base_url": api.url},
                             push={"template_id": "TPL-1", "rate_per_second": 0.0, **push})
    app = create_app(settings)
    return app, app.test_client(), app.extensions["bot"]


def report(client, event: str, openid: str = "o-account", **fields: str) -> bytes:
    """Post one of WeChat's *SENDJOBFINISH events to the webhook; returns the reply body."""
    xml = wx.message_xml(openid, "event", Event=event, **fields)
    response = client.post("/wechat?" + wx.query(), data=xml.encode("utf-8"), content_type="text/xml")
    assert response.status_code == 200
    return response.data


def test_template_reports_show_who_really_got_the_announcement(tmp_path, wechat_api):
    app, client, runtime = serving_app(tmp_path, wechat_api)
    add_subscribers(runtime, {"o-recent": 1, "o-old": 100, "o-blocked": 100})
    result = announce(runtime)
    # WeChat took all three, but only the customer-service message is known to have arrived.
    assert (result["delivered"], result["confirmed"], result["not_received"]) == (3, 1, 0)
    msgids = {d["openid"]: d["msgid"] for d in wechat_api.deliveries if d["channel"] == "template"}
    assert report(client, "TEMPLATESENDJOBFINISH", "o-old", MsgID=str(msgids["o-old"]),
                  Status="success") == b"success"
    assert report(client, "TEMPLATESENDJOBFINISH", "o-blocked", MsgID=str(msgids["o-blocked"]),
                  Status="failed:user block") == b"success"
    assert report(client, "TEMPLATESENDJOBFINISH", "o-x", MsgID="999999", Status="success") == b"success"
    progress = announcements.job_progress(runtime.open_db(), result["job_id"])
    assert (progress["delivered"], progress["confirmed"], progress["not_received"]) == (3, 2, 1)
    runtime.close()


def test_mass_report_counts_the_users_reached(tmp_path, wechat_api):
    app, client, runtime = serving_app(tmp_path, wechat_api, fallback_channel="mass")
    add_subscribers(runtime, {f"o-old-{i}": 100 for i in range(3)})
    result = announce(runtime)
    assert (result["delivered"], result["confirmed"]) == (3, 0)
    (msg_id,) = {d["msg_id"] for d in wechat_api.deliveries}
    assert report(client, "MASSSENDJOBFINISH", MsgID=str(msg_id), Status="sendsuccess",
                  TotalCount="3", FilterCount="3", SentCount="2", ErrorCount="1") == b"success"
    progress = announcements.job_progress(runtime.open_db(), result["job_id"])
    assert (progress["confirmed"], progress["not_received"]) == (2, 1)
    runtime.close()


def test_only_our_tags_are_deleted_and_only_after_their_send_finished(tmp_path, wechat_api):
    app, client, runtime = serving_app(tmp_path, wechat_api, fallback_channel="mass")
    wechat_api.tags[1] = {"name": "cyt培训学员", "users": {"o-picked"}}  # made by staff by hand
    add_subscribers(runtime, {"o-old-1": 100, "o-old-2": 100})

    def tag_names():
        return {t["name"] for t in wechat_api.tags.values()}

    announce(runtime, "第一条")
    (first_tag,) = tag_names() - {"cyt培训学员"}
    announce(runtime, "第二条")
    # WeChat has not reported the first send finished: its tag stays, as does the staff's.
    assert {"cyt培训学员", first_tag} < tag_names() and len(tag_names()) == 3
    first_msg = wechat_api.deliveries[0]["msg_id"]
    report(client, "MASSSENDJOBFINISH", MsgID=str(first_msg), Status="sendsuccess",
           TotalCount="2", FilterCount="2", SentCount="2", ErrorCount="0")
    announce(runtime, "第三条")
    assert first_tag not in tag_names() and "cyt培训学员" in tag_names() and len(tag_names()) == 3
    runtime.close()


# --- demo mode -------------------------------------------------------------------------


def test_demo_mode_puts_the_announcement_on_the_simulated_phone(tmp_path):
    settings = make_settings(tmp_path)
    app = create_app(settings)
    client = app.test_client()
    client.post("/simulator/api/send", json={"openid": "o-phone", "text": "菜单"})
    runtime = app.extensions["bot"]
    database = runtime.open_db()
    job_id = announcements.start_job(database, announcements.create_announcement(
        database, "明天上午九点开班", "https://example.org", "all", "test"))
    result = runner.run_job(runtime, job_id)
    assert (result["delivered"], result["by_channel"]) == (1, {"simulator": 1})
    inbox = client.get("/simulator/api/inbox?openid=o-phone&after=0").get_json()["messages"]
    assert [m["text"] for m in inbox] == ["明天上午九点开班\nhttps://example.org"]
    runtime.close()


def test_notify_goes_through_the_outbox(tmp_path):
    runtime = create_app(make_settings(tmp_path)).extensions["bot"]
    database = runtime.open_db()
    courier.notify(database, "o-1", "您的贷款申请已通过")
    assert runtime.deliver_pending() == 1
    assert [m["text"] for m in push.inbox_since(database, "o-1", 0)] == ["您的贷款申请已通过"]
    runtime.close()


# --- the CLI and a crash ---------------------------------------------------------------


def write_config(tmp_path: Path, api_url: str | None, **push) -> Path:
    """A config file for the CLI, database in tmp_path, the fake API unless demo."""
    push = {"template_id": "TPL-1", "rate_per_second": 0.0, **push}
    lines = ["[wechat]", f"token = {json.dumps(wx.TOKEN)}", f"app_id = {json.dumps(wx.APP_ID)}",
             f"app_secret = {json.dumps('s3cret' if api_url else '')}"]
    if api_url:
        lines.append(f"api_base_url = {json.dumps(api_url)}")
    lines += ["[storage]", f"database = {json.dumps(str(tmp_path / 'bot.db'))}",
              "[matcher]", f"policies_dir = {json.dumps(str(ROOT / 'policies'))}",
              "[county]", 'townships = ["城关镇", "石桥镇"]',
              "[[courses]]", 'id = "tea"', 'name = "茶叶"', "[push]"]
    lines += [f"{k} = {json.dumps(v)}" for k, v in push.items()]
    lines += ["[[menu]]", 'name = "政策问答"', "[[menu.sub_buttons]]", 'name = "五个放宽"',
              'key = "MENU_RELAX"', "[[menu.sub_buttons]]", 'name = "官网"',
              'url = "https://example.org"', "[[menu]]", 'name = "转人工"', 'key = "MENU_HUMAN"']
    path = tmp_path / "config.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def cli_runtime(config: Path) -> Sender:
    from bot.settings import load_settings
    return Sender(load_settings(config))


def test_announce_cli_reports_delivered_and_each_failure(tmp_path, wechat_api):
    config = write_config(tmp_path, wechat_api.url)
    runtime = cli_runtime(config)
    add_subscribers(runtime, {"o-ok": 1, "o-old": 100, "o-gone": 1, "o-bad": 100})
    wechat_api.unsubscribed.add("o-gone")
    wechat_api.fail(TEMPLATE, 40003)  # the first template send (o-bad, by row order)
    result = CliRunner().invoke(cli, ["--config", str(config), "announce", "--text", "培训开班",
                                      "--url", "https://example.org"])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "共 4 人" in out and "送达 2 人（客服消息 1，模板消息 1）" in out and "失败 2 人" in out
    assert "o-gone  错误码 43004" in out
    failed_template = [c["json"]["touser"] for c in wechat_api.calls_to(TEMPLATE)][0]
    assert f"{failed_template}  错误码 40003" in out
    assert "进度 4/4" in out


@pytest.mark.parametrize("args,message", [
    (["--to", "township:火星镇"], "没有这个乡镇：火星镇"),
    (["--to", "course:nope"], "没有这个课程编号：nope"),
    (["--to", "village"], "--to 应为"),
    (["--text", "  "], "通知内容不能为空"),
])
def test_announce_cli_refuses_bad_input_clearly(tmp_path, args, message):
    config = write_config(tmp_path, None)
    result = CliRunner().invoke(cli, ["--config", str(config), "announce", "--text", "x", *args])
    assert result.exit_code != 0 and message in result.output
    database = tmp_path / "bot.db"
    assert not database.exists() or engine.connect(database)["announcements"].count == 0


def test_announce_no_wait_sends_in_the_background(tmp_path, wechat_api):
    config = write_config(tmp_path, wechat_api.url)
    runtime = cli_runtime(config)
    add_subscribers(runtime, {f"o-{i}": 1 for i in range(5)})
    result = CliRunner().invoke(cli, ["--config", str(config), "announce", "--text", "后台发送",
                                      "--no-wait"])
    assert result.exit_code == 0 and "已在后台发送" in result.output
    database = runtime.open_db()
    deadline = time.time() + 30
    while announcements.job_progress(database, 1)["status"] != "done" and time.time() < deadline:
        time.sleep(0.05)
    assert received(wechat_api) == Counter({f"o-{i}": 1 for i in range(5)})
    status = CliRunner().invoke(cli, ["--config", str(config), "outbox", "status", "1"])
    assert "送达 5 人" in status.output


@pytest.mark.parametrize("channel,path,held", [("template", CUSTOM, 4), ("mass", MASS, 1)])
def test_killed_job_resumes_and_no_one_gets_it_twice(tmp_path, wechat_api, channel, path, held):
    config = write_config(tmp_path, wechat_api.url, fallback_channel=channel)
    runtime = cli_runtime(config)
    openids = [f"o-{i:02}" for i in range(30)]
    add_subscribers(runtime, {o: (1 if i < 20 else 100) for i, o in enumerate(openids)})
    # Let 5 sends through, then keep the following in flight and kill the sender.
    wechat_api.hold(path, after=5 if path == CUSTOM else 0)
    proc = subprocess.Popen([sys.executable, "run.py", "--config", str(config), "announce",
                             "--text", "重要通知"], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert wait_for(lambda: wechat_api.held >= held, timeout=30.0)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    wechat_api.release()
    database = runtime.open_db()
    before = announcements.job_progress(database, 1)
    assert before["status"] == "running" and before["pending"] > 0
    result = CliRunner().invoke(cli, ["--config", str(config), "outbox", "drain"])
    assert result.exit_code == 0, result.output
    after = announcements.job_progress(database, 1)
    assert after["status"] == "done" and after["failed"] == 0
    # Every subscriber got the announcement exactly once, at the server.
    assert received(wechat_api) == Counter({o: 1 for o in openids})
    # The calls in flight at the kill are not repeated (custom) or repeated harmlessly (mass).
    if channel == "template":
        assert after["unknown"] == held and after["delivered"] == 30 - held
        assert "无法确认是否送达（未重发）4 人" in result.output
    else:
        assert after["delivered"] == 30 and after["by_channel"] == {"custom": 20, "mass": 10}
        assert len(wechat_api.calls_to(MASS)) == 2


def test_killed_template_sends_are_repeated_under_the_same_key(tmp_path, wechat_api):
    config = write_config(tmp_path, wechat_api.url)
    runtime = cli_runtime(config)
    openids = [f"o-{i:02}" for i in range(12)]
    add_subscribers(runtime, {o: 100 for o in openids})
    wechat_api.hold(TEMPLATE, after=5)  # 5 go through, the next ones stay in flight
    proc = subprocess.Popen([sys.executable, "run.py", "--config", str(config), "announce",
                             "--text", "重要通知"], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert wait_for(lambda: wechat_api.held >= 4, timeout=30.0)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    wechat_api.release()
    result = CliRunner().invoke(cli, ["--config", str(config), "outbox", "drain"])
    assert result.exit_code == 0, result.output
    after = announcements.job_progress(runtime.open_db(), 1)
    assert (after["status"], after["delivered"], after["unknown"]) == ("done", 12, 0)
    assert received(wechat_api) == Counter({o: 1 for o in openids})
    keys = [c["json"]["client_msg_id"] for c in wechat_api.calls_to(TEMPLATE)]
    assert len(keys) == 12 + 4 and len(set(keys)) == 12  # the 4 in flight went again, same keys


# --- custom menu ---------------------------------------------------------------------------


def test_menu_push_publishes_the_configured_menu(tmp_path, wechat_api):
    config = write_config(tmp_path, wechat_api.url)
    result = CliRunner().invoke(cli, ["--config", str(config), "menu", "push"])
    assert result.exit_code == 0, result.output
    assert "菜单已发布：2 个一级菜单，共 3 个按钮" in result.output
    (call,) = wechat_api.calls_to("/cgi-bin/menu/create")
    assert call["json"] == {"button": [
        {"name": "政策问答", "sub_button": [
            {"type": "click", "name": "五个放宽", "key": "MENU_RELAX"},
            {"type": "view", "name": "官网", "url": "https://example.org"}]},
        {"type": "click", "name": "转人工", "key": "MENU_HUMAN"}]}
    assert wechat_api.menu == call["json"]


def test_menu_push_reports_a_refusal(tmp_path, wechat_api):
    config = write_config(tmp_path, wechat_api.url)
    wechat_api.fail("/cgi-bin/menu/create", 40018)
    result = CliRunner().invoke(cli, ["--config", str(config), "menu", "push"])
    assert result.exit_code != 0 and "错误码 40018" in result.output


def test_menu_push_in_demo_mode_prints_and_sends_nothing(tmp_path, wechat_api):
    config = write_config(tmp_path, None)
    result = CliRunner().invoke(cli, ["--config", str(config), "menu", "push"])
    assert result.exit_code == 0 and "MENU_RELAX" in result.output and "演示模式" in result.output
    assert wechat_api.calls == []


def test_shipped_menu_is_valid_for_wechat():
    from bot.settings import load_settings
    from bot.wechat.client import menu_json
    body = menu_json(load_settings(ROOT / "config.toml").menu)
    keys = [s["key"] for b in body["button"] for s in b.get("sub_button", [b])]
    assert "MENU_NEWS" in keys and len(body["button"]) == 3


def test_a_wrong_app_secret_stops_the_job_with_one_token_request(tmp_path, wechat_api):
    config = write_config(tmp_path, wechat_api.url)
    runtime = cli_runtime(config)
    add_subscribers(runtime, {f"o-{i}": 1 for i in range(10)})
    wechat_api.fail("/cgi-bin/token", 40125)
    result = CliRunner().invoke(cli, ["--config", str(config), "announce", "--text", "x"])
    assert "无法发送：access token: errcode 40125" in result.output
    assert "还有 10 人稍后发送" in result.output
    assert len(wechat_api.calls) == 1
    # Once the secret is fixed, draining sends the job.
    drained = CliRunner().invoke(cli, ["--config", str(config), "outbox", "drain"])
    assert "送达 10 人" in drained.output and "无法发送" not in drained.output


def test_mass_send_limit_is_retried_then_given_up(tmp_path, wechat_api):
    runtime = make_runtime(tmp_path, wechat_api, fallback_channel="mass")
    add_subscribers(runtime, {"o-old-1": 100, "o-old-2": 100})
    wechat_api.fail(MASS, 45009, times=1)
    result = announce(runtime)
    assert (result["delivered"], result["status"]) == (2, "done")
    assert received(wechat_api) == Counter({"o-old-1": 1, "o-old-2": 1})
    wechat_api.fail(MASS, 45009, times=100)
    again = announce(runtime, "第二条")
    assert (again["failed"], again["status"]) == (2, "done")
    assert len(wechat_api.calls_to(MASS)) == 2 + runner.MAX_ATTEMPTS
    (failed, _) = announcements.job_recipients(runtime.open_db(), again["job_id"], "failed")
    assert failed["errcode"] == 45009


def test_runners_taking_over_expired_leases_never_send_twice(tmp_path, wechat_api):
    import threading
    runtime = make_runtime(tmp_path, wechat_api)
    openids = [f"o-{i:02}" for i in range(40)]
    add_subscribers(runtime, {o: 1 for o in openids})
    database = runtime.open_db()
    job_id = new_job(database)
    wechat_api.call_delay = 0.02  # slower than the leases below: runners keep losing the job

    def keep_trying():
        while runner.run_job(runtime, job_id, lease_seconds=0.01, senders=2)["pending"]:
            time.sleep(0.005)

    threads = [threading.Thread(target=keep_trying) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    progress = announcements.job_progress(database, job_id)
    assert max(received(wechat_api).values()) == 1
    assert progress["delivered"] + progress["unknown"] == 40
    assert progress["unknown"] > 0  # takeovers did happen mid-send
    delivered = announcements.job_recipients(database, job_id, "delivered")
    assert set(received(wechat_api)) >= {r["openid"] for r in delivered}
