"""`minihost serve` from a fresh instance: the README's first command, for real."""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

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
    finally:
        process.terminate()
        process.wait(timeout=10)
        process.stdout.close()
