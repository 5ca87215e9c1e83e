"""A readable page of the API, rendered from the OpenAPI document (no CDN, no JS)."""

from __future__ import annotations

import json

from flask import Blueprint, render_template

from .spec import OPERATIONS, document

blueprint = Blueprint("apidocs", __name__)


@blueprint.get("/api")
def index() -> str:
    doc = document()
    operations = []
    for op in OPERATIONS:
        item = doc["paths"][op.path][op.method]
        operations.append({
            "method": op.method.upper(), "path": op.path, "summary": op.summary,
            "description": op.description, "public": op.public, "tag": op.tag,
            "parameters": item["parameters"], "body": op.body,
            "responses": item["responses"],
        })
    schemas = {name: json.dumps(schema, indent=2)
               for name, schema in doc["components"]["schemas"].items()}
    return render_template("apidocs.html", info=doc["info"], operations=operations,
                           schemas=schemas)
