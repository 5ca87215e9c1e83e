"""Use cases shared by the web pages, the API and the CLI.

Each use case has exactly one implementation here; ``web/``, ``api/`` and
``cli.py`` parse input, call a service and render the result.
"""
