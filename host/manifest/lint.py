"""The semantic lint: what a JSON Schema cannot check (MANIFEST §2.2, §3, §4, §5).

It runs even when the schema found problems, tolerating wrong shapes, so an
author sees every error in one pass. Each problem is ``(JSON pointer, message)``
and the message says how to fix it.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
import socket
from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from publicsuffixlist import PublicSuffixList

from ..engine.egress import METADATA_ADDRESSES, METADATA_HOSTS, is_public_address, unwrap
from ..engine.hosts import host_allowed
from ..engine.paths import PathSyntaxError, compile_path
from ..engine.schemas import pattern_problems, reference_problems, validator
from ..engine.template import Placeholder, compile_template, malformed_placeholders
from .metaschema import conforms

SYSTEM_VALUES = ("webhookUrl", "subdomain", "uid", "installationId", "hostUrl",
                 "idempotencyKey")
CONNECT_VALUES = ("redirectUri", "code", "state", "codeVerifier")
RESERVED_PARAMETERS = frozenset(SYSTEM_VALUES + CONNECT_VALUES)
# auth.config outranks system values (MANIFEST §2.2), so no config key may take
# a system value's name; `subdomain` is the one setting that is meant to be set.
CONFIG_RESERVED = RESERVED_PARAMETERS - {"subdomain"}
HOST_ADDED_AUTHORIZE = ("redirect_uri", "state", "code_challenge", "code_challenge_method")
OPERATOR_CLIENT = ("clientId", "clientSecret", "clientBasicAuth")
# The installation's own webhook signing secret: made by the host, or set by its user.
WEBHOOK_SECRET = "webhookSecret"
BASIC_FIELDS = ("username", "password", "basicAuth")
CONNECT_STEPS = "authorize, get_token, userDetails and registrationRequests"
BUILTIN_AUTH_TYPES = ("none", "apiKey", "basic", "oauth2")
# Headers that decide where and how a request travels: a manifest (or a value it
# takes from a user) must not choose them, or allowedHosts could be widened
# through a shared proxy, or a request smuggled.
HOST_CONTROLLED_HEADERS = frozenset({
    "host", "content-length", "transfer-encoding", "connection", "keep-alive", "upgrade",
    "te", "trailer", "proxy-connection", "proxy-authorization", "expect",
})

_URL_START = re.compile(r"^(https?)://([^/?#]*)")
_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
_PLACEHOLDER_LABEL = "minihost-placeholder"
_PORT = re.compile(r":\d+$")

Problem = tuple[str, str]


def _obj(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _names(values: Iterable[str]) -> str:
    items = sorted(set(values))
    return ", ".join(items) if items else "none"


@dataclass(frozen=True, slots=True)
class Scope:
    """What ``{{…}}`` may name at one place of the manifest, and how to explain it."""

    values: frozenset[str]
    connect: bool
    where: str
    own: str


def iter_strings(value: Any, pointer: str) -> Iterator[tuple[str, str]]:
    """Every string inside a JSON value with its pointer."""
    if isinstance(value, str):
        yield pointer, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from iter_strings(item, f"{pointer}/{_escape(str(key))}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from iter_strings(item, f"{pointer}/{index}")


def _escape(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


@lru_cache(maxsize=1)
def _suffixes() -> PublicSuffixList:
    """The Public Suffix List snapshot bundled with the package; never fetched."""
    return PublicSuffixList()


_LOCAL_NAMES = ("localhost", "localhost.localdomain")
_LOCAL_SUFFIXES = (".localhost", ".local", ".internal", ".home.arpa", ".lan", ".intranet")


# What inet_aton reads as an IPv4 address besides a.b.c.d: fewer parts ("127.1"), one
# number ("2130706433"), hexadecimal ("0x7f000001") and octal ("0177.0.0.1") parts.
_LEGACY_IPV4 = re.compile(r"(?:0x[0-9a-f]*|[0-9]+)(?:\.(?:0x[0-9a-f]*|[0-9]+)){0,3}\.?",
                          re.IGNORECASE)


def _legacy_ipv4(name: str) -> str | None:
    """The dotted address a resolver would read ``name`` as, when it is one written in
    another form; such an entry hides which address it allows."""
    if not _LEGACY_IPV4.fullmatch(name):
        return None
    try:
        dotted = socket.inet_ntoa(socket.inet_aton(name.rstrip(".")))
    except OSError:
        return None
    return dotted if dotted != name else None


def allowed_host_problem(entry: str, allow_private: bool) -> str | None:
    """Why an ``allowedHosts`` entry may not stand, or None."""
    host = entry.rsplit(":", 1)[0] if entry.count(":") == 1 else entry
    name = host[2:] if host.startswith("*.") else host
    dotted = _legacy_ipv4(name)
    if dotted is not None:
        return (f"{entry!r} is the IPv4 address {dotted} written in a short, numeric, octal or "
                f"hexadecimal form; write it as {dotted}")
    try:
        address: Any = ipaddress.ip_address(name)
    except ValueError:
        address = None
    if name in METADATA_HOSTS or (address is not None and (
            address in METADATA_ADDRESSES or unwrap(address) in METADATA_ADDRESSES)):
        return f"{entry!r} is a cloud metadata service, which the host always refuses"
    if address is not None:
        if host.startswith("*."):
            return f"{entry!r} puts a wildcard before an IP address; list the address itself"
        if not is_public_address(address) and not allow_private:
            return (f"{entry!r} is a private, loopback or link-local address, which the host "
                    "refuses unless the operator sets EGRESS_ALLOW_PRIVATE")
        return None
    if name in _LOCAL_NAMES or name.endswith(_LOCAL_SUFFIXES) or f".{name}" in _LOCAL_SUFFIXES:
        return None if allow_private else (
            f"{entry!r} names a local or internal network, which the host refuses unless the "
            "operator sets EGRESS_ALLOW_PRIVATE")
    if host.startswith("*.") and _suffixes().is_public(name):
        return (f"{entry!r} is a wildcard over the public suffix {name!r}, which would allow "
                f"every site under it; name the provider's own domain, e.g. *.example.{name}")
    return None


class Linter:
    def __init__(self, doc: dict[str, Any], auth_types: Collection[str],
                 system_values: Collection[str] = (), allow_private: bool = False) -> None:
        self.doc = doc
        self.allow_private = allow_private
        self.auth_types = auth_types
        self.system = (*SYSTEM_VALUES, *sorted(system_values))
        self.plugin_system = frozenset(system_values)
        self.problems: list[Problem] = []
        self.auth = _obj(doc.get("auth")) or {"type": "none"}
        self.auth_type = self.auth.get("type", "none")
        self.config_keys = frozenset(_obj(self.auth.get("config")))
        self.plugin_auth = (auth_types.get(self.auth_type)
                            if isinstance(auth_types, Mapping) and isinstance(self.auth_type, str)
                            and self.auth_type not in BUILTIN_AUTH_TYPES else None)
        self.secrets = self._secret_names()

    def add(self, pointer: str, message: str) -> None:
        self.problems.append((pointer, message))

    # -- what the installation can hold ------------------------------------------------

    def _secret_names(self) -> frozenset[str] | None:
        auth, kind = self.auth, self.auth_type
        names: set[str] = set(OPERATOR_CLIENT)
        if kind == "none":
            return frozenset(names)
        if kind in ("apiKey", "basic"):
            names.update(_obj(_obj(auth.get("fields")).get("properties")))
            if kind == "basic":
                names.update(BASIC_FIELDS)
            for step in [auth.get("test"), *_list(auth.get("registrationRequests"))]:
                mapping = _obj(step).get("mapping")
                if isinstance(mapping, dict):
                    names.update(mapping)
            return frozenset(names)
        if kind == "oauth2":
            steps = [auth.get("get_token"), auth.get("refresh_token"), auth.get("userDetails")]
            steps += _list(auth.get("registrationRequests"))
            for step in steps:
                mapping = _obj(step).get("mapping")
                if isinstance(mapping, dict):
                    names.update(mapping)
            if "expiresIn" in names:
                names.add("expiresAt")
            return frozenset(names)
        if self.plugin_auth is not None:
            try:
                names.update(self.plugin_auth.credentials(auth))
            except Exception:  # its schema check below says what is wrong with the block
                return None
            return frozenset(names)
        return None  # an auth type this host does not know: reported in run()

    # -- entry point ---------------------------------------------------------------------

    def run(self) -> list[Problem]:
        doc = self.doc
        self.requests_exist = False
        if isinstance(self.auth_type, str) and self.auth_type not in self.auth_types:
            close = difflib.get_close_matches(self.auth_type, list(self.auth_types), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            self.add(
                "/auth/type",
                f"unknown auth type {self.auth_type!r} (known: {', '.join(self.auth_types)}){hint}",
            )
        self._check_auth()
        sources = _obj(doc.get("sources"))
        for source_name, source in sources.items():
            self._check_source(source_name, _obj(source))
        seen: dict[str, int] = {}
        for index, action in enumerate(_list(doc.get("actions"))):
            action = _obj(action)
            name = action.get("name")
            pointer = f"/actions/{index}"
            if isinstance(name, str):
                if name in seen:
                    self.add(
                        f"{pointer}/name",
                        f"duplicate action name {name!r} (also /actions/{seen[name]}); "
                        "give every action a unique name",
                    )
                else:
                    seen[name] = index
            self._check_action(pointer, action, sources)
        self._check_webhooks(_obj(doc.get("webhooks")))
        for name, data_source in _obj(doc.get("dataSources")).items():
            self._check_data_source(name, _obj(data_source))
        sources = _obj(doc.get("dataSources"))
        for kind, mapping in _obj(_obj(doc.get("webhooks")).get("events")).items():
            where = f"/webhooks/events/{_escape(kind)}"
            mapping = _obj(mapping)
            if "dataSource" in mapping and mapping["dataSource"] not in sources:
                self.add(f"{where}/dataSource", f"{mapping['dataSource']!r} is not a data "
                         f"source of this manifest (data sources: {_names(sources)})")
            if isinstance(mapping.get("record"), str):
                self._check_path(f"{where}/record", mapping["record"])
        for index, entry in enumerate(_list(doc.get("allowedHosts"))):
            if isinstance(entry, str):
                reason = allowed_host_problem(entry.lower(), self.allow_private)
                if reason:
                    self.add(f"/allowedHosts/{index}", reason)
        if self.requests_exist and not _list(doc.get("allowedHosts")):
            self.add(
                "/allowedHosts",
                "allowedHosts is required when the manifest makes requests; list every host "
                'it calls, e.g. ["api.example.com"]',
            )
        return self.problems

    # -- auth ----------------------------------------------------------------------------

    def _check_plugin_auth(self) -> None:
        """A plugin's auth block: its own schema, and URLs its requests may call."""
        assert self.plugin_auth is not None
        schema = {"type": "object", **self.plugin_auth.schema}
        body = {k: v for k, v in self.auth.items() if k != "type"}
        for error in validator(schema).iter_errors(body):
            where = "".join(f"/{_escape(str(p))}" for p in error.absolute_path)
            self.add(f"/auth{where}", f"{error.message} (auth type {self.auth_type})")
        passed = tuple(getattr(self.plugin_auth, "values", ()))
        scope = Scope(self.config_keys | frozenset(self.system) | frozenset(passed), False,
                      f"auth type {self.auth_type}'s requests",
                      f"a value it passes ({_names(passed)})")
        for member in self.plugin_auth.requests:
            if member in self.auth:
                self._check_chain(f"/auth/{member}", [self.auth[member]], scope,
                                  forward_objects=False)

    def _check_auth(self) -> None:
        auth, kind = self.auth, self.auth_type
        if self.plugin_auth is not None:
            self._check_plugin_auth()
        for key in sorted(self.config_keys & (CONFIG_RESERVED | self.plugin_system)):
            self.add(f"/auth/config/{_escape(key)}",
                     f"{key!r} is a system value the host sets; a config key cannot replace "
                     "it, so give the setting another name")
        base = frozenset(self.config_keys | set(self.system))
        plain = Scope(base, False, "auth", "")
        connect = Scope(base | frozenset(CONNECT_VALUES), True, "connect", "")
        if kind in ("apiKey", "basic"):
            self._check_schema_doc("/auth/fields", auth.get("fields"), "auth.fields")
            if "test" in auth:
                self._check_chain("/auth/test", [auth["test"]], plain, forward_objects=False)
            for key in ("registrationRequests", "unregistrationRequests"):
                self._check_chain(f"/auth/{key}", _list(auth.get(key)),
                                  Scope(base, False, "registration", ""),
                                  forward_objects=False, pointer_is_list=True)
        if kind != "oauth2":
            return
        authorize = _obj(auth.get("authorize"))
        for key in _obj(authorize.get("queryParams")):
            if key in HOST_ADDED_AUTHORIZE:
                self.add(
                    f"/auth/authorize/queryParams/{_escape(key)}",
                    f"{key} is added by the host (with response_type and client_id unless set); "
                    "remove it from queryParams",
                )
        if isinstance(authorize.get("url"), str):
            # The browser, not the host, visits the authorize URL: no allowedHosts check.
            self._check_url("/auth/authorize/url", authorize["url"], egress=False)
            self._check_strings("/auth/authorize", authorize, connect)
        for key, scope in (
            ("get_token", connect),
            ("userDetails", connect),
            ("refresh_token", plain),
        ):
            if key in auth:
                self._check_chain(f"/auth/{key}", [auth[key]], scope, forward_objects=False)
        registration = Scope(connect.values, True, "registration", "")
        for key, scope in (("registrationRequests", registration),
                           ("unregistrationRequests", Scope(base, False, "registration", ""))):
            self._check_chain(
                f"/auth/{key}",
                _list(auth.get(key)),
                scope,
                forward_objects=False,
                pointer_is_list=True,
            )
        if "refreshOn" in auth:
            self._check_expect("/auth/refreshOn", _obj(auth["refreshOn"]))

    # -- sources and actions --------------------------------------------------------------

    def _check_source(self, name: str, source: dict[str, Any]) -> None:
        pointer = f"/sources/{_escape(name)}"
        depends = [d for d in _list(source.get("dependsOn")) if isinstance(d, str)]
        for item in depends:
            if item in RESERVED_PARAMETERS:
                self.add(f"{pointer}/dependsOn", f"{item!r} is a system value, not a form field")
        scope = Scope(
            frozenset(depends) | self.config_keys | frozenset(self.system),
            False,
            f"source {name}",
            f"one of its dependsOn fields ({_names(depends)})",
        )
        self._check_chain(
            f"{pointer}/requests",
            _list(source.get("requests")),
            scope,
            forward_objects=True,
            pointer_is_list=True,
        )
        for key, path in _obj(source.get("options")).items():
            self._check_path(f"{pointer}/options/{key}", path)

    def _check_action(self, pointer: str, action: dict[str, Any], sources: dict[str, Any]) -> None:
        name = action.get("name", "?")
        parameters = action.get("parameters", {"type": "object"})
        # Field names count even when the schema around them is broken, so one
        # mistake in it does not turn every placeholder into an error too.
        props = _obj(_obj(parameters).get("properties"))
        params = list(props)
        self._check_schema_doc(f"{pointer}/parameters", parameters, f"parameters of {name}")
        for param in params:
            if param in RESERVED_PARAMETERS:
                self.add(
                    f"{pointer}/parameters/properties/{_escape(param)}",
                    f"parameter name {param!r} is reserved for a system value; rename it",
                )
        self._check_fields(f"{pointer}/parameters", _obj(parameters), props, sources, name)
        if "output" in action:
            self._check_schema_doc(f"{pointer}/output", action["output"], f"output of {name}")
        scope = Scope(
            frozenset(params) | self.config_keys | frozenset(self.system),
            False,
            f"action {name}",
            f"a parameter of {name} (parameters: {_names(params)})",
        )
        self._check_chain(
            f"{pointer}/requests",
            _list(action.get("requests")),
            scope,
            forward_objects=True,
            pointer_is_list=True,
        )

    def _check_fields(
        self,
        pointer: str,
        schema: dict[str, Any],
        top: dict[str, Any],
        sources: dict[str, Any],
        action: str,
    ) -> None:
        """``x-source`` must name a source whose ``dependsOn`` are fields of this form."""
        for key, sub in _obj(schema.get("properties")).items():
            sub = _obj(sub)
            here = f"{pointer}/properties/{_escape(key)}"
            source_name = sub.get("x-source")
            for where, spec in ((here, sub), (f"{here}/items", _obj(sub.get("items")))):
                if spec.get("x-source") is not None:
                    self._check_source_use(where, key, spec["x-source"], top, sources, action)
            fallback = sub.get("x-fallback")
            if fallback is not None and fallback != "input":
                self.add(f"{here}/x-fallback", 'x-fallback must be "input"')
            if sub.get("type") == "object" and source_name is None:
                self._check_fields(here, sub, top, sources, action)

    def _check_source_use(self, where: str, key: str, source_name: Any, top: dict[str, Any],
                          sources: dict[str, Any], action: str) -> None:
        if source_name not in sources:
            self.add(
                f"{where}/x-source",
                f"x-source {source_name!r} is not a source of this manifest "
                f"(sources: {_names(sources)})",
            )
            return
        for dep in _list(_obj(sources[source_name]).get("dependsOn")):
            if dep not in top:
                self.add(
                    f"{where}/x-source",
                    f"source {source_name} depends on {dep!r}, which is not a field "
                    f"of {action}; add the field or drop it from dependsOn",
                )
            elif dep == key:
                self.add(f"{where}/x-source", f"field {key!r} cannot depend on itself")

    # -- requests ------------------------------------------------------------------------

    def _check_data_source(self, name: str, spec: dict[str, Any]) -> None:
        pointer = f"/dataSources/{_escape(name)}"
        scope = Scope(self.config_keys | frozenset(self.system), False,
                      f"source data source {name}", "")
        if isinstance(spec.get("list"), dict):
            self._check_chain(f"{pointer}/list", [spec["list"]], scope, forward_objects=False)
        for key in ("items", "id", "updatedAt"):
            if isinstance(spec.get(key), str):
                self._check_path(f"{pointer}/{key}", spec[key])
        if isinstance(spec.get("schema"), dict):
            self._check_schema_doc(f"{pointer}/schema", spec["schema"], "the record schema")

    def _check_pagination(self, pointer: str, pagination: dict[str, Any], *, last: bool,
                          implied: bool) -> None:
        """Pages are followed on a chain's last request only; page- and offset-numbered
        lists end on an empty page, so the list must be known (a source names it)."""
        if not last:
            self.add(pointer, "only the last request of a chain is followed across pages; "
                              "move pagination to the last request")
        for key in ("next", "items"):
            if isinstance(pagination.get(key), str):
                self._check_path(f"{pointer}/{key}", pagination[key])
        if pagination.get("type") in ("page", "offset") and "items" not in pagination \
                and not implied:
            self.add(pointer, f"a {pagination['type']}-numbered list ends on an empty page: "
                              'add "items", the path of the list on each page')

    def _check_chain(
        self,
        pointer: str,
        requests: list[Any],
        scope: Scope,
        *,
        forward_objects: bool,
        pointer_is_list: bool = False,
    ) -> None:
        forwarded: list[str] = []
        for index, request in enumerate(requests):
            request = _obj(request)
            here = f"{pointer}/{index}" if pointer_is_list else pointer
            self.requests_exist = True
            chain_scope = Scope(
                scope.values | frozenset(forwarded), scope.connect, scope.where, scope.own
            )
            if isinstance(request.get("url"), str):
                self._check_url(f"{here}/url", request["url"])
            for key in ("url", "headers", "queryParams", "body"):
                if key in request:
                    self._check_strings(f"{here}/{key}", request[key], chain_scope)
            for name, value in _obj(request.get("headers")).items():
                if name.lower() in HOST_CONTROLLED_HEADERS:
                    self.add(f"{here}/headers/{_escape(name)}",
                             f"the host sets the {name} header itself; remove it")
                if isinstance(value, str) and any(ord(c) < 32 or ord(c) == 127 for c in value):
                    self.add(
                        f"{here}/headers/{_escape(name)}",
                        "header value contains a control character; remove it",
                    )
            pagination = request.get("pagination")
            if isinstance(pagination, dict):
                self._check_pagination(f"{here}/pagination", pagination,
                                       last=index == len(requests) - 1,
                                       implied=scope.where.startswith("source"))
            mapping = request.get("mapping")
            if isinstance(mapping, dict):
                for name, path in mapping.items():
                    self._check_path(f"{here}/mapping/{_escape(name)}", path)
                if forward_objects:
                    forwarded.extend(mapping)
            elif isinstance(mapping, list):
                for position, item in enumerate(mapping):
                    item = _obj(item)
                    self._check_path(f"{here}/mapping/{position}/value", item.get("value"))
                    if isinstance(item.get("name"), str):
                        forwarded.append(item["name"])
            if "expect" in request:
                self._check_expect(f"{here}/expect", _obj(request["expect"]))
            if "responseSchema" in request and isinstance(request["responseSchema"], dict):
                self._check_schema_doc(
                    f"{here}/responseSchema",
                    request["responseSchema"],
                    "responseSchema",
                    require_object=False,
                )
            if request.get("bodyType") in ("x-www-form-urlencoded", "formData") and not isinstance(
                request.get("body", {}), dict
            ):
                self.add(f"{here}/body", f"a {request['bodyType']} body must be an object")

    def _check_strings(self, pointer: str, value: Any, scope: Scope) -> None:
        for where, text in iter_strings(value, pointer):
            for bad in malformed_placeholders(text):
                self.add(
                    where,
                    f"{bad!r} is not a valid placeholder; write [[key]] or {{{{key}}}} "
                    "with a key of letters, digits, '_' and dots",
                )
            template = compile_template(text)
            if isinstance(template, str):
                continue
            for placeholder in template.placeholders:
                self._check_placeholder(where, placeholder, scope)

    def _check_placeholder(self, pointer: str, placeholder: Placeholder, scope: Scope) -> None:
        root = placeholder.root
        if placeholder.namespace == "secret":
            if root == WEBHOOK_SECRET and scope.where in ("webhooks", "registration"):
                return  # the installation's own webhook secret: to check signatures, and to
                # give the provider when registering the webhook
            if self.secrets is not None and root not in self.secrets:
                self.add(
                    pointer,
                    f"placeholder {placeholder} is nothing the installation holds "
                    f"(available: {_names(self.secrets)}); credentials come from the auth "
                    "fields or the object mappings of get_token, refresh_token and "
                    "registrationRequests, metadata from userDetails",
                )
            return
        if root in scope.values:
            return
        if root in CONNECT_VALUES:
            self.add(pointer, f"placeholder {placeholder} is only available in {CONNECT_STEPS}")
            return
        if self.secrets and root in self.secrets and root not in OPERATOR_CLIENT:
            hint = f"; write [[{placeholder.key}]] to use the installation's {root}"
        else:
            hint = ""
        own = f"{scope.own}, " if scope.own else ""
        self.add(
            pointer,
            f"placeholder {placeholder} in {scope.where} is not {own}a value mapped by an earlier "
            f"request, an auth.config key ({_names(self.config_keys)}) or a system value "
            f"({', '.join(self.system)}){hint}",
        )

    def _check_url(self, pointer: str, url: str, egress: bool = True) -> None:
        match = _URL_START.match(url)
        if not match:
            return  # the schema reports a URL that does not start with http(s)://
        authority = match.group(2)
        if "@" in authority:
            self.add(
                pointer,
                "URLs must not carry user info (user:password@); send credentials in a header",
            )
            return
        host = _PORT.sub("", authority)
        concrete: list[str] = []
        for label in host.split("."):
            template = compile_template(label)
            if isinstance(template, str):
                if not _LABEL.match(label):
                    self.add(pointer, f"host {host!r} is not a lower-case DNS name")
                    return
                concrete.append(label)
            else:
                concrete.append(_PLACEHOLDER_LABEL)
        hosts = [h for h in _list(self.doc.get("allowedHosts")) if isinstance(h, str)]
        if not hosts or not egress:
            return  # reported once, at /allowedHosts
        if not host_allowed(".".join(concrete), [_PORT.sub("", h) for h in hosts]):
            variable = _PLACEHOLDER_LABEL in concrete
            fix = (
                "add a wildcard entry such as *."
                + ".".join(concrete[concrete.index(_PLACEHOLDER_LABEL) + 1 :])
                if variable
                else f"add {host!r} to allowedHosts"
            )
            self.add(
                pointer, f"host {host!r} is not covered by allowedHosts ({_names(hosts)}); {fix}"
            )

    def _check_expect(self, pointer: str, expect: dict[str, Any]) -> None:
        for key in _obj(expect.get("body")):
            self._check_path(f"{pointer}/body/{_escape(key)}", key)
        if "error" in expect:
            self._check_path(f"{pointer}/error", expect["error"])

    def _check_path(self, pointer: str, path: Any) -> None:
        if not isinstance(path, str):
            return  # the schema reports the type
        try:
            compile_path(path)
        except PathSyntaxError as error:
            self.add(pointer, str(error))

    def _check_schema_doc(
        self, pointer: str, schema: Any, what: str, require_object: bool = True
    ) -> bool:
        if not isinstance(schema, dict):
            return False
        # Patterns first: some that re cannot read raise past jsonschema's own check.
        unsafe = reference_problems(schema, pointer) + pattern_problems(schema, pointer)
        for where, message in unsafe:
            self.add(where, f"{what}: {message}")
        if unsafe:
            return False
        try:
            if not conforms(schema):  # the fast check; jsonschema has the last word
                Draft202012Validator.check_schema(schema)
        except SchemaError as error:
            where = "".join(f"/{_escape(str(p))}" for p in error.absolute_path)
            self.add(pointer + where, f"{what} is not a valid JSON Schema: {error.message}")
            return False
        if require_object and schema.get("type") != "object":
            self.add(f"{pointer}/type", f'{what} must be a schema with "type": "object"')
            return False
        return True

    def _check_webhooks(self, webhooks: dict[str, Any]) -> None:
        for key in ("deliveryId", "data"):
            if key in webhooks:
                self._check_path(f"/webhooks/{key}", webhooks[key])
        kinds = webhooks.get("eventType")
        for position, path in enumerate(kinds if isinstance(kinds, list) else [kinds]):
            if isinstance(path, str):
                where = f"/{position}" if isinstance(kinds, list) else ""
                self._check_path(f"/webhooks/eventType{where}", path)
        challenge = _obj(webhooks.get("challenge"))
        for key in _obj(challenge.get("when")):
            self._check_path(f"/webhooks/challenge/when/{_escape(key)}", key)
        for key in ("respond", "capture"):
            if key in challenge:
                self._check_path(f"/webhooks/challenge/{key}", challenge[key])
        if challenge and not {"respond", "body", "capture"} & set(challenge):
            self.add("/webhooks/challenge", 'a challenge needs an answer: add "respond" (a '
                     'path to echo back), "body" (a fixed JSON answer) or "capture"')
        verify = _obj(webhooks.get("verify"))
        secret = verify.get("secret")
        if isinstance(secret, str):
            self._check_strings(
                "/webhooks/verify/secret", secret, Scope(self.config_keys, False, "webhooks", "")
            )
        if "timestampPath" in verify:
            self._check_path("/webhooks/verify/timestampPath", verify["timestampPath"])
        if "timestampParam" in verify and "signatureParam" not in verify:
            self.add("/webhooks/verify/timestampParam",
                     "timestampParam reads the signature header's key=value pairs: add "
                     "signatureParam (the key of the signatures, e.g. v1)")
        payload = verify.get("signedPayload")
        if isinstance(payload, str):
            for name in re.findall(r"\{\{\s*([^}]*?)\s*\}\}", payload):
                if not SIGNED_NAME.fullmatch(name):
                    self.add("/webhooks/verify/signedPayload",
                             f"{{{{{name}}}}} is not part of a request; use {{{{body}}}}, "
                             "{{timestamp}}, {{method}}, {{url}} or {{headers.Name}}")
            if "{{timestamp}}" in payload.replace(" ", "") and not (
                    {"timestampHeader", "timestampPath", "timestampParam"} & set(verify)):
                self.add("/webhooks/verify/signedPayload",
                         "the signed payload uses {{timestamp}} but no timestamp is read: add "
                         "timestampHeader, timestampPath or timestampParam")
        if verify.get("type") == "token" and {"signedPayload", "encoding"} & set(verify):
            self.add("/webhooks/verify/type", "a token is compared as it is, nothing is "
                     "signed: remove encoding and signedPayload, or use an hmac type")


SIGNED_NAME = re.compile(r"body|timestamp|method|url|headers\.[A-Za-z0-9!#$%&'*+.^_`|~-]+")


def lint(doc: dict[str, Any], auth_types: Collection[str] = BUILTIN_AUTH_TYPES,
         system_values: Collection[str] = (), allow_private: bool = False) -> list[Problem]:
    """Every semantic problem of ``doc`` as ``(pointer, message)`` pairs.

    ``auth_types`` are the names this host knows, or a mapping from name to the
    plugin's ``AuthType`` (``None`` for built-in ones); ``system_values`` the
    ``{{…}}`` names plugins add."""
    return Linter(doc, auth_types, system_values, allow_private).run()
