"""Who is calling: a person (or their API token) acting in one workspace.

Kept apart from the accounts service that creates principals, so the layers
below services (connects, runs) can name the caller without importing it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from .db import User

__all__ = ["Principal", "hash_secret"]


def hash_secret(secret: str) -> str:
    """How tokens, session secrets and OAuth states are stored: a SHA-256 hex digest.
    They are random 256-bit values, not guessable, so a slow hash adds nothing."""
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling, in which workspace; ``via`` says how they proved it."""

    user: User
    workspace_id: str
    via: str  # "session:<id>" or "token:<id>"
    flow_id: str | None = None  # a flow token: it may only start this flow

    @property
    def actor(self) -> str:
        """How audit events name this caller: the user, and the token when one was used."""
        if self.via.startswith("token:"):
            return f"user:{self.user.id} via {self.via}"
        return f"user:{self.user.id}"

    @property
    def is_admin(self) -> bool:
        return self.user.is_admin
