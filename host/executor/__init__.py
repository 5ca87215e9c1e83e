"""The executor (FLOWS.md §8): claims of ready work in the database, and the
in-process pool that runs them.

Work lives in the database, never in this process: a task run is ``ready`` with a
``ready_at``, and whoever claims it first — by compare-and-set on its status and
attempt — runs that attempt. So any number of host processes can poll the same
database, a duplicate wake-up finds nothing to claim, and a process that holds no
claim can be killed at any moment. What to do with a claimed task, and the timers
(expired claims, deadlines), are given by the services layer (:func:`configure`);
a later Celery executor sends the same claims to workers instead of this pool.

Work that one attempt makes ready need not wait for a poll: the transaction that
records an attempt's outcome (or starts a run) may claim the tasks it makes ready,
as many as it reserved here (:func:`reserve`), and hand them over with what it
already read (:class:`Claim` ``context``). The thread that ran the attempt goes on
with the first of them itself. A process holds at most ``2 × FLOW_WORKERS`` claims
(those beyond its threads wait in its queue for the next free thread, a task's
length at most); polling claims only for idle threads, so work it cannot take soon
stays ready for other processes. A claim handed over is an ordinary claim in the
database: if this process dies, it expires and is recovered like any other.

With a broker (``CELERY_BROKER_URL``, :mod:`host.executor.broker`) no thread here runs
attempts: a task made ready is marked *sent* in the transaction that made it ready
(holder :data:`SENT`, its lease the moment it may be sent again) and its ids go to the
broker after the commit; a Celery worker claims it by the same compare-and-set and
runs it. The loop here then only sends what became ready later (a retry's backoff, a
wait) or whose message was lost, and runs the timers.
"""

from __future__ import annotations

import atexit
import logging
import random
import threading
import time
import weakref
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from flask import Flask
from sqlalchemy import bindparam, or_, select, update
from sqlalchemy.exc import SQLAlchemyError

from ..db import Prepared, RawCursor, TaskRun, get_database, new_id, utcnow
from ..processes import holder

__all__ = ["SENT", "Claim", "Executor", "Sender", "configure", "get_executor", "lease_until",
           "reserve", "send_ready", "sender", "take_ready", "take_sent", "wake"]

logger = logging.getLogger(__name__)

POLL_SECONDS = 0.25  # how soon a task another process made ready is seen here
# With a broker, a commit sends what it makes ready itself: polling finds only the ends
# of backoffs and waits, and lost messages.
SEND_POLL_SECONDS = 1.0
TIMER_SECONDS = 2.0  # how often expired claims and deadlines are looked for
LEASE_MARGIN = 10.0  # seconds past an attempt's own deadline before its claim expires
BATCH = 32
# A ready task whose message went to the broker: its holder is ``broker:<sends>``, its
# lease the moment another process may send it again — a message lost with a broker
# that keeps nothing, with a process killed between its commit and the send, or with
# a worker killed after taking it but before claiming it (Redis would give it again
# only after its visibility timeout). A copy sent while the first still waits in a
# long queue costs a claim that finds nothing; the wait doubles with each send
# (10 s, 20 s, 40 s … at most 10 min), so a deep queue gets few copies.
SENT = "broker"
RESEND_SECONDS = 10.0
RESEND_MAX_SECONDS = 600.0


@dataclass(frozen=True, slots=True)
class Claim:
    """One claimed attempt: the task run, its attempt number and the id its action
    run row will have."""

    task_run_id: str
    attempt: int
    run_id: str
    flow_run_id: str | None = None
    # What the claimer already read (the run and its tasks), so the attempt need not
    # read it again; None for a claim taken by polling.
    context: Any = field(default=None, compare=False, repr=False)


# Runs a claim; returns the claims to go on with in the same thread (at most one).
Handler = Callable[[Flask, Claim], "list[Claim] | None"]
Timer = Callable[[Flask], object]
LeaseFor = Callable[[Flask, str], float]
# What a broker message names: a ready task run, the attempt it is ready after, its run.
Ready = tuple[str, int, str]


class Sender:
    """Sends ready task runs to workers (the broker executor implements it)."""

    def send(self, items: list[Ready]) -> None:
        raise NotImplementedError


def sender(app: Flask) -> Sender | None:
    """The broker's sender when attempts run on workers, else None (this process's
    threads run them)."""
    return app.extensions.get(_SENDER)


def set_sender(app: Flask, found: Sender | None) -> None:
    if found is None:
        app.extensions.pop(_SENDER, None)
    else:
        app.extensions[_SENDER] = found


@dataclass(frozen=True, slots=True)
class _Statements:
    """The two statements every claim runs, rendered once per database: they run for
    every task attempt, and building them through the ORM cost more than the work."""

    ready: Prepared
    claim: Prepared
    unsent: Prepared  # ready now, never sent
    resend: Prepared  # sent, and due to be sent again
    mark_sent: Prepared
    unmark: Prepared


def _statements(app: Flask) -> _Statements:
    found: _Statements | None = app.extensions.get("minihost.executor_statements")
    if found is None:
        dialect = get_database(app).engine.dialect
        moment = TaskRun.__table__.c.ready_at.type
        found = _Statements(
            ready=Prepared(
                select(TaskRun.id, TaskRun.attempt, TaskRun.flow_run_id)
                .where(TaskRun.status == bindparam("ready"), TaskRun.ready_at <= bindparam("now"))
                .order_by(TaskRun.ready_at).limit(bindparam("limit"))
                .offset(bindparam("offset")),
                dialect, (), {"now": moment}),
            claim=Prepared(
                update(TaskRun)
                .where(TaskRun.id == bindparam("task"), TaskRun.status == bindparam("ready"),
                       TaskRun.attempt == bindparam("previous"))
                .values(status=bindparam("running"), attempt=bindparam("next"),
                        holder=bindparam("holder"), lease_expires_at=bindparam("lease"),
                        started_at=bindparam("now"), current_run=bindparam("run")),
                dialect, (), {"lease": moment, "now": moment}),
            # Two reads an index answers each, even with thousands of sent tasks
            # waiting in the queue: those never sent (no holder), and those whose send
            # is due again (their lease passed).
            unsent=Prepared(
                select(TaskRun.id, TaskRun.attempt, TaskRun.flow_run_id, TaskRun.holder)
                .where(TaskRun.status == bindparam("ready"), TaskRun.holder.is_(None),
                       TaskRun.ready_at <= bindparam("now"))
                .order_by(TaskRun.ready_at).limit(bindparam("limit"))
                .offset(bindparam("offset")),  # SQLite renders a LIMIT with its OFFSET
                dialect, (), {"now": moment}),
            resend=Prepared(
                select(TaskRun.id, TaskRun.attempt, TaskRun.flow_run_id, TaskRun.holder)
                .where(TaskRun.status == bindparam("ready"),
                       TaskRun.lease_expires_at < bindparam("now"),
                       TaskRun.holder.like(bindparam("sent")))
                .limit(bindparam("limit")).offset(bindparam("offset")),
                dialect, (), {"now": moment}),
            mark_sent=Prepared(
                update(TaskRun)
                .where(TaskRun.id == bindparam("task"), TaskRun.status == bindparam("ready"),
                       TaskRun.attempt == bindparam("previous"),
                       or_(TaskRun.holder.is_(None), TaskRun.lease_expires_at < bindparam("now")))
                .values(holder=bindparam("sent"), lease_expires_at=bindparam("lease")),
                dialect, (), {"lease": moment, "now": moment}),
            unmark=Prepared(
                update(TaskRun)
                .where(TaskRun.id == bindparam("task"), TaskRun.status == bindparam("ready"),
                       TaskRun.holder.like(bindparam("sent")))
                .values(holder=None, lease_expires_at=None),
                dialect, (), {}))
        app.extensions["minihost.executor_statements"] = found
    return found


def ready(app: Flask, limit: int) -> list[tuple[str, int, str]]:
    """Up to ``limit`` task runs ready now, the longest-waiting first: (id, attempt,
    flow run)."""
    rows = get_database(app).read_rows(_statements(app).ready, {"ready": "ready",
                                                                "now": utcnow(),
                                                                "limit": limit, "offset": 0})
    return [(str(task), int(attempt), str(run)) for task, attempt, run in rows]


def lease_until(now: datetime, lease_seconds: float) -> datetime:
    """When a claim taken ``now`` for an attempt of ``lease_seconds`` expires."""
    return now + timedelta(seconds=lease_seconds + LEASE_MARGIN)


def claim(app: Flask, found: list[tuple[str, int, str]],
          lease_for: LeaseFor) -> list[Claim]:
    """Take ready task runs — each ``running``, its next attempt, this process as
    holder — in one transaction (one commit for the lot). Those another process (or a
    cancel) got to first are left out."""
    with get_database(app).raw() as cursor:
        return claim_on(cursor, app, found, lease_for)


def claim_on(cursor: RawCursor, app: Flask, found: list[tuple[str, int, str]],
             lease_for: LeaseFor, wanted: int | None = None) -> list[Claim]:
    """:func:`claim` in the caller's transaction, stopping at ``wanted`` claims."""
    now = utcnow()
    name = holder()
    statement = _statements(app).claim
    taken: list[Claim] = []
    for task_run_id, attempt, flow_run_id in found:
        if wanted is not None and len(taken) >= wanted:
            break
        run_id = new_id("run")
        if cursor.execute(statement, {
                "task": task_run_id, "ready": "ready", "previous": attempt,
                "running": "running", "next": attempt + 1, "holder": name,
                "lease": lease_until(now, lease_for(app, task_run_id)), "now": now,
                "run": run_id}):
            taken.append(Claim(task_run_id, attempt + 1, run_id, flow_run_id))
    return taken


def mark_sent(now: datetime, previous: str | None = None) -> tuple[str, datetime]:
    """The holder and lease of a ready task whose message is being sent ``now``, after
    the sends ``previous`` (its holder) counts."""
    sends = 0
    if previous and previous.startswith(SENT + ":") and previous[len(SENT) + 1:].isdigit():
        sends = int(previous[len(SENT) + 1:])
    wait = min(RESEND_SECONDS * 2 ** min(sends, 16), RESEND_MAX_SECONDS)
    return f"{SENT}:{sends + 1}", now + timedelta(seconds=wait)


def send_ready(app: Flask, found: Sender, limit: int = BATCH) -> int:
    """Send the ready task runs that no message is in flight for (their backoff or
    wait ended, or a message was lost): each marked sent by compare-and-set, so of
    processes doing this together one sends it; then the ids go to the broker. A
    send that fails unmarks them for the next round. How many were sent."""
    statements = _statements(app)
    now = utcnow()
    database = get_database(app)
    with database.reading() as cursor:
        rows = cursor.rows(statements.unsent, {"ready": "ready", "now": now, "limit": limit,
                                               "offset": 0})
        rows += cursor.rows(statements.resend, {"ready": "ready", "now": now, "limit": limit,
                                                "offset": 0, "sent": SENT + ":%"})
    if not rows:
        return 0
    taken: list[Ready] = []
    with database.raw() as cursor:
        for task, attempt, run, previous in rows:
            name, lease = mark_sent(now, previous)
            if cursor.execute(statements.mark_sent, {
                    "task": task, "ready": "ready", "previous": attempt, "now": now,
                    "sent": name, "lease": lease}):
                taken.append((str(task), int(attempt), str(run)))
    send(app, found, taken)
    return len(taken)


def send(app: Flask, found: Sender, items: list[Ready]) -> None:
    """Send committed ready task runs; unmark them when the broker cannot be reached
    (the next round of :func:`send_ready` tries again)."""
    if not items:
        return
    try:
        found.send(items)
    except Exception:
        logger.exception("could not send %d ready task(s) to the broker; trying again shortly",
                         len(items))
        statements = _statements(app)
        try:
            with get_database(app).raw() as cursor:
                for task, _attempt, _run in items:
                    cursor.execute(statements.unmark, {"task": task, "ready": "ready",
                                                       "sent": SENT + ":%", "holder": None,
                                                       "lease_expires_at": None})
        except Exception:  # the database too: the resend after the lease covers it
            logger.exception("could not unmark unsent tasks; they are sent again within "
                             "%d s", RESEND_MAX_SECONDS)


def take_sent(app: Flask, item: Ready) -> list[Claim]:
    """Claim the attempt a broker message names: the configured ``take``, else a plain
    claim."""
    take = app.extensions.get(_TAKE)
    if take is not None:
        found: list[Claim] = take(app, item)
        return found
    _handler, lease_for, _timers = app.extensions[_SETUP]
    return claim(app, [item], lease_for)


def take_ready(app: Flask, cursor: RawCursor, lease_for: LeaseFor) -> Claim | None:
    """In the caller's write transaction, claim one task that is ready now: what a
    thread about to go idle does instead of waiting for the next poll (and its own
    commit)."""
    rows = cursor.rows(_statements(app).ready, {"ready": "ready", "now": utcnow(),
                                                 "limit": 4, "offset": 0})
    random.shuffle(rows)
    found = claim_on(cursor, app, [(str(task), int(attempt), str(run))
                                   for task, attempt, run in rows], lease_for, wanted=1)
    return found[0] if found else None


class Executor:
    """A dispatcher thread that polls for ready task runs, and a pool of
    ``FLOW_WORKERS`` threads that run the claimed attempts."""

    def __init__(self, app: Flask, workers: int, handler: Handler, lease_for: LeaseFor,
                 timers: list[Timer], remote: Sender | None = None) -> None:
        self.app = app
        self.remote = remote
        # With a broker, workers run the attempts: no thread here takes a claim.
        self.workers = 0 if remote is not None else workers
        self.handler = handler
        self.lease_for = lease_for
        self.timers = timers
        self.pool = ThreadPoolExecutor(max_workers=max(1, self.workers),
                                       thread_name_prefix="minihost-flow")
        self.busy = 0  # claims this process holds: running, or queued for a thread
        self.limit = 2 * self.workers
        self.lock = threading.Lock()
        self.wakeup = threading.Event()
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="minihost-executor", daemon=True)
        self.thread.start()

    def wake(self) -> None:
        self.wakeup.set()

    def reserve(self, wanted: int) -> int:
        """Count up to ``wanted`` claims about to be handed over as held (at most
        ``limit`` in all); how many it did."""
        with self.lock:
            taken = max(0, min(wanted, self.limit - self.busy))
            self.busy += taken
        return taken

    def release(self, count: int, wake: bool = True) -> None:
        """Give back reserved room that got no claim (and look for work with it)."""
        if count > 0:
            with self.lock:
                self.busy -= count
            if wake:
                self.wakeup.set()

    def hand_over(self, claims: list[Claim]) -> None:
        """Run claims whose threads were reserved."""
        for index, claimed in enumerate(claims):
            try:
                self.pool.submit(self._run, claimed)
            except RuntimeError:  # shutting down: the claims expire and are taken again
                self.release(len(claims) - index)
                return

    def stop(self, wait: bool = True) -> None:
        self.stopping.set()
        self.wakeup.set()
        if wait and self.thread is not threading.current_thread():
            self.thread.join(timeout=10)
        self.pool.shutdown(wait=wait, cancel_futures=True)

    def _loop(self) -> None:
        with self.app.app_context():
            self._poll()

    def _poll(self) -> None:
        last_timers = 0.0
        while not self.stopping.is_set():
            now = time.monotonic()
            if now - last_timers >= TIMER_SECONDS:
                last_timers = now
                for timer in self.timers:
                    self._guarded(timer)
            try:
                found = self._dispatch()
            except SQLAlchemyError:
                logger.exception("the executor could not read its work; trying again")
                found = 0
            if self.remote is not None:
                self.wakeup.wait(SEND_POLL_SECONDS)
                self.wakeup.clear()
            elif found == 0 or self.busy >= self.workers:
                self.wakeup.wait(POLL_SECONDS)
                self.wakeup.clear()

    def _guarded(self, timer: Timer) -> None:
        try:
            timer(self.app)
        except Exception:
            logger.exception("a flow timer failed; it runs again shortly")

    def _dispatch(self) -> int:
        if self.remote is not None:
            return send_ready(self.app, self.remote)
        free = self.workers - self.busy
        if free <= 0:
            return 0
        # The longest-waiting first, but this process takes them in its own order from
        # those: processes polling together then rarely race for the same task (a lost
        # race costs a write that changes nothing).
        rows = ready(self.app, BATCH)
        random.shuffle(rows)
        taken = self.reserve(min(free, len(rows)))
        try:
            claims = claim(self.app, rows[:taken], self.lease_for) if taken else []
        except BaseException:
            self.release(taken, wake=False)
            raise
        self.release(taken - len(claims), wake=False)
        self.hand_over(claims)
        return len(claims)

    def _run(self, claimed: Claim) -> None:
        """Run a claim, then the claim its outcome gave back to go on with (the
        handler hands any others over itself)."""
        current: Claim | None = claimed
        try:
            with self.app.app_context():
                while current is not None and not self.stopping.is_set():
                    following = self._attempt(current)
                    current = following[0] if following else None
        finally:
            with self.lock:
                self.busy -= 1
            self.wakeup.set()

    def _attempt(self, claimed: Claim) -> list[Claim]:
        try:
            return self.handler(self.app, claimed) or []
        except Exception:
            logger.exception("task run %s stopped on an unexpected error", claimed.task_run_id)
            return []


_KEY = "minihost.executor"
_SETUP = "minihost.executor_setup"
_SENDER = "minihost.executor_sender"
_TAKE = "minihost.executor_take"
_ALL: weakref.WeakSet[Executor] = weakref.WeakSet()


def configure(app: Flask, handler: Handler, lease_for: LeaseFor, timers: list[Timer],
              take: Callable[[Flask, Ready], list[Claim]] | None = None) -> None:
    """What the executor does with a claim, how long a claim lasts, and its timers;
    ``take`` claims a task a broker message names (with what it read in the same
    transaction), else :func:`claim` does."""
    app.extensions[_SETUP] = (handler, lease_for, timers)
    app.extensions[_TAKE] = take


def get_executor(app: Flask) -> Executor | None:
    """This process's executor, started on first use; None when ``FLOW_WORKERS`` is 0
    (this process runs no flow work) or nothing is configured."""
    found: Executor | None = app.extensions.get(_KEY)
    if found is not None or int(app.config.get("FLOW_WORKERS", 0)) <= 0:
        return found
    setup = app.extensions.get(_SETUP)
    if setup is None:
        return None
    with _START_LOCK:
        found = app.extensions.get(_KEY)
        if found is None:
            handler, lease_for, timers = setup
            real = app._get_current_object() if hasattr(app, "_get_current_object") else app
            found = Executor(real, int(app.config["FLOW_WORKERS"]), handler, lease_for, timers,
                             sender(app))
            app.extensions[_KEY] = found
            _ALL.add(found)
    return found


def stop(app: Flask) -> None:
    found: Executor | None = app.extensions.pop(_KEY, None)
    if found is not None:
        found.stop()


def reserve(app: Flask, wanted: int) -> tuple[Executor | None, int]:
    """Free threads of this process's executor for ``wanted`` claims about to be
    taken by a transaction (:meth:`Executor.hand_over` them, or ``release``)."""
    if sender(app) is not None:
        return None, 0
    found = get_executor(app)
    if found is None or wanted <= 0:
        return found, 0
    return found, found.reserve(wanted)


def wake(app: Flask) -> None:
    """Look for ready work now (after a commit made some ready). With a broker, send
    it now: a short command has no loop that would."""
    remote = sender(app)
    if remote is not None:
        try:
            send_ready(app, remote)
        except SQLAlchemyError:
            logger.exception("could not send ready work; the executor's loop sends it")
        return
    found = get_executor(app)
    if found is not None:
        found.wake()


_START_LOCK = threading.Lock()


@atexit.register
def _stop_all() -> None:
    for executor in list(_ALL):
        executor.stop(wait=False)
