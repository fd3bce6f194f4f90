"""nats.py's cluster scenarios with natsd processes started as nats.py's test suite starts
nats-server: ``--cluster_listen``, every member (itself included) in ``--routes``, and
``--cluster_name CLUSTER``.

The client learns the other members from INFO ``connect_urls`` (on its first
connect, or in asynchronous INFO when members join later, through
``discovered_server_cb``) and fails over to a member it was never given.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import nats
import pytest

import transcripts as T  # on sys.path via conftest.py


class Member:
    """One natsd process of the test cluster."""

    def __init__(self, port: int, http_port: int, cluster_port: int, routes: list[str],
                 auth: tuple[str, str] | None = None) -> None:
        self.port, self.http_port = port, http_port
        cmd = [sys.executable, "-m", "natsd", "-p", str(port), "-m", str(http_port), "-a", "127.0.0.1",
               "--cluster_listen", f"nats://127.0.0.1:{cluster_port}",
               "--routes", ",".join(routes), "--cluster_name", "CLUSTER"]
        if auth:
            cmd += ["--user", auth[0], "--pass", auth[1]]
        self.cmd = cmd
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(self.cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 15
        while True:  # as nats.py's harness: wait for the monitoring port
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/varz", timeout=1):
                    return
            except OSError:
                assert self.proc.poll() is None and time.monotonic() < deadline
                time.sleep(0.05)

    def routes(self) -> int:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/routez", timeout=2) as answer:
            return int(json.loads(answer.read())["num_routes"])

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


def make_cluster(all_routes: bool, auth: tuple[str, str] | None = None) -> list[Member]:
    ports = [(T.free_port(), T.free_port(), T.free_port()) for _ in range(3)]
    routes = [f"nats://127.0.0.1:{c}" for _, _, c in ports]
    return [Member(p, h, c, routes if all_routes else routes[:1], auth) for p, h, c in ports]


@pytest.fixture
def cluster() -> Iterator[list[Member]]:
    members = make_cluster(all_routes=True)
    members[0].start()  # as nats.py's ClusteringTestCase: the first member only
    yield members
    for member in members:
        member.stop()


def test_discover_servers_on_first_connect(cluster: list[Member]) -> None:
    cluster[1].start()
    cluster[2].start()
    deadline = time.monotonic() + 10
    while any(m.routes() != 2 for m in cluster):
        assert time.monotonic() < deadline
        time.sleep(0.1)

    async def run() -> None:
        found: list[Any] = []

        async def discovered() -> None:
            found.append(1)

        nc = await nats.connect(f"nats://127.0.0.1:{cluster[0].port}", discovered_server_cb=discovered)
        assert nc.is_connected
        await nc.close()
        assert len(nc.servers) == 3 and len(nc.discovered_servers) == 2 and not found

    asyncio.run(run())


def test_discover_servers_after_first_connect(cluster: list[Member]) -> None:
    async def run() -> None:
        found: list[Any] = []

        async def discovered() -> None:
            found.append(1)

        nc = await nats.connect(f"nats://127.0.0.1:{cluster[0].port}", discovered_server_cb=discovered)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, cluster[1].start)
        await asyncio.sleep(1)
        await loop.run_in_executor(None, cluster[2].start)
        await asyncio.sleep(1)
        await nc.close()
        assert len(nc.servers) == 3 and len(nc.discovered_servers) == 2 and len(found) == 2

    asyncio.run(run())


def test_reconnect_to_a_discovered_server_with_auth() -> None:
    members = make_cluster(all_routes=False, auth=("foo", "bar"))
    try:
        for member in members:
            member.start()

        async def run() -> None:
            reconnected = asyncio.get_running_loop().create_future()

            async def on_reconnect() -> None:
                if not reconnected.done():
                    reconnected.set_result(True)

            nc = await nats.connect(f"nats://127.0.0.1:{members[0].port}", user="foo", password="bar",
                                    reconnected_cb=on_reconnect, reconnect_time_wait=0.1)
            await asyncio.sleep(1)  # the cluster assembles

            async def handler(msg: Any) -> None:
                await nc.publish(msg.reply, b"ok")

            await nc.subscribe("foo", cb=handler)
            await asyncio.get_running_loop().run_in_executor(None, members[0].stop)
            await asyncio.wait_for(reconnected, 5)
            assert (await nc.request("foo", b"hi", timeout=2)).data == b"ok"
            await nc.close()
            assert len(nc.servers) > 1 and len(nc.discovered_servers) > 0

        asyncio.run(run())
    finally:
        for member in members:
            member.stop()
