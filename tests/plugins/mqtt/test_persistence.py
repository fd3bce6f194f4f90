"""MQTT state across a server restart, kept in JetStream: sessions, QoS 1/2 messages, retained messages.

Each test stops the server (as a SIGTERM would) and starts a new one on the
same store and ports; the devices (paho-mqtt) reconnect to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import nats
import paho.mqtt.client as mqtt
import pytest

from natsd import Server, hookimpl
from natsd.config.conf import parse
from natsd.server import free_port
from natsd.testing import spawn
from natsd_plugins.mqtt import MQTT_LISTENER

pytestmark = pytest.mark.timeout(60)


class Device:
    """A paho-mqtt 3.1.1 client in its own thread; ``manual_ack`` keeps its PUBACKs until :meth:`ack`."""

    def __init__(self, port: int, client_id: str, clean: bool = False, manual_ack: bool = False,
                 will: tuple[str, bytes, int] | None = None) -> None:
        self.messages: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311,
                                  clean_session=clean, manual_ack=manual_ack)
        self.client.on_message = lambda c, u, m: self.messages.put(m)
        ready: queue.Queue[Any] = queue.Queue()
        self.client.on_connect = lambda c, u, flags, rc, p=None: ready.put(flags)
        if will is not None:
            self.client.will_set(*will)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.flags = ready.get(timeout=10)

    def subscribe(self, topic: str, qos: int = 1) -> None:
        done: queue.Queue[Any] = queue.Queue()
        self.client.on_subscribe = lambda c, u, mid, rcs, p=None: done.put(rcs)
        self.client.subscribe(topic, qos=qos)
        done.get(timeout=10)

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> None:
        self.client.publish(topic, payload, qos=qos, retain=retain).wait_for_publish(10)

    def received(self, count: int, timeout: float = 5.0) -> list[mqtt.MQTTMessage]:
        out: list[mqtt.MQTTMessage] = []
        while len(out) < count:
            try:
                out.append(self.messages.get(timeout=timeout))
            except queue.Empty:
                break
        return out

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def drop(self) -> None:
        """The socket closes without DISCONNECT: the will goes out."""
        sock = self.client.socket()
        if sock is not None:
            sock.close()
        self.client.loop_stop()


async def device(*args: Any, **kwargs: Any) -> Device:
    return await asyncio.to_thread(Device, *args, **kwargs)


class Broker:
    """A natsd with JetStream and MQTT that can be stopped and started again on its store and ports."""

    def __init__(self, store: Path, extra: str = "") -> None:
        self.store, self.port, self.mqtt_port = store, free_port(), free_port()
        self.extra = extra
        self.server: Server | None = None

    async def start(self) -> Server:
        self.server = Server(parse(f'host: 127.0.0.1\nport: {self.port}\njetstream {{ store_dir: "{self.store}" }}\n'
                                   f"mqtt {{ listen: 127.0.0.1:{self.mqtt_port}, ack_wait: 2s{self.extra} }}\n"))
        await self.server.start()
        return self.server

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.shutdown()
            self.server = None


async def test_a_persistent_session_and_its_qos1_messages_survive_a_restart(tmp_path: Path) -> None:
    broker = Broker(tmp_path)
    await broker.start()
    try:
        dev = await device(broker.mqtt_port, "truck-1")
        await asyncio.to_thread(dev.subscribe, "fleet/truck-1/cmd/#", 2)
        await asyncio.to_thread(dev.close)
        sender = await device(broker.mqtt_port, "dispatch", clean=True)
        for i in range(5):  # each acknowledged only once JetStream has it
            await asyncio.to_thread(sender.publish, f"fleet/truck-1/cmd/{i}", b"order %d" % i, 1)
        await asyncio.to_thread(sender.publish, "fleet/truck-1/cmd/final", b"exactly once", 2)
        await asyncio.to_thread(sender.close)
        await broker.stop()

        await broker.start()
        dev = await device(broker.mqtt_port, "truck-1")
        assert dev.flags.session_present
        got = await asyncio.to_thread(dev.received, 6)
        assert [(m.topic, m.payload, m.qos) for m in got] == [
            *((f"fleet/truck-1/cmd/{i}", b"order %d" % i, 1) for i in range(5)),
            ("fleet/truck-1/cmd/final", b"exactly once", 2)]
        assert await asyncio.to_thread(dev.received, 1, 0.5) == []
        # acknowledged by the only subscription, the messages leave $MQTT_msgs (interest retention)
        assert broker.server is not None
        stores = broker.server.stash[MQTT_LISTENER].mqtt.stores
        local = broker.server.service("jetstream")
        assert local is not None and [store.jetstream for store in stores.values()] == [local]  # in-process
        nc = await nats.connect(broker.server.client_url)
        for _ in range(50):
            info = json.loads((await nc.request("$JS.API.STREAM.INFO.$MQTT_msgs", b"")).data)
            if info["state"]["messages"] == 0:
                break
            await asyncio.sleep(0.1)
        assert info["state"]["messages"] == 0
        await nc.close()
        await asyncio.to_thread(dev.close)
    finally:
        await broker.stop()


async def test_a_qos1_will_is_kept_for_qos1_subscriptions_as_a_qos1_publish_is(tmp_path: Path) -> None:
    """The will goes into $MQTT_msgs: a QoS 1 subscription's consumer delivers it, to a device that is
    connected and to a persistent session's when it comes back (as nats-server)."""
    broker = Broker(tmp_path)
    await broker.start()
    try:
        away = await device(broker.mqtt_port, "away")
        await asyncio.to_thread(away.subscribe, "status/#", 1)
        await asyncio.to_thread(away.close)
        here = await device(broker.mqtt_port, "here", clean=True)
        await asyncio.to_thread(here.subscribe, "status/#", 1)
        dying = await device(broker.mqtt_port, "sensor-9", clean=True, will=("status/sensor-9", b"offline", 1))
        await asyncio.to_thread(dying.drop)
        got = await asyncio.to_thread(here.received, 1)
        assert [(m.topic, m.payload, m.qos) for m in got] == [("status/sensor-9", b"offline", 1)]
        away = await device(broker.mqtt_port, "away")
        got = await asyncio.to_thread(away.received, 1)
        assert [(m.topic, m.payload, m.qos) for m in got] == [("status/sensor-9", b"offline", 1)]
        for dev in (here, away):
            await asyncio.to_thread(dev.close)
    finally:
        await broker.stop()


async def test_a_device_that_subscribes_again_on_reconnecting_loses_nothing(tmp_path: Path) -> None:
    """Devices often repeat their SUBSCRIBE after every CONNECT: the subscription's consumer, and what
    it holds for the device, stays."""
    broker = Broker(tmp_path, ", max_ack_pending: 2")  # most of them wait in the consumer
    await broker.start()
    try:
        dev = await device(broker.mqtt_port, "resub")
        await asyncio.to_thread(dev.subscribe, "alerts/#", 1)
        await asyncio.to_thread(dev.close)
        sender = await device(broker.mqtt_port, "alarm", clean=True)
        for i in range(20):
            await asyncio.to_thread(sender.publish, "alerts/fire", b"%d" % i, 1)
        await asyncio.to_thread(sender.close)
        dev = await device(broker.mqtt_port, "resub")
        await asyncio.to_thread(dev.subscribe, "alerts/#", 1)  # again, as on_connect handlers do
        got = await asyncio.to_thread(dev.received, 20)
        assert [m.payload for m in got] == [b"%d" % i for i in range(20)]
        await asyncio.to_thread(dev.close)
    finally:
        await broker.stop()


async def test_messages_delivered_but_not_acknowledged_come_again_after_a_restart(tmp_path: Path) -> None:
    broker = Broker(tmp_path)
    await broker.start()
    try:
        dev = await device(broker.mqtt_port, "sensor-9", manual_ack=True)
        await asyncio.to_thread(dev.subscribe, "cfg/#", 1)
        sender = await device(broker.mqtt_port, "ops", clean=True)
        for i in range(3):
            await asyncio.to_thread(sender.publish, "cfg/rate", b"%d" % i, 1)
        await asyncio.to_thread(sender.close)
        first = await asyncio.to_thread(dev.received, 3)
        assert [m.payload for m in first] == [b"0", b"1", b"2"]
        dev.client.ack(first[0].mid, first[0].qos)  # only the first is acknowledged
        await asyncio.sleep(0.3)
        await asyncio.to_thread(dev.client.loop_stop)
        await broker.stop()

        await broker.start()
        dev = await device(broker.mqtt_port, "sensor-9")
        again = await asyncio.to_thread(dev.received, 2, 10.0)
        assert [m.payload for m in again] == [b"1", b"2"]
        assert await asyncio.to_thread(dev.received, 1, 0.5) == []
        await asyncio.to_thread(dev.close)
    finally:
        await broker.stop()


async def test_retained_messages_survive_a_restart_and_are_kept_in_jetstream(tmp_path: Path) -> None:
    broker = Broker(tmp_path)
    server = await broker.start()
    try:
        pub = await device(broker.mqtt_port, "gateway", clean=True)
        await asyncio.to_thread(pub.publish, "site/a/config", b'{"rate": 5}', 1, True)
        await asyncio.to_thread(pub.publish, "site/b/config", b"gone soon", 1, True)
        await asyncio.to_thread(pub.publish, "site/b/config", b"", 1, True)  # removes it
        await asyncio.to_thread(pub.close)
        nc = await nats.connect(server.client_url)
        names = json.loads((await nc.request("$JS.API.STREAM.NAMES", b"")).data)["streams"]
        assert {"$MQTT_sess", "$MQTT_rmsgs", "$MQTT_msgs"} <= set(names)
        await nc.close()
        await broker.stop()

        await broker.start()
        late = await device(broker.mqtt_port, "newcomer", clean=True)
        await asyncio.to_thread(late.subscribe, "site/+/config", 1)
        got = await asyncio.to_thread(late.received, 2, 2.0)
        assert [(m.topic, m.payload, m.retain) for m in got] == [("site/a/config", b'{"rate": 5}', True)]
        await asyncio.to_thread(late.close)
    finally:
        await broker.stop()


async def test_without_jetstream_the_state_is_kept_in_memory_and_the_log_says_so(
        caplog: pytest.LogCaptureFixture) -> None:
    port = free_port()
    server = Server(parse(f"host: 127.0.0.1\nport: -1\nmqtt {{ listen: 127.0.0.1:{port} }}"))
    await server.start()
    try:
        with caplog.at_level(logging.WARNING, logger="natsd.mqtt"):
            dev = await device(port, "memory-only")
            await asyncio.to_thread(dev.close)
        assert "keeps sessions and retained messages in memory only" in caplog.text
    finally:
        await server.shutdown()


async def test_only_a_persistent_sessions_qos1_messages_are_written_to_jetstream(tmp_path: Path) -> None:
    """A clean session ends with its connection (and so at a restart): its QoS 1 messages go to it in
    memory, with no consumer and nothing stored; a persistent session's go through its consumer."""
    broker = Broker(tmp_path)
    server = await broker.start()
    try:
        clean = await device(broker.mqtt_port, "clean-dev", clean=True)
        kept = await device(broker.mqtt_port, "kept-dev", clean=False)
        sender = await device(broker.mqtt_port, "sender", clean=True)
        await asyncio.to_thread(clean.subscribe, "c/#", 1)
        await asyncio.to_thread(kept.subscribe, "k/#", 1)
        nc = await nats.connect(server.client_url)
        listed = json.loads((await nc.request("$JS.API.CONSUMER.LIST.$MQTT_msgs", b"")).data)["consumers"]
        assert [c["config"]["filter_subjects"] for c in listed] == [["$MQTT.msgs.k.>", "$MQTT.msgs.k"]]
        for topic in ("c/1", "c/2", "k/1", "x/1"):  # x/1: nobody subscribes
            await asyncio.to_thread(sender.publish, topic, topic.encode(), 1)
        assert [(m.topic, m.qos) for m in await asyncio.to_thread(clean.received, 2)] == [("c/1", 1), ("c/2", 1)]
        assert [(m.topic, m.qos) for m in await asyncio.to_thread(kept.received, 1)] == [("k/1", 1)]
        info = json.loads((await nc.request("$JS.API.STREAM.INFO.$MQTT_msgs", b"")).data)
        assert info["state"]["last_seq"] == 1  # k/1 alone was stored
        await nc.close()
        for d in (clean, kept, sender):
            await asyncio.to_thread(d.close)
    finally:
        await broker.stop()


async def test_a_clean_session_taken_over_by_a_lasting_one_is_kept_from_then_on(tmp_path: Path) -> None:
    """MQTT 5: a connection with clean start 0 and a session expiry takes over a live clean session:
    its QoS 1 subscription gets a consumer, and what is published while it is away survives a restart."""
    from natsd_plugins.mqtt import packets as P

    broker = Broker(tmp_path)
    await broker.start()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", broker.mqtt_port)
        first = Raw(reader, writer)
        first.send(P.Connect("phone", 5, clean_start=True))
        assert isinstance(await first.next(), P.ConnAck)
        first.send(P.Subscribe(1, [P.SubscriptionRequest("cmd/phone", 1)]))
        assert isinstance(await first.next(), P.SubAck)
        second, ack = await Raw.connect(broker.mqtt_port, "phone")  # clean start 0, an hour's expiry
        assert ack.session_present
        assert await first.next() == P.Disconnect(P.SESSION_TAKEN_OVER)
        await asyncio.sleep(0.2)  # the consumer is made
        second.send(P.Disconnect())
        await second.writer.drain()
        second.close()
        pub, _ = await Raw.connect(broker.mqtt_port, "office")
        pub.send(P.Publish("cmd/phone", b"ring", 1, packet_id=1))
        assert await pub.next() == P.Ack(P.PUBACK, 1)
        pub.close()
        await broker.stop()

        await broker.start()
        back, ack = await Raw.connect(broker.mqtt_port, "phone")
        assert ack.session_present
        delivery = await back.next()
        assert isinstance(delivery, P.Publish) and (delivery.topic, delivery.payload) == ("cmd/phone", b"ring")
        back.close()
    finally:
        await broker.stop()


async def test_a_session_taken_over_is_not_ended_with_the_older_connection(tmp_path: Path) -> None:
    """MQTT 5, clean start 0 and no session expiry: the session lasts as long as the new connection,
    with its subscriptions; the older connection closing does not end it."""
    from natsd_plugins.mqtt import packets as P

    broker = Broker(tmp_path)
    await broker.start()
    try:
        connections = []
        for clean in (True, False):
            reader, writer = await asyncio.open_connection("127.0.0.1", broker.mqtt_port)
            raw = Raw(reader, writer)
            raw.send(P.Connect("kiosk", 5, clean_start=clean))
            ack = await raw.next()
            assert isinstance(ack, P.ConnAck) and ack.session_present is not clean
            if clean:
                raw.send(P.Subscribe(1, [P.SubscriptionRequest("screen/#", 1)]))
                assert isinstance(await raw.next(), P.SubAck)
            connections.append(raw)
        assert await connections[0].next() == P.Disconnect(P.SESSION_TAKEN_OVER)
        await asyncio.sleep(0.1)
        pub, _ = await Raw.connect(broker.mqtt_port, "cms")
        pub.send(P.Publish("screen/1", b"slide 2", 1, packet_id=1))
        assert isinstance(await pub.next(), P.Ack)
        delivery = await connections[1].next()
        assert isinstance(delivery, P.Publish) and delivery.payload == b"slide 2"
        for raw in (pub, *connections):
            raw.close()
    finally:
        await broker.stop()


async def test_a_retained_qos1_message_is_kept_before_its_puback(tmp_path: Path) -> None:
    """The PUBACK of a retained QoS 1 message waits for JetStream to keep it as the retained
    message: stopped right after the PUBACK, the server still has it when it is back."""
    from natsd_plugins.mqtt import packets as P

    broker = Broker(tmp_path)
    server = await broker.start()
    try:
        pub, _ = await Raw.connect(broker.mqtt_port, "thermostat")
        pub.send(P.Publish("home/setpoint", b"21.5", 1, retain=True, packet_id=4))
        assert await pub.next() == P.Ack(P.PUBACK, 4, P.NO_MATCHING_SUBSCRIBERS)  # kept all the same
        retained = server.service("jetstream").local_stream("$G", "$MQTT_rmsgs")
        assert retained.committed_seq == 1  # durable when the PUBACK left (this loop pass sees it)
        pub.close()
        await broker.stop()  # at once

        await broker.start()
        sub, _ = await Raw.connect(broker.mqtt_port, "panel")
        sub.send(P.Subscribe(1, [P.SubscriptionRequest("home/#", 1)]))
        assert isinstance(await sub.next(), P.SubAck)
        retained = await sub.next()
        assert isinstance(retained, P.Publish) and (retained.payload, retained.retain) == (b"21.5", True)
        sub.close()
    finally:
        await broker.stop()


class Raw:
    """A raw MQTT 5 client (natsd's codec) that does exactly what a test tells it."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        from natsd_plugins.mqtt.packets import Parser

        self.reader, self.writer = reader, writer
        self.parser = Parser()
        self.parser.version = 5
        self.backlog: list[Any] = []

    @classmethod
    async def connect(cls, port: int, client_id: str) -> tuple[Raw, Any]:
        from natsd_plugins.mqtt import packets as P

        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        raw = cls(reader, writer)
        raw.send(P.Connect(client_id, 5, clean_start=False, properties={"session_expiry": 3600}))
        return raw, await raw.next()

    def send(self, packet: Any) -> None:
        from natsd_plugins.mqtt import packets as P

        self.writer.write(P.encode(packet, 5))

    async def next(self, timeout: float = 5.0) -> Any:
        while not self.backlog:
            data = await asyncio.wait_for(self.reader.read(65536), timeout)
            if not data:
                raise ConnectionError("closed")
            self.backlog += self.parser.feed(data)
        return self.backlog.pop(0)

    async def nothing(self, timeout: float = 0.7) -> bool:
        try:
            await self.next(timeout)
        except TimeoutError:
            return True
        return False

    def close(self) -> None:
        self.writer.close()


async def test_qos2_exchanges_in_flight_survive_a_restart_exactly_once(tmp_path: Path) -> None:
    """Both ways: a publish received (PUBREC sent) and a delivery released (PUBREL sent) when the
    server stops are finished after it is back, and nothing is delivered twice."""
    from natsd_plugins.mqtt import packets as P

    broker = Broker(tmp_path)
    await broker.start()
    try:
        sub, ack = await Raw.connect(broker.mqtt_port, "q2-sub")
        sub.send(P.Subscribe(1, [P.SubscriptionRequest("pay/#", 2)]))
        assert isinstance(await sub.next(), P.SubAck)
        pub, ack = await Raw.connect(broker.mqtt_port, "q2-pub")
        pub.send(P.Publish("pay/eur", b"100", 2, packet_id=7))
        assert await pub.next() == P.Ack(P.PUBREC, 7)  # stored; the PUBREL has not come yet
        delivery = await sub.next()
        assert isinstance(delivery, P.Publish) and delivery.payload == b"100" and delivery.qos == 2
        sub.send(P.Ack(P.PUBREC, delivery.packet_id))
        assert await sub.next() == P.Ack(P.PUBREL, delivery.packet_id)
        await asyncio.sleep(0.3)  # the session records reach JetStream
        pub.close()
        sub.close()
        await broker.stop()

        await broker.start()
        pub, ack = await Raw.connect(broker.mqtt_port, "q2-pub")
        assert ack.session_present
        pub.send(P.Publish("pay/eur", b"100", 2, dup=True, packet_id=7))  # sent again: not delivered again
        assert await pub.next() == P.Ack(P.PUBREC, 7)
        pub.send(P.Ack(P.PUBREL, 7))
        assert await pub.next() == P.Ack(P.PUBCOMP, 7)  # success: the server knew packet 7
        sub, ack = await Raw.connect(broker.mqtt_port, "q2-sub")
        assert ack.session_present
        assert await sub.next() == P.Ack(P.PUBREL, delivery.packet_id)  # owed, and only that
        sub.send(P.Ack(P.PUBCOMP, delivery.packet_id))
        assert await sub.nothing()  # no second delivery of the message
        pub.close()
        sub.close()
    finally:
        await broker.stop()


async def test_acknowledgements_keep_their_order_and_reason_behind_a_store(tmp_path: Path) -> None:
    """A PUBCOMP for an unknown packet that comes while a QoS 1 message is still being stored
    waits for that PUBACK, and keeps its own reason code (MQTT 5)."""
    from natsd_plugins.mqtt import packets as P

    broker = Broker(tmp_path)
    await broker.start()
    try:
        sub, _ = await Raw.connect(broker.mqtt_port, "order-sub")  # a persistent session: o/1 is stored
        sub.send(P.Subscribe(1, [P.SubscriptionRequest("o/#", 1)]))
        assert isinstance(await sub.next(), P.SubAck)
        pub, ack = await Raw.connect(broker.mqtt_port, "order-pub")
        # one write: the PUBREL is read while JetStream is still storing the QoS 1 message
        pub.writer.write(P.encode(P.Publish("o/1", b"one", 1, packet_id=3), 5)
                         + P.encode(P.Ack(P.PUBREL, 99), 5))
        assert await pub.next() == P.Ack(P.PUBACK, 3)
        assert await pub.next() == P.Ack(P.PUBCOMP, 99, P.PACKET_IDENTIFIER_NOT_FOUND)
        pub.close()
        sub.close()
    finally:
        await broker.stop()


async def test_a_session_that_expired_while_the_server_was_down_is_gone(tmp_path: Path) -> None:
    from natsd_plugins.mqtt import packets as P

    broker = Broker(tmp_path)
    await broker.start()
    try:
        for client_id, expiry in (("brief", 1), ("lasting", 3600)):
            reader, writer = await asyncio.open_connection("127.0.0.1", broker.mqtt_port)
            writer.write(P.encode(P.Connect(client_id, 5, clean_start=False,
                                            properties={"session_expiry": expiry}), 5))
            await reader.read(4096)
            writer.write(P.encode(P.Disconnect(), 5))
            await writer.drain()
            writer.close()
        await asyncio.sleep(0.3)
        await broker.stop()
        await asyncio.sleep(1.2)  # longer than "brief"'s expiry

        await broker.start()
        present = {}
        for client_id in ("brief", "lasting"):
            raw, ack = await Raw.connect(broker.mqtt_port, client_id)
            present[client_id] = ack.session_present
            raw.close()
        assert present == {"brief": False, "lasting": True}
    finally:
        await broker.stop()


async def test_a_leaf_node_keeps_its_mqtt_state_in_the_hubs_jetstream_domain(tmp_path: Path) -> None:
    """``js_domain``: a leaf node with no JetStream of its own keeps its devices' sessions and QoS 1
    messages in its hub's domain; the API's replies ($MQTT.JSA...) come back over the leaf link."""
    hub_leaf, mqtt_port = free_port(), free_port()
    hub = Server(parse(f'host: 127.0.0.1\nport: -1\njetstream {{ store_dir: "{tmp_path}", domain: hub }}\n'
                       f'leafnodes {{ listen: "127.0.0.1:{hub_leaf}" }}'))
    await hub.start()
    leaf = Server(parse(f'host: 127.0.0.1\nport: -1\nmqtt {{ listen: "127.0.0.1:{mqtt_port}", js_domain: hub }}\n'
                        f'leafnodes {{ remotes: [ {{ url: "nats://127.0.0.1:{hub_leaf}" }} ] }}'))
    await leaf.start()
    hub_nc = await nats.connect(hub.client_url)
    leaf_nc = await nats.connect(leaf.client_url)
    try:
        for _ in range(100):  # the leaf link is up once the hub's domain answers on the leaf
            try:
                await leaf_nc.request("$JS.hub.API.INFO", b"", timeout=0.5)
                break
            except (nats.errors.TimeoutError, nats.errors.NoRespondersError):
                await asyncio.sleep(0.1)
        hq = await asyncio.to_thread(Device, mqtt_port, "hq")
        await asyncio.to_thread(hq.subscribe, "fleet/+/alarm", 1)
        truck = await asyncio.to_thread(Device, mqtt_port, "truck-1", True)
        await asyncio.to_thread(truck.publish, "fleet/truck-1/alarm", b"overheat", 1)
        [message] = await asyncio.to_thread(hq.received, 1)
        assert (message.topic, message.payload, message.qos) == ("fleet/truck-1/alarm", b"overheat", 1)
        streams = json.loads((await hub_nc.request("$JS.API.STREAM.NAMES", b"", timeout=5)).data)["streams"]
        assert {"$MQTT_sess", "$MQTT_msgs", "$MQTT_rmsgs"} <= set(streams)
        sessions = json.loads((await hub_nc.request("$JS.API.STREAM.INFO.$MQTT_sess", b"", timeout=5)).data)
        assert sessions["state"]["messages"] == 1  # hq's persistent session
        assert [store.jetstream for store in leaf.stash[MQTT_LISTENER].mqtt.stores.values()] == [None]  # the API
        for device in (hq, truck):
            await asyncio.to_thread(device.client.disconnect)
            await asyncio.to_thread(device.client.loop_stop)
    finally:
        await hub_nc.close()
        await leaf_nc.close()
        await leaf.shutdown()
        await hub.shutdown()


class HeldStartup:
    """A plugin whose start-up waits for ``release``: the server is half started meanwhile."""

    def __init__(self) -> None:
        self.release = asyncio.Event()

    @hookimpl
    def natsd_startup(self, server: Any) -> Any:
        return self.release.wait()


async def _connack(port: int, client_id: str, timeout: float) -> bytes:
    """The CONNACK an MQTT 3.1.1 device gets (b"" if none within ``timeout`` or the connection closed);
    a refused connection is tried again, as devices do."""
    from natsd_plugins.mqtt import packets as P

    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            break
        except ConnectionRefusedError:
            if asyncio.get_running_loop().time() > deadline:
                return b""
            await asyncio.sleep(0.02)
    writer.write(P.encode(P.Connect(client_id, keep_alive=30), P.MQTT_311))
    try:
        return await asyncio.wait_for(reader.read(4), timeout)
    except TimeoutError:
        return b""
    finally:
        writer.close()


async def test_devices_are_served_once_jetstream_has_started(tmp_path: Path) -> None:
    """A device that comes while the server starts waits for its CONNACK until every plugin has
    started: its session goes to JetStream, not to memory for good (the port was served too early)."""
    mqtt_port, held = free_port(), HeldStartup()
    server = Server(parse(f'host: 127.0.0.1\nport: -1\njetstream {{ store_dir: "{tmp_path}" }}\n'
                          f'mqtt {{ listen: "127.0.0.1:{mqtt_port}" }}'), plugins=[held])
    starting = asyncio.create_task(server.start())
    try:
        for _ in range(200):
            if server.ports.get("mqtt"):
                break
            await asyncio.sleep(0.01)
        early = asyncio.create_task(_connack(mqtt_port, "early", 10))
        await asyncio.sleep(0.5)
        assert not early.done()  # no CONNACK while the server is half started
        held.release.set()
        await starting
        assert await early == b"\x20\x02\x00\x00"  # accepted
        nc = await nats.connect(server.client_url)
        names = json.loads((await nc.request("$JS.API.STREAM.NAMES", b"", timeout=5)).data)["streams"]
        assert "$MQTT_sess" in names
        await nc.close()
    finally:
        held.release.set()
        await starting
        await server.shutdown()


async def test_a_jetstream_domain_that_does_not_answer_refuses_devices_until_it_does(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """``js_domain`` names where QoS 1 messages must be kept: while it does not answer, devices get
    "server unavailable" and nothing is acknowledged from memory; once it answers, they are served."""
    mqtt_port = free_port()
    server = Server(parse(f'host: 127.0.0.1\nport: -1\nmqtt {{ listen: "127.0.0.1:{mqtt_port}", js_domain: hub, '
                          'js_api_timeout: "1s" }'))
    await server.start()
    try:
        with caplog.at_level(logging.ERROR, logger="natsd.mqtt"):
            assert await _connack(mqtt_port, "truck-1", 10) == b"\x20\x02\x00\x03"  # server unavailable
        assert "JetStream domain 'hub' does not answer" in caplog.text
        # the domain appears: a service answering its API as JetStream would is enough to be asked again
        nc = await nats.connect(server.client_url)
        asked: list[str] = []

        async def jetstream(msg: Any) -> None:
            asked.append(msg.subject)
            await msg.respond(json.dumps({"error": {"code": 503, "err_code": 10039,
                                                    "description": "jetstream not enabled"}}).encode())

        await nc.subscribe("$JS.hub.API.>", cb=jetstream)
        await nc.flush()
        assert await _connack(mqtt_port, "truck-1", 10) == b"\x20\x02\x00\x03"
        assert asked and asked[0] == "$JS.hub.API.STREAM.CREATE.$MQTT_sess"  # tried again, not remembered
        await nc.close()
    finally:
        await server.shutdown()


def _natsd(conf: Path, mqtt_port: int) -> subprocess.Popen[bytes]:
    return spawn([sys.executable, "-m", "natsd", "-c", str(conf)], mqtt_port, open(conf.parent / "natsd.log", "ab"))


def _device(port: int, client_id: str, clean: bool) -> tuple[socket.socket, Any, list[Any]]:
    """A raw MQTT 3.1.1 connection (natsd's codec), connected: the socket, its packet parser and the
    packets that came with the CONNACK."""
    from natsd_plugins.mqtt import packets as P

    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(P.encode(P.Connect(client_id, clean_start=clean, keep_alive=120), P.MQTT_311))
    parser = P.Parser()
    parser.version = P.MQTT_311
    packets: list[Any] = []
    while not packets:
        packets = parser.feed(sock.recv(65536))
    assert isinstance(packets[0], P.ConnAck) and packets[0].reason == 0, packets
    return sock, parser, packets[1:]


def test_sigkill_during_a_qos1_storm_loses_nothing_a_persistent_session_was_promised(tmp_path: Path) -> None:
    """Devices publish at QoS 1 to a topic a persistent session subscribes to (its device away) and
    natsd is killed (SIGKILL) mid-storm: every message a device got a PUBACK for reaches the session
    after the restart."""
    from natsd_plugins.mqtt import packets as P

    mqtt_port = free_port()
    conf = tmp_path / "natsd.conf"
    conf.write_text(f'host: 127.0.0.1\nport: {free_port()}\njetstream {{ store_dir: "{tmp_path / "js"}" }}\n'
                    f'mqtt {{ listen: "127.0.0.1:{mqtt_port}" }}\n')
    proc = _natsd(conf, mqtt_port)
    acked: set[int] = set()
    total = 20000
    payloads = {pid: os.urandom(12).hex().encode() for pid in range(1, total + 1)}
    try:
        sock, parser, _ = _device(mqtt_port, "archive", clean=False)
        sock.sendall(P.encode(P.Subscribe(1, [P.SubscriptionRequest("storm/#", 1)]), P.MQTT_311))
        got: list[Any] = []
        while not got:
            got = parser.feed(sock.recv(65536))
        assert isinstance(got[0], P.SubAck) and got[0].reasons == [1]
        sock.sendall(P.encode(P.Disconnect(), P.MQTT_311))  # away: the session keeps collecting
        sock.close()

        pub, parser, _ = _device(mqtt_port, "sensor", clean=True)
        wire = [P.encode_publish(b"storm/%d" % (pid % 50), body, 1, packet_id=pid) for pid, body in payloads.items()]
        enough = threading.Event()

        def send() -> None:  # 200 every 5 ms: the storm outlasts the first syncs however fast natsd is
            with contextlib.suppress(OSError):
                for start in range(0, total, 200):
                    pub.sendall(b"".join(wire[start:start + 200]))
                    time.sleep(0.005)

        def read_acks() -> None:
            with contextlib.suppress(OSError):
                while chunk := pub.recv(1 << 20):
                    for packet in parser.feed(chunk):
                        assert isinstance(packet, P.Ack) and packet.kind == P.PUBACK, packet
                        acked.add(packet.packet_id)
                    if len(acked) >= 2000:
                        enough.set()

        threads = [threading.Thread(target=send), threading.Thread(target=read_acks)]
        for thread in threads:
            thread.start()
        assert enough.wait(30), f"only {len(acked)} PUBACKs"
        os.kill(proc.pid, signal.SIGKILL)  # PUBACKs and syncs in flight
        proc.wait(10)
        with contextlib.suppress(OSError):
            pub.shutdown(socket.SHUT_RDWR)
        for thread in threads:
            thread.join(10)
        pub.close()
        assert 2000 <= len(acked) < total  # the kill came while publishes were outstanding
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)

    proc = _natsd(conf, mqtt_port)
    try:
        sock, parser, packets = _device(mqtt_port, "archive", clean=False)
        sock.settimeout(3.0)
        received: set[bytes] = set()
        wanted = {payloads[pid] for pid in acked}
        with contextlib.suppress(TimeoutError):  # until nothing more comes
            while not wanted <= received:
                puback = []
                for packet in packets or parser.feed(sock.recv(1 << 20)):
                    assert isinstance(packet, P.Publish) and packet.qos == 1, packet
                    received.add(packet.payload)
                    puback.append(P.encode(P.Ack(P.PUBACK, packet.packet_id), P.MQTT_311))
                sock.sendall(b"".join(puback))
                packets = []
        sock.close()
        assert not wanted - received, f"{len(wanted - received)} of {len(wanted)} acknowledged messages lost"
    finally:
        proc.terminate()
        proc.wait(10)
