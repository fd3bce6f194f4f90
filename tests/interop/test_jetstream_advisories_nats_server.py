"""JetStream advisories and metrics on ``$JS.EVENT.>``, event by event beside nats-server 2.15.1.

A nats-server and a natsd, both started with ``-js`` and a fresh store directory, each get one connection
that subscribes to ``$JS.EVENT.>``. Each case is a short sequence of steps sent to both servers, one step at a
time and to both at once:

* ``Req``: a ``$JS.API.*`` request or a publish into a stream; ``Later`` builds one when it runs (a
  ``pause_until`` a moment from now);
* ``Fetch``: a pull of one message (``$JS.API.CONSUMER.MSG.NEXT.<stream>.<consumer>``, an inbox of the test as
  reply subject), which the next ``Ack`` acknowledges;
* ``Ack``: ``+ACK``, ``-NAK``, ``+TERM``, ``+WPI``... sent as a request to the ``$JS.ACK`` subject of that message;
* ``Await``: wait (a few seconds at most) until both servers published an event whose subject starts with a
  prefix: the ones a timer sends (max deliveries after ``ack_wait``, the end of a consumer's pause, the deletion
  of an inactive consumer).

After each step the test waits until neither server has published anything for a short while (bounded), and
compares the events each published meanwhile, then the step's replies:

* the events' subjects and JSON bodies, after masking what legitimately differs: ``id`` (a NUID),
  ``timestamp``, ``server``, the ``ack_time`` of an ack metric and, in the ``client`` object of an API audit,
  everything but ``host``, ``acc``, ``user``, ``name``, ``lang``, ``ver``, ``kind``, ``client_type`` (whose keys
  stay, to compare the key set and order). An audit's ``response`` is a JSON text, parsed and masked like a
  reply: times (``created``, ``ts``, ``last_active``...), server names, ``pause_remaining``; its ``request`` is
  what the test sent, compared as is;
* then the key order of every JSON object.

Order: the steps are compared one by one, so events keep their order across steps. Within a step, nats-server
sends API audits (``$JS.EVENT.ADVISORY.API``) from another goroutine than stream and consumer advisories (the
stream's send queue), so the two are compared as two lists, each in order; and on a stream delete it sends the
``CONSUMER.DELETED`` advisories in the order of a Go map, so those are sorted. nats-server also sometimes drops
the ``DELETED`` advisories of a stream delete (its stream loop may see the quit channel before the queued
advisories: about 1 delete in 40 of a stream with two consumers): such an advisory nats-server did not send is
not required of natsd (``JS_DIFF_SELF=1``: of either side).

Cases are independent: each uses its own stream names, and every stream is deleted after each case (once the
events subscription is gone). The ``api`` counters of ``$JS.API.INFO`` carry over, alike on both sides.

Run it with::

    .venv/bin/python -m pytest tests/interop/test_jetstream_advisories_nats_server.py

``JS_DIFF_SELF=1`` runs nats-server on the natsd side too: a check of the test itself (nothing unmasked varies
between two nats-servers; every case's sequence is deterministic).
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import nats
import pytest
import transcripts as T  # on sys.path via conftest.py
from conftest import require_nats_server
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.errors import TimeoutError as NatsTimeout
from test_jetstream_streams_nats_server import (
    KINDS,
    SELF,
    Proc,
    Req,
    api,
    create,
    first_difference,
    first_order_difference,
    masked,
    pub,
    reply,
)

pytestmark = pytest.mark.timeout(120)

EVENTS = "$JS.EVENT.>"
AUDIT = "$JS.EVENT.ADVISORY.API"
CLIENT_NAME = "js-advisories"


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """``kind -> URL`` of a JetStream-enabled server of each kind, each with its own store."""
    binary = require_nats_server()
    started: dict[str, Proc] = {}
    try:
        for kind in KINDS:
            work = tmp_path_factory.mktemp(f"jsadv-{kind}")
            port = T.free_port()
            program = [binary] if kind == "nats-server" or SELF else [sys.executable, "-m", "natsd"]
            argv = program + ["-js", "-sd", str(work / "store"), "-a", "127.0.0.1", "-p", str(port)]
            started[kind] = Proc(argv, port, work / "server.log")
        yield {kind: f"nats://127.0.0.1:{proc.port}" for kind, proc in started.items()}
    finally:
        for proc in started.values():
            proc.stop()


@pytest.fixture
async def conns(servers: dict[str, str]) -> AsyncIterator[dict[str, Client]]:
    """A named connection to each server; afterwards, every stream of the account is deleted."""
    opened = {kind: await nats.connect(url, name=CLIENT_NAME, allow_reconnect=False) for kind, url in servers.items()}
    yield opened
    try:
        for kind, nc in opened.items():
            listed = json.loads((await nc.request("$JS.API.STREAM.LIST", b"", timeout=5)).data)
            for stream in listed.get("streams") or []:
                name = stream["config"]["name"]
                gone = json.loads((await nc.request(f"$JS.API.STREAM.DELETE.{name}", b"", timeout=5)).data)
                assert gone.get("success"), f"{kind} did not delete stream {name}: {gone}"
        await asyncio.sleep(0.1)  # nats-server's memory-stream deletion race (see the streams test)
    finally:
        for nc in opened.values():
            await nc.close()


# --------------------------------------------------------------------------
# Steps (besides Req)
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Later:
    """A request made when the step runs (the same one for both servers): for times relative to now."""

    label: str
    make: Callable[[], Req]


@dataclass(frozen=True)
class Fetch:
    """Pull one message; the next Ack goes to its ``$JS.ACK`` subject. The outcome (message or status) is compared."""

    stream: str
    consumer: str
    no_wait: bool = False


@dataclass(frozen=True)
class Ack:
    """An acknowledgement sent, as a request, to the last fetched message; its reply (or none) is compared."""

    body: str
    wait: float = 1.0


@dataclass(frozen=True)
class Await:
    """Wait until both servers published an event whose subject starts with ``prefix`` (or ``timeout`` passed)."""

    prefix: str
    timeout: float = 3.0


Step = Req | Later | Fetch | Ack | Await

SEC = 1_000_000_000  # nanoseconds


def go_time(ns: int) -> str:
    """RFC 3339 with nanoseconds, as Go marshals a time.Time (trailing zeros of the fraction dropped)."""
    secs, frac = divmod(ns, SEC)
    fraction = f".{frac:09d}".rstrip("0").rstrip(".")
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + fraction + "Z"


def from_now(seconds: float) -> str:
    """A time ``seconds`` from now (negative: ago), with all nine digits of its fraction (the last one 7)."""
    ns = time.time_ns() + int(seconds * SEC)
    return go_time(ns - ns % 1000 + 7)


def consumer(stream: str, name: str, **config: Any) -> Req:
    """A durable consumer, through ``$JS.API.CONSUMER.CREATE.<stream>.<name>``."""
    return api(f"CONSUMER.CREATE.{stream}.{name}", {"stream_name": stream, "config": {"durable_name": name, **config}})


def pause(stream: str, name: str, seconds: float) -> Later:
    """Pause a consumer until ``seconds`` from when the step runs."""
    return Later(f"pause {stream} > {name} for {seconds}s",
                 lambda: api(f"CONSUMER.PAUSE.{stream}.{name}", {"pause_until": from_now(seconds)}))


def paused_consumer(stream: str, name: str, seconds: float, **config: Any) -> Later:
    """A durable consumer created paused until ``seconds`` from when the step runs."""
    return Later(f"consumer {stream} > {name} paused for {seconds}s",
                 lambda: consumer(stream, name, pause_until=from_now(seconds), **config))


EXPLICIT = {"ack_policy": "explicit"}
EPHEMERAL = {"name": "EPH", "inactive_threshold": 60 * SEC}  # a named ephemeral: no generated name to mask
MAX_DELIVERIES = "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES"
PAUSE = "$JS.EVENT.ADVISORY.CONSUMER.PAUSE"


# --------------------------------------------------------------------------
# Cases
# --------------------------------------------------------------------------

CASES: dict[str, list[Step]] = {
    # STREAM.CREATED on a create that makes a stream only; STREAM.UPDATED on every successful update (even one
    # that changes nothing); STREAM.DELETED; an audit for each request, failed or not
    "stream_lifecycle": [
        create("SLC", subjects=["slc.>"]),
        create("SLC", subjects=["slc.>"]),  # identical: no second CREATED
        create("SLC", subjects=["slc.>"], max_msgs=5),  # a different config: an error
        api("STREAM.UPDATE.SLC", {"name": "SLC", "subjects": ["slc.>"], "max_msgs": 10}),
        api("STREAM.UPDATE.SLC", {"name": "SLC", "subjects": ["slc.>"], "max_msgs": 10}),  # no change: UPDATED still
        api("STREAM.UPDATE.SLC", {"name": "SLC", "subjects": ["slc.>"], "storage": "memory"}),  # refused
        api("STREAM.INFO.SLC"),
        api("STREAM.DELETE.SLC"),
        api("STREAM.DELETE.SLC"),  # not found
    ],
    # which API calls are audited: not a successful STREAM.MSG.GET, not a DIRECT.GET, not a publish, not an
    # unknown API subject (no reply either); errors are, and an empty request has no "request" key
    "api_audits": [
        api("STREAM.CREATE.AUD", "{bad"),
        create("AUD", subjects=["aud.*"], allow_direct=True),
        pub("aud.a", "1"), pub("aud.b", "2"), pub("aud.a", "3"),
        api("STREAM.NAMES"),
        api("STREAM.LIST", {"subject": "aud.a"}),
        api("STREAM.MSG.GET.AUD", {"seq": 2}),
        api("STREAM.MSG.GET.AUD", {"last_by_subj": "aud.a"}),
        api("STREAM.MSG.GET.AUD", {"seq": 99}),
        api("DIRECT.GET.AUD", {"seq": 1}),
        api("DIRECT.GET.AUD.aud.b"),
        api("STREAM.MSG.DELETE.AUD", {"seq": 1}),
        api("STREAM.PURGE.AUD", {"filter": "aud.b"}),
        api("STREAM.PURGE.AUD"),
        api("STREAM.INFO.NOPE"),
        Req("$JS.API.NOPE", "", wait=0.5),
        api("INFO"),
    ],
    # CONSUMER.CREATED when a consumer is made (durable, named ephemeral, legacy durable subject), not when an
    # identical or updated config comes again; CONSUMER.DELETED; audits for all, errors included
    "consumer_lifecycle": [
        create("CLC", subjects=["clc.>"]),
        consumer("CLC", "D", **EXPLICIT),
        consumer("CLC", "D", **EXPLICIT),  # identical
        consumer("CLC", "D", description="updated", **EXPLICIT),  # an update: no advisory
        consumer("CLC", "D", ack_policy="all"),  # refused
        api("CONSUMER.CREATE.CLC.EPH", {"stream_name": "CLC", "config": EPHEMERAL}),
        api("CONSUMER.DURABLE.CREATE.CLC.LEG", {"stream_name": "CLC", "config": {"durable_name": "LEG", **EXPLICIT}}),
        api("CONSUMER.INFO.CLC.D"),
        api("CONSUMER.NAMES.CLC"),
        api("CONSUMER.DELETE.CLC.D"),
        api("CONSUMER.DELETE.CLC.D"),  # not found
        api("CONSUMER.DELETE.CLC.EPH"),
        consumer("NOSTREAM", "D", **EXPLICIT),
    ],
    # a consumer left inactive past its inactive_threshold is deleted, with its advisory (a timer: awaited)
    "consumer_inactive_threshold": [
        create("CIT", subjects=["cit"]),
        api("CONSUMER.CREATE.CIT.EPH", {"stream_name": "CIT", "config": {**EPHEMERAL, "inactive_threshold": SEC // 2}}),
        Await("$JS.EVENT.ADVISORY.CONSUMER.DELETED.CIT.EPH", timeout=4.0),
        api("CONSUMER.NAMES.CIT"),
    ],
    # a stream deleted with its consumers: each consumer's DELETED (in no set order), then the stream's
    "stream_delete_with_consumers": [
        create("SDC", subjects=["sdc"]),
        consumer("SDC", "A", **EXPLICIT),
        consumer("SDC", "B"),
        api("STREAM.DELETE.SDC"),
    ],
    # MSG_NAKED for a NAK of a pending message (again for a second NAK of the same delivery, not once acked),
    # MSG_TERMINATED for every TERM (with its reason; even of a message already acked); nothing for +WPI or +ACK
    # without sampling
    "nak_and_term": [
        create("NT", subjects=["nt"]),
        pub("nt", "1"), pub("nt", "2"), pub("nt", "3"), pub("nt", "4"),
        consumer("NT", "C", **EXPLICIT),
        Fetch("NT", "C"), Ack("-NAK"),
        Ack("-NAK"),  # the same delivery again
        Fetch("NT", "C"), Ack("+TERM no good"),  # the redelivery: deliveries 2
        Ack("+TERM"),  # already terminated: advisory again, without reason
        Fetch("NT", "C"), Ack('-NAK {"delay":10000000000}'),
        Ack("+WPI"),
        Ack("+ACK"),
        Ack("-NAK"),  # acked: nothing
        Fetch("NT", "C"), Ack("+TERM"),
        Fetch("NT", "C"), Ack("-NAK 10s"),
    ],
    # $JS.EVENT.METRIC.CONSUMER.ACK.<stream>.<consumer> for each ack of a consumer sampling 100% ("100%" or
    # "100"), an empty ack included; none for a second ack, a consumer without sampling or with ack policy all
    "ack_metrics": [
        create("AM", subjects=["am"]),
        *[pub("am", str(i)) for i in range(4)],
        consumer("AM", "S", sample_freq="100%", **EXPLICIT),
        Fetch("AM", "S"), Ack("+ACK"),
        Ack("+ACK"),  # already acked
        Fetch("AM", "S"), Ack("-NAK"),
        Fetch("AM", "S"), Ack("+ACK"),  # deliveries 2
        Fetch("AM", "S"), Ack(""),  # an empty ack is an ack
        consumer("AM", "N", sample_freq="100", **EXPLICIT),
        Fetch("AM", "N"), Ack("+ACK"),
        consumer("AM", "ALL", ack_policy="all", sample_freq="100%"),
        Fetch("AM", "ALL"), Ack("+ACK"),
        consumer("AM", "NONE", **EXPLICIT),
        Fetch("AM", "NONE"), Ack("+ACK"),
    ],
    # MAX_DELIVERIES when a message delivered max_deliver times is due again: after a NAK, at the next pull
    "max_deliveries_after_nak": [
        create("MDN", subjects=["mdn"]),
        pub("mdn", "1"), pub("mdn", "2"),
        consumer("MDN", "C", max_deliver=2, **EXPLICIT),
        Fetch("MDN", "C"), Ack("-NAK"),
        Fetch("MDN", "C"), Ack("-NAK"),  # deliveries 2: the last one allowed
        Fetch("MDN", "C", no_wait=True),  # the advisory, and the next message instead
        Fetch("MDN", "C", no_wait=True),
    ],
    # ... and when its ack_wait passes (a timer: awaited)
    "max_deliveries_after_ack_wait": [
        create("MDW", subjects=["mdw"]),
        pub("mdw", "1"),
        consumer("MDW", "C", max_deliver=1, ack_wait=SEC, **EXPLICIT),
        Fetch("MDW", "C"),
        Await(MAX_DELIVERIES + ".MDW.C"),
        Fetch("MDW", "C", no_wait=True),  # nothing left to deliver
    ],
    # CONSUMER.PAUSE when pause_until changes: paused (a time to come), ended by its timer, set in the past,
    # cleared by a resume (the zero time); not when it does not change
    "pause_and_resume": [
        create("PAU", subjects=["pau"]),
        consumer("PAU", "P", **EXPLICIT),
        pause("PAU", "P", 1.0),
        Await(PAUSE + ".PAU.P"),  # the end of the pause
        Later("pause PAU > P until 5 s ago",
              lambda: api("CONSUMER.PAUSE.PAU.P", {"pause_until": from_now(-5)})),
        api("CONSUMER.PAUSE.PAU.P", "{}"),  # resume
        api("CONSUMER.PAUSE.PAU.P"),  # resume again: no change
        pause("PAU", "P", 30),
        api("CONSUMER.PAUSE.PAU.P"),  # resume before the time
        api("CONSUMER.PAUSE.PAU.NOPE", "{}"),
        api("CONSUMER.PAUSE.PAU.P", "{bad"),
    ],
    # a consumer created paused: CREATED, then PAUSE (after the reply), then PAUSE again when the time comes
    "consumer_created_paused": [
        create("CPA", subjects=["cpa"]),
        paused_consumer("CPA", "P", 1.0, **EXPLICIT),
        Await(PAUSE + ".CPA.P"),
        Later("consumer CPA > Q paused until 5 s ago",
              lambda: consumer("CPA", "Q", pause_until=from_now(-5), **EXPLICIT)),  # already over: no PAUSE
    ],
}


# --------------------------------------------------------------------------
# Running a case on one server; masking
# --------------------------------------------------------------------------

QUIET = 0.15  # a step's events are all in once a server has been silent this long ...
SETTLE_MAX = 3.0  # ... or this long has passed
NUID = re.compile(r"[0-9A-Za-z]{22}")
RFC3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z")
EVENT_TIME_KEYS = {"timestamp", "last_active"}
DURATION_KEYS = {"ack_time", "pause_remaining"}
CLIENT_KEPT = {"host", "acc", "user", "name", "lang", "ver", "kind", "client_type"}
DELETED = ("$JS.EVENT.ADVISORY.STREAM.DELETED.", "$JS.EVENT.ADVISORY.CONSUMER.DELETED.")


def mask(value: Any, key: str = "") -> Any:
    """An event body or a reply with what legitimately differs replaced (see the module docstring)."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            if k == "client" and isinstance(v, dict):
                out[k] = {ck: cv if ck in CLIENT_KEPT else "<masked>" for ck, cv in v.items()}
            elif k == "response" and isinstance(v, str):
                try:
                    out[k] = {"<json>": mask(json.loads(v))}
                except json.JSONDecodeError:
                    out[k] = v
            else:
                out[k] = mask(v, k)
        return masked(out, key) if key == "cluster" else out
    if isinstance(value, list):
        return [mask(v) for v in value]
    if key == "id" and isinstance(value, str) and NUID.fullmatch(value):
        return "<nuid>"
    if key == "server" and isinstance(value, str) and value:
        return "<server>"
    if key in DURATION_KEYS and isinstance(value, int) and value > 0:
        return "<duration>"
    if key in EVENT_TIME_KEYS and isinstance(value, str) and RFC3339.fullmatch(value):
        return "<time>"
    if isinstance(value, str):
        tokens = value.split(".")
        if tokens[:2] == ["$JS", "ACK"] and len(tokens) == 9:  # $JS.ACK.<s>.<c>.<n>.<sseq>.<dseq>.<ts>.<pending>
            tokens[7] = "<ts>"
            return ".".join(tokens)
    return masked(value, key)


@dataclass
class Side:
    """One server's connection, the events it published so far, and the last message a Fetch got."""

    nc: Client
    events: list[Msg] = field(default_factory=list)
    last_event: float = 0.0
    fetched: Msg | None = None
    subscription: Subscription | None = None

    async def listen(self) -> None:
        async def arrived(msg: Msg) -> None:
            self.events.append(msg)
            self.last_event = time.monotonic()

        self.subscription = await self.nc.subscribe(EVENTS, cb=arrived)
        await self.nc.flush()

    async def run(self, step: Step) -> Any:
        """The step's outcome (reply, fetched message or status), masked; None for an Await."""
        if isinstance(step, Await):
            return None
        if isinstance(step, Fetch):
            return mask(await self.fetch(step))
        if isinstance(step, Ack):
            if self.fetched is None or not self.fetched.reply:
                return {"nothing fetched to ack": True}
            return mask(await reply(self.nc, Req(self.fetched.reply, step.body, wait=step.wait)))
        return mask(await reply(self.nc, step))

    async def fetch(self, step: Fetch) -> dict[str, Any]:
        inbox = self.nc.new_inbox()
        sub = await self.nc.subscribe(inbox)
        try:
            body = {"batch": 1, "no_wait": True} if step.no_wait else {"batch": 1, "expires": SEC}
            subject = f"$JS.API.CONSUMER.MSG.NEXT.{step.stream}.{step.consumer}"
            await self.nc.publish(subject, json.dumps(body).encode(), reply=inbox)
            try:
                msg = await sub.next_msg(timeout=2.0)
            except NatsTimeout:
                return {"timeout": True}
        finally:
            await sub.unsubscribe()
        out: dict[str, Any] = {"subject": "<inbox>" if msg.subject == inbox else msg.subject, "reply": msg.reply}
        if msg.headers:
            out["headers"] = {getattr(k, "value", k): v for k, v in msg.headers.items()}
        out["payload"] = msg.data.decode(errors="replace")
        if msg.reply:
            self.fetched = msg
        return out

    def has(self, start: int, prefix: str) -> bool:
        return any(m.subject.startswith(prefix) for m in self.events[start:])

    def published(self, start: int) -> list[dict[str, Any]]:
        out = []
        for msg in self.events[start:]:
            try:
                out.append({"subject": msg.subject, "json": mask(json.loads(msg.data))})
            except json.JSONDecodeError:
                out.append({"subject": msg.subject, "payload": msg.data.decode(errors="replace")})
        return out

    async def close(self) -> None:
        if self.subscription is not None:
            await self.subscription.unsubscribe()


async def settle(sides: list[Side]) -> None:
    """Wait until no server has published anything for QUIET seconds (SETTLE_MAX at most)."""
    began = time.monotonic()
    while True:
        await asyncio.sleep(0.025)
        now = time.monotonic()
        if now - began >= SETTLE_MAX:
            return
        if now - began >= QUIET and all(now - side.last_event >= QUIET for side in sides):
            return


def canonical(events: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """A step's events as compared: API audits and the others apart, runs of CONSUMER.DELETED sorted."""
    audits = [e for e in events if e["subject"] == AUDIT]
    others: list[dict[str, Any]] = []
    run: list[dict[str, Any]] = []
    for event in (e for e in events if e["subject"] != AUDIT):
        if event["subject"].startswith(DELETED[1]):
            run.append(event)
            continue
        others += sorted(run, key=lambda e: e["subject"]) + [event]
        run = []
    others += sorted(run, key=lambda e: e["subject"])
    return {"advisories": others, "audits": audits}


def drop_lost(step: Step, ours: list[dict[str, Any]], theirs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``ours`` without the stream-delete advisories nats-server (``theirs``) did not send (see the docstring)."""
    if not (isinstance(step, Req) and step.subject.startswith("$JS.API.STREAM.DELETE.")):
        return ours
    sent = {e["subject"] for e in theirs}
    return [e for e in ours if not e["subject"].startswith(DELETED) or e["subject"] in sent]


def describe(step: Step) -> str:
    if isinstance(step, Req):
        return f"{step.subject} {step.body!r}"
    if isinstance(step, Later):
        return step.label
    return repr(step)


def subjects(events: dict[str, list[dict[str, Any]]]) -> list[str]:
    return [e["subject"] for e in events["advisories"]] + [f"API audit of {e['json'].get('subject')}"
                                                            for e in events["audits"] if "json" in e]


@pytest.mark.parametrize("case", list(CASES))
async def test_jetstream_advisories_match(conns: dict[str, Client], case: str) -> None:
    sides = [Side(conns[k]) for k in KINDS]
    try:
        for side in sides:
            await side.listen()
        await settle(sides)  # anything late from an earlier case is not this case's
        for side in sides:
            side.events.clear()
        for i, step in enumerate(CASES[case]):
            starts = [len(side.events) for side in sides]
            run = step.make() if isinstance(step, Later) else step
            theirs_out, ours_out = await asyncio.gather(*(side.run(run) for side in sides))
            if isinstance(step, Await):
                deadline = time.monotonic() + step.timeout
                while time.monotonic() < deadline and not all(
                        side.has(start, step.prefix) for side, start in zip(sides, starts, strict=True)):
                    await asyncio.sleep(0.02)
            await settle(sides)
            theirs_ev, ours_ev = (side.published(start) for side, start in zip(sides, starts, strict=True))
            ours_ev = drop_lost(run, ours_ev, theirs_ev)
            if SELF:
                theirs_ev = drop_lost(run, theirs_ev, ours_ev)
            theirs, ours = canonical(theirs_ev), canonical(ours_ev)
            what = f"step {i} ({describe(step)})"
            assert subjects(ours) == subjects(theirs), (
                f"{what}: natsd published other events\nnatsd: {subjects(ours)}\nnats-server: {subjects(theirs)}"
                f"\nnatsd's: {ours}\nnats-server's: {theirs}")
            diff = first_difference(ours, theirs)
            assert diff is None, f"{what}: natsd's events differ at {diff}\nnatsd: {ours}\nnats-server: {theirs}"
            order = first_order_difference(ours, theirs)
            assert order is None, f"{what}: natsd's events' key order differs at {order}"
            diff = first_difference(ours_out, theirs_out)
            assert diff is None, (
                f"{what}: natsd answered differently at {diff}\nnatsd: {ours_out}\nnats-server: {theirs_out}")
            order = first_order_difference(ours_out, theirs_out)
            assert order is None, f"{what}: natsd's answer's key order differs at {order}"
    finally:
        for side in sides:
            await side.close()
