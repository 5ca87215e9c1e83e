import os
import subprocess
import sys

import pytest
from cryptography.fernet import Fernet

from host import create_app
from host.errors import ConfigError

from .conftest import REPO


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    import os

    for name in list(os.environ):
        if name.startswith("MINIHOST_") and name != "MINIHOST_TEST_POSTGRES_URL":
            monkeypatch.delenv(name)


def test_defaults(tmp_path):
    app = create_app(instance_path=tmp_path)
    config = app.config
    assert config["DATABASE_URL"] == f"sqlite:///{tmp_path / 'minihost.db'}"
    assert config["PUBLIC_URL"] == "http://127.0.0.1:5000"
    assert config["MINIAPPS_DIRS"] == [str(REPO / "miniapps")]
    assert config["PLUGINS_DIRS"] == [str(REPO / "plugins")]
    assert config["DISABLED_PLUGINS"] == []
    assert config["EGRESS_ALLOW_PRIVATE"] is False
    assert config["SANDBOX"] is False
    assert config["ACTION_TIMEOUT"] == 60
    assert config["CELERY_BROKER_URL"] is None
    assert config["SECRET_KEY"] is None
    assert config["VAULT_KEYS"] == []
    assert (config["LOG_LEVEL"], config["LOG_FORMAT"]) == ("INFO", "text")
    assert config["RUN_RETENTION_DAYS"] == 90


def test_file_then_environment_then_overrides(tmp_path, monkeypatch):
    (tmp_path / "minihost.cfg").write_text(
        'PUBLIC_URL = "https://hub.example.com/"\nACTION_TIMEOUT = 30\nSANDBOX = True\n'
    )
    monkeypatch.setenv("MINIHOST_ACTION_TIMEOUT", "45")
    monkeypatch.setenv("MINIHOST_SANDBOX", "no")
    app = create_app({"SANDBOX": "YES"}, instance_path=tmp_path)
    assert app.config["PUBLIC_URL"] == "https://hub.example.com"
    assert app.config["ACTION_TIMEOUT"] == 45
    assert app.config["SANDBOX"] is True


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("true", True), ("TRUE", True), ("1", True), ("Yes", True),
     ("false", False), ("False", False), ("0", False), ("NO", False)],
)
def test_booleans_from_the_environment_are_strict(tmp_path, monkeypatch, raw, expected):
    monkeypatch.setenv("MINIHOST_EGRESS_ALLOW_PRIVATE", raw)
    assert create_app(instance_path=tmp_path).config["EGRESS_ALLOW_PRIVATE"] is expected


@pytest.mark.parametrize("raw", ["Flase", "on", "2", "", "none"])
def test_a_malformed_boolean_stops_start_up(tmp_path, monkeypatch, raw):
    monkeypatch.setenv("MINIHOST_EGRESS_ALLOW_PRIVATE", raw)
    with pytest.raises(ConfigError) as info:
        create_app(instance_path=tmp_path)
    shown = repr(raw) if raw not in ("2",) else "2"
    assert str(info.value) == (
        f"EGRESS_ALLOW_PRIVATE={shown} is not a boolean; use one of true, false, 1, 0, yes, no"
    )


def test_unknown_key_in_the_file_suggests_the_close_one(tmp_path):
    (tmp_path / "minihost.cfg").write_text('PUBLIC_ULR = "https://x.example"\n')
    with pytest.raises(ConfigError) as info:
        create_app(instance_path=tmp_path)
    assert str(info.value) == (
        f"{tmp_path / 'minihost.cfg'}: unknown key PUBLIC_ULR; did you mean PUBLIC_URL?"
    )


def test_unknown_environment_variables_are_ignored(tmp_path, monkeypatch):
    monkeypatch.setenv("MINIHOST_SOMETHING_ELSE", "x")
    assert "SOMETHING_ELSE" not in create_app(instance_path=tmp_path).config


def test_config_file_with_a_syntax_error(tmp_path):
    (tmp_path / "minihost.cfg").write_text("PUBLIC_URL = \n")
    with pytest.raises(ConfigError) as info:
        create_app(instance_path=tmp_path)
    assert str(info.value).startswith(f"{tmp_path / 'minihost.cfg'} could not be loaded: ")
    assert str(info.value).endswith("; fix the file's syntax")


def test_unreadable_config_file(tmp_path):
    (tmp_path / "minihost.cfg").mkdir()
    with pytest.raises(ConfigError) as info:
        create_app(instance_path=tmp_path)
    assert str(info.value) == (
        f"cannot read {tmp_path / 'minihost.cfg'}: Is a directory; check that the file is readable"
    )


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("ACTION_TIMEOUT", "soon", "ACTION_TIMEOUT='soon' is not a number; use a positive number "
                                   "of seconds"),
        ("ACTION_TIMEOUT", -1, "ACTION_TIMEOUT=-1 must be a positive, finite number of seconds"),
        ("PUBLIC_URL", "ftp://x", "PUBLIC_URL='ftp://x' is not an http(s) URL; use for example "
                                  "https://minihost.example.com"),
        ("DATABASE_URL", "not a url", "DATABASE_URL='not a url' is not a database URL; use "
                                      "sqlite:///path/to/minihost.db or "
                                      "postgresql+psycopg://user@host/dbname"),
        ("MINIAPPS_DIRS", 5, "MINIAPPS_DIRS=5 is not a list of strings; use a list such as "
                             '["/srv/a", "/srv/b"] or a \':\'-separated string'),
        ("API_RATE_LIMIT", "lots", "API_RATE_LIMIT='lots' is not a whole number; use e.g. 600, "
                                   "or 0 for none"),
        ("API_RATE_LIMIT", -5, "API_RATE_LIMIT=-5 is not a whole number; use e.g. 600, or 0 for "
                               "none"),
        ("RUN_RETENTION_DAYS", "ninety", "RUN_RETENTION_DAYS='ninety' is not a whole number of "
                                         "days; use e.g. 90, or 0 to keep runs for ever"),
        ("RUN_RETENTION_DAYS", -1, "RUN_RETENTION_DAYS=-1 is not a whole number of days; use "
                                   "e.g. 90, or 0 to keep runs for ever"),
        ("RUN_RETENTION_DAYS", 1.5, "RUN_RETENTION_DAYS=1.5 is not a whole number of days; use "
                                    "e.g. 90, or 0 to keep runs for ever"),
        ("RUN_RETENTION_DAYS", True, "RUN_RETENTION_DAYS=True is not a whole number of days; "
                                     "use e.g. 90, or 0 to keep runs for ever"),
        ("RUN_RETENTION_DAYS", 36_501, "RUN_RETENTION_DAYS=36501 is more than 36500 days; use 0 "
                                       "to keep runs for ever"),
        ("LOG_LEVEL", "loud", "LOG_LEVEL='loud' is not a log level; use one of DEBUG, INFO, "
                              "WARNING, ERROR, CRITICAL"),
        ("LOG_LEVEL", 10, "LOG_LEVEL=10 is not a log level; use one of DEBUG, INFO, WARNING, "
                          "ERROR, CRITICAL"),
        ("LOG_FORMAT", "xml", "LOG_FORMAT='xml' is not a log format; use text or json"),
        ("REDIS_URL", "http://cache:6379", "REDIS_URL='http://cache:6379' is not a Redis URL; "
                                           "use for example redis://127.0.0.1:6379/0, "
                                           "rediss://:password@host:6380/0 or "
                                           "unix:///run/redis.sock"),
        ("REDIS_URL", "redis://:s3cret@cache:six/0", "REDIS_URL='redis://:***@cache:six/0' names "
                                                      "no usable host and port; use for example "
                                                      "redis://127.0.0.1:6379/0, "
                                                      "rediss://:password@host:6380/0 or "
                                                      "unix:///run/redis.sock"),
        ("VAULT_KEYS", ["short"], "VAULT_KEYS holds a value that is not a Fernet key (32 url-safe "
                                  "base64 bytes); generate one with `minihost init` or "
                                  "Fernet.generate_key()"),
    ],
)
def test_malformed_values_name_key_value_and_what_is_accepted(tmp_path, key, value, message):
    with pytest.raises(ConfigError) as info:
        create_app({key: value}, instance_path=tmp_path)
    assert str(info.value) == message


@pytest.mark.parametrize(("raw", "days"), [("30", 30), ("0", 0), (" 7 ", 7), ("36500", 36500)])
def test_run_retention_from_the_environment(tmp_path, monkeypatch, raw, days):
    monkeypatch.setenv("MINIHOST_RUN_RETENTION_DAYS", raw)
    assert create_app(instance_path=tmp_path).config["RUN_RETENTION_DAYS"] == days


def test_lists_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("MINIHOST_MINIAPPS_DIRS", "/a:/b")
    monkeypatch.setenv("MINIHOST_DISABLED_PLUGINS", '["x", "y"]')
    config = create_app(instance_path=tmp_path).config
    assert config["MINIAPPS_DIRS"] == ["/a", "/b"]
    assert config["DISABLED_PLUGINS"] == ["x", "y"]


def test_generated_keys_are_read_from_the_instance(tmp_path):
    key = Fernet.generate_key().decode()
    (tmp_path / "secret_key").write_text("s3cret\n")
    (tmp_path / "vault_keys").write_text(key + "\n")
    config = create_app(instance_path=tmp_path).config
    assert (config["SECRET_KEY"], config["VAULT_KEYS"]) == ("s3cret", [key])


def test_instance_path_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("MINIHOST_INSTANCE_PATH", str(tmp_path))
    assert create_app().instance_path == str(tmp_path)


def test_the_instance_folder_defaults_to_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert create_app().instance_path == str(tmp_path / "instance")


def test_a_missing_bundled_folder_is_one_clear_line(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "minihost_bundled", None)
    with pytest.raises(ConfigError) as info:
        create_app(instance_path=tmp_path)
    assert str(info.value) == ("the bundled miniapps folder is not installed; reinstall Minihost "
                               "(pip install minihost, or pip install -e . in a checkout)")


def test_log_settings_in_any_case(tmp_path, monkeypatch):
    monkeypatch.setenv("MINIHOST_LOG_LEVEL", "debug")
    monkeypatch.setenv("MINIHOST_LOG_FORMAT", "JSON")
    config = create_app(instance_path=tmp_path).config
    assert (config["LOG_LEVEL"], config["LOG_FORMAT"]) == ("DEBUG", "json")
    create_app({"LOG_LEVEL": "INFO", "LOG_FORMAT": "text"}, instance_path=tmp_path)


def test_a_celery_broker_url_is_read_and_a_bad_one_stops_start_up(tmp_path, monkeypatch):
    (tmp_path / "minihost.cfg").write_text('CELERY_BROKER_URL = "amqp://guest:guest@mq:5672//"\n')
    assert create_app(instance_path=tmp_path).config["CELERY_BROKER_URL"] == \
        "amqp://guest:guest@mq:5672//"
    monkeypatch.setenv("MINIHOST_CELERY_BROKER_URL", "")  # empty is unset
    assert create_app(instance_path=tmp_path).config["CELERY_BROKER_URL"] is None
    monkeypatch.setenv("MINIHOST_CELERY_BROKER_URL", "sqs://key:secret-77@queue")
    with pytest.raises(ConfigError) as info:
        create_app(instance_path=tmp_path)
    assert str(info.value) == (
        "CELERY_BROKER_URL is not a Redis or RabbitMQ URL (its scheme is 'sqs'); use for "
        "example redis://127.0.0.1:6379/0 or amqp://guest:guest@127.0.0.1:5672//")


def test_serve_with_a_bad_broker_url_says_so_in_one_line(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MINIHOST_")}
    env["MINIHOST_CELERY_BROKER_URL"] = "redis:///broker-pw-42"
    served = subprocess.run([sys.executable, "-m", "host", "--instance", str(tmp_path / "inst"),
                             "serve", "--port", "1"], env=env, capture_output=True, text=True,
                            timeout=60)
    assert (served.returncode, served.stdout) == (1, "")
    assert served.stderr == (  # no password, no traceback
        "Error: CELERY_BROKER_URL names no broker host; use for example redis://127.0.0.1:6379/0 or amqp://guest:guest@127.0.0.1:5672//\n")


def test_redis_url_is_unset_by_default_and_read_from_the_environment(tmp_path, monkeypatch):
    assert create_app(instance_path=tmp_path).config["REDIS_URL"] is None
    monkeypatch.setenv("MINIHOST_REDIS_URL", "redis://cache.internal:6379/2")
    assert create_app(instance_path=tmp_path).config["REDIS_URL"] == "redis://cache.internal:6379/2"
