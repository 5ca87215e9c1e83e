"""The bundled mini-apps call their providers exactly as the providers document them.

Every request of every manifest under ``miniapps/`` (actions, sources, auth steps) is
checked, without any network, against the provider's own machine-readable API
description stored in ``shared/reference/provider-apis`` (see its SOURCES.md):

* REST (OpenAPI 3, Swagger 2, Google discovery): the method and the URL path, with
  each ``{{value}}`` / ``[[secret]]`` placeholder turned into a path-parameter
  wildcard, must be an operation of the description; the query parameter names and
  the top-level body field names must be parameters / properties it declares.
* GraphQL (Linear): every field the operation selects must exist on its type, from
  ``Query``/``Mutation`` down, and the keys of an input-object variable must be
  fields of that input type.

A request to a host or path no description covers must be listed in ``UNDESCRIBED``
with the reason. Descriptions that SOURCES.md calls partial or outdated (Slack,
Stripe, Notion) may miss something a manifest rightly uses: such a miss is tolerated
only through an entry of ``PATH_ALLOWED`` / ``PARAM_ALLOWED`` that says why, and an
entry that no longer hides a miss fails the run so the list stays honest.
"""

from __future__ import annotations

import gzip
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

REPO = Path(__file__).resolve().parents[2]
SPECS = Path(__file__).resolve().parents[3] / "shared" / "reference" / "provider-apis"

if not SPECS.is_dir():
    pytest.skip(f"provider API descriptions not found at {SPECS}", allow_module_level=True)

MINIAPPS = REPO / "miniapps"
METHODS = ("get", "post", "put", "patch", "delete")
_PLACEHOLDER = re.compile(r"\{\{[^{}]*\}\}|\[\[[^\[\]]*\]\]")
_WILDCARD = "\x00"  # what a placeholder becomes in a concrete path: never a literal

# Requests to places no stored description covers, by URL prefix, with the reason.
UNDESCRIBED = {
    "https://github.com/login/oauth/": "GitHub's OAuth web flow is not part of its REST "
    "API description (api.github.com only)",
    "https://oauth2.googleapis.com/token": "Google's OAuth 2.0 token endpoint has no "
    "discovery document",
    "https://api.linear.app/oauth/": "Linear's OAuth endpoints are REST, outside its "
    "GraphQL schema",
    "https://api.postmarkapp.com/": "Postmark publishes no machine-readable description "
    "(SOURCES.md)",
    "http://127.0.0.1:5000/demo-provider/": "the demo provider bundled with Minihost; its "
    "API is written down in plugins/demo_provider/demo-tasks/README.md",
}

# (manifest, JSON pointer) → why a method + path miss is acceptable.
PATH_ALLOWED = {
    ("slack", "/auth/get_token"): "Slack's 2021 Swagger lists oauth.v2.access as GET only; "
    "Slack's method page names POST with a form body as the preferred way (every Web API "
    "method accepts GET or POST) and the client secret should not travel in a query string",
    ("slack", "/auth/refresh_token"): "same endpoint as get_token: oauth.v2.access, "
    "documented as POST, listed as GET in the outdated Swagger",
}

# (manifest, JSON pointer, parameter or body field) → why an undeclared name is fine.
PARAM_ALLOWED = {
    ("slack", "/auth/refresh_token", "grant_type"): "token rotation (grant_type="
    "refresh_token) was added to oauth.v2.access after Slack stopped updating the Swagger "
    "in 2021",
    ("slack", "/auth/refresh_token", "refresh_token"): "token rotation parameter, newer than "
    "Slack's frozen 2021 Swagger",
}


# -- the manifests' requests --------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    manifest: str
    pointer: str
    request: dict[str, Any] = field(compare=False, hash=False)

    @property
    def method(self) -> str:
        return str(self.request.get("method", "")).upper()

    @property
    def url(self) -> str:
        return str(self.request.get("url", ""))

    @property
    def id(self) -> str:
        return f"{self.manifest}{self.pointer} {self.method} {self.url}"


def _requests_of(doc: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    auth = doc.get("auth") or {}
    for key in ("get_token", "refresh_token", "userDetails", "test", "token"):
        if isinstance(auth.get(key), dict):
            yield f"/auth/{key}", auth[key]
    for key in ("registrationRequests", "unregistrationRequests"):
        for index, request in enumerate(auth.get(key) or []):
            yield f"/auth/{key}/{index}", request
    for name, source in (doc.get("sources") or {}).items():
        for index, request in enumerate(source.get("requests") or []):
            yield f"/sources/{name}/requests/{index}", request
    for number, action in enumerate(doc.get("actions") or []):
        for index, request in enumerate(action.get("requests") or []):
            yield f"/actions/{number}/requests/{index}", request
    for name, data_source in (doc.get("dataSources") or {}).items():
        yield f"/dataSources/{name}/list", data_source["list"]


def _load_calls() -> list[Call]:
    calls = []
    for path in sorted(MINIAPPS.glob("*/manifest.json")):
        doc = json.loads(path.read_text("utf-8"))
        name = doc.get("name", path.parent.name)
        calls.extend(Call(name, pointer, request) for pointer, request in _requests_of(doc))
    return calls


CALLS = _load_calls()


# -- REST descriptions ----------------------------------------------------------------------


@dataclass
class Operation:
    method: str
    template: str
    pattern: re.Pattern[str]
    literals: int
    query: frozenset[str]
    body: frozenset[str] | None  # None: the description does not constrain the body


@dataclass
class RestSpec:
    name: str
    operations: list[Operation] = field(default_factory=list)

    def add(self, method: str, template: str, query: set[str], body: set[str] | None) -> None:
        regex, literals = _template_regex(template)
        self.operations.append(
            Operation(
                method.upper(),
                template,
                regex,
                literals,
                frozenset(query),
                None if body is None else frozenset(body),
            )
        )

    def matching(self, path: str) -> list[Operation]:
        found = [op for op in self.operations if op.pattern.fullmatch(path)]
        return sorted(found, key=lambda op: -op.literals)


def _template_regex(template: str) -> tuple[re.Pattern[str], int]:
    """``/repos/{owner}/{repo}`` → a regex; ``{+name}`` (Google) may span slashes."""
    parts, literals, position = [], 0, 0
    for match in re.finditer(r"\{(\+?)[^{}]+\}", template):
        literal = template[position : match.start()]
        parts.append(re.escape(literal))
        literals += len(literal.replace("/", ""))
        parts.append(".+" if match.group(1) else "[^/]+")
        position = match.end()
    tail = template[position:]
    parts.append(re.escape(tail))
    literals += len(tail.replace("/", ""))
    return re.compile("".join(parts)), literals


def _resolve(doc: dict[str, Any], node: Any) -> Any:
    seen = 0
    while isinstance(node, dict) and isinstance(node.get("$ref"), str) and seen < 50:
        target: Any = doc
        for token in node["$ref"].lstrip("#/").split("/"):
            target = target[token.replace("~1", "/").replace("~0", "~")]
        node, seen = target, seen + 1
    return node


def _property_names(doc: dict[str, Any], schema: Any, depth: int = 0) -> set[str] | None:
    """Top-level property names a body schema declares, or None when it is open."""
    schema = _resolve(doc, schema)
    if not isinstance(schema, dict) or depth > 10:
        return None
    names = set(schema.get("properties") or {})
    for key in ("allOf", "oneOf", "anyOf"):
        for sub in schema.get(key) or []:
            sub_names = _property_names(doc, sub, depth + 1)
            if sub_names is None:
                return None
            names |= sub_names
    if schema.get("additionalProperties") not in (None, False) or not names:
        return None
    return names


def _security_query_names(doc: dict[str, Any]) -> set[str]:
    schemes = (doc.get("components") or {}).get("securitySchemes") or {}
    schemes = schemes or doc.get("securityDefinitions") or {}
    return {
        s["name"]
        for s in schemes.values()
        if isinstance(s, dict) and s.get("type") == "apiKey" and s.get("in") == "query"
    }


def _add_openapi(spec: RestSpec, doc: dict[str, Any], base_path: str) -> None:
    extra = _security_query_names(doc)
    for template, item in doc.get("paths", {}).items():
        shared = [_resolve(doc, p) for p in item.get("parameters") or []]
        for method in METHODS:
            op = item.get(method)
            if not isinstance(op, dict):
                continue
            params = shared + [_resolve(doc, p) for p in op.get("parameters") or []]
            query = {p["name"] for p in params if p.get("in") == "query"} | extra
            body: set[str] | None = set()
            request_body = _resolve(doc, op.get("requestBody"))
            if isinstance(request_body, dict):
                body = set()
                for media in (request_body.get("content") or {}).values():
                    names = _property_names(doc, media.get("schema"))
                    if names is None:
                        body = None
                        break
                    body |= names
            spec.add(method, base_path + template, query, body)


@cache
def _json(relative: str) -> Any:
    with gzip.open(SPECS / relative, "rt", encoding="utf-8") as handle:
        return json.load(handle)


def _openapi_spec(relative: str) -> RestSpec:
    doc = _json(relative)
    spec = RestSpec(relative)
    _add_openapi(spec, doc, urlsplit(doc["servers"][0]["url"]).path.rstrip("/"))
    return spec


@cache
def github() -> RestSpec:
    return _openapi_spec("github/api.github.com.json.gz")


@cache
def stripe() -> RestSpec:
    return _openapi_spec("stripe/spec3.json.gz")


@cache
def discord() -> RestSpec:
    return _openapi_spec("discord/openapi.json.gz")


@cache
def notion() -> RestSpec:
    return _openapi_spec("notion/notion-openapi.json.gz")


@cache
def trello() -> RestSpec:
    return _openapi_spec("trello/trello-openapi.json.gz")


@cache
def hubspot() -> RestSpec:
    spec = RestSpec("hubspot")
    for doc in _json("hubspot/hubspot-specs.bundle.json.gz").values():
        servers = doc.get("servers") or [{}]
        parts = urlsplit(servers[0].get("url", ""))
        if parts.hostname == "api.hubapi.com":
            _add_openapi(spec, doc, parts.path.rstrip("/"))
    return spec


@cache
def slack() -> RestSpec:
    """Swagger 2. Slack takes a method's arguments from the query string or the body
    alike, so query, formData and body parameters form one set of accepted names."""
    doc = _json("slack/slack_web_openapi_v2_without_examples.json.gz")
    spec = RestSpec("slack")
    for template, item in doc["paths"].items():
        for method in METHODS:
            op = item.get(method)
            if not isinstance(op, dict):
                continue
            names: set[str] = set()
            for param in (_resolve(doc, p) for p in op.get("parameters") or []):
                if param.get("in") in ("query", "formData"):
                    names.add(param["name"])
                elif param.get("in") == "body":
                    names |= _property_names(doc, param.get("schema")) or set()
            spec.add(method, doc.get("basePath", "").rstrip("/") + template, names, names)
    return spec


def _discovery_spec(relative: str) -> RestSpec:
    doc = _json(relative)
    spec = RestSpec(relative)
    service = "/" + urlsplit(doc["rootUrl"] + doc["servicePath"]).path.strip("/")
    global_query = set(doc.get("parameters") or {})

    def walk(resources: dict[str, Any]) -> None:
        for resource in resources.values():
            for method in (resource.get("methods") or {}).values():
                template = method.get("flatPath") or method["path"]
                query = {
                    name
                    for name, p in (method.get("parameters") or {}).items()
                    if p.get("location") == "query"
                }
                body: set[str] | None = set()
                if "request" in method:
                    schema = doc["schemas"][method["request"]["$ref"]]
                    body = set(schema.get("properties") or {}) or None
                path = service.rstrip("/") + "/" + template
                spec.add(method["httpMethod"], path, query | global_query, body)
            walk(resource.get("resources") or {})

    walk(doc.get("resources") or {})
    return spec


@cache
def google_sheets() -> RestSpec:
    return _discovery_spec("google/sheets.v4.json.gz")


@cache
def google_drive() -> RestSpec:
    return _discovery_spec("google/drive.v3.json.gz")


# -- GraphQL (Linear) -----------------------------------------------------------------------


@dataclass
class GraphQLSchema:
    roots: dict[str, str]  # operation kind → type name
    fields: dict[str, dict[str, str]]  # type name → field → named type
    inputs: dict[str, dict[str, str]]  # input type name → field → named type


def _strip_sdl(text: str) -> str:
    text = re.sub(r'""".*?"""', " ", text, flags=re.S)
    text = re.sub(r'"(?:[^"\\\n]|\\.)*"', " ", text)
    return re.sub(r"#[^\n]*", " ", text)


def _without_parentheses(text: str) -> str:
    out, depth = [], 0
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif depth == 0:
            out.append(char)
    return "".join(out)


@cache
def linear() -> GraphQLSchema:
    with gzip.open(SPECS / "linear" / "schema.graphql.gz", "rt", encoding="utf-8") as handle:
        text = _strip_sdl(handle.read())
    roots = {"query": "Query", "mutation": "Mutation"}
    schema_block = re.search(r"^schema\s*\{(.*?)\}", text, re.S | re.M)
    if schema_block:
        roots.update(re.findall(r"(\w+)\s*:\s*(\w+)", schema_block.group(1)))
    fields: dict[str, dict[str, str]] = {}
    inputs: dict[str, dict[str, str]] = {}
    block = re.compile(r"^(type|interface|input)\s+(\w+)[^{]*\{(.*?)^\}", re.S | re.M)
    for kind, name, body in block.findall(text):
        members = dict(re.findall(r"^\s*(\w+)\s*:\s*\[*\s*(\w+)", _without_parentheses(body), re.M))
        (inputs if kind == "input" else fields)[name] = members
    return GraphQLSchema(roots, fields, inputs)


_GQL_TOKEN = re.compile(r'\s+|,|#[^\n]*|"(?:[^"\\]|\\.)*"|\.\.\.|\$?\w+|[{}():!=@\[\]]')


def _gql_tokens(text: str) -> list[str]:
    tokens, position = [], 0
    while position < len(text):
        match = _GQL_TOKEN.match(text, position)
        if not match:
            raise ValueError(f"cannot read GraphQL at {text[position : position + 20]!r}")
        token = match.group()
        position = match.end()
        if token.strip() and token != "," and not token.startswith("#"):
            tokens.append(token)
    return tokens


def _skip_group(tokens: list[str], index: int, open_: str, close: str) -> int:
    depth = 0
    while index < len(tokens):
        if tokens[index] == open_:
            depth += 1
        elif tokens[index] == close:
            depth -= 1
            if depth == 0:
                return index + 1
        index += 1
    raise ValueError(f"unbalanced {open_}{close}")


def _selection(tokens: list[str], index: int) -> tuple[dict[str, Any], int]:
    """Parse ``{ a b(x: 1) { c } alias: d }`` → ({"a": {}, "b": {"c": {}}, "d": {}}, next)."""
    assert tokens[index] == "{", tokens[index:]
    index += 1
    fields: dict[str, Any] = {}
    while tokens[index] != "}":
        if tokens[index] == "...":
            raise ValueError("fragments are not supported by this check; inline the fields")
        name = tokens[index]
        index += 1
        if index < len(tokens) and tokens[index] == ":":
            name = tokens[index + 1]
            index += 2
        if tokens[index] == "(":
            index = _skip_group(tokens, index, "(", ")")
        while tokens[index] == "@":
            index += 2
            if tokens[index] == "(":
                index = _skip_group(tokens, index, "(", ")")
        children: dict[str, Any] = {}
        if tokens[index] == "{":
            children, index = _selection(tokens, index)
        fields.setdefault(name, {}).update(children)
    return fields, index + 1


def _operation(query: str) -> tuple[str, dict[str, str], dict[str, Any]]:
    """(kind, {variable: named type}, selection) of a single-operation document."""
    tokens = _gql_tokens(query)
    index, kind = 0, "query"
    if tokens[0] in ("query", "mutation", "subscription"):
        kind, index = tokens[0], 1
        if tokens[index] not in ("(", "{"):
            index += 1  # the operation name
    variables: dict[str, str] = {}
    if tokens[index] == "(":
        end = _skip_group(tokens, index, "(", ")")
        group = tokens[index + 1 : end - 1]
        for position, token in enumerate(group):
            if token.startswith("$") and position + 1 < len(group) and group[position + 1] == ":":
                rest = [t for t in group[position + 2 :] if t not in ("[", "]", "!")]
                variables[token[1:]] = rest[0]
        index = end
    selection, index = _selection(tokens, index)
    if index != len(tokens):
        raise ValueError("one operation per request, please")
    return kind, variables, selection


def _graphql_problems(call: Call) -> list[str]:
    schema = linear()
    body = call.request.get("body") or {}
    if call.method != "POST":
        return [f"GraphQL requests are POST, not {call.method}"]
    if not isinstance(body.get("query"), str):
        return ["the body has no GraphQL query string"]
    kind, variables, selection = _operation(body["query"])
    problems: list[str] = []

    def check(type_name: str, chosen: dict[str, Any], trail: str) -> None:
        known = schema.fields.get(type_name)
        if known is None:
            problems.append(f"{trail}: {type_name} is not an object type of the schema")
            return
        for name, children in chosen.items():
            if name == "__typename":
                continue
            if name not in known:
                problems.append(f"{trail}.{name}: {type_name} has no field {name!r}")
            elif children:
                check(known[name], children, f"{trail}.{name}")

    root = schema.roots.get(kind, "")
    check(root, selection, root)
    values = body.get("variables") or {}
    for name, value in values.items():
        type_name = variables.get(name)
        if type_name is None:
            problems.append(f"variable {name!r} is not declared by the operation")
        elif isinstance(value, dict) and type_name in schema.inputs:
            for key in value:
                if key not in schema.inputs[type_name]:
                    problems.append(f"${name}.{key}: {type_name} has no input field {key!r}")
    return problems


# -- which description covers a URL -----------------------------------------------------------

REST: dict[str, Callable[[], RestSpec]] = {
    "https://api.github.com": github,
    "https://slack.com/api": slack,
    "https://sheets.googleapis.com": google_sheets,
    "https://www.googleapis.com/drive/v3": google_drive,
    "https://api.notion.com": notion,
    "https://api.hubapi.com": hubspot,
    "https://api.stripe.com": stripe,
    "https://discord.com/api/v10": discord,
    "https://api.trello.com/1": trello,
}
GRAPHQL = {"https://api.linear.app/graphql": linear}


def _split(url: str) -> tuple[str, str]:
    """(origin + path with placeholders as wildcards, query string)."""
    head, _, query = url.partition("?")
    return _PLACEHOLDER.sub(_WILDCARD, head), query


def _path_of(url: str) -> str:
    """The URL's path with placeholders as wildcards (descriptions include their base path)."""
    return "/" + _split(url)[0].split("://", 1)[1].partition("/")[2]


def _rest_base(url: str) -> str | None:
    path, _ = _split(url)
    for base in REST:
        if path.startswith(base + "/"):
            return base
    return None


def _graphql_endpoint(url: str) -> str | None:
    path, _ = _split(url)
    return path if path in GRAPHQL else None


def _undescribed(url: str) -> str | None:
    return next((prefix for prefix in UNDESCRIBED if url.startswith(prefix)), None)


REST_CALLS = [c for c in CALLS if _rest_base(c.url)]
GRAPHQL_CALLS = [c for c in CALLS if _graphql_endpoint(c.url)]


def _path_problem(call: Call) -> str | None:
    base = _rest_base(call.url)
    assert base is not None
    spec = REST[base]()
    path = _path_of(call.url)
    candidates = spec.matching(path)
    if not candidates:
        shown = path.replace(_WILDCARD, "{…}")
        return f"{spec.name} describes no path matching {shown!r}"
    if not any(op.method == call.method for op in candidates):
        offered = sorted({f"{op.method} {op.template}" for op in candidates})
        return f"{spec.name} has no {call.method} there; it offers {offered}"
    return None


def _names_sent(call: Call) -> tuple[set[str], set[str]]:
    """(query parameter names, top-level body field names); ``a[0][b]`` counts as ``a``."""
    query = {str(k).split("[")[0] for k in (call.request.get("queryParams") or {})}
    query |= {part.split("=")[0].split("[")[0] for part in _split(call.url)[1].split("&") if part}
    body = call.request.get("body")
    fields = {str(k).split("[")[0] for k in body} if isinstance(body, dict) else set()
    return query, fields


def _param_problems(call: Call) -> list[tuple[str, str]]:
    base = _rest_base(call.url)
    assert base is not None
    spec = REST[base]()
    candidates = spec.matching(_path_of(call.url))
    chosen = [op for op in candidates if op.method == call.method]
    if not chosen and (call.manifest, call.pointer) in PATH_ALLOWED:
        chosen = candidates  # the method is allowlisted; compare with what the path offers
    if not chosen:
        return []  # test_request_path_is_described reports it
    op = chosen[0]
    query, body = _names_sent(call)
    problems = [
        (name, f"query parameter {name!r} is not declared by {op.method} {op.template}")
        for name in sorted(query - op.query)
    ]
    if op.body is not None:
        problems += [
            (name, f"body field {name!r} is not declared by {op.method} {op.template}")
            for name in sorted(body - op.body)
        ]
    return problems


# -- tests ------------------------------------------------------------------------------------


def test_bundled_manifests_have_requests() -> None:
    assert CALLS, f"no manifest with requests under {MINIAPPS}"


@pytest.mark.parametrize("call", CALLS, ids=lambda c: c.id)
def test_every_request_is_checked_or_explained(call: Call) -> None:
    covered = _rest_base(call.url) or _graphql_endpoint(call.url) or _undescribed(call.url)
    assert covered, (
        f"{call.id}: no stored provider description covers this URL; add the description "
        "to shared/reference/provider-apis, or explain the gap in UNDESCRIBED"
    )


@pytest.mark.parametrize("call", REST_CALLS, ids=lambda c: c.id)
def test_request_path_is_described(call: Call) -> None:
    problem = _path_problem(call)
    if problem and (call.manifest, call.pointer) in PATH_ALLOWED:
        return
    assert problem is None, f"{call.id}: {problem}"


@pytest.mark.parametrize("call", REST_CALLS, ids=lambda c: c.id)
def test_request_parameters_are_declared(call: Call) -> None:
    problems = [
        message
        for name, message in _param_problems(call)
        if (call.manifest, call.pointer, name) not in PARAM_ALLOWED
    ]
    assert not problems, f"{call.id}: " + "; ".join(problems)


@pytest.mark.parametrize("call", GRAPHQL_CALLS, ids=lambda c: c.id)
def test_graphql_operation_matches_schema(call: Call) -> None:
    problems = _graphql_problems(call)
    assert not problems, f"{call.id}: " + "; ".join(problems)


@pytest.mark.parametrize("key", sorted(PATH_ALLOWED), ids=lambda k: " ".join(k))
def test_path_allowlist_entry_is_still_needed(key: tuple[str, str]) -> None:
    calls = [c for c in REST_CALLS if (c.manifest, c.pointer) == key]
    assert calls, f"{key} names no request to a described provider; drop the entry"
    assert _path_problem(calls[0]) is not None, f"{key} matches its description now; drop it"


@pytest.mark.parametrize("key", sorted(PARAM_ALLOWED), ids=lambda k: " ".join(k))
def test_param_allowlist_entry_is_still_needed(key: tuple[str, str, str]) -> None:
    calls = [c for c in REST_CALLS if (c.manifest, c.pointer) == key[:2]]
    assert calls, f"{key} names no request to a described provider; drop the entry"
    names = {name for name, _ in _param_problems(calls[0])}
    assert key[2] in names, f"{key}: {key[2]!r} is declared now; drop the entry"
