"""When a schedule trigger fires (FLOWS.md §4): cron times in a time zone, with the
daylight-saving rules of the contract.

The cron expression is matched on the zone's wall clock by ``cronsim`` (five fields,
or six with a leading seconds field), which knows nothing of the zone; each wall
time found is then placed on the time line here. A wall time that occurs twice
(clocks go back) fires once, at its first occurrence; one that does not exist
(clocks go forward) fires at the first instant after the jump; wall times that land
on one instant fire once. The same rule holds for every expression, with or
without seconds, so a user can read a schedule's next fire times and trust them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

__all__ = ["CronError", "Plan", "Schedule", "parse_schedule", "plan_ticks"]

DEFAULT_CATCHUP_SECONDS = 3600
# A tick this late is only the scheduler's own lateness (it looks every two seconds)
# and fires; an older one was missed while nothing ran.
GRACE_SECONDS = 15
MAX_LISTED = 100  # missed ticks of an outage recorded one by one; the rest counted
MAX_COUNTED = 100_000
_RANGES = {"second": "0-59", "minute": "0-59", "hour": "0-23", "day-of-month": "1-31",
           "month": "1-12 or JAN-DEC", "day-of-week": "0-7 or SUN-SAT"}


class CronError(ValueError):
    """A cron expression or time zone that cannot be used; the message says why."""


@dataclass(frozen=True, slots=True)
class Schedule:
    """A schedule trigger, checked and ready to give its fire times (UTC instants)."""

    index: int  # the trigger's place in the document's ``triggers``
    cron: str
    timezone: str
    zone: ZoneInfo
    overlap: str
    catchup_seconds: int
    input: dict[str, object]

    def times_after(self, after: datetime) -> Iterator[datetime]:
        """Fire times strictly after ``after`` (aware), earliest first, in UTC."""
        local = after.astimezone(self.zone).replace(tzinfo=None, microsecond=0)
        last = after.astimezone(UTC)
        for wall in CronSim(self.cron, local):
            instant = _instant(wall, self.zone)
            if instant > last:
                last = instant
                yield instant

    def next_times(self, after: datetime, count: int = 5) -> list[datetime]:
        found: list[datetime] = []
        for instant in self.times_after(after):
            found.append(instant)
            if len(found) == count:
                break
        return found


@dataclass(frozen=True, slots=True)
class Plan:
    """What to do with a schedule's ticks that have come: fire some, record the rest
    as missed (``more_missed`` counts those of an outage past the first hundred),
    and look next at ``next_at``."""

    fire: list[datetime]
    missed: list[datetime]
    more_missed: int
    next_at: datetime


def plan_ticks(schedule: Schedule, first: datetime, now: datetime) -> Plan:
    """The ticks from ``first`` (the first not yet handled) up to ``now``. When the
    oldest is at most a few seconds late, they are on time and all fire. Otherwise
    nothing ran for a while: the latest fires if it is at most ``catchupSeconds`` old,
    and every other one was missed (FLOWS.md §4)."""
    window = now - timedelta(seconds=schedule.catchup_seconds + GRACE_SECONDS)
    after = first - timedelta(seconds=1)
    missed: list[datetime] = []
    more = 0
    if first < window:  # an outage: ticks before the catch-up window were all missed
        for instant in schedule.times_after(after):
            if instant >= window:
                break
            if len(missed) < MAX_LISTED:
                missed.append(instant)
            else:
                more += 1
                if more >= MAX_COUNTED:
                    break
        after = max(after, window - timedelta(seconds=1))
    due: list[datetime] = []
    next_at = now + timedelta(days=366 * 50)  # a cron that fires no more
    for instant in schedule.times_after(after):
        if instant > now:
            next_at = instant
            break
        if not missed or instant > missed[-1]:
            due.append(instant)
    if not missed and due and (now - due[0]).total_seconds() <= GRACE_SECONDS:
        fire = due  # on time (a schedule with seconds may have several per look)
    elif due and (now - due[-1]).total_seconds() <= schedule.catchup_seconds:
        fire = due[-1:]
    else:
        fire = []
    chosen = set(fire)
    missed.extend(t for t in due if t not in chosen)
    return Plan(fire=fire, missed=missed, more_missed=more, next_at=next_at)


def _instant(wall: datetime, zone: ZoneInfo) -> datetime:
    """The instant a wall-clock time of ``zone`` stands for under the rules above."""
    first = wall.replace(tzinfo=zone, fold=0)
    instant = first.astimezone(UTC)
    if instant.astimezone(zone).replace(tzinfo=None) == wall:
        return instant  # it exists (fold=0 is its first occurrence when it is repeated)
    # In a gap: the answer lies between the instants the two offsets give; find the
    # first instant whose wall time is at or past this one.
    low = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
    high = instant
    if low > high:
        low, high = high, low
    while high - low > timedelta(seconds=1):
        middle = low + (high - low) / 2
        if middle.astimezone(zone).replace(tzinfo=None) >= wall:
            high = middle
        else:
            low = middle
    return high.replace(microsecond=0)


def parse_schedule(index: int, trigger: dict[str, object]) -> Schedule:
    """Check a schedule trigger's cron and time zone; :class:`CronError` says what is
    wrong in words a user can act on."""
    cron = str(trigger.get("cron") or "").strip()
    timezone = str(trigger.get("timezone") or "UTC")
    try:
        zone = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise CronError(f"{timezone!r} is not an IANA time zone (write one like "
                        "'Europe/Berlin' or 'UTC')") from None
    fields = cron.split()
    if len(fields) not in (5, 6):
        raise CronError(f"{cron!r} has {len(fields)} fields; a cron expression has five "
                        "(minute hour day-of-month month day-of-week), or six with a "
                        "leading seconds field")
    start = datetime(2000, 1, 1)
    try:
        iterator = CronSim(cron, start)
    except CronSimError as error:
        reason = str(error).lower()
        field = reason.removeprefix("bad ")
        if field in _RANGES:
            reason += f" (each value of the {field} field is {_RANGES[field]}; '*', "
            reason += "lists 'a,b', ranges 'a-b' and steps '*/n' are allowed)"
        raise CronError(f"{cron!r}: {reason}") from None
    try:
        next(iterator)
    except StopIteration:
        raise CronError(f"{cron!r} never fires (no date matches it)") from None
    overlap = str(trigger.get("overlap") or "skip")
    catchup = trigger.get("catchupSeconds", DEFAULT_CATCHUP_SECONDS)
    raw_input = trigger.get("input")
    return Schedule(index=index, cron=cron, timezone=timezone, zone=zone, overlap=overlap,
                    catchup_seconds=int(catchup) if isinstance(catchup, int) else
                    DEFAULT_CATCHUP_SECONDS,
                    input=dict(raw_input) if isinstance(raw_input, dict) else {})
