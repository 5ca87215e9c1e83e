"""A host killed during a run: the run is finished as interrupted, never left running."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time

import requests
from sqlalchemy import select
from werkzeug.wrappers import Response

from host import create_app
from host.db import AuditEvent, Run, get_database

from ..conftest import good_provider, local_manifests
from ..test_serve import MINIHOST, free_port


def wait_for(predicate, seconds=30.0):
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_a_run_killed_with_its_host_is_finished_as_interrupted(tmp_path, provider,
                                                              database_url):
    good_provider(provider)
    arrived, released = threading.Event(), threading.Event()

    def slow(request):
        arrived.set()
        released.wait(20)  # held open until the host is killed, then let go
        return Response("{}", mimetype="application/json")

    provider.route("/echo", slow)
    apps = tmp_path / "apps"
    (apps / "keyed").mkdir(parents=True)
    (apps / "keyed" / "manifest.json").write_text(json.dumps(
        local_manifests(provider.base, provider.port)["keyed"]))
    folder = tmp_path / "inst"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MINIHOST_")}
    env.update({"MINIHOST_MINIAPPS_DIRS": str(apps), "MINIHOST_EGRESS_ALLOW_PRIVATE": "true",
                "MINIHOST_DATABASE_URL": database_url})

    def cli(*args):
        done = subprocess.run([str(MINIHOST), "--instance", str(folder), *args], env=env,
                              capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        return done.stdout

    cli("init")
    cli("users", "create", "ada@example.com", "--password", "correct horse")
    token = cli("tokens", "create", "ada@example.com").strip()
    headers = {"Authorization": f"Bearer {token}"}

    def serve():
        port = free_port()
        process = subprocess.Popen([str(MINIHOST), "--instance", str(folder), "serve",
                                    "--port", str(port)], env=env, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        base = f"http://127.0.0.1:{port}"

        def up():
            try:
                return requests.get(f"{base}/healthz", timeout=1).ok
            except requests.ConnectionError:
                assert process.poll() is None
                return False

        wait_for(up)
        return process, base + "/api/v1"

    server, api = serve()
    try:
        installation = requests.post(f"{api}/installations", headers=headers, timeout=10, json={
            "miniapp": "keyed", "credentials": {"apiKey": "key-good-123"}}).json()["id"]
        def start_run():
            try:
                requests.post(f"{api}/installations/{installation}/actions/echo/runs",
                              headers=headers, json={"parameters": {"text": "hi"}}, timeout=30)
            except requests.ConnectionError:
                pass  # the server is killed under it

        threading.Thread(target=start_run, daemon=True).start()
        assert arrived.wait(20)
        os.kill(server.pid, signal.SIGKILL)
        server.wait(timeout=10)
    finally:
        released.set()  # no answer outlives the test (its log line would land in another)
        if server.poll() is None:
            server.kill()
    # Start-up finishes what the dead process left.
    app = create_app({"DATABASE_URL": database_url}, instance_path=folder)
    with get_database(app).sessions() as db:
        [run] = db.scalars(select(Run).where(Run.kind == "action")).all()
        events = db.scalars(select(AuditEvent).where(
            AuditEvent.kind == "run_interrupted")).all()
    get_database(app).engine.dispose()
    assert (run.status, run.holder, run.lease_expires_at) == ("interrupted", None, None)
    assert run.finished_at is not None
    assert run.error == {"type": "interrupted", "message": (
        "the host stopped while this run was in progress, so it never finished; whether it "
        "took effect at the provider is unknown, so check there before running it again")}
    assert [e.detail for e in events] == [{"run": run.id, "kind": "action", "name": "echo"}]
    server, api = serve()
    try:
        listed = requests.get(f"{api}/runs?status=interrupted", headers=headers,
                              timeout=10).json()
        assert [item["id"] for item in listed["items"]] == [run.id]
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_a_run_past_its_lease_is_finished_by_any_process(hosted):
    """A run whose holder is on another machine is finished once its lease ran out."""
    from datetime import timedelta

    from host.db import new_id, utcnow
    from host.services.runs import sweep_interrupted

    installation = hosted.api("POST", "/api/v1/installations", hosted.alice_token,
                              json={"miniapp": "open"}).get_json()["id"]
    started = utcnow() - timedelta(minutes=5)
    with get_database(hosted.app).transaction() as db:
        from host.db import Installation

        workspace = db.get(Installation, installation).workspace_id
        for holder, until in (("elsewhere|1", started + timedelta(seconds=65)),
                              ("elsewhere|2", utcnow() + timedelta(seconds=30))):
            db.add(Run(id=new_id("run"), workspace_id=workspace, installation_id=installation,
                       kind="action", name="ping", status="running", parameters={},
                       started_at=started, holder=holder, lease_expires_at=until))
    assert sweep_interrupted(hosted.app) == 1
    with get_database(hosted.app).sessions() as db:
        statuses = sorted((r.holder or "-", r.status) for r in db.scalars(select(Run)))
    assert statuses == [("-", "interrupted"), ("elsewhere|2", "running")]
    with get_database(hosted.app).sessions() as db:
        [done] = db.scalars(select(Run).where(Run.status == "interrupted")).all()
    assert done.error["message"].endswith("it only reads, so running it again is safe")
