"""The semantic lint: one test per rule, asserting the exact pointer and message."""

import copy

import pytest

from host.errors import ManifestError
from host.manifest import compile_manifest, validate_document

BASE = {
    "name": "github-lite",
    "version": "1.0.0",
    "title": "GitHub lite",
    "description": "Issues.",
    "allowedHosts": ["api.github.com", "github.com"],
    "auth": {
        "type": "oauth2",
        "config": {"scope": "repo"},
        "authorize": {"url": "https://github.com/login/oauth/authorize",
                      "queryParams": {"scope": "{{scope}}"}},
        "get_token": {
            "url": "https://github.com/login/oauth/access_token",
            "method": "POST",
            "bodyType": "x-www-form-urlencoded",
            "body": {"code": "{{code}}", "client_id": "[[clientId]]",
                     "client_secret": "[[clientSecret]]", "redirect_uri": "{{redirectUri}}"},
            "mapping": {"accessToken": "$.access_token"},
        },
        "userDetails": {"url": "https://api.github.com/user", "method": "GET",
                        "headers": {"Authorization": "Bearer [[accessToken]]"},
                        "mapping": {"login": "$.login"}},
    },
    "sources": {
        "rpc_repos": {
            "requests": [{"url": "https://api.github.com/user/repos", "method": "GET",
                          "headers": {"Authorization": "Bearer [[accessToken]]"}}],
            "options": {"items": "$[*]", "value": "$", "label": "$.full_name"},
        },
        "rpc_labels": {
            "requests": [{"url": "https://api.github.com/repos/{{repository.owner.login}}/"
                                 "{{repository.name}}/labels", "method": "GET",
                          "headers": {"Authorization": "Bearer [[accessToken]]"}}],
            "options": {"items": "$[*]", "value": "$.name"},
            "dependsOn": ["repository"],
        },
    },
    "actions": [
        {
            "name": "createIssue",
            "title": "Create issue",
            "parameters": {
                "type": "object",
                "required": ["repository", "title"],
                "properties": {
                    "repository": {"type": "object", "x-source": "rpc_repos"},
                    "title": {"type": "string"},
                    "body": {"type": "string"},
                    "labels": {"type": "array", "x-source": "rpc_labels"},
                },
            },
            "requests": [
                {
                    "url": "https://api.github.com/repos/{{repository.owner.login}}/"
                           "{{repository.name}}/issues",
                    "method": "POST",
                    "headers": {"Authorization": "Bearer [[accessToken]]"},
                    "body": {"title": "{{title}}", "body": "{{body}}", "labels": "{{labels}}"},
                    "mapping": [{"name": "number", "value": "$.number"}],
                },
                {
                    "url": "https://api.github.com/repos/{{repository.owner.login}}/"
                           "{{repository.name}}/issues/{{number}}",
                    "method": "GET",
                    "headers": {"Authorization": "Bearer [[accessToken]]"},
                    "mapping": {"url": "$.html_url", "login": "$.user.login"},
                },
            ],
        }
    ],
}

SYSTEM = "webhookUrl, subdomain, uid, installationId, hostUrl, idempotencyKey"


def problems(doc):
    return [(p.pointer, p.message) for p in validate_document(doc, "m.json")]


def changed(edit):
    doc = copy.deepcopy(BASE)
    edit(doc)
    return problems(doc)


def test_the_base_manifest_is_valid():
    assert problems(BASE) == []
    manifest = compile_manifest(BASE)
    assert manifest.action("createIssue").requests[1].pointer == "/actions/0/requests/1"


def test_unknown_value_placeholder_names_the_action_and_its_parameters():
    def edit(doc):
        doc["actions"][0]["requests"][0]["body"]["milestone"] = "{{milestone}}"

    assert changed(edit) == [(
        "/actions/0/requests/0/body/milestone",
        "placeholder {{milestone}} in action createIssue is not a parameter of createIssue "
        "(parameters: body, labels, repository, title), a value mapped by an earlier request, "
        f"an auth.config key (scope) or a system value ({SYSTEM})",
    )]


def test_a_mapping_is_only_visible_to_later_requests():
    def edit(doc):
        doc["actions"][0]["requests"][0]["body"]["n"] = "{{number}}"

    assert [p for p, _ in changed(edit)] == ["/actions/0/requests/0/body/n"]


def test_credential_used_as_value_gets_a_hint():
    def edit(doc):
        doc["actions"][0]["requests"][0]["headers"]["Authorization"] = "token {{accessToken}}"

    [(pointer, message)] = changed(edit)
    assert pointer == "/actions/0/requests/0/headers/Authorization"
    assert message.endswith("; write [[accessToken]] to use the installation's accessToken")


def test_connect_values_only_in_connect_steps():
    def edit(doc):
        doc["actions"][0]["requests"][0]["body"]["code"] = "{{code}}"

    assert changed(edit) == [(
        "/actions/0/requests/0/body/code",
        "placeholder {{code}} is only available in authorize, get_token, userDetails and "
        "registrationRequests",
    )]


def test_unknown_secret_lists_what_the_installation_holds():
    def edit(doc):
        doc["actions"][0]["requests"][0]["headers"]["X-Key"] = "[[apiKey]]"

    assert changed(edit) == [(
        "/actions/0/requests/0/headers/X-Key",
        "placeholder [[apiKey]] is nothing the installation holds (available: accessToken, "
        "clientBasicAuth, clientId, clientSecret, login); credentials come from the auth fields "
        "or the object mappings of get_token, refresh_token and registrationRequests, metadata "
        "from userDetails",
    )]


def test_api_key_and_basic_fields_are_secrets():
    doc = copy.deepcopy(BASE)
    doc["auth"] = {"type": "basic", "fields": {"type": "object", "properties": {
        "tenant": {"type": "string"}}}}
    doc["actions"][0]["requests"][0]["headers"] = {
        "Authorization": "[[basicAuth]]", "X-User": "[[username]]", "X-Tenant": "[[tenant]]"}
    del doc["sources"]
    for prop in ("repository", "labels"):
        doc["actions"][0]["parameters"]["properties"][prop].pop("x-source")
    doc["actions"][0]["requests"][1]["headers"] = {"Authorization": "[[basicAuth]]"}
    doc["actions"][0]["requests"][0]["body"]["scope"] = "{{nothing}}"
    assert [p for p, _ in problems(doc)] == ["/actions/0/requests/0/body/scope"]


def test_source_placeholders_come_from_depends_on():
    def edit(doc):
        doc["sources"]["rpc_labels"]["dependsOn"] = []

    found = changed(edit)
    assert (
        "/sources/rpc_labels/requests/0/url",
        "placeholder {{repository.owner.login}} in source rpc_labels is not one of its "
        "dependsOn fields (none), a value mapped by an earlier request, an auth.config key "
        f"(scope) or a system value ({SYSTEM})",
    ) in found


def test_x_source_must_exist():
    def edit(doc):
        doc["actions"][0]["parameters"]["properties"]["title"]["x-source"] = "rpc_titles"

    assert changed(edit) == [(
        "/actions/0/parameters/properties/title/x-source",
        "x-source 'rpc_titles' is not a source of this manifest (sources: rpc_labels, rpc_repos)",
    )]


def test_depends_on_must_name_a_field_of_every_form_using_the_source():
    def edit(doc):
        doc["sources"]["rpc_labels"]["dependsOn"] = ["repository", "org"]
        doc["sources"]["rpc_labels"]["requests"][0]["queryParams"] = {"org": "{{org}}"}

    assert changed(edit) == [(
        "/actions/0/parameters/properties/labels/x-source",
        "source rpc_labels depends on 'org', which is not a field of createIssue; add the "
        "field or drop it from dependsOn",
    )]


def test_authorize_must_not_set_what_the_host_adds():
    def edit(doc):
        doc["auth"]["authorize"]["queryParams"].update({"state": "x", "redirect_uri": "y"})

    assert sorted(changed(edit)) == [
        ("/auth/authorize/queryParams/redirect_uri",
         "redirect_uri is added by the host (with response_type and client_id unless set); "
         "remove it from queryParams"),
        ("/auth/authorize/queryParams/state",
         "state is added by the host (with response_type and client_id unless set); "
         "remove it from queryParams"),
    ]


def test_literal_hosts_must_be_allowed():
    def edit(doc):
        doc["actions"][0]["requests"][1]["url"] = "https://uploads.github.com/x"

    assert changed(edit) == [(
        "/actions/0/requests/1/url",
        "host 'uploads.github.com' is not covered by allowedHosts (api.github.com, github.com); "
        "add 'uploads.github.com' to allowedHosts",
    )]


def test_placeholder_host_label_needs_a_wildcard():
    def edit(doc):
        doc["actions"][0]["requests"][1]["url"] = "https://{{title}}.github.com:8443/x"

    assert changed(edit) == [(
        "/actions/0/requests/1/url",
        "host '{{title}}.github.com' is not covered by allowedHosts (api.github.com, github.com); "
        "add a wildcard entry such as *.github.com",
    )]
    doc = copy.deepcopy(BASE)
    doc["allowedHosts"].append("*.github.com")
    doc["actions"][0]["requests"][1]["url"] = "https://{{title}}.github.com/x"
    assert problems(doc) == []


def test_userinfo_in_urls_is_refused():
    def edit(doc):
        doc["actions"][0]["requests"][1]["url"] = "https://me:pw@api.github.com/x"

    assert changed(edit) == [(
        "/actions/0/requests/1/url",
        "URLs must not carry user info (user:password@); send credentials in a header",
    )]


def test_allowed_hosts_required_when_requests_exist():
    def edit(doc):
        del doc["allowedHosts"]

    assert (
        "/allowedHosts",
        'allowedHosts is required when the manifest makes requests; list every host it '
        'calls, e.g. ["api.example.com"]',
    ) in changed(edit)


def test_paths_outside_the_subset_are_rejected_at_their_pointer():
    def edit(doc):
        doc["actions"][0]["requests"][1]["mapping"]["url"] = "$.items[?(@.x)]"
        doc["sources"]["rpc_repos"]["options"]["label"] = "$..['x']"

    assert [p for p, _ in changed(edit)] == [
        "/sources/rpc_repos/options/label",
        "/actions/0/requests/1/mapping/url",
    ]


def test_reserved_parameter_names():
    def edit(doc):
        doc["actions"][0]["parameters"]["properties"]["webhookUrl"] = {"type": "string"}

    assert changed(edit) == [(
        "/actions/0/parameters/properties/webhookUrl",
        "parameter name 'webhookUrl' is reserved for a system value; rename it",
    )]


def test_config_keys_cannot_replace_system_values():
    def edit(doc):
        doc["auth"]["config"] = {"webhookUrl": "https://elsewhere.example/", "subdomain": "acme",
                                 "scope": "repo"}

    assert changed(edit) == [(
        "/auth/config/webhookUrl",
        "'webhookUrl' is a system value the host sets; a config key cannot replace it, so give "
        "the setting another name",
    )]


def test_duplicate_action_names():
    def edit(doc):
        doc["actions"].append(copy.deepcopy(doc["actions"][0]))

    assert changed(edit) == [(
        "/actions/1/name",
        "duplicate action name 'createIssue' (also /actions/0); give every action a unique name",
    )]


def test_parameters_must_be_a_valid_object_schema():
    def edit(doc):
        doc["actions"][0]["parameters"]["type"] = "objekt"

    [(pointer, message)] = changed(edit)
    assert pointer == "/actions/0/parameters/type"
    assert message.startswith("parameters of createIssue is not a valid JSON Schema: ")


def test_header_control_characters_are_refused():
    def edit(doc):
        doc["actions"][0]["requests"][1]["headers"]["X-Bad"] = "a\r\nInjected: 1"

    assert changed(edit) == [(
        "/actions/0/requests/1/headers/X-Bad",
        "header value contains a control character; remove it",
    )]


def test_malformed_placeholders():
    def edit(doc):
        doc["actions"][0]["requests"][0]["body"]["title"] = "{{ the title }}"

    assert changed(edit) == [(
        "/actions/0/requests/0/body/title",
        "'{{ the title }}' is not a valid placeholder; write [[key]] or {{key}} with a key of "
        "letters, digits, '_' and dots",
    )]


def test_unknown_auth_type_suggests_the_close_one():
    def edit(doc):
        doc["auth"] = {"type": "oauth"}

    found = changed(edit)
    assert (
        "/auth/type",
        "unknown auth type 'oauth' (known: none, apiKey, basic, oauth2); did you mean 'oauth2'?",
    ) in found


def test_schema_and_lint_errors_come_together():
    doc = copy.deepcopy(BASE)
    doc["version"] = "one"
    doc["actions"][0]["requests"][0]["methd"] = "POST"
    doc["actions"][0]["requests"][0]["body"]["x"] = "{{unknown}}"
    with pytest.raises(ManifestError) as info:
        compile_manifest(doc, "github/manifest.json")
    text = str(info.value).splitlines()
    assert text[0] == (
        "github/manifest.json /version: 'one' is not a valid value: Semantic version such as 1.0.0."
    )
    assert text[1] == (
        "github/manifest.json /actions/0/requests/0: unknown member 'methd' (did you mean "
        "'method'?); allowed here: description, url, method, headers, queryParams, bodyType, "
        "body, mapping, timeout, expect, responseSchema, pagination"
    )
    assert text[2].startswith(
        "github/manifest.json /actions/0/requests/0/body/x: placeholder {{unknown}}"
    )
    assert len(text) == 3


def test_missing_members_and_enums():
    doc = {"name": "X", "version": "1.0.0", "title": "t", "actions": [
        {"name": "a", "title": "A", "requests": [{"url": "ftp://x", "method": "FETCH"}]}]}
    found = problems(doc)
    assert ("", "missing required member 'description'") in found
    assert ("/name", "'X' is not a valid value: Unique catalog key: lower-case letters, digits, "
                     "'-' and '_', 2 to 64 characters.") in found
    assert ("/actions/0/requests/0/method",
            "'FETCH' is not one of GET, POST, PUT, PATCH, DELETE") in found
    assert ("/actions/0/requests/0/url", "'ftp://x' does not match ^https?://") in found


def test_compiled_manifest_is_frozen_and_prepared():
    manifest = compile_manifest(BASE)
    action = manifest.action("createIssue")
    first = action.requests[0]
    assert first.url.placeholders[0].path == ("repository", "owner", "login")
    assert first.mapping.names == ("number",)
    assert action.form.field("labels").widget == "source"
    assert action.form.field("repository").widget == "source"
    assert manifest.sources["rpc_labels"].depends_on == ("repository",)
    with pytest.raises(AttributeError):
        manifest.name = "other"
    with pytest.raises(TypeError):
        manifest.sources["x"] = None


def test_array_item_sources_are_checked_too():
    def edit(doc):
        labels = doc["actions"][0]["parameters"]["properties"]["labels"]
        labels.pop("x-source")
        labels["items"] = {"type": "string", "x-source": "rpc_labels"}
        doc["sources"]["rpc_labels"]["dependsOn"] = ["repository", "org"]
        doc["sources"]["rpc_labels"]["requests"][0]["queryParams"] = {"org": "{{org}}"}

    assert changed(edit) == [(
        "/actions/0/parameters/properties/labels/items/x-source",
        "source rpc_labels depends on 'org', which is not a field of createIssue; add the "
        "field or drop it from dependsOn",
    )]


@pytest.mark.parametrize("name", ["Host", "content-length", "Transfer-Encoding", "Connection"])
def test_headers_that_steer_the_request_are_refused(name):
    def edit(doc):
        doc["actions"][0]["requests"][1]["headers"][name] = "{{title}}"

    assert changed(edit) == [(
        f"/actions/0/requests/1/headers/{name}",
        f"the host sets the {name} header itself; remove it")]


@pytest.mark.parametrize(("entry", "message"), [
    ("127.0.0.1", "'127.0.0.1' is a private, loopback or link-local address, which the host "
                  "refuses unless the operator sets EGRESS_ALLOW_PRIVATE"),
    ("10.0.0.1:8080", "'10.0.0.1:8080' is a private, loopback or link-local address, which "
                      "the host refuses unless the operator sets EGRESS_ALLOW_PRIVATE"),
    ("localhost", "'localhost' names a local or internal network, which the host refuses "
                  "unless the operator sets EGRESS_ALLOW_PRIVATE"),
    ("*.internal", "'*.internal' names a local or internal network, which the host refuses "
                   "unless the operator sets EGRESS_ALLOW_PRIVATE"),
    ("169.254.169.254", "'169.254.169.254' is a cloud metadata service, which the host "
                        "always refuses"),
    ("*.com", "'*.com' is a wildcard over the public suffix 'com', which would allow every "
              "site under it; name the provider's own domain, e.g. *.example.com"),
    ("*.co.uk", "'*.co.uk' is a wildcard over the public suffix 'co.uk', which would allow "
                "every site under it; name the provider's own domain, e.g. *.example.co.uk"),
    *[(entry, f"'{entry}' is the IPv4 address {dotted} written in a short, numeric, octal "
              f"or hexadecimal form; write it as {dotted}")
      for entry, dotted in [("127.1", "127.0.0.1"), ("10.1", "10.0.0.1"),
                            ("2130706433", "127.0.0.1"), ("0x7f000001", "127.0.0.1"),
                            ("0177.0.0.1", "127.0.0.1"), ("0x08.8.8.8:443", "8.8.8.8")]],
])
def test_allowed_hosts_refuse_private_and_public_suffix_entries(entry, message):
    doc = copy.deepcopy(BASE)
    doc["allowedHosts"] = [*BASE["allowedHosts"], entry]
    problems = {p.pointer: p.message for p in validate_document(doc, "m.json")}
    assert problems[f"/allowedHosts/{len(BASE['allowedHosts'])}"] == message


def test_private_entries_pass_when_private_egress_is_on():
    doc = copy.deepcopy(BASE)
    doc["allowedHosts"] = [*BASE["allowedHosts"], "127.0.0.1:5000", "localhost", "*.internal"]
    assert validate_document(doc, "m.json", allow_private=True) == []
    doc["allowedHosts"].append("169.254.169.254")
    assert [p.pointer for p in validate_document(doc, "m.json", allow_private=True)] == [
        "/allowedHosts/5"]


def test_webhooks_are_checked_at_their_pointers():
    def edit(doc):
        doc["webhooks"] = {
            "verify": {"type": "hmac-sha256", "header": "X-Sig", "secret": "[[webhookSecret]]",
                       "timestampParam": "t", "signedPayload": "{{timestamp}}.{{bdy}}"},
            "challenge": {"when": {"$.type": "url_verification"}}}

    assert changed(edit) == [
        ("/webhooks/challenge", 'a challenge needs an answer: add "respond" (a path to echo '
                                'back), "body" (a fixed JSON answer) or "capture"'),
        ("/webhooks/verify/timestampParam", "timestampParam reads the signature header's "
                                            "key=value pairs: add signatureParam (the key of "
                                            "the signatures, e.g. v1)"),
        ("/webhooks/verify/signedPayload", "{{bdy}} is not part of a request; use {{body}}, "
                                           "{{timestamp}}, {{method}}, {{url}} or "
                                           "{{headers.Name}}"),
    ]

    def no_timestamp(doc):
        doc["webhooks"] = {"verify": {"type": "hmac-sha256", "header": "X-Sig",
                                      "secret": "[[clientSecret]]",
                                      "signedPayload": "{{timestamp}}{{body}}"}}

    assert changed(no_timestamp) == [(
        "/webhooks/verify/signedPayload", "the signed payload uses {{timestamp}} but no "
        "timestamp is read: add timestampHeader, timestampPath or timestampParam")]

    def token(doc):
        doc["webhooks"] = {"verify": {"type": "token", "header": "X-Token",
                                      "secret": "[[webhookSecret]]", "encoding": "base64"}}

    assert changed(token) == [("/webhooks/verify/type", "a token is compared as it is, nothing "
                               "is signed: remove encoding and signedPayload, or use an hmac "
                               "type")]


def test_the_webhook_secret_is_only_for_checking_webhooks():
    def edit(doc):
        doc["actions"][0]["requests"][0]["headers"]["X-Hook"] = "[[webhookSecret]]"

    [(pointer, message)] = changed(edit)
    assert pointer == "/actions/0/requests/0/headers/X-Hook"
    assert message.startswith("placeholder [[webhookSecret]] is nothing the installation holds")
