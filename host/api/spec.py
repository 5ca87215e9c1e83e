"""The OpenAPI 3.1 document of the API, built from ``host.api.schemas`` and the list
of operations below. A test checks that every ``/api/v1`` route of the app is in
this list (and the other way round), so nothing goes undocumented.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from typing import Any

from ..version import __version__
from .pagination import DEFAULT_LIMIT, MAX_LIMIT
from .schemas import COMPONENTS

__all__ = ["OPERATIONS", "Operation", "document"]

MAX_BODY_BYTES = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Operation:
    method: str
    path: str
    summary: str
    tag: str
    responses: dict[int, str | None]  # status → schema name (None: no body)
    public: bool = False
    body: str | None = None
    body_required: bool = True
    query: tuple[dict[str, Any], ...] = ()
    description: str = ""
    errors: tuple[int, ...] = field(default=())


def _id(name: str, description: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "description": description,
            "schema": {"type": "string", "minLength": 1}}


LIMIT = {"name": "limit", "in": "query", "required": False,
         "description": f"Items per page, 1–{MAX_LIMIT} (default {DEFAULT_LIMIT}).",
         "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT}}
CURSOR = {"name": "cursor", "in": "query", "required": False,
          "description": "The `next` value of the previous page.", "schema": {"type": "string"}}
PAGE = (LIMIT, CURSOR)
FORM_VALUES = {"name": "values", "in": "query", "required": False, "style": "form",
               "explode": True, "description": "Current values of the fields the dropdowns "
               "depend on, one query parameter per field (JSON for object values).",
               "schema": {"type": "object"}}

INSTALLATION = "/api/v1/installations/{installation_id}"
FLOW = "/api/v1/flows/{key}"
FLOW_RUN = "/api/v1/flow-runs/{flow_run_id}"

OPERATIONS: tuple[Operation, ...] = (
    Operation("get", "/healthz", "Health of the host", "meta", {200: "Health"}, public=True,
              description="200 while the database answers, else a 503 problem. With a broker "
                          "(CELERY_BROKER_URL) it also reports the broker, the workers that "
                          "answered in the last 30 s and the queue; `degraded` (still 200) "
                          "when the broker or every worker is silent."),
    Operation("get", "/api/v1/openapi.json", "This document", "meta", {200: None},
              public=True),
    Operation("get", "/api/v1/miniapps", "Search the catalog", "catalog", {200: "MiniAppPage"},
              public=True, query=(
                  {"name": "q", "in": "query", "required": False, "schema": {"type": "string"},
                   "description": "Words that must all appear in the mini-app."},
                  {"name": "category", "in": "query", "required": False,
                   "schema": {"type": "string"}}, *PAGE), errors=(422,)),
    Operation("get", "/api/v1/miniapps/{name}", "One mini-app", "catalog",
              {200: "MiniAppDetail"}, public=True, query=(
                  {"name": "version", "in": "query", "required": False,
                   "schema": {"type": "string"}},), errors=(404,)),
    Operation("post", "/api/v1/installations", "Install a mini-app", "installations",
              {201: "Installation"}, body="InstallationCreate", errors=(400, 404, 422),
              description="apiKey/basic credentials are checked with the provider first "
                          "(422 with `providerMessage` when refused, nothing stored); OAuth "
                          "answers `pending` with an `authorizeUrl`."),
    Operation("get", "/api/v1/installations", "The workspace's installations", "installations",
              {200: "InstallationPage"}, query=PAGE, errors=(422,)),
    Operation("get", INSTALLATION, "One installation", "installations",
              {200: "Installation"}, errors=(404,)),
    Operation("patch", INSTALLATION, "Rename", "installations", {200: "Installation"},
              body="InstallationUpdate", errors=(400, 404, 422),
              description="A new connection name (unique in the workspace); flows name "
                          "their connections, so a flow using the old name stops finding it."),
    Operation("put", f"{INSTALLATION}/credentials", "Replace the credentials",
              "installations", {200: "Installation"}, body="Credentials",
              errors=(400, 404, 422),
              description="apiKey/basic: the new credentials are checked with the provider "
                          "before they replace the old (422 and nothing changed when "
                          "refused); the next run and flow task use them. OAuth mini-apps "
                          "answer 400: connect them again instead."),
    Operation("delete", INSTALLATION, "Uninstall", "installations", {204: None},
              errors=(404,), description="Runs unregistrationRequests, erases the "
                                         "credentials; runs and audit events stay."),
    Operation("post", f"{INSTALLATION}/connect", "Connect again", "installations",
              {200: "Installation"}, body="Connect", body_required=False,
              errors=(400, 404, 422),
              description="OAuth: answers `{\"authorizeUrl\"}`. apiKey/basic: send new "
                          "`credentials`; they are checked before they replace the old."),
    Operation("get", f"{INSTALLATION}/usage", "What uses this connection", "installations",
              {200: "Usage"}, errors=(404,)),
    Operation("get", f"{INSTALLATION}/actions/{{action}}/form", "An action's form",
              "runs", {200: "Form"}, query=(FORM_VALUES,), errors=(404, 409)),
    Operation("get", f"{INSTALLATION}/sources/{{source}}", "A dropdown's options", "runs",
              {200: "Options"}, query=(FORM_VALUES,), errors=(404, 409, 422, 502)),
    Operation("post", f"{INSTALLATION}/actions/{{action}}/runs", "Run an action", "runs",
              {201: "Run"}, body="RunCreate", errors=(400, 404, 409, 422),
              description="201 with the run whether it succeeded or failed; 422 with "
                          "per-field errors when a parameter is invalid (nothing is sent)."),
    Operation("get", "/api/v1/runs", "Runs, newest first", "runs", {200: "RunPage"}, query=(
        {"name": "installation", "in": "query", "required": False,
         "schema": {"type": "string"}},
        {"name": "status", "in": "query", "required": False,
         "schema": {"enum": ["running", "succeeded", "failed"]}},
        {"name": "kind", "in": "query", "required": False,
         "schema": {"enum": ["action", "source", "auth"]}}, *PAGE), errors=(404, 422)),
    Operation("get", "/api/v1/runs/{run_id}", "One run with its redacted trace", "runs",
              {200: "Run"}, errors=(404,)),
    Operation("post", "/api/v1/auth/token", "Sign in: email and password for a token", "meta",
              {201: "NewToken"}, public=True, body="TokenRequest", errors=(400, 401, 422, 429),
              description="For programs that sign in as a person. Wrong credentials answer "
                          "401; after 5 failures for an email (or 20 from one address) in "
                          "15 minutes, 429 with Retry-After. The token is shown once."),
    Operation("get", "/api/v1/flows", "The workspace's flows", "flows", {200: "FlowPage"},
              query=PAGE, errors=(422,)),
    Operation("post", "/api/v1/flows", "Create a flow, or save a new version", "flows",
              {201: "Flow", 200: "Flow"}, body="FlowDocument", errors=(400, 409, 422),
              description="201 for a new flow; 200 when a flow with this key exists (a new "
                          "version when the document changed). 422 with every lint problem "
                          "at its JSON pointer (and a `fix`); nothing is stored."),
    Operation("get", FLOW, "One flow with its input schema", "flows", {200: "Flow"},
              errors=(404,)),
    Operation("put", FLOW, "Save a new version", "flows", {200: "Flow"}, body="FlowUpdate",
              errors=(400, 404, 409, 422)),
    Operation("delete", FLOW, "Delete a flow with its runs", "flows", {204: None},
              errors=(404, 409), description="409 while a run of it is unfinished."),
    Operation("post", f"{FLOW}/enable", "Enable", "flows", {200: "Flow"}, errors=(404,)),
    Operation("post", f"{FLOW}/disable", "Disable", "flows", {200: "Flow"}, errors=(404,),
              description="A disabled flow's endpoint answers 409."),
    Operation("post", f"{FLOW}/tokens", "A token that may only start this flow", "flows",
              {201: "FlowToken"}, errors=(404,),
              description="Shown once; revoke it like any token."),
    Operation("post", f"{FLOW}/runs", "Start a run (the flow's endpoint)", "flows",
              {202: "FlowRun", 200: "FlowRun"}, body="FlowInput", body_required=False,
              errors=(400, 404, 409, 422), query=(
                  {"name": "sandbox", "in": "query", "required": False,
                   "schema": {"enum": ["true", "false"]},
                   "description": "Run every task in sandbox mode: nothing leaves the host."},
                  {"name": "Prefer", "in": "header", "required": False,
                   "schema": {"type": "string"},
                   "description": "`wait=N` (N ≤ 55): answer 200 with the finished run when "
                                  "it ends within N seconds."},
                  {"name": "Idempotency-Key", "in": "header", "required": False,
                   "schema": {"type": "string", "maxLength": 255},
                   "description": "The same key returns the same run for 24 hours."}),
              description="202 with the run and a Location header; 422 with per-field "
                          "errors when the body does not match the input schema (nothing "
                          "starts); 409 when the flow is disabled."),
    Operation("get", "/api/v1/flow-runs", "Flow runs, newest first", "flows",
              {200: "FlowRunPage"}, query=(
                  {"name": "flow", "in": "query", "required": False,
                   "schema": {"type": "string"}},
                  {"name": "status", "in": "query", "required": False,
                   "schema": {"enum": ["queued", "running", "succeeded", "failed",
                                       "cancelled", "timed_out"]}}, *PAGE),
              errors=(404, 422)),
    Operation("get", FLOW_RUN, "A flow run with its task runs", "flows", {200: "FlowRun"},
              errors=(404,)),
    Operation("post", f"{FLOW_RUN}/cancel", "Cancel a run", "flows", {200: "FlowRun"},
              errors=(404, 409)),
    Operation("post", f"{FLOW_RUN}/retry", "Retry what failed", "flows", {200: "FlowRun"},
              errors=(404, 409), description="Re-runs failed, cancelled and unknown tasks "
                                             "and what depends on them; keeps the outputs "
                                             "of tasks that succeeded."),
    Operation("post", f"{FLOW_RUN}/tasks/{{task}}/resolve", "Resolve an unknown task",
              "flows", {200: "FlowRun"}, body="TaskResolve", errors=(400, 404, 409, 422)),
    Operation("get", f"{INSTALLATION}/webhook-secret", "The webhook secret", "installations",
              {200: "WebhookSecretShown"}, errors=(404,),
              description="The secret the installation's webhooks are signed with, to paste "
                          "into the provider's settings beside `webhookUrl` (audited)."),
    Operation("put", f"{INSTALLATION}/webhook-secret", "Set the webhook secret",
              "installations", {200: "WebhookSecretShown"}, body="WebhookSecret",
              errors=(400, 404, 422),
              description="The secret the provider gave you (Stripe's whsec_…, Slack's "
                          "signing secret, Discord's public key), or none for a new one."),
    Operation("post", f"{INSTALLATION}/data-sources/{{data_source}}/sync", "Sync a data source",
              "installations", {200: "Synced"}, errors=(404, 409, 502),
              description="Lists every record (all pages) and emits `<source>.created`, "
                          "`.updated` and `.deleted` events for what changed; the first sync "
                          "only fills the records. A failing page changes nothing (502)."),
    Operation("get", f"{INSTALLATION}/data-sources/{{data_source}}/records",
              "A data source's records as last synced, by id", "installations",
              {200: "RecordPage"}, query=PAGE, errors=(404, 422)),
    Operation("post", "/api/v1/events", "Send an internal event", "events",
              {202: "Event", 200: "Event"}, body="EventSend", errors=(400, 422),
              description="Starts every enabled flow with an event trigger for its type "
                          "(without a connection). 202 with the stored event; 200 with the "
                          "first one when its `id` was sent before (nothing starts)."),
    Operation("get", "/api/v1/events", "Events received, newest first", "events",
              {200: "EventPage"}, query=(
                  {"name": "installation", "in": "query", "required": False,
                   "schema": {"type": "string"}},
                  {"name": "type", "in": "query", "required": False,
                   "schema": {"type": "string"}}, *PAGE), errors=(404, 422)),
    Operation("get", "/api/v1/events/{event_id}", "One event, with the runs it started",
              "events", {200: "Event"}, errors=(404,)),
    Operation("get", "/api/v1/audit", "Audit events, newest first", "audit",
              {200: "AuditPage"}, query=(
                  {"name": "installation", "in": "query", "required": False,
                   "schema": {"type": "string"}}, *PAGE), errors=(404, 422)),
)

PATH_PARAMETERS = {
    "installation_id": "An installation id (`ins_…`).",
    "action": "An action name of the installation's mini-app.",
    "source": "A source name (`rpc_…`).",
    "data_source": "A data source's name (`contacts`).",
    "run_id": "A run id (`run_…`).",
    "name": "A mini-app name.",
    "key": "A flow's key.",
    "flow_run_id": "A flow run id (`frn_…`).",
    "task": "A task's key in the flow.",
    "event_id": "An event id (`evt_…`).",
}
ERROR_TEXT = {400: "Malformed JSON, a body that is not JSON, or a request that cannot be "
                   "served as sent",
              401: "No valid API token or login session",
              404: "No such object in your workspace",
              409: "The installation is not connected, or the object is not in a state "
                   "that allows this",
              413: f"The body is larger than {MAX_BODY_BYTES // 1024} KB",
              422: "Invalid values, with per-field `errors`",
              429: "Too many requests; see `Retry-After`",
              502: "The provider failed; its message is in `detail`"}


def _problem(description: str) -> dict[str, Any]:
    return {"description": description,
            "content": {"application/problem+json": {"schema": {
                "$ref": "#/components/schemas/Problem"}}}}


def _operation(op: Operation) -> dict[str, Any]:
    parameters = [_id(name, text) for name, text in PATH_PARAMETERS.items()
                  if f"{{{name}}}" in op.path]
    parameters += list(op.query)
    responses: dict[str, Any] = {}
    for status, schema in op.responses.items():
        if schema is None:
            responses[str(status)] = {"description": "OK" if status < 300 else ""}
            if op.path.endswith("openapi.json"):
                responses[str(status)]["content"] = {"application/json": {"schema": {
                    "type": "object"}}}
        else:
            responses[str(status)] = {"description": "OK", "content": {"application/json": {
                "schema": {"$ref": f"#/components/schemas/{schema}"}}}}
    if op.path == f"{INSTALLATION}/connect":
        responses["200"]["content"]["application/json"]["schema"] = {"oneOf": [
            {"$ref": "#/components/schemas/Installation"},
            {"$ref": "#/components/schemas/AuthorizeUrl"}]}
    for status in op.errors:
        responses[str(status)] = _problem(ERROR_TEXT[status])
    if not op.public:
        responses["401"] = _problem(ERROR_TEXT[401])
        responses["429"] = _problem(ERROR_TEXT[429])
    if op.body:
        responses["413"] = _problem(ERROR_TEXT[413])
    responses["default"] = _problem("Any other error, always as problem JSON")
    item: dict[str, Any] = {
        "operationId": f"{op.method}_{op.path.strip('/').replace('/', '_').replace('{', '')}"
                       .replace("}", "").replace(".", "_").replace("-", "_"),
        "summary": op.summary,
        "tags": [op.tag],
        "parameters": parameters,
        "responses": responses,
    }
    if op.description:
        item["description"] = op.description
    if op.public:
        item["security"] = []
    if op.body:
        item["requestBody"] = {"required": op.body_required, "content": {"application/json": {
            "schema": {"$ref": f"#/components/schemas/{op.body}"}}}}
    return item


@cache
def document() -> dict[str, Any]:
    """The OpenAPI 3.1 description of this API (built once per process)."""
    paths: dict[str, dict[str, Any]] = {}
    for op in OPERATIONS:
        paths.setdefault(op.path, {})[op.method] = _operation(op)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Minihost API",
            "version": __version__,
            "summary": "Install mini-apps, connect them, run their actions.",
            "description": (
                "JSON in and out. Programs authenticate with `Authorization: Bearer <token>` "
                "(`minihost tokens create EMAIL`); browsers use their login session and send "
                "the CSRF token in `X-CSRFToken` on changes. Every error is RFC 9457 problem "
                "JSON. Lists take `?limit=` (1–200, default 50) and `?cursor=` and answer "
                f"`{{\"items\", \"next\"}}`. Bodies are limited to {MAX_BODY_BYTES // 1024} "
                "KB. Another workspace's ids answer 404. Each token may make the operator's "
                "`API_RATE_LIMIT` calls a minute (600 unless set); more answer 429 with "
                "`Retry-After`."),
        },
        "servers": [{"url": "/"}],
        "tags": [{"name": "meta"}, {"name": "catalog"}, {"name": "installations"},
                 {"name": "runs"}, {"name": "flows"}, {"name": "events"},
                 {"name": "audit"}],
        "security": [{"bearerToken": []}, {"sessionCookie": []}],
        "paths": paths,
        "components": {
            "schemas": COMPONENTS,
            "securitySchemes": {
                "bearerToken": {"type": "http", "scheme": "bearer",
                                "description": "An API token (`mh_…`)."},
                "sessionCookie": {"type": "apiKey", "in": "cookie", "name": "session",
                                  "description": "A signed-in browser; changes also need "
                                                 "the X-CSRFToken header."},
            },
        },
    }
