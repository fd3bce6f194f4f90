"""A real browser speaks NATS to natsd: headless Chromium runs ``page.html`` with nats.ws from npm.

The test serves the page and the client bundle (``npm ci`` in this folder
fetches ``nats.ws``) over HTTP on 127.0.0.1, points Chromium at it, and
plays the other side from Python with nats-py: the page subscribes, publishes
``browser.hello``, Python answers on ``browser.inbox``, the page shows the
answer. The test reads the page over Chromium's DevTools protocol in real
time (with a virtual time budget the client's connect timeout can fire
before the handshake). A page from an origin the ``websocket {}`` block
does not allow is refused.

``NATSD_SCREENSHOT=path`` also saves a screenshot of the accepted page
(docs/images/websocket-browser.png was made so).

Chromium (Debian's ``chromium``) and npm are the peers: without them the
test skips, and fails under CI (``.ci/run`` installs them).
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import shutil
import subprocess
import threading
import urllib.request
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import nats
import pytest
import websockets

from natsd import Server
from natsd.config.conf import parse

pytestmark = pytest.mark.timeout(120)

HERE = Path(__file__).parent
BUNDLE = HERE / "node_modules" / "nats.ws" / "esm" / "nats.js"


def _missing(what: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{what}; CI must run the browser test (.ci/run installs it)", pytrace=False)
    pytest.skip(what)


@pytest.fixture(scope="module")
def chromium() -> str:
    path = os.environ.get("NATSD_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        _missing("chromium not found (apt-get install chromium, or set NATSD_CHROMIUM)")
    assert path is not None
    if not BUNDLE.exists():
        npm = shutil.which("npm")
        if npm is None:
            _missing("npm not found: it installs the nats.ws client the page loads")
        assert npm is not None
        subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--prefix", str(HERE)], check=True,
                       capture_output=True, timeout=300)
    return path


class _Files(SimpleHTTPRequestHandler):
    """``/page.html`` and ``/nats.js`` (the npm bundle), nothing else."""

    def translate_path(self, path: str) -> str:
        name = path.split("?", 1)[0]
        return str({"/page.html": HERE / "page.html", "/nats.js": BUNDLE}.get(name, HERE / "missing"))

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def sites() -> Iterator[tuple[str, str]]:
    """Two HTTP origins serving the page: the allowed one and a foreign one."""
    servers = [ThreadingHTTPServer(("127.0.0.1", 0), partial(_Files)) for _ in range(2)]
    for srv in servers:
        threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield tuple(f"http://127.0.0.1:{srv.server_address[1]}" for srv in servers)  # type: ignore[misc]
    for srv in servers:
        srv.shutdown()
        srv.server_close()


class Tab:
    """A headless Chromium showing one page, driven over the DevTools protocol (real time)."""

    def __init__(self, proc: asyncio.subprocess.Process, ws: Any) -> None:
        self.proc, self.ws, self._id = proc, ws, 0

    @classmethod
    async def open(cls, chromium: str, url: str, profile: Path) -> Tab:
        proc = await asyncio.create_subprocess_exec(
            chromium, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
            "--window-size=760,300", "--hide-scrollbars", f"--user-data-dir={profile}",
            "--remote-debugging-port=0", url, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL)
        try:
            port_file = profile / "DevToolsActivePort"
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 30
            while not port_file.exists() or not port_file.read_text().strip():
                assert loop.time() < deadline, "chromium did not start"
                await asyncio.sleep(0.05)
            port = int(port_file.read_text().split()[0])
            targets = await asyncio.to_thread(
                lambda: json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5)))
            page = next(t for t in targets if t["type"] == "page")
            ws = await websockets.connect(page["webSocketDebuggerUrl"], max_size=None)
        except BaseException:
            proc.kill()
            await proc.wait()
            raise
        return cls(proc, ws)

    async def call(self, method: str, **params: Any) -> Any:
        self._id += 1
        await self.ws.send(json.dumps({"id": self._id, "method": method, "params": params}))
        while True:
            answer = json.loads(await self.ws.recv())
            if answer.get("id") == self._id:
                return answer["result"]

    async def evaluate(self, expression: str) -> Any:
        return (await self.call("Runtime.evaluate", expression=expression))["result"].get("value")

    async def log_when_finished(self, timeout: float = 30) -> list[str]:
        """The page's log lines once it has set its title to ``finished``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while await self.evaluate("document.title") != "finished":
            assert loop.time() < deadline, await self.evaluate("document.body.innerText")
            await asyncio.sleep(0.1)
        return str(await self.evaluate("document.getElementById('log').textContent")).strip().splitlines()

    async def screenshot(self, path: Path) -> None:
        await self.call("Emulation.setDeviceMetricsOverride", width=760, height=190, deviceScaleFactor=1,
                        mobile=False)
        shot = await self.call("Page.captureScreenshot", format="png")
        path.write_bytes(base64.b64decode(shot["data"]))

    async def close(self) -> None:
        await self.ws.close()
        self.proc.terminate()
        try:
            await asyncio.wait_for(self.proc.wait(), 10)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()


async def test_a_browser_page_and_python_talk_through_natsd(chromium: str, sites: tuple[str, str],
                                                             tmp_path: Path, caplog: Any) -> None:
    allowed, foreign = sites
    server = Server(parse(f"host: 127.0.0.1\nport: -1\nwebsocket {{ listen: 127.0.0.1:-1, no_tls: true, "
                          f'allowed_origins: ["{allowed}"] }}\n'))
    await server.start()
    ws_url = server.ports["websocket"][0]
    nc = await nats.connect(server.client_url)
    heard: list[bytes] = []

    async def answer(msg: Any) -> None:
        heard.append(msg.data)
        await nc.publish("browser.inbox", b"hello from Python")

    try:
        await nc.subscribe("browser.hello", cb=answer)
        await nc.flush()
        tab = await Tab.open(chromium, f"{allowed}/page.html?server={ws_url}", tmp_path / "a")
        try:
            lines = await tab.log_when_finished()
            shot = os.environ.get("NATSD_SCREENSHOT")
            if shot:
                await tab.screenshot(Path(shot))
        finally:
            await tab.close()
        assert lines == [
            f"connected to {ws_url.removeprefix('ws://')} as a WebSocket client",
            "published on browser.hello",
            "received on browser.inbox: hello from Python",
        ]
        assert heard == [b"hello from the browser"]
        assert server.total_connections == 2  # Python's and the tab's, which came and went

        with caplog.at_level(logging.ERROR, "natsd.websocket"):
            tab = await Tab.open(chromium, f"{foreign}/page.html?server={ws_url}", tmp_path / "b")
            try:
                refused = await tab.log_when_finished()
            finally:
                await tab.close()
        assert len(refused) == 1 and refused[0].startswith("refused:"), refused
        assert "websocket handshake error: origin not allowed: not in the allowed list" in caplog.text
        assert heard == [b"hello from the browser"] and server.total_connections == 2
    finally:
        await nc.close()
        await server.shutdown()
