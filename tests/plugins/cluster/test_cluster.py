"""natsd clusters in one process: the mesh, interest, the one-hop rule, resync after a drop,
names, authentication, lame duck, monitoring and bad peers."""

from __future__ import annotations

import asyncio
import functools
import json
import socket
import subprocess
import sys
import threading
import time
from typing import Any

import nats
import pytest

from natsd import Server
from natsd.config import ConfigError
from natsd.config.conf import parse
from natsd.routing.connection import Kind
from natsd_plugins.cluster import CLUSTER


def node(name: str, routes: tuple[str, ...] = (), cluster: str = "C1", extra: str = "") -> Server:
    route_list = ", ".join(f'"{r}"' for r in routes)
    name_line = f"name: {cluster}," if cluster else ""
    return Server(parse(f"server_name: {name}\nhost: 127.0.0.1\nport: -1\n{extra}\n"
                        f"cluster {{ {name_line} listen: 127.0.0.1:-1, routes: [{route_list}] }}\n"))


def url(server: Server) -> str:
    return f"nats-route://127.0.0.1:{server.stash[CLUSTER].port}"


def peers(server: Server) -> set[str]:
    return {r.remote_name for r in server.stash[CLUSTER].routes.values()}


async def until(check: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


async def mesh(*names: str, **kw: Any) -> list[Server]:
    """Start servers seeded through the first one and wait for the full mesh."""
    first = node(names[0], **kw)
    await first.start()
    servers = [first]
    for name in names[1:]:
        server = node(name, (url(first),), **kw)
        await server.start()
        servers.append(server)
    await until(lambda: all(peers(s) == set(names) - {s.name} for s in servers))
    return servers


async def stop(*servers: Server) -> None:
    for server in servers:
        await server.shutdown()


async def collect(into: list[Any], msg: Any) -> None:
    into.append(msg)


async def test_one_hop_each_subscriber_gets_each_message_once() -> None:
    a, b, c = await mesh("A", "B", "C")
    try:
        na, nc = await nats.connect(a.client_url), await nats.connect(c.client_url)
        got: list[Any] = []
        await nc.subscribe("x.>", cb=functools.partial(collect, got))
        await nc.flush()
        await until(lambda: a.global_account.sublist.match(b"x.1").remote is not None)
        for i in range(50):
            await na.publish(f"x.{i}", b"m")
        await na.flush()
        await until(lambda: len(got) >= 50)
        await asyncio.sleep(0.2)
        assert [m.subject for m in got] == [f"x.{i}" for i in range(50)]  # once, in order
        await na.close()
        await nc.close()
    finally:
        await stop(c, b, a)


async def test_queue_groups_across_the_cluster_use_weights() -> None:
    a, b = await mesh("A", "B")
    try:
        na, nb = await nats.connect(a.client_url), await nats.connect(b.client_url)
        counts = {"a": 0, "b": 0}

        def member(where: str) -> Any:
            async def cb(msg: Any) -> None:
                counts[where] += 1
            return cb

        await na.subscribe("job", queue="w", cb=member("a"))
        for _ in range(3):
            await nb.subscribe("job", queue="w", cb=member("b"))
        await nb.flush()
        await until(lambda: any(s.weight == 3 for s in a.global_account.sublist.all()
                                if s.client.kind == Kind.ROUTER))
        for _ in range(400):
            await na.publish("job", b"")
        await na.flush()
        await until(lambda: sum(counts.values()) == 400)
        assert 0.6 < counts["b"] / 400 < 0.9  # 3 of 4 members are on B
        await na.close()
        await nb.close()
    finally:
        await stop(b, a)


async def test_a_dropped_route_comes_back_with_its_interest() -> None:
    a, b = await mesh("A", "B")
    try:
        nb = await nats.connect(b.client_url)
        na = await nats.connect(a.client_url)
        got: list[Any] = []
        await nb.subscribe("again", cb=functools.partial(collect, got))
        await nb.flush()
        await until(lambda: a.global_account.sublist.match(b"again").remote is not None)
        route = next(iter(b.stash[CLUSTER].routes.values()))
        route.io.abort()  # the link breaks
        await until(lambda: not peers(a))
        assert a.global_account.sublist.match(b"again").remote is None
        await until(lambda: peers(a) == {"B"}, timeout=10)  # B dials A again
        await until(lambda: a.global_account.sublist.match(b"again").remote is not None)
        await na.publish("again", b"1")
        await na.flush()
        await until(lambda: len(got) == 1)
        await asyncio.sleep(0.2)
        assert len(got) == 1  # no duplicate after the resync
        await na.close()
        await nb.close()
    finally:
        await stop(b, a)


async def test_no_responders_and_request_reply_across_servers() -> None:
    a, b = await mesh("A", "B")
    try:
        na, nb = await nats.connect(a.client_url), await nats.connect(b.client_url)

        async def double(msg: Any) -> None:
            await msg.respond(msg.data * 2)

        await nb.subscribe("svc.double", cb=double)
        await nb.flush()
        await until(lambda: a.global_account.sublist.match(b"svc.double").remote is not None)
        assert (await na.request("svc.double", b"ab", timeout=2)).data == b"abab"
        with pytest.raises(nats.errors.NoRespondersError):
            await na.request("svc.none", b"", timeout=2)
        await na.close()
        await nb.close()
    finally:
        await stop(b, a)


async def test_cluster_names() -> None:
    a = node("A", cluster="C1")
    await a.start()
    other = node("X", (url(a),), cluster="OTHER")
    dynamic = node("D", (url(a),), cluster="")
    await other.start()
    await dynamic.start()
    try:
        await until(lambda: peers(a) == {"D"})
        assert dynamic.stash[CLUSTER].name == "C1" and not dynamic.stash[CLUSTER].dynamic
        await asyncio.sleep(0.3)
        assert "X" not in peers(a)  # refused: "cluster name does not match"
        nc = await nats.connect(dynamic.client_url)
        assert nc._server_info.get("cluster") == "C1"
        await nc.close()
    finally:
        await stop(other, dynamic, a)


async def test_route_authorization() -> None:
    auth = "authorization { user: ru, password: rp }"
    a = Server(parse(f"server_name: A\nhost: 127.0.0.1\nport: -1\n"
                     f"cluster {{ name: C1, listen: 127.0.0.1:-1, {auth} }}\n"))
    await a.start()
    port = a.stash[CLUSTER].port
    good = node("G", (f"nats-route://ru:rp@127.0.0.1:{port}",))
    bad = node("W", (f"nats-route://ru:wrong@127.0.0.1:{port}",))
    await good.start()
    await bad.start()
    try:
        await until(lambda: peers(a) == {"G"})
        await asyncio.sleep(0.5)
        assert peers(a) == {"G"} and not peers(bad)
    finally:
        await stop(bad, good, a)


async def test_lame_duck_takes_a_server_out_of_connect_urls() -> None:
    a, b = await mesh("A", "B")
    try:
        b_url = f"127.0.0.1:{b.port}"
        await until(lambda: b_url in a._info.get("connect_urls", ()))
        b.stash[CLUSTER].lame_duck()
        b.flush()
        await until(lambda: b_url not in a._info.get("connect_urls", ()))
    finally:
        await stop(b, a)


async def test_routez_view() -> None:
    from natsd_plugins.monitor.views import monitor_of

    a, b = await mesh("A", "B")
    try:
        nb = await nats.connect(b.client_url)
        await nb.subscribe("watched")
        await nb.flush()
        await until(lambda: a.global_account.sublist.match(b"watched").remote is not None)
        view = monitor_of(a).endpoints["/routez"]({"subs": "1"})
        assert view["num_routes"] == 1
        [route] = view["routes"]
        assert route["remote_name"] == "B" and "watched" in route["subscriptions_list"]
        assert {"rid", "remote_id", "did_solicit", "is_configured", "ip", "port", "in_msgs",
                "out_msgs", "subscriptions", "compression"} <= set(route)
        na = await nats.connect(a.client_url)
        for _ in range(3):
            await na.publish("watched", b"12345")
        await na.flush()
        await until(lambda: route_of(b).in_msgs == 3)
        varz = monitor_of(a).endpoints["/varz"]({})
        assert (varz["routes"], varz["remotes"]) == (1, 1)
        assert varz["cluster"] == {"name": "C1", "addr": "127.0.0.1", "cluster_port": a.stash[CLUSTER].port,
                                   "auth_timeout": 2, "tls_timeout": 2, "pool_size": -1}
        assert varz["out_msgs"] == 3 and varz["out_client_msgs"] == 0  # the three went to B
        assert (varz["in_msgs"], varz["in_client_msgs"]) == (3, 3)
        assert f"127.0.0.1:{b.port}" in varz["connect_urls"]
        assert monitor_of(b).endpoints["/varz"]({})["cluster"]["urls"] == [url(a).split("//")[1]]

        from natsd_plugins.monitor.metrics import build_registry, render

        text = render(build_registry(a))[0].decode()
        rid = route_of(a).cid
        assert f'nats_routez_num_routes{{server_id="{a.server_id}"}} 1.0' in text
        assert (f'nats_routez_out_msgs{{remote_id="{b.server_id}",remote_name="B",rid="{rid}",'
                f'server_id="{a.server_id}"}} 3.0') in text
        await na.close()
        await nb.close()
    finally:
        await stop(b, a)


def route_of(server: Server) -> Any:
    [route] = server.stash[CLUSTER].routes.values()
    return route


SYSTEM = ("system_account: SYS\naccounts { SYS { users: [{user: sys, password: sys}] }, "
          "APP { users: [{user: a, password: a}] } }")


async def test_every_server_answers_a_system_ping() -> None:
    servers = await mesh("A", "B", "C", extra=SYSTEM)
    try:
        # the system account's interest reaches every server before the ping
        await until(lambda: all(s.system_account.sublist.match(b"$SYS.REQ.SERVER.PING").remote
                                is not None for s in servers))
        nc = await nats.connect(servers[0].client_url, user="sys", password="sys")
        replies: list[Any] = []
        inbox = nc.new_inbox()
        await nc.subscribe(inbox, cb=functools.partial(collect, replies))
        await nc.publish("$SYS.REQ.SERVER.PING", b"", reply=inbox)
        await nc.flush()
        await until(lambda: len(replies) >= 3)
        await asyncio.sleep(0.2)  # and no more than one each
        names = sorted(json.loads(m.data)["server"]["name"] for m in replies)
        assert names == ["A", "B", "C"]
        for m in replies:  # STATSZ: each server's routes to the two others
            statsz = json.loads(m.data)["statsz"]
            assert statsz["active_servers"] == 3
            assert len(statsz["routes"]) == 2
            assert {r["name"] for r in statsz["routes"]} == {"A", "B", "C"} - {json.loads(m.data)["server"]["name"]}
            assert set(statsz["routes"][0]) == {"rid", "name", "sent", "received", "pending"}
            assert "slow_consumer_stats" not in statsz  # nats-server leaves zeros out
        await nc.close()
    finally:
        await stop(*reversed(servers))


async def test_a_peer_speaking_garbage_is_cut_and_nobody_notices() -> None:
    a, b = await mesh("A", "B")
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", a.stash[CLUSTER].port)
        await reader.readline()  # our INFO
        writer.write(b"HELLO THERE\r\n")
        assert (await reader.read()).startswith(b"-ERR 'Authorization Violation'")
        reader, writer = await asyncio.open_connection("127.0.0.1", a.stash[CLUSTER].port)
        await reader.readline()
        writer.write(b'CONNECT {"name":"NZ","cluster":"C1"}\r\nINFO {"server_id":"NZ","cluster":"C1"}\r\n'
                     b"RS+ $G foo bar\r\n")  # a queue without its weight: cut without -ERR
        rest = await asyncio.wait_for(reader.read(), 5)  # its interest burst, then closed
        assert b"-ERR" not in rest
        assert peers(a) == {"B"}
        na, nb = await nats.connect(a.client_url), await nats.connect(b.client_url)
        sub = await nb.subscribe("still")
        await nb.flush()
        await until(lambda: a.global_account.sublist.match(b"still").remote is not None)
        await na.publish("still", b"fine")
        assert (await sub.next_msg(timeout=2)).data == b"fine"
        await na.close()
        await nb.close()
    finally:
        await stop(b, a)


def test_settings_errors() -> None:
    with pytest.raises(ConfigError, match="does not pin accounts"):
        Server(parse("cluster { listen: 127.0.0.1:-1, accounts: [A] }")).configure()
    with pytest.raises(ConfigError, match="multiple users"):
        Server(parse("cluster { authorization { users: [] } }")).configure()
    with pytest.raises(ConfigError, match="unknown cluster option"):
        Server(parse("cluster { colour: blue }")).configure()


def test_flags_configure_the_cluster(tmp_path: Any) -> None:
    out = subprocess.run([sys.executable, "-m", "natsd", "--help"], capture_output=True, text=True,
                         timeout=30).stdout
    assert "Cluster Options" in out and "--routes" in out and "--cluster_name" in out
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        free = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "natsd", "-a", "127.0.0.1", "-p", "-1",
                             "--cluster", f"nats://127.0.0.1:{free}", "--cluster_name", "FLAGS"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        lines = []
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            line = proc.stdout.readline()  # type: ignore[union-attr]
            lines.append(line)
            if "Server is ready" in line or not line:
                break
        text = "".join(lines)
        assert "Cluster name is FLAGS" in text and f"route connections on 127.0.0.1:{free}" in text
    finally:
        proc.terminate()
        proc.wait(10)


def _fake_route(port: int, name: str, rcvbuf: int = 0) -> socket.socket:
    """A raw route peer that announces interest in ``foo`` (and then reads only if told)."""
    sock = socket.socket()
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.connect(("127.0.0.1", port))
    sock.sendall(b'CONNECT {"name":"%s","cluster":"C1"}\r\nINFO {"server_id":"%s","server_name":"%s",'
                 b'"cluster":"C1"}\r\nRS+ $G foo\r\n' % (name.encode(), name.encode(), name.encode()))
    return sock


async def test_a_route_that_cannot_keep_up() -> None:
    """nats-server's rules: past the write deadline a route is a slow consumer, counted once;
    it stays while it drains, and is closed when nothing at all went out."""
    from natsd_plugins.monitor.views import monitor_of

    a = node("A", extra="write_deadline: 300ms")
    await a.start()
    cluster = a.stash[CLUSTER]
    stuck = _fake_route(cluster.port, "STUCK", rcvbuf=4096)
    slow = _fake_route(cluster.port, "SLOW")
    stop_reading = threading.Event()

    def read_slowly() -> None:
        slow.settimeout(0.05)
        while not stop_reading.is_set():  # about 20 MB/s: slower than it is sent
            try:
                slow.recv(64 * 1024)
            except OSError:
                pass
            time.sleep(0.003)

    reader = threading.Thread(target=read_slowly, daemon=True)
    try:
        await until(lambda: peers(a) == {"STUCK", "SLOW"})
        reader.start()
        pub = await nats.connect(a.client_url)
        for chunk in range(40):  # 20 MB to each peer
            for i in range(500):
                await pub.publish("foo", b"%08d" % (chunk * 500 + i) + b"x" * 992)
            await pub.flush()
        await until(lambda: peers(a) == {"SLOW"}, timeout=10)
        slow_route = cluster.routes[next(iter(cluster.routes))]
        await until(lambda: slow_route.slow, timeout=5)
        await asyncio.sleep(1.0)  # three more deadlines pass while it drains: counted once
        assert not slow_route.closed
        varz = monitor_of(a).endpoints["/varz"]({})
        assert varz["slow_consumers"] == 2
        assert varz["slow_consumer_stats"] == {"clients": 0, "routes": 2, "gateways": 0, "leafs": 0}
        await until(lambda: not slow_route.slow, timeout=15)  # it caught up
        assert not slow_route.closed and cluster.slow_consumers == 2
        sub = await nats.connect(a.client_url)  # clients do not notice
        echo = await sub.subscribe("ping")
        await pub.publish("ping", b"hi")
        assert (await echo.next_msg(timeout=2)).data == b"hi"
        await sub.close()
        await pub.close()
    finally:
        stop_reading.set()
        if reader.is_alive():
            reader.join(5)
        stuck.close()
        slow.close()
        await stop(a)


SERVICES = ("accounts { PROVIDER { users: [{user: p, password: p}], exports: [{service: svc.>}] },"
            " CLIENT { users: [{user: c, password: c}],"
            " imports: [{service: {account: PROVIDER, subject: svc.>}, to: remote.>}] } }")


async def test_service_import_answered_on_another_server() -> None:
    """The requester's account imports a service whose responder is on another server:
    the request crosses in the provider's account, the reply comes back through ``_R_``."""
    a, b = await mesh("A", "B", extra=SERVICES)
    try:
        provider = await nats.connect(a.client_url, user="p", password="p")
        asked: list[bytes] = []

        async def answer(msg: Any) -> None:
            asked.append(msg.data)
            await msg.respond(b"done:" + msg.subject.encode() + b":" + msg.data)

        await provider.subscribe("svc.>", cb=answer)
        await provider.flush()
        await until(lambda: b.lookup_account("PROVIDER").sublist.match(b"svc.x").remote is not None)
        client = await nats.connect(b.client_url, user="c", password="c")
        for i in range(3):
            reply = await client.request("remote.job", b"%d" % i, timeout=2)
            assert reply.data == b"done:svc.job:%d" % i
        await asyncio.sleep(0.3)
        assert asked == [b"0", b"1", b"2"]  # each request once (the import is not announced on routes)
        await client.close()
        await provider.close()
    finally:
        await stop(b, a)
