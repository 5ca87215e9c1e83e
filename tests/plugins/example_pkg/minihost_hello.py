"""Hello for Minihost: a star-rating widget, a page, and a sign-in auth type."""

from flask import Blueprint
from markupsafe import Markup, escape

from host.plugins import AuthType, hookimpl

MINIHOST_REQUIRES = ">=0.1"
blueprint = Blueprint("hello", __name__, url_prefix="/hello")


@blueprint.get("/")
def page():
    return {"hello": "world"}


def stars(field, name, value):
    return Markup('<input type="range" min="1" max="5" id="f-{}" name="{}" value="{}">'.format(
        escape(name.replace(".", "-")), escape(name), escape(value or 3)))


@hookimpl
def form_widgets():
    return {"stars": stars}


@hookimpl
def register_blueprints(app):
    return [blueprint]


def sign_in(flow):
    """Trade the username and password for a session token at auth.login."""
    token = flow.run("login", {"username": flow.values["username"],
                               "password": flow.values["password"]})
    return {"username": flow.values["username"], "password": flow.values["password"], **token}


SESSION = AuthType(
    name="session",
    title="Username and password, for a session token",
    form=lambda auth: {"type": "object", "required": ["username", "password"], "properties": {
        "username": {"type": "string", "title": "Username"},
        "password": {"type": "string", "title": "Password", "writeOnly": True,
                     "x-widget": "password"}}},
    connect=sign_in,
    refresh=sign_in,
    credentials=lambda auth: ["username", "password", "sessionToken", "expiresAt"],
    schema={"required": ["login"], "properties": {"login": {"type": "object"}}},
    requests=("login",),
    values=("username", "password"),
)


@hookimpl
def auth_types(config):
    return [SESSION]
