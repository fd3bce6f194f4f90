"""Streams in one process: restarts, republish, bad config, key-value puts and gets through nats-py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nats
import pytest

from natsd import Server
from natsd.config import ConfigError
from natsd.config.conf import parse

pytestmark = pytest.mark.timeout(60)


async def serve(store: Path, extra: str = "") -> Server:
    server = Server(parse(f'host: 127.0.0.1\nport: -1\njetstream {{ store_dir: "{store}" {extra} }}'))
    await server.start()
    return server


async def test_streams_and_their_sequences_survive_a_restart(tmp_path: Path) -> None:
    server = await serve(tmp_path)
    nc = await nats.connect(server.client_url)
    js = nc.jetstream()
    await js.add_stream(name="ORDERS", subjects=["orders.*"], storage="file")
    await js.add_stream(name="SCRATCH", subjects=["scratch"], storage="memory")
    for i in range(10):
        await js.publish(f"orders.{i % 3}", b"order %d" % i)
    await js.purge_stream("ORDERS", keep=4)
    await js.publish("scratch", b"gone with the process")
    await nc.close()
    await server.shutdown()

    server = await serve(tmp_path)
    nc = await nats.connect(server.client_url)
    js = nc.jetstream()
    try:
        state = (await js.stream_info("ORDERS")).state
        assert (state.messages, state.first_seq, state.last_seq) == (4, 7, 10)
        assert (await js.get_last_msg("ORDERS", "orders.0")).data == b"order 9"
        ack = await js.publish("orders.1", b"after the restart")
        assert ack.seq == 11  # no sequence is handed out twice
        assert [s.config.name for s in await js.streams_info()] == ["ORDERS"]  # memory streams are gone
    finally:
        await nc.close()
        await server.shutdown()


async def test_republish_sends_the_stored_message_on_with_where_it_is(tmp_path: Path) -> None:
    server = await serve(tmp_path)
    nc = await nats.connect(server.client_url)
    js = nc.jetstream()
    try:
        await js.add_stream(name="EVENTS", subjects=["events.>"],
                            republish={"src": "events.>", "dest": "audit.>"})
        sub = await nc.subscribe("audit.>")
        await js.publish("events.login", b"alice", headers={"X-Trace": "t1"})
        await js.publish("events.login", b"bob")
        first, second = await sub.next_msg(2), await sub.next_msg(2)
        assert (first.subject, first.data, first.headers["X-Trace"]) == ("audit.login", b"alice", "t1")
        assert first.headers["Nats-Stream"] == "EVENTS" and first.headers["Nats-Sequence"] == "1"
        assert (second.headers["Nats-Sequence"], second.headers["Nats-Last-Sequence"]) == ("2", "1")
    finally:
        await nc.close()
        await server.shutdown()


async def test_key_value_put_get_and_delete(tmp_path: Path) -> None:
    server = await serve(tmp_path)
    nc = await nats.connect(server.client_url)
    try:
        kv = await nc.jetstream().create_key_value(bucket="config", history=3)
        for rate in (b"10", b"20", b"30", b"40"):
            revision = await kv.put("device.7.rate", rate)
        entry = await kv.get("device.7.rate")
        assert (entry.value, entry.revision) == (b"40", revision)
        assert (await kv.status()).values == 3  # history 3: the oldest put is gone
        await kv.delete("device.7.rate")
        with pytest.raises(nats.js.errors.KeyNotFoundError):
            await kv.get("device.7.rate")
    finally:
        await nc.close()
        await server.shutdown()


@pytest.mark.parametrize(("text", "message"), [
    ("jetstream: maybe", "expected jetstream to be a boolean or a map"),
    ("jetstream { sync_interval: fast }", "sync_interval"),
    ("jetstream { cipher: aes }", "not supported by natsd"),
    ("jetstream { bogus: 1 }", "unknown field 'bogus'"),
    ("jetstream { domain: 'a.b' }", "invalid domain name"),
])
def test_settings_errors_name_the_key(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Server(parse("port: -1\n" + text)).configure()


async def test_the_consumer_api_says_it_is_not_there_yet(tmp_path: Path) -> None:
    server = await serve(tmp_path)
    nc = await nats.connect(server.client_url)
    try:
        reply: Any = await nc.request("$JS.API.CONSUMER.INFO.S.c", b"")
        assert b"natsd does not implement this JetStream API yet" in reply.data
    finally:
        await nc.close()
        await server.shutdown()
