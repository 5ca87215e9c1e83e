"""Reading, validating and compiling manifests.

``validate_document`` returns every problem at once (schema, then lint);
``compile_manifest`` turns a valid document into the frozen
:class:`~host.manifest.model.Manifest` that runs use, or raises
:class:`~host.errors.ManifestError` listing every problem.
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import json
import re
import sys
from collections.abc import Collection, Mapping
from dataclasses import replace
from functools import cache
from importlib import metadata, resources
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError as SchemaViolation

from ..engine.pagination import DEFAULT_MAX_PAGES, Pagination
from ..engine.paths import compile_path
from ..engine.sandbox import sample
from ..engine.schemas import REGISTRY
from ..engine.template import compile_template, compile_url, compile_value
from ..errors import ManifestError, ManifestProblem
from ..version import __version__
from .form import Form, build_form
from .lint import BUILTIN_AUTH_TYPES, lint
from .model import (
    Action,
    ArrayMapping,
    Auth,
    Authorize,
    Challenge,
    DataSource,
    EventMapping,
    Expect,
    Manifest,
    ObjectMapping,
    RateLimit,
    Request,
    Source,
    Webhooks,
    WebhookVerify,
)

MANIFEST_NAMES = ("manifest.json", "manifest.yaml", "manifest.yml")
MAX_MANIFEST_BYTES = 2 * 1024 * 1024
_CLIENT_PLACEHOLDER = re.compile(r"\[\[\s*client(Id|Secret|BasicAuth)\b")
_SECRET_ROOT = re.compile(r"\[\[\s*([A-Za-z_][A-Za-z0-9_]*)")
_CLIENT_SECRET_PLACEHOLDER = re.compile(r"\[\[\s*client(Secret|BasicAuth)\b")
MAX_DEPTH = 64
ICON_SUFFIXES = (".svg", ".png")


@cache
def manifest_schema() -> dict[str, Any]:
    """The published JSON Schema of manifests (``minihost schema`` prints it)."""
    text = resources.files("host.manifest").joinpath("schema.json").read_text("utf-8")
    return json.loads(text)


@cache
def _validator() -> Draft202012Validator:
    return Draft202012Validator(manifest_schema(), registry=REGISTRY)


@cache
def _requests_validator(members: tuple[str, ...]) -> Draft202012Validator:
    """Checks the requests inside a plugin auth type's block like any request."""
    return Draft202012Validator({
        "$defs": manifest_schema()["$defs"],
        "properties": {"auth": {"properties": {
            member: {"$ref": "#/$defs/request"} for member in members}}},
    }, registry=REGISTRY)


def _plugin_auth(doc: dict[str, Any], auth_types: Collection[str]) -> Any:
    """The AuthType a plugin contributes for the manifest's ``auth.type`` (None for the
    built-in types, whose blocks the manifest schema itself describes)."""
    kind = _obj(doc.get("auth")).get("type")
    if isinstance(auth_types, Mapping) and isinstance(kind, str) and \
            kind not in BUILTIN_AUTH_TYPES:
        return auth_types.get(kind)
    return None


def find_manifest(path: Path) -> Path:
    """The manifest file of a mini-app folder, or ``path`` itself when it is a file."""
    if path.is_dir():
        for name in MANIFEST_NAMES:
            if (path / name).is_file():
                return path / name
        raise _single(str(path), f"no manifest here; add one of {', '.join(MANIFEST_NAMES)}")
    return path


def _single(file: str, message: str, pointer: str = "") -> ManifestError:
    return ManifestError([ManifestProblem(file, pointer, message)])


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)  # the common case at C speed; look closer only on a repeat
    if len(result) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise ValueError(f"duplicate key {key!r}")
            seen.add(key)
    return result


def _too_deep(value: Any) -> bool:
    """Whether any value sits deeper than ``MAX_DEPTH`` (the document itself is level
    1). Walks level by level, so only containers are carried from one to the next."""
    level = [value] if isinstance(value, (dict, list)) else []
    depth = 1
    while level:
        members = [member for node in level
                   for member in (node.values() if isinstance(node, dict) else node)]
        if members and depth >= MAX_DEPTH:
            return True
        level = [member for member in members if isinstance(member, (dict, list))]
        depth += 1
    return False


def parse_text(text: str, file: str) -> dict[str, Any]:
    """Parse manifest text (JSON, or YAML for ``.yaml``/``.yml`` files).

    YAML goes through ``safe_load`` only; sizes and nesting are capped so a
    hostile manifest cannot exhaust memory or the stack.
    """
    if len(text) > MAX_MANIFEST_BYTES:
        raise _single(file, f"the manifest is larger than {MAX_MANIFEST_BYTES // 1024} KB; "
                            "move large examples out of it")
    try:
        if file.endswith((".yaml", ".yml")):
            doc = yaml.safe_load(text)
        else:
            doc = json.loads(text, object_pairs_hook=_reject_duplicates)
    except json.JSONDecodeError as error:
        raise ManifestError(
            [
                ManifestProblem(
                    file,
                    "",
                    f"not valid JSON: {error.msg} at line {error.lineno} column {error.colno}",
                )
            ]
        ) from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1} column {mark.column + 1}" if mark else ""
        reason = getattr(error, "problem", None) or str(error)
        raise _single(file, f"not valid YAML: {reason}{where}") from None
    except ValueError as error:
        raise ManifestError([ManifestProblem(file, "", f"not valid JSON: {error}")]) from None
    except RecursionError:
        raise _single(file, f"the manifest nests deeper than {MAX_DEPTH} levels") from None
    if _too_deep(doc):
        raise _single(file, f"the manifest nests deeper than {MAX_DEPTH} levels")
    if not isinstance(doc, dict):
        raise ManifestError(
            [
                ManifestProblem(
                    file,
                    "",
                    "a manifest must be a JSON object with name, version, title, description",
                )
            ]
        )
    return doc


def read_document(path: Path) -> tuple[dict[str, Any], str]:
    """Read the manifest at ``path`` (a file or a mini-app folder) → (document, file label)."""
    file = find_manifest(path)
    try:
        text = file.read_text("utf-8")
    except FileNotFoundError:
        raise ManifestError([ManifestProblem(str(file), "", "no such file")]) from None
    except (OSError, UnicodeDecodeError) as error:
        reason = getattr(error, "strerror", None) or str(error)
        raise ManifestError(
            [ManifestProblem(str(file), "", f"cannot read the file: {reason}")]
        ) from None
    return parse_text(text, str(file)), str(file)


def _pointer(parts: Any) -> str:
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)


def _schema_message(error: SchemaViolation) -> tuple[str, str]:
    pointer = _pointer(error.absolute_path)
    kind = error.validator
    value: Any = error.validator_value
    if kind == "required":
        missing = error.message.split("'")[1] if "'" in error.message else error.message
        return pointer, f"missing required member {missing!r}"
    if kind == "additionalProperties" and isinstance(error.instance, dict):
        allowed = list(_obj(error.schema).get("properties", {}))
        extra = [k for k in error.instance if k not in allowed]
        parts = []
        for key in extra:
            close = difflib.get_close_matches(key, allowed, n=1)
            parts.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        return pointer, (f"unknown member {', '.join(parts)}; allowed here: {', '.join(allowed)}")
    if kind == "enum":
        options = ", ".join(str(v) for v in value)
        return pointer, f"{error.instance!r} is not one of {options}"
    if kind == "const" and pointer == "/auth/type":
        return pointer, error.message
    if kind == "oneOf" and pointer.endswith("/mapping"):
        return pointer, (
            'mapping must be an object {"name": "$.path"} (persisted) or an array '
            '[{"name": "…", "value": "$.path"}] (forwarded only)'
        )
    if kind == "pattern":
        hint = _obj(error.schema).get("description")
        what = "name" if str(value).startswith("^rpc_") else "value"
        if hint:
            return pointer, f"{error.instance!r} is not a valid {what}: {hint}"
        return pointer, f"{error.instance!r} does not match {value}"
    if kind == "propertyNames":
        return pointer, error.message
    return pointer, error.message


def _obj(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def validate_document(
    doc: dict[str, Any], file: str, auth_types: Collection[str] = BUILTIN_AUTH_TYPES,
    system_values: Collection[str] = (), *, allow_private: bool = False,
) -> list[ManifestProblem]:
    """Every problem of ``doc``: schema violations, then the semantic lint.

    ``auth_types`` are the auth types this host knows (the built-in ones plus
    those plugins contribute, as a mapping to their ``AuthType``); any other
    ``auth.type`` is an error. ``system_values`` are ``{{…}}`` names plugins add.
    ``allow_private`` (the host's ``EGRESS_ALLOW_PRIVATE``) lets ``allowedHosts``
    name private and loopback addresses.
    """
    found: dict[tuple[str, str], None] = {}
    for error in _validator().iter_errors(doc):
        if error.validator in ("if", "allOf"):
            continue
        found[_schema_message(error)] = None
    plugin_auth = _plugin_auth(doc, auth_types)
    if plugin_auth is not None and plugin_auth.requests:
        for error in _requests_validator(tuple(plugin_auth.requests)).iter_errors(doc):
            found[_schema_message(error)] = None
    for pointer, message in lint(doc, auth_types, system_values, allow_private):
        found[(pointer, message)] = None
    return [ManifestProblem(file, pointer, message) for pointer, message in found]


def load_manifest(path: Path, auth_types: Collection[str] = BUILTIN_AUTH_TYPES,
                  system_values: Collection[str] = (), *, allow_private: bool = False
                  ) -> Manifest:
    """Read, validate and compile the mini-app at ``path``; raises ManifestError."""
    doc, file = read_document(path)
    folder = Path(file).parent
    problems = validate_document(doc, file, auth_types, system_values,
                                 allow_private=allow_private)
    problems.extend(check_icon(doc, folder, file))
    if problems:
        raise ManifestError(problems)
    return compile_manifest(doc, file, str(folder), auth_types, system_values,
                            allow_private=allow_private, validated=True)


def check_icon(doc: dict[str, Any], folder: Path, file: str) -> list[ManifestProblem]:
    icon = doc.get("icon")
    if not isinstance(icon, str) or icon.startswith("https://"):
        return []
    target = (folder / icon).resolve()
    if not target.is_relative_to(folder.resolve()):
        return [ManifestProblem(file, "/icon", "the icon must be a file in the mini-app folder")]
    if target.suffix.lower() not in ICON_SUFFIXES:
        return [ManifestProblem(file, "/icon", "the icon must be an .svg or .png file")]
    if not target.is_file():
        return [ManifestProblem(file, "/icon", f"icon file {icon!r} does not exist")]
    return []


def digest_of(doc: dict[str, Any]) -> str:
    canonical = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


# What the rules are made of: a change to any of these may change a verdict.
_RULE_MODULES = ("host.manifest", "host.engine")
_RULE_LIBRARIES = ("jsonschema", "publicsuffixlist", "jsonpath-ng", "regex")


@cache
def _rules_of_this_host() -> str:
    """A digest of the code and data that validate manifests: this package's
    manifest and engine sources (so an edit in development counts, not only a new
    release) and the versions of the libraries they lean on."""
    digest = hashlib.sha256(f"minihost {__version__}".encode())
    for package in _RULE_MODULES:
        folder = resources.files(package)
        for entry in sorted(folder.iterdir(), key=lambda item: item.name):
            if entry.name.endswith((".py", ".json")) and entry.is_file():
                digest.update(entry.name.encode() + b"\0" + entry.read_bytes())
    for library in _RULE_LIBRARIES:
        try:
            digest.update(f"{library} {metadata.version(library)}".encode())
        except metadata.PackageNotFoundError:
            digest.update(f"{library} -".encode())
    return digest.hexdigest()


def _plugin_auth_rules(plugin_auth: Any) -> str:
    """What of a plugin's auth type the lint reads: its declarations, and the source
    of the module that defines it (its ``credentials`` answer is code)."""
    module = sys.modules.get(getattr(plugin_auth.credentials, "__module__", ""), None)
    source = getattr(module, "__file__", None)
    try:
        code = hashlib.sha256(Path(source).read_bytes()).hexdigest() if source else "-"
    except OSError:
        code = "-"
    return json.dumps([plugin_auth.name, plugin_auth.schema, list(plugin_auth.requests),
                       list(plugin_auth.values), code], sort_keys=True, default=repr)


def validated_digest(doc: dict[str, Any], auth_types: Collection[str] = BUILTIN_AUTH_TYPES,
                     system_values: Collection[str] = (), *, allow_private: bool = False
                     ) -> str:
    """The digest the catalog stores for a valid ``doc``: its canonical JSON and the
    rules it was validated under (this host's validating code, the system values,
    ``allow_private``, and the plugin auth type it names, if any).

    Equal digests mean the same document passed the same rules, so a catalog sync
    skips validating it again; a host upgrade or a plugin change gives other
    digests, and everything they may affect is validated once more.
    """
    plugin_auth = _plugin_auth(doc, auth_types)
    context = json.dumps([
        _rules_of_this_host(), sorted(system_values), allow_private,
        _plugin_auth_rules(plugin_auth) if plugin_auth is not None else None,
    ])
    # default=repr: this runs before validation, on YAML that may hold dates.
    canonical = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                           default=repr)
    return hashlib.sha256(f"{context}\n{canonical}".encode()).hexdigest()


def compile_manifest(
    doc: dict[str, Any],
    file: str = "<manifest>",
    location: str = "",
    auth_types: Collection[str] = BUILTIN_AUTH_TYPES,
    system_values: Collection[str] = (),
    *,
    allow_private: bool = False,
    validated: bool = False,
) -> Manifest:
    """Validate ``doc`` and build its frozen, ready-to-run form.

    ``validated=True`` skips the validation, which costs several times the build:
    the caller vouches that ``doc`` passed :func:`validate_document` with these
    same ``auth_types``, ``system_values`` and ``allow_private`` (it just did, or
    the catalog stored it under the same rules, :func:`rules_digest`). Building an
    invalid document fails in unpredictable ways.
    """
    if not validated:
        problems = validate_document(doc, file, auth_types, system_values,
                                     allow_private=allow_private)
        if problems:
            raise ManifestError(problems)
    doc = copy.deepcopy(doc)
    text = json.dumps(doc)
    auth_doc = _obj(doc.get("auth")) or {"type": "none"}
    plugin_auth = _plugin_auth(doc, auth_types)
    try:
        auth = _compile_auth(auth_doc, plugin_auth)
    except Exception as error:  # only a plugin's form() can fail here; the rest was checked
        if plugin_auth is None:
            raise
        raise ManifestError([ManifestProblem(
            file, "/auth", f"auth type {plugin_auth.name} could not build the connect form "
            f"({type(error).__name__}: {error}); tell the plugin's author")]) from None
    sources = {name: _compile_source(name, spec) for name, spec in _obj(doc.get("sources")).items()}
    actions = tuple(
        _compile_action(index, spec) for index, spec in enumerate(doc.get("actions", []))
    )
    return Manifest(
        name=doc["name"],
        version=doc["version"],
        title=doc["title"],
        description=doc["description"],
        icon=doc.get("icon"),
        categories=tuple(doc.get("categories", ())),
        publisher=MappingProxyType(doc["publisher"]) if "publisher" in doc else None,
        allowed_hosts=tuple(h.lower() for h in doc.get("allowedHosts", ())),
        auth=auth,
        sources=MappingProxyType(sources),
        actions=actions,
        webhooks=_compile_webhooks(doc["webhooks"]) if "webhooks" in doc else None,
        raw=MappingProxyType(doc),
        digest=digest_of(doc),
        location=location,
        actions_by_name=MappingProxyType({action.name: action for action in actions}),
        uses_client=bool(_CLIENT_PLACEHOLDER.search(text)),
        uses_client_secret=bool(_CLIENT_SECRET_PLACEHOLDER.search(text)),
        data_sources=MappingProxyType({
            name: _compile_data_source(name, spec)
            for name, spec in _obj(doc.get("dataSources")).items()}),
        rate_limit=RateLimit(int(doc["rateLimit"]["requests"]),
                             float(doc["rateLimit"]["perSeconds"]),
                             doc["rateLimit"].get("scope", "installation"))
        if "rateLimit" in doc else None,
    )


def _compile_data_source(name: str, spec: dict[str, Any]) -> DataSource:
    return DataSource(
        name=name, title=spec["title"], description=spec.get("description", ""),
        list=_compile_request(f"/dataSources/{name}/list", spec["list"]),
        items=compile_path(spec["items"]), id=compile_path(spec["id"]),
        updated_at=compile_path(spec["updatedAt"]) if "updatedAt" in spec else None,
        schema=MappingProxyType(spec["schema"]) if "schema" in spec else None,
        poll_seconds=int(spec.get("pollSeconds", 300)))


SIGNED_PART = re.compile(r"\{\{\s*(body|timestamp|method|url|headers\.[A-Za-z0-9!#$%&'*+.^_`|~-]+)"
                         r"\s*\}\}")


def signed_parts(template: str) -> tuple[tuple[str, str], ...]:
    """A ``signedPayload`` as text pieces and the request parts between them."""
    parts: list[tuple[str, str]] = []
    position = 0
    for match in SIGNED_PART.finditer(template):
        if match.start() > position:
            parts.append(("text", template[position:match.start()]))
        name = match.group(1)
        parts.append(("header", name[8:].lower()) if name.startswith("headers.")
                     else (name, ""))
        position = match.end()
    if position < len(template):
        parts.append(("text", template[position:]))
    return tuple(parts)


def _compile_webhooks(spec: dict[str, Any]) -> Webhooks:
    verify = None
    if "verify" in spec:
        v = spec["verify"]
        verify = WebhookVerify(
            type=v["type"], header=v["header"].lower(), secret=compile_template(v["secret"]),
            encoding=v.get("encoding", "hex"), prefix=v.get("prefix", ""),
            signature_param=v.get("signatureParam"), timestamp_param=v.get("timestampParam"),
            signed_payload=signed_parts(v.get("signedPayload", "{{body}}")),
            timestamp_header=v["timestampHeader"].lower() if "timestampHeader" in v else None,
            timestamp_path=compile_path(v["timestampPath"]) if "timestampPath" in v else None,
            tolerance_seconds=int(v.get("toleranceSeconds", 300)),
            timestamp_unit=v.get("timestampUnit"))
    challenge = None
    if "challenge" in spec:
        c = spec["challenge"]
        challenge = Challenge(
            when=tuple((compile_path(path), value) for path, value in c["when"].items()),
            respond=compile_path(c["respond"]) if "respond" in c else None,
            body=copy.deepcopy(c.get("body")), signed=bool(c.get("signed", True)),
            capture=compile_path(c["capture"]) if "capture" in c else None)
    return Webhooks(
        verify=verify,
        delivery_id=compile_path(spec["deliveryId"]) if "deliveryId" in spec else None,
        event_type=tuple(compile_path(p) for p in (
            [spec["eventType"]] if isinstance(spec.get("eventType"), str)
            else spec.get("eventType", []))),
        challenge=challenge, raw=MappingProxyType(spec),
        data=compile_path(spec["data"]) if "data" in spec else None,
        events=MappingProxyType({
            kind: EventMapping(data_source=m["dataSource"],
                               record=compile_path(m["record"]) if "record" in m else None,
                               delete=m.get("action") == "delete")
            for kind, m in _obj(spec.get("events")).items()}))


def _compile_expect(spec: dict[str, Any] | None) -> Expect | None:
    if spec is None:
        return None
    return Expect(
        status=tuple(spec["status"]) if "status" in spec else None,
        body=tuple((compile_path(k), v) for k, v in spec.get("body", {}).items()),
        error=compile_path(spec["error"]) if "error" in spec else None,
    )


def _compile_request(pointer: str, spec: dict[str, Any]) -> Request:
    mapping = spec.get("mapping")
    compiled_mapping: ObjectMapping | ArrayMapping | None
    if isinstance(mapping, dict):
        compiled_mapping = ObjectMapping(tuple((k, compile_path(v)) for k, v in mapping.items()))
    elif isinstance(mapping, list):
        compiled_mapping = ArrayMapping(
            tuple((item["name"], compile_path(item["value"])) for item in mapping)
        )
    else:
        compiled_mapping = None
    has_body = "body" in spec
    return Request(
        pointer=pointer,
        method=spec["method"],
        url=compile_url(spec["url"]),
        headers=tuple((k, compile_template(v)) for k, v in spec.get("headers", {}).items()),
        query=tuple((k, compile_value(v)) for k, v in spec.get("queryParams", {}).items()),
        body_type=spec.get("bodyType", "json" if has_body else None),
        body=compile_value(spec["body"]) if has_body else None,
        has_body=has_body,
        mapping=compiled_mapping,
        timeout=spec.get("timeout"),
        expect=_compile_expect(spec.get("expect")),
        response_schema=spec.get("responseSchema"),
        sandbox_body=(json.dumps(sample(spec["responseSchema"]), separators=(",", ":")).encode()
                      if "responseSchema" in spec else None),
        secret_roots=frozenset(match.group(1) for match in _SECRET_ROOT.finditer(
            json.dumps([spec.get("url"), spec.get("headers"), spec.get("queryParams"),
                        spec.get("body")]))),
        pagination=compile_pagination(spec["pagination"]) if "pagination" in spec else None,
    )


def compile_pagination(spec: dict[str, Any]) -> Pagination:
    kind = spec["type"]
    return Pagination(
        type=kind, param=spec.get("param"),
        next=compile_path(spec["next"]) if "next" in spec else None,
        items=compile_path(spec["items"]) if "items" in spec else None,
        start=int(spec.get("start", 0 if kind == "offset" else 1)),
        max_pages=int(spec.get("maxPages", DEFAULT_MAX_PAGES)),
        location=spec.get("in", "query"))


def _compile_chain(pointer: str, specs: list[dict[str, Any]]) -> tuple[Request, ...]:
    return tuple(_compile_request(f"{pointer}/{i}", spec) for i, spec in enumerate(specs))


# The requests of the built-in auth blocks, by the names their auth types send them.
BUILTIN_REQUESTS = ("test", "get_token", "refresh_token", "userDetails")


def _compile_auth(spec: dict[str, Any], plugin_auth: Any = None) -> Auth:
    def request(key: str) -> Request | None:
        return _compile_request(f"/auth/{key}", spec[key]) if key in spec else None

    if plugin_auth is not None:
        return Auth(
            type=spec["type"],
            config=MappingProxyType(spec.get("config", {})),
            form=build_form(dict(plugin_auth.form(spec))),
            requests=MappingProxyType({member: _compile_request(f"/auth/{member}", spec[member])
                                       for member in plugin_auth.requests if member in spec}),
            plugin=plugin_auth,
            can_refresh=plugin_auth.refresh is not None,
            raw=MappingProxyType(spec),
        )

    authorize = None
    if "authorize" in spec:
        raw = spec["authorize"]
        authorize = Authorize(
            request=_compile_request("/auth/authorize", {
                "url": raw["url"], "method": "GET", "queryParams": raw.get("queryParams", {})}),
            pkce=bool(raw.get("pkce", False)),
        )
    named = {member: request(member) for member in BUILTIN_REQUESTS}
    return Auth(
        type=spec["type"],
        fields=spec.get("fields"),
        config=MappingProxyType(spec.get("config", {})),
        test=named["test"],
        authorize=authorize,
        issuer=spec.get("issuer"),
        get_token=named["get_token"],
        refresh_token=named["refresh_token"],
        user_details=named["userDetails"],
        requests=MappingProxyType({k: v for k, v in named.items() if v is not None}),
        can_refresh=named["refresh_token"] is not None,
        registration=_compile_chain(
            "/auth/registrationRequests", spec.get("registrationRequests", [])
        ),
        unregistration=_compile_chain(
            "/auth/unregistrationRequests", spec.get("unregistrationRequests", [])
        ),
        refresh_on=_compile_expect(spec.get("refreshOn")),
        form=_connect_form(spec),
        raw=MappingProxyType(spec),
    )


def connect_schema(spec: dict[str, Any]) -> dict[str, Any] | None:
    """The connect form's schema: ``auth.fields``, plus username and password for
    basic auth. Text fields of an API-key form are secrets, so they render as
    password inputs unless the manifest names another ``x-widget``."""
    kind = spec.get("type")
    if kind not in ("apiKey", "basic"):
        return None
    fields = copy.deepcopy(spec.get("fields") or {"type": "object", "properties": {}})
    properties = fields.setdefault("properties", {})
    if kind == "apiKey":
        for sub in properties.values():
            if isinstance(sub, dict) and sub.get("type", "string") == "string" and not (
                "x-widget" in sub or "enum" in sub
            ):
                sub["x-widget"] = "password"
        return fields
    required = ["username", "password", *[r for r in fields.get("required", [])
                                          if r not in ("username", "password")]]
    fields["properties"] = {
        "username": {"type": "string", "title": "Username", "minLength": 1},
        "password": {"type": "string", "title": "Password", "minLength": 1,
                     "x-widget": "password"},
        **{k: v for k, v in properties.items() if k not in ("username", "password")},
    }
    fields["required"] = required
    return fields


def _connect_form(spec: dict[str, Any]) -> Form | None:
    schema = connect_schema(spec)
    return build_form(schema) if schema is not None else None


def _compile_source(name: str, spec: dict[str, Any]) -> Source:
    options = spec["options"]
    return Source(
        name=name,
        description=spec.get("description", ""),
        requests=_compile_chain(f"/sources/{name}/requests", spec["requests"]),
        items=compile_path(options["items"]),
        value=compile_path(options["value"]),
        label=compile_path(options.get("label", options["value"])),
        depends_on=tuple(spec.get("dependsOn", ())),
        cache_seconds=int(spec.get("cacheSeconds", 0)),
    )


def _with_idempotency(requests: tuple[Request, ...], header: str | None) -> tuple[Request, ...]:
    """Each request that is not a ``GET`` sends ``header: {{idempotencyKey}}`` (unless the
    author set that header): one key per run, the same on every attempt of a flow task."""
    if header is None:
        return requests
    key = compile_template("{{idempotencyKey}}")
    return tuple(
        request if request.method == "GET"
        or any(name.lower() == header.lower() for name, _ in request.headers)
        else replace(request, headers=(*request.headers, (header, key)))
        for request in requests)


def _compile_action(index: int, spec: dict[str, Any]) -> Action:
    parameters = spec.get("parameters", {"type": "object", "properties": {}})
    header = spec["idempotency"]["header"] if "idempotency" in spec else None
    return Action(
        name=spec["name"],
        title=spec["title"],
        description=spec.get("description", ""),
        render_strategy=spec.get("renderStrategy", "auto"),
        parameters=parameters,
        requests=_with_idempotency(
            _compile_chain(f"/actions/{index}/requests", spec["requests"]), header),
        output=spec.get("output"),
        form=build_form(parameters),
        idempotent=bool(spec.get("idempotent", False)),
        idempotency_header=header,
    )
