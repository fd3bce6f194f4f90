"""The otel plugin: OpenTelemetry spans for messages, with real NATS clients (nats-py) and the
SDK's in-memory exporter added to the plugin's provider."""

from __future__ import annotations

import asyncio
import json
import urllib.request
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


async def test_one_message_from_an_mqtt_device_through_a_service_and_a_stream_is_one_trace(
        tmp_path: Any) -> None:
    """The issue's proof: an MQTT 5 device publishes with a traceparent user property; a NATS
    service (nats-py) answers it; a stream stores it and a pull consumer receives it. Every span
    natsd makes for it belongs to the device's trace, in the right parent/child chain."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    from natsd.server import free_port

    mqtt_port = free_port()
    server, spans = await start(f"""
        otel {{ exporter: none }}
        mqtt {{ listen: "127.0.0.1:{mqtt_port}" }}
        jetstream {{ store_dir: "{tmp_path}" }}
    """)
    try:
        nc = await nats.connect(server.client_url, name="pricing-service")
        js = nc.jetstream()
        await js.add_stream(name="ORDERS", subjects=["orders.>"])
        consumer = await js.pull_subscribe("orders.>", durable="audit")

        async def answer(msg: Any) -> None:  # an instrumented service passes the context on
            await nc.publish(msg.reply, b"price: 42", headers={"traceparent": msg.headers["traceparent"]})
        await nc.subscribe("orders.new", cb=answer)
        await nc.flush()

        replies: asyncio.Queue[Any] = asyncio.Queue()
        loop = asyncio.get_running_loop()
        device = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="truck-7", protocol=mqtt.MQTTv5)
        device.on_message = lambda c, u, m: loop.call_soon_threadsafe(replies.put_nowait, m)
        await asyncio.to_thread(device.connect, "127.0.0.1", mqtt_port)
        device.loop_start()
        try:
            await asyncio.to_thread(lambda: device.subscribe("replies/truck-7", qos=0)[0])
            await asyncio.sleep(0.2)
            props = Properties(PacketTypes.PUBLISH)
            props.UserProperty = [("traceparent", PARENT)]
            props.ResponseTopic = "replies/truck-7"
            await asyncio.to_thread(lambda: device.publish("orders/new", b'{"sku": 1}', qos=1,
                                                           properties=props).wait_for_publish(5))
            # the request's response topic hears the service and, as on nats-server, the stream's PubAck
            answers = {(await asyncio.wait_for(replies.get(), 5)).payload for _ in range(2)}
            assert answers == {b"price: 42", b'{"stream":"ORDERS","seq":1}'}
            (stored,) = await consumer.fetch(1, timeout=5)
            assert stored.headers["traceparent"] == PARENT
            await stored.ack()
        finally:
            device.loop_stop()
            await asyncio.to_thread(device.disconnect)

        got = await wait_spans(spans, 6)
        by_name: dict[str, list[Any]] = {}
        for span in got:
            by_name.setdefault(span.name, []).append(span)
        assert {format(s.context.trace_id, "032x") for s in got} == {TRACE_ID}
        (receive,) = by_name["receive orders.new"]
        assert format(receive.parent.span_id, "016x") == "00f067aa0ba902b7"  # the device's span
        assert receive.attributes["network.protocol.name"] == "mqtt" and receive.attributes["nats.mqtt.qos"] == 1
        assert receive.attributes["nats.client.name"] == "truck-7"
        children = {s.name for s in got if s.parent is not None and s.parent.span_id == receive.context.span_id}
        assert children == {"send orders.new", "store ORDERS"}
        (to_service,) = [s for s in by_name["send orders.new"] if s.parent.span_id == receive.context.span_id]
        assert to_service.attributes["nats.client.name"] == "pricing-service"
        (store,) = by_name["store ORDERS"]
        assert store.attributes["nats.jetstream.stream"] == "ORDERS"
        assert receive.start_time <= store.start_time <= store.end_time
        # the service's reply carries the context on to the device
        (back,) = by_name["receive replies.truck-7"]
        assert back.attributes["nats.client.name"] == "pricing-service"
        (to_device,) = by_name["send replies.truck-7"]
        assert to_device.parent.span_id == back.context.span_id
        assert to_device.attributes["nats.client.name"] == "mqtt:truck-7"  # the device's session
        # the stored copy's delivery to the pull consumer, after the store was durable
        (delivery,) = by_name["deliver orders.new"]
        assert format(delivery.parent.span_id, "016x") == "00f067aa0ba902b7"
        assert delivery.attributes["messaging.consumer.group.name"] == "audit"
        assert delivery.attributes["nats.jetstream.delivered"] == 1
        assert delivery.start_time >= store.end_time
        (to_consumer,) = [s for s in by_name["send orders.new"] if s.parent.span_id == delivery.context.span_id]
        assert to_consumer.attributes["messaging.destination.subscription.name"].startswith("_INBOX.")
        await nc.close()
    finally:
        await server.shutdown()


class Collector:
    """An OTLP/HTTP receiver (the protocol a collector speaks on :4318), on a free port."""

    def __init__(self) -> None:
        self.requests: list[Any] = []
        self.headers: list[dict[str, str]] = []

    async def start(self) -> str:
        from aiohttp import web

        async def traces(request: web.Request) -> web.Response:
            from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

            self.requests.append(ExportTraceServiceRequest.FromString(await request.read()))
            self.headers.append(dict(request.headers))
            return web.Response(body=b"", content_type="application/x-protobuf")

        app = web.Application()
        app.router.add_post("/v1/traces", traces)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return f"http://127.0.0.1:{port}"

    def spans(self) -> list[tuple[dict[str, Any], Any]]:
        """(resource attributes, span) of every span received."""
        out = []
        for req in self.requests:
            for rs in req.resource_spans:
                resource = {a.key: a.value.string_value for a in rs.resource.attributes}
                for ss in rs.scope_spans:
                    out.extend((resource, span) for span in ss.spans)
        return out

    async def stop(self) -> None:
        await self.runner.cleanup()


async def test_spans_reach_an_otlp_collector_with_the_configured_resource_and_headers(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "50")
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=test,team=iot")
    collector = Collector()
    endpoint = await collector.start()
    server = Server(parse(f"""host: 127.0.0.1\nport: -1\nhttp_port: 0
        otel {{ endpoint: "{endpoint}", service_name: edge-broker, headers: {{ x-api-key: s3cret }},
                resource: {{ team: fleet }} }}"""))
    await server.start()
    try:
        nc = await nats.connect(server.client_url)
        sub = await nc.subscribe("telemetry.>")
        await nc.publish("telemetry.truck7", b"80", headers={"traceparent": PARENT})
        await sub.next_msg(timeout=2)
        for _ in range(100):
            if len(collector.spans()) >= 2:
                break
            await asyncio.sleep(0.05)
        got = collector.spans()
        assert sorted(span.name for _, span in got) == ["receive telemetry.truck7", "send telemetry.truck7"]
        resource = got[0][0]
        assert resource["service.name"] == "edge-broker"
        assert resource["service.instance.id"] == server.server_id
        assert resource["deployment.environment"] == "test" and resource["team"] == "fleet"  # block wins
        assert collector.headers[0]["x-api-key"] == "s3cret"
        receive = next(span for _, span in got if span.name.startswith("receive"))
        assert receive.trace_id.hex() == TRACE_ID and receive.parent_span_id.hex() == "00f067aa0ba902b7"
        # The collector has the spans before the exporter's thread has its answer and counts them.
        for _ in range(100):
            if server.service("otel").stats()["exported"] == 2:
                break
            await asyncio.sleep(0.02)
        assert server.service("otel").stats()["exported"] == 2
        from natsd_plugins.monitor import http_listener

        url = http_listener(server).url
        varz = await asyncio.to_thread(lambda: json.load(urllib.request.urlopen(f"{url}/varz", timeout=5)))
        assert varz["otel"] == {"exporter": "otlp", "sampler": "parentbased_always_on", "ratio": 1.0,
                                "traced": 1, "exported": 2, "failed": 0}
        await nc.close()
    finally:
        await server.shutdown()
        await collector.stop()


async def test_an_unreachable_collector_is_logged_once_and_traffic_goes_on(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    from natsd.server import free_port

    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "20")
    server = Server(parse(f"""host: 127.0.0.1\nport: -1
        otel {{ endpoint: "http://127.0.0.1:{free_port()}", timeout: 200ms }}"""))
    await server.start()
    try:
        nc = await nats.connect(server.client_url)
        sub = await nc.subscribe("a")
        for i in range(3):
            await nc.publish("a", b"%d" % i, headers={"traceparent": PARENT})
            await sub.next_msg(timeout=2)  # delivered at once, whatever the exporter is doing
            await asyncio.sleep(0.3)
        otel = server.service("otel")
        for _ in range(100):
            if otel.stats()["failed"] >= 6:
                break
            await asyncio.sleep(0.05)
        assert otel.stats()["failed"] >= 6 and otel.stats()["exported"] == 0
        failures = [r for r in caplog.records if "OpenTelemetry export failed" in r.getMessage()]
        assert len(failures) == 1
        await nc.close()
    finally:
        await server.shutdown()
