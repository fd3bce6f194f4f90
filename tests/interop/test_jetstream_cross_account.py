"""JetStream across accounts, as nats-server documents it, run on natsd and on nats-server 2.15.1.

Account ``JS`` holds a stream and exports ``$JS.API.CONSUMER.>`` (so that
others may create consumers on it), ``$JS.FC.>`` and ``$JS.ACK.>`` as
services, and the delivery subjects ``RI.DELIVER.SYNC.>`` as a stream.
Account ``IA`` imports them (the API under the prefix ``RI.JS.API``) and
then mirrors and sources the stream with ``external {api, deliver}``, and
reads it with a pull consumer through a client whose JetStream prefix is
``RI.JS.API``. The configuration is nats-server's own test's
(``TestJetStreamClusterCrossAccountMirrorsAndSources``) on one server, with
``response_type: stream`` on the API export so that a pull request's batch
comes back whole (a singleton import lets one message through).
"""

from __future__ import annotations

import asyncio
import base64
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

TOTAL = 3000

CONF = """
port: {port}
host: 127.0.0.1
jetstream {{ store_dir: "{store}" }}
no_auth_user: dlc
accounts {{
  JS {{
    jetstream: enabled
    users = [ {{ user: "rip", pass: "pass" }} ]
    exports [
      {{ service: "$JS.API.CONSUMER.>", response_type: stream }}
      {{ stream: "RI.DELIVER.SYNC.>" }}
      {{ service: "$JS.FC.>" }}
      {{ service: "$JS.ACK.>" }}
    ]
  }}
  IA {{
    jetstream: enabled
    users = [ {{ user: "dlc", pass: "pass" }} ]
    imports [
      {{ service: {{ account: JS, subject: "$JS.API.CONSUMER.>" }}, to: "RI.JS.API.CONSUMER.>" }}
      {{ stream: {{ account: JS, subject: "RI.DELIVER.SYNC.>" }} }}
      {{ service: {{ account: JS, subject: "$JS.FC.>" }} }}
      {{ service: {{ account: JS, subject: "$JS.ACK.>" }} }}
    ]
  }}
}}
"""


async def api(nc: nats.NATS, subject: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    msg = await nc.request(subject, json.dumps(body).encode() if body is not None else b"", timeout=5)
    return json.loads(msg.data)  # type: ignore[no-any-return]


async def until_messages(nc: nats.NATS, stream: str, wanted: int, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        info = await api(nc, f"$JS.API.STREAM.INFO.{stream}")
        if info["state"]["messages"] >= wanted or time.monotonic() > deadline:
            return info
        await asyncio.sleep(0.2)


async def scenario(kind: str, tmp_path: Path) -> dict[str, Any]:
    """What account IA sees of account JS's stream on a server of ``kind``."""
    port = T.free_port()
    conf = tmp_path / f"{kind}.conf"
    conf.write_text(CONF.format(port=port, store=tmp_path / kind))
    program = [require_nats_server()] if kind == "nats-server" else [sys.executable, "-m", "natsd"]
    proc = Proc(program + ["-c", str(conf)], port, tmp_path / f"{kind}.log")
    out: dict[str, Any] = {}
    try:
        owner = await nats.connect(f"nats://rip:pass@127.0.0.1:{port}")
        reader = await nats.connect(f"nats://127.0.0.1:{port}")  # no_auth_user: dlc, account IA
        js = owner.jetstream()
        await js.add_stream(name="TEST", subjects=["test.>"])
        for start in range(0, TOTAL, 250):
            await asyncio.gather(*(js.publish(f"test.{i % 16}", b"payload %d" % i)
                                   for i in range(start, start + 250)))
        out["mirror_created"] = "error" not in await api(reader, "$JS.API.STREAM.CREATE.MIRROR", {
            "name": "MIRROR", "mirror": {"name": "TEST", "external": {
                "api": "RI.JS.API", "deliver": "RI.DELIVER.SYNC.MIRRORS"}}})
        out["source_created"] = "error" not in await api(reader, "$JS.API.STREAM.CREATE.SOURCE", {
            "name": "SOURCE", "sources": [{"name": "TEST", "external": {
                "api": "RI.JS.API", "deliver": "RI.DELIVER.SYNC.SOURCES"}}]})
        mirror = await until_messages(reader, "MIRROR", TOTAL)
        source = await until_messages(reader, "SOURCE", TOTAL)
        await asyncio.sleep(0.5)  # and no more than that
        mirror = await api(reader, "$JS.API.STREAM.INFO.MIRROR")
        source = await api(reader, "$JS.API.STREAM.INFO.SOURCE")
        out["mirror_state"] = {k: mirror["state"][k] for k in ("messages", "first_seq", "last_seq")}
        out["source_state"] = {k: source["state"][k] for k in ("messages", "first_seq", "last_seq")}
        out["mirror_info"] = {k: v for k, v in mirror["mirror"].items() if k != "active"}
        out["source_info"] = [{k: v for k, v in s.items() if k != "active"} for s in source["sources"]]
        last = await api(reader, "$JS.API.STREAM.MSG.GET.SOURCE", {"seq": TOTAL})
        block = base64.b64decode(last["message"]["hdrs"]).decode()
        header = next(line.split(": ", 1)[1] for line in block.split("\r\n")
                      if line.startswith("Nats-Stream-Source:"))
        out["source_header"] = header.rsplit(" ", 1)[0]  # without the origin's identity (a hash of a time)
        out["mirror_last"] = (await api(reader, "$JS.API.STREAM.MSG.GET.MIRROR", {"seq": TOTAL}))["message"]["subject"]

        # IA reads JS's stream itself: consumer create, next and ack through the imports
        remote = reader.jetstream(prefix="RI.JS.API")
        sub = await remote.pull_subscribe("test.>", durable="ia", stream="TEST")
        msgs = await sub.fetch(10, timeout=5)
        out["fetched"] = [m.data.decode() for m in msgs]
        for m in msgs:
            await m.ack_sync(timeout=5)
        info = await api(owner, "$JS.API.CONSUMER.INFO.TEST.ia")
        out["ack_floor"] = info["ack_floor"]["stream_seq"]
        await owner.close()
        await reader.close()
    finally:
        proc.stop()
    return out


async def test_another_account_mirrors_sources_and_reads_a_stream_through_imports(tmp_path: Path) -> None:
    seen = {kind: await scenario(kind, tmp_path) for kind in ("nats-server", "natsd")}
    assert seen["natsd"] == seen["nats-server"]
    got = seen["natsd"]
    assert got["mirror_created"] and got["source_created"]
    assert got["mirror_state"] == {"messages": TOTAL, "first_seq": 1, "last_seq": TOTAL}
    assert got["source_state"] == got["mirror_state"]
    assert got["mirror_info"]["external"] == {"api": "RI.JS.API", "deliver": "RI.DELIVER.SYNC.MIRRORS"}
    assert got["source_header"].startswith("TEST:")  # name:hash(api) for an external source
    assert got["fetched"] == [f"payload {i}" for i in range(10)]
    assert got["ack_floor"] == 10
