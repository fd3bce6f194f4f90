"""System-account events and requests side by side with nats-server 2.15.1.

A system user subscribes to ``$SYS.>``; a client of account APP connects,
publishes a 2-byte message to itself and leaves; another is refused; a bare
TCP connection comes and goes without CONNECT. Both servers must publish the
same events (subjects, ``type``, key sets, counts) and answer the same
``$SYS.REQ.SERVER.PING`` requests.

Unlike 2.9.10, nats-server 2.12 and later announce clients of the global
account ``$G`` with CONNECT and DISCONNECT events (a refused or silent
connection, still in ``$G``, gets a DISCONNECT) and send no ``$G`` CONNS updates.
"""

from __future__ import annotations

import asyncio
import json
import socket

import nats
import pytest

import transcripts as T  # on sys.path via conftest.py

CONF = """
accounts {
  SYS { users: [ {user: sys, password: sys} ] }
  APP { users: [ {user: a, password: a} ] }
}
system_account: SYS
"""

#: Keys nats-server has that natsd leaves out, and why.
NOT_FILLED = {
    "rtt",  # natsd does not measure a round trip on connect
}


async def scenario(url: str) -> tuple[list[tuple[str, dict]], dict[str, dict]]:
    sysc = await nats.connect(url, user="sys", password="sys")
    events: list[tuple[str, dict]] = []

    async def on_event(msg) -> None:
        if ".REQ." not in msg.subject and not msg.subject.endswith(".STATSZ"):
            events.append((msg.subject, json.loads(msg.data)))

    await sysc.subscribe("$SYS.>", cb=on_event)
    await sysc.flush()
    app = await nats.connect(url, user="a", password="a", name="app1")
    await app.subscribe("x")
    await app.publish("x", b"hi")
    await app.flush()
    await app.close()
    with pytest.raises(Exception):
        await nats.connect(url, user="a", password="bad", allow_reconnect=False,
                           max_reconnect_attempts=0, connect_timeout=2)
    host, port = url.removeprefix("nats://").split(":")
    with socket.create_connection((host, int(port)), timeout=2) as bare:
        bare.recv(4096)  # INFO; then leave without CONNECT
    replies = {}
    for subject in ("$SYS.REQ.SERVER.PING", "$SYS.REQ.SERVER.PING.STATSZ", "$SYS.REQ.SERVER.PING.HEALTHZ"):
        replies[subject] = json.loads((await sysc.request(subject, b"", timeout=2)).data)
    # 2 CONNS + CONNECT, 2 CONNS + DISCONNECT for APP, AUTH.ERR and a $G DISCONNECT for the
    # refused client, a $G DISCONNECT for the bare connection: wait for all 9.
    for _ in range(60):
        if sum(1 for subject, _ in events if _followed(subject)) >= 9:
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.1)  # and for anything unexpected after them
    await sysc.close()
    return events, replies


def _followed(subject: str) -> bool:
    return "APP" in subject or "AUTH" in subject or "$G" in subject


def shape(value):
    """Nested key sets (lists by their first element), minus NOT_FILLED."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in sorted(value.items()) if k not in NOT_FILLED}
    return type(value).__name__


def digest(events: list[tuple[str, dict]], server_id: str) -> list[tuple]:
    out = []
    for subject, body in events:
        if body.get("reason") == "Read Error":
            # nats-server reports a close that arrives as a TCP reset (unread
            # data in its socket buffer) as a read error; the client closed.
            body["reason"] = "Client Closed"
        subject = subject.replace(server_id, "<id>")
        client = body.get("client", {})
        out.append((subject, body.get("type"), body.get("acc") or client.get("acc"),
                    client.get("user"), client.get("name"), body.get("reason"),
                    body.get("conns"), body.get("sent"), body.get("received"), shape(body)))
    return out


@pytest.fixture(scope="module")
def observed(server_factory):
    results = {}
    for kind in (T.NATS_SERVER, T.NATSD):
        host, port = server_factory(kind, CONF)
        events, replies = asyncio.run(scenario(f"nats://{host}:{port}"))
        server_id = replies["$SYS.REQ.SERVER.PING"]["server"]["id"]
        results[kind] = (digest(events, server_id), replies)
    return results


def test_events_match(observed):
    """The same events; nats-server closes connections asynchronously, so order is not compared."""
    def ours_of(kind):
        return sorted((e for e in observed[kind][0] if _followed(e[0])), key=repr)

    mine, real = ours_of(T.NATSD), ours_of(T.NATS_SERVER)
    assert [e for e in mine if e not in real] == [e for e in real if e not in mine]
    assert mine == real
    assert len(mine) == 9
    dropped = sorted(e[5] for e in mine if e[0] == "$SYS.ACCOUNT.$G.DISCONNECT")
    assert dropped == ["Authentication Failure", "Client Closed"]
    assert not any(e[0].endswith("$G.CONNS") or e[0].endswith("$G.SERVER.CONNS") for e in mine)


def test_ping_replies_match(observed):
    ours, theirs = observed[T.NATSD][1], observed[T.NATS_SERVER][1]
    assert {k: shape(v) for k, v in ours.items()} == {k: shape(v) for k, v in theirs.items()}
    assert ours["$SYS.REQ.SERVER.PING.HEALTHZ"]["data"] == {"status": "ok", "status_code": 200}
    counts = ("connections", "active_accounts", "slow_consumers", "active_servers")
    mine, real = (o["$SYS.REQ.SERVER.PING.STATSZ"]["statsz"] for o in (ours, theirs))
    assert {k: mine[k] for k in counts} == {k: real[k] for k in counts} == {
        "connections": 1, "active_accounts": 1, "slow_consumers": 0, "active_servers": 1}
    # sys, app, the refused and the bare client, and (natsd always, nats-server sometimes) the
    # start-up probe.
    assert mine["total_connections"] in (4, 5) and real["total_connections"] in (4, 5)
    # Traffic includes each server's own system messages, so only a floor is common.
    assert mine["received"]["msgs"] >= 1 and mine["sent"]["msgs"] >= 1
