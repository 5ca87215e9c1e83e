"""Starting the runs of stored events on a thread of this process, after the request
that stored them has answered (a webhook's provider, an internal event's sender, a
sync). What "starting the runs" means is :func:`host.services.events.dispatch`,
registered here when that module loads, so that the data sources, whose syncs store
events too, need not import it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from flask import Flask

__all__ = ["HANDLER", "hand_off"]

logger = logging.getLogger(__name__)

HANDLER: Callable[[Flask, str], object] | None = None
_LOCK = threading.Lock()
_KEY = "minihost.event_dispatcher"


class _Dispatcher:
    """One thread per process that starts the runs of the events it is handed."""

    def __init__(self, app: Flask) -> None:
        # The app itself, not the request's proxy of it: the thread outlives the request.
        self.app: Flask = (app._get_current_object()
                           if hasattr(app, "_get_current_object") else app)
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="minihost-events")

    def submit(self, event_id: str) -> None:
        try:
            self.pool.submit(self._run, event_id)
        except RuntimeError:  # shutting down: a timer takes the event later
            pass

    def _run(self, event_id: str) -> None:
        with self.app.app_context():
            try:
                assert HANDLER is not None
                HANDLER(self.app, event_id)
            except Exception:
                logger.exception("event %s: its runs could not be started now; a timer "
                                 "tries again", event_id)


def hand_off(app: Flask, event_id: str) -> None:
    """Start the runs of a stored event on this process's dispatcher thread."""
    found: _Dispatcher | None = app.extensions.get(_KEY)
    if found is None:
        with _LOCK:
            found = app.extensions.get(_KEY)
            if found is None:
                found = app.extensions[_KEY] = _Dispatcher(app)
    found.submit(event_id)
