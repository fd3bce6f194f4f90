"""The otel plugin: OpenTelemetry spans for messages, with real NATS clients (nats-py) and the
SDK's in-memory exporter added to the plugin's provider."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import nats
import pytest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from natsd import Server
from natsd.config.conf import parse

pytestmark = pytest.mark.timeout(60)

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"


async def start(conf: str) -> tuple[Server, InMemorySpanExporter]:
    server = Server(parse("host: 127.0.0.1\nport: -1\n" + conf))
    await server.start()
    spans = InMemorySpanExporter()
    server.service("otel").provider.add_span_processor(SimpleSpanProcessor(spans))
    return server, spans


@pytest.fixture
async def traced() -> AsyncIterator[tuple[Server, InMemorySpanExporter]]:
    server, spans = await start("otel { exporter: none }")
    yield server, spans
    await server.shutdown()


async def wait_spans(spans: InMemorySpanExporter, n: int) -> list[Any]:
    for _ in range(100):
        got = spans.get_finished_spans()
        if len(got) >= n:
            return list(got)
        await asyncio.sleep(0.02)
    raise AssertionError(f"expected {n} spans, got {[s.name for s in spans.get_finished_spans()]}")


async def test_a_message_with_traceparent_gets_a_receive_span_under_the_producer_and_one_per_receiver(
        traced: tuple[Server, InMemorySpanExporter]) -> None:
    server, spans = traced
    nc = await nats.connect(server.client_url, name="producer")
    sub_nc = await nats.connect(server.client_url, name="worker")
    s1 = await sub_nc.subscribe("orders.*")
    s2 = await sub_nc.subscribe("orders.new", queue="workers")
    await sub_nc.flush()
    await nc.publish("orders.new", b"x" * 10, headers={"traceparent": PARENT, "tracestate": "k=v"})
    await nc.publish("orders.new", b"untraced")
    await nc.flush()
    for sub in (s1, s2):
        msg = await sub.next_msg(timeout=2)
        assert msg.headers == {"traceparent": PARENT, "tracestate": "k=v"}  # passed on untouched
    got = await wait_spans(spans, 3)
    receive = next(s for s in got if s.name == "receive orders.new")
    sends = [s for s in got if s.name == "send orders.new"]
    assert len(got) == 3 and len(sends) == 2
    assert format(receive.context.trace_id, "032x") == TRACE_ID
    assert format(receive.parent.span_id, "016x") == "00f067aa0ba902b7" and receive.parent.is_remote
    assert receive.kind is SpanKind.CONSUMER
    attrs = receive.attributes
    assert attrs["messaging.system"] == "nats" and attrs["messaging.destination.name"] == "orders.new"
    assert attrs["messaging.operation.type"] == "receive" and attrs["messaging.operation.name"] == "publish"
    assert attrs["messaging.message.body.size"] == 10 and attrs["nats.account"] == "$G"
    assert attrs["nats.client.name"] == "producer" and attrs["nats.deliveries"] == 2
    assert attrs["server.port"] == server.port
    for send in sends:
        assert send.parent.span_id == receive.context.span_id and send.kind is SpanKind.PRODUCER
        assert send.context.trace_id == receive.context.trace_id
        assert send.attributes["nats.client.name"] == "worker"
    assert {s.attributes["messaging.destination.subscription.name"] for s in sends} == {"orders.*", "orders.new"}
    assert [s.attributes.get("messaging.consumer.group.name") for s in sends].count("workers") == 1
    assert receive.start_time <= min(s.start_time for s in sends) <= max(s.end_time for s in sends) \
        <= receive.end_time
    await nc.close()
    await sub_nc.close()


async def test_an_unsampled_parent_and_messages_without_context_make_no_spans(
        traced: tuple[Server, InMemorySpanExporter]) -> None:
    server, spans = traced
    nc = await nats.connect(server.client_url)
    sub = await nc.subscribe("a")
    await nc.publish("a", b"1", headers={"traceparent": f"00-{TRACE_ID}-00f067aa0ba902b7-00"})
    await nc.publish("a", b"2", headers={"traceparent": "00-nothex-00f067aa0ba902b7-01"})
    await nc.publish("a", b"3")
    for _ in range(3):
        await sub.next_msg(timeout=2)
    await asyncio.sleep(0.1)
    assert spans.get_finished_spans() == ()
    await nc.close()


async def test_start_traces_samples_new_traces_and_errors_mark_the_span() -> None:
    server, spans = await start("""
        otel { exporter: none, start_traces: true }
        authorization { users: [ { user: a, password: a, permissions: { publish: { deny: "secret" } } } ] }
        mappings { "old.>": "new.>" }
    """)
    try:
        nc = await nats.connect(server.client_url, user="a", password="a")
        sub = await nc.subscribe("new.x")
        await nc.publish("old.x", b"hi")
        await nc.publish("secret", b"no")
        await sub.next_msg(timeout=2)
        got = await wait_spans(spans, 3)
        mapped = next(s for s in got if s.name == "receive old.x")
        assert mapped.parent is None  # a new trace
        assert [(e.name, e.attributes["messaging.destination.name"]) for e in mapped.events] == [
            ("subject mapped", "new.x")]
        assert next(s for s in got if s.name == "send new.x").parent.span_id == mapped.context.span_id
        refused = next(s for s in got if s.name == "receive secret")
        assert refused.status.status_code is StatusCode.ERROR
        assert "Permissions Violation for Publish" in refused.status.description
        await nc.close()
    finally:
        await server.shutdown()
