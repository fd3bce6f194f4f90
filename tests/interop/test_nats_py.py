"""Unmodified nats-py against an in-process natsd (the ``natsd_server`` fixture)."""

from __future__ import annotations

import asyncio
from typing import Any

import nats
import pytest
from nats.errors import NoRespondersError, TimeoutError as NatsTimeout


async def collect(nc: Any, subject: str, queue: str = "") -> list[Any]:
    box: list[Any] = []

    async def cb(msg: Any) -> None:
        box.append(msg)

    await nc.subscribe(subject, queue=queue, cb=cb)
    return box


async def settle(nc: Any) -> None:
    await nc.flush()
    await asyncio.sleep(0.05)


async def test_pub_sub_wildcards(natsd_server: Any) -> None:
    nc = await nats.connect(natsd_server.url)
    star = await collect(nc, "orders.*")
    full = await collect(nc, "orders.>")
    literal = await collect(nc, "orders.new")
    await nc.flush()
    await nc.publish("orders.new", b"1")
    await nc.publish("orders.eu.new", b"2")
    await nc.publish("other", b"3")
    await settle(nc)
    assert [m.data for m in star] == [b"1"]
    assert [m.data for m in full] == [b"1", b"2"]
    assert [(m.subject, m.data) for m in literal] == [("orders.new", b"1")]
    await nc.close()


async def test_queue_group_delivers_each_message_once(natsd_server: Any) -> None:
    nc = await nats.connect(natsd_server.url)
    members = [await collect(nc, "work", queue="workers") for _ in range(4)]
    plain = await collect(nc, "work")
    await nc.flush()
    for i in range(200):
        await nc.publish("work", str(i).encode())
    await settle(nc)
    got = sorted(int(m.data) for box in members for m in box)
    assert got == list(range(200))
    assert sum(1 for box in members if box) >= 2  # spread over members, not all to one
    assert len(plain) == 200
    await nc.close()


async def test_request_reply_and_headers(natsd_server: Any) -> None:
    nc = await nats.connect(natsd_server.url)

    async def responder(msg: Any) -> None:
        await msg.respond(msg.data.upper(), ) if not msg.headers else await nc.publish(
            msg.reply, msg.data.upper(), headers={"Seen": msg.headers.get("X-Trace", "")})

    await nc.subscribe("svc.upper", cb=responder)
    reply = await nc.request("svc.upper", b"hello", timeout=2)
    assert reply.data == b"HELLO"
    reply = await nc.request("svc.upper", b"abc", timeout=2, headers={"X-Trace": "t-1"})
    assert reply.data == b"ABC" and reply.headers == {"Seen": "t-1"}
    await nc.close()


async def test_no_responders(natsd_server: Any) -> None:
    nc = await nats.connect(natsd_server.url)
    with pytest.raises(NoRespondersError):
        await nc.request("nobody.home", b"?", timeout=2)
    await nc.close()


async def test_headers_stripped_for_client_without_headers(natsd_server: Any) -> None:
    nc = await nats.connect(natsd_server.url)
    reader, writer = await asyncio.open_connection("127.0.0.1", natsd_server.port)
    await reader.readline()  # INFO
    writer.write(b'CONNECT {"verbose":false,"headers":false}\r\nSUB h 1\r\nPING\r\n')
    assert await reader.readline() == b"PONG\r\n"
    await nc.publish("h", b"body", headers={"K": "V"})
    await nc.flush()
    assert await asyncio.wait_for(reader.readline(), 2) == b"MSG h 1 4\r\n"
    assert await reader.readline() == b"body\r\n"
    writer.close()
    await nc.close()


async def test_auto_unsubscribe_and_drain(natsd_server: Any) -> None:
    nc = await nats.connect(natsd_server.url)
    sub = await nc.subscribe("limited")
    await sub.unsubscribe(limit=3)
    for i in range(10):
        await nc.publish("limited", str(i).encode())
    await nc.flush()
    got = []
    with pytest.raises(Exception):
        while True:
            got.append((await sub.next_msg(timeout=0.3)).data)
    assert got == [b"0", b"1", b"2"]
    other = await collect(nc, "d")
    await nc.publish("d", b"x")
    await nc.drain()
    assert [m.data for m in other] == [b"x"]
    assert nc.is_closed


async def test_echo_off(natsd_server: Any) -> None:
    nc = await nats.connect(natsd_server.url, no_echo=True)
    other = await nats.connect(natsd_server.url)
    mine = await collect(nc, "e")
    theirs = await collect(other, "e")
    await nc.flush()
    await other.flush()
    await nc.publish("e", b"from-nc")
    await other.publish("e", b"from-other")
    await settle(nc)
    await settle(other)
    assert [m.data for m in mine] == [b"from-other"]
    assert sorted(m.data for m in theirs) == [b"from-nc", b"from-other"]
    await nc.close()
    await other.close()


async def test_request_timeout_when_responder_silent(natsd_server: Any) -> None:
    nc = await nats.connect(natsd_server.url)
    await nc.subscribe("silent")
    with pytest.raises(NatsTimeout):
        await nc.request("silent", b"", timeout=0.2)
    await nc.close()


async def test_large_message_roundtrip(natsd_server: Any) -> None:
    nc = await nats.connect(natsd_server.url)
    sub = await nc.subscribe("big")
    body = bytes(range(256)) * 4000  # ~1 MB minus a little
    await nc.publish("big", body)
    msg = await sub.next_msg(timeout=5)
    assert msg.data == body
    await nc.close()
