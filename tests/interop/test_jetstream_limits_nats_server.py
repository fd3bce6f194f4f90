"""JetStream account and server limits, answer by answer beside nats-server 2.15.1.

Both servers run the same configuration: a server with small
``max_memory_store``/``max_file_store``, and accounts with JetStream limits
(the ones nats.py's own tests use, and smaller ones). Each case runs its
requests as one account's user, against both servers at once, and compares
the replies as ``test_jetstream_streams_nats_server.py`` does (times and
server names masked, then key order). Every stream of every account is
deleted after each case.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator, Iterator
from typing import Any

import nats
import pytest
import transcripts as T  # on sys.path via conftest.py
from conftest import require_nats_server
from nats.aio.client import Client
from test_jetstream_streams_nats_server import (
    KINDS,
    SELF,
    Proc,
    Req,
    api,
    create,
    first_difference,
    first_order_difference,
    masked,
    pub,
    reply,
    update,
)

pytestmark = pytest.mark.timeout(120)

CONF = """
jetstream {{
  store_dir: "{store}"
  max_memory_store: 1MB
  max_file_store: 2MB
}}
accounts {{
  LIM {{
    users: [{{user: lim, password: lim}}]
    jetstream {{
      max_mem: 64KB, max_file: 32KB, max_streams: 3, max_consumers: 2, max_ack_pending: 100,
      memory_max_stream_bytes: 2048, store_max_stream_bytes: 4096, max_bytes_required: true
    }}
  }}
  TINY {{
    users: [{{user: tiny, password: tiny}}]
    jetstream {{ max_file: 600, max_mem: 300, max_streams: 2 }}
  }}
  OPEN {{
    users: [{{user: open, password: open}}]
    jetstream: enabled
  }}
  NOJS {{
    users: [{{user: nojs, password: nojs}}]
  }}
}}
"""

ACCOUNTS = {"LIM": "lim", "TINY": "tiny", "OPEN": "open", "NOJS": "nojs"}


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, int]]:
    """``kind -> port`` of a server of each kind running :data:`CONF`, each with its own store."""
    binary = require_nats_server()
    started: dict[str, Proc] = {}
    try:
        for kind in KINDS:
            work = tmp_path_factory.mktemp(f"jslim-{kind}")
            conf = work / "server.conf"
            conf.write_text(CONF.format(store=work / "store"))
            port = T.free_port()
            program = [binary] if kind == "nats-server" or SELF else [sys.executable, "-m", "natsd"]
            started[kind] = Proc(program + ["-c", str(conf), "-a", "127.0.0.1", "-p", str(port)], port,
                                 work / "server.log")
        yield {kind: proc.port for kind, proc in started.items()}
    finally:
        for proc in started.values():
            proc.stop()


async def _clean(nc: Client, kind: str) -> None:
    listed = json.loads((await nc.request("$JS.API.STREAM.LIST", b"", timeout=5)).data)
    for stream in listed.get("streams") or []:
        name = stream["config"]["name"]
        gone = json.loads((await nc.request(f"$JS.API.STREAM.DELETE.{name}", b"", timeout=5)).data)
        assert gone.get("success"), f"{kind} did not delete stream {name}: {gone}"


@pytest.fixture
async def conns(servers: dict[str, int]) -> AsyncIterator[dict[str, dict[str, Client]]]:
    """``account -> kind -> connection`` as that account's user; afterwards every stream goes."""
    opened = {account: {kind: await nats.connect(f"nats://{user}:{user}@127.0.0.1:{port}", allow_reconnect=False)
                        for kind, port in servers.items()}
              for account, user in ACCOUNTS.items()}
    yield opened
    try:
        for account, by_kind in opened.items():
            for kind, nc in by_kind.items():
                if account != "NOJS":
                    await _clean(nc, kind)
        await asyncio.sleep(0.1)  # nats-server's memory-stream deletion race (see the streams test)
    finally:
        for by_kind in opened.values():
            for nc in by_kind.values():
                await nc.close()


INFO = api("INFO")
KB = "k" * 100
BIG = "b" * 900_000


def consumer(stream: str, name: str, **config: Any) -> Req:
    return api(f"CONSUMER.CREATE.{stream}.{name}", {"stream_name": stream, "config": {"durable_name": name, **config}})


CASES: dict[str, tuple[str, list[Req]]] = {
    "account_info_with_limits": ("LIM", [INFO]),
    "account_info_without_limits": ("OPEN", [INFO]),
    "account_without_jetstream": ("NOJS", [
        INFO, create("S", subjects=["s"]), api("STREAM.INFO.S"), api("STREAM.NAMES"), api("CONSUMER.LIST.S"),
        api("CONSUMER.MSG.NEXT.S.C", {"batch": 1}), pub("s"),
    ]),
    "max_bytes_required_and_bounded": ("LIM", [
        create("NOMAX", subjects=["nomax"]),
        create("BIG", subjects=["big"], max_bytes=65536),
        create("BIGFILE", subjects=["bigfile"], max_bytes=65536, storage="file"),  # checked before the config
        create("BIGMEM", subjects=["bigmem"], max_bytes=4096, storage="memory"),
        create("OK", subjects=["ok"], max_bytes=128),
        pub("ok", "A" * 55), pub("ok", "A"), pub("ok", "A"), pub("ok", "A"),
        api("STREAM.INFO.OK"),
        INFO,
        api("STREAM.UPDATE.OK", {"name": "OK", "subjects": ["ok"], "max_bytes": 8192}),
        api("STREAM.UPDATE.OK", {"name": "OK", "subjects": ["ok"]}),
    ]),
    "max_streams": ("LIM", [
        create("S1", subjects=["s1"], max_bytes=1000),
        create("S2", subjects=["s2"], max_bytes=1000),
        create("S3", subjects=["s3"], max_bytes=1000),
        create("S4", subjects=["s4"], max_bytes=1000),
        create("S3", subjects=["s3"], max_bytes=1000),  # the same again: not a new stream
        INFO,
    ]),
    "account_storage_reserved": ("LIM", [
        create("R1", subjects=["r1"], max_bytes=4096),
        create("R2", subjects=["r2"], max_bytes=4096),
        create("R3", subjects=["r3"], max_bytes=4096),
        INFO,
    ]),
    "max_consumers_and_ack_pending": ("LIM", [
        create("C", subjects=["c"], max_bytes=1000),
        consumer("C", "D1", ack_policy="explicit", max_ack_pending=200),
        consumer("C", "D1", ack_policy="explicit"),
        consumer("C", "D2", ack_policy="explicit", max_ack_pending=50),
        consumer("C", "D3", ack_policy="explicit"),
        api("STREAM.INFO.C"),
        INFO,
        create("CMAX", subjects=["cmax"], max_bytes=1000, max_consumers=5),
    ]),
    "account_storage_exhausted": ("TINY", [
        create("T", subjects=["t"]),
        pub("t", KB), pub("t", KB), pub("t", KB), pub("t", KB), pub("t", KB), pub("t", KB),
        api("STREAM.INFO.T"),
        INFO,
        create("T2", subjects=["t2"], max_bytes=700),
        create("T3", subjects=["t3"], max_bytes=100),
    ]),
    "account_memory_exhausted": ("TINY", [
        create("M", subjects=["m"], storage="memory"),
        pub("m", KB), pub("m", KB), pub("m", KB), pub("m", KB),
        INFO,
    ]),
    "update_reservations": ("TINY", [
        create("U1", subjects=["u1"], max_bytes=300),
        create("U2", subjects=["u2"], max_bytes=200),
        update("U1", subjects=["u1"], max_bytes=400),
        update("U1", subjects=["u1"], max_bytes=401),
        update("U1", subjects=["u1"], max_bytes=100),
        update("U2", subjects=["u2"], max_bytes=500),
        update("U2", subjects=["u2"]),
        INFO,
    ]),
    "server_usage_exhausted": ("OPEN", [
        create("FULL", subjects=["full"]),
        pub("full", BIG), pub("full", BIG), pub("full", BIG), pub("full", BIG),
        create("FULLMEM", subjects=["fullmem"], storage="memory"),
        pub("fullmem", BIG), pub("fullmem", BIG), pub("fullmem", BIG),
        INFO,
    ]),
    "server_limits": ("OPEN", [
        create("HUGE", subjects=["huge"], max_bytes=3 * 1024 * 1024),
        create("HUGEMEM", subjects=["hugemem"], max_bytes=2 * 1024 * 1024, storage="memory"),
        create("HALF", subjects=["half"], max_bytes=1024 * 1024),
        create("HALF2", subjects=["half2"], max_bytes=1024 * 1024),
        create("MORE", subjects=["more"], max_bytes=1024),
        INFO,
    ]),
}


@pytest.mark.parametrize("case", list(CASES))
async def test_jetstream_limits_match(conns: dict[str, dict[str, Client]], case: str) -> None:
    account, steps = CASES[case]
    for i, step in enumerate(steps):
        theirs, ours = [masked(r) for r in await asyncio.gather(*(reply(conns[account][k], step) for k in KINDS))]
        what = f"step {i} ({step.subject} {step.body!r})"
        diff = first_difference(ours, theirs)
        assert diff is None, f"{what}: natsd answered differently at {diff}\nnatsd: {ours}\nnats-server: {theirs}"
        order = first_order_difference(ours, theirs)
        assert order is None, f"{what}: natsd's key order differs at {order}"

