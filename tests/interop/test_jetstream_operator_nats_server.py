"""JetStream in operator mode: accounts whose JWT limits turn it on, beside nats-server 2.15.1.

One operator chain (``natsd_jwt.keytool``): account ``APP`` carries JetStream
limits in its JWT, ``PLAIN`` none. Both servers run the chain's resolver
config with JetStream on; each case runs as a user of one account against
both at once, and the replies are compared as in
``test_jetstream_streams_nats_server.py``. A last test updates ``APP``'s JWT
over the system account and checks that its new limits apply.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
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
)

from natsd.security.nkeys import KeyPair
from natsd_jwt import keytool
from natsd_jwt.claims import AccountLimits, decode, encode

pytestmark = pytest.mark.timeout(120)

APP_LIMITS = {"mem_storage": 4096, "disk_storage": 2000, "streams": 2, "consumer": 1, "max_ack_pending": 50,
              "disk_max_stream_bytes": 1500, "max_bytes_required": True}


def _reissue(root: str, name: str, jetstream: dict[str, Any]) -> str:
    """Re-sign account ``name`` with these JetStream limits; its new JWT."""
    path = os.path.join(root, "accounts", f"{name}.jwt")
    claims = decode(Path(path).read_text().strip())
    claims.limits = AccountLimits(jetstream=dict(jetstream))
    operator = KeyPair.from_seed(Path(root, "keys", "operator.nk").read_text().strip())
    token = encode(claims, operator)
    Path(path).write_text(token + "\n")
    keytool.write_resolver_conf(root)
    return token


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> str:
    root = str(tmp_path_factory.mktemp("js-chain") / "chain")
    keytool.init(root)
    keytool.add_account(root, "PLAIN")
    keytool.add_user(root, "PLAIN", "bob")
    keytool.add_user(root, "SYS", "admin")
    _reissue(root, "APP", APP_LIMITS)
    return root


@pytest.fixture(scope="module")
def servers(chain: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, int]]:
    binary = require_nats_server()
    started: dict[str, Proc] = {}
    try:
        for kind in KINDS:
            work = tmp_path_factory.mktemp(f"jsop-{kind}")
            conf = work / "server.conf"
            conf.write_text(keytool.resolver_conf(chain) + f'jetstream {{ store_dir: "{work / "store"}" }}\n')
            port = T.free_port()
            program = [binary] if kind == "nats-server" or SELF else [sys.executable, "-m", "natsd"]
            started[kind] = Proc(program + ["-c", str(conf), "-a", "127.0.0.1", "-p", str(port)], port,
                                 work / "server.log")
        yield {kind: proc.port for kind, proc in started.items()}
    finally:
        for proc in started.values():
            proc.stop()


def _creds(chain: str, user: str) -> str:
    return os.path.join(chain, "users", f"{user}.creds")


@pytest.fixture
async def conns(chain: str, servers: dict[str, int]) -> AsyncIterator[dict[str, dict[str, Client]]]:
    """``user -> kind -> connection``; afterwards every stream of APP goes."""
    opened = {user: {kind: await nats.connect(f"nats://127.0.0.1:{port}", user_credentials=_creds(chain, user),
                                              allow_reconnect=False)
                     for kind, port in servers.items()}
              for user in ("alice", "bob")}
    yield opened
    try:
        for kind, nc in opened["alice"].items():
            listed = json.loads((await nc.request("$JS.API.STREAM.LIST", b"", timeout=5)).data)
            for stream in listed.get("streams") or []:
                name = stream["config"]["name"]
                gone = json.loads((await nc.request(f"$JS.API.STREAM.DELETE.{name}", b"", timeout=5)).data)
                assert gone.get("success"), f"{kind} did not delete {name}: {gone}"
    finally:
        for by_kind in opened.values():
            for nc in by_kind.values():
                await nc.close()


INFO = api("INFO")

CASES: dict[str, tuple[str, list[Req]]] = {
    "limits_from_the_jwt": ("alice", [
        INFO,
        create("NOMAX", subjects=["nomax"]),
        create("BIG", subjects=["big"], max_bytes=1600),
        create("MEM", subjects=["mem"], max_bytes=1000, storage="memory"),
        create("OK", subjects=["ok"], max_bytes=1500),
        pub("ok", "x" * 400), pub("ok", "x" * 400), pub("ok", "x" * 400), pub("ok", "x" * 400),
        api("CONSUMER.CREATE.OK.C1", {"stream_name": "OK", "config": {"name": "C1", "ack_policy": "explicit",
                                                                          "max_ack_pending": 100}}),
        api("CONSUMER.CREATE.OK.C1", {"stream_name": "OK", "config": {"name": "C1", "ack_policy": "explicit"}}),
        api("CONSUMER.CREATE.OK.C2", {"stream_name": "OK", "config": {"name": "C2", "ack_policy": "explicit"}}),
        create("TWO", subjects=["two"], max_bytes=400),
        create("THREE", subjects=["three"], max_bytes=10),
        INFO,
    ]),
}


@pytest.mark.parametrize("case", list(CASES))
async def test_operator_mode_jetstream_matches(conns: dict[str, dict[str, Client]], case: str) -> None:
    user, steps = CASES[case]
    for i, step in enumerate(steps):
        theirs, ours = [masked(r) for r in await asyncio.gather(*(reply(conns[user][k], step) for k in KINDS))]
        what = f"step {i} ({step.subject} {step.body!r})"
        diff = first_difference(ours, theirs)
        assert diff is None, f"{what}: natsd answered differently at {diff}\nnatsd: {ours}\nnats-server: {theirs}"
        order = first_order_difference(ours, theirs)
        assert order is None, f"{what}: natsd's key order differs at {order}"


async def test_an_account_without_jetstream_limits_has_none(conns: dict[str, dict[str, Client]]) -> None:
    theirs, ours = [masked(r) for r in await asyncio.gather(*(reply(conns["bob"][k], INFO) for k in KINDS))]
    assert first_difference(ours, theirs) is None, (ours, theirs)


async def test_a_jwt_update_changes_the_limits_and_can_turn_jetstream_off(
        chain: str, conns: dict[str, dict[str, Client]], servers: dict[str, int]) -> None:
    """New limits pushed on ``$SYS.REQ.ACCOUNT.<key>.CLAIMS.UPDATE`` apply at once; a JWT without
    JetStream limits turns it off (and the stored streams stay for when it comes back)."""
    app = decode(Path(chain, "accounts", "APP.jwt").read_text().strip()).subject
    admins = {kind: await nats.connect(f"nats://127.0.0.1:{port}", user_credentials=_creds(chain, "admin"))
              for kind, port in servers.items()}

    async def push(token: str) -> None:
        for kind, admin in admins.items():
            answer = json.loads((await admin.request(f"$SYS.REQ.ACCOUNT.{app}.CLAIMS.UPDATE", token.encode(),
                                                     timeout=5)).data)
            assert answer.get("data", {}).get("code") == 200, (kind, answer)

    async def both(step: Req) -> tuple[Any, Any]:
        theirs, ours = [masked(r) for r in await asyncio.gather(*(reply(conns["alice"][k], step) for k in KINDS))]
        assert first_difference(ours, theirs) is None, (step, ours, theirs)
        return theirs, ours

    try:
        await both(create("KEPT", subjects=["kept"], max_bytes=100))
        await push(_reissue(chain, "APP", {**APP_LIMITS, "streams": 5, "disk_storage": 9000}))
        theirs, _ = await both(INFO)
        assert theirs["json"]["limits"]["max_streams"] == 5
        await push(_reissue(chain, "APP", {}))  # no JetStream any more
        theirs, _ = await both(INFO)
        assert theirs["json"]["error"]["err_code"] == 10039
        await push(_reissue(chain, "APP", APP_LIMITS))
        theirs, _ = await both(api("STREAM.NAMES"))
        assert theirs["json"]["streams"] == ["KEPT"]
    finally:
        for admin in admins.values():
            await admin.close()
