"""A supercluster: a cluster of natsd servers and a cluster of nats-server 2.15.1 servers
joined by gateways.

Cluster A is two natsd servers (in-process) routed together, cluster B two
nats-server processes; every server names the other cluster's gateways. The
tests check what crosses: pub/sub and request/reply both ways from every
server, interest-only routing (nothing crosses for a subject the other
cluster does not want: counted on the gateway connections), and the seeds'
geo-distributed queue group, served at home while a local member exists,
by the other cluster while none does, and at home again when one returns.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nats
import pytest
import transcripts as T  # on sys.path via conftest.py
from test_leafnode_nats_server import NatsServer, wait_for

from natsd.config.conf import parse
from natsd_plugins.gateway import GATEWAYS

pytestmark = pytest.mark.timeout(120)


class Supercluster:
    def __init__(self, natsd_factory: Any, tmp_path: Path, started: list[NatsServer]) -> None:
        ca, cb = [T.free_port() for _ in range(2)], [T.free_port() for _ in range(2)]
        ga, gb = [T.free_port() for _ in range(2)], [T.free_port() for _ in range(2)]
        a_urls = ", ".join(f'"nats://127.0.0.1:{p}"' for p in ga)
        b_urls = ", ".join(f'"nats://127.0.0.1:{p}"' for p in gb)
        self.natsd = []
        for i in range(2):
            routes = f'routes: ["nats-route://127.0.0.1:{ca[0]}"]' if i else ""
            conf = (f"server_name: A{i + 1}\nhost: 127.0.0.1\nport: -1\n"
                    f"cluster {{ name: A, listen: 127.0.0.1:{ca[i]}, {routes} }}\n"
                    f"gateway {{ name: A, listen: 127.0.0.1:{ga[i]}, gateways: [{{name: B, urls: [{b_urls}]}}] }}\n")
            self.natsd.append(natsd_factory(parse(conf)))
        self.ns = []
        for i in range(2):
            routes = f'routes: ["nats-route://127.0.0.1:{cb[0]}"]' if i else ""
            conf = (f"server_name: B{i + 1}\n"
                    f"cluster {{ name: B, listen: 127.0.0.1:{cb[i]}, {routes} }}\n"
                    f"gateway {{ name: B, listen: 127.0.0.1:{gb[i]}, gateways: [{{name: A, urls: [{a_urls}]}}] }}\n")
            srv = NatsServer(tmp_path, conf, f"B{i + 1}")
            started.append(srv.start())
            self.ns.append(srv)
        wait_for(self.meshed, 20)

    def meshed(self) -> bool:
        for srv in self.natsd:
            gw = srv.call(lambda s=srv: (list(s.server.stash[GATEWAYS].outbound),
                                         len(s.server.stash[GATEWAYS].inbound)))
            if gw[0] != ["B"]:
                return False
        for srv in self.ns:
            view = srv.monitor("gatewayz") or {}
            if "A" not in view.get("outbound_gateways", {}):
                return False
        return True

    def urls(self) -> list[str]:
        return [s.url for s in self.natsd] + [s.url for s in self.ns]

    def natsd_sent(self) -> int:
        """Messages natsd servers sent over their outbound gateways."""
        return sum(s.call(lambda s=s: sum(link.out_msgs for link in s.server.stash[GATEWAYS].outbound.values()))
                   for s in self.natsd)

    def ns_sent(self) -> int:
        return sum(view["connection"]["out_msgs"] for srv in self.ns
                   for view in (srv.monitor("gatewayz") or {}).get("outbound_gateways", {}).values())


@pytest.fixture
def supercluster(natsd_factory: Any, tmp_path: Path) -> Iterator[Supercluster]:
    started: list[NatsServer] = []
    try:
        yield Supercluster(natsd_factory, tmp_path, started)
    finally:
        for srv in started:
            srv.stop()


async def connect_all(urls: list[str]) -> list[Any]:
    return [await nats.connect(u) for u in urls]


async def until(check: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


def test_messages_and_requests_cross_both_ways(supercluster: Supercluster) -> None:
    async def run() -> None:
        conns = await connect_all(supercluster.urls())  # A1, A2 (natsd), B1, B2 (nats-server)
        got: dict[int, list[str]] = {i: [] for i in range(4)}

        def collect(i: int) -> Any:
            async def cb(msg: Any) -> None:
                got[i].append(msg.subject)
            return cb

        for i, nc in enumerate(conns):
            await nc.subscribe(f"to.{i}", cb=collect(i))

            async def answer(msg: Any, i: int = i) -> None:
                await msg.respond(b"from %d" % i)

            await nc.subscribe(f"svc.{i}", cb=answer)
            await nc.flush()
        for i, nc in enumerate(conns):  # every server asks every other server
            for j in range(4):
                if i != j:
                    deadline = time.monotonic() + 10
                    while True:
                        try:
                            reply = await nc.request(f"svc.{j}", b"", timeout=0.5)
                            break
                        except (nats.errors.NoRespondersError, nats.errors.TimeoutError):
                            assert time.monotonic() < deadline, (i, j)
                            await asyncio.sleep(0.1)
                    assert reply.data == b"from %d" % j
        for i, nc in enumerate(conns):
            for j in range(4):
                if i != j:
                    await nc.publish(f"to.{j}", b"x", headers={"From": str(i)})
            await nc.flush()
        await until(lambda: all(len(v) == 3 for v in got.values()))
        await asyncio.sleep(0.3)
        assert all(len(v) == 3 for v in got.values()), got  # each once
        for nc in conns:
            await nc.close()

    asyncio.run(run())


def test_nothing_crosses_without_interest(supercluster: Supercluster) -> None:
    async def run() -> None:
        a1, a2, b1, b2 = await connect_all(supercluster.urls())
        before_a, before_b = supercluster.natsd_sent(), supercluster.ns_sent()
        for i in range(200):
            await a1.publish(f"nobody.a.{i}", b"x")
            await b1.publish(f"nobody.b.{i}", b"x")
        await a1.flush()
        await b1.flush()
        await asyncio.sleep(0.5)
        # interest-only mode: not one of the 400 messages crossed a gateway
        # (system events may cross: count only the growth beyond them)
        sent_a, sent_b = supercluster.natsd_sent() - before_a, supercluster.ns_sent() - before_b
        assert sent_a < 5 and sent_b < 5, (sent_a, sent_b)
        sub = await b2.subscribe("wanted.>")
        await b2.flush()
        await asyncio.sleep(0.5)
        before_a = supercluster.natsd_sent()
        for i in range(50):
            await a2.publish(f"wanted.{i}", b"x")
        await a2.flush()
        for _ in range(50):
            await sub.next_msg(timeout=2)
        assert supercluster.natsd_sent() - before_a >= 50
        for nc in (a1, a2, b1, b2):
            await nc.close()

    asyncio.run(run())


def test_geo_queue_failover_and_failback(supercluster: Supercluster) -> None:
    """The seeds' example: a queue group with members in both clusters serves each
    message at home; without home members the other cluster serves; when they return,
    home again."""
    async def run() -> None:
        a1, a2, b1, b2 = await connect_all(supercluster.urls())
        served = {"A": 0, "B": 0}

        def member(where: str) -> Any:
            async def cb(msg: Any) -> None:
                served[where] += 1
                await msg.respond(where.encode())
            return cb

        home = [await a2.subscribe("orders", queue="workers", cb=member("A"))]
        await b1.subscribe("orders", queue="workers", cb=member("B"))
        await b2.subscribe("orders", queue="workers", cb=member("B"))
        for nc in (a2, b1, b2):
            await nc.flush()
        await asyncio.sleep(1.0)

        async def ask(n: int) -> list[bytes]:
            return [(await a1.request("orders", b"o", timeout=2)).data for _ in range(n)]

        assert await ask(20) == [b"A"] * 20  # served at home
        await asyncio.sleep(0.3)
        assert served == {"A": 20, "B": 0}  # and only there: each request once
        for sub in home:
            await sub.unsubscribe()
        await a2.flush()
        await asyncio.sleep(1.0)
        assert await ask(20) == [b"B"] * 20  # disaster recovery: the other cluster serves
        await asyncio.sleep(0.3)
        assert served == {"A": 20, "B": 20}
        home = [await a2.subscribe("orders", queue="workers", cb=member("A"))]
        await a2.flush()
        await asyncio.sleep(1.0)
        assert await ask(20) == [b"A"] * 20  # failback
        await asyncio.sleep(0.3)
        assert served == {"A": 40, "B": 20}
        for nc in (a1, a2, b1, b2):
            await nc.close()

    asyncio.run(run())


def test_gatewayz_and_varz_have_nats_servers_shape(supercluster: Supercluster) -> None:
    from natsd_plugins.monitor.views import monitor_of

    a1 = supercluster.natsd[0]
    ours = a1.call(lambda: monitor_of(a1.server).endpoints["/gatewayz"]({"accs": "1"}))
    theirs = supercluster.ns[0].monitor("gatewayz?accs=1")
    assert set(ours) == set(theirs)
    assert set(ours["outbound_gateways"]["B"]) == set(theirs["outbound_gateways"]["A"])
    assert set(ours["outbound_gateways"]["B"]["connection"]) == set(theirs["outbound_gateways"]["A"]["connection"])
    their_account = {k for acc in theirs["outbound_gateways"]["A"]["accounts"] for k in acc}
    our_account = {k for acc in ours["outbound_gateways"]["B"]["accounts"] for k in acc}
    assert our_account <= their_account
    our_varz = a1.call(lambda: monitor_of(a1.server).endpoints["/varz"]({}))["gateway"]
    their_varz = supercluster.ns[0].monitor("varz")["gateway"]
    assert set(our_varz) == set(their_varz), (our_varz, their_varz)
