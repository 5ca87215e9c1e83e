"""The run engine: pure Python, no Flask, no database.

It takes a compiled manifest piece, a resolution context and an HTTP session,
and returns a result with a redacted trace. Keeping it free of the web layer and
the database is what makes it fast, testable and reusable by flows and workers;
``tests/engine/test_boundaries.py`` walks its imports and fails if that changes.
Only the transport module may import ``requests``.
"""
