"""Streams in one process: restarts, republish, bad config, key-value puts and gets through nats-py."""

from __future__ import annotations

import asyncio
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
    ("jetstream {}\naccounts { A { jetstream { max_streams: many } } }", r":3: key 'max_streams': expected a number"),
    ("jetstream {}\naccounts { A { jetstream { max_mem: lots } } }", r":3: key 'max_mem': invalid size"),
    ("jetstream {}\naccounts { A { jetstream { max_bytes: 5 } } }", r":3: key 'max_bytes': expected true or false"),
    ("jetstream {}\naccounts { A { jetstream { quota: 5 } } }", r":3: key 'quota': unknown field"),
    ("jetstream {}\naccounts { A { jetstream: sometimes } }", r":3: key 'jetstream': expected 'enabled' or 'disabled'"),
])
def test_settings_errors_name_the_key(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Server(parse("port: -1\n" + text)).configure()


async def test_pull_push_and_ordered_consumers_through_nats_py(tmp_path: Path) -> None:
    server = await serve(tmp_path)
    nc = await nats.connect(server.client_url)
    js = nc.jetstream()
    try:
        await js.add_stream(name="ORDERS", subjects=["orders.>"])
        for i in range(5):
            await js.publish(f"orders.{i % 2}", b"o%d" % i)
        pull = await js.pull_subscribe("orders.>", durable="worker")
        first = await pull.fetch(3, timeout=2)
        assert [(m.subject, m.data, m.metadata.sequence.stream) for m in first] == [
            ("orders.0", b"o0", 1), ("orders.1", b"o1", 2), ("orders.0", b"o2", 3)]
        for msg in first:
            await msg.ack_sync()
        info = await js.consumer_info("ORDERS", "worker")
        assert (info.delivered.stream_seq, info.ack_floor.stream_seq, info.num_pending) == (3, 3, 2)
        got: list[bytes] = []

        async def collect(msg: Any) -> None:
            got.append(msg.data)
            await msg.ack()

        await js.subscribe("orders.1", cb=collect, deliver_policy="all")
        ordered = await js.subscribe("orders.>", ordered_consumer=True)
        await js.publish("orders.1", b"live")
        assert [(await ordered.next_msg(2)).data for _ in range(6)] == [b"o0", b"o1", b"o2", b"o3", b"o4",
                                                                        b"live"]
        for _ in range(50):
            if len(got) == 3:
                break
            await asyncio.sleep(0.02)
        assert got == [b"o1", b"o3", b"live"]
    finally:
        await nc.close()
        await server.shutdown()


async def test_a_durable_consumer_resumes_where_its_acks_left_it(tmp_path: Path) -> None:
    server = await serve(tmp_path)
    nc = await nats.connect(server.client_url)
    js = nc.jetstream()
    await js.add_stream(name="JOBS", subjects=["jobs"])
    for i in range(6):
        await js.publish("jobs", b"job %d" % i)
    pull = await js.pull_subscribe("jobs", durable="runner")
    for msg in await pull.fetch(4, timeout=2):
        if msg.data != b"job 3":  # delivered, never acknowledged: due again after the restart
            await msg.ack_sync()
    await nc.close()
    await server.shutdown()

    server = await serve(tmp_path)
    nc = await nats.connect(server.client_url)
    js = nc.jetstream()
    try:
        info = await js.consumer_info("JOBS", "runner")
        assert (info.delivered.stream_seq, info.ack_floor.stream_seq, info.num_ack_pending) == (4, 3, 1)
        pull = await js.pull_subscribe("jobs", durable="runner")
        again = await pull.fetch(3, timeout=2)
        assert [m.data for m in again] == [b"job 3", b"job 4", b"job 5"]
        assert again[0].metadata.num_delivered == 2
    finally:
        await nc.close()
        await server.shutdown()


async def test_key_value_keys_and_watch(tmp_path: Path) -> None:
    server = await serve(tmp_path)
    nc = await nats.connect(server.client_url)
    try:
        kv = await nc.jetstream().create_key_value(bucket="devices")
        await kv.put("d1.rate", b"10")
        await kv.put("d2.rate", b"20")
        assert sorted(await kv.keys()) == ["d1.rate", "d2.rate"]
        watcher = await kv.watchall()
        seen = []
        while True:
            entry = await watcher.updates(timeout=2)
            if entry is None:  # the end of the initial values
                break
            seen.append((entry.key, entry.value))
        await kv.put("d1.rate", b"11")
        update = await watcher.updates(timeout=2)
        assert seen == [("d1.rate", b"10"), ("d2.rate", b"20")] and (update.key, update.value) == ("d1.rate", b"11")
        await watcher.stop()
    finally:
        await nc.close()
        await server.shutdown()


async def test_jsz_reports_streams_consumers_and_damage(tmp_path: Path) -> None:
    import json
    import urllib.request

    server = Server(parse(f'host: 127.0.0.1\nport: -1\nhttp: 127.0.0.1:-1\njetstream {{ store_dir: "{tmp_path}" }}'))
    await server.start()
    nc = await nats.connect(server.client_url)
    try:
        js = nc.jetstream()
        await js.add_stream(name="S", subjects=["s.>"])
        await js.publish("s.a", b"x")
        await js.add_consumer("S", durable_name="D")
        url = server.ports["monitoring"][0] + "/jsz?accounts=true&consumers=true&config=true"
        jsz = json.loads(await asyncio.to_thread(lambda: urllib.request.urlopen(url).read()))
        assert (jsz["streams"], jsz["consumers"], jsz["messages"], jsz["natsd"]) == (
            1, 1, 1, {"damaged_messages": 0})
        assert list(jsz)[:10] == ["memory", "storage", "reserved_memory", "reserved_storage", "accounts",
                                  "ha_assets", "api", "server_id", "now", "config"]
        [account] = jsz["account_details"]
        [stream] = account["stream_detail"]
        assert stream["name"] == "S" and stream["config"]["name"] == "S"
        assert [c["name"] for c in stream["consumer_detail"]] == ["D"]
    finally:
        await nc.close()
        await server.shutdown()


async def test_the_api_answers_under_the_servers_domain_too(tmp_path: Path) -> None:
    """With ``domain: hub``, ``$JS.hub.API.>`` is the same API as ``$JS.API.>`` (clients that pick a
    domain, ``nc.jetstream(domain=...)``, send there)."""
    server = await serve(tmp_path, ', domain: "hub"')
    nc = await nats.connect(server.client_url)
    try:
        local, hub = nc.jetstream(), nc.jetstream(domain="hub")
        await hub.add_stream(name="EDGE", subjects=["edge.>"])
        ack = await local.publish("edge.temp", b"21")
        assert (ack.stream, ack.seq, ack.domain) == ("EDGE", 1, "hub")
        assert (await hub.account_info()).domain == "hub"
        assert (await hub.stream_info("EDGE")).state.messages == 1
        sub = await hub.pull_subscribe("edge.>", durable="reader", stream="EDGE")
        msgs = await sub.fetch(1, timeout=2)  # MSG.NEXT under the domain prefix
        assert [m.data for m in msgs] == [b"21"]
        with pytest.raises(nats.js.errors.ServiceUnavailableError):
            await nc.jetstream(domain="elsewhere", timeout=0.5).account_info()
    finally:
        await nc.close()
        await server.shutdown()


async def test_prometheus_metrics_show_streams_and_consumers(tmp_path: Path) -> None:
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    server = Server(parse(f'host: 127.0.0.1\nport: -1\nhttp_port: -1\njetstream {{ store_dir: "{tmp_path}" }}'))
    await server.start()
    nc = await nats.connect(server.client_url)
    try:
        js = nc.jetstream()
        await js.add_stream(name="METERED", subjects=["metered.>"])
        for i in range(5):
            await js.publish(f"metered.{i}", b"m")
        sub = await js.pull_subscribe("metered.>", durable="reader", stream="METERED")
        await sub.fetch(2, timeout=2)
        from natsd_plugins.monitor import http_listener

        listener = http_listener(server)
        assert listener is not None
        body = await asyncio.to_thread(lambda: urllib.request.urlopen(f"{listener.url}/metrics", timeout=5).read())
        samples = {(s.name, s.labels.get("stream"), s.labels.get("consumer")): s.value
                   for family in text_string_to_metric_families(body.decode()) for s in family.samples}
        assert samples[("nats_jetstream_streams", None, None)] == 1
        assert samples[("nats_jetstream_messages", None, None)] == 5
        assert samples[("nats_jetstream_stream_last_seq", "METERED", None)] == 5
        assert samples[("nats_jetstream_consumer_num_ack_pending", "METERED", "reader")] == 2
        assert samples[("nats_jetstream_consumer_num_pending", "METERED", "reader")] == 3
        assert samples[("nats_jetstream_syncs", None, None)] >= 1
    finally:
        await nc.close()
        await server.shutdown()


async def test_object_store_chunks_metadata_delete_and_seal(tmp_path: Path) -> None:
    """nats-py's object store on natsd: a file bigger than a chunk, its metadata and an update of
    it, a delete, sealing."""
    import os

    server = await serve(tmp_path)
    nc = await nats.connect(server.client_url)
    try:
        obs = await nc.jetstream().create_object_store("firmware")
        image = os.urandom(300_000)  # about 2.3 chunks of 128 KiB
        info = await obs.put("device-v2.bin", image, meta=nats.js.api.ObjectMeta(description="v2"))
        assert (info.size, info.chunks) == (300_000, 3)
        got = await obs.get("device-v2.bin")
        assert got.data == image and got.info.description == "v2"
        await obs.put("notes.txt", b"release notes")
        await obs.update_meta("notes.txt", nats.js.api.ObjectMeta(name="notes.txt", description="for v2"))
        notes = await obs.get("notes.txt")
        assert (notes.data, notes.info.description) == (b"release notes", "for v2")
        assert sorted(o.name for o in await obs.list()) == ["device-v2.bin", "notes.txt"]
        await obs.delete("device-v2.bin")
        with pytest.raises(nats.js.errors.ObjectNotFoundError):  # its meta says deleted: nats-py hides it
            await obs.get("device-v2.bin")
        await obs.seal()
        assert (await obs.status()).sealed
        with pytest.raises(nats.js.errors.BadRequestError):
            await obs.put("late.bin", b"too late")
    finally:
        await nc.close()
        await server.shutdown()
