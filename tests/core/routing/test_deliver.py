"""The router with remote connection kinds, interest events and egress, as a plugin sees them.

A test plugin plays the part of the clustering and leaf-node plugins: it
registers fake remote connections (kind ROUTER or LEAF) whose interest it
puts in the account's sublist, records every ``forward`` call, and listens to
interest events. Clients are raw sockets on an in-process server.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Sequence
from typing import Any

import pytest

from natsd import Server, hookimpl
from natsd.routing.account import Account
from natsd.routing.connection import LOCAL_KINDS, Connection, Kind
from natsd.routing.deliver import FORWARD
from natsd.routing.sublist import Subscription
from natsd.testing import read_first_pong

QUIET = b'CONNECT {"verbose":false,"pedantic":false,"protocol":1,"headers":true,"no_responders":true}\r\n'


class FakeRemote(Connection):
    """A connection to another server: records each forwarded message."""

    def __init__(self, server: Any, account: Account, kind: Kind, name: str) -> None:
        super().__init__(server, account, kind=kind, transport="fake")
        self.out = None
        self.name = name
        self.calls: list[tuple[bytes, bytes | None, bytes, tuple[bytes, ...], Any]] = []
        self._sid = 0

    def forward(self, sender: Connection, account: Account, subject: bytes, reply: bytes | None,
                size: bytes, payload: bytes, hdr: int, queues: Sequence[bytes]) -> None:
        self.calls.append((subject, reply, payload[:-2], tuple(queues), sender))

    def interest(self, subject: bytes, queue: bytes | None = None, weight: int = 1) -> Subscription:
        self._sid += 1
        sub = Subscription(self, subject, queue, b"r%d" % self._sid, weight)
        self.subs[sub.sid] = sub
        self.account.add_sub(sub)
        return sub

    def publish(self, subject: bytes, payload: bytes, reply: bytes | None = None,
                queues: Sequence[bytes] = ()) -> bool:
        """A message that arrived over this connection (RMSG/LMSG)."""
        delivered = self.account.deliver(self, subject, reply, str(len(payload)).encode(),
                                         payload + b"\r\n", 0, queues)
        self.server.flush()
        return delivered

    def close(self, reason: str = "", err: str | None = None, *, abort: bool = False) -> None:
        self.closed = True
        self.server.connection_closed(self, reason)


class Events:
    """An interest listener that records what it hears."""

    def __init__(self, kinds: frozenset[Kind]) -> None:
        self.kinds = kinds
        self.heard: list[tuple[str, bytes, bytes | None, int]] = []

    def interest_changed(self, account: Account, subject: bytes, queue: bytes | None,
                         weight: int) -> None:
        self.heard.append((account.name, subject, queue, weight))

    def take(self) -> list[tuple[str, bytes, bytes | None, int]]:
        """What was heard since the last call, leaving out the system account's own services."""
        heard, self.heard = self.heard, []
        return [h for h in heard if not h[1].startswith(b"$SYS.")]


class Plugin:
    def __init__(self, *listeners: Events) -> None:
        self.listeners = listeners

    @hookimpl
    def natsd_interest_listeners(self) -> Sequence[Events]:
        return self.listeners


class Raw:
    """A raw client socket on the server's loop."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.lines: list[bytes] = []

    @classmethod
    async def open(cls, server: Server) -> Raw:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        raw = cls(reader, writer)
        await reader.readline()  # INFO
        writer.write(QUIET)
        await raw.ping()
        info = await asyncio.wait_for(reader.readline(), 2)  # after the first PONG (protocol 1)
        assert info.startswith(b"INFO ") and b'"connect_info":true' in info, info
        return raw

    async def ping(self) -> None:
        self.writer.write(b"PING\r\n")
        await self.writer.drain()
        while (line := await asyncio.wait_for(self.reader.readline(), 2)) != b"PONG\r\n":
            self.lines.append(line)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.ping()

    async def msgs(self) -> list[bytes]:
        """The MSG lines received since the last call (after a PING round trip)."""
        await self.ping()
        out = [line for line in self.lines if line.startswith((b"MSG", b"HMSG"))]
        self.lines = []
        return out

    async def close(self) -> None:
        self.writer.close()
        await asyncio.sleep(0.05)


async def test_one_forward_per_message_with_the_queue_names() -> None:
    async with Server({"host": "127.0.0.1", "port": 0}) as server:
        acc = server.global_account
        route = FakeRemote(server, acc, Kind.ROUTER, "B")
        route.interest(b"foo.*")
        route.interest(b"foo.>")
        route.interest(b"foo.bar", b"q1", weight=2)
        route.interest(b"foo.*", b"q2")
        pub = await Raw.open(server)
        await pub.send(b"PUB foo.bar 2\r\nhi\r\n")
        assert [(c[0], c[2], sorted(c[3])) for c in route.calls] == [(b"foo.bar", b"hi", [b"q1", b"q2"])]
        route.calls.clear()
        await pub.send(b"PUB foo.baz.qux 1\r\nx\r\n")  # foo.> only: plain, no queue
        assert [(c[0], c[3]) for c in route.calls] == [(b"foo.baz.qux", ())]
        await pub.close()


async def test_queue_group_served_once_between_local_and_remote_members() -> None:
    async with Server({"host": "127.0.0.1", "port": 0}) as server:
        route = FakeRemote(server, server.global_account, Kind.ROUTER, "B")
        route.interest(b"work", b"q", weight=1)
        worker = await Raw.open(server)
        await worker.send(b"SUB work q 1\r\n")
        pub = await Raw.open(server)
        n = 400
        await pub.send(b"".join(b"PUB work 1\r\n%d\r\n" % (i % 10) for i in range(n)))
        local = len(await worker.msgs())
        remote = sum(1 for c in route.calls if c[3] == (b"q",))
        assert local + remote == n and len(route.calls) == remote
        assert local > n // 5 and remote > n // 5  # a random pick among local and route members
        for raw in (worker, pub):
            await raw.close()


async def test_message_from_a_route_prefers_local_members_and_goes_one_hop() -> None:
    async with Server({"host": "127.0.0.1", "port": 0}) as server:
        acc = server.global_account
        a = FakeRemote(server, acc, Kind.ROUTER, "A")
        b = FakeRemote(server, acc, Kind.ROUTER, "B")
        leaf = FakeRemote(server, acc, Kind.LEAF, "L")
        for conn in (a, b, leaf):
            conn.interest(b"svc")
            conn.interest(b"svc", b"q")
        local = await Raw.open(server)
        await local.send(b"SUB svc q 1\r\n")
        for _ in range(50):
            assert a.publish(b"svc", b"m", queues=[b"q"])
        assert len(await local.msgs()) == 50  # the local member always wins
        assert a.calls == [] and b.calls == []  # never back, never to another route
        assert [c[3] for c in leaf.calls] == [()] * 50  # leaf nodes get plain interest
        await local.close()


async def test_message_from_a_route_without_queue_names_serves_no_queue_group() -> None:
    async with Server({"host": "127.0.0.1", "port": 0}) as server:
        a = FakeRemote(server, server.global_account, Kind.ROUTER, "A")
        member = await Raw.open(server)
        await member.send(b"SUB svc q 1\r\nSUB svc 2\r\n")
        a.publish(b"svc", b"m")
        assert [line.split()[2] for line in await member.msgs()] == [b"2"]
        a.publish(b"svc", b"m", queues=[b"other"])
        assert [line.split()[2] for line in await member.msgs()] == [b"2"]
        await member.close()


async def test_leaf_members_are_a_fallback() -> None:
    async with Server({"host": "127.0.0.1", "port": 0}) as server:
        leaf = FakeRemote(server, server.global_account, Kind.LEAF, "L")
        leaf.interest(b"job", b"q", weight=5)
        member = await Raw.open(server)
        await member.send(b"SUB job q 1\r\n")
        pub = await Raw.open(server)
        await pub.send(b"PUB job 1\r\nx\r\n" * 30)
        assert len(await member.msgs()) == 30 and leaf.calls == []
        await member.send(b"UNSUB 1\r\n")
        await pub.send(b"PUB job 1\r\nx\r\n")
        assert [c[3] for c in leaf.calls] == [(b"q",)]
        for raw in (member, pub):
            await raw.close()


def test_rule_table_is_nats_servers() -> None:
    assert Kind.ROUTER not in FORWARD[Kind.ROUTER]  # one hop
    assert all(Kind.GATEWAY not in allowed for allowed in FORWARD.values())  # gateways: egress
    for kind in LOCAL_KINDS:
        assert FORWARD[kind] == {Kind.ROUTER, Kind.LEAF, Kind.HUB}
    assert Kind.ROUTER not in FORWARD[Kind.HUB]  # a hub's traffic stays off routes
    assert Kind.HUB not in FORWARD[Kind.ROUTER]  # and routed traffic does not go up to it


async def test_a_single_server_pays_nothing_for_remote_interest() -> None:
    async with Server({"host": "127.0.0.1", "port": 0}) as server:
        sub = await Raw.open(server)
        await sub.send(b"SUB x 1\r\nSUB x q 2\r\n")
        result = server.global_account.sublist.match(b"x")
        assert result.remote is None and server.global_account.egress == ()
        assert server.global_account.interest == ()  # no listener: no interest tables
        await sub.close()


async def test_interest_events_for_every_mutation_path(tmp_path: Any) -> None:
    local = Events(LOCAL_KINDS)
    remote = Events(frozenset({Kind.ROUTER}))
    conf = tmp_path / "natsd.conf"
    conf.write_text("""
        host: 127.0.0.1
        port: -1
        accounts {
          A { users: [{user: a, password: a, permissions: {subscribe: ">"}}]
              exports: [{stream: "feed.>"}] }
          B { users: [{user: b, password: b}]
              imports: [{stream: {account: A, subject: "feed.>"}, prefix: from_a}] }
        }
    """)
    async with Server(str(conf), plugins=[Plugin(local, remote)]) as server:
        acc_a = server.lookup_account("A")
        # Seeded silently: the stream import's forwarder already subscribed in A.
        assert local.take() == [] and (b"feed.>", None) in dict(server.interest.weights(acc_a, LOCAL_KINDS))

        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        await reader.readline()
        writer.write(b'CONNECT {"verbose":false,"user":"a","pass":"a"}\r\n'
                     b"SUB x 1\r\nSUB x 2\r\nSUB w q 3\r\nSUB w q 4\r\nSUB y 5\r\nUNSUB 5 1\r\n"
                     b"PING\r\n")
        while await reader.readline() != b"PONG\r\n":
            pass
        assert local.take() == [("A", b"x", None, 1), ("A", b"w", b"q", 1), ("A", b"w", b"q", 2),
                                ("A", b"y", None, 1)]
        writer.write(b"UNSUB 1\r\nUNSUB 2\r\nUNSUB 3\r\nPUB y 1\r\n!\r\nPING\r\n")  # y: auto-unsub
        while await reader.readline() != b"PONG\r\n":
            pass
        assert local.take() == [("A", b"x", None, 0), ("A", b"w", b"q", 1), ("A", b"y", None, 0)]

        internal = server.connect_internal("svc", "A")
        internal.subscribe("svc.>", lambda *a: None)
        assert local.take() == [("A", b"svc.>", None, 1)]
        internal.close()
        assert local.take() == [("A", b"svc.>", None, 0)]

        # A reload that takes a permission away removes the subscription: an event.
        conf.write_text(conf.read_text().replace('subscribe: ">"', 'subscribe: {deny: "w"}'))
        await server.reload()
        assert ("A", b"w", b"q", 0) in local.take()
        # A reload that drops the import removes the forwarder's subscription.
        conf.write_text(conf.read_text().replace(
            'imports: [{stream: {account: A, subject: "feed.>"}, prefix: from_a}]', ""))
        await server.reload()
        assert ("A", b"feed.>", None, 0) in local.take()

        writer.close()  # the client's close removes what it still has
        for _ in range(100):
            if server.lookup_account("A").sublist.count == 0:
                break
            await asyncio.sleep(0.01)
        assert local.take() == []  # everything was already gone

        # Remote subscriptions count only for listeners of their kind, with weights.
        route = FakeRemote(server, acc_a, Kind.ROUTER, "R")
        sub = route.interest(b"r", b"q", weight=3)
        acc_a.reweigh(sub, 5)
        route.close()
        assert remote.take() == [("A", b"r", b"q", 3), ("A", b"r", b"q", 5), ("A", b"r", b"q", 0)]
        assert local.take() == []


async def test_egress_sees_what_was_served_and_answers_for_no_responders() -> None:
    seen: list[tuple[bytes, list[bytes]]] = []

    def egress(sender: Any, account: Any, subject: bytes, reply: Any, size: bytes,
               payload: bytes, hdr: int, result: Any, served: list[bytes]) -> bool:
        if not subject.startswith(b"$SYS."):  # the system account's own events
            seen.append((subject, list(served)))
        return subject == b"remote.svc"

    async with Server({"host": "127.0.0.1", "port": 0}) as server:
        server.add_egress(egress)
        client = await Raw.open(server)
        await client.send(b"SUB local q 1\r\nSUB _INBOX.1 2\r\n")
        await client.send(b"PUB local 1\r\nx\r\nPUB remote.svc _INBOX.1 1\r\nx\r\n"
                          b"PUB nobody _INBOX.1 1\r\nx\r\n")
        assert seen == [(b"local", [b"q"]), (b"remote.svc", []), (b"nobody", [])]
        got = await client.msgs()
        assert sum(1 for line in got if line.startswith(b"HMSG _INBOX.1")) == 1  # only "nobody": 503
        server.remove_egress(egress)
        assert server.global_account.egress == ()
        await client.close()


async def test_permissions_taken_away_by_a_reload_apply_to_existing_subscriptions(tmp_path: Any) -> None:
    """A client subscribed to foo.> before a reload that denies foo.secret stops receiving it
    (nats-server 2.15.1 keeps delivering: natsd is stricter, see docs/security.md)."""
    conf = tmp_path / "natsd.conf"
    conf.write_text('host: 127.0.0.1\nport: -1\n'
                    'authorization { users: [{user: u, password: p, permissions: {subscribe: ">"}}] }\n')
    async with Server(str(conf)) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        await reader.readline()
        writer.write(b'CONNECT {"verbose":false,"user":"u","pass":"p"}\r\nSUB foo.> 1\r\n'
                     b"SUB foo.secret q 2\r\nPUB foo.secret 1\r\na\r\nPING\r\n")
        lines = []
        while (line := await reader.readline()) != b"PONG\r\n":
            lines.append(line)
        assert sum(line.startswith(b"MSG foo.secret") for line in lines) == 2
        conf.write_text(conf.read_text().replace('subscribe: ">"', 'subscribe: {allow: ">", deny: "foo.secret"}'))
        await server.reload()
        writer.write(b"PUB foo.secret 1\r\nb\r\nPUB foo.open 1\r\nc\r\nPING\r\n")
        lines = []
        while (line := await reader.readline()) != b"PONG\r\n":
            lines.append(line)
        assert not any(line.startswith(b"MSG foo.secret") for line in lines)
        assert any(line.startswith(b"MSG foo.open 1") for line in lines)
        writer.close()


def test_deliver_counts(natsd_server: Any) -> None:
    """Counters of the sender and receivers after a fan-out through the router."""
    sock = socket.create_connection(("127.0.0.1", natsd_server.port))
    sock.recv(4096)
    sock.sendall(QUIET + b"SUB a 1\r\nSUB a 2\r\nPUB a 3\r\nabc\r\nPING\r\n")
    data = read_first_pong(sock)
    assert data.count(b"MSG a ") == 2
    counts = natsd_server.call(lambda: [(c.in_msgs, c.out_msgs, c.out_bytes_total)
                                        for c in natsd_server.server.clients.values()])
    assert counts == [(1, 2, 6)]
    sock.close()


def test_kind_labels_are_nats_servers() -> None:
    assert [k.label for k in Kind] == ["Client", "Router", "Gateway", "System", "Leafnode",
                                       "JetStream", "Account", "Leafnode", "Account"]  # HUB, SERVICE_IMPORT


@pytest.mark.parametrize("weight", [1, 4])
async def test_remote_queue_weight_biases_the_pick(weight: int) -> None:
    async with Server({"host": "127.0.0.1", "port": 0}) as server:
        route = FakeRemote(server, server.global_account, Kind.ROUTER, "B")
        route.interest(b"w", b"q", weight=weight)
        member = await Raw.open(server)
        await member.send(b"SUB w q 1\r\n")
        pub = await Raw.open(server)
        await pub.send(b"PUB w 1\r\nx\r\n" * 500)
        local = len(await member.msgs())
        share = len(route.calls) / 500
        assert local + len(route.calls) == 500
        expected = weight / (weight + 1)
        assert abs(share - expected) < 0.12, (share, expected)
        for raw in (member, pub):
            await raw.close()


async def test_an_in_process_publish_checks_its_subject_every_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """Subjects that passed are remembered (bounded); an invalid one is refused however many came before."""
    from natsd.routing import internal

    monkeypatch.setattr(internal, "PUBLISHED_MAX", 3)
    monkeypatch.setattr(internal, "_published", {})
    async with Server({"host": "127.0.0.1", "port": 0}) as server:
        client = server.connect_internal("publisher")
        got: list[bytes] = []
        server.connect_internal("listener").subscribe("fleet.>", lambda subject, *rest: got.append(subject))
        for i in range(10):
            client.publish(f"fleet.t{i % 5}", b"x")
            with pytest.raises(ValueError, match="invalid publish subject"):
                client.publish("fleet.*" if i % 2 else "fleet..t", b"x")
        assert len(got) == 10 and len(internal._published) <= 3
