"""The marketplace: the catalog grid with search, category filter and pages, and
detail pages.

The grid shows ``PAGE_SIZE`` mini-apps a page (``?page=``, from 1), so a page costs
the same with ten mini-apps or a thousand; search and the category filter apply
to the whole catalog, and the page links keep them.
"""

from __future__ import annotations

from flask import Blueprint, abort, current_app, render_template, request, send_file
from werkzeug.wrappers import Response

from ..db import session
from ..identity import allow_form_action
from ..services.catalog import get_catalog, icon_path

blueprint = Blueprint("marketplace", __name__)


PAGE_SIZE = 24


def _page_number(raw: str | None, pages: int) -> int:
    """The page asked for, within 1…pages; anything else reads as the nearest page."""
    if raw is None or not (raw.isascii() and raw.isdigit()):
        return 1
    return min(max(int(raw), 1), pages)


@blueprint.get("/")
def index() -> str:
    query = request.args.get("q", "").strip()
    category = request.args.get("category", "").strip()
    snapshot = get_catalog(current_app).snapshot(session())
    results = snapshot.search(query, category)
    pages = max(1, -(-len(results) // PAGE_SIZE))
    number = _page_number(request.args.get("page"), pages)
    first = (number - 1) * PAGE_SIZE
    return render_template(
        "marketplace/index.html",
        miniapps=results[first:first + PAGE_SIZE],
        matched=len(results),
        first=first + 1,
        page=number,
        pages=pages,
        total=len(snapshot.latest),
        categories=snapshot.categories,
        query=query,
        category=category,
    )


@blueprint.get("/miniapps/<name>")
def detail(name: str) -> str:
    catalog = get_catalog(current_app)
    snapshot = catalog.snapshot(session())
    version = request.args.get("version") or None
    manifest = catalog.require(session(), name, version)
    if manifest.auth.authorize is not None:
        allow_form_action(manifest.auth.authorize.url.source)
    return render_template(
        "marketplace/detail.html",
        manifest=manifest,
        versions=snapshot.versions(name),
    )


@blueprint.get("/miniapps/<name>/icon")
def icon(name: str) -> Response:
    path = icon_path(get_catalog(current_app).require_entry(session(), name))
    if path is None:
        abort(404)
    response = send_file(path, max_age=3600)
    response.headers["Content-Security-Policy"] = "default-src 'none'; style-src 'unsafe-inline'"
    return response
