"""Auth types, connecting installations and keeping their tokens alive.

``types`` holds the built-in auth types (none, apiKey, basic, oauth2), which
implement the same :class:`host.plugins.AuthType` contract as plugins' and are
registered as the host's own plugin; ``flow`` lends any auth type the host's
guarded requests while it connects or refreshes; ``oauth2`` runs the
authorization-code connect (state, PKCE, callback checks, token exchange, user
details); ``registration`` registers and unregisters with the provider;
``refresh`` keeps credentials fresh with a single-flight lease that works across
threads and processes.
"""
