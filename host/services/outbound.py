"""The one guarded HTTP client of this host, and its sandbox twin.

Every outbound request of every kind goes through :func:`client_for`; the
policy comes from ``EGRESS_ALLOW_PRIVATE`` and the whole host can be put in
sandbox with ``SANDBOX``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from flask import Flask

from ..engine import EgressPolicy, GuardedClient, Hooks, NoHooks, Outgoing, Response, SandboxClient
from ..errors import PluginFailed
from ..plugins import Plugins, get_plugins

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

    __slots__ = ("config", "installation_id", "miniapp", "plugins")

    def __init__(self, plugins: Plugins, miniapp: str, installation_id: str | None,
                 config: Mapping[str, Any]) -> None:
        self.plugins = plugins
        self.miniapp = miniapp
        self.installation_id = installation_id
        self.config = config

    def _call(self, hook_name: str, outgoing: Outgoing, **kwargs: Any) -> None:
        arguments = {"request": outgoing, "miniapp": self.miniapp,
                     "installation_id": self.installation_id, "config": self.config, **kwargs}
        for impl in reversed(getattr(self.plugins.hook, hook_name).get_hookimpls()):
            try:
                impl.function(*[arguments[name] for name in impl.argnames])
            except Exception as error:
                message = self.plugins.report(impl.plugin_name, hook_name, error)
                sent = "nothing was sent" if hook_name == "prepare_request" else \
                    "the answer was not used"
                raise PluginFailed(f"request {outgoing.pointer}: plugin {impl.plugin_name} "
                                   f"failed in {hook_name} ({message}); {sent}") from None

    def prepare_request(self, outgoing: Outgoing) -> None:
        secret_headers = outgoing.secret_headers
        self._call("prepare_request", outgoing)
        if outgoing.secret_headers != secret_headers:
            outgoing.secret_headers = frozenset(h.lower() for h in outgoing.secret_headers)
            outgoing.carries_secrets = True

    def response_received(self, outgoing: Outgoing, response: Response) -> None:
        self._call("response_received", outgoing, response=response)


def hooks_for(app: Flask, miniapp: str, installation_id: str | None) -> Hooks:
    """The hooks for this mini-app's requests; none at all when no plugin
    implements them, so a run pays nothing for the seam."""
    plugins = get_plugins(app)
    if not (app.extensions["minihost.outbound"].request_hooks):
        return NO_HOOKS
    return PluginHooks(plugins, miniapp, installation_id, app.config)


def init_app(app: Flask) -> None:
    """Called after the plugins are loaded: the sandbox asks their
    ``sandbox_response`` first."""
    policy = EgressPolicy(allow_private=app.config["EGRESS_ALLOW_PRIVATE"])
    plugins = get_plugins(app)
    responder = None
    if plugins.implemented("sandbox_response"):
        def responder(outgoing: Outgoing, spec: Any) -> Response | None:
            answer = plugins.first_result("sandbox_response", request=outgoing, spec=spec,
                                          config=app.config)
            if answer is None or isinstance(answer, Response):
                return answer
            plugins.report("?", "sandbox_response", TypeError(
                f"a plugin answered {type(answer).__name__}, not a host.engine.Response; "
                "the generated answer was used"))
            return None
    request_hooks = plugins.implemented("prepare_request") or \
        plugins.implemented("response_received")
    app.extensions["minihost.outbound"] = Outbound(policy, GuardedClient(policy),
                                                   SandboxClient(policy, responder),
                                                   request_hooks)
