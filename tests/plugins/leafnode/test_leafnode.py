"""natsd leaf nodes in one process: a leaf of a clustered hub, loops, bad peers, monitoring."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import nats
import pytest

from natsd import Server
from natsd.config.conf import parse
from natsd.server import free_port
from natsd_plugins.cluster import CLUSTER
from natsd_plugins.leafnode import LEAFNODES

pytestmark = pytest.mark.timeout(60)


async def until(check: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


def links(server: Server) -> int:
    return sum(len(group) for group in server.stash[LEAFNODES].links.values())


def leaf_port(server: Server) -> int:
    return server.stash[LEAFNODES].port


def leaf_of(hub: Server, name: str) -> str:
    return f'server_name: {name}\nleafnodes {{ remotes: [{{url: "nats-leaf://127.0.0.1:{leaf_port(hub)}"}}] }}\n'


async def start(text: str) -> Server:
    server = Server(parse("host: 127.0.0.1\nport: -1\n" + text))
    await server.start()
    return server


async def stop(*servers: Server) -> None:
    for server in servers:
        await server.shutdown()


async def crossed(pub: Any, subject: str, sub: Any) -> None:
    """Publish probes until one arrives at ``sub``."""
    deadline = time.monotonic() + 5
    while True:
        await pub.publish(subject, b"probe")
        await pub.flush()
        try:
            await sub.next_msg(timeout=0.1)
            return
        except nats.errors.TimeoutError:
            assert time.monotonic() < deadline, f"{subject} never crossed"


async def test_a_leaf_of_a_clustered_hub_reaches_every_server_of_it() -> None:
    a = await start("server_name: A\nleafnodes { listen: 127.0.0.1:-1 }\n"
                    "cluster { name: HC, listen: 127.0.0.1:-1 }\n")
    b = await start(f"server_name: B\ncluster {{ name: HC, listen: 127.0.0.1:-1, "
                    f"routes: [\"nats-route://127.0.0.1:{a.stash[CLUSTER].port}\"] }}\n")
    leaf = await start(leaf_of(a, "L"))
    try:
        await until(lambda: links(a) == 1 and a.stash[CLUSTER].routes)
        on_b = await nats.connect(b.client_url)
        on_leaf = await nats.connect(leaf.client_url)
        from_leaf = await on_b.subscribe("to.b")
        from_b = await on_leaf.subscribe("to.leaf")
        await crossed(on_leaf, "to.b", from_leaf)  # L -> A (leaf link) -> B (route)
        await crossed(on_b, "to.leaf", from_b)  # B -> A (route) -> L
        leafz = a.stash[LEAFNODES].leafz({"subs": "1"})
        assert leafz["leafnodes"] == 1 and leafz["leafs"][0]["name"] == "L"
        assert "to.leaf" in leafz["leafs"][0]["subscriptions_list"]
        # a queue group with members on B and on the leaf: the cluster's member serves
        got = {"b": 0, "leaf": 0}

        def member(where: str) -> Any:
            async def cb(msg: Any) -> None:
                got[where] += 1
            return cb

        await on_b.subscribe("jobs", queue="w", cb=member("b"))
        await on_leaf.subscribe("jobs", queue="w", cb=member("leaf"))
        on_a = await nats.connect(a.client_url)
        await asyncio.sleep(0.3)
        for _ in range(30):
            await on_a.publish("jobs", b"j")
        await on_a.flush()
        await until(lambda: got["b"] + got["leaf"] == 30)
        assert got == {"b": 30, "leaf": 0}
        for conn in (on_a, on_b, on_leaf):
            await conn.close()
    finally:
        await stop(leaf, b, a)


async def test_a_loop_is_detected_and_the_links_close(caplog: pytest.LogCaptureFixture) -> None:
    """A is a leaf of B and B a leaf of A: A's $LDS subject comes back to A."""
    pa, pb = free_port(), free_port()
    a = await start(f'server_name: A\nleafnodes {{ listen: 127.0.0.1:{pa}, reconnect: "100ms", '
                    f'remotes: [{{url: "nats-leaf://127.0.0.1:{pb}"}}] }}\n')
    b = await start(f'server_name: B\nleafnodes {{ listen: 127.0.0.1:{pb}, reconnect: "100ms", '
                    f'remotes: [{{url: "nats-leaf://127.0.0.1:{pa}"}}] }}\n')
    try:
        await until(lambda: "Loop detected for leafnode account=\"$G\"" in caplog.text)
        await asyncio.sleep(0.5)
        # the side that detected it waits 30 s before dialing again; the loop stays broken
        assert links(a) + links(b) < 4
        bystander = await nats.connect(a.client_url)
        sub = await bystander.subscribe("x")
        await bystander.publish("x", b"fine")
        assert (await sub.next_msg(timeout=1)).data == b"fine"
        await bystander.close()
    finally:
        await stop(b, a)


async def test_bad_peers_are_refused_and_nobody_notices(caplog: pytest.LogCaptureFixture) -> None:
    hub = await start("server_name: HUB\nleafnodes { listen: 127.0.0.1:-1, "
                      "authorization { users: [{user: leaf, password: good}] } }\n")
    try:
        bystander = await nats.connect(hub.client_url)
        sub = await bystander.subscribe("still")
        port = leaf_port(hub)

        async def answer(send: bytes) -> bytes:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            await reader.readline()  # the INFO
            writer.write(send)
            await writer.drain()
            data = await asyncio.wait_for(reader.read(), 5)
            writer.close()
            return data

        assert (await answer(b"PING\r\n")).startswith(b"-ERR 'Authorization Violation'")
        assert (await answer(b'CONNECT {"user":"leaf","pass":"bad"}\r\n')).startswith(
            b"-ERR 'Authorization Violation'")
        assert (await answer(b'CONNECT {"lang":"python"}\r\n')).startswith(
            b"-ERR 'attempted to connect to leaf node port'")
        unknown = await answer(b'CONNECT {"user":"leaf","pass":"good"}\r\nXYZZY\r\n')
        assert unknown.endswith(b"-ERR 'Unknown Protocol Operation'\r\n")
        garbage = await answer(b'CONNECT {"user":"leaf","pass":"good"}\r\nLS+ a b\r\n')
        assert b"connect_info" in garbage and b"-ERR" not in garbage  # cut without -ERR
        assert "authentication error - User \"leaf\"" in caplog.text
        await bystander.publish("still", b"here")
        assert (await sub.next_msg(timeout=1)).data == b"here"
        assert links(hub) == 0
        await bystander.close()
    finally:
        await stop(hub)


async def test_a_duplicate_leaf_replaces_the_old_link() -> None:
    hub = await start("server_name: HUB\nleafnodes { listen: 127.0.0.1:-1 }\n")
    try:
        port = leaf_port(hub)
        hello = b'CONNECT {"name":"L1","cluster":"LC","remote_account":"$G","headers":true}\r\n'
        r1, w1 = await asyncio.open_connection("127.0.0.1", port)
        await r1.readline()
        w1.write(hello)
        await until(lambda: links(hub) == 1)
        r2, w2 = await asyncio.open_connection("127.0.0.1", port)
        await r2.readline()
        w2.write(hello)
        old = await asyncio.wait_for(r1.read(), 5)
        assert b"-ERR 'Duplicate Remote LeafNode Connection'" in old
        await until(lambda: links(hub) == 1)
        w1.close()
        w2.close()
    finally:
        await stop(hub)


async def test_varz_counts_leaf_nodes() -> None:
    from natsd_plugins.monitor.views import monitor_of

    hub = await start("server_name: HUB\nleafnodes { listen: 127.0.0.1:-1 }\n")
    leaf = await start(leaf_of(hub, "L"))
    try:
        await until(lambda: links(hub) == 1)
        varz = monitor_of(hub).endpoints["/varz"]({})
        assert varz["leafnodes"] == 1
        assert varz["leaf"]["port"] == leaf_port(hub)
        assert monitor_of(leaf).endpoints["/varz"]({})["leafnodes"] == 1
    finally:
        await stop(leaf, hub)


async def test_leaf_links_are_announced_in_the_system_account() -> None:
    import json

    hub = await start("server_name: HUB\nsystem_account: SYS\naccounts { SYS { users: [{user: sys, password: sys}] },"
                      " APP { users: [{user: leaf, password: pw}] } }\nleafnodes { listen: 127.0.0.1:-1 }\n")
    sysc = await nats.connect(hub.client_url, user="sys", password="sys")
    events = await sysc.subscribe("$SYS.ACCOUNT.APP.>")
    await sysc.flush()
    leaf = await start(f'server_name: EDGE\nleafnodes {{ remotes: [{{url: "nats-leaf://leaf:pw@127.0.0.1:'
                       f'{leaf_port(hub)}"}}] }}\n')
    try:
        await until(lambda: links(hub) == 1)

        async def next_event(kind: str) -> dict[str, Any]:
            while True:
                msg = await events.next_msg(timeout=3)
                if msg.subject.endswith("." + kind):
                    return json.loads(msg.data)  # type: ignore[no-any-return]

        connect = await next_event("CONNECT")
        assert connect["client"]["kind"] == "Leafnode" and connect["client"]["name"] == "EDGE"
        assert connect["client"]["acc"] == "APP" and "client_type" not in connect["client"]
        await leaf.shutdown()
        gone = await next_event("DISCONNECT")
        assert gone["client"]["kind"] == "Leafnode" and gone["reason"]
    finally:
        await sysc.close()
        if leaf.running:
            await leaf.shutdown()
        await stop(hub)


async def test_natsd_leaf_over_wss_to_a_natsd_hub(tls_certs: Any) -> None:
    """The link travels in WebSocket frames over TLS (``wss://``); the hub's leafnodes {} binds it."""
    hub = await start(
        "leafnodes { port: -1 }\n"
        f'websocket {{ listen: 127.0.0.1:-1, compression: true, tls {{ cert_file: "{tls_certs.server_cert}", '
        f'key_file: "{tls_certs.server_key}" }} }}\n')
    ws_port = int(hub.ports["websocket"][0].rsplit(":", 1)[1])
    leaf = await start(f'server_name: EDGE\nleafnodes {{ remotes: [{{ url: "wss://localhost:{ws_port}/edge", '
                       f'ws_compression: true, tls {{ ca_file: "{tls_certs.ca}" }} }}] }}\n')
    try:
        await until(lambda: links(hub) == 1 and links(leaf) == 1)
        [inbound] = [link for group in hub.stash[LEAFNODES].links.values() for link in group]
        [outbound] = [link for group in leaf.stash[LEAFNODES].links.values() for link in group]
        assert inbound.carrier == outbound.carrier == "websocket"
        assert outbound.io.get_extra_info("ssl_object") is not None  # TLS under the frames
        nh, nl = await nats.connect(hub.client_url), await nats.connect(leaf.client_url)
        up, down = await nh.subscribe("up"), await nl.subscribe("down")
        await nh.flush()
        await nl.flush()
        await crossed(nl, "up", up)
        await crossed(nh, "down", down)
        await nl.close()
        await nh.close()
    finally:
        await stop(leaf, hub)


def test_websocket_remote_settings() -> None:
    from natsd.config import ConfigError

    with pytest.raises(ConfigError, match="cannot have a mix of websocket and non-websocket urls"):
        Server(parse('port: -1\nleafnodes { remotes: [{ urls: ["ws://h:1", "nats-leaf://h:2"] }] }')).configure()
    server = Server(parse('port: -1\nleafnodes { remotes: [{ url: "ws://h", ws_compression: true, '
                          "ws_no_masking: true }] }"))
    server.configure()
    [remote] = server.stash[LEAFNODES].settings.remotes
    assert remote.websocket and remote.ws_compression


async def test_jetstream_cluster_subjects_stay_home_on_a_system_account_link() -> None:
    """nats-server's ``denyAllJs`` on a link in the system account: ``$JSC.>`` and ``$NRG.>``
    (JetStream's cluster traffic) do not cross, both ways, while the account's other subjects do;
    in an application account ``$JSC.>`` (the reply subjects of sourcing requests) crosses."""
    accounts = ("system_account: SYS\naccounts { SYS { users: [{user: sys, password: sys}] },"
                " APP { users: [{user: app, password: app}] } }\n")
    hub = await start("server_name: HUB\n" + accounts + "leafnodes { listen: 127.0.0.1:-1 }\n")
    leaf = await start(f'server_name: EDGE\n{accounts}leafnodes {{ remotes: ['
                       f'{{url: "nats-leaf://sys:sys@127.0.0.1:{leaf_port(hub)}", account: SYS}},'
                       f'{{url: "nats-leaf://app:app@127.0.0.1:{leaf_port(hub)}", account: APP}}] }}\n')
    clients = []
    try:
        await until(lambda: links(hub) == 2)
        for user, server in (("sys", hub), ("sys", leaf), ("app", hub), ("app", leaf)):
            clients.append(await nats.connect(server.client_url, user=user, password=user))
        sys_hub, sys_leaf, app_hub, app_leaf = clients
        for here, there in ((sys_leaf, sys_hub), (sys_hub, sys_leaf)):
            held = await there.subscribe("$JSC.R.probe")
            raft = await there.subscribe("$NRG.AE.probe")
            control = await there.subscribe("sys.probe")
            await there.flush()
            await crossed(here, "sys.probe", control)
            await here.publish("$JSC.R.probe", b"x")
            await here.publish("$NRG.AE.probe", b"x")
            await here.publish("sys.probe", b"after")
            await here.flush()
            assert (await control.next_msg(timeout=2)).data == b"after"  # sent after the others
            for denied in (held, raft):
                with pytest.raises(nats.errors.TimeoutError):
                    await denied.next_msg(timeout=0.2)
        replies = await app_hub.subscribe("$JSC.R.probe")
        await app_hub.flush()
        await crossed(app_leaf, "$JSC.R.probe", replies)
    finally:
        for nc in clients:
            await nc.close()
        await stop(leaf, hub)
