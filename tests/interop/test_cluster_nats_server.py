"""Mixed clusters: natsd and nats-server 2.15.1 in one cluster, seeded through one node.

natsd servers run in-process (``natsd_factory``), nats-server in its own
process; clients are nats-py. Each test checks what crosses the routes:
pub/sub, queue groups (each message once in the whole cluster), request/reply,
headers, account isolation, and that the mesh forms from a single seed in
both directions (natsd as the seed, nats-server as the seed).
"""

from __future__ import annotations

import asyncio
import functools
import json
import socket
import time
import urllib.request
from typing import Any

import nats
import pytest
import transcripts as T  # on sys.path via conftest.py
from reference import use_reference_server

from natsd_plugins.cluster import CLUSTER
from natsd_plugins.monitor.views import monitor_of

ACCOUNTS = """
accounts {
  A { users: [{user: a, password: a}] }
  B { users: [{user: b, password: b}] }
}
"""


def cluster_of(srv: Any) -> Any:
    return srv.server.stash[CLUSTER]


def natsd_node(natsd_factory: Any, name: str, routes: list[str], extra: str = "",
               cluster_extra: str = "") -> tuple[Any, int]:
    cport = T.free_port()
    route_list = ", ".join(f'"{r}"' for r in routes)
    conf = (f"server_name: {name}\nhost: 127.0.0.1\nport: -1\n{extra}\n"
            f"cluster {{ name: C1, listen: 127.0.0.1:{cport}, routes: [{route_list}]\n{cluster_extra} }}\n")
    from natsd.config.conf import parse

    return natsd_factory(parse(conf)), cport


def nats_server_node(server_factory: Any, name: str, routes: list[str], extra: str = "",
                     cluster_extra: str = "") -> tuple[Any, int, int]:
    cport, mport = T.free_port(), T.free_port()
    route_list = ", ".join(f'"{r}"' for r in routes)
    conf = (f"server_name: {name}\nhttp_port: {mport}\n{extra}\n"
            f"cluster {{ name: C1, listen: 127.0.0.1:{cport}, routes: [{route_list}]\n{cluster_extra} }}\n")
    srv = server_factory.server(T.NATS_SERVER, conf, fresh=True)
    return srv, cport, mport


def routez(mport: int) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{mport}/routez", timeout=5) as answer:
        return json.loads(answer.read())  # type: ignore[no-any-return]


def wait_for(check: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


def remote_names_natsd(srv: Any) -> set[str]:
    return srv.call(lambda: {r.remote_name for r in cluster_of(srv).routes.values()})


def remote_names_ns(mport: int) -> set[str]:
    return {r["remote_name"] for r in routez(mport)["routes"]}


@pytest.fixture
def reference(monkeypatch: pytest.MonkeyPatch) -> str:
    return use_reference_server(monkeypatch)


def test_natsd_seed_meshes_with_nats_server(natsd_factory: Any, server_factory: Any, reference: str) -> None:
    """A (natsd) is the seed; B (nats-server) and C (natsd) know only A: all three mesh."""
    a, a_cport = natsd_node(natsd_factory, "A", [])
    seed = f"nats-route://127.0.0.1:{a_cport}"
    b, _, b_mport = nats_server_node(server_factory, "B", [seed])
    c, _ = natsd_node(natsd_factory, "C", [seed])
    wait_for(lambda: remote_names_natsd(a) == {"B", "C"} and remote_names_natsd(c) == {"A", "B"}
             and remote_names_ns(b_mport) == {"A", "C"})

    async def traffic() -> None:
        na = await nats.connect(a.url)
        nb = await nats.connect(f"nats://127.0.0.1:{b.port}")
        nc = await nats.connect(c.url)
        got: dict[str, list[bytes]] = {"a": [], "c": []}
        sub_a = await na.subscribe("fan.>", cb=functools.partial(_add, got["a"]))
        sub_c = await nc.subscribe("fan.>", cb=functools.partial(_add, got["c"]))
        workers = {"a": 0, "b": 0, "c": 0}

        def worker(name: str) -> Any:
            async def cb(msg: Any) -> None:
                workers[name] += 1
            return cb

        for name, conn in (("a", na), ("b", nb), ("c", nc)):
            await conn.subscribe("work", queue="q", cb=worker(name))

        async def echo(msg: Any) -> None:
            await msg.respond(b"echo:" + msg.data + (msg.headers or {}).get("X-Id", "").encode())

        await nb.subscribe("svc.echo", cb=echo)
        for conn in (na, nb, nc):
            await conn.flush()
        await asyncio.sleep(0.5)  # interest crosses the routes
        for i in range(20):
            await nb.publish(f"fan.{i}", b"%d" % i)
        n = 300
        for i in range(n):
            await (na, nb, nc)[i % 3].publish("work", b"x")
        for conn in (na, nb, nc):
            await conn.flush()
        reply = await nc.request("svc.echo", b"hi", headers={"X-Id": "7"}, timeout=2)
        assert reply.data == b"echo:hi7"
        deadline = time.monotonic() + 5
        while (len(got["a"]) < 20 or len(got["c"]) < 20 or sum(workers.values()) < n) and \
                time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)  # nothing more may arrive
        assert got["a"] == got["c"] == [b"%d" % i for i in range(20)]
        assert sum(workers.values()) == n, workers  # each message once in the whole cluster
        for sub in (sub_a, sub_c):
            await sub.unsubscribe()
        for conn in (na, nb, nc):
            await conn.close()

    asyncio.run(traffic())


def test_natsd_joins_a_nats_server_cluster(natsd_factory: Any, server_factory: Any, reference: str) -> None:
    """nats-server B is the seed of nats-server D; natsd E joins through B and meets D by gossip."""
    b, b_cport, b_mport = nats_server_node(server_factory, "B", [])
    seed = f"nats-route://127.0.0.1:{b_cport}"
    d, _, d_mport = nats_server_node(server_factory, "D", [seed])
    e, _ = natsd_node(natsd_factory, "E", [seed])
    wait_for(lambda: remote_names_natsd(e) == {"B", "D"} and "E" in remote_names_ns(d_mport)
             and "E" in remote_names_ns(b_mport))

    async def request_across() -> None:
        ne = await nats.connect(e.url)
        nd = await nats.connect(f"nats://127.0.0.1:{d.port}")

        async def answer(msg: Any) -> None:
            await msg.respond(msg.data.upper())

        await nd.subscribe("svc", cb=answer)
        await nd.flush()
        await asyncio.sleep(0.3)
        assert (await ne.request("svc", b"from e", timeout=2)).data == b"FROM E"
        assert (await nd.request("svc", b"from d", timeout=2)).data == b"FROM D"
        with pytest.raises(nats.errors.NoRespondersError):
            await ne.request("nobody.home", b"", timeout=2)
        await ne.close()
        await nd.close()

    asyncio.run(request_across())


def test_accounts_stay_apart_across_routes(natsd_factory: Any, server_factory: Any, reference: str) -> None:
    a, a_cport = natsd_node(natsd_factory, "A", [], ACCOUNTS)
    b, _, b_mport = nats_server_node(server_factory, "B", [f"nats-route://127.0.0.1:{a_cport}"], ACCOUNTS)
    wait_for(lambda: remote_names_natsd(a) == {"B"})

    async def isolated() -> None:
        in_a = await nats.connect(a.url, user="a", password="a")
        in_b = await nats.connect(a.url, user="b", password="b")
        remote_a = await nats.connect(f"nats://127.0.0.1:{b.port}", user="a", password="a")
        sub_a = await in_a.subscribe("shared")
        sub_b = await in_b.subscribe("shared")
        await in_a.flush()
        await in_b.flush()
        await asyncio.sleep(0.3)
        await remote_a.publish("shared", b"for A only")
        await remote_a.flush()
        assert (await sub_a.next_msg(timeout=2)).data == b"for A only"
        with pytest.raises(nats.errors.TimeoutError):
            await sub_b.next_msg(timeout=0.5)
        for conn in (in_a, in_b, remote_a):
            await conn.close()

    asyncio.run(isolated())


SERVICES = """
accounts {
  PROVIDER { users: [{user: p, password: p}], exports: [{service: svc.>}] }
  CLIENT { users: [{user: c, password: c}], imports: [{service: {account: PROVIDER, subject: svc.>}, to: remote.>}] }
}
"""


@pytest.mark.parametrize("responder_on", ["natsd", "nats-server"])
def test_service_imports_across_the_mixed_cluster(natsd_factory: Any, server_factory: Any,
                                                  reference: str, responder_on: str) -> None:
    """A request in the importing account on one server, its responder on the other: the
    request crosses in the exporting account and the reply comes back through ``_R_``."""
    a, a_cport = natsd_node(natsd_factory, "A", [], SERVICES)
    b, _, _ = nats_server_node(server_factory, "B", [f"nats-route://127.0.0.1:{a_cport}"], SERVICES)
    wait_for(lambda: remote_names_natsd(a) == {"B"})
    urls = {"natsd": a.url, "nats-server": f"nats://127.0.0.1:{b.port}"}
    other = "nats-server" if responder_on == "natsd" else "natsd"

    async def across() -> None:
        provider = await nats.connect(urls[responder_on], user="p", password="p")
        asked: list[bytes] = []

        async def answer(msg: Any) -> None:
            asked.append(msg.data)
            await msg.respond(b"done:" + msg.subject.encode() + b":" + msg.data)

        await provider.subscribe("svc.>", cb=answer)
        await provider.flush()
        client = await nats.connect(urls[other], user="c", password="c")
        deadline = time.monotonic() + 5
        while True:  # until the provider's interest has crossed the route
            try:
                first = await client.request("remote.warmup", b"", timeout=0.5)
                break
            except (nats.errors.NoRespondersError, nats.errors.TimeoutError):
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.1)
        assert first.data == b"done:svc.warmup:"
        for i in range(5):
            reply = await client.request("remote.job", b"%d" % i, timeout=2)
            assert reply.data == b"done:svc.job:%d" % i
        await asyncio.sleep(0.3)
        assert [a for a in asked if a] == [b"%d" % i for i in range(5)]  # each request once
        await client.close()
        await provider.close()

    asyncio.run(across())


def read_to_end(sock: socket.socket) -> bytes:
    """What ``sock`` receives until the peer closes it (or resets it)."""
    data = b""
    try:
        while chunk := sock.recv(4096):
            data += chunk
    except ConnectionResetError:
        pass
    return data


def route_tls(certs: Any, cert: str = "server", ca: str = "ca") -> str:
    return (f'tls {{ cert_file: "{getattr(certs, cert + "_cert")}", key_file: "{getattr(certs, cert + "_key")}",'
            f' ca_file: "{getattr(certs, ca)}", timeout: 2 }}')


def test_routes_over_tls(natsd_factory: Any, server_factory: Any, reference: str, tls_certs: Any,
                         caplog: pytest.LogCaptureFixture) -> None:
    """Routes with ``tls {}``: natsd accepts nats-server's TLS route, dials nats-server's, and two
    natsd servers mesh over TLS; a plaintext peer and a peer with another CA's certificate are
    cut off and logged, and nobody else notices."""
    tls = route_tls(tls_certs)
    a, a_cport = natsd_node(natsd_factory, "A", [], cluster_extra=tls)
    b, b_cport, b_mport = nats_server_node(server_factory, "B", [f"nats-route://127.0.0.1:{a_cport}"],
                                           cluster_extra=tls)
    c, _ = natsd_node(natsd_factory, "C", [f"nats-route://127.0.0.1:{b_cport}"], cluster_extra=tls)
    wait_for(lambda: remote_names_natsd(a) == {"B", "C"} and remote_names_natsd(c) == {"A", "B"}
             and remote_names_ns(b_mport) == {"A", "C"})
    varz = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{b_mport}/varz", timeout=5).read())
    assert varz["cluster"]["tls_required"] is True
    ours = a.call(lambda: monitor_of(a.server).endpoints["/varz"]({}))
    assert {k: ours["cluster"][k] for k in ("tls_required", "tls_verify", "tls_timeout")} == \
        {k: varz["cluster"][k] for k in ("tls_required", "tls_verify", "tls_timeout")}

    # a plaintext peer and a peer whose certificate another CA signed
    caplog.clear()
    with socket.create_connection(("127.0.0.1", a_cport), timeout=5) as plain:
        plain.sendall(b'CONNECT {"name":"X"}\r\n')
        wait_for(lambda: "TLS route handshake error" in caplog.text)
        answer = read_to_end(plain)  # a timeout here (the route left open) fails the test
        assert b"INFO" not in answer  # nothing in plaintext: TLS from the first byte
    caplog.clear()
    rogue, _ = natsd_node(natsd_factory, "R", [f"nats-route://127.0.0.1:{a_cport}"],
                          cluster_extra=route_tls(tls_certs, "other_server", "other_ca"))
    wait_for(lambda: "TLS route handshake error" in caplog.text)
    time.sleep(0.5)
    assert remote_names_natsd(a) == {"B", "C"} and remote_names_natsd(rogue) == set()

    async def traffic() -> None:
        na = await nats.connect(a.url)
        nb = await nats.connect(f"nats://127.0.0.1:{b.port}")
        nc = await nats.connect(c.url)
        subs = [await conn.subscribe("secure.>") for conn in (na, nb, nc)]
        for conn in (na, nb, nc):
            await conn.flush()
        await asyncio.sleep(0.5)  # interest crosses the routes
        for i, conn in enumerate((na, nb, nc)):
            await conn.publish(f"secure.{i}", b"%d" % i)
            await conn.flush()
        for sub in subs:
            got = sorted([(await sub.next_msg(timeout=2)).data for _ in range(3)])
            assert got == [b"0", b"1", b"2"]
        for conn in (na, nb, nc):
            await conn.close()

    asyncio.run(traffic())


def test_nats_server_pinning_an_account(natsd_factory: Any, server_factory: Any, reference: str,
                                       caplog: pytest.LogCaptureFixture) -> None:
    """nats-server pins account A to a dedicated route (``cluster { accounts: [A] }``); natsd
    keeps one route per server, nats-server falls back to it, and A's traffic flows."""
    a, a_cport = natsd_node(natsd_factory, "A", [], ACCOUNTS)
    b, _, b_mport = nats_server_node(server_factory, "B", [f"nats-route://127.0.0.1:{a_cport}"],
                                     ACCOUNTS, cluster_extra="accounts: [A]")
    wait_for(lambda: remote_names_natsd(a) == {"B"})
    time.sleep(1.5)  # nats-server's dedicated-route attempts come and go
    assert remote_names_natsd(a) == {"B"}

    async def pinned() -> None:
        here = await nats.connect(a.url, user="a", password="a")
        there = await nats.connect(f"nats://127.0.0.1:{b.port}", user="a", password="a")
        sub_here = await here.subscribe("pinned.>")
        sub_there = await there.subscribe("pinned.>")
        await here.flush()
        await there.flush()
        await asyncio.sleep(0.5)
        await there.publish("pinned.1", b"to natsd")
        await here.publish("pinned.2", b"to nats-server")
        await here.flush()
        await there.flush()
        assert {(await sub_here.next_msg(timeout=2)).data for _ in range(2)} == {b"to natsd", b"to nats-server"}
        assert {(await sub_there.next_msg(timeout=2)).data for _ in range(2)} == {b"to natsd", b"to nats-server"}
        for conn in (here, there):
            await conn.close()

    asyncio.run(pinned())
    assert "Traceback" not in caplog.text


def test_clients_fail_over_through_connect_urls(natsd_factory: Any, server_factory: Any,
                                               reference: str) -> None:
    """A client given only natsd A learns B from INFO connect_urls and moves there when A goes."""
    a, a_cport = natsd_node(natsd_factory, "A", [])
    b, _, b_mport = nats_server_node(server_factory, "B", [f"nats-route://127.0.0.1:{a_cport}"])
    wait_for(lambda: remote_names_natsd(a) == {"B"})

    async def failover() -> None:
        reconnected = asyncio.Event()

        async def on_reconnect() -> None:
            reconnected.set()

        nc = await nats.connect(a.url, reconnected_cb=on_reconnect, reconnect_time_wait=0.1,
                                max_reconnect_attempts=50)
        assert f"nats://127.0.0.1:{b.port}" in [str(s.uri.geturl()) for s in nc._server_pool] or \
            any(s.uri.port == b.port for s in nc._server_pool)
        sub = await nc.subscribe("after")
        await nc.flush()
        a.stop()
        await asyncio.wait_for(reconnected.wait(), 10)
        assert nc.connected_url.port == b.port
        other = await nats.connect(f"nats://127.0.0.1:{b.port}")
        await asyncio.sleep(0.2)
        await other.publish("after", b"still here")
        await other.flush()
        assert (await sub.next_msg(timeout=2)).data == b"still here"
        await other.close()
        await nc.close()

    asyncio.run(failover())


async def _add(into: list[bytes], msg: Any) -> None:
    into.append(msg.data)


def test_jetstream_deliveries_keep_their_subject_across_routes(natsd_factory: Any, server_factory: Any,
                                                                 reference: str, tmp_path: Any) -> None:
    """A stored message sent to a pull request's inbox on another server travels as nats-server sends it,
    with the reply ``<ack reply>@<subject>``: a client on nats-server sees the stream subject of natsd's
    message, and one on a second natsd too (each side splits what the other joined)."""
    a, a_cport = natsd_node(natsd_factory, "A", [], extra=f'jetstream {{ store_dir: "{tmp_path}" }}')
    seed = f"nats-route://127.0.0.1:{a_cport}"
    b, _, b_mport = nats_server_node(server_factory, "B", [seed])
    c, _ = natsd_node(natsd_factory, "C", [seed])
    wait_for(lambda: remote_names_natsd(a) == {"B", "C"} and remote_names_ns(b_mport) == {"A", "C"})

    async def pull() -> None:
        na = await nats.connect(a.url)
        js = na.jetstream()
        await js.add_stream(name="ORDERS", subjects=["orders.>"])
        for i in range(3):
            await js.publish(f"orders.{i}", b"o%d" % i)
        for name, url in (("nats-server", f"nats://127.0.0.1:{b.port}"), ("natsd", c.url)):
            remote = await nats.connect(url)
            await asyncio.sleep(0.3)  # the inbox's interest crosses the route
            sub = await remote.jetstream().pull_subscribe("orders.>", durable=f"via-{name[-1]}", stream="ORDERS")
            msgs = await sub.fetch(3, timeout=5)
            assert [(m.subject, m.data) for m in msgs] == [(f"orders.{i}", b"o%d" % i) for i in range(3)], name
            assert all(m.reply.startswith("$JS.ACK.ORDERS.") and "@" not in m.reply for m in msgs), name
            await msgs[0].ack_sync()  # the plain ack reply routes back to natsd
            await remote.close()
        await na.close()

    asyncio.run(pull())
