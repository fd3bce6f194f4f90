"""Where a source is, kept across restarts, purges and a recreated origin: natsd beside nats-server 2.15.1.

nats-server keeps each source's last origin sequence and the origin's
identity in the stream's store, apart from the messages: a purge of the
sourcing stream does not make it source everything again, and an origin
deleted and created anew (another identity) is sourced from its start.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

import nats
import pytest
import transcripts as T  # on sys.path via conftest.py
from conftest import require_nats_server
from test_jetstream_streams_nats_server import Proc

pytestmark = pytest.mark.timeout(120)

KINDS = ["nats-server", "natsd"]


def start(kind: str, tmp_path: Path, port: int, log: str) -> Proc:
    tmp_path.mkdir(exist_ok=True)
    conf = tmp_path / f"{kind}.conf"
    conf.write_text(f'port: {port}\nhost: 127.0.0.1\njetstream {{ store_dir: "{tmp_path / kind}" }}\n')
    program = [require_nats_server()] if kind == "nats-server" else [sys.executable, "-m", "natsd"]
    return Proc(program + ["-c", str(conf)], port, tmp_path / log)


async def settled(nc: nats.NATS, stream: str, wanted: int, timeout: float = 30) -> int:
    """The stream's message count once it reached ``wanted`` (or the deadline passed) and then
    stayed put for a second (so that anything sourced twice shows)."""
    deadline = time.monotonic() + timeout
    js = nc.jetstream()
    while (await js.stream_info(stream)).state.messages < wanted and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    await asyncio.sleep(1.0)
    return (await js.stream_info(stream)).state.messages


async def origins(nc: nats.NATS, stream: str) -> list[tuple[str, bytes]]:
    """``(origin sequence, payload)`` of every message of ``stream``, in order."""
    out: list[tuple[str, bytes]] = []
    info = json.loads((await nc.request(f"$JS.API.STREAM.INFO.{stream}", b"", timeout=5)).data)
    for seq in range(info["state"]["first_seq"], info["state"]["last_seq"] + 1):
        msg = await nc.jetstream().get_msg(stream, seq)
        assert msg.headers is not None
        out.append((msg.headers["Nats-Stream-Source"].split(" ")[1], msg.data))
    return out


async def purged_then_restarted(kind: str, tmp_path: Path) -> dict[str, Any]:
    port = T.free_port()
    proc = start(kind, tmp_path, port, f"{kind}-1.log")
    try:
        nc = await nats.connect(f"nats://127.0.0.1:{port}")
        js = nc.jetstream()
        await js.add_stream(name="EDGE", subjects=["m.>"])
        await js.add_stream(name="GLOBAL", sources=[nats.js.api.StreamSource(name="EDGE")])
        for i in range(10):
            await js.publish(f"m.{i % 3}", b"a%d" % i)
        before = await settled(nc, "GLOBAL", 10)
        await js.purge_stream("GLOBAL")
        await nc.close()
    finally:
        proc.stop()
    proc = start(kind, tmp_path, port, f"{kind}-2.log")
    try:
        nc = await nats.connect(f"nats://127.0.0.1:{port}")
        js = nc.jetstream()
        for i in range(10, 15):
            await js.publish(f"m.{i % 3}", b"a%d" % i)
        after = await settled(nc, "GLOBAL", 5)
        seen = await origins(nc, "GLOBAL")
        await nc.close()
    finally:
        proc.stop()
    return {"before": before, "after": after, "origins": seen}


async def origin_recreated(kind: str, tmp_path: Path) -> dict[str, Any]:
    port = T.free_port()
    proc = start(kind, tmp_path, port, f"{kind}.log")
    try:
        nc = await nats.connect(f"nats://127.0.0.1:{port}")
        js = nc.jetstream()
        await js.add_stream(name="EDGE", subjects=["m.>"])
        await js.add_stream(name="GLOBAL", sources=[nats.js.api.StreamSource(name="EDGE")])
        for i in range(5):
            await js.publish(f"m.{i}", b"old%d" % i)
        first = await settled(nc, "GLOBAL", 5)
        await js.delete_stream("EDGE")
        await asyncio.sleep(0.5)  # created a moment later: another identity
        await js.add_stream(name="EDGE", subjects=["m.>"])
        for i in range(3):
            await js.publish(f"m.{i}", b"new%d" % i)
        # the source notices when it asks the origin again (its consumer went with the old origin)
        then = await settled(nc, "GLOBAL", 8, timeout=60)
        seen = await origins(nc, "GLOBAL")
        await nc.close()
    finally:
        proc.stop()
    return {"first": first, "then": then, "origins": seen}


async def test_a_purged_source_stream_resumes_after_a_restart_where_it_was(tmp_path: Path) -> None:
    seen = {kind: await purged_then_restarted(kind, tmp_path / kind) for kind in KINDS}
    assert seen["natsd"] == seen["nats-server"]
    assert seen["natsd"]["after"] == 5
    assert seen["natsd"]["origins"] == [(str(s), b"a%d" % (s - 1)) for s in range(11, 16)]


async def test_an_origin_deleted_and_created_again_is_sourced_from_its_start(tmp_path: Path) -> None:
    seen = {kind: await origin_recreated(kind, tmp_path / kind) for kind in KINDS}
    assert seen["natsd"] == seen["nats-server"]
    assert seen["natsd"]["origins"][5:] == [("1", b"new0"), ("2", b"new1"), ("3", b"new2")]
