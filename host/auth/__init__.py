"""Connecting installations and keeping their tokens alive.

``oauth2`` runs the authorization-code connect (state, PKCE, callback checks,
token exchange, user details, registration); ``refresh`` keeps tokens fresh
with a single-flight lease that works across threads and processes. API-key
and basic connects live in ``host.services.installations``.
"""
