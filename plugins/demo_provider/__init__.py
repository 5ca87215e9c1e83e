"""The demo provider: a real OAuth 2.0 authorization server and a small tasks API,
mounted under ``/demo-provider/`` when Minihost runs with ``DEMO`` on
(``minihost serve --demo``). Development only.

It lets anyone try the whole product on one machine with no internet: an OAuth
connect with PKCE, dropdowns that depend on each other, refresh-token rotation,
and actions — through the ``demo-tasks`` mini-app this plugin contributes to the
catalog (in its ``demo-tasks/`` folder), whose README is the contract this
provider implements. Its data lives in its own SQLite file,
``instance/demo-provider.sqlite``, like another company's service would.

Sign in at the provider as ``demo`` / ``demo``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import threading
import time
import urllib.error
import urllib.request
from datetime import date
from pathlib import Path
from typing import Any

from flask import (
    Blueprint,
    Flask,
    Response,
    current_app,
    redirect,
    render_template_string,
    request,
    session,
    url_for,
)

from host.plugins import hookimpl

from .oauth import SCOPES, User, build_server
from .store import DEMO_USER, Store

__version__ = "1.0.0"
MINIHOST_REQUIRES = ">=0.1"

CLIENT_ID = "minihost-demo"
DEFAULT_LIFETIME = 3600
SESSION_KEY = "demo_provider_user"

blueprint = Blueprint("demo_provider", __name__, url_prefix="/demo-provider")

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ title }} · Demo Provider</title>
<link rel="stylesheet" href="{{ url_for('static', filename='minihost.css') }}"></head>
<body><header class="site-header"><nav aria-label="Demo provider">
<span class="brand">Demo Provider</span><span class="account-nav">a pretend outside service</span>
</nav></header><main id="main" class="narrow">{{ body | safe }}</main></body></html>"""

LOGIN = """<section class="panel"><h1>Sign in to Demo Provider</h1>
{% if error %}<p class="form-error" role="alert">{{ error }}</p>{% endif %}
<form method="post"><input type="hidden" name="csrf_token" value="{{ csrf_token() }}">
<div class="field"><label for="username">Username</label>
<input type="text" id="username" name="username" autocomplete="username" required></div>
<div class="field"><label for="password">Password</label>
<input type="password" id="password" name="password" autocomplete="current-password" required></div>
<button type="submit">Sign in</button></form>
<p class="help">The demo account is <code>demo</code> with password <code>demo</code>.</p>
</section>"""

CONSENT = """<section class="panel"><h1>Allow access?</h1>
<p><strong>{{ client }}</strong> asks to use your Demo Provider account ({{ user }}):</p>
<ul>{% for scope in scopes %}
<li><code>{{ scope }}</code> — {{ describe[scope] }}</li>{% endfor %}</ul>
<form method="post"><input type="hidden" name="csrf_token" value="{{ csrf_token() }}">
<div class="actions-row"><button type="submit" name="decision" value="allow">Allow</button>
<button type="submit" name="decision" value="deny" class="button-secondary">Deny</button></div>
</form></section>"""

DESCRIBE = {"tasks:read": "see your projects and tasks", "tasks:write": "add and complete tasks",
            "profile": "see your name and email"}


def _store() -> Store:
    return current_app.extensions["demo_provider"]["store"]


def _page(title: str, body: str, status: int = 200, **context: Any) -> tuple[str, int]:
    inner = render_template_string(body, **context)
    return render_template_string(PAGE, title=title, body=inner), status


@blueprint.before_request
def only_in_demo_mode() -> Response | None:
    if not current_app.config.get("DEMO"):
        return _json({"error": "not_found", "message": "the demo provider is off; run "
                                                       "`minihost serve --demo`"}, 404)
    return None


@blueprint.route("/login", methods=["GET", "POST"])
def login() -> Any:
    target = request.args.get("next", "")
    if not target.startswith("/demo-provider/"):
        target = url_for("demo_provider.authorize")
    if request.method == "POST":
        user = _store().check_login(request.form.get("username", ""),
                                    request.form.get("password", ""))
        if user is None:
            return _page("Sign in", LOGIN, 401, error="Wrong username or password.")
        session[SESSION_KEY] = user["id"]
        return redirect(target)
    return _page("Sign in", LOGIN, error=None)


@blueprint.route("/oauth/authorize", methods=["GET", "POST"])
def authorize() -> Any:
    server = current_app.extensions["demo_provider"]["server"]
    user_id = session.get(SESSION_KEY)
    if user_id is None:
        return redirect(url_for("demo_provider.login", next=request.full_path))
    if request.method == "GET":
        try:
            grant = server.get_consent_grant(end_user=User(user_id))
        except Exception as error:  # authlib reports a bad request as an exception
            message = getattr(error, "description", None) or str(error)
            return _page("Cannot continue", f"<section class='panel'><h1>This sign-in "
                         f"request is not valid</h1><p>{_escape(message)}</p></section>", 400)
        user = _store().one("SELECT name, email FROM users WHERE id = ?", user_id)
        scopes = [s for s in (grant.request.payload.scope or "").split() if s in DESCRIBE]
        return _page("Allow access", CONSENT, client=grant.client.get_client_id(),
                     user=user["email"], scopes=scopes, describe=DESCRIBE)
    try:
        grant = server.get_consent_grant(end_user=User(user_id))
    except Exception as error:  # the same checks as the consent page
        message = getattr(error, "description", None) or str(error)
        return _page("Cannot continue", f"<section class='panel'><h1>This sign-in request is "
                     f"not valid</h1><p>{_escape(message)}</p></section>", 400)
    grant_user = User(user_id) if request.form.get("decision") == "allow" else None
    return server.create_authorization_response(grant_user=grant_user, grant=grant)


@blueprint.post("/oauth/token")
def token() -> Any:
    delay = current_app.extensions["demo_provider"]["token_delay"]
    if delay:
        time.sleep(delay)
    return current_app.extensions["demo_provider"]["server"].create_token_response()


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


# -- the tasks API -----------------------------------------------------------------------


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps(body), status=status, headers=headers,
                    mimetype="application/json")


def _error(status: int, code: str, message: str) -> Response:
    headers = {"WWW-Authenticate": f'Bearer error="{code}"'} if status == 401 else None
    return _json({"error": code, "message": message}, status, headers)


def _caller(scope: str) -> tuple[str | None, Response | None]:
    header = request.headers.get("Authorization", "")
    if not header.lower().startswith("bearer "):
        return None, _error(401, "invalid_token", "send Authorization: Bearer <token>")
    row = _store().one("SELECT * FROM tokens WHERE access_token = ?", header[7:].strip())
    if row is None or row["revoked"]:
        return None, _error(401, "invalid_token", "the access token is unknown or revoked")
    if row["issued_at"] + row["expires_in"] < time.time():
        return None, _error(401, "invalid_token", "the access token expired")
    if scope not in (row["scope"] or "").split():
        return None, _error(403, "insufficient_scope", f"this needs the {scope} scope")
    current_app.extensions["demo_provider"]["api_calls"] += 1
    return row["user_id"], None


def _task(row: Any) -> dict[str, Any]:
    return {"id": row["id"], "title": row["title"], "notes": row["notes"] or "",
            "done": bool(row["done"]), "due": row["due"], "projectId": row["project_id"]}


@blueprint.get("/api/userinfo")
def userinfo() -> Response:
    user_id, refused = _caller("profile")
    if refused:
        return refused
    row = _store().one("SELECT id, name, email FROM users WHERE id = ?", user_id)
    return _json({"sub": row["id"], "name": row["name"], "email": row["email"]})


@blueprint.get("/api/projects")
def projects() -> Response:
    user_id, refused = _caller("tasks:read")
    if refused:
        return refused
    rows = _store().all("SELECT id, name FROM projects WHERE user_id = ? ORDER BY position",
                        user_id)
    return _json({"projects": [{"id": r["id"], "name": r["name"]} for r in rows]})


def _own_project(user_id: str, project_id: str) -> bool:
    return _store().one("SELECT 1 FROM projects WHERE id = ? AND user_id = ?", project_id,
                        user_id) is not None


@blueprint.route("/api/projects/<project_id>/tasks", methods=["GET", "POST"])
def tasks(project_id: str) -> Response:
    user_id, refused = _caller("tasks:read" if request.method == "GET" else "tasks:write")
    if refused:
        return refused
    if not _own_project(user_id, project_id):
        return _error(404, "not_found", f"no project {project_id}")
    store = _store()
    if request.method == "GET":
        status = request.args.get("status", "all")
        if status not in ("open", "done", "all"):
            return _error(400, "invalid_request", "status must be open, done or all")
        where = {"open": " AND done = 0", "done": " AND done = 1", "all": ""}[status]
        rows = store.all(f"SELECT * FROM tasks WHERE project_id = ?{where} ORDER BY created",
                         project_id)
        return _json({"tasks": [_task(r) for r in rows]})
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        return _error(400, "invalid_request", "send a JSON object")
    title, notes, due = body.get("title"), body.get("notes", ""), body.get("due")
    if not isinstance(title, str) or not 1 <= len(title.strip()) <= 200:
        return _error(400, "invalid_request", "title must be 1 to 200 characters")
    if not isinstance(notes, str) or len(notes) > 5000:
        return _error(400, "invalid_request", "notes must be text of at most 5000 characters")
    if due is not None:
        try:
            date.fromisoformat(due if isinstance(due, str) and re.fullmatch(
                r"\d{4}-\d{2}-\d{2}", due) else "x")
        except ValueError:
            return _error(400, "invalid_request", "due must be a date such as 2026-12-31")
    task_id = f"tsk_{secrets.token_hex(4)}"
    with store.transaction() as db:
        db.execute("INSERT INTO tasks VALUES (?, ?, ?, ?, 0, ?, ?)",
                   (task_id, project_id, title.strip(), notes, due, time.time()))
    created = _task(store.one("SELECT * FROM tasks WHERE id = ?", task_id))
    _deliver(user_id, "task.created", created)
    return _json(created, 201)


@blueprint.get("/api/tasks")
def all_tasks() -> Response:
    """Every task of the caller, oldest first, ``per_page`` (1–100, default 50) at a
    time: ``?page=`` from 1; a page past the end is empty."""
    user_id, refused = _caller("tasks:read")
    if refused:
        return refused
    try:
        page = int(request.args.get("page", "1"))
        per_page = int(request.args.get("per_page", "50"))
    except ValueError:
        return _error(400, "invalid_request", "page and per_page are whole numbers")
    if page < 1 or not 1 <= per_page <= 100:
        return _error(400, "invalid_request", "page starts at 1; per_page is 1 to 100")
    rows = _store().all(
        "SELECT tasks.* FROM tasks JOIN projects ON projects.id = tasks.project_id "
        "WHERE projects.user_id = ? ORDER BY tasks.created, tasks.id LIMIT ? OFFSET ?",
        user_id, per_page, (page - 1) * per_page)
    return _json({"tasks": [_task(r) for r in rows], "page": page})


@blueprint.post("/api/tasks/<task_id>/complete")
def complete(task_id: str) -> Response:
    user_id, refused = _caller("tasks:write")
    if refused:
        return refused
    store = _store()
    row = store.one("SELECT tasks.* FROM tasks JOIN projects ON projects.id = tasks.project_id "
                    "WHERE tasks.id = ? AND projects.user_id = ?", task_id, user_id)
    if row is None:
        return _error(404, "not_found", f"no task {task_id}")
    with store.transaction() as db:
        db.execute("UPDATE tasks SET done = 1 WHERE id = ?", (task_id,))
    completed = _task(store.one("SELECT * FROM tasks WHERE id = ?", task_id))
    if not row["done"]:
        _deliver(user_id, "task.completed", completed)
    return _json(completed)


# -- webhooks: the provider tells subscribers what changed -----------------------------


@blueprint.route("/api/webhooks", methods=["GET", "POST"])
def webhooks() -> Response:
    """Subscribe a URL to the caller's task changes (``task.created``,
    ``task.completed``); the answer carries the signing secret, once."""
    user_id, refused = _caller("tasks:read")
    if refused:
        return refused
    store = _store()
    if request.method == "GET":
        rows = store.all("SELECT id, url FROM webhooks WHERE user_id = ? ORDER BY created",
                         user_id)
        return _json({"webhooks": [{"id": r["id"], "url": r["url"]} for r in rows]})
    body = request.get_json(silent=True)
    url = body.get("url") if isinstance(body, dict) else None
    if not isinstance(url, str) or not re.fullmatch(r"https?://\S{1,2000}", url):
        return _error(400, "invalid_request", "url must be an http(s) URL")
    webhook = {"id": f"whk_{secrets.token_hex(4)}", "url": url,
               "secret": f"dwhsec_{secrets.token_urlsafe(24)}"}
    with store.transaction() as db:
        db.execute("INSERT INTO webhooks VALUES (?, ?, ?, ?, ?)",
                   (webhook["id"], user_id, url, webhook["secret"], time.time()))
    return _json(webhook, 201)


@blueprint.delete("/api/webhooks/<webhook_id>")
def unsubscribe(webhook_id: str) -> Response:
    user_id, refused = _caller("tasks:read")
    if refused:
        return refused
    store = _store()
    if store.one("SELECT 1 FROM webhooks WHERE id = ? AND user_id = ?", webhook_id,
                 user_id) is None:
        return _error(404, "not_found", f"no webhook {webhook_id}")
    with store.transaction() as db:
        db.execute("DELETE FROM webhooks WHERE id = ?", (webhook_id,))
    return Response(status=204)


def _deliver(user_id: str, kind: str, task: dict[str, Any]) -> None:
    """Send the change to each subscriber, signed, from a thread of its own (after
    this answer, as a real service's queue would), retrying a few times."""
    rows = _store().all("SELECT url, secret FROM webhooks WHERE user_id = ?", user_id)
    if not rows:
        return
    event = {"id": f"evt_{secrets.token_hex(8)}", "type": kind,
             "createdAt": int(time.time()), "data": task}
    body = json.dumps(event, separators=(",", ":")).encode()
    for row in rows:
        threading.Thread(target=_post, args=(row["url"], row["secret"], body), daemon=True,
                         name="demo-provider-webhook").start()


def _post(url: str, secret: str, body: bytes) -> None:
    for attempt in range(4):
        stamp = str(int(time.time()))
        signature = hmac.new(secret.encode(), stamp.encode() + b"." + body,
                             hashlib.sha256).hexdigest()
        outgoing = urllib.request.Request(url, data=body, method="POST", headers={
            "Content-Type": "application/json", "X-Demo-Timestamp": stamp,
            "X-Demo-Signature": f"sha256={signature}", "User-Agent": "DemoProvider-Webhook"})
        try:
            with urllib.request.urlopen(outgoing, timeout=10) as answer:
                if 200 <= answer.status < 300:
                    return
        except (OSError, urllib.error.HTTPError):
            pass
        time.sleep(0.5 * 2 ** attempt)


# -- wiring ------------------------------------------------------------------------------


def setup(app: Flask) -> dict[str, Any]:
    """Open the store, register Minihost's client with it, and describe the demo login."""
    store = Store(Path(app.instance_path) / "demo-provider.sqlite")
    lifetime = int(app.config.get("DEMO_TOKEN_LIFETIME", DEFAULT_LIFETIME))
    redirect_uri = f"{app.config['PUBLIC_URL']}/connect/demo-tasks/callback"
    secret = store.ensure_client(CLIENT_ID, redirect_uri, " ".join(SCOPES))
    state = {"store": store, "server": build_server(store, lifetime), "client_id": CLIENT_ID,
             "client_secret": secret, "token_delay": float(app.config.get(
                 "DEMO_TOKEN_DELAY", 0)), "api_calls": 0,
             "login": (DEMO_USER[0], DEMO_USER[1])}
    app.extensions["demo_provider"] = state
    return state


@blueprint.before_app_request
def _register_client() -> None:
    """Give Minihost the demo's OAuth client for ``demo-tasks``, once per process,
    through the same service an operator's ``minihost clients set`` uses."""
    state = current_app.extensions.get("demo_provider")
    if state is None or state.get("client_registered"):
        return
    from host.db import get_database
    from host.errors import NotFound
    from host.services import clients

    try:
        with get_database(current_app).transaction() as db:
            clients.set_client(current_app, db, "demo-tasks", state["client_id"],
                               state["client_secret"], "demo")
    except NotFound:  # demo-tasks is not in this host's catalog: nothing to connect
        pass
    state["client_registered"] = True


DEMO_TASKS = Path(__file__).resolve().parent / "demo-tasks"


@hookimpl
def miniapp_manifests(config: Any) -> list[str]:
    """The ``demo-tasks`` mini-app, only where it can work: with ``DEMO`` on, which
    also allows the private egress its loopback ``allowedHosts`` need."""
    return [str(DEMO_TASKS)] if config.get("DEMO") else []


@hookimpl
def register_blueprints(app: Flask) -> list[Blueprint]:
    if app.config.get("DEMO"):
        setup(app)
    return [blueprint]
