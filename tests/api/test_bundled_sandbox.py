"""Every bundled mini-app: each action's form renders, and each runs in sandbox mode
through the API with values generated from its schema — nothing leaves the host."""

import json
import socket
from pathlib import Path

import pytest

from host import create_app
from host.db import Installation, get_database, new_id, utcnow
from host.engine.sandbox import sample
from host.manifest import load_manifest
from host.services import accounts
from host.services import instance as instance_service
from host.vault import store_credentials

from ..conftest import REPO, bundled_auth_types, csrf_from, make_config

MINIAPPS = Path(__file__).resolve().parents[2] / "miniapps"
ACTIONS = [(folder.name, action.name)
           for folder in sorted(MINIAPPS.iterdir()) if (folder / "manifest.json").exists()
           for action in load_manifest(folder, bundled_auth_types()).actions]


DATA_SOURCES = [(folder.name, name)
                for folder in sorted(MINIAPPS.iterdir()) if (folder / "manifest.json").exists()
                for name in load_manifest(folder, bundled_auth_types()).data_sources]


@pytest.fixture(scope="module")
def bundled(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("bundled")
    app = create_app(make_config(tmp_path, MINIAPPS_DIRS=[str(MINIAPPS)],
                                 PLUGINS_DIRS=[str(REPO / "plugins")]), instance_path=tmp_path)
    instance_service.init(app)
    ids = {}
    with get_database(app).transaction() as db:
        user = accounts.create_user(db, "sandbox@example.com", "correct horse")
        workspace = accounts.personal_workspace(db, user)
        _, token = accounts.create_token(db, user, "t", "test")
        for folder in sorted(MINIAPPS.iterdir()):
            if not (folder / "manifest.json").exists():
                continue
            manifest = load_manifest(folder, bundled_auth_types())
            raw = json.dumps(dict(manifest.raw))
            names = {part.split("]]")[0].split(".")[0] for part in raw.split("[[")[1:]}
            installation = Installation(
                id=new_id("ins"), workspace_id=workspace, miniapp=manifest.name,
                miniapp_version=manifest.version, status="active", sandbox=True,
                webhook_token=new_id("wh"), created_by=user.id, created_at=utcnow(),
                updated_at=utcnow(), meta={})
            store_credentials(app, installation, {n: f"fake-{n}" for n in names})
            db.add(installation)
            ids[manifest.name] = installation.id
    yield app, ids, token
    get_database(app).engine.dispose()


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a socket was opened in sandbox mode")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.mark.parametrize(("miniapp", "action"), ACTIONS)
def test_each_bundled_action_renders_and_runs_in_sandbox(bundled, no_network, miniapp, action):
    app, ids, token = bundled
    manifest = load_manifest(MINIAPPS / miniapp, bundled_auth_types())
    client = app.test_client()
    page = client.get("/login").get_data(as_text=True)
    client.post("/login", data={"email": "sandbox@example.com", "password": "correct horse",
                                "csrf_token": csrf_from(page)})
    form = client.get(f"/installations/{ids[miniapp]}/actions/{action}")
    assert form.status_code == 200, form.get_data(as_text=True)[:500]
    assert "data-action-form" in form.get_data(as_text=True)
    parameters = sample(manifest.action(action).parameters)
    response = client.post(f"/api/v1/installations/{ids[miniapp]}/actions/{action}/runs",
                           json={"parameters": parameters},
                           headers={"Authorization": f"Bearer {token}"})
    body = response.get_json()
    assert response.status_code == 201, body
    assert body["status"] == "succeeded", body["error"]
    assert body["sandbox"] is True


def test_there_are_data_sources_to_sync():
    assert DATA_SOURCES == [("github", "issues"), ("hubspot", "contacts"), ("linear", "issues"),
                            ("notion", "pages"), ("stripe", "customers"), ("trello", "cards")]


@pytest.mark.parametrize(("miniapp", "source"), DATA_SOURCES)
def test_each_bundled_data_source_syncs_in_sandbox(bundled, no_network, miniapp, source):
    app, ids, token = bundled
    headers = {"Authorization": f"Bearer {token}"}
    path = f"/api/v1/installations/{ids[miniapp]}/data-sources/{source}"
    response = app.test_client().post(f"{path}/sync", headers=headers)
    body = response.get_json()
    assert response.status_code == 200, body
    assert body["records"] >= 1 and body["first"] in (True, False), body
    listed = app.test_client().get(f"{path}/records", headers=headers).get_json()
    assert len(listed["items"]) == body["records"]

