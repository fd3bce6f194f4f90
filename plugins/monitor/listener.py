"""The HTTP monitoring port: an asyncio listener serving a server's monitoring endpoints.

:class:`MonitorListener` is a :class:`natsd.plugin.contracts.Listener`. Each
connection is a thin :class:`asyncio.Protocol` around the sans-I/O
:class:`~.http.RequestParser`; requests are answered in order on the event
loop (the views only read counters). GET and HEAD are served, anything else
is refused with 405; keep-alive connections are closed after
:data:`IDLE_TIMEOUT` seconds without a request. Answers are JSON, indented
as nats-server's, or JSONP with ``?callback=``; ``/metrics`` is Prometheus'
text format and ``/`` a page of links.
"""

from __future__ import annotations

import asyncio
import html
import json
import logging
import re
from typing import Any
from urllib.parse import quote

from natsd.plugin.contracts import ServerAPI
from natsd.server import NATS_SERVER_VERSION

from .http import HTTPError, Request, RequestParser, response
from .settings import MonitorSettings
from .views import Monitor, monitor_of

log = logging.getLogger("natsd.monitor")

IDLE_TIMEOUT = 30.0
NOT_FOUND = b"404 page not found\n"
COMPACT = frozenset({"/healthz"})  # nats-server does not indent these
_CALLBACK = re.compile(r"[A-Za-z_$][\w$.]*\Z")
_LINKS = ("varz", "jsz", "connz", "accountz", "accstatz", "subsz", "routez", "leafz",
          "gatewayz", "healthz", "metrics")


class MonitorListener:
    """Serves ``monitor``'s endpoints on ``settings``' address; see the module docstring."""

    def __init__(self, server: ServerAPI, settings: MonitorSettings) -> None:
        self.server = server
        self.settings = settings
        self.base_path = settings.base_path
        self.host = ""
        self.port = 0
        self.requests: dict[str, int] = {}
        """Requests served per endpoint path (varz's ``http_req_stats``)."""
        self.monitor: Monitor | None = None
        self.registry: Any = None
        self._listener: asyncio.AbstractServer | None = None
        self._connections: set[_Connection] = set()

    async def start(self) -> None:
        self.monitor = monitor_of(self.server)
        self.monitor.http = self
        from .metrics import build_registry  # prometheus-client only when the port serves

        self.registry = build_registry(self.server)
        host = self.settings.host or self.server.config.host
        try:
            self._listener = await asyncio.get_running_loop().create_server(
                lambda: _Connection(self), host=host or None, port=self.settings.port or 0,
                reuse_address=True, ssl=self._ssl())
        except OSError as exc:
            raise OSError(exc.errno, f"cannot listen for monitoring on {host}:{self.settings.port}: "
                                     f"{exc.strerror}") from exc
        self.host, self.port = self._listener.sockets[0].getsockname()[:2]
        log.info("Starting %s monitor on %s:%d", self.scheme, self.host, self.port)
        self.server.ports["monitoring"] = [self.url]

    @property
    def scheme(self) -> str:
        return "https" if self.settings.https else "http"

    def _ssl(self) -> Any:
        """The client port's TLS context, for HTTPS (nats-server uses the same certificate)."""
        tls = self.server.config.tls
        return tls.context if self.settings.https and tls is not None else None

    async def stop(self) -> None:
        if self._listener is not None:
            self._listener.close()
        for conn in list(self._connections):
            conn.close()
        if self._listener is not None:
            await self._listener.wait_closed()
        if self.monitor is not None and self.monitor.http is self:
            self.monitor.http = None

    @property
    def url(self) -> str:
        """``http(s)://host:port<base path>`` (loopback when bound to every interface)."""
        host = "127.0.0.1" if self.host in ("0.0.0.0", "", "::") else self.host
        host = f"[{host}]" if ":" in host else host
        return f"{self.scheme}://{host}:{self.port}{self.base_path}"

    # -- answering ---------------------------------------------------------------------

    def answer(self, request: Request) -> bytes:
        """The bytes answering ``request`` (its status depends on path, method and options)."""
        keep, head = request.keep_alive, request.method == "HEAD"
        if request.method not in ("GET", "HEAD"):
            return response(405, b"method not allowed\n", keep_alive=keep,
                            headers=(("Allow", "GET, HEAD"),))
        path = self._endpoint_path(request.path)
        assert self.monitor is not None
        view = self.monitor.endpoints.get(path) if path else None
        if path is not None and (path in ("/", "/metrics") or view is not None):
            self.requests[path] = self.requests.get(path, 0) + 1
        if path == "/":
            return response(200, self._index(), "text/html; charset=utf-8", keep_alive=keep, head=head)
        if path == "/metrics":
            from .metrics import render

            body, ctype = render(self.registry)
            return response(200, body, ctype, keep_alive=keep, head=head)
        if view is None:
            return response(404, NOT_FOUND, keep_alive=keep, head=head,
                            headers=(("X-Content-Type-Options", "nosniff"),))
        try:
            result = view(request.query)
        except ValueError as exc:  # BadRequest and plugins' ValueErrors
            return response(400, str(exc).encode(), keep_alive=keep, head=head)
        except Exception:
            log.exception("monitoring endpoint %s failed", path)
            return response(500, b"internal error\n", keep_alive=keep, head=head)
        if path in COMPACT:
            text = json.dumps(result, separators=(",", ":"), ensure_ascii=False)
        else:
            text = json.dumps(result, indent=2, ensure_ascii=False)
        callback = request.query.get("callback", "")
        if callback:
            if not _CALLBACK.match(callback):
                return response(400, b"invalid callback name", keep_alive=keep, head=head)
            return response(200, f"{callback}({text})".encode(), "application/javascript",
                            keep_alive=keep, head=head)
        return response(200, text.encode(), "application/json", keep_alive=keep, head=head)

    def _endpoint_path(self, path: str) -> str | None:
        """``path`` without the base path (``/`` for the base itself); None if outside it."""
        base = self.base_path
        if not base:
            return path
        if path in (base, base + "/"):
            return "/"
        if path.startswith(base + "/"):
            return path[len(base):]
        return None

    def _index(self) -> bytes:
        """The ``/`` page: nats-server's links, then the endpoints plugins added."""
        assert self.monitor is not None
        names = list(_LINKS)
        names += sorted(p.lstrip("/") for p in self.monitor.endpoints if p.lstrip("/") not in _LINKS)
        links = "\n".join(f'    <a href="{self.base_path}/{html.escape(quote(name))}">'
                          f"{html.escape(name)}</a><br/>" for name in names)
        return (f"<html lang=\"en\">\n  <body>\n    natsd monitoring (nats-server "
                f"{NATS_SERVER_VERSION} compatible)<br/><br/>\n{links}\n  </body>\n</html>\n").encode()


class _Connection(asyncio.Protocol):
    """One HTTP connection: bytes to the parser, answers to the transport."""

    def __init__(self, listener: MonitorListener) -> None:
        self.listener = listener
        self.parser = RequestParser()
        self.transport: asyncio.Transport | None = None
        self._idle: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.listener._connections.add(self)
        self._arm()

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        self._arm()
        try:
            requests = self.parser.receive_data(data)
        except HTTPError as exc:
            self.transport.write(response(exc.status, exc.reason.encode() + b"\n", keep_alive=False))
            self.close()
            return
        for request in requests:
            self.transport.write(self.listener.answer(request))
            if not request.keep_alive:
                self.close()
                return

    def connection_lost(self, exc: Exception | None) -> None:
        self.listener._connections.discard(self)
        if self._idle is not None:
            self._idle.cancel()

    def _arm(self) -> None:
        if self._idle is not None:
            self._idle.cancel()
        self._idle = asyncio.get_running_loop().call_later(IDLE_TIMEOUT, self.close)

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

