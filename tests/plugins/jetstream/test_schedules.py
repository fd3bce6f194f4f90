"""Message schedules on natsd alone: cron and intervals (whose firing times depend on the clock),
and a repeating schedule in a running server. The one-shot behaviour and every refusal are compared
with nats-server in tests/interop/test_jetstream_schedules_nats_server.py."""

from __future__ import annotations

import calendar
import datetime
import zoneinfo
from pathlib import Path

import nats
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from natsd import Server
from natsd.config.conf import parse
from natsd_plugins.jetstream.schedules import Cron, PatternError, parse_pattern
from natsd_plugins.jetstream.streams import NS

UTC = datetime.UTC


def ns(*fields: int, tz: datetime.tzinfo = UTC) -> int:
    return int(datetime.datetime(*fields, tzinfo=tz).timestamp()) * NS


def at(value: int, tz: datetime.tzinfo = UTC) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(value // NS, tz)


@pytest.mark.parametrize(("cron", "start", "expected"), [
    ("0 30 9 * * mon-fri", (2026, 12, 6, 12, 0, 0), (2026, 12, 7, 9, 30, 0)),  # Sunday -> Monday
    ("*/15 * * * * *", (2026, 12, 1, 10, 0, 7), (2026, 12, 1, 10, 0, 15)),
    ("0 0 0 1 * mon", (2026, 12, 2, 0, 0, 0), (2026, 12, 7, 0, 0, 0)),  # day of month OR weekday
    ("0 0 0 29 feb *", (2026, 3, 1, 0, 0, 0), (2028, 2, 29, 0, 0, 0)),
    ("@hourly", (2026, 12, 1, 10, 59, 59), (2026, 12, 1, 11, 0, 0)),
    ("@weekly", (2026, 12, 2, 0, 0, 0), (2026, 12, 6, 0, 0, 0)),
    ("@yearly", (2026, 12, 2, 0, 0, 0), (2027, 1, 1, 0, 0, 0)),
    ("5,10 0 12 ? jan,jul *", (2026, 1, 1, 12, 0, 5), (2026, 1, 1, 12, 0, 10)),
])
def test_cron_next_times(cron: str, start: tuple[int, ...], expected: tuple[int, ...]) -> None:
    pattern = parse_pattern(cron, None)
    assert at(pattern.next_after(ns(*start), ns(*start))) == datetime.datetime(*expected, tzinfo=UTC)


def test_cron_follows_its_time_zone() -> None:
    paris = zoneinfo.ZoneInfo("Europe/Paris")
    pattern = parse_pattern("0 0 9 * * *", "Europe/Paris")
    start = ns(2026, 7, 1, 12, 0, 0)  # 14:00 in Paris (summer time)
    assert at(pattern.next_after(start, start), paris) == datetime.datetime(2026, 7, 2, 9, 0, 0, tzinfo=paris)


@pytest.mark.parametrize("bad", ["* * * * *", "60 * * * * *", "* * * 0 * *", "* * * * 13 *", "a b c d e f",
                                 "*/0 * * * * *", "@every 500ms", "@at yesterday", "@at 2026-01-01T00:00:00",
                                 "@sometimes"])
def test_bad_patterns_are_refused(bad: str) -> None:
    with pytest.raises(PatternError):
        parse_pattern(bad, None)


def test_time_zones_are_for_cron_only() -> None:
    with pytest.raises(LookupError):
        parse_pattern("@daily", "Nowhere/Atall")
    with pytest.raises(PatternError):
        parse_pattern("@every 5s", "Europe/Paris")


def test_every_counts_from_the_whole_second_and_does_not_catch_up() -> None:
    pattern = parse_pattern("@every 10s", None)
    stored = ns(2026, 12, 1, 10, 0, 0) + 400_000_000  # x.4 s rounds down
    assert pattern.next_after(stored, stored) == ns(2026, 12, 1, 10, 0, 10)
    late = ns(2026, 12, 1, 11, 0, 0)  # long after: the next one is from now, once
    assert pattern.next_after(stored, late) == ns(2026, 12, 1, 11, 0, 10)


FIELD = st.lists(st.integers(0, 59), min_size=1, max_size=4, unique=True)


@settings(max_examples=60, deadline=None)
@given(FIELD, FIELD, st.lists(st.integers(0, 23), min_size=1, max_size=3, unique=True),
       st.integers(0, 2 * 86400))
def test_cron_agrees_with_a_second_by_second_search(seconds: list[int], minutes: list[int], hours: list[int],
                                                    offset: int) -> None:
    text = f"{','.join(map(str, seconds))} {','.join(map(str, minutes))} {','.join(map(str, hours))} * * *"
    cron = Cron(text, UTC)
    start = ns(2026, 12, 1, 0, 0, 0) + offset * NS
    t = at(start) + datetime.timedelta(seconds=1)
    while not (t.second in seconds and t.minute in minutes and t.hour in hours):
        t += datetime.timedelta(seconds=1)
    assert cron.next_after(start) == calendar.timegm(t.utctimetuple()) * NS


async def test_a_repeating_schedule_fires_and_stays_armed(tmp_path: Path) -> None:
    server = Server(parse(f'host: 127.0.0.1\nport: -1\njetstream {{ store_dir: "{tmp_path}" }}'))
    await server.start()
    nc = await nats.connect(server.client_url)
    try:
        js = nc.jetstream()
        await js.add_stream(name="TICK", subjects=["tick.>"], allow_msg_schedules=True)
        sub = await js.subscribe("tick.out")  # produced messages are stored, not published on the subject
        await js.publish("tick.every", b"beat", headers={"Nats-Schedule": "@every 1s",
                                                        "Nats-Schedule-Target": "tick.out"})
        first = await sub.next_msg(3)
        assert first.data == b"beat" and first.headers["Nats-Scheduler"] == "tick.every"
        upcoming = datetime.datetime.fromisoformat(first.headers["Nats-Schedule-Next"].replace("Z", "+00:00"))
        assert upcoming > datetime.datetime.now(UTC)
        second = await sub.next_msg(3)  # it repeats
        assert second.headers["Nats-Scheduler"] == "tick.every"
        info = await js.stream_info("TICK", subjects_filter=">")
        assert info.state.subjects["tick.every"] == 1  # the schedule itself stays
        await js.publish("tick.every", b"stop")  # a plain message on its subject ends it
        while True:  # what was already on its way may still come
            try:
                await sub.next_msg(1.5)
            except nats.errors.TimeoutError:
                break
        with pytest.raises(nats.errors.TimeoutError):
            await sub.next_msg(1.5)
    finally:
        await nc.close()
        await server.shutdown()
