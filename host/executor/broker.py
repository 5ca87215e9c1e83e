"""Celery as the executor (FLOWS.md §8): task attempts run on ``minihost worker``
processes, any number on any machines, fed through a broker (Redis or RabbitMQ).

The database stays the only memory. A message names a ready task run, the attempt it
is ready after and its run — ids only, never inputs, outputs or credentials. The
worker claims the attempt by the same compare-and-set the in-process pool uses
(:func:`host.executor.claim`), so a message delivered twice (a broker reconnect, a
visibility timeout, a resend) finds nothing to claim the second time. A worker killed
mid-attempt leaves a claim whose holder is gone, recovered as in §3 *Durable* by any
process's sweep; the message Celery delivers again is then only a duplicate.

Backoff and waits live in the database (a task's ``ready_at``), never in a Celery
countdown: a countdown is a message held by one worker, lost with it and invisible
to cancel. Every process's executor loop sends what became ready
(:func:`host.executor.send_ready`) and runs the timers; a worker runs its timers in
its first pool process. There is no ``celery beat``.

The settings and why each is set are in ``docs/deploy.md``.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
from collections.abc import Callable
from typing import Any

from flask import Flask

from ..db import Worker, get_database, utcnow
from ..errors import ConfigError
from ..processes import set_label
from ..version import __version__
from . import Ready, Sender, get_executor, set_sender, take_sent

__all__ = ["CeleryDispatch", "celery_for", "close", "init_app", "queue_depth",
           "run_worker"]

logger = logging.getLogger(__name__)

TASK = "minihost.attempt"
# An attempt lasts at most its action's timeout (60 s at most, FLOWS.md §2) and its
# claim 10 s more; the limits are backstops for a process stuck past that.
SOFT_LIMIT_SECONDS = 90
HARD_LIMIT_SECONDS = 120
# Redis gives an unacknowledged message to another worker after this long: above the
# hard limit, so a message is only given again when its worker is really gone.
VISIBILITY_SECONDS = 600
BEAT_SECONDS = 5.0  # how often a worker says it is alive
# A send that cannot reach the broker gives up quickly: the request that started a
# run must not hang, and the executor loop sends the task again.
SEND_RETRY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.2,
              "interval_max": 0.5}


def celery_for(app: Flask) -> Any:
    """The application's Celery app, configured once."""
    found = app.extensions.get("minihost.celery")
    if found is not None:
        return found
    from celery import Celery

    url = app.config["CELERY_BROKER_URL"]
    celery = Celery("minihost", broker=url, set_as_current=False)
    transport: dict[str, Any] = {"visibility_timeout": VISIBILITY_SECONDS}
    if url.startswith(("redis", "rediss")):  # CLIENT LIST tells whose connection is whose
        role = "worker" if _WORKER else "host"
        transport["client_name"] = f"minihost-{role}:{app.config['CELERY_QUEUE']}"
    celery.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,
        result_backend=None,
        task_soft_time_limit=SOFT_LIMIT_SECONDS,
        task_time_limit=HARD_LIMIT_SECONDS,
        broker_transport_options=transport,
        worker_cancel_long_running_tasks_on_connection_loss=True,
        broker_connection_retry_on_startup=True,
        broker_connection_timeout=4,
        task_default_queue=app.config["CELERY_QUEUE"],
        task_serializer="json",
        accept_content=["json"],
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,
        worker_send_task_events=False,
        task_send_sent_event=False,
        worker_enable_remote_control=True,
    )
    celery.task(name=TASK, ignore_result=True)(_attempt)
    app.extensions["minihost.celery"] = celery
    return celery


class CeleryDispatch(Sender):
    """Sends ready task runs as messages, through one pooled producer per batch."""

    def __init__(self, app: Flask) -> None:
        self.app = app

    def send(self, items: list[Ready]) -> None:
        celery = celery_for(self.app)
        with celery.producer_or_acquire() as producer:
            for task_run_id, attempt, flow_run_id in items:
                celery.send_task(TASK, args=(task_run_id, attempt, flow_run_id),
                                 queue=self.app.config["CELERY_QUEUE"], producer=producer,
                                 retry=True, retry_policy=SEND_RETRY)


def init_app(app: Flask) -> None:
    """Send attempts to workers when ``CELERY_BROKER_URL`` is set."""
    if not app.config.get("CELERY_BROKER_URL"):
        return
    try:
        import celery  # noqa: F401
    except ImportError:
        raise ConfigError(
            "CELERY_BROKER_URL is set but Celery is not installed; install it with "
            "pip install -e \".[celery]\" (or unset CELERY_BROKER_URL: the host processes "
            "then run flow work themselves)") from None
    set_sender(app, CeleryDispatch(app))


def close(app: Flask) -> None:
    """Let go of the broker connections this application holds."""
    found = app.extensions.pop("minihost.celery", None)
    if found is not None:
        found.close()


def queue_depth(app: Flask) -> int | None:
    """Messages waiting in the queue (None when the broker does not answer)."""
    celery = celery_for(app)
    try:
        with celery.connection_for_write() as connection:
            connection.ensure_connection(max_retries=1, timeout=2)
            with connection.channel() as channel:
                return int(channel.queue_declare(app.config["CELERY_QUEUE"],
                                                 passive=True).message_count)
    except Exception as error:  # the queue not declared yet reads as empty
        if "NOT_FOUND" in str(error) or "no queue" in str(error).lower():
            return 0
        logger.warning("the broker did not answer a queue-depth question: %s", error)
        return None


# -- the worker --------------------------------------------------------------------------

_WORKER: dict[str, Any] = {}  # the Flask app of this worker (a pool process inherits it)
_STATE: dict[str, Any] = {"running": False, "stop": False, "previous": signal.SIG_DFL}


def _attempt(task_run_id: str, attempt: int, flow_run_id: str) -> None:
    """Claim the attempt a message names and run it; a message whose attempt is gone
    (run, cancelled, taken again) claims nothing and is done."""
    app: Flask = _WORKER["app"]
    handler, _lease_for, _timers = app.extensions["minihost.executor_setup"]
    _guard_termination()
    with app.app_context():
        for claimed in take_sent(app, (task_run_id, int(attempt), flow_run_id)):
            _STATE["running"] = True
            try:
                handler(app, claimed)
            finally:
                _STATE["running"] = False
    if _STATE["stop"]:
        _terminate_now()


def _guard_termination() -> None:
    """Install :func:`_on_terminate` (the pool installs its own handler after a pool
    process starts, so it is installed here, by the first attempt)."""
    current = signal.getsignal(signal.SIGTERM)
    if current is not _on_terminate:
        _STATE["previous"] = current
        signal.signal(signal.SIGTERM, _on_terminate)


def _on_terminate(signum: int, frame: Any) -> None:
    """Celery cancels running attempts when its broker connection drops (their
    messages come again): an attempt stopped mid-request would leave its side effect
    unknown, so it goes on to record its outcome, and the process ends after it."""
    if _STATE["running"]:
        _STATE["stop"] = True
        return
    _terminate_now()


def _terminate_now() -> None:
    """End as the pool would have on the signal (its handler exits cleanly)."""
    previous = _STATE["previous"]
    signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)


def _pool_process_started(**_: Any) -> None:
    """In each pool process: its own database connections (a forked pool's would be
    shared with the parent), and in the first one, the executor loop (timers and
    sends) — one per worker, as in a host process."""
    from billiard.process import current_process

    from ..db import get_database

    app: Flask = _WORKER["app"]
    get_database(app).engine.dispose(close=False)
    set_label(_WORKER["name"])
    if getattr(current_process(), "index", 0) == 0:
        handler, lease_for, timers = app.extensions["minihost.executor_setup"]
        app.extensions["minihost.executor_setup"] = (handler, lease_for, [*timers, beat])
        with app.app_context():
            get_executor(app)


def beat(app: Flask) -> None:
    """Say this worker is alive (every few seconds, from its first pool process):
    what ``/healthz`` and the workers page count."""
    now = utcnow()
    last = _WORKER.get("beaten")
    if last is not None and (now - last).total_seconds() < BEAT_SECONDS:
        return
    _WORKER["beaten"] = now
    values = {"hostname": socket.gethostname(), "pid": os.getppid(),
              "concurrency": _WORKER["concurrency"], "version": __version__, "seen_at": now}
    with get_database(app).transaction() as db:
        found = db.get(Worker, _WORKER["name"])
        if found is None:
            db.add(Worker(name=_WORKER["name"], started_at=now, **values))
        else:
            if found.pid != values["pid"]:  # a worker started again under its name
                found.started_at = now
            for key, value in values.items():
                setattr(found, key, value)


def run_worker(app: Flask, concurrency: int, name: str | None = None,
               loglevel: str = "INFO",
               ready: Callable[[], None] | None = None) -> None:
    """Run a Celery worker for ``app`` until it is stopped: ``concurrency`` pool
    processes, each running one attempt at a time."""
    from celery import signals

    name = name or f"minihost-{os.getpid()}@{socket.gethostname()}"
    _WORKER.update(app=app, name=name, concurrency=concurrency)
    celery = celery_for(app)
    signals.worker_process_init.connect(_pool_process_started, weak=False)
    if ready is not None:
        signals.worker_ready.connect(lambda **_: ready(), weak=False)
    argv = ["worker", f"--concurrency={concurrency}", "--pool=prefork", f"--hostname={name}",
            f"--queues={app.config['CELERY_QUEUE']}", f"--loglevel={loglevel}", "--without-mingle",
            "--without-gossip"]
    celery.worker_main(argv=argv)

