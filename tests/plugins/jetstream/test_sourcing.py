"""Mirrors and sources on natsd across a restart: they resume where they stopped, with nothing lost
and nothing stored twice (side-by-side behaviour is in tests/interop/test_jetstream_mirrors_nats_server.py)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import nats
import pytest

from natsd import Server
from natsd.config.conf import parse

pytestmark = pytest.mark.timeout(60)


async def serve(store: Path) -> Server:
    server = Server(parse(f'host: 127.0.0.1\nport: -1\njetstream {{ store_dir: "{store}" }}'))
    await server.start()
    return server


async def until_count(js: object, stream: str, count: int, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        info = await js.stream_info(stream)  # type: ignore[attr-defined]
        if info.state.messages >= count or asyncio.get_running_loop().time() > deadline:
            assert info.state.messages == count, f"{stream}: {info.state.messages} messages, not {count}"
            return
        await asyncio.sleep(0.1)


async def test_sources_and_mirrors_resume_after_a_restart_without_duplicates(tmp_path: Path) -> None:
    server = await serve(tmp_path)
    nc = await nats.connect(server.client_url)
    js = nc.jetstream()
    await js.add_stream(name="EDGE", subjects=["metrics.>"])
    await nc.request("$JS.API.STREAM.CREATE.GLOBAL", json.dumps(
        {"name": "GLOBAL", "sources": [{"name": "EDGE"}]}).encode())
    await nc.request("$JS.API.STREAM.CREATE.COPY", json.dumps({"name": "COPY", "mirror": {"name": "EDGE"}}).encode())
    for i in range(10):
        await js.publish(f"metrics.{i % 3}", b"m%d" % i)
    await until_count(js, "GLOBAL", 10)
    await until_count(js, "COPY", 10)
    await nc.close()
    await server.shutdown()

    server = await serve(tmp_path)
    nc = await nats.connect(server.client_url)
    js = nc.jetstream()
    try:
        for i in range(10, 15):
            await js.publish(f"metrics.{i % 3}", b"m%d" % i)
        await until_count(js, "GLOBAL", 15)
        await until_count(js, "COPY", 15)
        await asyncio.sleep(1.5)  # long enough for a duplicate to show up, had one been sent
        assert (await js.stream_info("GLOBAL")).state.messages == 15
        origins = []
        for seq in range(1, 16):
            msg = await js.get_msg("GLOBAL", seq)
            fields = msg.headers["Nats-Stream-Source"].split(" ")
            origins.append(int(fields[1]))
            assert msg.data == b"m%d" % (int(fields[1]) - 1)
        assert origins == list(range(1, 16))  # each origin message once, in order
        copy = await js.get_msg("COPY", 12)
        assert (copy.seq, copy.data, copy.subject) == (12, b"m11", "metrics.2")  # the origin's sequence
    finally:
        await nc.close()
        await server.shutdown()
