"""natsd gateways in one process: two clusters, monitoring, and peers that misbehave."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import nats
import pytest

from natsd import Server
from natsd.config.conf import parse
from natsd.server import free_port
from natsd_plugins.gateway import GATEWAYS
from natsd_plugins.gateway.gateways import hash6

pytestmark = pytest.mark.timeout(60)


async def until(check: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


def gw(name: str, port: int, remotes: dict[str, int], extra: str = "") -> str:
    entries = ", ".join(f'{{name: {n}, url: "nats://127.0.0.1:{p}"}}' for n, p in remotes.items())
    return (f"server_name: {name}\nhost: 127.0.0.1\nport: -1\n"
            f"gateway {{ name: {name}, listen: 127.0.0.1:{port}, gateways: [{entries}]\n{extra} }}\n")


async def pair() -> tuple[Server, Server, int, int]:
    pa, pb = free_port(), free_port()
    a = Server(parse(gw("A", pa, {"B": pb})))
    b = Server(parse(gw("B", pb, {"A": pa})))
    await a.start()
    await b.start()
    await until(lambda: "B" in a.stash[GATEWAYS].outbound and "A" in b.stash[GATEWAYS].outbound
                and a.stash[GATEWAYS].inbound and b.stash[GATEWAYS].inbound)
    return a, b, pa, pb


def test_hash6_is_nats_servers() -> None:
    assert (hash6("A"), hash6("B"), hash6("N")) == (b"NUmM6c", b"b2oh2L", b"GkiiiV")


async def test_monitoring_shows_both_directions() -> None:
    from natsd_plugins.monitor.views import monitor_of

    a, b, pa, pb = await pair()
    try:
        na = await nats.connect(a.client_url)
        nb = await nats.connect(b.client_url)
        await nb.subscribe("seen.by.a")
        await nb.flush()
        await until(lambda: a.stash[GATEWAYS].outbound["B"].interest.get("$G") is not None
                    and a.stash[GATEWAYS].outbound["B"].interest["$G"].held)
        view = monitor_of(a).endpoints["/gatewayz"]({"accs": "1", "subs": "1"})
        assert view["name"] == "A" and view["port"] == pa
        out = view["outbound_gateways"]["B"]
        assert out["configured"] is True and out["connection"]["name"] == b.server_id
        [acc] = [x for x in out["accounts"] if x["name"] == "$G"]
        assert acc["interest_mode"] == "Interest-Only" and "seen.by.a" in acc["subscriptions_list"]
        assert [c["connection"]["name"] for c in view["inbound_gateways"]["B"]] == [b.server_id]
        varz = monitor_of(a).endpoints["/varz"]({})
        assert varz["gateway"]["name"] == "A" and varz["gateway"]["gateways"] == [
            {"name": "B", "urls": [f"127.0.0.1:{pb}"]}]
        for nc in (na, nb):
            await nc.close()
    finally:
        await b.shutdown()
        await a.shutdown()


async def test_misbehaving_peers_are_cut_and_nobody_notices(caplog: pytest.LogCaptureFixture) -> None:
    pa = free_port()
    a = Server(parse(gw("A", pa, {}, "authorization { user: gw, password: pw }")))
    await a.start()
    try:
        bystander = await nats.connect(a.client_url)
        sub = await bystander.subscribe("still")

        async def answer(send: bytes) -> bytes:
            reader, writer = await asyncio.open_connection("127.0.0.1", pa)
            await reader.readline()  # the INFO
            writer.write(send)
            await writer.drain()
            data = await asyncio.wait_for(reader.read(), 5)
            writer.close()
            return data

        assert await answer(b"PING\r\n") == b"-ERR 'Authorization Violation'\r\n"
        assert await answer(b'CONNECT {"user":"gw","pass":"pw"}\r\n') == \
            b"-ERR 'attempted to connect to gateway port'\r\n"
        assert await answer(b'CONNECT {"gateway":"Z","user":"gw","pass":"bad"}\r\n') == \
            b"-ERR 'Authorization Violation'\r\n"
        on_inbound = await answer(b'CONNECT {"gateway":"Z","user":"gw","pass":"pw"}\r\n'
                                  b'INFO {"server_id":"NZ","gateway":"Z"}\r\nRS+ $G foo\r\n')
        assert b"-ERR" not in on_inbound  # cut without -ERR, as nats-server does
        assert "Received RS+ from gateway on inbound connection" in caplog.text
        assert (await answer(b'CONNECT {"gateway":"Z","user":"gw","pass":"pw"}\r\nXYZZY\r\n')).endswith(
            b"-ERR 'Unknown Protocol Operation'\r\n")
        await bystander.publish("still", b"here")
        assert (await sub.next_msg(timeout=1)).data == b"here"
        await bystander.close()
    finally:
        await a.shutdown()


async def test_a_gateway_pointed_at_a_client_port_gives_up_on_it(caplog: pytest.LogCaptureFixture) -> None:
    plain = Server(parse("host: 127.0.0.1\nport: -1\n"))
    await plain.start()
    a = Server(parse(gw("A", free_port(), {"B": plain.port})))
    await a.start()
    try:
        await until(lambda: 'Attempt to connect to gateway "B" using wrong port' in caplog.text, 5)
        assert not a.stash[GATEWAYS].outbound
    finally:
        await a.shutdown()
        await plain.shutdown()


def test_settings_errors() -> None:
    from natsd.config import ConfigError

    for text, message in [
        ("gateway { listen: 127.0.0.1:-1 }", "gateway has no name"),
        ("gateway { name: A }", "has no port specified"),
        ("gateway { name: 'A B', port: -1 }", "cannot contain spaces"),
        ("gateway { name: A, port: -1, authorization { users: [] } }", "multiple users"),
        ("gateway { name: A, port: -1, gateways: [{urls: [\"nats://h:1\"]}] }", "has no name"),
        ("gateway { name: A, port: -1, gateways: [{name: B}] }", "has no URL"),
    ]:
        with pytest.raises(ConfigError, match=message):
            Server(parse("port: -1\n" + text)).configure()


async def test_gateways_over_tls(tls_certs: Any) -> None:
    tls = (f'tls {{ cert_file: "{tls_certs.server_cert}", key_file: "{tls_certs.server_key}", '
           f'ca_file: "{tls_certs.ca}" }}')
    pa, pb = free_port(), free_port()
    a = Server(parse(gw("A", pa, {"B": pb}, tls)))
    b = Server(parse(gw("B", pb, {"A": pa}, tls)))
    await a.start()
    await b.start()
    try:
        await until(lambda: "B" in a.stash[GATEWAYS].outbound and "A" in b.stash[GATEWAYS].outbound
                    and a.stash[GATEWAYS].inbound and b.stash[GATEWAYS].inbound)
        link = a.stash[GATEWAYS].outbound["B"]
        assert link.io is not None and link.io.get_extra_info("ssl_object") is not None
        na, nb = await nats.connect(a.client_url), await nats.connect(b.client_url)

        async def echo(msg: Any) -> None:
            await msg.respond(b"secure:" + msg.data)

        await nb.subscribe("svc", cb=echo)
        await nb.flush()
        deadline = time.monotonic() + 5
        while True:
            try:
                reply = await na.request("svc", b"1", timeout=0.5)
                break
            except (nats.errors.NoRespondersError, nats.errors.TimeoutError):
                assert time.monotonic() < deadline
        assert reply.data == b"secure:1"
        await na.close()
        await nb.close()
    finally:
        await b.shutdown()
        await a.shutdown()
