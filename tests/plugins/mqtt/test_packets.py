"""MQTT 3.1.1 and 5 packets without sockets: round trips, every split point, malformed input."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from natsd_plugins.mqtt import packets as P
from natsd_plugins.mqtt.packets import MQTT_5, MQTT_311, MQTTError, Parser, encode


def parsed(data: bytes, version: int = 0) -> list[P.Packet]:
    parser = Parser()
    parser.version = version
    return parser.feed(data)


# -- strategies ----------------------------------------------------------------------------------

texts = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=20)
blobs = st.binary(max_size=40)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
packet_ids = st.integers(1, 0xFFFF)


def props(*names: str) -> st.SearchStrategy[dict[str, object]]:
    values: dict[str, st.SearchStrategy[object]] = {}
    for name in names:
        _, kind = P.PROPERTY_IDS[name]
        values[name] = {P.BYTE: st.integers(0, 1), P.U16: u16, P.U32: u32, P.UTF8: texts, P.BINARY: blobs,
                        P.VARINT: st.lists(st.integers(1, 268_435_455), min_size=1, max_size=3),
                        P.PAIR: st.lists(st.tuples(texts, texts), min_size=1, max_size=3)}[kind]
    return st.fixed_dictionaries({}, optional=values)  # type: ignore[arg-type]


PUBLISH_PROPS = props("payload_format", "message_expiry", "content_type", "response_topic", "correlation_data",
                      "subscription_ids", "topic_alias", "user_properties")


@st.composite
def publishes(draw: st.DrawFn, version: int) -> P.Publish:
    qos = draw(st.integers(0, 2))
    return P.Publish(draw(texts), draw(blobs), qos, draw(st.booleans()), draw(st.booleans()) if qos else False,
                     draw(packet_ids) if qos else 0, draw(PUBLISH_PROPS) if version == MQTT_5 else {})


@st.composite
def connects(draw: st.DrawFn, version: int) -> P.Connect:
    v5 = version == MQTT_5
    will = None
    if draw(st.booleans()):
        will = P.Will(draw(texts), draw(blobs), draw(st.integers(0, 2)), draw(st.booleans()),
                      draw(props("will_delay", "message_expiry", "content_type", "user_properties")) if v5 else {})
    username = draw(st.none() | texts)
    password = draw(st.none() | blobs) if (username is not None or v5) else None
    return P.Connect(draw(texts), version, draw(st.booleans()), draw(u16), username, password, will,
                     draw(props("session_expiry", "receive_maximum", "maximum_packet_size", "topic_alias_maximum",
                                "user_properties", "auth_method")) if v5 else {})


@st.composite
def subscribes(draw: st.DrawFn, version: int) -> P.Subscribe:
    v5 = version == MQTT_5
    requests = draw(st.lists(st.builds(
        P.SubscriptionRequest, texts, st.integers(0, 2), st.booleans() if v5 else st.just(False),
        st.booleans() if v5 else st.just(False), st.integers(0, 2) if v5 else st.just(0)), min_size=1, max_size=4))
    return P.Subscribe(draw(packet_ids), requests, draw(props("subscription_ids", "user_properties")) if v5 else {})


def client_packets(version: int) -> st.SearchStrategy[P.Packet]:
    v5 = version == MQTT_5
    acks = st.builds(P.Ack, st.sampled_from([P.PUBACK, P.PUBREC, P.PUBREL, P.PUBCOMP]), packet_ids,
                     st.sampled_from([0, 0x10, 0x80, 0x92]) if v5 else st.just(0),
                     props("reason_string", "user_properties") if v5 else st.just({}))
    options = [publishes(version), acks, subscribes(version),
               st.builds(P.Unsubscribe, packet_ids, st.lists(texts, min_size=1, max_size=3),
                         props("user_properties") if v5 else st.just({})),
               st.just(P.PingReq()),
               st.builds(P.Disconnect, st.sampled_from([0, 4, 0x80]) if v5 else st.just(0),
                         props("session_expiry", "reason_string") if v5 else st.just({}))]
    if v5:
        options.append(st.builds(P.Auth, st.sampled_from([0, 0x18, 0x19]), props("auth_method", "auth_data")))
    return st.one_of(*options)


# -- round trips ----------------------------------------------------------------------------------

@pytest.mark.parametrize("version", [MQTT_311, MQTT_5])
@settings(max_examples=150)
@given(data=st.data())
def test_client_packets_round_trip(version: int, data: st.DataObject) -> None:
    connect = data.draw(connects(version))
    rest = data.draw(st.lists(client_packets(version), max_size=5))
    stream = encode(connect, version) + b"".join(encode(p, version) for p in rest)
    assert parsed(stream) == [connect, *rest]


@pytest.mark.parametrize("version", [MQTT_311, MQTT_5])
@settings(max_examples=80)
@given(data=st.data())
def test_every_split_point_gives_the_same_packets(version: int, data: st.DataObject) -> None:
    connect = data.draw(connects(version))
    rest = data.draw(st.lists(client_packets(version), max_size=3))
    stream = encode(connect, version) + b"".join(encode(p, version) for p in rest)
    cut = data.draw(st.integers(0, len(stream)))
    parser = Parser()
    got = parser.feed(stream[:cut]) + parser.feed(stream[cut:])
    assert got == [connect, *rest]
    assert not parser.buffer


@given(st.sampled_from([P.PUBACK, P.PUBREC, P.PUBREL, P.PUBCOMP]), packet_ids, st.sampled_from([0, 0x10, 0x80, 0x92]),
       st.sampled_from([MQTT_311, MQTT_5]))
def test_the_ack_encoder_reads_back(kind: int, pid: int, reason: int, version: int) -> None:
    reason = reason if version == MQTT_5 else 0
    assert parsed(P.encode_ack(kind, pid, reason, version == MQTT_5), version) == [P.Ack(kind, pid, reason)]


@given(st.binary(max_size=70_000), st.integers(0, 2), packet_ids)
@settings(max_examples=40)
def test_a_publish_of_any_size_reads_back(payload: bytes, qos: int, pid: int) -> None:
    """Remaining lengths of one, two and three bytes."""
    packet = P.Publish("t/x", payload, qos, packet_id=pid if qos else 0)
    assert parsed(encode(packet, MQTT_311), MQTT_311) == [packet]


def test_byte_by_byte() -> None:
    stream = encode(P.Connect("dev-1", MQTT_5, keep_alive=30, properties={"session_expiry": 60}), MQTT_5) + \
        encode(P.Publish("a/b", b"x" * 300, 1, packet_id=7, properties={"user_properties": [("k", "v")]}), MQTT_5)
    parser = Parser()
    got: list[P.Packet] = []
    for i in range(len(stream)):
        got += parser.feed(stream[i:i + 1])
    assert [type(p) for p in got] == [P.Connect, P.Publish]
    assert isinstance(got[1], P.Publish) and got[1].payload == b"x" * 300


@pytest.mark.parametrize("version", [MQTT_311, MQTT_5])
def test_server_packets_round_trip(version: int) -> None:
    v5 = version == MQTT_5
    server = [
        P.ConnAck(0, True, {"assigned_client_id": "auto-1", "receive_maximum": 100} if v5 else {}),
        P.SubAck(3, [0, 1, 2, 0x80], {"reason_string": "no"} if v5 else {}),
        P.UnsubAck(4, [0, 0x11] if v5 else [], {}),
        P.PingResp(),
        P.Publish("t", b"p", 2, True, False, 9, {"subscription_ids": [5]} if v5 else {}),
    ]
    assert parsed(b"".join(encode(p, version) for p in server), version) == server


def test_known_bytes() -> None:
    """Packets as the MQTT 3.1.1 specification's examples and paho-mqtt write them."""
    connect = bytes.fromhex("101000044d5154540402003c0004706168")  # MQTT, level 4, clean, keep-alive 60, "pah"
    assert parsed(connect[:-1] + b"o") == []  # one byte short of the announced length: waits
    (packet,) = parsed(bytes.fromhex("101100044d5154540402003c000570616f686f"))
    assert packet == P.Connect("paoho", MQTT_311, True, 60)
    assert P.encode_connack_v3(0) == b"\x20\x02\x00\x00"
    assert encode(P.Publish("a/b", b"hi"), MQTT_311) == b"\x30\x07\x00\x03a/bhi"
    assert encode(P.Ack(P.PUBREL, 10), MQTT_311) == b"\x62\x02\x00\x0a"


# -- malformed input ----------------------------------------------------------------------------

V4_CONNECT = encode(P.Connect("c"), MQTT_311)
V5_CONNECT = encode(P.Connect("c", MQTT_5), MQTT_5)


def pkt(first: int, body: bytes) -> bytes:
    """A packet with ``body`` and the right remaining length (one byte: bodies here are short)."""
    return bytes((first, len(body))) + body


def connect_body(level: int, flags: int, payload: bytes = b"\x00\x01c") -> bytes:
    return b"\x00\x04MQTT" + bytes((level, flags)) + b"\x00\x00" + payload


@pytest.mark.parametrize(("prefix", "data", "reason"), [
    (b"", encode(P.Publish("a", b"x"), MQTT_311), P.PROTOCOL_ERROR),  # before CONNECT
    (b"", pkt(0x10, connect_body(3, 2)), P.UNSUPPORTED_PROTOCOL_VERSION),
    (b"", pkt(0x10, connect_body(6, 2)), P.UNSUPPORTED_PROTOCOL_VERSION),
    (b"", pkt(0x10, b"\x00\x04MQXX\x04\x02\x00\x00\x00\x01c"), P.PROTOCOL_ERROR),  # protocol name
    (b"", pkt(0x10, connect_body(4, 0x03)), P.MALFORMED_PACKET),  # reserved flag
    (b"", pkt(0x10, connect_body(4, 0x1E)), P.MALFORMED_PACKET),  # will QoS 3
    (b"", pkt(0x10, connect_body(4, 0x22)), P.MALFORMED_PACKET),  # will retain without a will
    (b"", pkt(0x10, connect_body(4, 0x42, b"\x00\x01c\x00\x01x")), P.PROTOCOL_ERROR),  # password only
    (b"", pkt(0x10, connect_body(4, 0x02, b"\x00\x02\x00c")), P.MALFORMED_PACKET),  # NUL in the client id
    (b"", pkt(0x10, connect_body(4, 0x02, b"\x00\x02c\xff")), P.MALFORMED_PACKET),  # invalid UTF-8
    (b"", pkt(0x10, connect_body(4, 0x02, b"\x00\x05c")), P.MALFORMED_PACKET),  # string past the end
    (b"", pkt(0x10, connect_body(4, 0x02, b"\x00\x01cc")), P.MALFORMED_PACKET),  # bytes after the fields
    (b"", b"\x10\xff\xff\xff\xff\x7f", P.MALFORMED_PACKET),  # remaining length of 5 bytes
    (V4_CONNECT, V4_CONNECT, P.PROTOCOL_ERROR),  # a second CONNECT
    (V4_CONNECT, pkt(0x36, b"\x00\x01a\x00\x01"), P.MALFORMED_PACKET),  # QoS 3
    (V4_CONNECT, pkt(0x38, b"\x00\x01a"), P.MALFORMED_PACKET),  # DUP on QoS 0
    (V5_CONNECT, pkt(0x38, b"\x00\x01a\x00"), P.PROTOCOL_ERROR),  # DUP on QoS 0, MQTT 5
    (V4_CONNECT, pkt(0x32, b"\x00\x01a\x00\x00"), P.PROTOCOL_ERROR),  # packet id 0
    (V4_CONNECT, pkt(0x80, b"\x00\x01\x00\x01a\x00"), P.MALFORMED_PACKET),  # SUBSCRIBE flags 0
    (V4_CONNECT, pkt(0x82, b"\x00\x01"), P.PROTOCOL_ERROR),  # SUBSCRIBE without filters
    (V4_CONNECT, pkt(0x82, b"\x00\x01\x00\x01a\x04"), P.MALFORMED_PACKET),  # option bits of MQTT 5
    (V5_CONNECT, pkt(0x82, b"\x00\x01\x00\x00\x01a\x30"), P.MALFORMED_PACKET),  # retain handling 3
    (V4_CONNECT, pkt(0xA2, b"\x00\x01"), P.PROTOCOL_ERROR),  # UNSUBSCRIBE without filters
    (V4_CONNECT, pkt(0xC0, b"\x00"), P.MALFORMED_PACKET),  # PINGREQ with a body
    (V4_CONNECT, pkt(0x00, b""), P.MALFORMED_PACKET),  # packet type 0
    (V4_CONNECT, pkt(0xF0, b""), P.PROTOCOL_ERROR),  # AUTH on 3.1.1
    (V5_CONNECT, pkt(0x30, b"\x00\x01a\x03\x01\x01"), P.MALFORMED_PACKET),  # properties past the end
    (V5_CONNECT, pkt(0x30, b"\x00\x01a\x03\x23\x00"), P.MALFORMED_PACKET),  # a property cut short
    (V5_CONNECT, pkt(0x30, b"\x00\x01a\x06\x23\x00\x01\x23\x00\x02"), P.PROTOCOL_ERROR),  # alias twice
    (V5_CONNECT, pkt(0x30, b"\x00\x01a\x02\x7f\x00"), P.MALFORMED_PACKET),  # unknown property 0x7f
])
def test_malformed_input_names_its_reason(prefix: bytes, data: bytes, reason: int) -> None:
    parser = Parser()
    parser.feed(prefix)
    with pytest.raises(MQTTError) as info:
        parser.feed(data)
    assert info.value.reason == reason, info.value.text


def test_an_oversized_packet_is_refused_before_its_body_arrives() -> None:
    parser = Parser(max_size=1024)
    parser.feed(V4_CONNECT)
    with pytest.raises(MQTTError) as info:
        parser.feed(b"\x30\xff\xff\x03")  # announces 65535 bytes; none sent
    assert info.value.reason == P.PACKET_TOO_LARGE


@settings(max_examples=300)
@given(garbage=st.binary(max_size=64))
def test_garbage_raises_mqtt_errors_only(garbage: bytes) -> None:
    for prefix in (b"", V4_CONNECT, V5_CONNECT):
        parser = Parser(max_size=4096)
        parser.feed(prefix)
        try:
            parser.feed(garbage)
        except MQTTError:
            pass
