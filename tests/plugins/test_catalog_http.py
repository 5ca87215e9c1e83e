"""The bundled ``catalog_http`` plugin, loaded from the repository's ``plugins/``
folder, against real HTTP(S) servers on 127.0.0.1."""

import datetime
import ipaddress
import json
import logging
import re
import ssl
import threading
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from sqlalchemy import select
from werkzeug.serving import make_server
from werkzeug.wrappers import Response

from host import create_app
from host.db import CatalogError, MiniApp, get_database
from host.plugins import get_plugins
from host.services import accounts, catalog
from host.services import instance as instance_service

from ..conftest import FIXTURES, REPO, Provider, make_config

PLUGIN = "catalog_http"
FOLDER_APPS = ["chat 2.3.0", "notes 1.0.0", "notes 1.1.0", "weather 1.0.0"]
LOGGER = "minihost_plugins.catalog_http"


def manifest(name, **extra):
    return {"name": name, "version": "1.0.0", "title": name.title(),
            "description": f"{name} from the catalog index.", **extra}


@pytest.fixture
def make_app(tmp_path):
    """A host with the repository's bundled plugins and ``catalog_http`` settings."""
    apps = []

    def build(settings=None, **config):
        config.setdefault("EGRESS_ALLOW_PRIVATE", True)
        config.setdefault("MINIAPPS_DIRS", [])
        if settings is not None:
            config["PLUGIN_SETTINGS"] = {PLUGIN: settings}
        app = create_app(make_config(tmp_path, PLUGINS_DIRS=[str(REPO / "plugins")], **config),
                         instance_path=tmp_path)
        instance_service.migrate(app)
        apps.append(app)
        return app

    yield build
    for app in apps:
        get_database(app).engine.dispose()


def stored(app):
    with get_database(app).sessions() as db:
        apps = {(r.name, r.version): (r.origin, r.enabled, r.location)
                for r in db.scalars(select(MiniApp))}
        errors = [(e.origin, e.location, e.problems) for e in db.scalars(select(CatalogError))]
    return apps, errors


def failures(app):
    return {key: failure.error for key, failure in get_plugins(app).hook_failures.items()}


def skipped(caplog):
    return [r.getMessage() for r in caplog.records
            if r.name == LOGGER and r.levelno == logging.ERROR]


def operator_client(app):
    """A test client signed in as an operator (``/-/plugins`` is for operators only)."""
    with get_database(app).transaction() as db:
        accounts.create_user(db, "ops@example.com", "correct horse", admin=True)
    client = app.test_client()
    page = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    client.post("/login", data={"email": "ops@example.com", "password": "correct horse",
                                "csrf_token": token})
    return client


def test_the_bundled_plugin_is_loaded_and_with_no_settings_fetches_nothing(provider, make_app):
    provider.json("/minihost/index.json", json.dumps({"miniapps": []}))
    app = make_app(MINIAPPS_DIRS=[str(FIXTURES / "miniapps")])
    [info] = [p for p in get_plugins(app).loaded if p.name == PLUGIN]
    assert (info.version, info.origin) == ("1.0.0", f"folder {REPO / 'plugins'}")
    assert get_plugins(app).hooks_of(PLUGIN) == ["miniapp_manifests"]
    report = catalog.sync(app)
    assert sorted(report.added) == FOLDER_APPS
    assert report.refused == ()
    assert provider.received == []
    assert failures(app) == {}


def test_index_with_two_valid_manifests_and_one_invalid(provider, make_app, caplog):
    base = f"{provider.base}/minihost"
    provider.json("/minihost/index.json", json.dumps({"miniapps": [
        f"{base}/alpha/manifest.json",
        {"url": "beta/manifest.yaml"},  # relative to the index, YAML by its suffix
        f"{base}/broken/manifest.json",
    ]}))
    provider.json("/minihost/alpha/manifest.json",
                  json.dumps(manifest("alpha", icon="https://cdn.example.com/alpha.svg")))
    provider.route("/minihost/beta/manifest.yaml", response=(
        "name: beta\nversion: 1.0.0\ntitle: Beta\ndescription: beta from the catalog index.\n"
    ), mimetype="application/yaml")
    provider.json("/minihost/broken/manifest.json", json.dumps(manifest("broken", title="")))
    app = make_app({"index": f"{base}/index.json"})

    report = catalog.sync(app)

    assert sorted(report.added) == ["alpha 1.0.0", "beta 1.0.0"]
    apps, errors = stored(app)
    assert apps == {("alpha", "1.0.0"): ("plugin", True, "plugin manifest alpha"),
                    ("beta", "1.0.0"): ("plugin", True, "plugin manifest beta")}
    assert errors == [("plugin", "plugin manifest broken", [
        {"file": "plugin manifest broken", "pointer": "/title",
         "message": "'' should be non-empty"}])]
    assert [(r.method, r.path) for r in provider.received] == [
        ("GET", "/minihost/index.json"), ("GET", "/minihost/alpha/manifest.json"),
        ("GET", "/minihost/beta/manifest.yaml"), ("GET", "/minihost/broken/manifest.json")]
    assert {r.headers["User-Agent"] for r in provider.received} == {
        "Minihost catalog_http/1.0.0"}
    assert failures(app) == {}
    assert skipped(caplog) == []


def test_a_manifest_on_another_host_is_refused_unless_listed_in_hosts(provider, make_app,
                                                                      caplog):
    # The same server under another name: 127.0.0.1 is the index's host, localhost is not.
    other = f"http://localhost:{provider.port}/elsewhere/manifest.json"
    provider.json("/index.json", json.dumps({"miniapps": ["/alpha.json", other]}))
    provider.json("/alpha.json", json.dumps(manifest("alpha")))
    provider.json("/elsewhere/manifest.json", json.dumps(manifest("elsewhere")))
    app = make_app({"index": f"{provider.base}/index.json"})

    report = catalog.sync(app)

    assert report.added == ("alpha 1.0.0",)
    assert skipped(caplog) == [
        f"catalog_http: skipped manifest {other}: host localhost is neither the index's host "
        "(127.0.0.1) nor in the catalog_http setting hosts; add it to hosts to allow it"]
    assert [r.path for r in provider.received] == ["/index.json", "/alpha.json"]
    assert failures(app) == {}

    caplog.clear()
    provider.received.clear()
    allowed = make_app({"index": f"{provider.base}/index.json",
                        "hosts": [f"localhost:{provider.port}"]})
    report = catalog.sync(allowed)
    assert sorted(report.added) == ["elsewhere 1.0.0"]  # alpha is already in the database
    assert report.unchanged == 1
    assert [r.path for r in provider.received] == [
        "/index.json", "/alpha.json", "/elsewhere/manifest.json"]
    assert skipped(caplog) == []


def test_an_index_that_fails_is_reported_and_the_folder_miniapps_stay(provider, make_app):
    index = f"{provider.base}/minihost/index.json"
    state = {"status": 500}
    provider.route("/minihost/index.json", lambda request: Response(
        json.dumps({"miniapps": ["alpha/manifest.json"]}), status=state["status"],
        mimetype="application/json"))
    provider.json("/minihost/alpha/manifest.json", json.dumps(manifest("alpha")))
    app = make_app({"index": index}, MINIAPPS_DIRS=[str(FIXTURES / "miniapps")])

    report = catalog.sync(app)

    assert sorted(report.added) == FOLDER_APPS
    assert report.refused == ()
    assert failures(app) == {(PLUGIN, "miniapp_manifests"):
                             f"RuntimeError: catalog index {index} could not be fetched: "
                             "answered HTTP 500; expected 200"}
    assert [r.path for r in provider.received] == ["/minihost/index.json"]  # 500 not retried
    assert [(f["plugin"], f["hook"], f["error"], f["count"]) for f in
            operator_client(app).get("/-/plugins.json").get_json()["hookFailures"]] == [
        (PLUGIN, "miniapp_manifests", failures(app)[(PLUGIN, "miniapp_manifests")], 1)]

    # Back up: its mini-apps join. Down again: they stay offered, as last fetched.
    state["status"] = 200
    assert catalog.sync(app).added == ("alpha 1.0.0",)
    state["status"] = 503
    report = catalog.sync(app)
    assert report.removed == ()
    assert failures(app)[(PLUGIN, "miniapp_manifests")] == (
        f"RuntimeError: catalog index {index} could not be fetched: answered HTTP 503; "
        "expected 200")
    apps, _ = stored(app)
    assert apps[("alpha", "1.0.0")][:2] == ("plugin", True)
    assert apps[("weather", "1.0.0")][:2] == ("folder", True)


def test_a_private_index_is_refused_by_the_egress_policy(provider, make_app):
    index = f"https://127.0.0.1:{provider.port}/index.json"
    app = make_app({"index": index}, EGRESS_ALLOW_PRIVATE=False)

    assert catalog.sync(app).added == ()

    assert failures(app) == {(PLUGIN, "miniapp_manifests"): (
        f"RuntimeError: catalog index {index} could not be fetched: egress denied: host "
        "127.0.0.1 resolved to 127.0.0.1, a loopback address; only public addresses are "
        "allowed (operators can allow private targets with EGRESS_ALLOW_PRIVATE)")}
    assert provider.received == []


SCHEMES = [
    ({"index": "http://example.com/index.json"}, False,
     'PLUGIN_SETTINGS["catalog_http"]["index"] is \'http://example.com/index.json\'; http:// '
     "is accepted only when EGRESS_ALLOW_PRIVATE is on (development); use https://"),
    ({"index": "ftp://example.com/index.json"}, True,
     'PLUGIN_SETTINGS["catalog_http"]["index"] is \'ftp://example.com/index.json\'; only '
     "https:// URLs are accepted"),
]


@pytest.mark.parametrize(("settings", "private", "message"), SCHEMES)
def test_an_index_the_egress_setting_does_not_allow_is_reported(make_app, settings, private,
                                                                message):
    app = make_app(settings, EGRESS_ALLOW_PRIVATE=private)
    assert get_plugins(app).failures == []  # the shape is right; the scheme is not
    assert catalog.sync(app).added == ()
    assert failures(app) == {(PLUGIN, "miniapp_manifests"): f"ValueError: {message}"}


SHAPES = [
    ({"index": "https://example.com/index.json", "timeout": 0},
     'PLUGIN_SETTINGS["catalog_http"]["timeout"] is 0; write a positive number of seconds '
     "(default 10)"),
    ({"index": "https://example.com/index.json", "timeout": "10"},
     'PLUGIN_SETTINGS["catalog_http"]["timeout"] is of type str; write a positive number of '
     "seconds (default 10)"),
    ({"index": "https://example.com/index.json", "hosts": "cdn.example.com"},
     'PLUGIN_SETTINGS["catalog_http"]["hosts"] is of type str; write a list of host names, '
     'such as ["cdn.example.com", "*.example.org"]'),
    ({"index": "https://example.com/index.json", "hosts": ["cdn.example.com",
                                                           "https://cdn.example.com"]},
     'PLUGIN_SETTINGS["catalog_http"]["hosts"][1] is \'https://cdn.example.com\'; write a host '
     'name (no scheme or path), such as "cdn.example.com", "*.example.org" or '
     '"cdn.example.com:8443"'),
    ({"url": "https://example.com/index.json"},
     'PLUGIN_SETTINGS["catalog_http"] has unknown setting(s) \'url\'; the settings are '
     "'index' (required), 'hosts' and 'timeout'. "
     'PLUGIN_SETTINGS["catalog_http"]["index"] is missing; write the URL of the catalog '
     "index, such as https://example.com/minihost/index.json"),
]


@pytest.mark.parametrize(("settings", "message"), SHAPES)
def test_settings_that_miss_the_schema_keep_the_plugin_out(make_app, settings, message):
    app = make_app(settings)
    plugins = get_plugins(app)
    assert [(f.name, f.error) for f in plugins.failures] == [(PLUGIN, f"ValueError: {message}")]
    assert PLUGIN not in [p.name for p in plugins.loaded]
    assert catalog.sync(app).added == ()
    assert failures(app) == {(PLUGIN, "miniapp_manifests"): f"ValueError: {message}"}
    assert operator_client(app).get("/-/plugins.json").get_json()["notLoaded"] == [
        {"name": PLUGIN, "origin": f"folder {REPO / 'plugins'}",
         "error": f"ValueError: {message}"}]


def test_an_index_that_is_not_an_index_is_reported(provider, make_app):
    provider.json("/bad-json", "{nope")
    provider.json("/bad-shape", '{"apps": []}')
    app = make_app({"index": f"{provider.base}/bad-json"})
    catalog.sync(app)
    assert failures(app) == {(PLUGIN, "miniapp_manifests"): (
        f"ValueError: catalog index {provider.base}/bad-json is not valid JSON: Expecting "
        "property name enclosed in double quotes at line 1 column 2")}
    app = make_app({"index": f"{provider.base}/bad-shape"})
    catalog.sync(app)
    assert failures(app) == {(PLUGIN, "miniapp_manifests"): (
        f'ValueError: catalog index {provider.base}/bad-shape must be a JSON object with a '
        '"miniapps" list of manifest URLs, such as {"miniapps": '
        '["https://example.com/minihost/a/manifest.json"]}')}


def test_a_manifest_that_cannot_be_fetched_or_read_is_skipped_and_logged(provider, make_app,
                                                                         caplog):
    base = provider.base
    provider.json("/index.json", json.dumps({"miniapps": [
        "/missing.json", "/garbled.json", 42, "/alpha.json", "/alpha.json",
        "ftp://127.0.0.1/x.json"]}))
    provider.json("/garbled.json", '{"name": "garbled",')
    provider.json("/alpha.json", json.dumps(manifest("alpha")))
    app = make_app({"index": f"{base}/index.json"})

    report = catalog.sync(app)

    assert report.added == ("alpha 1.0.0",)
    assert failures(app) == {}
    assert skipped(caplog) == [
        f"catalog_http: skipped: entry 2 of catalog index {base}/index.json is neither a "
        'manifest URL nor an object {"url": …}',
        f"catalog_http: skipped manifest {base}/missing.json: answered HTTP 404; expected 200",
        f"catalog_http: skipped manifest {base}/garbled.json: not valid JSON: Expecting "
        "property name enclosed in double quotes at line 1 column 20",
        "catalog_http: skipped manifest ftp://127.0.0.1/x.json: only https:// URLs are "
        "accepted",
    ]
    assert [r.path for r in provider.received] == [  # /alpha.json once
        "/index.json", "/missing.json", "/garbled.json", "/alpha.json"]


def test_the_timeout_bounds_the_whole_sync(provider, make_app):
    release = threading.Event()

    def slow(request):
        release.wait(10)
        return Response('{"miniapps": []}', mimetype="application/json")

    provider.route("/index.json", slow)
    index = f"{provider.base}/index.json"
    app = make_app({"index": index, "timeout": 0.5})
    started = time.monotonic()
    try:
        catalog.sync(app)
    finally:
        release.set()
    assert time.monotonic() - started < 3
    assert failures(app) == {(PLUGIN, "miniapp_manifests"): (
        f"RuntimeError: catalog index {index} could not be fetched: no answer before the "
        "deadline")}


# -- a real HTTPS server with a self-signed certificate ---------------------------------


@pytest.fixture
def tls_files(tmp_path):
    """A self-signed certificate for 127.0.0.1 and its key, as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName(
            [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                       critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


@pytest.fixture
def https_provider(tls_files):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*map(str, tls_files))
    provider = Provider("127.0.0.1")
    server = make_server("127.0.0.1", 0, provider.app, threaded=True, ssl_context=context)
    provider.port = server.server_port
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    yield provider
    server.shutdown()
    thread.join(timeout=5)


def test_an_https_index_is_fetched_when_its_certificate_is_trusted(https_provider, tls_files,
                                                                   make_app, monkeypatch):
    base = f"https://127.0.0.1:{https_provider.port}"
    https_provider.json("/index.json", json.dumps({"miniapps": ["/alpha.json"]}))
    https_provider.json("/alpha.json", json.dumps(manifest("alpha")))

    # Not trusted: the TLS handshake fails and nothing is read.
    monkeypatch.setenv("SSL_CERT_FILE", str(tls_files[0].parent / "no-such-bundle.pem"))
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    app = make_app({"index": f"{base}/index.json"})
    assert catalog.sync(app).added == ()
    error = failures(app)[(PLUGIN, "miniapp_manifests")]
    assert error.startswith(f"RuntimeError: catalog index {base}/index.json could not be "
                            "fetched: TLS failed with 127.0.0.1: ")
    assert "CERTIFICATE_VERIFY_FAILED" in error
    assert https_provider.received == []

    # Trusted through OpenSSL's SSL_CERT_FILE (the host's transport loads the default
    # trust store): the index and its manifest arrive over TLS.
    monkeypatch.setenv("SSL_CERT_FILE", str(tls_files[0]))
    app = make_app({"index": f"{base}/index.json"})
    assert catalog.sync(app).added == ("alpha 1.0.0",)
    assert failures(app) == {}
    assert [r.path for r in https_provider.received] == ["/index.json", "/alpha.json"]
