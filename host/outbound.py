"""The one guarded HTTP client of this host, and its sandbox twin.

Every outbound request of every kind goes through :func:`client_for`; the
policy comes from ``EGRESS_ALLOW_PRIVATE`` and the whole host can be put in
sandbox with ``SANDBOX``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from flask import Flask

from .engine import (
    EgressPolicy,
    GuardedClient,
    Hooks,
    NoHooks,
    Outgoing,
    Response,
    SandboxClient,
    jsonlimits,
)
from .engine.redact import Redactor
from .errors import PluginFailed
from .plugins import Plugins, get_plugins

__all__ = ["Outbound", "PluginHooks", "client_for", "hooks_for", "init_app"]

NO_HOOKS = NoHooks()


@dataclass(frozen=True, slots=True)
class Outbound:
    policy: EgressPolicy
    guarded: GuardedClient
    sandbox: SandboxClient
    request_hooks: bool = False


def client_for(app: Flask, sandbox: bool = False) -> GuardedClient | SandboxClient:
    outbound: Outbound = app.extensions["minihost.outbound"]
    return outbound.sandbox if sandbox or app.config["SANDBOX"] else outbound.guarded


class PluginHooks:
    """The engine's hook seam, answered by plugins' ``prepare_request`` and
    ``response_received`` for one mini-app's requests. A plugin that raises
    fails the run with its name: an unsigned request must not go out as if
    it were signed."""

    __slots__ = ("config", "installation_id", "miniapp", "plugins", "secrets")

    def __init__(self, plugins: Plugins, miniapp: str, installation_id: str | None,
                 config: Mapping[str, Any], secrets: Callable[[], Sequence[str]]) -> None:
        self.plugins = plugins
        self.miniapp = miniapp
        self.installation_id = installation_id
        self.config = config
        self.secrets = secrets  # computed only when a plugin fails: to redact its message

    def _call(self, hook_name: str, outgoing: Outgoing, **kwargs: Any) -> None:
        sent = "nothing was sent" if hook_name == "prepare_request" else \
            "the answer was not used"

        def failed(plugin: str, message: str) -> PluginFailed:
            return PluginFailed(f"request {outgoing.pointer}: plugin {plugin} failed in "
                                f"{hook_name} ({message}); {sent}")

        self.plugins.call_all(hook_name, failed, lambda text: Redactor(self.secrets()).text(text),
                              request=outgoing, miniapp=self.miniapp,
                              installation_id=self.installation_id, config=self.config,
                              **kwargs)

    def prepare_request(self, outgoing: Outgoing) -> None:
        secret_headers, body = outgoing.secret_headers, outgoing.body
        self._call("prepare_request", outgoing)
        if outgoing.body is not body:  # the trace shows what is sent, not what was rendered
            outgoing.body_trace = _readable(outgoing.body)
        if outgoing.secret_headers != secret_headers:
            outgoing.secret_headers = frozenset(h.lower() for h in outgoing.secret_headers)
            outgoing.carries_secrets = True

    def response_received(self, outgoing: Outgoing, response: Response) -> None:
        self._call("response_received", outgoing, response=response)


def _readable(body: bytes | None) -> Any:
    if body is None:
        return None
    try:
        return jsonlimits.loads(body)
    except ValueError:  # not JSON, or nested past the limit: plugins see the text
        return body.decode("utf-8", errors="replace")


def hooks_for(app: Flask, miniapp: str, installation_id: str | None,
              secrets: Callable[[], Sequence[str]] = tuple) -> Hooks:
    """The hooks for this mini-app's requests; none at all when no plugin
    implements them, so a run pays nothing for the seam. ``secrets`` gives the
    values to hide should a plugin's error quote them."""
    if not (app.extensions["minihost.outbound"].request_hooks):
        return NO_HOOKS
    return PluginHooks(get_plugins(app), miniapp, installation_id, app.config, secrets)


def _not_a_response(answer: Any) -> str | None:
    if isinstance(answer, Response) and isinstance(answer.body, bytes):
        return None
    return (f"answered {type(answer).__name__}"
            f"{' with a text body' if isinstance(answer, Response) else ''}, not a "
            "host.engine.Response with a bytes body; it was not used")


def _sandbox_answer(plugins: Plugins, outgoing: Outgoing, spec: Any,
                    config: Mapping[str, Any]) -> Response | None:
    """The first plugin's answer that is a real Response (``firstresult``); one that
    raises or answers something else is reported and the next is asked."""
    answer: Response | None = plugins.call_first("sandbox_response", _not_a_response,
                                                 request=outgoing, spec=spec, config=config)
    return answer


def init_app(app: Flask) -> None:
    """Called after the plugins are loaded: the sandbox asks their
    ``sandbox_response`` first."""
    policy = EgressPolicy(allow_private=app.config["EGRESS_ALLOW_PRIVATE"])
    plugins = get_plugins(app)
    responder = None
    if plugins.implemented("sandbox_response"):
        def responder(outgoing: Outgoing, spec: Any) -> Response | None:
            return _sandbox_answer(plugins, outgoing, spec, app.config)
    request_hooks = plugins.implemented("prepare_request") or \
        plugins.implemented("response_received")
    app.extensions["minihost.outbound"] = Outbound(policy, GuardedClient(policy),
                                                   SandboxClient(policy, responder),
                                                   request_hooks)
