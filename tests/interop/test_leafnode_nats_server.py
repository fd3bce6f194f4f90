"""Leaf nodes between natsd and nats-server 2.15.1, both ways round.

natsd as a leaf of a nats-server hub, and nats-server as a leaf of a natsd
hub: messages, request/reply, headers and queue groups both ways; the link
bound to one account on each side (another account of the hub never sees
the leaf's traffic); the link cut and restored while the leaf keeps serving
its own clients. natsd runs in-process (``natsd_factory``), nats-server as a
process on fixed ports so that it can be stopped and started again.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nats
import pytest
import transcripts as T  # on sys.path via conftest.py
from conftest import require_nats_server

from natsd.config.conf import parse
from natsd_plugins.leafnode import LEAFNODES

pytestmark = pytest.mark.timeout(120)

HUB_ACCOUNTS = """
accounts {
  ACC { users: [{user: a, password: a}] }
  OTHER { users: [{user: o, password: o}] }
}
"""
LEAF_ACCOUNTS = """
accounts {
  LACC { users: [{user: l, password: l}] }
}
"""


def hub_conf(name: str, leaf_port: int, extra: str = "") -> str:
    return (f"server_name: {name}\n{HUB_ACCOUNTS}\n{extra}\n"
            f"leafnodes {{ listen: 127.0.0.1:{leaf_port}\n"
            f"  authorization {{ users: [ {{user: leaf, password: leafpw, account: ACC}} ] }} }}\n")


def leaf_conf(name: str, hub_port: int, extra: str = "") -> str:
    return (f"server_name: {name}\n{LEAF_ACCOUNTS}\n{extra}\n"
            f'leafnodes {{ remotes: [ {{ url: "nats-leaf://leaf:leafpw@127.0.0.1:{hub_port}", '
            f"account: LACC }} ] }}\n")


class NatsServer:
    """A nats-server process on fixed ports, to be stopped and started again."""

    def __init__(self, workdir: Path, conf: str, name: str) -> None:
        self.binary = require_nats_server()
        self.name, self.base = name, conf
        self.conf = workdir / f"{name}.conf"
        self.log = workdir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._choose_ports()

    def _choose_ports(self) -> None:
        """Its client and monitoring ports (nothing else refers to them, so they can change)."""
        self.port, self.mport = T.free_port(), T.free_port()
        self.conf.write_text(self.base + f"\nhttp_port: {self.mport}\n")

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> NatsServer:
        """Start it and wait until its monitoring port answers. A port chosen free can be taken
        before nats-server binds it (another process's outgoing connection): then it exits, and
        is started again on other client and monitoring ports (up to 3 times)."""
        for _ in range(3):
            with open(self.log, "ab") as out:
                self.proc = subprocess.Popen([self.binary, "-c", str(self.conf), "-a", "127.0.0.1",
                                              "-p", str(self.port)], stdout=out, stderr=subprocess.STDOUT)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and self.proc.poll() is None:
                if self.monitor("varz") is not None:
                    return self
                time.sleep(0.05)
            if self.proc.poll() is None or b"address already in use" not in self.log.read_bytes()[-2000:]:
                break
            self._choose_ports()
        raise AssertionError(f"nats-server {self.name} did not start:\n{self.log.read_text(errors='replace')[-2000:]}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def monitor(self, endpoint: str) -> Any:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.mport}/{endpoint}", timeout=2) as r:
                return json.loads(r.read())
        except OSError:
            return None


@pytest.fixture
def nats_servers(tmp_path: Path) -> Iterator[list[NatsServer]]:
    started: list[NatsServer] = []
    yield started
    for srv in started:
        srv.stop()


def wait_for(check: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


def natsd_links(srv: Any) -> int:
    return srv.call(lambda: sum(len(ls) for ls in srv.server.stash[LEAFNODES].links.values()))


async def exchange(hub_url: str, leaf_url: str) -> None:
    """Traffic both ways over a link whose hub side is account ACC and leaf side LACC."""
    hub = await nats.connect(hub_url, user="a", password="a")
    other = await nats.connect(hub_url, user="o", password="o")
    leaf = await nats.connect(leaf_url, user="l", password="l")
    try:
        up = await hub.subscribe("up.>")
        down = await leaf.subscribe("down.>")
        spy = [await other.subscribe("up.>"), await other.subscribe("down.>")]
        for conn in (hub, leaf, other):
            await conn.flush()
        await settle(leaf, "up.probe", up)
        await settle(hub, "down.probe", down)
        for i in range(5):
            await leaf.publish(f"up.{i}", b"u%d" % i, headers={"X-Seq": str(i)} if i == 4 else None)
            await hub.publish(f"down.{i}", b"d%d" % i)
        await leaf.flush()
        await hub.flush()
        got_up = [await up.next_msg(timeout=2) for _ in range(5)]
        got_down = [await down.next_msg(timeout=2) for _ in range(5)]
        assert [m.data for m in got_up] == [b"u%d" % i for i in range(5)]
        assert got_up[4].headers == {"X-Seq": "4"}
        assert [m.data for m in got_down] == [b"d%d" % i for i in range(5)]

        async def answer(prefix: bytes) -> Any:
            async def cb(msg: Any) -> None:
                await msg.respond(prefix + msg.data)
            return cb

        await hub.subscribe("svc.hub", cb=await answer(b"hub:"))
        await leaf.subscribe("svc.leaf", cb=await answer(b"leaf:"))
        await hub.flush()
        await leaf.flush()
        assert (await request_until(leaf, "svc.hub", b"1")).data == b"hub:1"
        assert (await request_until(hub, "svc.leaf", b"2")).data == b"leaf:2"

        # queue group: members on the hub side serve the hub's messages; with no member on
        # the leaf, the leaf's messages cross to the hub's members
        counts = {"hub": 0, "leaf": 0}

        def member(where: str) -> Any:
            async def cb(msg: Any) -> None:
                counts[where] += 1
            return cb

        for _ in range(2):
            await hub.subscribe("work", queue="q", cb=member("hub"))
        await hub.flush()
        await settle_queue(leaf, "work")
        counts["hub"] = 0
        for _ in range(20):
            await leaf.publish("work", b"w")
        await leaf.flush()
        await until(lambda: counts["hub"] == 20)
        await leaf.subscribe("work", queue="q", cb=member("leaf"))
        await leaf.flush()
        await asyncio.sleep(0.3)
        for _ in range(20):
            await hub.publish("work", b"h")
        await hub.flush()
        await until(lambda: counts["hub"] == 40)
        await asyncio.sleep(0.2)
        assert counts == {"hub": 40, "leaf": 0}  # the hub's members first, each message once

        for sub in spy:  # the hub's other account saw none of it
            with pytest.raises(nats.errors.TimeoutError):
                await sub.next_msg(timeout=0.2)
    finally:
        for conn in (hub, other, leaf):
            await conn.close()


async def settle(publisher: Any, subject: str, sub: Any) -> None:
    """Publish probes until one arrives: the subscription has crossed the link."""
    deadline = time.monotonic() + 10
    while True:
        await publisher.publish(subject, b"probe")
        await publisher.flush()
        try:
            await sub.next_msg(timeout=0.2)
        except nats.errors.TimeoutError:
            assert time.monotonic() < deadline, f"{subject} never crossed"
            continue
        while True:  # drain late probes
            try:
                await sub.next_msg(timeout=0.1)
            except nats.errors.TimeoutError:
                return


async def settle_queue(publisher: Any, subject: str) -> None:
    deadline = time.monotonic() + 10
    while True:
        try:
            await publisher.request(subject, b"", timeout=0.2)
        except nats.errors.NoRespondersError:
            assert time.monotonic() < deadline, f"no queue interest for {subject}"
            await asyncio.sleep(0.05)
            continue
        except nats.errors.TimeoutError:
            return  # a member got it (members do not answer)
        return


async def request_until(conn: Any, subject: str, data: bytes) -> Any:
    deadline = time.monotonic() + 10
    while True:
        try:
            return await conn.request(subject, data, timeout=0.5)
        except (nats.errors.NoRespondersError, nats.errors.TimeoutError):
            assert time.monotonic() < deadline, f"no answer on {subject}"
            await asyncio.sleep(0.05)


async def until(check: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def local_traffic(leaf_url: str) -> None:
    """The leaf's own clients keep talking while the hub is gone."""
    a = await nats.connect(leaf_url, user="l", password="l")
    b = await nats.connect(leaf_url, user="l", password="l")
    sub = await b.subscribe("local.>")
    await b.flush()

    async def echo(msg: Any) -> None:
        await msg.respond(b"echo:" + msg.data)

    await b.subscribe("local.svc", cb=echo)
    await b.flush()
    await a.publish("local.x", b"still here")
    assert (await sub.next_msg(timeout=2)).data == b"still here"
    assert (await a.request("local.svc", b"1", timeout=2)).data == b"echo:1"
    await a.close()
    await b.close()


def test_natsd_leaf_of_a_nats_server_hub(natsd_factory: Any, nats_servers: list[NatsServer],
                                         tmp_path: Path) -> None:
    leaf_port = T.free_port()
    hub = NatsServer(tmp_path, hub_conf("HUB", leaf_port), "hub")
    nats_servers.append(hub.start())
    leaf = natsd_factory(parse(leaf_conf("LEAF", leaf_port) + "host: 127.0.0.1\nport: -1\n"))
    wait_for(lambda: natsd_links(leaf) == 1 and (hub.monitor("leafz") or {}).get("leafnodes") == 1)
    leafz = hub.monitor("leafz?subs=1")["leafs"][0]
    assert (leafz["name"], leafz["account"], leafz["is_spoke"]) == ("LEAF", "ACC", False)
    asyncio.run(exchange(hub.url, leaf.url))

    hub.stop()  # the link is cut: the leaf keeps serving its own clients
    wait_for(lambda: natsd_links(leaf) == 0)
    asyncio.run(local_traffic(leaf.url))
    hub.start()  # and comes back: interest is sent again, traffic resumes
    wait_for(lambda: natsd_links(leaf) == 1, 15)
    asyncio.run(exchange(hub.url, leaf.url))


def test_nats_server_leaf_of_a_natsd_hub(natsd_factory: Any, nats_servers: list[NatsServer],
                                         tmp_path: Path) -> None:
    leaf_port, client_port = T.free_port(), T.free_port()
    conf = parse(hub_conf("HUB", leaf_port) + f"host: 127.0.0.1\nport: {client_port}\n")
    hub = natsd_factory(conf)
    leaf = NatsServer(tmp_path, leaf_conf("LEAF", leaf_port), "leaf")
    nats_servers.append(leaf.start())
    wait_for(lambda: natsd_links(hub) == 1 and (leaf.monitor("leafz") or {}).get("leafnodes") == 1)
    view = leaf.monitor("leafz")["leafs"][0]
    assert (view["name"], view["account"], view["is_spoke"]) == ("HUB", "LACC", True)
    asyncio.run(exchange(hub.url, leaf.url))

    hub.stop()
    wait_for(lambda: (leaf.monitor("leafz") or {}).get("leafnodes") == 0)
    asyncio.run(local_traffic(leaf.url))
    hub = natsd_factory(conf)  # the same ports again
    wait_for(lambda: natsd_links(hub) == 1, 15)
    asyncio.run(exchange(hub.url, leaf.url))


PERM_HUB = """
accounts {
  ACC { users: [{user: lu, password: lp, permissions: {publish: {deny: "nopub.>"}, subscribe: {deny: "nosub.>"}}},
                {user: a, password: a}] }
}
"""


def perm_leaf_conf(name: str, hub_port: int) -> str:
    return (f"server_name: {name}\n{LEAF_ACCOUNTS}\n"
            f'leafnodes {{ remotes: [ {{ url: "nats-leaf://lu:lp@127.0.0.1:{hub_port}", account: LACC,'
            f' deny_imports: ["di.>"], deny_exports: ["de.>"] }} ] }}\n')


async def what_crosses(hub_url: str, leaf_url: str) -> tuple[list[str], list[str]]:
    """Subjects that reach the hub from the leaf, and the leaf from the hub, under the
    leaf user's permissions and the remote's deny lists."""
    hub = await nats.connect(hub_url, user="a", password="a")
    leaf = await nats.connect(leaf_url, user="l", password="l")
    try:
        at_hub = await hub.subscribe(">")
        at_leaf = await leaf.subscribe(">")
        await hub.flush()
        await leaf.flush()
        await settle(leaf, "ok.probe", at_hub)  # the hub's ">" has crossed to the leaf
        await settle(hub, "fine.probe", at_leaf)
        for subject in ("nopub.x", "de.x", "ok.x", "nosub.x", "di.x"):
            await leaf.publish(subject, b"1")
        for subject in ("nosub.y", "di.y", "fine.y", "nopub.y", "de.y"):
            await hub.publish(subject, b"2")
        await leaf.flush()
        await hub.flush()
        await asyncio.sleep(0.5)

        async def drain(sub: Any, own: str) -> list[str]:
            seen = []
            while True:
                try:
                    msg = await sub.next_msg(timeout=0.1)
                except nats.errors.TimeoutError:
                    return sorted(s for s in seen if s.endswith(own))
                seen.append(msg.subject)

        return await drain(at_hub, ".x"), await drain(at_leaf, ".y")
    finally:
        await hub.close()
        await leaf.close()


def test_permissions_and_deny_lists_match_nats_server(natsd_factory: Any, nats_servers: list[NatsServer],
                                                      tmp_path: Path) -> None:
    """The same leaf user and deny lists, each side played by natsd and by nats-server: the
    same subjects cross (the reference pair, nats-server with nats-server, first)."""
    results = {}
    for hub_kind, leaf_kind in (("nats-server", "nats-server"), ("natsd", "nats-server"),
                                ("nats-server", "natsd")):
        leaf_port, client_port = T.free_port(), T.free_port()
        hub_text = (f"server_name: HUB\n{PERM_HUB}\nleafnodes {{ listen: 127.0.0.1:{leaf_port} }}\n")
        if hub_kind == "natsd":
            hub = natsd_factory(parse(hub_text + f"host: 127.0.0.1\nport: {client_port}\n"))
            hub_url = hub.url
        else:
            ns = NatsServer(tmp_path, hub_text, f"hub-{leaf_kind}")
            nats_servers.append(ns.start())
            hub_url = ns.url
        if leaf_kind == "natsd":
            leaf = natsd_factory(parse(perm_leaf_conf("LEAF", leaf_port) + "host: 127.0.0.1\nport: -1\n"))
            leaf_url = leaf.url
            wait_for(lambda: natsd_links(leaf) == 1)
        else:
            nl = NatsServer(tmp_path, perm_leaf_conf("LEAF", leaf_port), f"leaf-{hub_kind}")
            nats_servers.append(nl.start())
            leaf_url = nl.url
            wait_for(lambda: (nl.monitor("leafz") or {}).get("leafnodes") == 1)
        results[(hub_kind, leaf_kind)] = asyncio.run(what_crosses(hub_url, leaf_url))
    reference = results[("nats-server", "nats-server")]
    assert reference == (["ok.x"], ["de.y", "fine.y", "nopub.y"])  # 2.15.1 with itself
    assert results[("natsd", "nats-server")] == reference
    assert results[("nats-server", "natsd")] == reference


# -- leaf links carried over WebSocket ---------------------------------------------------------


def ws_block(port: int, compression: bool = False) -> str:
    return f"websocket {{ listen: 127.0.0.1:{port}, no_tls: true, compression: {str(compression).lower()} }}\n"


def ws_leaf_conf(name: str, ws_port: int, compression: bool = False) -> str:
    return (f"server_name: {name}\n{LEAF_ACCOUNTS}\n"
            f'leafnodes {{ remotes: [ {{ url: "ws://leaf:leafpw@127.0.0.1:{ws_port}", account: LACC, '
            f"ws_compression: {str(compression).lower()} }} ] }}\n")


@pytest.mark.parametrize("compression", [False, True], ids=["plain", "compressed"])
def test_natsd_leaf_over_websocket_to_a_nats_server_hub(natsd_factory: Any, nats_servers: list[NatsServer],
                                                        tmp_path: Path, compression: bool) -> None:
    ws_port = T.free_port()
    hub = NatsServer(tmp_path, hub_conf("HUB", T.free_port(), ws_block(ws_port, compression)), "hub")
    nats_servers.append(hub.start())
    leaf = natsd_factory(parse(ws_leaf_conf("LEAF", ws_port, compression) + "host: 127.0.0.1\nport: -1\n"))
    wait_for(lambda: natsd_links(leaf) == 1 and (hub.monitor("leafz") or {}).get("leafnodes") == 1)
    assert leaf.call(lambda: next(iter(next(iter(leaf.server.stash[LEAFNODES].links.values())))).carrier) \
        == "websocket"
    asyncio.run(exchange(hub.url, leaf.url))

    hub.stop()  # cut, then back on the same WebSocket port: the dialer upgrades again
    wait_for(lambda: natsd_links(leaf) == 0)
    hub.start()
    wait_for(lambda: natsd_links(leaf) == 1, 15)
    asyncio.run(exchange(hub.url, leaf.url))


@pytest.mark.parametrize("compression", [False, True], ids=["plain", "compressed"])
def test_nats_server_leaf_over_websocket_to_a_natsd_hub(natsd_factory: Any, nats_servers: list[NatsServer],
                                                        tmp_path: Path, compression: bool) -> None:
    ws_port = T.free_port()
    hub = natsd_factory(parse(hub_conf("HUB", T.free_port(), ws_block(ws_port, compression))
                              + "host: 127.0.0.1\nport: -1\n"))
    leaf = NatsServer(tmp_path, ws_leaf_conf("LEAF", ws_port, compression), "leaf")
    nats_servers.append(leaf.start())
    wait_for(lambda: natsd_links(hub) == 1 and (leaf.monitor("leafz") or {}).get("leafnodes") == 1)
    view = leaf.monitor("leafz")["leafs"][0]
    assert (view["name"], view["account"], view["is_spoke"]) == ("HUB", "LACC", True)
    asyncio.run(exchange(hub.url, leaf.url))


def test_a_websocket_port_without_leafnodes_refuses_a_leaf(natsd_factory: Any, nats_servers: list[NatsServer],
                                                           tmp_path: Path, caplog: Any) -> None:
    """As nats-server: the upgrade succeeds, then the connection is closed and logged."""
    ws_port = T.free_port()
    hub = natsd_factory(parse(HUB_ACCOUNTS + ws_block(ws_port) + "host: 127.0.0.1\nport: -1\n"))
    leaf = NatsServer(tmp_path, ws_leaf_conf("LEAF", ws_port), "leaf")
    with caplog.at_level("ERROR", "natsd.websocket"):
        nats_servers.append(leaf.start())
        wait_for(lambda: leaf.log.read_text().count("Leafnode connection closed") >= 2, 10)
    assert "Not configured to accept leaf node connections" in caplog.text
    assert (leaf.monitor("leafz") or {}).get("leafnodes") == 0
    assert hub.call(lambda: LEAFNODES not in hub.server.stash)
