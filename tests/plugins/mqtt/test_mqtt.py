"""natsd's MQTT port with real clients (paho-mqtt 3.1.1 and 5, nats-py): what nats-server does not
do (MQTT 5, shared subscriptions) and what the core gives every connection (authentication, limits)."""

from __future__ import annotations

import asyncio
import queue
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import nats
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from natsd import Server, hookimpl
from natsd.config.conf import parse
from natsd.server import free_port

pytestmark = pytest.mark.timeout(60)

V5, V311 = mqtt.MQTTv5, mqtt.MQTTv311


class Device:
    """A paho-mqtt client (its own thread) whose messages land in a queue. The server runs in this
    test's event loop: every blocking call goes through a thread (``await device.subscribe(...)``)."""

    @classmethod
    async def open(cls, *args: Any, **kwargs: Any) -> Device:
        return await asyncio.to_thread(cls, *args, **kwargs)

    def __init__(self, port: int, client_id: str = "", version: int = V5, *, user: str | None = None,
                 password: str | None = None, properties: Properties | None = None, websocket: bool = False,
                 clean_start: bool = True) -> None:
        self.messages: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=version,
                                  transport="websockets" if websocket else "tcp")
        if websocket:
            self.client.ws_set_options(path="/mqtt")
        self.client.on_message = lambda c, u, m: self.messages.put(m)
        done: queue.Queue[Any] = queue.Queue()
        self.client.on_connect = lambda c, u, flags, rc, props=None: done.put((flags, rc, props))
        if user is not None:
            self.client.username_pw_set(user, password)
        if version == V5:
            self.client.connect("127.0.0.1", port, keepalive=30, properties=properties, clean_start=clean_start)
        else:
            self.client.connect("127.0.0.1", port, keepalive=30, properties=properties)
        self.client.loop_start()
        self.flags, self.rc, self.props = done.get(timeout=5)

    def _subscribe(self, topic: str, qos: int = 0, **options: Any) -> list[Any]:
        done: queue.Queue[Any] = queue.Queue()
        self.client.on_subscribe = lambda c, u, mid, rcs, props=None: done.put(rcs)
        if options:
            self.client.subscribe(topic, options=mqtt.SubscribeOptions(qos=qos, **options))
        else:
            self.client.subscribe(topic, qos=qos)
        return done.get(timeout=5)  # type: ignore[no-any-return]

    def _publish(self, topic: str, payload: bytes, qos: int = 0, properties: Properties | None = None) -> None:
        self.client.publish(topic, payload, qos=qos, properties=properties).wait_for_publish(5)

    def _received(self, count: int, timeout: float = 3.0) -> list[mqtt.MQTTMessage]:
        out: list[mqtt.MQTTMessage] = []
        deadline = time.monotonic() + timeout
        while len(out) < count and time.monotonic() < deadline:
            try:
                out.append(self.messages.get(timeout=0.05))
            except queue.Empty:
                pass
        return out

    def _close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    async def subscribe(self, *args: Any, **kwargs: Any) -> list[Any]:
        return await asyncio.to_thread(self._subscribe, *args, **kwargs)

    async def publish(self, *args: Any) -> None:
        await asyncio.to_thread(self._publish, *args)

    async def received(self, *args: Any) -> list[mqtt.MQTTMessage]:
        return await asyncio.to_thread(self._received, *args)

    async def close(self) -> None:
        await asyncio.to_thread(self._close)


@pytest.fixture
async def broker() -> AsyncIterator[tuple[Server, int]]:
    port = free_port()
    server = Server(parse(f"host: 127.0.0.1\nport: -1\nmqtt {{ listen: 127.0.0.1:{port} }}"))
    await server.start()
    yield server, port
    await server.shutdown()


async def test_mqtt5_user_properties_become_nats_headers_and_back(broker: tuple[Server, int]) -> None:
    server, port = broker
    nc = await nats.connect(server.client_url)
    sub = await nc.subscribe("fleet.>")
    await nc.flush()
    device = await Device.open(port, "truck-7")
    await device.subscribe("fleet/+/cmd", qos=1)
    props = Properties(PacketTypes.PUBLISH)
    props.UserProperty = [("vin", "WDB123"), ("fw", "1.2")]
    props.ContentType = "application/json"
    await device.publish("fleet/truck-7/telemetry", b'{"speed": 80}', 1, props)
    msg = await sub.next_msg(timeout=2)
    assert msg.subject == "fleet.truck-7.telemetry"
    assert msg.headers == {"Nmqtt-Pub": "1", "vin": "WDB123", "fw": "1.2", "Content-Type": "application/json"}
    await nc.publish("fleet.truck-7.cmd", b"slow down", headers={"traceparent": "00-abc-def-01", "op": "limit"})
    (got,) = await device.received(1)
    assert got.topic == "fleet/truck-7/cmd" and got.payload == b"slow down" and got.qos == 0
    assert set(got.properties.UserProperty) == {("traceparent", "00-abc-def-01"), ("op", "limit")}
    await device.close()
    await nc.close()


async def test_mqtt5_request_reply_with_a_nats_service(broker: tuple[Server, int]) -> None:
    """A device asks with a response topic; a NATS service answers to the reply subject."""
    server, port = broker
    nc = await nats.connect(server.client_url)

    async def serve(msg: Any) -> None:
        await msg.respond(b"rate=" + msg.data)

    await nc.subscribe("config.get", cb=serve)
    await nc.flush()
    device = await Device.open(port, "sensor-1")
    await device.subscribe("replies/sensor-1")
    props = Properties(PacketTypes.PUBLISH)
    props.ResponseTopic = "replies/sensor-1"
    await device.publish("config/get", b"10", 0, props)
    (answer,) = await device.received(1)
    assert answer.topic == "replies/sensor-1" and answer.payload == b"rate=10"
    await device.close()
    await nc.close()


async def test_qos2_is_delivered_exactly_once_both_ways(broker: tuple[Server, int]) -> None:
    server, port = broker
    nc = await nats.connect(server.client_url)
    sub = await nc.subscribe("pay.>")
    await nc.flush()
    receiver = await Device.open(port, "till", V311)
    await receiver.subscribe("pay/#", qos=2)
    sender = await Device.open(port, "card", V5)
    for i in range(5):
        await sender.publish("pay/eur", b"%d" % i, 2)
    got = await receiver.received(5)
    assert [(m.payload, m.qos) for m in got] == [(b"%d" % i, 2) for i in range(5)]
    assert await receiver.received(1, 0.5) == []
    nats_got = [(await sub.next_msg(timeout=2)).data for _ in range(5)]
    assert nats_got == [b"%d" % i for i in range(5)]
    with pytest.raises(nats.errors.TimeoutError):
        await sub.next_msg(timeout=0.3)
    for d in (sender, receiver):
        await d.close()
    await nc.close()


async def test_shared_subscriptions_spread_work_like_queue_groups(broker: tuple[Server, int]) -> None:
    server, port = broker
    workers = [await Device.open(port, f"worker-{i}") for i in range(2)]
    for w in workers:
        await w.subscribe("$share/pool/jobs/#", qos=1)
    nc = await nats.connect(server.client_url)
    queue_member = await nc.subscribe("jobs.>", queue="pool")  # a NATS member of the same group
    await nc.flush()
    for i in range(60):
        await nc.publish(f"jobs.{i % 3}", b"%d" % i)
    await nc.flush()
    await asyncio.sleep(0.5)
    counts = [len(await w.received(60, 0.5)) for w in workers]
    nats_count = 0
    while True:
        try:
            await queue_member.next_msg(timeout=0.2)
            nats_count += 1
        except nats.errors.TimeoutError:
            break
    assert sum(counts) + nats_count == 60  # each job once
    assert all(c > 0 for c in counts) and nats_count > 0
    for w in workers:
        await w.close()
    await nc.close()


async def test_an_empty_client_id_gets_one_assigned_and_topic_aliases_work(broker: tuple[Server, int]) -> None:
    server, port = broker
    nc = await nats.connect(server.client_url)
    sub = await nc.subscribe("alias.>")
    await nc.flush()
    device = await Device.open(port, "")
    assert device.props.AssignedClientIdentifier
    first = Properties(PacketTypes.PUBLISH)
    first.TopicAlias = 3
    await device.publish("alias/long/topic/name", b"1", 0, first)
    again = Properties(PacketTypes.PUBLISH)
    again.TopicAlias = 3
    await device.publish("", b"2", 0, again)  # the alias alone
    assert [(await sub.next_msg(timeout=2)).subject for _ in range(2)] == ["alias.long.topic.name"] * 2
    await device.close()
    await nc.close()


async def test_a_retained_message_published_with_an_alias_reaches_others_without_it(
        broker: tuple[Server, int]) -> None:
    """A topic alias belongs to the connection that set it: the retained copy goes to a later
    subscriber with its topic and the publisher's other properties, not the alias."""
    _, port = broker
    device = await Device.open(port, "sensor")
    props = Properties(PacketTypes.PUBLISH)
    props.TopicAlias = 5
    props.ContentType = "text/plain"
    await device.publish("plant/line1/temp", b"21.5", 1, props)
    await asyncio.to_thread(device.client.publish("", b"21.7", qos=1, retain=True,
                                                  properties=props).wait_for_publish, 5)
    dashboard = await Device.open(port, "dashboard")
    await dashboard.subscribe("plant/#", qos=1)
    [message] = await dashboard.received(1)
    assert (message.topic, message.payload, message.retain) == ("plant/line1/temp", b"21.7", True)
    assert message.properties.ContentType == "text/plain"
    assert not hasattr(message.properties, "TopicAlias")
    await device.close()
    await dashboard.close()


async def test_no_local_keeps_a_device_from_hearing_itself(broker: tuple[Server, int]) -> None:
    _, port = broker
    device = await Device.open(port, "chatty")
    await device.subscribe("room/#", qos=0, noLocal=True)
    other = await Device.open(port, "other")
    await device.publish("room/a", b"mine")
    await other.publish("room/a", b"theirs")
    got = await device.received(2, 1.0)
    assert [m.payload for m in got] == [b"theirs"]
    for d in (device, other):
        await d.close()


async def test_dollar_topics_reach_only_filters_that_name_their_first_level(tmp_path: Path) -> None:
    """[MQTT-4.7.2-1], as nats-server: a filter starting with '#' or '+' matches no $ topic, whether the
    message comes straight (QoS 0) or from a QoS 1 subscription's JetStream consumer."""
    port = free_port()
    server = Server(parse(f'host: 127.0.0.1\nport: -1\njetstream {{ store_dir: "{tmp_path}" }}\n'
                          f"mqtt {{ listen: 127.0.0.1:{port} }}"))
    await server.start()
    try:
        devices = {name: await Device.open(port, name, V311) for name in ("all", "plus", "named", "pub")}
        await devices["all"].subscribe("#", 1)
        await devices["plus"].subscribe("+/x", 0)
        await devices["named"].subscribe("$app/#", 1)
        for topic, payload, qos in (("$app/x", b"0", 0), ("$app/x", b"1", 1), ("app/x", b"plain", 1)):
            await devices["pub"].publish(topic, payload, qos)

        def seen(messages: list[mqtt.MQTTMessage]) -> list[tuple[str, bytes, int]]:
            # nor does '#' see the plugin's JetStream API replies ($MQTT.JSA...)
            return sorted((m.topic, m.payload, m.qos) for m in messages)

        assert seen(await devices["named"].received(2)) == [("$app/x", b"0", 0), ("$app/x", b"1", 1)]
        assert seen(await devices["plus"].received(1)) == [("app/x", b"plain", 0)]
        assert seen(await devices["all"].received(20, 1.5)) == [("app/x", b"plain", 1)]
        assert seen(await devices["plus"].received(1, 0.3)) == []
        for dev in devices.values():
            await dev.close()
    finally:
        await server.shutdown()


async def test_devices_authenticate_as_users_of_accounts_and_are_bound_by_permissions() -> None:
    port = free_port()
    server = Server(parse(
        f"host: 127.0.0.1\nport: -1\nhttp: 127.0.0.1:-1\nmqtt {{ listen: 127.0.0.1:{port} }}\n"
        "accounts { FLEET { users: [ {user: dev, password: s3cret, permissions: {"
        " publish: ['telemetry.>'], subscribe: ['cmd.>'] }}, {user: svc, password: svc} ] },"
        " OTHER { users: [ {user: o, password: o} ] } }\n"))
    await server.start()
    try:
        intruder = await Device.open(port, "intruder", V311, user="dev", password="wrong")
        assert intruder.rc.is_failure and str(intruder.rc) == "Not authorized"  # 3.1.1 return code 5
        await asyncio.to_thread(intruder.client.loop_stop)
        refused = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bad5", protocol=V5)
        codes: queue.Queue[Any] = queue.Queue()
        refused.on_connect = lambda c, u, f, rc, p=None: codes.put(rc)
        refused.username_pw_set("dev", "wrong")
        refused.connect("127.0.0.1", port)
        refused.loop_start()
        assert (await asyncio.to_thread(codes.get, True, 5)).value == 0x87
        refused.loop_stop()

        device = await Device.open(port, "dev-1", V5, user="dev", password="s3cret")
        assert (await device.subscribe("cmd/#", 1))[0].value == 1
        assert (await device.subscribe("secrets/#", 1))[0].value == 0x87  # not allowed
        other = await nats.connect(server.client_url, user="o", password="o")
        seen_other = await other.subscribe(">")
        fleet = await nats.connect(server.client_url, user="svc", password="svc")
        seen_fleet = await fleet.subscribe("telemetry.>")
        await other.flush()
        await fleet.flush()
        await device.publish("telemetry/speed", b"80", 1)
        assert (await seen_fleet.next_msg(timeout=2)).data == b"80"
        with pytest.raises(nats.errors.TimeoutError):  # another account hears nothing
            await seen_other.next_msg(timeout=0.3)
        import json
        import urllib.request

        http = server.ports["monitoring"][0]
        connz = json.loads(await asyncio.to_thread(
            lambda: urllib.request.urlopen(f"{http}/connz?auth=1&mqtt_client=dev-1", timeout=5).read()))
        (entry,) = connz["connections"]
        assert entry["type"] == "mqtt" and entry["mqtt_client"] == "dev-1" and "name" not in entry
        assert entry["account"] == "FLEET" and entry["authorized_user"] == "dev"
        await device.close()
        await other.close()
        await fleet.close()
    finally:
        await server.shutdown()


async def test_devices_on_the_websocket_port_speak_mqtt_on_its_mqtt_path() -> None:
    """MQTT over WebSocket (browsers, mobile apps): the websocket {} port's /mqtt path, as nats-server's."""
    port, ws_port = free_port(), free_port()
    server = Server(parse(f"host: 127.0.0.1\nport: -1\nmqtt {{ listen: 127.0.0.1:{port} }}\n"
                          f"websocket {{ listen: 127.0.0.1:{ws_port}, no_tls: true }}\n"))
    await server.start()
    try:
        web = await Device.open(ws_port, "browser", V311, websocket=True)
        tcp = await Device.open(port, "tcp-device", V5)
        await web.subscribe("chat/#", 1)
        await tcp.subscribe("chat/#", 1)
        await tcp.publish("chat/room1", b"from tcp", 1)
        await web.publish("chat/room1", b"from the browser", 1)
        assert sorted(m.payload for m in await web.received(2)) == sorted([b"from the browser", b"from tcp"])
        assert sorted(m.payload for m in await tcp.received(2)) == sorted([b"from the browser", b"from tcp"])
        for d in (web, tcp):
            await d.close()
    finally:
        await server.shutdown()


def v5_connect_props(session_expiry: int) -> Properties:
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = session_expiry
    return props


async def test_a_delayed_will_waits_and_is_void_if_the_device_comes_back(broker: tuple[Server, int]) -> None:
    _, port = broker
    watcher = await Device.open(port, "watcher")
    await watcher.subscribe("will/#")

    def dying(client_id: str, delay: int) -> Device:
        device = Device.__new__(Device)
        device.messages = queue.Queue()
        device.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=V5)
        will_props = Properties(PacketTypes.WILLMESSAGE)
        will_props.WillDelayInterval = delay
        device.client.will_set(f"will/{client_id}", b"gone", properties=will_props)
        done: queue.Queue[Any] = queue.Queue()
        device.client.on_connect = lambda c, u, f, rc, p=None: done.put(rc)
        device.client.connect("127.0.0.1", port, properties=v5_connect_props(60))
        device.client.loop_start()
        done.get(timeout=5)
        return device

    def drop(device: Device) -> None:
        device.client.loop_stop()
        sock = device.client.socket()
        if sock is not None:
            sock.close()

    # delays long enough that a loaded machine's thread switches cannot outrun them
    late = await asyncio.to_thread(dying, "late", 3)
    back = await asyncio.to_thread(dying, "back", 5)
    await asyncio.to_thread(drop, late)
    await asyncio.to_thread(drop, back)
    assert await watcher.received(1, 0.5) == []  # not yet

    def resume() -> mqtt.Client:
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="back", protocol=V5)
        done: queue.Queue[Any] = queue.Queue()
        client.on_connect = lambda c, u, f, rc, p=None: done.put(f)
        client.connect("127.0.0.1", port, clean_start=False, properties=v5_connect_props(60))
        client.loop_start()
        assert done.get(timeout=5).session_present  # the session, taken up again
        return client

    again = await asyncio.to_thread(resume)
    got = await watcher.received(2, 6.0)  # past both delays: only the device that stayed away
    assert [(m.topic, m.payload) for m in got] == [("will/late", b"gone")]
    await watcher.close()
    await asyncio.to_thread(lambda: (again.disconnect(), again.loop_stop()))


async def test_an_expired_message_is_not_delivered_and_the_rest_carries_what_is_left(
        broker: tuple[Server, int]) -> None:
    _, port = broker
    device = await Device.open(port, "sleepy", V5, properties=v5_connect_props(60))
    await device.subscribe("exp/#", 1)
    await device.close()
    sender = await Device.open(port, "sender", V5)
    for name, seconds in (("short", 1), ("long", 60)):
        props = Properties(PacketTypes.PUBLISH)
        props.MessageExpiryInterval = seconds
        await sender.publish(f"exp/{name}", name.encode(), 1, props)
    await asyncio.sleep(1.6)
    device = await Device.open(port, "sleepy", V5, properties=v5_connect_props(60), clean_start=False)
    got = await device.received(2, 2.0)
    assert [m.payload for m in got] == [b"long"]
    assert 55 <= got[0].properties.MessageExpiryInterval <= 59
    for d in (device, sender):
        await d.close()


class ChallengeAuth:
    """An MQTT 5 enhanced authentication method of a third-party plugin: the server sends a nonce,
    the device answers with an HMAC of it under its shared secret."""

    method = "x-hmac"
    secrets = {"sensor-9": b"s3cret"}

    def exchange(self, connect: Any, data: bytes | None) -> Any:
        import hashlib
        import hmac
        import os

        from natsd.plugin.contracts import AuthResult

        nonce = os.urandom(16)
        answer = yield nonce
        secret = self.secrets.get(connect["client_id"])
        ok = secret is not None and hmac.compare_digest(answer, hmac.new(secret, nonce, hashlib.sha256).digest())
        return AuthResult(ok=ok, user=connect["client_id"] if ok else None)

    @hookimpl
    def natsd_mqtt_authenticators(self, server: Any) -> list[Any]:
        return [self]


async def test_mqtt5_enhanced_authentication_through_a_plugin_hook() -> None:
    import hashlib
    import hmac

    from natsd_plugins.mqtt import packets as P

    port = free_port()
    server = Server(parse(f"host: 127.0.0.1\nport: -1\nmqtt {{ listen: 127.0.0.1:{port} }}"),
                    plugins=[ChallengeAuth()])
    await server.start()

    async def attempt(client_id: str, secret: bytes, method: str = "x-hmac") -> list[Any]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        parser = P.Parser()
        parser.version = 5
        writer.write(P.encode(P.Connect(client_id, 5, properties={"auth_method": method}), 5))
        seen: list[Any] = []
        while True:
            data = await asyncio.wait_for(reader.read(4096), 5)
            if not data:
                break
            for packet in parser.feed(data):
                seen.append(packet)
                if isinstance(packet, P.Auth):
                    digest = hmac.new(secret, packet.properties["auth_data"], hashlib.sha256).digest()
                    writer.write(P.encode(P.Auth(0x18, {"auth_method": method, "auth_data": digest}), 5))
            if seen and isinstance(seen[-1], P.ConnAck):
                break
        writer.close()
        return seen

    try:
        ok = await attempt("sensor-9", b"s3cret")
        assert isinstance(ok[0], P.Auth) and ok[0].reason == 0x18 and len(ok[0].properties["auth_data"]) == 16
        assert isinstance(ok[1], P.ConnAck) and ok[1].reason == 0
        assert ok[1].properties["auth_method"] == "x-hmac"
        bad = await attempt("sensor-9", b"wrong")
        assert isinstance(bad[-1], P.ConnAck) and bad[-1].reason == 0x87  # not authorized
        unknown = await attempt("sensor-9", b"s3cret", method="SCRAM-SHA-1")
        assert [p.reason for p in unknown] == [0x8C]  # bad authentication method, no exchange
    finally:
        await server.shutdown()


async def test_the_server_gives_topic_aliases_up_to_the_clients_maximum() -> None:
    """MQTT 5 topic aliases from server to client: a topic's first message names it and its
    alias, the next ones carry the alias alone; topics past the client's maximum stay whole."""
    from natsd_plugins.mqtt import packets as P

    port = free_port()
    server = Server(parse(f"host: 127.0.0.1\nport: -1\nmqtt {{ listen: 127.0.0.1:{port} }}"))
    await server.start()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        parser = P.Parser()
        parser.version = 5
        writer.write(P.encode(P.Connect("dashboard", 5, properties={"topic_alias_maximum": 2}), 5))
        writer.write(P.encode(P.Subscribe(1, [P.SubscriptionRequest("plant/#", 0)]), 5))
        seen: list[Any] = []

        async def read_until(count: int) -> None:
            while len(seen) < count:
                seen.extend(parser.feed(await asyncio.wait_for(reader.read(4096), 5)))
        await read_until(2)
        assert isinstance(seen[0], P.ConnAck) and isinstance(seen[1], P.SubAck)
        nc = await nats.connect(server.client_url)
        for subject in ("plant.a", "plant.a", "plant.b", "plant.c", "plant.c", "plant.b"):
            await nc.publish(subject, subject.encode())
        await nc.flush()
        await read_until(8)
        got = [(p.topic, p.properties.get("topic_alias"), p.payload) for p in seen[2:]]
        assert got == [("plant/a", 1, b"plant.a"), ("", 1, b"plant.a"), ("plant/b", 2, b"plant.b"),
                       ("plant/c", None, b"plant.c"), ("plant/c", None, b"plant.c"), ("", 2, b"plant.b")]
        writer.close()
        await nc.close()
    finally:
        await server.shutdown()
