"""The ``minihost`` command: thin commands that call services.

Exit codes: 0 success, 1 failure with a one-line reason on stderr (``Error: …``),
2 usage error (click's own).
"""

from __future__ import annotations

import json
import sys
from functools import partial
from pathlib import Path
from typing import Any

import click
from flask import Flask, current_app
from flask.cli import FlaskGroup, ScriptInfo, routes_command, shell_command, with_appcontext
from werkzeug.serving import WSGIRequestHandler, run_simple

from . import create_app, vault
from .db import get_database
from .errors import ConfigError, ManifestError, ManifestProblem, MinihostError, to_cli_line
from .manifest import manifest_schema, read_document, validate_document
from .manifest.loader import check_icon
from .plugins import get_plugins
from .principal import Principal
from .services import accounts, flow_runs
from .services import catalog as catalog_service
from .services import clients as clients_service
from .services import instance as instance_service
from .services import workers as workers_service
from .version import __version__


def _configure(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """Option callback: options parse before any command loads the app, so
    ``--instance`` and ``--plugins-dir`` reach ``create_app`` in time."""
    if not value:
        return value
    info = ctx.ensure_object(ScriptInfo)
    if param.name == "instance":
        info.data["instance_path"] = value
    elif param.name == "plugins_dirs":
        info.data["plugins_dirs"] = tuple(value)
    info.create_app = partial(
        create_app,
        instance_path=info.data.get("instance_path"),
        plugins_dirs=info.data.get("plugins_dirs", ()),
    )
    return value


class MinihostGroup(FlaskGroup):
    """A FlaskGroup whose errors are one line on stderr and exit 1."""

    def _load_plugin_commands(self) -> None:
        """Commands other packages add to ``flask`` (Flask-Limiter's ``limiter``) are not
        Minihost's; plugins add theirs through the ``register_commands`` hook."""
        self._loaded_plugin_commands = True

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except MinihostError as error:
            click.echo(to_cli_line(error), err=True)
            ctx.exit(1)


@click.group(
    cls=MinihostGroup,
    create_app=create_app,
    add_default_commands=False,
    add_version_option=False,
    load_dotenv=False,
    set_debug_flag=False,
)
@click.version_option(__version__, prog_name="minihost")
@click.option(
    "--instance",
    type=click.Path(file_okay=False, path_type=Path),
    callback=_configure,
    expose_value=False,
    is_eager=True,
    help="Instance folder (config, SQLite, keys); default MINIHOST_INSTANCE_PATH or ./instance",
)
@click.option(
    "--plugins-dir",
    "plugins_dirs",
    multiple=True,
    type=click.Path(file_okay=False, exists=True),
    callback=_configure,
    expose_value=False,
    is_eager=True,
    help="Also load plugins from this folder (repeatable).",
)
def cli() -> None:
    """Minihost: a self-hosted host for integration mini-apps."""


# Flask's default commands stay off because one of them, `flask run`, would serve
# without `init` and with werkzeug's plain access log, which writes OAuth codes
# and hook tokens; `serve` replaces it. The other two are wanted, and safe.
cli.add_command(routes_command)
cli.add_command(shell_command)


@cli.command()
@with_appcontext
def init() -> None:
    """Create the instance folder, keys and database; sync the catalog. Idempotent."""
    report = instance_service.init(current_app)
    click.echo(f"Instance: {report.instance}")
    for name in report.created_keys:
        click.echo(f"Generated {report.instance / name}")
    click.echo(f"Database: {instance_service.safe_url(current_app.config['DATABASE_URL'])} "
               f"(schema revision {report.revision})")
    _echo_sync(report.catalog)


def _echo_sync(report: catalog_service.SyncReport) -> None:
    for label in report.added:
        click.echo(f"  added    {label}")
    for label in report.updated:
        click.echo(f"  updated  {label}")
    for label in report.removed:
        click.echo(f"  removed  {label}")
    click.echo(
        f"Catalog: {len(report.added)} added, {len(report.updated)} updated, "
        f"{len(report.removed)} removed, {report.unchanged} unchanged, "
        f"{len(report.refused)} refused"
    )
    for refused in report.refused:
        click.echo(f"Refused {refused.origin} {refused.location}:", err=True)
        for problem in refused.problems:
            click.echo(f"  {problem}", err=True)


def redact_request_path(path: str) -> str:
    """A request path fit for an access log: an OAuth callback's one-time code and
    state, and an inbound hook's token, are left out."""
    if path.startswith("/connect/") and "?" in path:
        return path.split("?", 1)[0] + "?[redacted]"
    if path.startswith("/hooks/"):
        parts = path.split("?", 1)[0].split("/")
        if len(parts) > 3:
            return "/".join(parts[:3] + ["[redacted]"])
    return path


class RedactingRequestHandler(WSGIRequestHandler):
    """The development server's access log line, without secrets in the URL."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        original = getattr(self, "path", None)
        if original is not None:
            self.path = redact_request_path(original)
        try:
            super().log_request(code, size)
        finally:
            if original is not None:
                self.path = original


DEMO_ADDRESS = ("127.0.0.1", 5000)
DEMO_USER = ("demo@example.com", "demo-password")


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", default=5000, show_default=True, type=click.IntRange(1, 65535))
@click.option("--demo", is_flag=True,
              help="Development only: mount the demo OAuth provider and allow private egress.")
@with_appcontext
def serve(host: str, port: int, demo: bool) -> None:
    """Initialise the instance if needed, then serve (development server).

    For production run: gunicorn "host:create_app()".
    """
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    if demo:
        app = _demo_app(host, port)
    elif not instance_service.is_initialised(app):
        instance_service.init(app)
    else:
        catalog_service.sync(app)
    click.echo(f"Minihost {__version__} on http://{host}:{port}/ (instance {app.instance_path})")
    with get_database(app).sessions() as db:
        if not accounts.has_users(db):
            click.echo("No one can sign in yet: create an operator with "
                       "`minihost users create EMAIL --admin`.")
    flow_runs.start_executor(app)
    run_simple(host, port, app, threaded=True, request_handler=RedactingRequestHandler)


@cli.command()
@click.option("--concurrency", "-c", default=4, show_default=True, type=click.IntRange(1, 256),
              help="Pool processes: attempts this worker runs at once.")
@click.option("--name", default=None,
              help="Worker name (default minihost-HOST-PID@HOST); unique per worker.")
@with_appcontext
def worker(concurrency: int, name: str | None) -> None:
    """Run flow task attempts from the broker (CELERY_BROKER_URL) until stopped.

    Uses the host's configuration: the same instance folder or environment, the same
    plugins. Start any number, on any machines that reach the database and broker.
    """
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    if not app.config.get("CELERY_BROKER_URL"):
        raise click.ClickException(
            "CELERY_BROKER_URL is not set: without a broker every host process runs flow "
            "work itself; set it (for example redis://127.0.0.1:6379/0) to run workers")
    if not instance_service.is_initialised(app):
        raise click.ClickException(
            f"the instance at {app.instance_path} is not initialised; run `minihost init` "
            "(or start a host) with the same configuration first")
    from .executor import broker

    click.echo(f"Minihost {__version__} worker, {concurrency} at once "
               f"(instance {app.instance_path})")
    broker.run_worker(app, concurrency, name=name, loglevel=app.config["LOG_LEVEL"],
                      ready=lambda: click.echo("ready: taking flow tasks from the broker"))


@cli.group()
def workers() -> None:
    """The Celery workers that run flow tasks."""


@workers.command("list")
@click.option("--json", "as_json", is_flag=True, help="The JSON of /-/workers.json.")
@with_appcontext
def workers_list(as_json: bool) -> None:
    """Each worker heard of in the last day, what it runs now, and the queue."""
    found = workers_service.overview(current_app)
    if as_json:
        click.echo(json.dumps(found, indent=2))
        return
    if found["executor"] == "in-process":
        click.echo("No broker is configured (CELERY_BROKER_URL): host processes run flow "
                   "tasks themselves.")
        return
    queued = "the broker does not answer" if found["queued"] is None else \
        f"{found['queued']} waiting"
    click.echo(f"queue {found['queue']}: {queued}")
    if not found["workers"]:
        click.echo("No worker has answered in the last day: start one with `minihost worker`.")
    for worker in found["workers"]:
        state = "answering" if worker["alive"] else "silent"
        click.echo(f"{worker['name']}  {state}  {len(worker['running'])}/"
                   f"{worker['concurrency']} running  last heard {worker['seenAt']}  "
                   f"pid {worker['pid']} on {worker['hostname']}")
        for task in worker["running"]:
            click.echo(f"    {task['task']} of flow run {task['flowRun']} since "
                       f"{task['startedAt']}")


def _demo_app(host: str, port: int) -> Flask:
    """An app with the demo provider mounted, its client registered, and a demo login."""
    if (host, port) != DEMO_ADDRESS or current_app.config["PUBLIC_URL"] != "http://127.0.0.1:5000":
        raise ConfigError(
            "the demo runs at http://127.0.0.1:5000, the address the bundled demo-tasks "
            "mini-app calls; run `minihost serve --demo` without --host, --port or another "
            "PUBLIC_URL")
    info = click.get_current_context().find_object(ScriptInfo)
    assert info is not None and info.create_app is not None
    app = info.create_app({"DEMO": True, "EGRESS_ALLOW_PRIVATE": True})
    for failure in get_plugins(app).failures:
        if failure.name == "demo_provider":  # most often its extra is not installed
            raise ConfigError(f"the demo provider plugin did not load: {failure.error}")
    if not get_plugins(app).manager.has_plugin("demo_provider"):
        raise ConfigError("the demo provider plugin is not loaded; remove demo_provider from "
                          "DISABLED_PLUGINS or keep the bundled plugins folder in PLUGINS_DIRS")
    instance_service.init(app)
    with app.app_context(), get_database(app).sessions() as db:
        accounts.ensure_user(db, DEMO_USER[0], DEMO_USER[1], admin=True, actor="demo")
        db.commit()
    click.echo("Demo mode — development only: private network egress is allowed and a demo "
               "OAuth provider runs at http://127.0.0.1:5000/demo-provider/.")
    click.echo(f"Sign in to Minihost as {DEMO_USER[0]} / {DEMO_USER[1]}, install Demo Tasks, "
               "and sign in at the provider as demo / demo.")
    return app


@cli.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@with_appcontext
def validate(paths: tuple[Path, ...]) -> None:
    """Validate and lint manifests (files or mini-app folders); report every error.

    Auth types and system values that this host's plugins add are known."""
    auth_types = catalog_service.known_auth_types(current_app)
    system_values = catalog_service.known_system_values(current_app)
    problems: list[ManifestProblem] = []
    checked = 0
    for path in paths:
        try:
            doc, file = read_document(path)
        except ManifestError as error:
            problems.extend(error.problems)
            continue
        checked += 1
        found = validate_document(doc, file, auth_types, system_values,
                                  allow_private=current_app.config["EGRESS_ALLOW_PRIVATE"])
        found.extend(check_icon(doc, Path(file).parent, file))
        problems.extend(found)
        if not found:
            click.echo(f"ok {file} ({doc.get('name')} {doc.get('version')})")
    for problem in problems:
        click.echo(str(problem), err=True)
    if problems:
        files = len({p.file for p in problems})
        click.echo(f"Error: {len(problems)} problem(s) in {files} manifest(s)", err=True)
        sys.exit(1)
    click.echo(f"{checked} manifest(s) valid")


@cli.command()
def schema() -> None:
    """Print the manifest JSON Schema."""
    click.echo(json.dumps(manifest_schema(), indent=2))


@cli.group()
def catalog() -> None:
    """Show or reload the catalog."""


@catalog.command("sync")
@with_appcontext
def catalog_sync() -> None:
    """Reload the catalog from MINIAPPS_DIRS and plugins."""
    instance_service.prepare(current_app)
    _echo_sync(catalog_service.sync(current_app))


@catalog.command("list")
@with_appcontext
def catalog_list() -> None:
    """Show the catalog and the manifests it refused."""
    instance_service.prepare(current_app)
    with get_database(current_app).sessions() as db:
        rows, errors = catalog_service.entries(db)
    for row in rows:
        state = "" if row.enabled else "  (disabled: no longer offered)"
        click.echo(f"{row.name:<20} {row.version:<10} {row.origin:<7} {row.location}{state}")
    if not rows:
        click.echo("The catalog is empty; run `minihost catalog sync`.")
    for error in errors:
        click.echo(f"Refused {error.origin} {error.location}:", err=True)
        for problem in error.problems:
            click.echo(f"  {problem['file']} {problem['pointer'] or '/'}: {problem['message']}",
                       err=True)


@cli.group()
def users() -> None:
    """Create and disable people."""


@users.command("create")
@click.argument("email")
@click.option("--password", help="At least 8 characters; asked for when not given.")
@click.option("--admin", is_flag=True, help="An operator: may see the admin pages.")
@with_appcontext
def users_create(email: str, password: str | None, admin: bool) -> None:
    """A user with a personal workspace."""
    if password is None:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    instance_service.prepare(current_app)
    with get_database(current_app).transaction() as db:
        user = accounts.create_user(db, email, password, admin=admin)
        click.echo(f"Created {'operator' if admin else 'user'} {user.email} ({user.id})")


@users.command("disable")
@click.argument("email")
@with_appcontext
def users_disable(email: str) -> None:
    """The user can no longer sign in; their sessions and tokens stop at once."""
    instance_service.prepare(current_app)
    with get_database(current_app).transaction() as db:
        user = accounts.disable_user(db, email)
        click.echo(f"Disabled {user.email}")


@cli.group()
def tokens() -> None:
    """API tokens for programs."""


@tokens.command("create")
@click.argument("email")
@click.option("--name", default="token", show_default=True)
@with_appcontext
def tokens_create(email: str, name: str) -> None:
    """Print a new API token for EMAIL (shown once, stored hashed)."""
    instance_service.prepare(current_app)
    with get_database(current_app).transaction() as db:
        user = accounts.get_user(db, email)
        token, secret = accounts.create_token(db, user, name, "cli")
        click.echo(f"Created token {token.id} ({token.name}) for {user.email}; it is shown "
                   "only now:", err=True)
    click.echo(secret)


@tokens.command("list")
@click.argument("email")
@with_appcontext
def tokens_list(email: str) -> None:
    """EMAIL's tokens: id, name, created, last used (never the secret)."""
    instance_service.prepare(current_app)
    with get_database(current_app).sessions() as db:
        user = accounts.get_user(db, email)
        rows = accounts.list_tokens(db, user)
    for token in rows:
        used = token.last_used_at.isoformat(timespec="seconds") if token.last_used_at else "never"
        created = token.created_at.isoformat(timespec="seconds")
        click.echo(f"{token.id}  {token.name:<20} created {created}  last used {used}")
    if not rows:
        click.echo(f"{user.email} has no tokens")


@tokens.command("revoke")
@click.argument("token_id")
@with_appcontext
def tokens_revoke(token_id: str) -> None:
    """Revoke a token; programs using it get 401 at once."""
    instance_service.prepare(current_app)
    with get_database(current_app).transaction() as db:
        token = accounts.revoke_token(db, token_id, "cli")
        click.echo(f"Revoked {token.id} ({token.name})")


@cli.group()
def clients() -> None:
    """The operator's OAuth clients."""


@clients.command("set")
@click.argument("miniapp")
@click.option("--client-id", required=True)
@click.option("--client-secret", help="Asked for when not given; stored encrypted.")
@with_appcontext
def clients_set(miniapp: str, client_id: str, client_secret: str | None) -> None:
    """Set MINIAPP's OAuth client (the secret is never shown again)."""
    if client_secret is None:
        client_secret = click.prompt("Client secret", hide_input=True, default="",
                                     show_default=False) or None
    instance_service.prepare(current_app)
    with get_database(current_app).sessions() as db:
        clients_service.set_client(current_app, db, miniapp, client_id, client_secret, "cli")
    click.echo(f"Saved the OAuth client of {miniapp}; redirect URI: "
               f"{current_app.config['PUBLIC_URL']}/connect/{miniapp}/callback")


@cli.command("rotate-keys")
@click.option("--no-new-key", is_flag=True,
              help="Re-encrypt under the newest configured key without adding one.")
@click.option("--batch-size", default=100, show_default=True, type=click.IntRange(1, 10000))
@with_appcontext
def rotate_keys(no_new_key: bool, batch_size: int) -> None:
    """Add a vault key and re-encrypt every credential and client secret under it.

    Safe to interrupt: run it again and it resumes without adding another key.
    """
    instance_service.prepare(current_app)
    if no_new_key:
        report = vault.reencrypt_only(current_app, batch_size)
    else:
        report = vault.rotate_keys(current_app, batch_size)
    what = "resumed an interrupted rotation" if report.resumed else (
        "added a new key" if report.added_key else "kept the keys")
    click.echo(f"Vault: {what}; re-encrypted {report.rewritten} secret(s), "
               f"{report.already_current} already under the newest key.")
    if report.undecryptable:
        click.echo(f"Error: {report.undecryptable} secret(s) cannot be decrypted with any "
                   "configured key and were left as they are; restore the key that encrypted "
                   "them to VAULT_KEYS and run `minihost rotate-keys --no-new-key`", err=True)
        raise SystemExit(1)
    click.echo("Older keys can be removed from VAULT_KEYS once every host process runs "
               "with the new one.")


@cli.command("run-action")
@click.argument("installation_id", metavar="INSTALLATION")
@click.argument("action")
@click.option("-p", "--param", "params", multiple=True, metavar="KEY=VALUE",
              help="A form value (repeatable; a key given twice makes a list).")
@click.option("--sandbox", is_flag=True, help="Send nothing; answers come from the manifest.")
@click.option("--json", "as_json", is_flag=True, help="Print the run as the API shows it.")
@with_appcontext
def run_action(installation_id: str, action: str, params: tuple[str, ...], sandbox: bool,
               as_json: bool) -> None:
    """Run ACTION of INSTALLATION with form values, as the installing user."""
    from werkzeug.datastructures import MultiDict

    from .services import installations as installations_service
    from .services import runs as runs_service

    values: MultiDict[str, str] = MultiDict()
    for item in params:
        key, separator, value = item.partition("=")
        if not separator or not key:
            raise click.UsageError(f"-p {item!r} is not KEY=VALUE")
        values.add(key, value)
    instance_service.prepare(current_app)
    with get_database(current_app).sessions() as db:
        installation, principal = installations_service.as_its_installer(db, installation_id)
        run = runs_service.run_action(current_app, db, principal, installation, action, values,
                                      from_form=True, sandbox=sandbox)
    document = run.as_dict(with_trace=as_json)
    if as_json:
        click.echo(json.dumps(document, indent=2))
    else:
        click.echo(f"{run.status}: {action} ({run.id}, {run.duration_ms} ms"
                   f"{', sandbox' if run.sandbox else ''})")
        for key, value in (run.output or {}).items():
            shown = value if isinstance(value, str) else json.dumps(value)
            click.echo(f"  {key}: {shown}")
        if run.error:
            click.echo(f"Error: {run.error['message']}", err=True)
    if run.status != "succeeded":
        sys.exit(1)


@cli.group()
def runs() -> None:
    """The run history."""


@runs.command("purge")
@with_appcontext
def runs_purge() -> None:
    """Delete finished runs older than RUN_RETENTION_DAYS now, in small batches.

    Every serving process also does this every few minutes; this waits for any purge
    already under way, then purges what is left."""
    from .services import retention

    instance_service.prepare(current_app)
    days = current_app.config["RUN_RETENTION_DAYS"]
    if not days:
        click.echo("RUN_RETENTION_DAYS is 0: runs are kept for ever; nothing was purged.")
        return
    report = retention.purge_now(current_app)
    assert report.cutoff is not None
    click.echo(f"Purged {report.runs} finished run(s) started before "
               f"{report.cutoff:%Y-%m-%d %H:%M} UTC (RUN_RETENTION_DAYS={days}).")


@cli.group()
def plugins() -> None:
    """Show the loaded plugins."""


@plugins.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@with_appcontext
def plugins_list(as_json: bool) -> None:
    """Every plugin: name, version, origin and the hooks it implements; and any
    plugin that did not load."""
    from .plugins import describe, get_plugins

    found = describe(get_plugins(current_app))
    if as_json:
        click.echo(json.dumps(found, indent=2))
        return
    for plugin in found["plugins"]:
        click.echo(f"{plugin['name']:<20} {plugin['version'] or '-':<10} {plugin['origin']}")
        click.echo(f"  hooks: {', '.join(plugin['hooks']) or 'none'}")
    if not found["plugins"]:
        click.echo("No plugins loaded.")
    for failure in found["notLoaded"]:
        click.echo(f"Not loaded: {failure['name']} ({failure['origin']}): {failure['error']}",
                   err=True)


@cli.command("flow-schema")
def flow_schema() -> None:
    """Print the flow document's JSON Schema (point an editor's $schema at it)."""
    from .flows import FLOW_SCHEMA

    click.echo(json.dumps(FLOW_SCHEMA, indent=2))


AS_OPTION = click.option(
    "--as", "email", envvar="MINIHOST_USER", metavar="EMAIL",
    help="Whose workspace (default: the only person on this host; or MINIHOST_USER).")


def _principal(db: Any, email: str | None) -> Principal:
    """The person the command acts as, in their own workspace."""
    if email is None:
        emails = accounts.list_emails(db, limit=2)
        if len(emails) != 1:
            raise click.UsageError("say whose workspace with --as EMAIL (or MINIHOST_USER)"
                                   if emails else "no one uses this host yet: create a "
                                   "person with `minihost users create EMAIL` first")
        email = emails[0]
    user = accounts.get_user(db, email)
    return Principal(user, accounts.personal_workspace(db, user), "cli")


@cli.group()
def flows() -> None:
    """Flows: import documents, list, run, make tokens (docs/flows.md)."""


@flows.command("import")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@AS_OPTION
@with_appcontext
def flows_import(files: tuple[Path, ...], email: str | None) -> None:
    """Create flows from documents (JSON or YAML), or save new versions of them. Every
    file is checked first; nothing is saved when any has a problem."""
    from .errors import FlowInvalid
    from .services import flows as flows_service

    instance_service.prepare(current_app)
    texts = {}
    for path in files:
        try:
            texts[path] = path.read_text("utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise click.ClickException(f"{path}: cannot read it ({error})") from None
    failed = False
    with get_database(current_app).sessions() as db:
        principal = _principal(db, email)
        connections, _ = flows_service.connections_of(current_app, db, principal.workspace_id)
        for path, text in texts.items():
            try:
                flows_service.check(current_app, connections, text)
            except FlowInvalid as error:
                failed = True
                for problem in error.problems:
                    click.echo(f"{path} {problem}", err=True)
        if failed:
            raise SystemExit(1)
        for text in texts.values():
            saved = flows_service.save(current_app, db, principal, text)
            what = ("created" if saved.created else
                    f"saved as version {saved.flow.version}" if saved.changed else "unchanged")
            click.echo(f"{saved.flow.key}: {what}")


@flows.command("list")
@AS_OPTION
@with_appcontext
def flows_list(email: str | None) -> None:
    """The workspace's flows: key, version, enabled, title."""
    from .services import flows as flows_service

    instance_service.prepare(current_app)
    with get_database(current_app).sessions() as db:
        rows, _ = flows_service.list_flows(db, _principal(db, email))
        for flow in rows:
            state = "enabled" if flow.enabled else "disabled"
            click.echo(f"{flow.key:<24} v{flow.version:<4} {state:<9} {flow.title}")
        if not rows:
            click.echo("No flows yet: `minihost flows import FILE`.")


def _input_values(items: tuple[str, ...]) -> dict[str, Any]:
    """``-i key=value``: JSON values where they parse as JSON, text otherwise; dotted
    keys fill nested objects (``tasks.issue.description=…``)."""
    values: dict[str, Any] = {}
    for item in items:
        key, separator, raw = item.partition("=")
        if not separator or not key:
            raise click.UsageError(f"-i {item!r} is not KEY=VALUE")
        try:
            value: Any = json.loads(raw)
        except ValueError:
            value = raw
        target = values
        *parents, last = key.split(".")
        for part in parents:
            target = target.setdefault(part, {})
            if not isinstance(target, dict):
                raise click.UsageError(f"-i {item!r}: {part} is given as a value already")
        target[last] = value
    return values


@flows.command("run")
@click.argument("key")
@click.option("-i", "--input", "inputs", multiple=True, metavar="KEY=VALUE",
              help="A value of the run's input (repeatable; JSON where it parses; dotted "
                   "keys for blanks: tasks.<task>.<parameter>=…).")
@click.option("--wait", is_flag=True, help="Wait for the run to end, and print it.")
@click.option("--sandbox", is_flag=True, help="Run every task in sandbox mode.")
@AS_OPTION
@with_appcontext
def flows_run(key: str, inputs: tuple[str, ...], wait: bool, sandbox: bool,
              email: str | None) -> None:
    """Start a run of flow KEY. Without --wait the serving processes run it; with it,
    this command runs it too and prints the finished run (exit 1 unless it succeeded)."""
    from .services import flows as flows_service

    instance_service.prepare(current_app)
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    with get_database(app).sessions() as db:
        principal = _principal(db, email)
        flow = flows_service.get_flow(db, principal, key)
        run_id = flow_runs.start(app, db, principal, flow, _input_values(inputs),
                                 sandbox=sandbox, trigger={"type": "cli"}).run.id
    if not wait:
        click.echo(run_id)
        return
    flow_runs.wait_for(app, run_id, float(app.config["FLOW_TIMEOUT"]) + 60)
    with get_database(app).sessions() as db:
        body = flow_runs.run_object(db, flow_runs.get_run(db, principal, run_id))
    click.echo(json.dumps(body, indent=2))
    if body["status"] != "succeeded":
        sys.exit(1)


@flows.command("token")
@click.argument("key")
@AS_OPTION
@with_appcontext
def flows_token(key: str, email: str | None) -> None:
    """Print a token that may only start flow KEY (shown once, stored hashed)."""
    from .services import flows as flows_service

    instance_service.prepare(current_app)
    with get_database(current_app).sessions() as db:
        principal = _principal(db, email)
        flow = flows_service.get_flow(db, principal, key)
        secret = flows_service.create_token(db, principal, flow)
    click.echo(f"A token for flow {key}; it is shown only now:", err=True)
    click.echo(secret)


@cli.group()
def events() -> None:
    """Events: send an internal event to the workspace's flows (docs/flows.md)."""


@events.command("send")
@click.argument("event_type", metavar="TYPE")
@click.option("--data", "data", default=None, metavar="JSON",
              help="The event's data, as JSON ({{event.data…}} in triggers).")
@click.option("--id", "delivery_id", default=None, metavar="ID",
              help="Your id for the event: sending it again starts nothing.")
@click.option("--workspace", "email", envvar="MINIHOST_USER", metavar="EMAIL",
              help="Whose workspace, by its person's email (default: the only person on "
                   "this host; or MINIHOST_USER).")
@with_appcontext
def events_send(event_type: str, data: str | None, delivery_id: str | None,
                email: str | None) -> None:
    """Send an internal event of TYPE: every enabled flow with an event trigger for it
    starts. Prints the event's id and the runs it started."""
    from .services import events as events_service

    instance_service.prepare(current_app)
    body: dict[str, Any] = {"type": event_type}
    if data is not None:
        try:
            body["data"] = json.loads(data)
        except ValueError as error:
            raise click.UsageError(f"--data is not JSON ({error})") from None
    if delivery_id is not None:
        body["id"] = delivery_id
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    with get_database(app).sessions() as db:
        principal = _principal(db, email)
    answer = events_service.send_internal(app, principal, body, hand_off=False)
    event_id = str(answer.event_id)
    events_service.dispatch(app, event_id)  # here, not on a thread this command leaves
    with get_database(app).sessions() as db:
        shown = events_service.event_object(db, events_service.get_event(db, principal,
                                                                          event_id))
    replay = " (sent before: nothing started again)" if answer.status == 200 else ""
    click.echo(f"{event_id}{replay}")
    for run_id in shown["runs"]:
        click.echo(f"  started {run_id}")
    for failure in shown["failures"]:
        click.echo(f"  {failure['flow']}: {failure['error']}", err=True)


def main(prog_name: str = "minihost") -> None:
    """The ``minihost`` console script and ``python -m host``; ``prog_name`` is what
    usage messages call the command."""
    cli.main(prog_name=prog_name)
