"""Celery workers and host processes as real processes, for the scale-out tests:
``minihost worker`` started by its command with the test's configuration in the
instance's ``minihost.cfg``."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from ..conftest import REPO

REDIS_ENV = "MINIHOST_TEST_REDIS_URL"
RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672//"


def redis_base() -> str:
    url = os.environ.get(REDIS_ENV)
    if not url:
        if os.environ.get("CI"):
            pytest.fail(f"{REDIS_ENV} must be set in CI")
        pytest.skip(f"{REDIS_ENV} is not set")
    return url


def rabbitmq_reachable() -> bool:
    import socket

    try:
        socket.create_connection(("127.0.0.1", 5672), timeout=1).close()
    except OSError:
        return False
    return True


def broker_config(kind: str) -> dict[str, Any]:
    """A broker and a queue of this test's own (tests share the machine's brokers)."""
    if kind == "redis":
        url = redis_base()
    elif not rabbitmq_reachable():
        if os.environ.get("CI"):
            pytest.fail("RabbitMQ must run at 127.0.0.1:5672 in CI")
        pytest.skip("RabbitMQ is not running at 127.0.0.1:5672")
    else:
        url = RABBITMQ_URL
    return {"CELERY_BROKER_URL": url, "CELERY_QUEUE": f"minihost-test-{secrets.token_hex(4)}"}


def write_config(instance: Path, config: dict[str, Any]) -> None:
    """The test's configuration as the instance's ``minihost.cfg``, which every
    process started on the instance reads."""
    lines = [f"{key} = {value!r}" for key, value in config.items()
             if key not in ("TESTING",)]
    (instance / "minihost.cfg").write_text("\n".join(lines) + "\n")


def environment() -> dict[str, str]:
    found = {k: v for k, v in os.environ.items() if not k.startswith("MINIHOST_")}
    found["PYTHONPATH"] = str(REPO)
    return found


def start_worker(instance: Path, concurrency: int = 2, name: str | None = None,
                 timeout: float = 60, env: dict[str, str] | None = None
                 ) -> subprocess.Popen[str]:
    """``minihost worker`` on ``instance``; returns once it takes tasks. What it
    writes goes to ``<name>.log`` in the instance (a pipe nobody reads would fill up
    and stop it)."""
    name = name or f"w{secrets.token_hex(3)}@test"
    log = instance / f"{name}.log"
    with log.open("w") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "host", "--instance", str(instance), "worker",
             "--concurrency", str(concurrency), "--name", name],
            stdout=output, stderr=subprocess.STDOUT, text=True,
            env={**environment(), **(env or {})}, start_new_session=True)
    process.log = log  # type: ignore[attr-defined]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        if "ready: taking flow tasks" in log.read_text():
            return process
        time.sleep(0.1)
    kill_9(process)
    raise AssertionError(log.read_text() or "the worker never started")


def kill_9(process: subprocess.Popen[str]) -> None:
    """The whole worker at once, as when its machine dies (its pool processes die with
    their parent in any case)."""
    try:
        os.killpg(process.pid, 9)
    except ProcessLookupError:
        pass
    process.wait()


def stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        try:
            os.killpg(process.pid, 15)
        except ProcessLookupError:
            pass
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        kill_9(process)
    if process.stdout is not None:
        process.stdout.close()


def start_host(instance: Path) -> tuple[subprocess.Popen[str], int]:
    """A host process serving HTTP on ``instance`` (its ``minihost.cfg``); its port."""
    import json

    script = Path(__file__).with_name("host_process.py")
    settings = {"repo": str(REPO), "instance": str(instance), "serve": True}
    log = instance / f"host-{secrets.token_hex(3)}.log"
    with log.open("w") as output:
        process = subprocess.Popen([sys.executable, str(script), json.dumps(settings)],
                                   stdout=subprocess.PIPE, stderr=output, text=True,
                                   env=environment(), start_new_session=True)
    process.log = log  # type: ignore[attr-defined]
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line.startswith("ready "):
        kill_9(process)
        raise AssertionError(log.read_text())
    return process, int(line.split()[1])


def start_fleet(instance: Path, hosts: int, workers: int, concurrency: int = 2
                ) -> tuple[list[tuple[subprocess.Popen[str], int]], list[subprocess.Popen[str]]]:
    """``hosts`` host processes and ``workers`` workers, started side by side (each
    takes seconds to import and connect; one after another they would add up)."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=hosts + workers) as pool:
        started_hosts = [pool.submit(start_host, instance) for _ in range(hosts)]
        started_workers = [pool.submit(start_worker, instance, concurrency)
                           for _ in range(workers)]
        return ([found.result() for found in started_hosts],
                [found.result() for found in started_workers])
