"""`minihost serve` from a fresh instance: the README's first command, for real."""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from .conftest import FIXTURES

MINIHOST = Path(sys.executable).parent / "minihost"


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_serve_initialises_and_answers(tmp_path):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MINIHOST_")}
    env["MINIHOST_MINIAPPS_DIRS"] = str(FIXTURES / "miniapps")
    process = subprocess.Popen(
        [str(MINIHOST), "--instance", str(tmp_path / "inst"), "serve", "--port", str(port)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                health = requests.get(f"{base}/healthz", timeout=1)
                break
            except requests.ConnectionError:
                assert process.poll() is None, process.stdout.read()
                assert time.monotonic() < deadline, "the server did not start"
                time.sleep(0.1)
        assert health.json() == {"status": "ok"}
        page = requests.get(base + "/", timeout=5)
        assert page.status_code == 200 and "Weather Now" in page.text
        assert (tmp_path / "inst" / "secret_key").exists()
        requests.get(f"{base}/connect/weather/callback?code=one-time-code-123&state=st-456",
                     timeout=5)
        requests.post(f"{base}/hooks/ins_1/hook-token-789", timeout=5)
    finally:
        process.terminate()
        process.wait(timeout=10)
        log = process.stdout.read()
        process.stdout.close()
    assert "GET /connect/weather/callback?[redacted] HTTP/1.1" in log
    assert "POST /hooks/ins_1/[redacted] HTTP/1.1" in log
    assert not any(secret in log for secret in ("one-time-code-123", "st-456", "hook-token-789"))


def port_free(port):
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def csrf(html):
    import re

    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def test_serve_demo_completes_a_real_oauth_connect(tmp_path):
    """The README's first command: serve --demo, then the connect it prints how to do."""
    if not port_free(5000):
        pytest.skip("port 5000 is busy; the demo serves on the default address only")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MINIHOST_")}
    process = subprocess.Popen(
        [str(MINIHOST), "--instance", str(tmp_path / "inst"), "serve", "--demo"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = "http://127.0.0.1:5000"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                requests.get(f"{base}/healthz", timeout=1)
                break
            except requests.ConnectionError:
                assert process.poll() is None, process.stdout.read()
                assert time.monotonic() < deadline
                time.sleep(0.1)
        browser = requests.Session()
        page = browser.get(f"{base}/login").text
        browser.post(f"{base}/login", data={"email": "demo@example.com",
                                            "password": "demo-password", "csrf_token": csrf(page)})
        page = browser.get(f"{base}/miniapps/demo-tasks").text
        authorize = browser.post(f"{base}/miniapps/demo-tasks/install",
                                 data={"csrf_token": csrf(page)}, allow_redirects=False)
        login = browser.get(authorize.headers["Location"])
        consent = browser.post(login.url, data={"username": "demo", "password": "demo",
                                                "csrf_token": csrf(login.text)})
        assert "Allow access?" in consent.text
        done = browser.post(consent.url, data={"decision": "allow",
                                               "csrf_token": csrf(consent.text)})
        assert 'id="installation-status">active<' in done.text
        assert "Demo User" in done.text
    finally:
        process.terminate()
        output = process.communicate(timeout=10)[0]
    assert "Sign in to Minihost as demo@example.com / demo-password" in output
