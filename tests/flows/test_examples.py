"""The bundled example flows (examples/flows/): each passes the lint against the bundled
mini-apps and runs in sandbox mode through the API — nothing leaves the host."""

from __future__ import annotations

import json
import socket

import pytest

from host import create_app, executor
from host.db import Installation, get_database, new_id, utcnow
from host.manifest import load_manifest
from host.services import accounts
from host.services import instance as instance_service
from host.vault import store_credentials

from ..conftest import REPO, bundled_auth_types, make_config

EXAMPLES = sorted((REPO / "examples" / "flows").glob("*.json"))
MINIAPPS = REPO / "miniapps"
INPUTS = {
    "bug-intake": {"title": "Crash on save", "details": "Steps to reproduce…",
                   "tasks": {"linear": {"team": "5f0e9a7c"}}},
    "new-customer": {"email": "ada@example.com", "name": "Ada"},
    "welcome-batch": {"people": [{"email": "ada@example.com", "name": "Ada"},
                                 {"email": "bob@example.com", "name": "Bob"},
                                 {"email": "cy@example.com", "name": "Cy"},
                                 {"email": "di@example.com", "name": "Di"}]},
}


@pytest.fixture(scope="module")
def sandboxed(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("examples")
    app = create_app(make_config(tmp_path, MINIAPPS_DIRS=[str(MINIAPPS)],
                                 PLUGINS_DIRS=[str(REPO / "plugins")], FLOW_WORKERS=2),
                     instance_path=tmp_path)
    instance_service.init(app)
    with get_database(app).transaction() as db:
        user = accounts.create_user(db, "sandbox@example.com", "correct horse")
        workspace = accounts.personal_workspace(db, user)
        _, token = accounts.create_token(db, user, "t", "test")
        for name in ("github", "linear", "slack", "stripe", "postmark"):
            manifest = load_manifest(MINIAPPS / name, bundled_auth_types())
            raw = json.dumps(dict(manifest.raw))
            secrets = {part.split("]]")[0].split(".")[0] for part in raw.split("[[")[1:]}
            installation = Installation(
                id=new_id("ins"), workspace_id=workspace, name=name, miniapp=manifest.name,
                miniapp_version=manifest.version, status="active", sandbox=True,
                webhook_token=new_id("wh"), created_by=user.id, created_at=utcnow(),
                updated_at=utcnow(), meta={})
            store_credentials(app, installation, {n: f"fake-{n}" for n in secrets})
            db.add(installation)
    yield app, token
    executor.stop(app)
    get_database(app).engine.dispose()


def test_there_are_the_three_kinds_of_example():
    docs = {path.stem: json.loads(path.read_text()) for path in EXAMPLES}
    assert set(docs) == set(INPUTS)
    kinds = {key: {kind for task in doc["tasks"].values() for kind in task} |
             {cond for task in doc["tasks"].values()
              for cond in (task.get("needs") or {}).values()}
             for key, doc in docs.items()}
    assert "failed" in kinds["new-customer"] and "forEach" in kinds["welcome-batch"]
    parallel = [k for k, t in docs["bug-intake"]["tasks"].items() if "needs" not in t]
    assert len(parallel) == 2


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_each_example_lints_and_runs_in_sandbox(sandboxed, path, monkeypatch):
    app, token = sandboxed
    client = app.test_client()
    headers = {"Authorization": f"Bearer {token}"}
    saved = client.post("/api/v1/flows", json=json.loads(path.read_text()), headers=headers)
    assert saved.status_code in (200, 201), saved.get_json()

    def refuse(*args, **kwargs):
        raise AssertionError("a socket was opened in sandbox mode")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    answer = client.post(f"/api/v1/flows/{path.stem}/runs?sandbox=true",
                         json=INPUTS[path.stem], headers={**headers, "Prefer": "wait=30"})
    run = answer.get_json()
    assert answer.status_code == 200, run
    states = {task["key"]: task["status"] for task in run["tasks"]}
    assert run["status"] == "succeeded", (states, run)
    assert "failed" not in states.values()
