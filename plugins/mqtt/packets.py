"""MQTT 3.1.1 and MQTT 5 control packets: a sans-I/O parser and encoders.

:class:`Parser` takes bytes as they arrive (``feed``) and returns whole
packets; it never touches a socket, so every split of the input can be
tested. It reads the protocol level from the first packet (``CONNECT``) and
decodes MQTT 5's properties and reason codes from then on. The ``encode_*``
functions turn packets back into bytes for a given protocol level.

Input that breaks the specification raises :class:`MQTTError` with the MQTT 5
reason code the server must answer with before it closes the connection:
``0x81`` malformed packet, ``0x82`` protocol error, ``0x95`` packet too
large, ``0x84`` unsupported protocol version. The parser checks what the
wire format fixes (fixed-header flags, lengths, UTF-8, property types and
repetitions, reserved bits); what a packet means in its session (a
``PUBLISH`` before ``CONNECT``, a wildcard in a topic name) is the session's.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

# -- packet types and reason codes ---------------------------------------------------------------

CONNECT, CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP = 1, 2, 3, 4, 5, 6, 7
SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK, PINGREQ, PINGRESP, DISCONNECT, AUTH = 8, 9, 10, 11, 12, 13, 14, 15

MQTT_311 = 4
MQTT_5 = 5

SUCCESS = 0x00
NO_MATCHING_SUBSCRIBERS = 0x10
NO_SUBSCRIPTION_EXISTED = 0x11
DISCONNECT_WITH_WILL = 0x04
UNSPECIFIED_ERROR = 0x80
MALFORMED_PACKET = 0x81
PROTOCOL_ERROR = 0x82
IMPLEMENTATION_SPECIFIC_ERROR = 0x83
UNSUPPORTED_PROTOCOL_VERSION = 0x84
CLIENT_IDENTIFIER_NOT_VALID = 0x85
BAD_USER_NAME_OR_PASSWORD = 0x86
NOT_AUTHORIZED = 0x87
SERVER_UNAVAILABLE = 0x88
SERVER_BUSY = 0x89
BAD_AUTHENTICATION_METHOD = 0x8C
KEEP_ALIVE_TIMEOUT = 0x8D
SESSION_TAKEN_OVER = 0x8E
TOPIC_FILTER_INVALID = 0x8F
TOPIC_NAME_INVALID = 0x90
PACKET_IDENTIFIER_IN_USE = 0x91
PACKET_IDENTIFIER_NOT_FOUND = 0x92
RECEIVE_MAXIMUM_EXCEEDED = 0x93
TOPIC_ALIAS_INVALID = 0x94
PACKET_TOO_LARGE = 0x95
QUOTA_EXCEEDED = 0x97
PAYLOAD_FORMAT_INVALID = 0x99
RETAIN_NOT_SUPPORTED = 0x9A
QOS_NOT_SUPPORTED = 0x9B
SERVER_MOVED = 0x9D
SHARED_SUBSCRIPTIONS_NOT_SUPPORTED = 0x9E
MAXIMUM_CONNECT_TIME = 0xA0
SUBSCRIPTION_IDENTIFIERS_NOT_SUPPORTED = 0xA1
WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED = 0xA2

#: MQTT 3.1.1 CONNACK return codes.
V3_ACCEPTED, V3_BAD_VERSION, V3_ID_REJECTED, V3_UNAVAILABLE, V3_BAD_CREDENTIALS, V3_NOT_AUTHORIZED = range(6)


class MQTTError(Exception):
    """The input breaks MQTT; ``reason`` is the MQTT 5 reason code that says how."""

    def __init__(self, reason: int, text: str) -> None:
        super().__init__(text)
        self.reason = reason
        self.text = text


# -- properties (MQTT 5) ---------------------------------------------------------------------------

BYTE, U16, U32, VARINT, UTF8, BINARY, PAIR = range(7)

#: identifier -> (name, type). Values are kept under the name; ``user_properties`` is a list of
#: ``(key, value)`` pairs and ``subscription_ids`` a list of ints (both may repeat).
PROPERTIES: dict[int, tuple[str, int]] = {
    0x01: ("payload_format", BYTE),
    0x02: ("message_expiry", U32),
    0x03: ("content_type", UTF8),
    0x08: ("response_topic", UTF8),
    0x09: ("correlation_data", BINARY),
    0x0B: ("subscription_ids", VARINT),
    0x11: ("session_expiry", U32),
    0x12: ("assigned_client_id", UTF8),
    0x13: ("server_keep_alive", U16),
    0x15: ("auth_method", UTF8),
    0x16: ("auth_data", BINARY),
    0x17: ("request_problem_info", BYTE),
    0x18: ("will_delay", U32),
    0x19: ("request_response_info", BYTE),
    0x1A: ("response_info", UTF8),
    0x1C: ("server_reference", UTF8),
    0x1F: ("reason_string", UTF8),
    0x21: ("receive_maximum", U16),
    0x22: ("topic_alias_maximum", U16),
    0x23: ("topic_alias", U16),
    0x24: ("maximum_qos", BYTE),
    0x25: ("retain_available", BYTE),
    0x26: ("user_properties", PAIR),
    0x27: ("maximum_packet_size", U32),
    0x28: ("wildcard_subscription_available", BYTE),
    0x29: ("subscription_id_available", BYTE),
    0x2A: ("shared_subscription_available", BYTE),
}
PROPERTY_IDS = {name: (ident, kind) for ident, (name, kind) in PROPERTIES.items()}
REPEATABLE = frozenset({"user_properties", "subscription_ids"})

Properties = dict[str, Any]


# -- packets -------------------------------------------------------------------------------------------

@dataclass(slots=True)
class Will:
    topic: str
    payload: bytes
    qos: int = 0
    retain: bool = False
    properties: Properties = field(default_factory=dict)


@dataclass(slots=True)
class Connect:
    client_id: str
    version: int = MQTT_311
    clean_start: bool = True
    keep_alive: int = 0
    username: str | None = None
    password: bytes | None = None
    will: Will | None = None
    properties: Properties = field(default_factory=dict)
    protocol_name: str = "MQTT"


@dataclass(slots=True)
class ConnAck:
    reason: int = SUCCESS
    session_present: bool = False
    properties: Properties = field(default_factory=dict)


@dataclass(slots=True)
class Publish:
    topic: str
    payload: bytes = b""
    qos: int = 0
    retain: bool = False
    dup: bool = False
    packet_id: int = 0
    properties: Properties = field(default_factory=dict)


@dataclass(slots=True)
class Ack:
    """``PUBACK``, ``PUBREC``, ``PUBREL`` or ``PUBCOMP`` (``kind``)."""

    kind: int
    packet_id: int
    reason: int = SUCCESS
    properties: Properties = field(default_factory=dict)


@dataclass(slots=True)
class SubscriptionRequest:
    filter: str
    qos: int = 0
    no_local: bool = False
    retain_as_published: bool = False
    retain_handling: int = 0


@dataclass(slots=True)
class Subscribe:
    packet_id: int
    requests: list[SubscriptionRequest]
    properties: Properties = field(default_factory=dict)


@dataclass(slots=True)
class SubAck:
    packet_id: int
    reasons: list[int]
    properties: Properties = field(default_factory=dict)


@dataclass(slots=True)
class Unsubscribe:
    packet_id: int
    filters: list[str]
    properties: Properties = field(default_factory=dict)


@dataclass(slots=True)
class UnsubAck:
    packet_id: int
    reasons: list[int] = field(default_factory=list)
    properties: Properties = field(default_factory=dict)


@dataclass(slots=True)
class PingReq:
    pass


@dataclass(slots=True)
class PingResp:
    pass


@dataclass(slots=True)
class Disconnect:
    reason: int = SUCCESS
    properties: Properties = field(default_factory=dict)


@dataclass(slots=True)
class Auth:
    reason: int = SUCCESS
    properties: Properties = field(default_factory=dict)


Packet = (Connect | ConnAck | Publish | Ack | Subscribe | SubAck | Unsubscribe | UnsubAck | PingReq
          | PingResp | Disconnect | Auth)


# -- reading -------------------------------------------------------------------------------------------

class _Reader:
    """Fields of one packet's variable header and payload."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes | memoryview) -> None:
        self.data = data
        self.pos = 0

    @property
    def left(self) -> int:
        return len(self.data) - self.pos

    def byte(self) -> int:
        if self.pos >= len(self.data):
            raise MQTTError(MALFORMED_PACKET, "packet ends early")
        value = self.data[self.pos]
        self.pos += 1
        return value

    def u16(self) -> int:
        if self.pos + 2 > len(self.data):
            raise MQTTError(MALFORMED_PACKET, "packet ends early")
        value: int = (self.data[self.pos] << 8) | self.data[self.pos + 1]
        self.pos += 2
        return value

    def u32(self) -> int:
        if self.pos + 4 > len(self.data):
            raise MQTTError(MALFORMED_PACKET, "packet ends early")
        value: int = struct.unpack_from(">I", self.data, self.pos)[0]
        self.pos += 4
        return value

    def varint(self) -> int:
        value, shift = 0, 0
        for _ in range(4):
            b = self.byte()
            value |= (b & 0x7F) << shift
            if not b & 0x80:
                return value
            shift += 7
        raise MQTTError(MALFORMED_PACKET, "variable byte integer longer than 4 bytes")

    def binary(self) -> bytes:
        n = self.u16()
        if self.pos + n > len(self.data):
            raise MQTTError(MALFORMED_PACKET, "packet ends early")
        value = bytes(self.data[self.pos:self.pos + n])
        self.pos += n
        return value

    def utf8(self) -> str:
        raw = self.binary()
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise MQTTError(MALFORMED_PACKET, "invalid UTF-8 string") from None
        if "\x00" in text:
            raise MQTTError(MALFORMED_PACKET, "UTF-8 string with a null character")
        return text

    def rest(self) -> bytes:
        value = bytes(self.data[self.pos:])
        self.pos = len(self.data)
        return value

    def properties(self) -> Properties:
        length = self.varint()
        end = self.pos + length
        if end > len(self.data):
            raise MQTTError(MALFORMED_PACKET, "properties longer than the packet")
        props: Properties = {}
        while self.pos < end:
            ident = self.varint()
            spec = PROPERTIES.get(ident)
            if spec is None:
                raise MQTTError(MALFORMED_PACKET, f"unknown property 0x{ident:02x}")
            name, kind = spec
            value: Any
            if kind == BYTE:
                value = self.byte()
            elif kind == U16:
                value = self.u16()
            elif kind == U32:
                value = self.u32()
            elif kind == VARINT:
                value = self.varint()
            elif kind == UTF8:
                value = self.utf8()
            elif kind == BINARY:
                value = self.binary()
            else:
                value = (self.utf8(), self.utf8())
            if name in REPEATABLE:
                props.setdefault(name, []).append(value)
            elif name in props:
                raise MQTTError(PROTOCOL_ERROR, f"property {name} given twice")
            else:
                props[name] = value
        if self.pos != end:
            raise MQTTError(MALFORMED_PACKET, "properties longer than announced")
        return props


#: Flags the fixed header must carry (the low nibble); PUBLISH's are its own.
REQUIRED_FLAGS = {CONNECT: 0, CONNACK: 0, PUBACK: 0, PUBREC: 0, PUBREL: 2, PUBCOMP: 0, SUBSCRIBE: 2,
                  SUBACK: 0, UNSUBSCRIBE: 2, UNSUBACK: 0, PINGREQ: 0, PINGRESP: 0, DISCONNECT: 0, AUTH: 0}


class Parser:
    """Packets out of a byte stream (see the module docstring).

    ``max_size`` bounds a packet's total size (fixed header included): a
    larger one raises ``PACKET_TOO_LARGE`` as soon as its length is read,
    before any of its body is buffered.
    """

    __slots__ = ("buffer", "version", "max_size")

    def __init__(self, max_size: int = 268_435_460) -> None:
        self.buffer = bytearray()
        self.version = 0
        """The protocol level of the connection (0 until a CONNECT was read)."""
        self.max_size = max_size

    def feed(self, data: bytes) -> list[Packet]:
        """The whole packets ``data`` completes, in order; a partial one waits for more."""
        buf = self.buffer
        buf += data
        out: list[Packet] = []
        pos = 0
        end = len(buf)
        try:
            while end - pos >= 2:
                length, shift, i = 0, 0, pos + 1
                while True:
                    if i >= end:
                        return out
                    b = buf[i]
                    length |= (b & 0x7F) << shift
                    i += 1
                    if not b & 0x80:
                        break
                    shift += 7
                    if shift > 21:
                        raise MQTTError(MALFORMED_PACKET, "remaining length longer than 4 bytes")
                if i - pos + length > self.max_size:
                    raise MQTTError(PACKET_TOO_LARGE, "packet larger than the maximum packet size")
                if end - i < length:
                    return out
                first = buf[pos]
                body = memoryview(buf)[i:i + length]
                try:
                    out.append(self._packet(first >> 4, first & 0x0F, body))
                finally:
                    body.release()
                pos = i + length
            return out
        finally:
            del buf[:pos]

    def _packet(self, kind: int, flags: int, body: memoryview) -> Packet:
        if kind == PUBLISH:
            return self._publish(flags, body)
        required = REQUIRED_FLAGS.get(kind)
        if required is None:
            raise MQTTError(MALFORMED_PACKET, "reserved packet type 0")
        if flags != required:
            raise MQTTError(MALFORMED_PACKET, f"packet type {kind} with flags {flags:#x}")
        r = _Reader(body)
        v5 = self.version == MQTT_5
        if kind == CONNECT:
            return self._connect(r)
        if self.version == 0:
            raise MQTTError(PROTOCOL_ERROR, "the first packet must be CONNECT")
        if kind in (PUBACK, PUBREC, PUBREL, PUBCOMP):
            packet_id = r.u16()
            reason, props = SUCCESS, {}
            if v5 and r.left:
                reason = r.byte()
                if r.left:
                    props = r.properties()
            self._done(r)
            return Ack(kind, packet_id, reason, props)
        if kind == SUBSCRIBE:
            return self._subscribe(r, v5)
        if kind == UNSUBSCRIBE:
            packet_id = r.u16()
            props = r.properties() if v5 else {}
            filters = []
            while r.left:
                filters.append(r.utf8())
            if not filters:
                raise MQTTError(PROTOCOL_ERROR, "UNSUBSCRIBE without a topic filter")
            return Unsubscribe(packet_id, filters, props)
        if kind == PINGREQ:
            self._done(r)
            return PingReq()
        if kind == DISCONNECT:
            reason, props = SUCCESS, {}
            if v5 and r.left:
                reason = r.byte()
                if r.left:
                    props = r.properties()
            self._done(r)
            return Disconnect(reason, props)
        if kind == AUTH:
            if not v5:
                raise MQTTError(PROTOCOL_ERROR, "AUTH is MQTT 5 only")
            reason, props = SUCCESS, {}
            if r.left:
                reason = r.byte()
                if r.left:
                    props = r.properties()
            self._done(r)
            return Auth(reason, props)
        # packets only a server sends (the parser also reads a server's stream, in tests)
        if kind == CONNACK:
            flags_byte = r.byte()
            if flags_byte & 0xFE:
                raise MQTTError(MALFORMED_PACKET, "CONNACK reserved flags set")
            reason = r.byte()
            props = r.properties() if v5 else {}
            self._done(r)
            return ConnAck(reason, bool(flags_byte & 1), props)
        if kind == SUBACK:
            packet_id = r.u16()
            props = r.properties() if v5 else {}
            return SubAck(packet_id, list(r.rest()), props)
        if kind == UNSUBACK:
            packet_id = r.u16()
            props = r.properties() if v5 else {}
            return UnsubAck(packet_id, list(r.rest()) if v5 else [], props)
        self._done(r)
        return PingResp()

    @staticmethod
    def _done(r: _Reader) -> None:
        if r.left:
            raise MQTTError(MALFORMED_PACKET, "packet longer than its fields")

    def _connect(self, r: _Reader) -> Connect:
        if self.version:
            raise MQTTError(PROTOCOL_ERROR, "second CONNECT")
        name = r.utf8()
        level = r.byte()
        if name not in ("MQTT", "MQIsdp"):
            raise MQTTError(PROTOCOL_ERROR, f"protocol name {name!r}")
        if level not in (MQTT_311, MQTT_5):
            self.version = level
            raise MQTTError(UNSUPPORTED_PROTOCOL_VERSION, f"protocol level {level}")
        if name != "MQTT":
            raise MQTTError(PROTOCOL_ERROR, f"protocol name {name!r} for level {level}")
        self.version = level
        v5 = level == MQTT_5
        flags = r.byte()
        if flags & 0x01:
            raise MQTTError(MALFORMED_PACKET, "CONNECT reserved flag set")
        has_will = bool(flags & 0x04)
        will_qos = (flags >> 3) & 0x03
        will_retain = bool(flags & 0x20)
        if will_qos == 3:
            raise MQTTError(MALFORMED_PACKET, "will QoS 3")
        if not has_will and (will_qos or will_retain):
            raise MQTTError(MALFORMED_PACKET, "will QoS or retain without a will")
        has_password, has_username = bool(flags & 0x40), bool(flags & 0x80)
        if has_password and not has_username and not v5:
            raise MQTTError(PROTOCOL_ERROR, "password without a user name")
        keep_alive = r.u16()
        props = r.properties() if v5 else {}
        client_id = r.utf8()
        will = None
        if has_will:
            will_props = r.properties() if v5 else {}
            topic = r.utf8()
            payload = r.binary()
            will = Will(topic, payload, will_qos, will_retain, will_props)
        username = r.utf8() if has_username else None
        password = r.binary() if has_password else None
        self._done(r)
        return Connect(client_id, level, bool(flags & 0x02), keep_alive, username, password, will, props, name)

    def _publish(self, flags: int, body: memoryview) -> Publish:
        if self.version == 0:
            raise MQTTError(PROTOCOL_ERROR, "the first packet must be CONNECT")
        qos = (flags >> 1) & 0x03
        if qos == 3:
            raise MQTTError(MALFORMED_PACKET, "PUBLISH with QoS 3")
        dup = bool(flags & 0x08)
        if dup and qos == 0:
            raise MQTTError(MALFORMED_PACKET if self.version != MQTT_5 else PROTOCOL_ERROR,
                            "DUP set on a QoS 0 PUBLISH")
        r = _Reader(body)
        topic = r.utf8()
        packet_id = 0
        if qos:
            packet_id = r.u16()
            if packet_id == 0:
                raise MQTTError(PROTOCOL_ERROR, "packet identifier 0")
        props = r.properties() if self.version == MQTT_5 else {}
        return Publish(topic, r.rest(), qos, bool(flags & 0x01), dup, packet_id, props)

    def _subscribe(self, r: _Reader, v5: bool) -> Subscribe:
        packet_id = r.u16()
        if packet_id == 0:
            raise MQTTError(PROTOCOL_ERROR, "packet identifier 0")
        props = r.properties() if v5 else {}
        requests = []
        while r.left:
            topic = r.utf8()
            options = r.byte()
            qos = options & 0x03
            if qos == 3:
                raise MQTTError(MALFORMED_PACKET, "subscription QoS 3")
            if v5:
                handling = (options >> 4) & 0x03
                if options & 0xC0 or handling == 3:
                    raise MQTTError(MALFORMED_PACKET, "subscription options reserved bits set")
                requests.append(SubscriptionRequest(topic, qos, bool(options & 0x04), bool(options & 0x08),
                                                    handling))
            else:
                if options & 0xFC:
                    raise MQTTError(MALFORMED_PACKET, "subscription options reserved bits set")
                requests.append(SubscriptionRequest(topic, qos))
        if not requests:
            raise MQTTError(PROTOCOL_ERROR, "SUBSCRIBE without a topic filter")
        return Subscribe(packet_id, requests, props)


# -- writing -------------------------------------------------------------------------------------------

_SMALL = [bytes((n,)) for n in range(128)]
"""The one-byte variable byte integers."""


def varint(value: int) -> bytes:
    if value < 128:
        return _SMALL[value]
    out = bytearray()
    while True:
        b = value & 0x7F
        value >>= 7
        if value:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _str(value: str) -> bytes:
    raw = value.encode()
    return struct.pack(">H", len(raw)) + raw


def _bin(value: bytes) -> bytes:
    return struct.pack(">H", len(value)) + value


def encode_properties(props: Properties) -> bytes:
    """The property block (its length first) of ``props``."""
    out = bytearray()
    for name, value in props.items():
        ident, kind = PROPERTY_IDS[name]
        values = value if name in REPEATABLE else (value,)
        for v in values:
            out += varint(ident)
            if kind == BYTE:
                out.append(v)
            elif kind == U16:
                out += struct.pack(">H", v)
            elif kind == U32:
                out += struct.pack(">I", v)
            elif kind == VARINT:
                out += varint(v)
            elif kind == UTF8:
                out += _str(v)
            elif kind == BINARY:
                out += _bin(v)
            else:
                out += _str(v[0]) + _str(v[1])
    return varint(len(out)) + bytes(out)


def _frame(first: int, body: bytes) -> bytes:
    return bytes((first,)) + varint(len(body)) + body


def encode_publish(topic: bytes, payload: bytes, qos: int = 0, retain: bool = False, dup: bool = False,
                   packet_id: int = 0, properties: bytes | None = None) -> bytes:
    """A ``PUBLISH`` (the delivery path's encoder: ``topic`` already UTF-8, ``properties`` an
    encoded block or ``None`` for MQTT 3.1.1)."""
    size = len(topic)
    out = bytearray(((0x30 | (0x08 if dup else 0) | (qos << 1) | (1 if retain else 0)),))
    out += varint(2 + size + (2 if qos else 0) + (len(properties) if properties is not None else 0) + len(payload))
    out.append(size >> 8)
    out.append(size & 0xFF)
    out += topic
    if qos:
        out.append(packet_id >> 8)
        out.append(packet_id & 0xFF)
    if properties is not None:
        out += properties
    out += payload
    return bytes(out)


def encode_ack(kind: int, packet_id: int, reason: int, v5: bool) -> bytes:
    """A ``PUBACK``, ``PUBREC``, ``PUBREL`` or ``PUBCOMP`` without properties (the hot path's
    encoder, with no :class:`Ack` to make; :func:`encode` uses it too)."""
    first = (kind << 4) | (2 if kind == PUBREL else 0)
    if v5 and reason != SUCCESS:
        return bytes((first, 3, packet_id >> 8, packet_id & 0xFF, reason))
    return bytes((first, 2, packet_id >> 8, packet_id & 0xFF))


def encode(packet: Packet, version: int) -> bytes:
    """``packet`` as bytes for a connection at protocol level ``version``."""
    v5 = version == MQTT_5
    if isinstance(packet, Publish):
        return encode_publish(packet.topic.encode(), packet.payload, packet.qos, packet.retain, packet.dup,
                              packet.packet_id, encode_properties(packet.properties) if v5 else None)
    if isinstance(packet, Ack):
        if not (v5 and packet.properties):
            return encode_ack(packet.kind, packet.packet_id, packet.reason, v5)
        body = struct.pack(">H", packet.packet_id) + bytes((packet.reason,)) + encode_properties(packet.properties)
        return _frame((packet.kind << 4) | REQUIRED_FLAGS[packet.kind], body)
    if isinstance(packet, ConnAck):
        body = bytes((1 if packet.session_present else 0, packet.reason))
        if v5:
            body += encode_properties(packet.properties)
        return _frame(CONNACK << 4, body)
    if isinstance(packet, SubAck):
        body = struct.pack(">H", packet.packet_id)
        if v5:
            body += encode_properties(packet.properties)
        return _frame(SUBACK << 4, body + bytes(packet.reasons))
    if isinstance(packet, UnsubAck):
        body = struct.pack(">H", packet.packet_id)
        if v5:
            body += encode_properties(packet.properties) + bytes(packet.reasons)
        return _frame(UNSUBACK << 4, body)
    if isinstance(packet, PingReq):
        return b"\xc0\x00"
    if isinstance(packet, PingResp):
        return b"\xd0\x00"
    if isinstance(packet, Disconnect):
        body = b""
        if v5 and (packet.reason != SUCCESS or packet.properties):
            body = bytes((packet.reason,)) + (encode_properties(packet.properties) if packet.properties else b"")
        return _frame(DISCONNECT << 4, body)
    if isinstance(packet, Auth):
        body = bytes((packet.reason,)) + encode_properties(packet.properties)
        return _frame(AUTH << 4, body)
    if isinstance(packet, Subscribe):
        body = struct.pack(">H", packet.packet_id)
        if v5:
            body += encode_properties(packet.properties)
        for req in packet.requests:
            options = req.qos
            if v5:
                options |= (0x04 if req.no_local else 0) | (0x08 if req.retain_as_published else 0) | (
                    req.retain_handling << 4)
            body += _str(req.filter) + bytes((options,))
        return _frame((SUBSCRIBE << 4) | 2, body)
    if isinstance(packet, Unsubscribe):
        body = struct.pack(">H", packet.packet_id)
        if v5:
            body += encode_properties(packet.properties)
        return _frame((UNSUBSCRIBE << 4) | 2, body + b"".join(_str(f) for f in packet.filters))
    # Connect
    flags = (0x02 if packet.clean_start else 0)
    will = packet.will
    if will is not None:
        flags |= 0x04 | (will.qos << 3) | (0x20 if will.retain else 0)
    if packet.password is not None:
        flags |= 0x40
    if packet.username is not None:
        flags |= 0x80
    body = _str(packet.protocol_name) + bytes((packet.version, flags)) + struct.pack(">H", packet.keep_alive)
    if packet.version == MQTT_5:
        body += encode_properties(packet.properties)
    body += _str(packet.client_id)
    if will is not None:
        if packet.version == MQTT_5:
            body += encode_properties(will.properties)
        body += _str(will.topic) + _bin(will.payload)
    if packet.username is not None:
        body += _str(packet.username)
    if packet.password is not None:
        body += _bin(packet.password)
    return _frame(CONNECT << 4, body)


def encode_connack_v3(return_code: int, session_present: bool = False) -> bytes:
    """An MQTT 3.1.1 ``CONNACK`` (also the answer to an unsupported protocol level)."""
    return bytes((CONNACK << 4, 2, 1 if session_present else 0, return_code))
