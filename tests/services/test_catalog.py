import json
import shutil

import pytest
from sqlalchemy import event, select

from host import create_app
from host.db import CatalogError, MiniApp, get_database
from host.services import catalog
from host.services import instance as instance_service

from ..conftest import FIXTURES, make_config


@pytest.fixture
def folder(tmp_path):
    target = tmp_path / "miniapps"
    shutil.copytree(FIXTURES / "miniapps", target)
    return target


@pytest.fixture
def catalog_app(tmp_path, folder, database_url):
    app = create_app(make_config(tmp_path, MINIAPPS_DIRS=[str(folder)], DATABASE_URL=database_url),
                     instance_path=tmp_path)
    instance_service.migrate(app)
    yield app
    get_database(app).engine.dispose()


def writes(app):
    seen = []

    def record(conn, cursor, statement, *args):
        if statement.lstrip().split()[0].upper() in ("INSERT", "UPDATE", "DELETE"):
            seen.append(statement)

    event.listen(get_database(app).engine, "before_cursor_execute", record)
    return seen


def rows(app):
    with get_database(app).sessions() as db:
        return {(r.name, r.version): (r.origin, r.enabled) for r in db.scalars(select(MiniApp))}


def test_sync_records_name_version_and_origin(catalog_app, folder):
    report = catalog.sync(catalog_app)
    assert sorted(report.added) == ["chat 2.3.0", "notes 1.0.0", "notes 1.1.0", "weather 1.0.0"]
    assert rows(catalog_app) == {
        ("chat", "2.3.0"): ("folder", True),
        ("notes", "1.0.0"): ("folder", True),
        ("notes", "1.1.0"): ("folder", True),
        ("weather", "1.0.0"): ("folder", True),
    }


def test_a_second_sync_with_no_change_writes_nothing(catalog_app, folder):
    (folder / "broken").mkdir()
    (folder / "broken" / "manifest.json").write_text('{"name": "broken"}')
    catalog.sync(catalog_app)
    statements = writes(catalog_app)
    report = catalog.sync(catalog_app)
    assert statements == []
    assert (report.added, report.updated, report.removed, report.unchanged) == ((), (), (), 4)


def test_invalid_manifests_never_enter_and_are_listed(catalog_app, folder):
    (folder / "broken").mkdir()
    (folder / "broken" / "manifest.json").write_text(json.dumps(
        {"name": "broken", "version": "1.0.0", "title": "B", "description": "d",
         "actions": [{"name": "a", "title": "A",
                      "requests": [{"url": "https://x.example/{{y}}", "method": "GET"}]}]}))
    report = catalog.sync(catalog_app)
    assert ("broken", "1.0.0") not in rows(catalog_app)
    [refused] = report.refused
    assert refused.location == str(folder / "broken")
    with get_database(catalog_app).sessions() as db:
        [stored] = db.scalars(select(CatalogError)).all()
    assert [p["pointer"] for p in stored.problems] == [
        "/actions/0/requests/0/url", "/allowedHosts"]
    assert stored.problems[0]["file"] == str(folder / "broken" / "manifest.json")


def test_changed_and_removed_manifests(catalog_app, folder):
    catalog.sync(catalog_app)
    doc = json.loads((folder / "weather" / "manifest.json").read_text())
    doc["description"] = "Now with forecasts."
    (folder / "weather" / "manifest.json").write_text(json.dumps(doc))
    shutil.rmtree(folder / "chat")
    report = catalog.sync(catalog_app)
    assert report.updated == ("weather 1.0.0",)
    assert report.removed == ("chat 2.3.0",)
    assert rows(catalog_app)[("chat", "2.3.0")] == ("folder", False)
    with get_database(catalog_app).sessions() as db:
        snapshot = catalog.get_catalog(catalog_app).snapshot(db)
    assert snapshot.get("weather").description == "Now with forecasts."
    assert snapshot.get("chat") is None


def test_the_same_name_and_version_twice_is_refused(catalog_app, folder):
    shutil.copytree(folder / "weather", folder / "weather-copy")
    report = catalog.sync(catalog_app)
    [refused] = report.refused
    [problem] = refused.problems
    assert problem.message == (
        f"weather 1.0.0 is already provided by folder {folder / 'weather'}; raise the version "
        "or remove one copy"
    )


def test_snapshot_search_versions_and_categories(catalog_app):
    catalog.sync(catalog_app)
    with get_database(catalog_app).sessions() as db:
        snapshot = catalog.get_catalog(catalog_app).snapshot(db)
        assert catalog.get_catalog(catalog_app).snapshot(db) is snapshot  # cached
    assert [m.name for m in snapshot.latest] == ["notes", "chat", "weather"]
    assert snapshot.get("notes").version == "1.1.0"
    assert snapshot.versions("notes") == ["1.1.0", "1.0.0"]
    assert snapshot.categories == ("communication", "data", "productivity")
    assert [m.name for m in snapshot.search("post channel")] == ["chat"]
    assert [m.name for m in snapshot.search("", "data")] == ["weather"]
    assert [m.name for m in snapshot.search("TAGS")] == ["notes"]
    assert snapshot.search("post", "data") == []


@pytest.mark.parametrize(
    ("versions", "newest"),
    [(["1.0.0", "1.10.0", "1.9.0"], "1.10.0"),
     (["2.0.0-rc.1", "1.9.9"], "2.0.0-rc.1"),
     (["2.0.0-rc.1", "2.0.0"], "2.0.0"),
     (["2.0.0-alpha", "2.0.0-alpha.1", "2.0.0-beta"], "2.0.0-beta")],
)
def test_version_order(versions, newest):
    assert max(versions, key=catalog.version_key) == newest


def test_versions_sort_as_semver_says():
    """The precedence example of SemVer 2.0.0 §11, shuffled."""
    ordered = ["1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-alpha.beta", "1.0.0-beta",
               "1.0.0-beta.2", "1.0.0-beta.11", "1.0.0-rc.1", "1.0.0", "1.0.1", "1.10.0"]
    shuffled = ordered[::3] + ordered[1::3] + ordered[2::3]
    assert sorted(shuffled, key=catalog.version_key) == ordered


def counting(monkeypatch, name):
    """Count calls of ``host.services.catalog.<name>`` (still calling it)."""
    calls = []
    original = getattr(catalog, name)

    def counted(*args, **kwargs):
        calls.append(args[1] if len(args) > 1 else args)
        return original(*args, **kwargs)

    monkeypatch.setattr(catalog, name, counted)
    return calls


def test_an_unchanged_sync_validates_nothing_even_in_a_new_process(
        catalog_app, folder, tmp_path, database_url, monkeypatch):
    catalog.sync(catalog_app)
    validated = counting(monkeypatch, "validate_document")
    fresh = create_app(make_config(tmp_path, MINIAPPS_DIRS=[str(folder)],
                                   DATABASE_URL=database_url), instance_path=tmp_path)
    report = catalog.sync(fresh)
    get_database(fresh).engine.dispose()
    assert (report.added, report.updated, report.unchanged) == ((), (), 4)
    assert validated == []

    doc = json.loads((folder / "weather" / "manifest.json").read_text())
    doc["title"] = "Weather Later"
    (folder / "weather" / "manifest.json").write_text(json.dumps(doc))
    report = catalog.sync(catalog_app)
    assert report.updated == ("weather 1.0.0",)
    assert validated == [str(folder / "weather" / "manifest.json")]


def test_an_unchanged_manifest_whose_icon_went_is_refused(catalog_app, folder):
    catalog.sync(catalog_app)
    (folder / "weather" / "icon.svg").unlink()
    report = catalog.sync(catalog_app)
    assert report.removed == ("weather 1.0.0",)
    [refused] = report.refused
    assert [(p.pointer, p.message) for p in refused.problems] == [
        ("/icon", "icon file 'icon.svg' does not exist")]


def test_other_rules_validate_again_without_reporting_updates(
        catalog_app, folder, tmp_path, database_url):
    """A manifest valid only where private egress is allowed: the stored digest names
    the rules it passed, so a host with other rules checks it again."""
    doc = json.loads((folder / "weather" / "manifest.json").read_text())
    doc.update(name="local", allowedHosts=["127.0.0.1:8080"])
    for action in doc["actions"]:
        for request in action["requests"]:
            request["url"] = request["url"].replace("https://api.weather.example",
                                                    "http://127.0.0.1:8080")
    (folder / "local").mkdir()
    (folder / "local" / "manifest.json").write_text(json.dumps(doc))
    shutil.copy(folder / "weather" / "icon.svg", folder / "local" / "icon.svg")

    def host(private):
        return create_app(make_config(tmp_path, MINIAPPS_DIRS=[str(folder)],
                                      DATABASE_URL=database_url,
                                      EGRESS_ALLOW_PRIVATE=private), instance_path=tmp_path)

    private, public = host(True), host(False)
    assert "local 1.0.0" in catalog.sync(private).added
    with get_database(private).sessions() as db:
        before = {name: digest for name, digest in db.execute(select(MiniApp.name, MiniApp.digest))}
    report = catalog.sync(public)
    assert (report.added, report.updated, report.removed) == ((), (), ("local 1.0.0",))
    assert [p.pointer for p in report.refused[0].problems] == ["/allowedHosts/0"]
    assert report.unchanged == 4
    with get_database(public).sessions() as db:
        after = {name: digest for name, digest in db.execute(select(MiniApp.name, MiniApp.digest))}
    assert after["weather"] != before["weather"]  # validated again, stored as such
    for app in (private, public):
        get_database(app).engine.dispose()


def test_the_listing_the_database_extracts_is_the_documents(catalog_app, folder):
    """The SQL that reads listings (SQLite's or PostgreSQL's) answers what the stored
    documents say, optional members absent included."""
    (folder / "bare").mkdir()
    (folder / "bare" / "manifest.json").write_text(json.dumps(
        {"name": "bare", "version": "1.0.0", "title": "Bare", "description": "Nothing else."}))
    doc = json.loads((folder / "weather" / "manifest.json").read_text())
    del doc["actions"][0]["description"], doc["icon"]
    doc.update(name="plain", auth={"type": "none"})
    (folder / "plain").mkdir()
    (folder / "plain" / "manifest.json").write_text(json.dumps(doc))
    assert not catalog.sync(catalog_app).refused
    with get_database(catalog_app).sessions() as db:
        listed = sorted(catalog._listing(db), key=lambda e: (e.name, e.version))
        stored = db.scalars(select(MiniApp).where(MiniApp.enabled))
        documents = sorted((catalog.Entry.of(row.manifest, row.digest, row.location)
                            for row in stored), key=lambda e: (e.name, e.version))
    assert listed == documents
    bare = next(entry for entry in listed if entry.name == "bare")
    assert (bare.icon, bare.categories, bare.auth_type, bare.actions) == (None, (), "none", ())
    plain = next(entry for entry in listed if entry.name == "plain")
    assert plain.actions == (catalog.ActionSummary("current", "Current weather", ""),)
    assert [a.name for a in next(e for e in listed if e.name == "chat").actions] == [
        a["name"] for a in json.loads((folder / "chat" / "manifest.json").read_text())["actions"]]


def test_manifests_are_compiled_on_first_use_only(catalog_app, folder, tmp_path, database_url,
                                                  monkeypatch):
    catalog.sync(catalog_app)
    compiled = counting(monkeypatch, "compile_manifest")
    validated = counting(monkeypatch, "validate_document")
    fresh = create_app(make_config(tmp_path, MINIAPPS_DIRS=[str(folder)],
                                   DATABASE_URL=database_url), instance_path=tmp_path)
    with get_database(fresh).sessions() as db:
        snapshot = catalog.get_catalog(fresh).snapshot(db)
        assert [entry.title for entry in snapshot.latest] == [
            "Notes Cloud", "Team Chat", "Weather Now"]
        assert compiled == []
        weather = snapshot.get("weather")
        assert weather.action("current").title == "Current weather"
        assert snapshot.get("weather") is weather
        assert catalog.get_catalog(fresh).require(db, "notes", "1.0.0").version == "1.0.0"
    get_database(fresh).engine.dispose()
    assert compiled == [str(folder / "weather"), str(folder / "notes")]
    assert validated == []  # stored under these same rules


def test_a_stored_manifest_the_rules_now_refuse_is_unusable(catalog_app, folder, tmp_path,
                                                            database_url, caplog):
    doc = json.loads((folder / "weather" / "manifest.json").read_text())
    doc.update(allowedHosts=["127.0.0.1:8080"])
    doc["actions"][0]["requests"][0]["url"] = "http://127.0.0.1:8080/v1/current"
    (folder / "weather" / "manifest.json").write_text(json.dumps(doc))
    private = create_app(make_config(tmp_path, MINIAPPS_DIRS=[str(folder)],
                                     DATABASE_URL=database_url, EGRESS_ALLOW_PRIVATE=True),
                         instance_path=tmp_path)
    assert "weather 1.0.0" in catalog.sync(private).added
    get_database(private).engine.dispose()
    with get_database(catalog_app).sessions() as db:
        snapshot = catalog.get_catalog(catalog_app).snapshot(db)
        assert snapshot.entry("weather").title == "Weather Now"
        assert snapshot.get("weather") is None
        assert snapshot.get("chat").name == "chat"
    [record] = [r for r in caplog.records if "unusable" in r.getMessage()]
    assert record.getMessage().startswith("mini-app weather 1.0.0 is unusable: ")
    assert "/allowedHosts/0" in record.getMessage()
