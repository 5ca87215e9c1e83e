"""README's "Use the API" walk-through, run verbatim against a served host."""

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import requests

from .test_serve import MINIHOST, free_port

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
SECRET = "0f9e8d7c-6b5a-4c3d-9e1f-0a1b2c3d4e5f"


def api_blocks() -> list[str]:
    text = README.read_text()
    section = text[text.index("## Use the API"):text.index("\n## ", text.index("## Use the API"))]
    return re.findall(r"```sh\n(.*?)```", section, re.S)


def test_the_readme_api_walk_through_runs_as_written(tmp_path):
    blocks = api_blocks()
    assert len(blocks) == 3 and all("curl" in block for block in blocks)
    port = free_port()
    instance = tmp_path / "inst"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MINIHOST_")}
    # The walk-through runs against `serve --demo`, which needs port 5000; here the
    # demo's mini-app is offered from a folder instead, with the private egress the
    # demo turns on.
    extra = tmp_path / "extra"
    shutil.copytree(REPO / "plugins" / "demo_provider" / "demo-tasks", extra / "demo-tasks")
    env["MINIHOST_MINIAPPS_DIRS"] = os.pathsep.join([str(REPO / "miniapps"), str(extra)])
    env["MINIHOST_EGRESS_ALLOW_PRIVATE"] = "true"
    cli = [str(MINIHOST), "--instance", str(instance)]
    subprocess.run([*cli, "init"], env=env, check=True, capture_output=True)
    subprocess.run([*cli, "users", "create", "demo@example.com", "--password", "demo-password"],
                   env=env, check=True, capture_output=True)
    subprocess.run([*cli, "clients", "set", "demo-tasks", "--client-id", "demo-client",
                    "--client-secret", "demo-secret"], env=env, check=True, capture_output=True)
    server = subprocess.Popen([*cli, "serve", "--port", str(port)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                requests.get(f"{base}/healthz", timeout=1)
                break
            except requests.ConnectionError:
                assert server.poll() is None and time.monotonic() < deadline
                time.sleep(0.1)
        # The reader's checkout: `.venv/bin/minihost` in the folder they run from.
        work = tmp_path / "checkout"
        (work / ".venv" / "bin").mkdir(parents=True)
        (work / ".venv" / "bin" / "minihost").symlink_to(MINIHOST)
        done = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", "\n".join(blocks)], cwd=work,
            env={**env, "BASE": base, "MINIHOST_INSTANCE_PATH": str(instance)},
            capture_output=True, text=True, timeout=120)
    finally:
        server.terminate()
        server.wait(timeout=10)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert SECRET not in out
    run_text = out[out.index("{\n"):out.index("\n}\n") + 2]
    run = json.loads(run_text)
    assert run["status"] == "succeeded" and run["action"] == "sendEmail"
    assert run["sandbox"] is True
    sent = run["trace"]["requests"][0]
    assert (sent["method"], sent["url"]) == ("POST", "https://api.postmarkapp.com/email")
    assert sent["headers"]["X-Postmark-Server-Token"] == "[redacted]"
    assert sent["body"] == {"From": "you@example.com", "To": "friend@example.com",
                            "Subject": "Hello", "TextBody": "Sent through Minihost"}
    rest = out[out.index("\n}\n") + 3:].splitlines()
    assert rest[0].startswith("http://127.0.0.1:5000/demo-provider/oauth/authorize?")
    assert "code_challenge=" in rest[0] and "state=" in rest[0]
    catalog = json.loads(rest[1])
    assert "postmark" in [item["name"] for item in catalog["items"]]
    assert json.loads(rest[2])["name"] == "postmark"
    installations = json.loads(rest[3])["items"]
    assert {(i["miniapp"], i["status"]) for i in installations} == {
        ("postmark", "active"), ("demo-tasks", "pending")}
    assert json.loads(rest[4])["fields"][0]["name"] == "from"
    assert run["id"] in [r["id"] for r in json.loads(rest[5])["items"]]
    kinds = [event["kind"] for event in json.loads(rest[6])["items"]]
    assert "installed" in kinds
    assert len(rest) == 7  # DELETE answers 204 with no body
