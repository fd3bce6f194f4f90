"""nats.py's own WebSocket scenarios (its ``tests/test_client_websocket.py``) against natsd.

nats.py's suite starts ``nats-server -c ws.conf`` (``websocket { port: 8080,
no_tls: true }``, and a TLS variant) and stops and starts it to test
reconnection. Here the same configurations run in a natsd process on free
ports, restarted on the same ports; the client side is nats.py's test code,
over its aiohttp WebSocket transport.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nats
import pytest
import transcripts as T  # on sys.path via conftest.py

pytestmark = pytest.mark.timeout(60)


class Natsd:
    """``python -m natsd -c ws.conf``, stoppable and startable on the same ports."""

    def __init__(self, conf: Path, ws_port: int) -> None:
        self.conf = conf
        self.port, self.ws_port = T.free_port(), ws_port
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "natsd", "-c", str(self.conf), "-a", "127.0.0.1",
                                      "-p", str(self.port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 15
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.ws_port), timeout=1).close()
                return
            except OSError:
                assert self.proc.poll() is None and time.monotonic() < deadline
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


@pytest.fixture
def ws_server(tmp_path: Path) -> Iterator[Natsd]:
    ws_port = T.free_port()
    conf = tmp_path / "ws.conf"
    conf.write_text(f"websocket\n{{\n    port: {ws_port}\n    no_tls: true\n}}\n")
    srv = Natsd(conf, ws_port)
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture
def wss_server(tmp_path: Path, tls_certs: Any) -> Iterator[Natsd]:
    ws_port = T.free_port()
    conf = tmp_path / "ws_tls.conf"
    conf.write_text(f'websocket\n{{\n    port: {ws_port}\n    tls {{\n      cert_file: "{tls_certs.server_cert}"\n'
                    f'      key_file: "{tls_certs.server_key}"\n      ca_file: "{tls_certs.ca}"\n    }}\n}}\n')
    srv = Natsd(conf, ws_port)
    srv.start()
    yield srv
    srv.stop()


async def restart(srv: Natsd) -> None:
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, srv.stop)
    await asyncio.sleep(1)
    await loop.run_in_executor(None, srv.start)


def test_simple_headers(ws_server: Natsd) -> None:
    async def run() -> None:
        nc = await nats.connect(f"ws://localhost:{ws_server.ws_port}")
        sub = await nc.subscribe("foo")
        await nc.flush()
        await nc.publish("foo", b"hello world", headers={"foo": "bar", "hello": "world-1"})
        msg = await sub.next_msg()
        assert msg.headers == {"foo": "bar", "hello": "world-1"}
        await nc.close()

    asyncio.run(run())


def test_request_with_headers(ws_server: Natsd) -> None:
    async def run() -> None:
        nc = await nats.connect(f"ws://localhost:{ws_server.ws_port}")

        async def service(msg: Any) -> None:
            msg.headers["quux"] = "quuz"
            await msg.respond(b"OK!")

        await nc.subscribe("foo", cb=service)
        await nc.flush()
        msg = await nc.request("foo", b"hello world", headers={"foo": "bar", "hello": "world"})
        assert msg.headers == {"foo": "bar", "hello": "world", "quux": "quuz"}
        assert msg.data == b"OK!"
        await nc.close()

    asyncio.run(run())


def test_empty_headers(ws_server: Natsd) -> None:
    async def run() -> None:
        nc = await nats.connect(f"ws://localhost:{ws_server.ws_port}")
        sub = await nc.subscribe("foo")
        await nc.flush()
        for headers in ({"": ""}, {"      ": ""}, {"": "                  "}):
            await nc.publish("foo", b"hello world", headers=headers)
            assert (await sub.next_msg()).headers is None
        hdrs = {"timestamp": "2022-06-15T19:08:14.639020", "type": "rpc", "command": "publish_state",
                "trace_id": "", "span_id": ""}
        await nc.publish("foo", b"Hello from Python!", headers=hdrs)
        assert (await sub.next_msg()).headers == hdrs
        await nc.close()

    asyncio.run(run())


def _reconnect(srv: Natsd, url: str, **opts: Any) -> None:
    async def run() -> None:
        reconnected: asyncio.Future[bool] = asyncio.get_running_loop().create_future()

        async def reconnected_cb() -> None:
            if not reconnected.done():
                reconnected.set_result(True)

        nc = await nats.connect(url, reconnected_cb=reconnected_cb, **opts)
        sub = await nc.subscribe("foo")

        async def bar_cb(msg: Any) -> None:
            await msg.respond(b"OK!")

        await nc.subscribe("bar", cb=bar_cb)
        await nc.publish("foo", b"First")
        await nc.flush()
        assert (await sub.next_msg()).data == b"First"
        assert (await nc.request("bar", b"hi")).data == b"OK!"
        await restart(srv)
        await asyncio.wait_for(reconnected, 5)
        await nc.publish("foo", b"Second")
        await nc.flush()
        assert (await sub.next_msg()).data == b"Second"
        assert (await nc.request("bar", b"hi")).data == b"OK!"
        await nc.close()

    asyncio.run(run())


def test_reconnect(ws_server: Natsd) -> None:
    _reconnect(ws_server, f"ws://localhost:{ws_server.ws_port}")


def test_close_while_disconnected(ws_server: Natsd) -> None:
    async def run() -> None:
        nc = await nats.connect(f"ws://localhost:{ws_server.ws_port}")
        sub = await nc.subscribe("foo")
        await nc.publish("foo", b"First")
        await nc.flush()
        assert (await sub.next_msg()).data == b"First"
        await asyncio.get_running_loop().run_in_executor(None, ws_server.stop)
        await asyncio.sleep(1)
        await nc.close()  # must not fail while disconnected

    asyncio.run(run())


def test_with_static_headers(ws_server: Natsd) -> None:
    async def run() -> None:
        custom_headers = {"Authorization": ["Bearer RandomToken"], "X-Client-ID": ["test-client-123"],
                          "Accept": ["application/json", "text/plain", "application/msgpack"]}
        nc = await nats.connect(f"ws://localhost:{ws_server.ws_port}", ws_connection_headers=custom_headers)
        sub = await nc.subscribe("foo")
        await nc.flush()
        msgs = [b"A" * 100 for _ in range(10)]
        for msg in msgs:
            await nc.publish("foo", msg)
        for msg in msgs:
            assert (await sub.next_msg(timeout=1.0)).data == msg
        await nc.close()

    asyncio.run(run())


def test_tls_pub_sub(wss_server: Natsd, tls_certs: Any) -> None:
    async def run() -> None:
        nc = await nats.connect(f"wss://localhost:{wss_server.ws_port}", tls=tls_certs.client())
        sub = await nc.subscribe("foo")
        await nc.flush()
        await nc.publish("foo", b"hello world", headers={"foo": "bar"})
        assert (await sub.next_msg()).headers == {"foo": "bar"}
        await nc.close()

    asyncio.run(run())


def test_tls_reconnect(wss_server: Natsd, tls_certs: Any) -> None:
    _reconnect(wss_server, f"wss://localhost:{wss_server.ws_port}", tls=tls_certs.client())
