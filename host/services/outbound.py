"""The one guarded HTTP client of this host, and its sandbox twin.

Every outbound request of every kind goes through :func:`client_for`; the
policy comes from ``EGRESS_ALLOW_PRIVATE`` and the whole host can be put in
sandbox with ``SANDBOX``.
"""

from __future__ import annotations

from dataclasses import dataclass

from flask import Flask

from ..engine import EgressPolicy, GuardedClient, SandboxClient

__all__ = ["Outbound", "client_for", "init_app"]


@dataclass(frozen=True, slots=True)
class Outbound:
    policy: EgressPolicy
    guarded: GuardedClient
    sandbox: SandboxClient


def client_for(app: Flask, sandbox: bool = False) -> GuardedClient | SandboxClient:
    outbound: Outbound = app.extensions["minihost.outbound"]
    return outbound.sandbox if sandbox or app.config["SANDBOX"] else outbound.guarded


def init_app(app: Flask) -> None:
    policy = EgressPolicy(allow_private=app.config["EGRESS_ALLOW_PRIVATE"])
    app.extensions["minihost.outbound"] = Outbound(policy, GuardedClient(policy),
                                                   SandboxClient(policy))
