"""Schedule triggers (FLOWS.md §4): cron times on a zone's clock with the daylight-saving
rules, the lint, and the scheduler walked through time on a fixed clock — each tick
once, overlap, catch-up after an outage, disabled flows — then two real host
processes firing one schedule for ten ticks."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from host.db import FlowRun, ScheduleTick, get_database
from host.flows import compile_flow
from host.flows.compile import lint_flow
from host.flows.schedule import parse_schedule, plan_ticks
from host.services import schedules
from host.services.flows import CLOCK

from .test_durability import dispose_engines, host_process, setup_host, stop

__all__ = ["dispose_engines"]  # the fixture the two-process test uses

BERLIN = "Europe/Berlin"


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


def local(times: list[datetime], zone: str = BERLIN) -> list[str]:
    schedule = parse_schedule(0, {"cron": "* * * * *", "timezone": zone})
    return [t.astimezone(schedule.zone).isoformat() for t in times]


# -- the clock rules -------------------------------------------------------------------


def test_a_time_skipped_by_the_spring_change_fires_right_after_the_jump():
    daily = parse_schedule(0, {"cron": "30 2 * * *", "timezone": BERLIN})
    assert local(daily.next_times(utc(2026, 3, 28, 12), 3)) == [
        "2026-03-29T03:00:00+02:00", "2026-03-30T02:30:00+02:00", "2026-03-31T02:30:00+02:00"]
    half_hourly = parse_schedule(0, {"cron": "*/30 * * * *", "timezone": BERLIN})
    # 02:00 and 02:30 do not exist that night: they fire once, at 03:00, with 03:00 itself.
    assert local(half_hourly.next_times(utc(2026, 3, 29, 0, 0), 4)) == [
        "2026-03-29T01:30:00+01:00", "2026-03-29T03:00:00+02:00",
        "2026-03-29T03:30:00+02:00", "2026-03-29T04:00:00+02:00"]


def test_a_time_repeated_by_the_autumn_change_fires_once():
    daily = parse_schedule(0, {"cron": "30 2 * * *", "timezone": BERLIN})
    assert local(daily.next_times(utc(2026, 10, 24, 12), 2)) == [
        "2026-10-25T02:30:00+02:00", "2026-10-26T02:30:00+01:00"]
    half_hourly = parse_schedule(0, {"cron": "*/30 * * * *", "timezone": BERLIN})
    assert local(half_hourly.next_times(utc(2026, 10, 24, 23, 40), 5)) == [
        "2026-10-25T02:00:00+02:00", "2026-10-25T02:30:00+02:00",
        "2026-10-25T03:00:00+01:00", "2026-10-25T03:30:00+01:00", "2026-10-25T04:00:00+01:00"]
    # Asked from inside the repeated hour, nothing fires again before 03:00.
    assert local(half_hourly.next_times(utc(2026, 10, 25, 1, 10), 1)) == [
        "2026-10-25T03:00:00+01:00"]


def test_six_fields_lead_with_seconds_and_the_same_rules_hold():
    seconds = parse_schedule(0, {"cron": "15,45 30 2 * * *", "timezone": BERLIN})
    assert local(seconds.next_times(utc(2026, 3, 28, 12), 3)) == [
        "2026-03-29T03:00:00+02:00", "2026-03-30T02:30:15+02:00", "2026-03-30T02:30:45+02:00"]
    every = parse_schedule(0, {"cron": "*/20 * * * * *"})
    assert every.next_times(utc(2026, 1, 1, 0, 0, 5), 3) == [
        utc(2026, 1, 1, 0, 0, 20), utc(2026, 1, 1, 0, 0, 40), utc(2026, 1, 1, 0, 1, 0)]


def test_on_time_ticks_fire_and_after_an_outage_only_the_latest_within_the_catchup():
    hourly = parse_schedule(0, {"cron": "0 * * * *"})
    on_time = plan_ticks(hourly, utc(2026, 5, 1, 11), utc(2026, 5, 1, 11, 0, 2))
    assert (on_time.fire, on_time.missed, on_time.next_at) == (
        [utc(2026, 5, 1, 11)], [], utc(2026, 5, 1, 12))
    outage = plan_ticks(hourly, utc(2026, 5, 1, 11), utc(2026, 5, 1, 13, 20))
    assert outage.fire == [utc(2026, 5, 1, 13)]
    assert outage.missed == [utc(2026, 5, 1, 11), utc(2026, 5, 1, 12)]
    strict = parse_schedule(0, {"cron": "0 * * * *", "catchupSeconds": 600})
    late = plan_ticks(strict, utc(2026, 5, 1, 11), utc(2026, 5, 1, 13, 20))
    assert late.fire == [] and len(late.missed) == 3
    each_second = parse_schedule(0, {"cron": "* * * * * *"})
    looked = plan_ticks(each_second, utc(2026, 5, 1, 11), utc(2026, 5, 1, 11, 0, 3))
    assert len(looked.fire) == 4 and looked.missed == []  # all on time
    week = plan_ticks(each_second, utc(2026, 5, 1), utc(2026, 5, 8))
    assert week.fire == [utc(2026, 5, 8)]
    assert len(week.missed) > 100 and week.more_missed == 100_000


# -- the lint ------------------------------------------------------------------------


def flow(*triggers, tasks=None):
    return {"key": "nightly", "title": "Nightly", "triggers": list(triggers),
            "tasks": tasks or {"note": {"map": {"day": "{{run.startedAt}}"}}}}


def test_the_lint_names_a_bad_cron_or_zone_at_its_pointer_with_the_reason():
    problems = lint_flow(flow({"type": "schedule", "cron": "0 25 * * *"},
                              {"type": "schedule", "cron": "0 9 * *"},
                              {"type": "schedule", "cron": "0 9 * * *", "timezone": "Berlin"},
                              {"type": "schedule"}), {})
    assert [(p.pointer, p.message) for p in problems] == [
        ("/triggers/0/cron", "'0 25 * * *': bad hour (each value of the hour field is 0-23; "
                             "'*', lists 'a,b', ranges 'a-b' and steps '*/n' are allowed)"),
        ("/triggers/1/cron", "'0 9 * *' has 4 fields; a cron expression has five (minute "
                             "hour day-of-month month day-of-week), or six with a leading "
                             "seconds field"),
        ("/triggers/2/timezone", "'Berlin' is not an IANA time zone (write one like "
                                 "'Europe/Berlin' or 'UTC')"),
        ("/triggers/3", "a schedule trigger needs a cron expression"),
    ]


def test_a_schedules_input_is_checked_against_the_flow_input_when_saved():
    doc = flow({"type": "schedule", "cron": "0 9 * * *", "input": {"team": 7}},
               tasks={"note": {"map": {"team": "{{input.team}}"}}})
    doc["input"] = {"type": "object", "properties": {"team": {"type": "string"}},
                    "required": ["team"]}
    with pytest.raises(Exception) as raised:
        compile_flow(doc, {})
    assert [(p.pointer, p.message) for p in raised.value.problems] == [
        ("/triggers/0/input/team", "the run's input 7 is not of type 'string'")]


# -- the scheduler on a fixed clock ---------------------------------------------------------


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock(flowhost):
    found = Clock(utc(2026, 3, 28, 12))
    flowhost.app.extensions[CLOCK] = found
    yield found
    flowhost.app.extensions.pop(CLOCK, None)


def save(host, doc):
    answer = host.api("POST", "/api/v1/flows", host.alice_token, json=doc)
    assert answer.status_code in (200, 201), answer.get_json()
    return answer.get_json()


def runs(host):
    with get_database(host.app).sessions() as db:
        return list(db.execute(select(FlowRun).order_by(FlowRun.scheduled_for)).scalars())


def ticks(host):
    with get_database(host.app).sessions() as db:
        return [(t.fire_at, t.status, t.detail) for t in db.execute(
            select(ScheduleTick).order_by(ScheduleTick.fire_at)).scalars()]


def walk(host, clock, until: datetime, step: timedelta) -> None:
    while clock.now < until:
        clock.now += step
        schedules.fire_due(host.app)


def test_the_flow_shows_its_next_five_fire_times_on_the_schedules_clock(flowhost, clock):
    body = save(flowhost, flow({"type": "schedule", "cron": "30 2 * * *", "timezone": BERLIN}))
    expected = ["2026-03-29T03:00:00+02:00", "2026-03-30T02:30:00+02:00",
                "2026-03-31T02:30:00+02:00", "2026-04-01T02:30:00+02:00",
                "2026-04-02T02:30:00+02:00"]
    assert body["nextFireTimes"] == expected
    assert body["triggers"][0]["nextFireTimes"] == expected
    assert body["recentTicks"] == []


def test_the_spring_gap_fires_once_after_the_jump_with_scheduled_for(flowhost, clock):
    save(flowhost, flow({"type": "schedule", "cron": "30 2 * * *", "timezone": BERLIN,
                         "input": {}}))
    walk(flowhost, clock, utc(2026, 3, 29, 3), timedelta(minutes=5))
    found = runs(flowhost)
    assert [(r.scheduled_for, r.status) for r in found] == [(utc(2026, 3, 29, 1), "succeeded")]
    assert found[0].trigger == {"type": "schedule", "index": 0, "cron": "30 2 * * *",
                                "timezone": BERLIN}
    run = flowhost.api("GET", f"/api/v1/flow-runs/{found[0].id}", flowhost.alice_token)
    assert run.get_json()["scheduledFor"] == "2026-03-29T01:00:00+00:00"
    assert ticks(flowhost) == [(utc(2026, 3, 29, 1), "fired", {})]


def test_the_autumn_repeat_fires_once_per_wall_time(flowhost, clock):
    clock.now = utc(2026, 10, 24, 23, 50)
    save(flowhost, flow({"type": "schedule", "cron": "*/30 * * * *", "timezone": BERLIN}))
    walk(flowhost, clock, utc(2026, 10, 25, 2, 10), timedelta(minutes=5))
    assert [r.scheduled_for for r in runs(flowhost)] == [
        utc(2026, 10, 25, 0), utc(2026, 10, 25, 0, 30), utc(2026, 10, 25, 2)]
    assert {status for _, status, _ in ticks(flowhost)} == {"fired"}


def test_a_host_down_for_three_ticks_fires_the_latest_and_records_the_rest(flowhost, clock):
    clock.now = utc(2026, 5, 1, 10, 30)
    save(flowhost, flow({"type": "schedule", "cron": "0 * * * *"}))
    clock.now = utc(2026, 5, 1, 13, 20)  # nothing ran at 11:00, 12:00 or 13:00
    schedules.fire_due(flowhost.app)
    assert [r.scheduled_for for r in runs(flowhost)] == [utc(2026, 5, 1, 13)]
    missed = {"reason": "nothing was running at that time"}
    assert ticks(flowhost)[:2] == [(utc(2026, 5, 1, 11), "missed", missed),
                                   (utc(2026, 5, 1, 12), "missed", missed)]
    body = flowhost.api("GET", "/api/v1/flows/nightly", flowhost.alice_token).get_json()
    assert [(t["fireAt"], t["status"]) for t in body["recentTicks"]] == [
        ("2026-05-01T13:00:00+00:00", "fired"), ("2026-05-01T12:00:00+00:00", "missed"),
        ("2026-05-01T11:00:00+00:00", "missed")]
    schedules.fire_due(flowhost.app)  # looked at again: nothing new
    assert len(runs(flowhost)) == 1


def test_ticks_older_than_the_catchup_are_all_missed(flowhost, clock):
    clock.now = utc(2026, 5, 1, 10, 30)
    save(flowhost, flow({"type": "schedule", "cron": "0 * * * *", "catchupSeconds": 600}))
    clock.now = utc(2026, 5, 1, 13, 20)
    schedules.fire_due(flowhost.app)
    assert runs(flowhost) == []
    assert [status for _, status, _ in ticks(flowhost)] == ["missed"] * 3


WAITING = {"hold": {"wait": {"seconds": 2000}}}


@pytest.mark.parametrize("overlap", ["skip", "allow"])
def test_overlap_skips_a_tick_while_the_last_run_goes_on_unless_allowed(flowhost, clock,
                                                                         overlap):
    clock.now = utc(2026, 5, 1, 10, 0, 30)
    save(flowhost, flow({"type": "schedule", "cron": "* * * * *", "overlap": overlap},
                        tasks=WAITING))
    walk(flowhost, clock, utc(2026, 5, 1, 10, 3, 1), timedelta(seconds=10))
    started = runs(flowhost)
    if overlap == "allow":
        assert len(started) == 3
        assert [status for _, status, _ in ticks(flowhost)] == ["fired"] * 3
    else:
        assert [r.scheduled_for for r in started] == [utc(2026, 5, 1, 10, 1)]
        assert [(status, detail) for _, status, detail in ticks(flowhost)][1:] == [
            ("skipped", {"reason": f"the run {started[0].id} was still going (overlap: skip)"})
        ] * 2


def test_a_disabled_flow_fires_nothing_and_does_not_catch_up_when_enabled(flowhost, clock):
    clock.now = utc(2026, 5, 1, 10, 30)
    save(flowhost, flow({"type": "schedule", "cron": "0 * * * *"}))
    assert flowhost.api("POST", "/api/v1/flows/nightly/disable",
                        flowhost.alice_token).status_code == 200
    walk(flowhost, clock, utc(2026, 5, 1, 12, 30), timedelta(minutes=10))
    assert runs(flowhost) == [] and ticks(flowhost) == []
    enabled = flowhost.api("POST", "/api/v1/flows/nightly/enable", flowhost.alice_token)
    assert enabled.get_json()["nextFireTimes"][0] == "2026-05-01T13:00:00+00:00"
    walk(flowhost, clock, utc(2026, 5, 1, 13, 1), timedelta(minutes=1))
    assert [r.scheduled_for for r in runs(flowhost)] == [utc(2026, 5, 1, 13)]


def test_a_changed_cron_starts_from_now_and_a_removed_schedule_stops(flowhost, clock):
    clock.now = utc(2026, 5, 1, 10, 30)
    save(flowhost, flow({"type": "schedule", "cron": "0 * * * *"}))
    body = save(flowhost, flow({"type": "schedule", "cron": "45 * * * *"}))
    assert body["version"] == 2
    assert body["nextFireTimes"][0] == "2026-05-01T10:45:00+00:00"
    save(flowhost, flow({"type": "api"}))
    walk(flowhost, clock, utc(2026, 5, 1, 12), timedelta(minutes=10))
    assert runs(flowhost) == []


# -- two processes ---------------------------------------------------------------------------


def test_two_host_processes_fire_each_tick_exactly_once(tmp_path, upstream, database_url):
    config, app, token = setup_host(tmp_path, upstream, database_url)
    client = app.test_client()
    headers = {"Authorization": f"Bearer {token}"}
    doc = flow({"type": "schedule", "cron": "* * * * * *", "overlap": "allow"})
    processes = [host_process(config, tmp_path), host_process(config, tmp_path)]
    try:
        assert client.post("/api/v1/flows", json=doc, headers=headers).status_code == 201
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with get_database(app).sessions() as db:
                fired = db.execute(select(ScheduleTick).where(
                    ScheduleTick.status == "fired")).scalars().all()
            if len(fired) >= 12:
                break
            time.sleep(0.2)
        assert client.post("/api/v1/flows/nightly/disable", headers=headers).status_code == 200
        time.sleep(2.5)  # a pass that read the schedule before the switch ends
    finally:
        for process in processes:
            stop(process)
    with get_database(app).sessions() as db:
        found = db.execute(select(FlowRun.scheduled_for, FlowRun.id)).all()
        tick_rows = db.execute(select(ScheduleTick.fire_at, ScheduleTick.status,
                                      ScheduleTick.flow_run_id)).all()
    times = sorted(at for at, _ in found)
    assert len(times) >= 10
    assert len(set(times)) == len(times)  # no tick fired twice
    # ...and none skipped: one run for each second from the first to the last.
    assert times == [times[0] + timedelta(seconds=n) for n in range(len(times))]
    assert sorted((at, run) for at, status, run in tick_rows if status == "fired") == \
        sorted(found)
