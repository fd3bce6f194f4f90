"""The MQTT bridge against a real Mosquitto: devices on Mosquitto, NATS clients on natsd.

Mosquitto runs on a free port with persistence in a temporary directory, so
that it can be stopped and started again (the link cut and restored) without
forgetting its devices' sessions.
"""

from __future__ import annotations

import asyncio
import json
import queue
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import nats
import paho.mqtt.client as mqtt
import pytest
import transcripts as T  # on sys.path via conftest.py
from conftest import require_mosquitto

from natsd import Server
from natsd.config.conf import parse

pytestmark = pytest.mark.timeout(90)


class Mosquitto:
    def __init__(self, tmp: Path) -> None:
        self.binary = require_mosquitto()
        self.port = T.free_port()
        self.conf = tmp / "mosquitto.conf"
        import getpass

        # run as whoever runs the tests (as root, Mosquitto would switch to a user that cannot write here)
        self.conf.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
                             f"persistence_location {tmp}/\nautosave_interval 1\nuser {getpass.getuser()}\n")
        self.log = tmp / "mosquitto.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen([self.binary, "-c", str(self.conf)], stdout=out, stderr=out)
        deadline = time.monotonic() + 10
        import socket

        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                assert time.monotonic() < deadline, self.log.read_text()
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    broker = Mosquitto(tmp_path)
    yield broker
    broker.stop()


class Device:
    """A paho-mqtt client of Mosquitto, in its own thread (natsd runs in the test's loop)."""

    def __init__(self, port: int, client_id: str, clean: bool = True) -> None:
        self.messages: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311,
                                  clean_session=clean)
        self.client.on_message = lambda c, u, m: self.messages.put(m)
        ready: queue.Queue[Any] = queue.Queue()
        self.client.on_connect = lambda c, u, f, rc, p=None: ready.put(rc)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        ready.get(timeout=5)

    def subscribe(self, topic: str, qos: int = 1) -> None:
        done: queue.Queue[Any] = queue.Queue()
        self.client.on_subscribe = lambda c, u, mid, rcs, p=None: done.put(rcs)
        self.client.subscribe(topic, qos=qos)
        done.get(timeout=5)

    def received(self, count: int, timeout: float = 5.0) -> list[mqtt.MQTTMessage]:
        out: list[mqtt.MQTTMessage] = []
        deadline = time.monotonic() + timeout
        while len(out) < count and time.monotonic() < deadline:
            try:
                out.append(self.messages.get(timeout=0.05))
            except queue.Empty:
                pass
        return out

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


async def device(*args: Any, **kwargs: Any) -> Device:
    return await asyncio.to_thread(Device, *args, **kwargs)


def bridge_conf(port: int, *, protocol: str = "5", buffer: int = 10_000, extra: str = "") -> str:
    return (f"host: 127.0.0.1\nport: -1\nhttp: 127.0.0.1:-1\nmqtt_bridge {{ remotes: [ {{ name: plant, "
            f'url: "mqtt://127.0.0.1:{port}", protocol: "{protocol}", buffer: {buffer}, '
            f"reconnect: {{ min: 200ms, max: 1s }},\n"
            f'in: [ {{ topic: "devices/+/telemetry", subject: "plant.telemetry.*", qos: 1 }} {extra} ],\n'
            f'out: [ {{ subject: "plant.commands.>", topic: "devices/commands/#", qos: 1 }} ] }} ] }}\n')


@pytest.fixture
async def natsd(mosquitto: Mosquitto) -> AsyncIterator[Server]:
    server = Server(parse(bridge_conf(mosquitto.port)))
    await server.start()
    yield server
    await server.shutdown()


def bridge_stats(server: Server) -> dict[str, Any]:
    from natsd_plugins.mqtt.bridge import BRIDGES

    return server.stash[BRIDGES][0].stats()  # type: ignore[no-any-return]


async def until(check: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def test_messages_cross_both_ways_with_their_mapping(mosquitto: Mosquitto, natsd: Server) -> None:
    await until(lambda: bridge_stats(natsd)["connected"])
    nc = await nats.connect(natsd.client_url)
    telemetry = await nc.subscribe("plant.telemetry.*")
    await nc.flush()
    dev = await device(mosquitto.port, "d1")
    await asyncio.to_thread(dev.subscribe, "devices/commands/#")
    await asyncio.to_thread(lambda: dev.client.publish("devices/d1/telemetry", b"21.5", qos=1).wait_for_publish(5))
    msg = await telemetry.next_msg(timeout=5)
    assert (msg.subject, msg.data) == ("plant.telemetry.d1", b"21.5")
    assert msg.headers == {"Nmqtt-Pub": "1", "Nmqtt-Bridge": "plant"}
    # a request is answered once Mosquitto acknowledged the command (QoS 1)
    ack = await nc.request("plant.commands.d1.reboot", b"now", timeout=5)
    assert ack.data == b""
    (got,) = await asyncio.to_thread(dev.received, 1)
    assert (got.topic, got.payload, got.qos) == ("devices/commands/d1/reboot", b"now", 1)
    await asyncio.to_thread(dev.close)
    await nc.close()


async def test_the_link_cut_and_restored_loses_nothing_of_the_buffer(mosquitto: Mosquitto, natsd: Server) -> None:
    await until(lambda: bridge_stats(natsd)["connected"])
    dev = await device(mosquitto.port, "d2", clean=False)  # a persistent session on Mosquitto
    await asyncio.to_thread(dev.subscribe, "devices/commands/#")
    await asyncio.to_thread(dev.close)
    await asyncio.sleep(1.2)  # Mosquitto autosaves its sessions every second
    mosquitto.stop()
    await until(lambda: not bridge_stats(natsd)["connected"])
    nc = await nats.connect(natsd.client_url)
    for i in range(50):
        await nc.publish(f"plant.commands.d2.set{i}", b"%d" % i)
    await nc.flush()
    await until(lambda: bridge_stats(natsd)["buffered"] == 50)
    mosquitto.start()
    await until(lambda: bridge_stats(natsd)["buffered"] == 0, timeout=20)
    dev = await device(mosquitto.port, "d2", clean=False)
    got = await asyncio.to_thread(dev.received, 50)
    assert [m.payload for m in got] == [b"%d" % i for i in range(50)]  # all, in order
    stats = bridge_stats(natsd)
    assert stats["dropped"] == 0 and stats["sent"] == 50 and stats["reconnects"] >= 1
    await asyncio.to_thread(dev.close)
    await nc.close()


async def test_a_full_buffer_drops_the_oldest_and_counts_them(mosquitto: Mosquitto, tmp_path: Path) -> None:
    server = Server(parse(bridge_conf(mosquitto.port, buffer=10)))
    await server.start()
    try:
        await until(lambda: bridge_stats(server)["connected"])
        dev = await device(mosquitto.port, "d3", clean=False)
        await asyncio.to_thread(dev.subscribe, "devices/commands/#")
        await asyncio.to_thread(dev.close)
        await asyncio.sleep(1.2)
        mosquitto.stop()
        await until(lambda: not bridge_stats(server)["connected"])
        nc = await nats.connect(server.client_url)
        for i in range(30):
            await nc.publish("plant.commands.d3.x", b"%d" % i)
        await nc.flush()
        await until(lambda: bridge_stats(server)["dropped"] == 20)
        mosquitto.start()
        await until(lambda: bridge_stats(server)["buffered"] == 0, timeout=20)
        dev = await device(mosquitto.port, "d3", clean=False)
        got = await asyncio.to_thread(dev.received, 10)
        assert [m.payload for m in got] == [b"%d" % i for i in range(20, 30)]  # the newest ten
        await asyncio.to_thread(dev.close)
        # the counters are on /metrics
        import urllib.request

        port = server.ports["monitoring"][0].rsplit(":", 1)[1]
        text = await asyncio.to_thread(
            lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode())
        assert f'nats_mqtt_bridge_dropped{{remote="plant",server_id="{server.server_id}"}} 20.0' in text
        varz = json.loads(await asyncio.to_thread(
            lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/varz", timeout=5).read().decode()))
        assert varz["mqtt_bridge"][0]["dropped"] == 20
        await nc.close()
    finally:
        await server.shutdown()


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
async def test_no_loops_when_both_directions_cover_the_same_topics(mosquitto: Mosquitto, protocol: str) -> None:
    conf = bridge_conf(mosquitto.port, protocol=protocol, extra=', { topic: "loop/#", qos: 1 }').replace(
        'out: [ {', 'out: [ { subject: "loop.>", qos: 1 }, {')
    server = Server(parse(conf))
    await server.start()
    try:
        await until(lambda: bridge_stats(server)["connected"])
        nc = await nats.connect(server.client_url)
        seen = await nc.subscribe("loop.>")
        await nc.flush()
        dev = await device(mosquitto.port, "watcher")
        await asyncio.to_thread(dev.subscribe, "loop/#")
        await nc.publish("loop.a", b"once")
        await nc.flush()
        assert [m.payload for m in await asyncio.to_thread(dev.received, 2, 1.5)] == [b"once"]
        assert (await seen.next_msg(timeout=2)).data == b"once"
        with pytest.raises(nats.errors.TimeoutError):  # not back from Mosquitto
            await seen.next_msg(timeout=1.0)
        await asyncio.to_thread(lambda: dev.client.publish("loop/b", b"from mqtt", qos=1).wait_for_publish(5))
        assert (await seen.next_msg(timeout=5)).data == b"from mqtt"
        assert [m.payload for m in await asyncio.to_thread(dev.received, 2, 1.5)] == [b"from mqtt"]
        await asyncio.to_thread(dev.close)
        await nc.close()
    finally:
        await server.shutdown()
