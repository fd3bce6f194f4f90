"""Sparkplug B over MQTT 3.1.1 on natsd and on nats-server 2.15.1, side by side.

Both servers are Sparkplug Aware: a birth (NBIRTH, DBIRTH) published with
retain false is kept as the retained message of ``$sparkplug/certificates/``
plus its topic, and goes on at once to subscribers of that topic (retain flag
set at QoS 0) and to NATS subscribers of its subject; a birth with retain true
is kept nowhere. A death (NDEATH, DDEATH, a will or not) reaches MQTT
subscribers with its protobuf timestamp (field 1) set to when it was sent,
and NATS subscribers as published. Each case runs the same steps on both
servers; timestamps are checked against the clock, then blanked for the
comparison.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import nats
import pytest
from test_mqtt_nats_server import KINDS, Device, servers  # noqa: F401  (servers: the fixture)

pytestmark = pytest.mark.timeout(90)

CERTS = "$sparkplug/certificates/"


def varint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    return bytes(out + bytes([value]))


def read_varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[pos]
        value |= (byte & 0x7F) << shift
        pos, shift = pos + 1, shift + 7
        if byte < 0x80:
            return value, pos


def payload(timestamp: int | None, seq: int, metric: bytes = b"temp") -> bytes:
    """A Sparkplug B payload: timestamp (1, varint), a metric (2, bytes), seq (3, varint)."""
    head = b"\x08" + varint(timestamp) if timestamp is not None else b""
    return head + b"\x12" + varint(len(metric)) + metric + b"\x18" + varint(seq)


def stamp_at(data: bytes, pos: int, sent: tuple[float, float]) -> bytes:
    """``data`` with the timestamp field at ``pos`` checked to lie within ``sent`` (Unix seconds, a
    second's slack each way) and blanked to ``<ts>``; what precedes and follows it is kept as is."""
    assert data[pos:pos + 1] == b"\x08", data
    ts, end = read_varint(data, pos + 1)
    assert sent[0] - 1 <= ts / 1000 <= sent[1] + 1, (ts, sent)
    return data[:pos] + b"<ts>" + data[end:]


async def births_case(nats_port: int, mqtt_port: int) -> dict[str, Any]:
    nc = await nats.connect(f"nats://127.0.0.1:{nats_port}")
    on_nats = await nc.subscribe("$sparkplug.>")
    await nc.flush()
    live_ns = Device(mqtt_port, "b-live-ns")
    live_ns.subscribe("spBv1.0/#")
    live_certs = Device(mqtt_port, "b-live-certs")
    live_certs.subscribe(CERTS + "#", qos=1)
    everything = Device(mqtt_port, "b-everything")
    everything.subscribe("#")
    edge = Device(mqtt_port, "b-edge")
    edge.publish("spBv1.0/G1/NBIRTH/E1", payload(1000, 0), qos=0)  # as Sparkplug says: QoS 0, retain false
    edge.publish("spBv1.0/G1/DBIRTH/E1/D1", payload(1001, 1), qos=1)
    edge.publish("spBv1.0/G1/NDATA/E1", b"data: not a birth", qos=0)
    edge.publish("spBv1.0/G2/NBIRTH/E2", b"retained: invalid", qos=0, retain=True)  # kept nowhere
    edge.publish("spBv1.0/G1/NBIRTH/E1/D1/extra", b"five levels: not a birth", qos=0)
    edge.publish(CERTS + "spBv1.0/G3/NBIRTH/E3", b"straight to the certificates", qos=0)
    live = {"ns": sorted(live_ns.received(6)), "certs": sorted(live_certs.received(3))}
    live["more"] = sorted(live_ns.received(1, 0.3) + live_certs.received(1, 0.3))
    # '#' reaches no $ topic: neither the certificates nor the servers' own JetStream API replies
    live["everything"] = sorted(everything.received(20, 1.0))
    nats_saw = []
    for _ in range(3):
        msg = await on_nats.next_msg(timeout=3)
        nats_saw.append((msg.subject, msg.data, dict(msg.headers or {})))
    await asyncio.sleep(0.3)
    late_certs = Device(mqtt_port, "b-late-certs")
    late_certs.subscribe(CERTS + "#", qos=1)
    late_ns = Device(mqtt_port, "b-late-ns")
    late_ns.subscribe("spBv1.0/#", qos=1)
    late = {"certs": sorted(late_certs.received(2)), "ns": late_ns.received(1, 0.5)}
    late["more"] = late_certs.received(1, 0.5)
    edge.publish("spBv1.0/G1/NBIRTH/E1", b"", qos=0)  # an empty birth takes the certificate away
    await asyncio.sleep(0.3)
    after_empty = Device(mqtt_port, "b-after-empty")
    after_empty.subscribe(CERTS + "#")
    emptied = sorted(after_empty.received(2, 1.0))
    for device in (live_ns, live_certs, everything, edge, late_certs, late_ns, after_empty):
        device.close()
    await nc.close()
    return {"live": live, "nats": sorted(nats_saw), "late": late, "after_empty": emptied}


async def test_a_birth_is_kept_as_its_certificate(servers: dict[str, tuple[int, int]]) -> None:  # noqa: F811
    seen = {kind: await births_case(*servers[kind]) for kind in KINDS}
    assert seen["natsd"] == seen["nats-server"]
    mine = seen["natsd"]
    nbirth, dbirth = payload(1000, 0), payload(1001, 1)
    # the originals, as published (QoS 0 subscriptions); a '#' subscriber gets no certificate ($ topic)
    originals = [("spBv1.0/G1/DBIRTH/E1/D1", dbirth, 0, False), ("spBv1.0/G1/NBIRTH/E1", nbirth, 0, False),
                 ("spBv1.0/G1/NBIRTH/E1/D1/extra", b"five levels: not a birth", 0, False),
                 ("spBv1.0/G1/NDATA/E1", b"data: not a birth", 0, False),
                 ("spBv1.0/G2/NBIRTH/E2", b"retained: invalid", 0, False)]
    assert mine["live"]["ns"] == mine["live"]["everything"] == originals
    # the certificates at once, at QoS 0 with the retain flag (the subscription is QoS 1)
    assert mine["live"]["certs"] == [(CERTS + "spBv1.0/G1/DBIRTH/E1/D1", dbirth, 0, True),
                                     (CERTS + "spBv1.0/G1/NBIRTH/E1", nbirth, 0, True),
                                     (CERTS + "spBv1.0/G3/NBIRTH/E3", b"straight to the certificates", 0, True)]
    assert mine["live"]["more"] == []
    assert mine["nats"] == [("$sparkplug.certificates.spBv1//0.G1.DBIRTH.E1.D1", dbirth, {}),
                            ("$sparkplug.certificates.spBv1//0.G1.NBIRTH.E1", nbirth, {}),
                            ("$sparkplug.certificates.spBv1//0.G3.NBIRTH.E3", b"straight to the certificates",
                             {"Nmqtt-Pub": "0"})]
    # later: the certificates are retained at their birth's QoS; the birth with retain true is nowhere
    assert mine["late"] == {"certs": [(CERTS + "spBv1.0/G1/DBIRTH/E1/D1", dbirth, 1, True),
                                      (CERTS + "spBv1.0/G1/NBIRTH/E1", nbirth, 0, True)], "ns": [], "more": []}
    assert mine["after_empty"] == [(CERTS + "spBv1.0/G1/DBIRTH/E1/D1", dbirth, 0, True)]


async def deaths_case(nats_port: int, mqtt_port: int) -> dict[str, Any]:
    nc = await nats.connect(f"nats://127.0.0.1:{nats_port}")
    on_nats = await nc.subscribe("spBv1//0.G4.>")
    await nc.flush()
    watcher = Device(mqtt_port, "d-watch")
    watcher.subscribe("spBv1.0/G4/#", qos=1)
    will = payload(5, 9, b"m" * 200)  # a timestamp of 5 ms: the server's is longer
    edge = Device(mqtt_port, "d-edge", will=("spBv1.0/G4/NDEATH/E4", will, 1, False))
    before = time.time()
    edge.close(clean=False)  # the socket drops: the will goes out
    (got,) = watcher.received(1)
    after = time.time()
    msg = await on_nats.next_msg(timeout=3)
    out: dict[str, Any] = {"will": (got[0], stamp_at(got[1], 0, (before, after)), got[2], got[3]),
                           "will_nats": (msg.subject, msg.data == will)}
    other = Device(mqtt_port, "d-other")
    cases = [("no timestamp", payload(None, 3), 0), ("garbage", b"\xff\xff\xff", 1), ("empty", b"", 0),
             ("bytes first", b"\x12\x01x" + payload(7, 4), 1), ("fixed64 as field 1", b"\x09" + b"\x00" * 8, 0),
             ("cut short", payload(7, 4)[:-1] + b"\x12\x05ab", 0), ("group", b"\x0b\x0c", 0)]
    for i, (_, body, qos) in enumerate(cases):
        other.publish(f"spBv1.0/G4/DDEATH/E4/D{i}", body, qos=qos)
    got_all = sorted(watcher.received(len(cases)), key=lambda m: m[0])
    now = time.time()
    deaths = {}
    for (name, body, _), message in zip(cases, got_all, strict=True):
        data = message[1]
        if data != body:  # stamped: the field is where it was, or appended
            data = stamp_at(data, data.index(b"\x08") if name != "no timestamp" else len(body), (before, now))
        deaths[name] = (message[0], data, message[2], message[3])
    out["deaths"] = deaths
    other.publish("spBv1.0/G4/NDEATH/E5", payload(6, 1), qos=1, retain=True)
    await asyncio.sleep(0.3)
    late = Device(mqtt_port, "d-late")
    late.subscribe("spBv1.0/G4/NDEATH/+", qos=1)
    out["retained"] = late.received(1)
    other.publish("spBv1.0/G4/NDEATH/E5", b"", qos=1, retain=True)
    for device in (watcher, other, late):
        device.close()
    await nc.close()
    return out


async def test_a_death_is_stamped_when_delivered(servers: dict[str, tuple[int, int]]) -> None:  # noqa: F811
    seen = {kind: await deaths_case(*servers[kind]) for kind in KINDS}
    assert seen["natsd"] == seen["nats-server"]
    mine = seen["natsd"]
    # the will (QoS 1): its timestamp is the delivery's (checked against the clock), the rest unchanged
    assert mine["will"] == ("spBv1.0/G4/NDEATH/E4", b"<ts>" + payload(5, 9, b"m" * 200)[2:], 1, False)
    assert mine["will_nats"] == ("spBv1//0.G4.NDEATH.E4", True)  # NATS subscribers get it as published
    deaths = {name: got[1] for name, got in mine["deaths"].items()}
    assert deaths == {"no timestamp": payload(None, 3) + b"<ts>", "garbage": b"\xff\xff\xff", "empty": b"<ts>",
                      "bytes first": b"\x12\x01x<ts>" + payload(7, 4)[2:],
                      "fixed64 as field 1": b"\x09" + bytes(8) + b"<ts>",
                      "cut short": b"<ts>" + payload(7, 4)[2:-1] + b"\x12\x05ab", "group": b"\x0b\x0c"}
    assert mine["retained"] == [("spBv1.0/G4/NDEATH/E5", payload(6, 1), 1, True)]  # kept as it was published
