"""Sparkplug B awareness, as nats-server has it (pure functions: no I/O, no clock).

Sparkplug B runs over MQTT on topics ``spBv1.0/<group>/<type>/<edge node>[/<device>]``.
A Sparkplug Aware MQTT server, which nats-server is and natsd therefore is:

- keeps every NBIRTH and DBIRTH (published with retain false, as Sparkplug
  requires) as the retained message of ``$sparkplug/certificates/`` + its
  topic, and sends that copy on at once as a plain NATS message; subscribers
  at QoS 0 receive it with the retain flag set. A birth published with
  retain true is invalid and not retained at all;
- sets the timestamp (protobuf field 1, a varint of milliseconds since the
  epoch) of an NDEATH or DDEATH to the time it delivers the message to an
  MQTT subscriber, adding the field if the payload has none; a payload that
  is not protobuf goes unchanged. Retained deliveries keep their payload.

The protobuf scanning follows nats-server's ``protoScanField``: tags are
varints of at most 10 bytes with a field number from 1 to 2**31 - 1; wire
types 0 (varint), 1 (fixed64), 2 (length-delimited) and 5 (fixed32) are
read, any other is an error; only the fields before the first timestamp are
checked, the bytes after it are kept as they are.
"""

from __future__ import annotations

from typing import NamedTuple

NAMESPACE = "spBv1.0/"
"""The topic prefix of Sparkplug B: only topics starting with it are looked at further."""
CERTIFICATES = "$sparkplug/certificates/"
"""Where births are kept: ``$sparkplug/certificates/spBv1.0/<group>/NBIRTH/<edge node>``."""
PREFIXES = (NAMESPACE, CERTIFICATES)
"""``str.startswith`` takes the tuple: one call tells whether a topic may be a Sparkplug one."""
BIRTHS = frozenset(("NBIRTH", "DBIRTH"))
DEATHS = frozenset(("NDEATH", "DDEATH"))
TIMESTAMP_TAG = b"\x08"
"""Field 1, wire type 0 (varint): the payload's ``timestamp``."""
MAX_FIELD = 2**31 - 1


class TopicKind(NamedTuple):
    """What a topic is to Sparkplug B (all false: nothing)."""

    birth: bool = False
    death: bool = False
    certificate: bool = False


NOTHING = TopicKind()


def parse_topic(topic: str) -> TopicKind:
    """nats-server's ``sparkbParseBirthDeathTopic``: a birth or death topic, maybe under ``$sparkplug/certificates/``.

    After ``spBv1.0/`` come 3 or 4 levels (group, type, edge node, device; empty ones count);
    the type is NBIRTH or DBIRTH (a birth) or NDEATH or DDEATH (a death).
    """
    certificate = topic.startswith(CERTIFICATES)
    if certificate:
        topic = topic[len(CERTIFICATES):]
    if not topic.startswith(NAMESPACE):
        return NOTHING
    levels = topic[len(NAMESPACE):].split("/")
    if not 3 <= len(levels) <= 4:
        return NOTHING
    kind = levels[1]
    if kind in BIRTHS:
        return TopicKind(birth=True, certificate=certificate)
    if kind in DEATHS:
        return TopicKind(death=True, certificate=certificate)
    return NOTHING


class ProtobufError(ValueError):
    """Bytes that are not a protobuf message (as nats-server's scanner reads them)."""


def scan_varint(data: bytes, pos: int) -> tuple[int, int]:
    """``(value, end)`` of the varint at ``data[pos:]``: at most 10 bytes, the tenth 0 or 1."""
    value = 0
    for i in range(10):
        if pos + i >= len(data):
            raise ProtobufError("varint cut short")
        byte = data[pos + i]
        if i == 9 and byte > 1:
            raise ProtobufError("varint overflows 64 bits")
        value |= (byte & 0x7F) << (7 * i)
        if byte < 0x80:
            return value, pos + i + 1
    raise ProtobufError("varint overflows 64 bits")  # unreachable: the tenth byte is 0 or 1


def scan_field(data: bytes, pos: int) -> tuple[int, int, int]:
    """``(field number, wire type, end)`` of the field that starts at ``data[pos:]``."""
    tag, pos = scan_varint(data, pos)
    number, wire = tag >> 3, tag & 7
    if not 1 <= number <= MAX_FIELD:
        raise ProtobufError(f"invalid field number {number}")
    if wire == 0:
        _, end = scan_varint(data, pos)
    elif wire == 1:
        end = pos + 8
    elif wire == 5:
        end = pos + 4
    elif wire == 2:
        length, pos = scan_varint(data, pos)
        end = pos + length
    else:
        raise ProtobufError(f"unsupported wire type {wire}")
    if end > len(data):
        raise ProtobufError("field cut short")
    return number, wire, end


def encode_varint(value: int) -> bytes:
    """``value`` (0 to 2**64 - 1) as a protobuf varint, in as few bytes as it takes."""
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def replace_death_timestamp(payload: bytes, now_ms: int) -> bytes:
    """``payload`` with its timestamp set to ``now_ms`` (nats-server's ``sparkbReplaceDeathTimestamp``).

    The first field 1 of wire type varint is replaced, everything else is kept byte for byte;
    without one the field is appended (an empty payload becomes just the timestamp). A payload
    that does not scan as protobuf up to the timestamp is returned as it is.
    """
    stamp = TIMESTAMP_TAG + encode_varint(now_ms)
    pos = 0
    try:
        while pos < len(payload):
            number, wire, end = scan_field(payload, pos)
            if number == 1 and wire == 0:
                return payload[:pos] + stamp + payload[end:]
            pos = end
    except ProtobufError:
        return payload
    return payload + stamp


def on_delivery(topic: str, payload: bytes, qos: int, retain: bool, now_ms: int) -> tuple[bytes, bool]:
    """``(payload, retain flag)`` an MQTT subscriber gets for a live message on ``topic`` (``retain``:
    a retained message sent to a new subscription, which goes as it is).

    A birth under ``$sparkplug/certificates/`` delivered at QoS 0 has the retain flag; a death
    (not under it) gets ``now_ms`` as its timestamp (nats-server's ``mqttEnqueuePublishMsgTo``).
    """
    if retain:
        return payload, retain
    kind = parse_topic(topic)
    if kind.birth and qos == 0:
        return payload, kind.certificate
    if kind.death and not kind.certificate:
        return replace_death_timestamp(payload, now_ms), False
    return payload, False
