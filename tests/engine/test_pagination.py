"""Pagination against a real HTTP server (FLOWS.md §6): cursor, page, offset and Link
header lists, the exact requests sent for each page, maxPages, and a failing page."""

from __future__ import annotations

import json
import time

from werkzeug.wrappers import Request, Response

from host.engine import Context, run_chain
from host.engine.paths import compile_path
from host.manifest import compile_manifest
from host.manifest.lint import lint

from .helpers import requests_of

ITEMS = [{"id": n, "name": f"item {n}"} for n in range(1, 8)]  # seven, in pages of three


def run(provider, client, request, **kwargs):
    compiled = requests_of([request], hosts=[provider.address])
    return run_chain(compiled, Context(), client, allowed_hosts=[provider.address],
                     deadline=time.monotonic() + 10, **kwargs)


def page_of(start: int) -> list[dict]:
    return ITEMS[start:start + 3]


def test_a_cursor_list_is_followed_until_the_cursor_ends(provider, client):
    def handler(request: Request) -> Response:
        start = int(request.args.get("after", 0))
        more = start + 3 < len(ITEMS)
        body = {"results": page_of(start),
                "paging": {"next": {"after": str(start + 3)}} if more else {}}
        return Response(json.dumps(body), mimetype="application/json")

    provider.route("/contacts", handler)
    result = run(provider, client, {
        "url": provider.base + "/contacts", "method": "GET", "queryParams": {"limit": 3},
        "mapping": {"contacts": "$.results"},
        "pagination": {"type": "cursor", "next": "$.paging.next.after", "param": "after"}})
    assert result.ok, result.error
    assert [r.query for r in provider.received] == ["limit=3", "limit=3&after=3",
                                                    "limit=3&after=6"]
    assert result.values == {"contacts": ITEMS}  # every page gathered into the mapped list
    assert [entry.get("page") for entry in result.trace] == [None, 2, 3]
    assert result.complete


def test_page_numbers_stop_on_an_empty_page(provider, client):
    provider.route("/tasks", lambda r: Response(json.dumps(
        {"tasks": page_of((int(r.args.get("page", 1)) - 1) * 3)}), mimetype="application/json"))
    result = run(provider, client, {
        "url": provider.base + "/tasks", "method": "GET",
        "pagination": {"type": "page", "param": "page", "items": "$.tasks"}})
    assert result.ok, result.error
    assert [r.query for r in provider.received] == ["", "page=2", "page=3", "page=4"]
    assert [len(body["tasks"]) for body in result.bodies()] == [3, 3, 1, 0]


def test_offsets_count_the_items_seen(provider, client):
    provider.route("/rows", lambda r: Response(json.dumps(
        page_of(int(r.args.get("offset", 0)))), mimetype="application/json"))
    compiled = requests_of([{"url": provider.base + "/rows", "method": "GET",
                             "pagination": {"type": "offset", "param": "offset",
                                            "items": "$"}}], hosts=[provider.address])
    result = run_chain(compiled, Context(), client, allowed_hosts=[provider.address],
                       deadline=time.monotonic() + 10)
    assert [r.query for r in provider.received] == ["", "offset=3", "offset=6", "offset=7"]
    assert sum(len(body) for body in result.bodies()) == 7


def test_a_link_header_names_the_next_page(provider, client):
    def handler(request: Request) -> Response:
        page = int(request.args.get("page", 1))
        headers = {}
        if page < 3:
            headers["Link"] = (f'<{provider.base}/issues?page={page + 1}&per_page=3>; '
                               f'rel="next", <{provider.base}/issues?page=3>; rel="last"')
        return Response(json.dumps(page_of((page - 1) * 3)), headers=headers,
                        mimetype="application/json")

    provider.route("/issues", handler)
    result = run(provider, client, {
        "url": provider.base + "/issues", "method": "GET", "queryParams": {"per_page": 3},
        "pagination": {"type": "link"}})
    assert result.ok, result.error
    assert [r.query for r in provider.received] == ["per_page=3", "page=2&per_page=3",
                                                    "page=3&per_page=3"]


def test_max_pages_bounds_the_list_and_says_so(provider, client):
    provider.route("/forever", lambda r: Response(json.dumps(
        {"items": [1], "next": str(int(r.args.get("c", 0)) + 1)}), mimetype="application/json"))
    result = run(provider, client, {
        "url": provider.base + "/forever", "method": "GET",
        "pagination": {"type": "cursor", "next": "$.next", "param": "c", "maxPages": 4}})
    assert result.ok and not result.complete
    assert len(provider.received) == 4
    assert result.trace[-1]["note"] == "stopped after 4 pages (maxPages); the list goes on"


def test_a_failing_page_fails_the_whole_list(provider, client):
    def handler(request: Request) -> Response:
        if request.args.get("after") == "6":
            return Response('{"message": "rate limited"}', status=500,
                            mimetype="application/json")
        start = int(request.args.get("after", 0))
        return Response(json.dumps({"results": page_of(start), "next": str(start + 3)}),
                        mimetype="application/json")

    provider.route("/contacts", handler)
    result = run(provider, client, {
        "url": provider.base + "/contacts", "method": "GET",
        "pagination": {"type": "cursor", "next": "$.next", "param": "after"}})
    assert not result.ok
    assert str(result.error).endswith("failed with HTTP 500: rate limited")


def test_the_lint_checks_where_pagination_goes():
    doc = {"name": "paged", "version": "1.0.0", "title": "Paged", "description": "d",
           "allowedHosts": ["api.example.com"],
           "actions": [{"name": "list", "title": "List", "requests": [
               {"url": "https://api.example.com/a", "method": "GET",
                "pagination": {"type": "link"}},
               {"url": "https://api.example.com/b", "method": "GET",
                "pagination": {"type": "page", "param": "page"}}]}]}
    assert lint(doc) == [
        ("/actions/0/requests/0/pagination", "only the last request of a chain is followed "
                                             "across pages; move pagination to the last "
                                             "request"),
        ("/actions/0/requests/1/pagination", 'a page-numbered list ends on an empty page: '
                                             'add "items", the path of the list on each page')]
    doc["actions"][0]["requests"] = doc["actions"][0]["requests"][1:]
    doc["actions"][0]["requests"][0]["pagination"]["items"] = "$.data"
    compiled = compile_manifest(doc).action("list").requests[0].pagination
    assert (compiled.type, compiled.param, compiled.start, compiled.max_pages) == (
        "page", "page", 1, 100)
    assert compiled.items == compile_path("$.data")


def test_a_cursor_in_the_json_body_for_graphql_and_search_apis(provider, client):
    def handler(request: Request) -> Response:
        variables = request.get_json()["variables"]
        start = int(variables.get("after") or 0)
        more = start + 3 < len(ITEMS)
        return Response(json.dumps({"data": {"issues": {
            "nodes": page_of(start),
            "pageInfo": {"endCursor": str(start + 3) if more else None}}}}),
            mimetype="application/json")

    provider.route("/graphql", handler)
    result = run(provider, client, {
        "url": provider.base + "/graphql", "method": "POST",
        "body": {"query": "query($after: String) { issues(after: $after) { nodes { id } } }",
                 "variables": {"first": 3}},
        "pagination": {"type": "cursor", "next": "$.data.issues.pageInfo.endCursor",
                       "param": "variables.after", "in": "body"}})
    assert result.ok, result.error
    assert [json.loads(r.body)["variables"] for r in provider.received] == [
        {"first": 3}, {"first": 3, "after": "3"}, {"first": 3, "after": "6"}]
    assert result.trace[1]["body"]["variables"] == {"first": 3, "after": "3"}
