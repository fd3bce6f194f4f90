"""The in-process API other plugins use (the MQTT plugin's QoS 1/2 messages), and the consumer
index behind interest retention: the same answers as through ``$JS.API`` and ``$JS.ACK``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import nats
import pytest
from nats.js.api import AckPolicy, ConsumerConfig, RetentionPolicy

from natsd import Server
from natsd.config.conf import parse
from natsd.plugin.contracts import LocalStream
from natsd_plugins.jetstream import JETSTREAM

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[Server, nats.NATS]]:
    """A server with JetStream, and a nats-py client of it."""
    server = Server(parse(f'host: 127.0.0.1\nport: -1\njetstream {{ store_dir: "{tmp_path}" }}'))
    await server.start()
    nc = await nats.connect(server.client_url)
    yield server, nc
    await nc.close()
    await server.shutdown()


async def stored(stream: LocalStream, subject: str, payload: bytes, headers: bytes | None = None
                 ) -> tuple[int, str | None]:
    """``store_local``'s answer, awaited."""
    answer: asyncio.Future[tuple[int, str | None]] = asyncio.get_running_loop().create_future()
    stream.store_local(subject, payload, headers, lambda seq, error: answer.set_result((seq, error)))
    return await asyncio.wait_for(answer, 5)


async def test_in_process_publishes_and_acks_answer_as_the_api_does(served: tuple[Server, nats.NATS]) -> None:
    server, nc = served
    js = nc.jetstream()
    await js.add_stream(name="I", subjects=["i.>"], retention=RetentionPolicy.INTEREST, max_msg_size=64)
    for name, filter_ in (("A", "i.a"), ("B", "i.>")):
        await js.add_consumer("I", ConsumerConfig(durable_name=name, filter_subject=filter_,
                                                  ack_policy=AckPolicy.EXPLICIT))
    jetstream = server.service("jetstream")
    assert jetstream is not None and jetstream.local_stream("$G", "nope") is None
    stream = jetstream.local_stream("$G", "I")
    assert stream is not None

    assert await stored(stream, "i.a", b"one") == (1, None)
    assert await stored(stream, "i.b", b"two", b"NATS/1.0\r\nNats-Msg-Id: m2\r\n\r\n") == (2, None)
    assert await stored(stream, "i.b", b"two again", b"NATS/1.0\r\nNats-Msg-Id: m2\r\n\r\n") == (2, None)
    # refused with the API's own description
    with pytest.raises(nats.js.errors.APIError) as refused:
        await js.publish("i.a", b"x" * 65)
    assert await stored(stream, "i.a", b"x" * 65) == (0, refused.value.description)

    a = await js.pull_subscribe("i.a", durable="A", stream="I")
    b = await js.pull_subscribe("i.>", durable="B", stream="I")
    (first,) = await a.fetch(1, timeout=2)
    assert first.data == b"one" and jetstream.ack_local("$G", first.reply.encode())
    assert (await js.stream_info("I")).state.messages == 2  # B has not acknowledged 1 yet
    for msg in await b.fetch(2, timeout=2):
        assert jetstream.ack_local("$G", msg.reply.encode())
    assert (await js.stream_info("I")).state.messages == 0  # every consumer that takes them did
    assert not jetstream.ack_local("$G", b"$JS.ACK.I.nobody.1.1.1.1.0")
    assert not jetstream.ack_local("$G", b"$JS.ACK.I.A")
    assert not jetstream.ack_local("OTHER", first.reply.encode())


async def test_the_consumer_index_follows_creates_updates_and_deletes(served: tuple[Server, nats.NATS]) -> None:
    server, nc = served
    js = nc.jetstream()
    await js.add_stream(name="I", subjects=["i.>"], retention=RetentionPolicy.INTEREST)
    stream = server.stash[JETSTREAM].local_stream("$G", "I")
    assert stream is not None and not stream.has_interest("i.a")
    await js.add_consumer("I", ConsumerConfig(durable_name="A", filter_subject="i.a",
                                              ack_policy=AckPolicy.EXPLICIT))
    await js.add_consumer("I", ConsumerConfig(durable_name="P", filter_subjects=["i.a", "i.b"],
                                              deliver_subject="deliver.p", ack_policy=AckPolicy.EXPLICIT))
    assert [c.name for c in stream.taking("i.a")] == ["A", "P"] and stream.has_interest("i.b")
    assert list(stream.pushing) == ["deliver.p"]

    await js.add_consumer("I", ConsumerConfig(durable_name="A", filter_subject="i.c",
                                              ack_policy=AckPolicy.EXPLICIT))  # an update
    assert [c.name for c in stream.taking("i.a")] == ["P"] and [c.name for c in stream.taking("i.c")] == ["A"]
    await js.delete_consumer("I", "P")
    assert not stream.has_interest("i.a") and stream.has_interest("i.c") and not stream.pushing
    # what nobody takes is acknowledged and not kept, as nats-server does
    await js.publish("i.a", b"nobody")
    await js.publish("i.c", b"for A")
    assert (await js.stream_info("I")).state.messages == 1
