"""MQTT devices (paho-mqtt, 3.1.1 and 5) on natsd and on nats-server 2.15.1, side by side.

Each case runs the same steps on both servers and compares what the MQTT and
NATS clients saw: the subjects MQTT topics map to (and back), the header
nats-server adds, retained messages, a persistent session taking QoS 1
messages while its device is away, refusals. nats-server speaks MQTT 3.1.1
only: MQTT 5 cases run on natsd alone and check the specification's answers.
"""

from __future__ import annotations

import asyncio
import queue
import sys
import time
from collections.abc import Iterator
from typing import Any

import nats
import paho.mqtt.client as mqtt
import pytest
import transcripts as T  # on sys.path via conftest.py
from conftest import require_nats_server
from test_jetstream_streams_nats_server import Proc

pytestmark = pytest.mark.timeout(90)

KINDS = ["nats-server", "natsd"]
HTTP: dict[str, int] = {}
"""The monitoring port of each kind's server."""


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, tuple[int, int]]]:
    """``kind -> (NATS port, MQTT port)`` of a server of each kind with an ``mqtt {}`` block."""
    binary = require_nats_server()
    started: dict[str, Proc] = {}
    ports: dict[str, tuple[int, int]] = {}
    try:
        for kind in KINDS:
            tmp = tmp_path_factory.mktemp(kind)
            nats_port, mqtt_port, HTTP[kind] = T.free_port(), T.free_port(), T.free_port()
            conf = tmp / "server.conf"
            conf.write_text(f'server_name: {kind.replace("-", "_")}\nport: {nats_port}\nhost: 127.0.0.1\n'
                            f'jetstream {{ store_dir: "{tmp / "js"}" }}\nhttp: "127.0.0.1:{HTTP[kind]}"\n'
                            f'mqtt {{ listen: "127.0.0.1:{mqtt_port}", ack_wait: "45s" }}\n')
            argv = [binary] if kind == "nats-server" else [sys.executable, "-m", "natsd"]
            started[kind] = Proc(argv + ["-c", str(conf)], nats_port, tmp / "server.log")
            ports[kind] = (nats_port, mqtt_port)
        yield ports
    finally:
        for proc in started.values():
            proc.stop()


class Device:
    """A paho-mqtt client whose messages land in a queue."""

    def __init__(self, port: int, client_id: str, *, version: int = mqtt.MQTTv311, clean: bool = True,
                 will: tuple[Any, ...] | None = None) -> None:
        self.messages: queue.Queue[tuple[str, bytes, int, bool]] = queue.Queue()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=version,
                                  clean_session=clean if version != mqtt.MQTTv5 else None)
        self.client.on_message = lambda c, u, m: self.messages.put((m.topic, m.payload, m.qos, m.retain))
        self.connected: queue.Queue[Any] = queue.Queue()
        self.client.on_connect = lambda c, u, flags, rc, props=None: self.connected.put((flags, rc))
        if will:
            self.client.will_set(*will)  # topic, payload[, qos[, retain]]
        self.client.connect("127.0.0.1", port, keepalive=30)
        self.client.loop_start()
        self.flags, self.rc = self.connected.get(timeout=15)

    def subscribe(self, topic: str, qos: int = 0) -> None:
        done: queue.Queue[Any] = queue.Queue()
        self.client.on_subscribe = lambda c, u, mid, rcs, props=None: done.put(rcs)
        self.client.subscribe(topic, qos=qos)
        done.get(timeout=5)

    def publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> None:
        self.client.publish(topic, payload, qos=qos, retain=retain).wait_for_publish(5)

    def received(self, count: int, timeout: float = 3.0) -> list[tuple[str, bytes, int, bool]]:
        out = []
        deadline = time.monotonic() + timeout
        while len(out) < count and time.monotonic() < deadline:
            try:
                out.append(self.messages.get(timeout=0.05))
            except queue.Empty:
                pass
        return out

    def close(self, *, clean: bool = True) -> None:
        if clean:
            self.client.disconnect()
        else:
            sock = self.client.socket()
            if sock is not None:
                sock.close()
        self.client.loop_stop()


TOPICS = ["foo", "foo/bar", "/foo", "foo/", "foo//bar", "a.b/c", "sport/tennis/player1", "x/y/z/w"]


async def mapping_case(nats_port: int, mqtt_port: int, tag: str) -> dict[str, Any]:
    nc = await nats.connect(f"nats://127.0.0.1:{nats_port}")
    sub = await nc.subscribe(f"{tag}.>")
    also = await nc.subscribe(f"{tag}")
    await nc.flush()
    device = Device(mqtt_port, f"map-{tag}")
    device.subscribe(f"{tag}/#", qos=1)
    seen_nats = []
    for i, topic in enumerate(TOPICS):
        device.publish(f"{tag}/{topic}", b"m%d" % i, qos=i % 2)
    for _ in TOPICS:
        msg = await sub.next_msg(timeout=3)
        seen_nats.append((msg.subject, msg.data, dict(msg.headers or {})))
    from_mqtt = sorted(device.received(len(TOPICS)))
    for i, subject in enumerate(["", ".a", ".a.b", "./.x", ".a//b"]):
        await nc.publish(f"{tag}{subject}", b"n%d" % i)
    await nc.flush()
    from_nats = sorted(device.received(5))
    device.close()
    await sub.unsubscribe()
    await also.unsubscribe()
    await nc.close()
    return {"nats_saw": seen_nats, "mqtt_saw_mqtt": from_mqtt, "mqtt_saw_nats": from_nats}


async def test_topics_and_subjects_map_both_ways_as_in_nats_server(servers: dict[str, tuple[int, int]]) -> None:
    seen = {kind: await mapping_case(*servers[kind], "map") for kind in KINDS}
    assert seen["natsd"] == seen["nats-server"]
    assert ("map.foo.bar", b"m1", {"Nmqtt-Pub": "1"}) in seen["natsd"]["nats_saw"]
    assert len(seen["natsd"]["mqtt_saw_nats"]) == 5


async def retained_case(nats_port: int, mqtt_port: int) -> dict[str, Any]:
    publisher = Device(mqtt_port, "ret-pub")
    publisher.publish("ret/config/rate", b"10", qos=1, retain=True)
    publisher.publish("ret/config/mode", b"eco", qos=0, retain=True)
    publisher.publish("ret/config/gone", b"x", qos=1, retain=True)
    publisher.publish("ret/config/gone", b"", qos=1, retain=True)  # an empty retained message removes it
    await asyncio.sleep(0.3)
    late = Device(mqtt_port, "ret-sub")
    late.subscribe("ret/config/+", qos=1)
    got = sorted(late.received(2))
    more = late.received(1, timeout=0.5)
    publisher.publish("ret/config/rate", b"20", qos=1, retain=True)
    live = late.received(1)
    for d in (publisher, late):
        d.close()
    return {"retained": got, "extra": more, "live": live}


async def test_retained_messages(servers: dict[str, tuple[int, int]]) -> None:
    seen = {kind: await retained_case(*servers[kind]) for kind in KINDS}
    assert seen["natsd"] == seen["nats-server"]
    assert seen["natsd"]["retained"] == [("ret/config/mode", b"eco", 0, True), ("ret/config/rate", b"10", 1, True)]
    assert seen["natsd"]["live"] == [("ret/config/rate", b"20", 1, False)]


async def session_case(nats_port: int, mqtt_port: int) -> dict[str, Any]:
    device = Device(mqtt_port, "sess-dev", clean=False)
    first_present = device.flags.session_present
    device.subscribe("sess/cmd/#", qos=1)
    device.close()
    nc = await nats.connect(f"nats://127.0.0.1:{nats_port}")
    publisher = Device(mqtt_port, "sess-pub")
    for i in range(3):
        publisher.publish("sess/cmd/reboot", b"r%d" % i, qos=1)
    await nc.publish("sess.cmd.plain", b"qos0 from NATS, lost while away")
    await nc.flush()
    await asyncio.sleep(0.3)
    device = Device(mqtt_port, "sess-dev", clean=False)
    present = device.flags.session_present
    got = device.received(3)
    extra = device.received(1, timeout=0.5)
    device.close()
    clean = Device(mqtt_port, "sess-dev", clean=True)  # a clean session drops the old one
    clean_present = clean.flags.session_present
    clean.close()
    publisher.close()
    await nc.close()
    return {"first": first_present, "present": present, "got": got, "extra": extra, "clean": clean_present}


async def test_a_persistent_session_keeps_qos1_messages_while_the_device_is_away(
        servers: dict[str, tuple[int, int]]) -> None:
    seen = {kind: await session_case(*servers[kind]) for kind in KINDS}
    assert seen["natsd"] == seen["nats-server"]
    assert seen["natsd"]["present"] and not seen["natsd"]["first"]
    assert [m[1] for m in seen["natsd"]["got"]] == [b"r0", b"r1", b"r2"]


async def will_case(nats_port: int, mqtt_port: int) -> dict[str, Any]:
    watcher = Device(mqtt_port, "will-watch")
    watcher.subscribe("will/#")
    dying = Device(mqtt_port, "will-dev", will=("will/dev", b"gone"))
    polite = Device(mqtt_port, "will-polite", will=("will/polite", b"should not appear"))
    polite.close()  # DISCONNECT: no will
    dying.close(clean=False)  # the socket drops: the will goes out
    got = watcher.received(1)
    extra = watcher.received(1, timeout=0.5)
    watcher.close()
    return {"got": got, "extra": extra}


async def test_the_will_of_a_device_that_drops_is_published(servers: dict[str, tuple[int, int]]) -> None:
    seen = {kind: await will_case(*servers[kind]) for kind in KINDS}
    assert seen["natsd"] == seen["nats-server"]
    assert seen["natsd"]["got"] == [("will/dev", b"gone", 0, False)]


def raw_exchange(port: int, data: bytes, wait: float = 1.0) -> bytes:
    """What the server answers to ``data`` before it closes the connection (or ``wait`` passes)."""
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=wait) as sock:
        sock.sendall(data)
        out = b""
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                chunk = sock.recv(4096)
            except (TimeoutError, ConnectionResetError):
                break
            if not chunk:
                break
            out += chunk
    return out


@pytest.mark.parametrize("data", [
    bytes.fromhex("100d00044d51545403020000000163"),  # protocol level 3
    bytes.fromhex("100d00044d51545404020000000163") + b"\x32\x05\x00\x01+\x00\x01",  # wildcard in a topic
    b"\x30\x05\x00\x01a\x00\x01",  # PUBLISH before CONNECT
    bytes.fromhex("100c00044d5154540400000000") + b"",  # empty client id without clean session
])
async def test_bad_input_gets_the_same_answer(servers: dict[str, tuple[int, int]], data: bytes) -> None:
    answers = {kind: await asyncio.to_thread(raw_exchange, servers[kind][1], data) for kind in KINDS}
    assert answers["natsd"] == answers["nats-server"]


async def test_other_clients_do_not_notice_a_bad_one(servers: dict[str, tuple[int, int]]) -> None:
    _, port = servers["natsd"]
    device = Device(port, "steady")
    device.subscribe("steady/#")
    await asyncio.to_thread(raw_exchange, port, b"\xff\xff\xff\xff\xff garbage")
    device.publish("steady/x", b"still here")
    assert device.received(1) == [("steady/x", b"still here", 0, False)]
    device.close()


def monitor(kind: str, path: str) -> Any:
    import json
    import urllib.request

    return json.loads(urllib.request.urlopen(f"http://127.0.0.1:{HTTP[kind]}{path}", timeout=5).read())


async def test_varz_and_connz_show_mqtt_as_nats_server_does(servers: dict[str, tuple[int, int]]) -> None:
    seen: dict[str, Any] = {}
    for kind in KINDS:
        dev = await asyncio.to_thread(Device, servers[kind][1], "monitored")
        await asyncio.to_thread(dev.subscribe, "mon/#", 0)
        varz = await asyncio.to_thread(monitor, kind, "/varz")
        connz = await asyncio.to_thread(monitor, kind, "/connz?mqtt_client=monitored")
        await asyncio.to_thread(dev.close)
        (entry,) = connz["connections"]
        seen[kind] = {"varz": {k: v for k, v in varz["mqtt"].items() if k != "port"},
                      "connz": {k: entry.get(k) for k in ("kind", "type", "mqtt_client", "name", "lang")}}
    assert seen["natsd"] == seen["nats-server"]
    assert seen["natsd"]["varz"] == {"host": "127.0.0.1", "tls_timeout": 2, "ack_wait": 45_000_000_000}


USERS = "authorization { users: [ {user: alice, password: a} ] }"


@pytest.mark.parametrize(("block", "extra"), [
    ('mqtt { port: -1, no_auth_user: "bob" }', ""),
    ('mqtt { port: -1, no_auth_user: "bob" }', USERS),
    ("mqtt { port: -1, authorization { user: dev, password: x } }", USERS),
    ("mqtt { port: -1, authorization { token: t } }", USERS),
    ('mqtt { port: -1, ack_wait: "-1s" }', ""),
    ('mqtt { port: -1, max_ack_pending: 70000 }', ""),
    ('mqtt { port: -1, reject_qos2_pub: true }', ""),
])
def test_bad_mqtt_settings_are_refused_with_nats_servers_words(block: str, extra: str, tmp_path: Any) -> None:
    """Each server refuses to start with the file, and natsd's error carries nats-server's text."""
    import subprocess

    conf = tmp_path / "bad.conf"
    conf.write_text(f'server_name: s\nhost: 127.0.0.1\nport: -1\njetstream {{ store_dir: "{tmp_path}" }}\n'
                    f"{extra}\n{block}\n")
    theirs = subprocess.run([require_nats_server(), "-c", str(conf)], capture_output=True, text=True, timeout=20)
    ours = subprocess.run([sys.executable, "-m", "natsd", "-c", str(conf)], capture_output=True, text=True,
                          timeout=20)
    assert theirs.returncode != 0 and ours.returncode != 0
    text = (theirs.stderr or theirs.stdout).strip().splitlines()[-1].rsplit(": ", 1)[-1]
    assert text.replace('"', "'") in ours.stderr.replace('"', "'"), (theirs.stderr, ours.stderr)  # quotes aside
