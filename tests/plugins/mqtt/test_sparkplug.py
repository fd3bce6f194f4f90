"""Sparkplug B: the topic parsing and protobuf timestamp rewriting without sockets (examples, some of
them nats-server's own test vectors, and hypothesis properties), then natsd alone with MQTT 5 devices
and across a restart (tests/interop/test_mqtt_sparkplug_nats_server.py compares it with nats-server)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from hypothesis import assume, example, given
from hypothesis import strategies as st
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from natsd import Server
from natsd.config.conf import parse
from natsd.server import free_port
from natsd_plugins.mqtt.sparkplug import (
    NOTHING,
    ProtobufError,
    TopicKind,
    encode_varint,
    on_delivery,
    parse_topic,
    replace_death_timestamp,
    scan_field,
    scan_varint,
)

pytestmark = pytest.mark.timeout(60)

BIRTH, DEATH = TopicKind(birth=True), TopicKind(death=True)
CERTIFICATE = TopicKind(birth=True, certificate=True)
NOW = 1_767_225_600_123  # 2026-01-01T00:00:00.123Z
STAMP = b"\x08" + encode_varint(NOW)


# -- topics -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("topic", "kind"), [
    ("spBv1.0/G/NBIRTH/E", BIRTH),
    ("spBv1.0/G/DBIRTH/E/D", BIRTH),
    ("spBv1.0/G/NDEATH/E", DEATH),
    ("spBv1.0/G/DDEATH/E/D", DEATH),
    ("$sparkplug/certificates/spBv1.0/G/NBIRTH/E", CERTIFICATE),
    ("$sparkplug/certificates/spBv1.0/G/DDEATH/E/D", TopicKind(death=True, certificate=True)),
    ("spBv1.0//NBIRTH/", BIRTH),  # empty levels count as levels
    ("spBv1.0/G/DBIRTH/E/", BIRTH),
    ("spBv1.0/G/NDATA/E", NOTHING),
    ("spBv1.0/STATE/host", NOTHING),
    ("spBv1.0/G/NBIRTH", NOTHING),  # two levels
    ("spBv1.0/G/NBIRTH/E/D/x", NOTHING),  # five
    ("spBv1.0/G/nbirth/E", NOTHING),
    ("spAv1.0/G/NBIRTH/E", NOTHING),
    ("spBv1.0", NOTHING),
    ("x/spBv1.0/G/NBIRTH/E", NOTHING),
    ("$sparkplug/certificates/G/NBIRTH/E", NOTHING),
    ("$sparkplug/certificates/$sparkplug/certificates/spBv1.0/G/NBIRTH/E", NOTHING),  # one prefix only
])
def test_birth_and_death_topics(topic: str, kind: TopicKind) -> None:
    assert parse_topic(topic) == kind


# -- varints and fields -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "encoded"), [
    (0, b"\x00"), (1, b"\x01"), (127, b"\x7f"), (128, b"\x80\x01"), (300, b"\xac\x02"),
    (2**63, b"\x80" * 9 + b"\x01"), (2**64 - 1, b"\xff" * 9 + b"\x01"),
])
def test_varints(value: int, encoded: bytes) -> None:
    assert encode_varint(value) == encoded
    assert scan_varint(encoded + b"rest", 0) == (value, len(encoded))


@pytest.mark.parametrize("data", [
    b"", b"\x80", b"\xff\xff",  # cut short
    b"\xff" * 9 + b"\x02",  # the tenth byte may only be 0 or 1
    b"\x80" * 10 + b"\x00",  # eleven bytes
])
def test_bad_varints(data: bytes) -> None:
    with pytest.raises(ProtobufError):
        scan_varint(data, 0)


def test_a_varint_may_take_more_bytes_than_it_needs() -> None:
    assert scan_varint(b"\x81\x80\x00", 0) == (1, 3)


@pytest.mark.parametrize(("data", "field"), [
    (b"\x08\x96\x01", (1, 0, 3)),
    (b"\x09" + bytes(8), (1, 1, 9)),
    (b"\x12\x03abc", (2, 2, 5)),
    (b"\x1d" + bytes(4), (3, 5, 5)),
    (b"\xf8\xff\xff\xff\x3f\x00", (2**31 - 1, 0, 6)),
])
def test_fields(data: bytes, field: tuple[int, int, int]) -> None:
    assert scan_field(data + b"\x08\x01", 0) == field


@pytest.mark.parametrize("data", [
    b"\x00\x01",  # field number 0
    b"\x80\x80\x80\x80\x40\x00",  # field number 2**31
    b"\x0b", b"\x0c", b"\x0e\x00", b"\x0f\x00",  # groups, and wire types 6 and 7
    b"\x0d\x01", b"\x09\x01\x02\x03\x04\x05\x06\x07",  # fixed32, fixed64 cut short
    b"\x12\x05abcd",  # length beyond the end
    b"\x08",  # no value
])
def test_bad_fields(data: bytes) -> None:
    with pytest.raises(ProtobufError):
        scan_field(data, 0)


# -- the death timestamp ---------------------------------------------------------------------------------------

# nats-server's TestMQTTSparkbDeathHandling payload: three metrics (bdSeq and two strings), no timestamp.
METRICS = bytes.fromhex("120b0a056264536571200458021224" "0a0e6465766963652d6d657472696331200c7a1076616c75652d"
                        "61742d64656174682d311224" "0a0e6465766963652d6d657472696332200c7a1076616c75652d61"
                        "742d64656174682d32")
DEADBEEF = bytes.fromhex("08effdb6f5fddeefd6de01")  # timestamp 0xdeadbeefdeadbeef


@pytest.mark.parametrize(("payload", "expected"), [
    (METRICS, METRICS + STAMP),  # appended
    (METRICS + b"\x08\x00", METRICS + STAMP),  # replaced at the end
    (DEADBEEF + METRICS, STAMP + METRICS),  # replaced at the start
    (b"", STAMP),
    (b"\x08\x05\x08\x06", STAMP + b"\x08\x06"),  # the first one only
    (b"\x88\x00\x05", STAMP),  # a tag that takes two bytes is written in one
    (b"\x09" + bytes(8), b"\x09" + bytes(8) + STAMP),  # field 1 as fixed64 is not the timestamp
    (b"\x08\x05\x12\x09cut short", STAMP + b"\x12\x09cut short"),  # after the timestamp nothing is read
    (b"\xde\xad\xbe\xef", b"\xde\xad\xbe\xef"),  # not protobuf: as it was
    (b"\x0d\x01", b"\x0d\x01"),
    (b"\x09\x01\x02\x03\x04\x05\x06\x07", b"\x09\x01\x02\x03\x04\x05\x06\x07"),
    (METRICS[:-1], METRICS[:-1]),
    (b"\x12\x01x\x08", b"\x12\x01x\x08"),
])
def test_the_death_timestamp_is_replaced_or_added(payload: bytes, expected: bytes) -> None:
    assert replace_death_timestamp(payload, NOW) == expected


def test_a_timestamp_as_nats_server_writes_it() -> None:
    assert STAMP == bytes.fromhex("08fbd0eab6b733")
    assert replace_death_timestamp(b"", 2**64 - 1) == b"\x08" + b"\xff" * 9 + b"\x01"


@pytest.mark.parametrize(("topic", "qos", "retain", "expected"), [
    ("$sparkplug/certificates/spBv1.0/G/NBIRTH/E", 0, False, (METRICS, True)),  # a live certificate
    ("$sparkplug/certificates/spBv1.0/G/NBIRTH/E", 1, False, (METRICS, False)),
    ("$sparkplug/certificates/spBv1.0/G/NBIRTH/E", 1, True, (METRICS, True)),
    ("spBv1.0/G/NBIRTH/E", 0, False, (METRICS, False)),
    ("spBv1.0/G/NDEATH/E", 1, False, (METRICS + STAMP, False)),
    ("spBv1.0/G/DDEATH/E/D", 0, False, (METRICS + STAMP, False)),
    ("spBv1.0/G/NDEATH/E", 1, True, (METRICS, True)),  # a retained message goes as it was kept
    ("$sparkplug/certificates/spBv1.0/G/NDEATH/E", 0, False, (METRICS, False)),
    ("spBv1.0/G/NDATA/E", 0, False, (METRICS, False)),
])
def test_what_a_subscriber_gets(topic: str, qos: int, retain: bool, expected: tuple[bytes, bool]) -> None:
    assert on_delivery(topic, METRICS, qos, retain, NOW) == expected


# -- properties -----------------------------------------------------------------------------------------------

u64 = st.integers(0, 2**64 - 1)


@st.composite
def varints(draw: st.DrawFn, value: int, size: int = 10) -> bytes:
    """``value`` as a varint, sometimes padded with continuation bytes (up to ``size`` bytes)."""
    minimal = encode_varint(value)
    pad = draw(st.integers(0, max(0, size - len(minimal))))
    if not pad:
        return minimal
    return minimal[:-1] + bytes([minimal[-1] | 0x80]) + b"\x80" * (pad - 1) + b"\x00"


@st.composite
def fields(draw: st.DrawFn, max_number: int = 2**31 - 1, size: int = 10) -> tuple[int, int, bytes]:
    """``(number, wire type, encoding)`` of one valid field (its tag and length in up to ``size`` bytes)."""
    wire = draw(st.sampled_from([0, 1, 2, 5]))
    number = draw(st.one_of(st.integers(1, 4), st.integers(1, max_number)))
    tag = draw(varints((number << 3) | wire, size))
    if wire == 0:
        value = draw(varints(draw(u64)))
    elif wire == 1:
        value = draw(st.binary(min_size=8, max_size=8))
    elif wire == 5:
        value = draw(st.binary(min_size=4, max_size=4))
    else:
        body = draw(st.binary(max_size=20))
        value = draw(varints(len(body), size)) + body
    return number, wire, tag + value


messages = st.lists(fields(), max_size=8)


@given(messages, u64)
@example([(2, 2, METRICS)], NOW)
def test_only_the_first_timestamp_changes(message: list[tuple[int, int, bytes]], now: int) -> None:
    """Every field but the first varint field 1 keeps its bytes, in place; without one, it is appended."""
    payload = b"".join(f[2] for f in message)
    first = next((i for i, (number, wire, _) in enumerate(message) if number == 1 and wire == 0), None)
    stamp = b"\x08" + encode_varint(now)
    if first is None:
        expected = payload + stamp
    else:
        expected = b"".join(f[2] for f in message[:first]) + stamp + b"".join(f[2] for f in message[first + 1:])
    assert replace_death_timestamp(payload, now) == expected


@given(st.lists(fields(2**29 - 1, 5), max_size=8), u64)  # protobuf's limits: tags and lengths are uint32
def test_protobuf_reads_the_new_timestamp_and_every_other_field(message: list[tuple[int, int, bytes]],
                                                                 now: int) -> None:
    """The Python protobuf runtime (an independent reader) sees the same fields, the timestamp changed."""
    unknown_fields = pytest.importorskip("google.protobuf.unknown_fields")
    from google.protobuf import empty_pb2

    def read(data: bytes) -> list[tuple[int, int, object]]:
        parsed = empty_pb2.Empty()
        parsed.ParseFromString(data)
        return [(f.field_number, f.wire_type, f.data) for f in unknown_fields.UnknownFieldSet(parsed)]

    payload = b"".join(f[2] for f in message)
    before = read(payload)
    first = next((i for i, f in enumerate(before) if f[:2] == (1, 0)), None)
    if first is None:
        before.append((1, 0, now))
    else:
        before[first] = (1, 0, now)
    assert read(replace_death_timestamp(payload, now)) == before


@given(messages, st.data())
def test_a_message_cut_short_before_its_timestamp_is_left_alone(message: list[tuple[int, int, bytes]],
                                                                data: st.DataObject) -> None:
    kept = [f for f in message if not (f[0] == 1 and f[1] == 0)]
    assume(kept)
    whole = b"".join(f[2] for f in kept)
    payload = whole[:data.draw(st.integers(len(whole) - len(kept[-1][2]) + 1, len(whole) - 1))]  # in the last field
    assert replace_death_timestamp(payload, NOW) == payload


@given(st.binary(max_size=48), u64)
def test_any_bytes_give_the_payload_or_the_payload_stamped(payload: bytes, now: int) -> None:
    """Never an error: the payload as it was, or with one stretch of it (maybe none) made the stamp."""
    out = replace_death_timestamp(payload, now)
    stamp = b"\x08" + encode_varint(now)
    n = len(payload)
    assert out == payload or any(out == payload[:i] + stamp + payload[j:] for i in range(n + 1)
                                 for j in range(i, n + 1))
    assert replace_death_timestamp(out, now) == out  # a stamped payload scans up to its stamp


@given(u64)
def test_varints_round_trip(value: int) -> None:
    encoded = encode_varint(value)
    assert scan_varint(encoded, 0) == (value, len(encoded))


# -- natsd with MQTT 5 devices, with and without JetStream -----------------------------------------------------


class Device:
    """A paho-mqtt client whose messages land in a list (the server runs in this test's loop: blocking
    calls go through threads)."""

    def __init__(self, port: int, client_id: str, version: mqtt.MQTTProtocolVersion = mqtt.MQTTv5,
                 will: tuple[str, bytes, int] | None = None, will_delay: int = 0) -> None:
        import queue

        self.messages: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=version)
        self.client.on_message = lambda c, u, m: self.messages.put(m)
        done: queue.Queue[object] = queue.Queue()
        self.client.on_connect = lambda c, u, flags, rc, props=None: done.put(rc)
        self.client.on_subscribe = lambda c, u, mid, rcs, props=None: done.put(rcs)
        props = None
        if will is not None:
            will_props = None
            if will_delay:
                will_props = Properties(PacketTypes.WILLMESSAGE)
                will_props.WillDelayInterval = will_delay
                props = Properties(PacketTypes.CONNECT)
                props.SessionExpiryInterval = 60
            self.client.will_set(*will, properties=will_props)
        self.client.connect("127.0.0.1", port, keepalive=30, properties=props)
        self.client.loop_start()
        done.get(timeout=5)
        self._done = done

    def subscribe(self, topic: str, qos: int = 0) -> None:
        self.client.subscribe(topic, qos=qos)
        self._done.get(timeout=5)

    def publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> None:
        self.client.publish(topic, payload, qos=qos, retain=retain).wait_for_publish(5)

    def received(self, count: int, timeout: float = 3.0) -> list[tuple[str, bytes, int, bool]]:
        import queue

        out: list[tuple[str, bytes, int, bool]] = []
        deadline = time.monotonic() + timeout
        while len(out) < count and time.monotonic() < deadline:
            try:
                m = self.messages.get(timeout=0.05)
            except queue.Empty:
                continue
            out.append((m.topic, bytes(m.payload), m.qos, m.retain))
        return out

    def drop(self) -> None:
        """Close the socket without DISCONNECT: the will goes out."""
        sock = self.client.socket()
        if sock is not None:
            sock.close()
        self.client.loop_stop()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def stamped(payload: bytes, rest: bytes, since: float) -> bool:
    """``payload`` is ``rest`` and a timestamp from ``since`` to now."""
    if not payload.startswith(rest) or payload[len(rest):len(rest) + 1] != b"\x08":
        return False
    ts, end = scan_varint(payload, len(rest) + 1)
    return end == len(payload) and since - 0.001 <= ts / 1000 <= time.time()


async def test_without_jetstream_mqtt5_devices_get_certificates_and_stamped_deaths() -> None:
    port = free_port()
    server = Server(parse(f"host: 127.0.0.1\nport: -1\nmqtt {{ listen: 127.0.0.1:{port} }}"))
    await server.start()
    try:
        watcher = await asyncio.to_thread(Device, port, "watcher")
        await asyncio.to_thread(watcher.subscribe, "spBv1.0/G/#", 1)
        edge = await asyncio.to_thread(Device, port, "edge", will=("spBv1.0/G/NDEATH/E", METRICS, 1))
        await asyncio.to_thread(edge.publish, "spBv1.0/G/NBIRTH/E", b"born", 0)
        assert await asyncio.to_thread(watcher.received, 1) == [("spBv1.0/G/NBIRTH/E", b"born", 0, False)]
        late = await asyncio.to_thread(Device, port, "late")
        await asyncio.to_thread(late.subscribe, "$sparkplug/certificates/#", 2)
        assert await asyncio.to_thread(late.received, 1) == [
            ("$sparkplug/certificates/spBv1.0/G/NBIRTH/E", b"born", 0, True)]
        since = time.time()
        await asyncio.to_thread(edge.drop)
        ((topic, payload, qos, retain),) = await asyncio.to_thread(watcher.received, 1)
        assert (topic, qos, retain) == ("spBv1.0/G/NDEATH/E", 1, False)
        assert stamped(payload, METRICS, since), payload
        for device in (watcher, late):
            await asyncio.to_thread(device.close)
    finally:
        await server.shutdown()


async def test_a_delayed_will_is_stamped_when_it_goes_out() -> None:
    port = free_port()
    server = Server(parse(f"host: 127.0.0.1\nport: -1\nmqtt {{ listen: 127.0.0.1:{port} }}"))
    await server.start()
    try:
        watcher = await asyncio.to_thread(Device, port, "watcher")
        await asyncio.to_thread(watcher.subscribe, "spBv1.0/G/+/E", 0)
        edge = await asyncio.to_thread(Device, port, "edge", will=("spBv1.0/G/NDEATH/E", DEADBEEF, 0), will_delay=1)
        await asyncio.to_thread(edge.drop)
        dropped = time.time()
        ((_, payload, _, _),) = await asyncio.to_thread(watcher.received, 1, 5.0)
        assert stamped(payload, b"", dropped + 0.9), (payload, dropped)  # when it went, not when it was due
        await asyncio.to_thread(watcher.close)
    finally:
        await server.shutdown()


async def test_a_certificate_is_kept_in_jetstream_across_a_restart(tmp_path: Path) -> None:
    port, mqtt_port = free_port(), free_port()
    conf = (f'host: 127.0.0.1\nport: {port}\njetstream {{ store_dir: "{tmp_path}" }}\n'
            f"mqtt {{ listen: 127.0.0.1:{mqtt_port} }}\n")
    server = Server(parse(conf))
    await server.start()
    try:
        edge = await asyncio.to_thread(Device, mqtt_port, "edge", mqtt.MQTTv311)
        await asyncio.to_thread(edge.publish, "spBv1.0/G/DBIRTH/E/D", b"device born", 1)
        await asyncio.to_thread(edge.close)
        await asyncio.sleep(0.3)
    finally:
        await server.shutdown()
    server = Server(parse(conf))
    await server.start()
    try:
        late = await asyncio.to_thread(Device, mqtt_port, "late", mqtt.MQTTv311)
        await asyncio.to_thread(late.subscribe, "$sparkplug/certificates/spBv1.0/G/#", 1)
        assert await asyncio.to_thread(late.received, 1) == [
            ("$sparkplug/certificates/spBv1.0/G/DBIRTH/E/D", b"device born", 1, True)]
        await asyncio.to_thread(late.close)
    finally:
        await server.shutdown()
