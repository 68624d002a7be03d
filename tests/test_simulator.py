"""The simulator's own rules: where it exists, who may use it, what it refuses."""
from __future__ import annotations

import pytest

from bot.storage import engine, staff
from tests.conftest import create_app, make_settings
from tests.test_console import add_staff, sign_in

PATHS = ["/simulator", "/simulator/api/inbox?openid=o-1"]


@pytest.fixture
def production(tmp_path):
    """An app with a real app_secret; tables override the simulator settings."""
    apps = []

    def make(**simulator):
        app = create_app(make_settings(tmp_path, wechat={"app_secret": "real-secret"},
                                       simulator=simulator))
        apps.append(app)
        return app
    yield make
    for app in apps:
        app.extensions["bot"].close()


def send(client):
    return client.post("/simulator/api/send", json={"openid": "o-real", "text": "菜单"})


def test_with_an_app_secret_the_simulator_does_not_exist_unless_turned_on(production):
    client = production().test_client()
    for path in PATHS:
        assert client.get(path).status_code == 404
    assert send(client).status_code == 404


def test_turned_on_in_production_it_is_for_signed_in_staff_only(production):
    app = production(in_production=True)
    client = app.test_client()
    page = client.get("/simulator")
    assert page.status_code == 302 and "/admin/login" in page.headers["Location"]
    assert send(client).status_code == 401
    assert client.get(PATHS[1]).status_code == 401
    add_staff(app)
    assert sign_in(client).status_code == 302
    assert client.get("/simulator").status_code == 200
    assert "请回复数字选择" in send(client).get_json()["reply"]


def test_a_disabled_staff_account_loses_the_production_simulator_at_once(production):
    app = production(in_production=True)
    client = app.test_client()
    add_staff(app)
    assert sign_in(client).status_code == 302
    assert send(client).status_code == 200
    database = engine.connect(app.extensions["bot"].settings.storage.database)
    assert staff.set_staff_disabled(database, "wang", True)
    assert send(client).status_code == 401


def test_in_demo_mode_it_needs_no_sign_in(client):
    assert client.get("/simulator").status_code == 200
    assert send(client).status_code == 200


@pytest.mark.parametrize("after", ["1" + "0" * 30, "99999999999999999999999"])
def test_an_absurd_inbox_position_is_refused_not_a_crash(client, after):
    resp = client.get(f"/simulator/api/inbox?openid=o-1&after={after}")
    assert resp.status_code == 400 and "error" in resp.get_json()


def test_the_page_may_run_its_own_script_but_not_be_framed(client):
    policy = client.get("/simulator").headers["Content-Security-Policy"]
    assert "script-src 'self' 'unsafe-inline'" in policy and "frame-ancestors 'none'" in policy
