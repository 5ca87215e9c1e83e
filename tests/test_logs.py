"""Logging as the operator configures it: ``LOG_FORMAT`` text or JSON lines,
``LOG_LEVEL``, every record once on stderr, and the access log's redaction kept."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import requests

from host import create_app
from host.logs import HANDLER_NAME, TEXT_FORMAT, JsonFormatter, TextFormatter, context

from .conftest import FIXTURES
from .test_serve import MINIHOST, free_port

ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def broken_plugin(tmp_path: Path) -> Path:
    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / "broken.py").write_text('raise RuntimeError("boom")\n')
    return folder


def environment(**settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MINIHOST_")}
    env["MINIHOST_MINIAPPS_DIRS"] = str(FIXTURES / "miniapps")
    env.update({f"MINIHOST_{key}": value for key, value in settings.items()})
    return env


def test_json_lines_from_a_served_host_keep_the_access_log_redacted(tmp_path):
    plugins = broken_plugin(tmp_path)
    port = free_port()
    process = subprocess.Popen(
        [str(MINIHOST), "--instance", str(tmp_path / "inst"), "--plugins-dir", str(plugins),
         "serve", "--port", str(port)],
        env=environment(LOG_FORMAT="json"), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                requests.get(f"{base}/healthz", timeout=1)
                break
            except requests.ConnectionError:
                assert process.poll() is None, process.stderr.read()
                assert time.monotonic() < deadline, "the server did not start"
                time.sleep(0.1)
        requests.get(f"{base}/connect/weather/callback?code=one-time-code-123&state=st-456",
                     timeout=5)
        requests.post(f"{base}/hooks/ins_1/hook-token-789", timeout=5)
    finally:
        process.terminate()
        stderr = process.communicate(timeout=10)[1]
    records = [json.loads(line) for line in stderr.splitlines()]
    assert all(list(record) == ["time", "level", "logger", "message"] for record in records)
    assert all(ISO_UTC.match(record["time"]) for record in records)
    assert {k: v for k, v in records[0].items() if k != "time"} == {
        "level": "ERROR", "logger": "host.plugins",
        "message": f"plugin broken (folder {plugins}) failed to load: RuntimeError: boom"}
    access = [r["message"].split("] ", 1)[1] for r in records if r["logger"] == "werkzeug"
              and r["message"].startswith("127.0.0.1 - - [")]
    assert access == ['"GET /healthz HTTP/1.1" 200 -',
                      '"GET /connect/weather/callback?[redacted] HTTP/1.1" 400 -',
                      '"POST /hooks/ins_1/[redacted] HTTP/1.1" 404 -']
    assert not any(secret in stderr for secret in ("one-time-code-123", "st-456",
                                                   "hook-token-789"))


def test_text_lines_and_the_level(tmp_path):
    plugins = broken_plugin(tmp_path)

    def plugins_list(**settings: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(MINIHOST), "--instance", str(tmp_path / "inst"), "--plugins-dir", str(plugins),
             "plugins", "list"], env=environment(**settings), capture_output=True, text=True)

    logged = [line for line in plugins_list().stderr.splitlines()
              if not line.startswith("Not loaded")]
    assert len(logged) == 1
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} ERROR host\.plugins: plugin broken \(folder "
        + re.escape(str(plugins)) + r"\) failed to load: RuntimeError: boom", logged[0])
    quiet = plugins_list(LOG_LEVEL="critical").stderr.splitlines()
    assert quiet == [f"Not loaded: broken (folder {plugins}): RuntimeError: boom"]


def test_an_exception_is_one_more_field():
    try:
        raise ValueError("no good")
    except ValueError:
        record = logging.LogRecord("host.web", logging.ERROR, __file__, 1, "failed %s", ("x",),
                                   sys.exc_info())
    document = json.loads(JsonFormatter().format(record))
    assert list(document) == ["time", "level", "logger", "message", "exception"]
    assert (document["level"], document["logger"], document["message"]) == (
        "ERROR", "host.web", "failed x")
    assert document["exception"].startswith("Traceback (most recent call last):")
    assert document["exception"].endswith("ValueError: no good")


def test_records_inside_a_task_attempt_name_its_flow_run_and_task():
    record = logging.LogRecord("host.pacing", logging.INFO, __file__, 1, "paused", (), None)
    with context(flowRun="frn_1", taskRun="tsk_1", attempt=2):
        document = json.loads(JsonFormatter().format(record))
        line = TextFormatter(TEXT_FORMAT).format(record)
    assert {key: document[key] for key in ("message", "flowRun", "taskRun", "attempt")} == {
        "message": "paused", "flowRun": "frn_1", "taskRun": "tsk_1", "attempt": 2}
    assert line.endswith(" INFO host.pacing: paused [flowRun=frn_1 taskRun=tsk_1 attempt=2]")
    assert "flowRun" not in json.loads(JsonFormatter().format(record))  # outside: none


def test_each_application_replaces_the_handler_rather_than_adding_one(tmp_path):
    create_app({"LOG_FORMAT": "text", "LOG_LEVEL": "debug"}, instance_path=tmp_path)
    app = create_app({"LOG_FORMAT": "json", "LOG_LEVEL": "WARNING"}, instance_path=tmp_path)
    try:
        ours = [h for h in logging.getLogger().handlers if h.get_name() == HANDLER_NAME]
        assert len(ours) == 1 and isinstance(ours[0].formatter, JsonFormatter)
        assert (app.config["LOG_LEVEL"], app.config["LOG_FORMAT"]) == ("WARNING", "json")
        assert logging.getLogger().level == logging.WARNING
        assert logging.getLogger("alembic").level == logging.WARNING
    finally:
        create_app(instance_path=tmp_path)  # the defaults again, for the tests that follow
    assert logging.getLogger().level == logging.INFO
