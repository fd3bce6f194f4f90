"""Message schedules (a stream's ``allow_msg_schedules``), as nats-server 2.12+ runs them.

A message with ``Nats-Schedule`` is a schedule, kept on its own subject: when
it fires, its payload and headers (or the last message of
``Nats-Schedule-Source``) are published into the stream on
``Nats-Schedule-Target``, with ``Nats-Scheduler`` (the schedule's subject) and
``Nats-Schedule-Next`` (``purge`` for a one-shot, else the next time), plus
``Nats-TTL``/``Nats-Rollup`` from ``Nats-Schedule-TTL``/``-Rollup``. A
one-shot schedule is purged once it fired; a repeating one is armed again. A
new schedule on a subject replaces the old (the server adds
``Nats-Rollup: sub``); a plain message on it cancels it.

Patterns: ``@at <RFC 3339>``, ``@every <Go duration>`` (at least 1 s), cron
with six fields (seconds first; ``*``, ``?``, ranges, steps, lists, month and
weekday names) and the macros ``@yearly``, ``@monthly``, ``@weekly``,
``@daily``, ``@hourly``; ``Nats-Schedule-Time-Zone`` applies to cron only.
Schedules are rebuilt from the stored messages at start-up; a time missed
while the server was down fires once, not once per miss.
"""

from __future__ import annotations

import calendar
import datetime
import time
import zoneinfo
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from natsd.config.conf import ConfError, parse_duration
from natsd.routing.subjects import subjects_collide, valid_literal_subject

from .errors import api_error
from .store.base import Remove
from .streams import MSG_ID, MSG_TTL, NS, ROLLUP, parse_headers, parse_ttl, rfc3339

if TYPE_CHECKING:
    import asyncio

    from .store.base import StoredMsg
    from .streams import Stream

SCHEDULE, TARGET, SOURCE = "Nats-Schedule", "Nats-Schedule-Target", "Nats-Schedule-Source"
TIME_ZONE, SCHEDULE_TTL, SCHEDULE_ROLLUP = "Nats-Schedule-Time-Zone", "Nats-Schedule-TTL", "Nats-Schedule-Rollup"
SCHEDULER, NEXT = "Nats-Scheduler", "Nats-Schedule-Next"
MACROS = {"@yearly": "0 0 0 1 1 *", "@annually": "0 0 0 1 1 *", "@monthly": "0 0 0 1 * *",
          "@weekly": "0 0 0 * * 0", "@daily": "0 0 0 * * *", "@midnight": "0 0 0 * * *",
          "@hourly": "0 0 * * * *"}
MONTHS = {name: i for i, name in enumerate(
    ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), 1)}
DAYS = {name: i for i, name in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))}
MIN_FIRE = 0.25
"""Seconds: a due schedule fires no sooner than this from now (as nats-server's timer)."""


class PatternError(ValueError):
    pass


class Cron:
    """A six-field cron expression (seconds first), robfig/cron's rules as nats-server uses them."""

    RANGES = ((0, 59), (0, 59), (0, 23), (1, 31), (1, 12), (0, 6))

    def __init__(self, text: str, zone: datetime.tzinfo) -> None:
        fields = text.split()
        if len(fields) != 6:
            raise PatternError(text)
        self.zone = zone
        names: tuple[dict[str, int] | None, ...] = (None, None, None, None, MONTHS, DAYS)
        sets = [self._field(f, lo, hi, n) for f, (lo, hi), n in zip(fields, self.RANGES, names, strict=True)]
        self.seconds, self.minutes, self.hours, self.days, self.months, self.weekdays = sets
        self.any_day = fields[3] in ("*", "?")
        self.any_weekday = fields[5] in ("*", "?")

    @staticmethod
    def _field(text: str, lo: int, hi: int, names: dict[str, int] | None) -> frozenset[int]:
        def value(token: str) -> int:
            token = token.lower()
            if names is not None and token in names:
                return names[token]
            if not token.isdigit():
                raise PatternError(text)
            return int(token)

        out: set[int] = set()
        for part in text.split(","):
            body, _, step_text = part.partition("/")
            step = int(step_text) if step_text.isdigit() and int(step_text) > 0 else None
            if step_text and step is None:
                raise PatternError(text)
            if body in ("*", "?"):
                start, end = lo, hi
            elif "-" in body:
                a, _, b = body.partition("-")
                start, end = value(a), value(b)
            else:
                start = value(body)
                end = hi if step else start
            if not (lo <= start <= end <= hi):
                raise PatternError(text)
            out.update(range(start, end + 1, step or 1))
        return frozenset(out)

    def _day_matches(self, day: datetime.date) -> bool:
        dom = day.day in self.days
        dow = (day.isoweekday() % 7) in self.weekdays
        if self.any_day or self.any_weekday:
            return dom and dow
        return dom or dow

    def next_after(self, ns: int) -> int | None:
        """The first time strictly after ``ns`` (nanoseconds since the epoch) that matches; within 5 years."""
        t = datetime.datetime.fromtimestamp(ns // NS + 1, self.zone).replace(microsecond=0)
        limit = t.year + 5
        while t.year <= limit:
            if t.month not in self.months:
                t = (t.replace(day=1, hour=0, minute=0, second=0) + datetime.timedelta(days=32)).replace(day=1)
                continue
            if not self._day_matches(t.date()):
                t = (t + datetime.timedelta(days=1)).replace(hour=0, minute=0, second=0)
                continue
            if t.hour not in self.hours:
                t = (t + datetime.timedelta(hours=1)).replace(minute=0, second=0)
                continue
            if t.minute not in self.minutes:
                t = (t + datetime.timedelta(minutes=1)).replace(second=0)
                continue
            if t.second not in self.seconds:
                t += datetime.timedelta(seconds=1)
                continue
            return calendar.timegm(t.utctimetuple()) * NS
        return None


@dataclass(frozen=True)
class Pattern:
    """A parsed ``Nats-Schedule``: ``at`` (a one-shot time), ``every`` (ns) or ``cron``."""

    at: int = 0
    every: int = 0
    cron: Cron | None = None

    @property
    def repeats(self) -> bool:
        return not self.at

    def next_after(self, ns: int, now: int) -> int | None:
        """When the schedule stored (or last fired) at ``ns`` fires next; a time already past is
        moved to after ``now`` for repeating ones (no catching up)."""
        if self.at:
            return self.at
        if self.every:
            rounded = round(ns / NS) * NS
            upcoming = rounded + self.every
            return upcoming if upcoming > now else round(now / NS) * NS + self.every
        assert self.cron is not None
        upcoming_cron = self.cron.next_after(ns)
        if upcoming_cron is not None and upcoming_cron <= now:
            upcoming_cron = self.cron.next_after(now)
        return upcoming_cron


def parse_pattern(text: str, zone_name: str | None) -> Pattern:
    """A ``Nats-Schedule`` value (:class:`PatternError`; ``LookupError`` for a bad time zone)."""
    zone: datetime.tzinfo = datetime.UTC
    if zone_name is not None:
        if not zone_name:
            raise LookupError(zone_name)
        try:
            zone = zoneinfo.ZoneInfo(zone_name)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise LookupError(zone_name) from None
    text = text.strip()
    if text.startswith("@at "):
        if zone_name is not None:
            raise PatternError(text)
        try:
            when = datetime.datetime.fromisoformat(text[4:].strip().replace("Z", "+00:00"))
        except ValueError:
            raise PatternError(text) from None
        if when.tzinfo is None:
            raise PatternError(text)
        return Pattern(at=int(when.timestamp()) * NS + when.microsecond * 1000 or 1)
    if text.startswith("@every "):
        if zone_name is not None:
            raise PatternError(text)
        try:
            every = parse_duration(text[7:].strip())
        except ConfError:
            raise PatternError(text) from None
        if every < 1:
            raise PatternError(text)
        return Pattern(every=int(every * NS))
    cron = MACROS.get(text.lower(), text)
    if cron.startswith("@"):
        raise PatternError(text)
    return Pattern(cron=Cron(cron, zone))


def check_publish(stream: Stream, subject: str, hdrs: dict[str, str], raw: bytes) -> bytes:
    """nats-server's checks of a published message's schedule headers; the header block to store
    (a schedule gets ``Nats-Rollup: sub`` when it has none)."""
    cfg = stream.config
    allowed = bool(cfg.get("allow_msg_schedules"))
    text = hdrs.get(SCHEDULE, "")
    if text or TIME_ZONE in hdrs:
        try:
            parse_pattern(text, hdrs.get(TIME_ZONE)) if text else parse_pattern("@daily", hdrs.get(TIME_ZONE))
        except LookupError:
            raise api_error("JSMessageSchedulesTimeZoneInvalidErr" if allowed else
                            "JSMessageSchedulesDisabledErr") from None
        except PatternError:
            raise api_error("JSMessageSchedulesPatternInvalidErr" if allowed else
                            "JSMessageSchedulesDisabledErr") from None
    if text:
        if not allowed:
            raise api_error("JSMessageSchedulesDisabledErr")
        ttl_text = hdrs.get(SCHEDULE_TTL)
        if ttl_text is not None and parse_ttl(ttl_text) is None:
            raise api_error("JSMessageSchedulesTTLInvalidErr")
        if hdrs.get(SCHEDULE_ROLLUP, "") not in ("", "sub"):
            raise api_error("JSMessageSchedulesRollupInvalidErr")
        if ttl_text and not cfg.get("allow_msg_ttl"):
            raise api_error("JSMessageTTLDisabledErr")
        target = hdrs.get(TARGET, "")
        if not target or not valid_literal_subject(target.encode()) or target == subject:
            raise api_error("JSMessageSchedulesTargetInvalidErr")
        source = hdrs.get(SOURCE)
        if source is not None and (source in (target, subject) or not valid_literal_subject(source.encode())):
            raise api_error("JSMessageSchedulesSourceInvalidErr")
        if not _captured(target, cfg.get("subjects", [])):
            raise api_error("JSMessageSchedulesTargetInvalidErr")
        if source is not None and not _captured(source, cfg.get("subjects", [])):
            raise api_error("JSMessageSchedulesSourceInvalidErr")
        rollup = hdrs.get(ROLLUP)
        if rollup is None:
            raw = (raw[:-2] if raw.endswith(b"\r\n\r\n") else b"NATS/1.0\r\n") + b"Nats-Rollup: sub\r\n\r\n"
        elif rollup != "sub":
            raise api_error("JSMessageSchedulesRollupInvalidErr")
    if NEXT in hdrs:
        scheduler = hdrs.get(SCHEDULER, "")
        if hdrs[NEXT] != "purge" or not scheduler or scheduler == subject or \
                not valid_literal_subject(scheduler.encode()):
            raise api_error("JSMessageSchedulesSchedulerInvalidErr")
        if not allowed:
            raise api_error("JSMessageSchedulesDisabledErr")
        last = stream.store.last_matching(scheduler)
        if last is not None and SCHEDULE not in parse_headers(last.hdrs):
            raise api_error("JSMessageSchedulesSchedulerInvalidErr")
    elif SCHEDULER in hdrs:
        raise api_error("JSMessageSchedulesSchedulerInvalidErr")
    return raw


def _captured(subject: str, subjects: Iterable[str]) -> bool:
    return any(subjects_collide(subject.encode(), s.encode()) for s in subjects)


@dataclass
class Armed:
    seq: int
    pattern: Pattern
    due: int


class Scheduler:
    """The armed schedules of one stream, by subject, and the timer of the soonest."""

    def __init__(self, stream: Stream) -> None:
        self.stream = stream
        self.armed: dict[str, Armed] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0

    def stored(self, msg: StoredMsg, hdrs: dict[str, str], now: int, restoring: bool = False) -> None:
        """A message was staged (or, ``restoring``, is read back at start-up): it may arm, replace,
        cancel or re-time a schedule."""
        text = hdrs.get(SCHEDULE)
        if text:
            try:
                pattern = parse_pattern(text, hdrs.get(TIME_ZONE))
            except (PatternError, LookupError):
                return
            due = pattern.next_after(msg.ts, now)
            if due is not None:
                self.armed[msg.subject] = Armed(msg.seq, pattern, due)
                if not restoring:
                    self._arm()
            return
        if msg.subject in self.armed and SCHEDULER not in hdrs:
            del self.armed[msg.subject]  # a plain message on a schedule's subject ends it
        scheduler, upcoming = hdrs.get(SCHEDULER), hdrs.get(NEXT)
        if scheduler and upcoming == "purge":  # a one-shot fired (or its end was asked for): it goes
            self.armed.pop(scheduler, None)
            seqs = [] if restoring else _seqs(self.stream, scheduler)
            if seqs:
                self.stream.store.stage([Remove(tuple(seqs))])
        elif scheduler and upcoming:
            armed = self.armed.get(scheduler)
            if armed is not None:
                try:
                    when = datetime.datetime.fromisoformat(upcoming.replace("Z", "+00:00"))
                    armed.due = int(when.timestamp() * 1e9)
                except ValueError:
                    pass
                if not restoring:
                    self._arm()

    def load(self) -> None:
        """Arm the schedules of the stored messages (at start-up, or when schedules are turned on)."""
        store = self.stream.store
        state = store.state()
        now = _now()
        msg = store.next_matching(state.first_seq, ">") if state.msgs else None
        while msg is not None:
            if (msg.hdrs and b"Nats-Schedule" in msg.hdrs) or msg.subject in self.armed:
                self.stored(msg, parse_headers(msg.hdrs), now, restoring=True)
            msg = store.next_matching(msg.seq + 1, ">")
        self._arm()

    def _arm(self) -> None:
        if not self.armed:
            return
        soonest = min(a.due for a in self.armed.values())
        if self._timer is not None and self._timer_at <= soonest:
            return
        if self._timer is not None:
            self._timer.cancel()
        loop = self.stream.owner.server.loop
        delay = max((soonest - _now()) / NS, MIN_FIRE)
        self._timer_at = soonest
        self._timer = loop.call_later(delay, self._fire)

    def _fire(self) -> None:
        self._timer = None
        now = _now()
        due = sorted((a.seq, subject) for subject, a in self.armed.items() if a.due <= now)
        stream = self.stream
        for _, subject in due:
            armed = self.armed.get(subject)
            if armed is None:
                continue
            msg = stream.store.load(armed.seq)
            if msg is None:
                del self.armed[subject]
                continue
            hdrs = parse_headers(msg.hdrs)
            target = hdrs.get(TARGET, "")
            if not target:
                del self.armed[subject]
                continue
            body_hdrs, data = msg.hdrs, msg.data
            source = hdrs.get(SOURCE)
            if source:
                found = stream.store.last_matching(source)
                if found is not None:
                    body_hdrs, data = found.hdrs, found.data
            if armed.pattern.repeats:
                upcoming = armed.pattern.next_after(now, now)
                armed.due = upcoming if upcoming is not None else 0
                nxt = rfc3339(upcoming) if upcoming is not None else "purge"
            else:
                nxt = "purge"
            extra = [(SCHEDULER, subject), (NEXT, nxt)]
            if hdrs.get(SCHEDULE_TTL):
                extra.append((MSG_TTL, hdrs[SCHEDULE_TTL]))
            if hdrs.get(SCHEDULE_ROLLUP):
                extra.append((ROLLUP, hdrs[SCHEDULE_ROLLUP]))
            produced = _produced_headers(body_hdrs, extra)
            try:
                stream.process(target, produced, data, internal=True)  # storing it purges a one-shot
            except Exception as exc:  # a stream limit refused it: the schedule stays for its next time
                stream.log_refused_schedule(subject, exc)
            if nxt == "purge" or not armed.due:
                self.armed.pop(subject, None)
        if due:
            stream.request_commit()
        self._arm()

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.armed.clear()


def _produced_headers(block: bytes, extra: list[tuple[str, str]]) -> bytes:
    """The schedule's (or source's) headers without the schedule's own, ids, expectations, TTL and
    roll-up; then ``extra``."""
    kept = []
    for line in block.split(b"\r\n")[1:] if block else []:
        if not line:
            continue
        name = line.split(b":", 1)[0].strip().decode("latin-1")
        if name.startswith(("Nats-Schedule", "Nats-Expected-")) or name in (MSG_ID, MSG_TTL, ROLLUP):
            continue
        kept.append(line)
    kept.extend(f"{k}: {v}".encode() for k, v in extra)
    return b"NATS/1.0\r\n" + b"".join(line + b"\r\n" for line in kept) + b"\r\n"


def _seqs(stream: Stream, subject: str) -> list[int]:
    info = stream.store.subject_info(subject)
    if info is None:
        return []
    out, msg = [], stream.store.next_matching(info.first, subject)
    while msg is not None:
        out.append(msg.seq)
        msg = stream.store.next_matching(msg.seq + 1, subject)
    return out


def _now() -> int:
    return time.time_ns()
