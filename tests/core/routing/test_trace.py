"""The message-tracing contract (natsd.routing.trace) with real servers and clients: which
messages tracers see, what they are told, and how several traces of one message combine."""

from __future__ import annotations

import asyncio
from typing import Any

import nats

from natsd import Server, hookimpl
from natsd.config.conf import parse
from natsd.routing.trace import DROP, Traces


class Recorder:
    """A trace that writes down what it is told (``only``/``deliver``/``forward`` set its answers)."""

    def __init__(self, log: list[Any], only: bool = False, deliver: bool = True) -> None:
        self.log, self.only, self.deliver = log, only, deliver

    def mapped(self, subject: bytes) -> None:
        self.log.append(("mapped", subject))

    def refused(self, error: str) -> None:
        self.log.append(("refused", error))

    def stream_export(self, account: Any, subject: bytes) -> None:
        self.log.append(("stream_export", account.name, subject))

    def service_import(self, account: Any, subject: bytes, to: bytes) -> None:
        self.log.append(("service_import", account.name, subject, to))

    def delivered(self, sub: Any, subject: bytes, error: str | None) -> bool:
        self.log.append(("delivered", sub.subject, subject, error))
        return self.deliver

    def forwarded(self, link: Any, subject: bytes, queues: Any, headers: bytes) -> bytes | None:
        self.log.append(("forwarded", subject))
        return headers

    def stored(self, stream: str, subject: bytes, error: str | None = None, no_interest: bool = False) -> None:
        self.log.append(("stored", stream))

    def hold(self) -> Any:
        return lambda: None

    def end(self) -> None:
        self.log.append(("end",))


class Tracer:
    triggers = (b"X-Trace",)

    def __init__(self, log: list[Any], **answers: Any) -> None:
        self.log, self.answers, self.begun = log, answers, []

    def begin(self, client: Any, account: Any, subject: bytes, reply: Any, headers: Any, size: int) -> Any:
        self.begun.append((subject, headers, size))
        if self.answers.get("drop"):
            return DROP
        only = self.answers.get("only", False)
        return Recorder(self.log, only, deliver=not only)


class Plugin:
    def __init__(self, tracer: Any) -> None:
        self.tracer = tracer

    @hookimpl
    def natsd_message_tracers(self, server: Any) -> Any:
        return self.tracer


async def test_a_tracer_sees_only_messages_with_its_header_and_hears_each_step() -> None:
    log: list[Any] = []
    tracer = Tracer(log)
    conf = """host: 127.0.0.1\nport: -1\nmappings { "in.>": "out.>" }
        authorization { users: [ { user: u, password: p, permissions: { subscribe: { deny: "out.secret" } } } ] }"""
    async with Server(parse(conf), plugins=[Plugin(tracer)]) as server:
        nc = await nats.connect(server.client_url, user="u", password="p")
        wild = await nc.subscribe("out.*")
        await nc.publish("in.a", b"plain")  # no headers: never looked at
        await nc.publish("in.a", b"other", headers={"X-Other": "1"})
        await nc.publish("in.secret", b"traced", headers={"X-Trace": "1"})
        await nc.flush()
        assert (await wild.next_msg(timeout=2)).data == b"plain"
        assert (await wild.next_msg(timeout=2)).data == b"other"
        await asyncio.sleep(0.1)
        await nc.close()
    assert [b[0] for b in tracer.begun] == [b"in.secret"]
    assert log == [("mapped", b"out.secret"),
                   ("delivered", b"out.*", b"out.secret",
                    "Not delivered because subscription denies this subject"),
                   ("end",)]


async def test_a_trace_only_message_reaches_nobody_and_a_dropped_one_is_not_routed() -> None:
    log: list[Any] = []
    for answers in ({"only": True}, {"drop": True}):
        async with Server(parse("host: 127.0.0.1\nport: -1"), plugins=[Plugin(Tracer(log, **answers))]) as server:
            nc = await nats.connect(server.client_url)
            sub = await nc.subscribe("a")
            await nc.publish("a", b"x", headers={"X-Trace": "1"})
            await nc.publish("a", b"after")
            assert (await sub.next_msg(timeout=2)).data == b"after"
            await nc.close()
    assert log == [("delivered", b"a", b"a", None), ("end",)]  # the DROP run told nobody anything


def test_several_traces_of_one_message_hold_it_back_if_any_asks() -> None:
    log: list[Any] = []
    both = Traces([Recorder(log), Recorder(log, only=True, deliver=False)])
    assert both.only
    sub = type("Sub", (), {"subject": b"s"})()
    assert both.delivered(sub, b"s", None) is False
    assert [e[0] for e in log] == ["delivered", "delivered"]  # both were told
    assert Traces([Recorder(log), Recorder(log)]).delivered(sub, b"s", None) is True
