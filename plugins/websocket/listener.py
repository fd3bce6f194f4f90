"""The WebSocket port: HTTP upgrade as nats-server answers it, then the NATS client protocol.

Each accepted connection is a :class:`WebSocketConnection`. It reads the
HTTP request, checks it in nats-server's order (path, method, ``Host``,
``Upgrade``, ``Connection``, ``Sec-WebSocket-Key``, ``Sec-WebSocket-Version``,
origin) and answers a refusal with Go's ``http.Error`` response (the
connection stays open for another request, as HTTP/1.1 keep-alive), or the
``101 Switching Protocols`` nats-server writes. Then frames are read and
written by the ``websockets`` library's sans-I/O protocol (masking, control
frames, permessage-deflate), and the de-framed bytes go to an unchanged core
client (``server.client_protocol("websocket")``) through a
:class:`FramingTransport`: everything the client writes leaves in binary
frames (at most 4096 bytes each for a browser), and the core's flow control
and slow-consumer rules see the socket's own buffer.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import email.utils
import hashlib
import logging
import time
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlsplit

from websockets.extensions.permessage_deflate import PerMessageDeflate
from websockets.frames import Frame, Opcode
from websockets.protocol import State
from websockets.server import ServerProtocol

from natsd.plugin.contracts import ServerAPI

from .auth import WebSocketAuthenticator
from .settings import WebSocketSettings

if TYPE_CHECKING:
    from natsd.conn.client import Client

log = logging.getLogger("natsd.websocket")

MAX_REQUEST = 64 * 1024
DEFAULT_HANDSHAKE_TIMEOUT = 10.0
"""Without ``handshake_timeout``, how long an upgrade request may take (nats-server waits forever)."""
MIN_MAX_FRAME = 64 * 1024 * 1024
"""The largest frame (or compressed message) kept whole: ``max_pending`` or this, whichever is larger;
a frame announcing more closes the connection (1009) before any of it is buffered."""
"""Bytes of an HTTP request (line and headers) read before giving up on it."""
BROWSER_FRAME = 4096
"""The largest frame nats-server sends a browser (a ``Mozilla/`` User-Agent)."""
ACCEPT_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
DATA = (Opcode.TEXT, Opcode.BINARY, Opcode.CONT)
STATUS_TEXT = {400: "Bad Request", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed"}

#: nats-server's close status for a close reason (``wsEnqueueCloseMessage``).
CLOSE_STATUS = {
    "Client Closed": 1000, "Authentication Timeout": 1008, "Authentication Failure": 1008,
    "Authorization Violation": 1008, "Maximum Connections Exceeded": 1008,
    "Maximum Account Connections Exceeded": 1008, "Maximum Subscriptions Exceeded": 1008,
    "Maximum Control Line Exceeded": 1008, "User Authentication Expired": 1008,
    "Maximum Message Payload Exceeded": 1009, "Parse Error": 1002, "Protocol Violation": 1002,
    "Stale Connection": 1001, "Server Shutdown": 1001,
}


class FramingTransport:
    """What the core client sees as its transport (``ByteTransport``): bytes out as frames."""

    __slots__ = ("conn",)

    def __init__(self, conn: WebSocketConnection) -> None:
        self.conn = conn

    def write(self, data: bytes) -> None:
        self.conn.send_data(data)

    def close(self) -> None:
        self.conn.close_from_client()

    def abort(self) -> None:
        self.conn.abort()

    def is_closing(self) -> bool:
        return self.conn.transport is None or self.conn.transport.is_closing()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        transport = self.conn.transport
        return transport.get_extra_info(name, default) if transport is not None else default

    def get_write_buffer_size(self) -> int:
        transport = self.conn.transport
        return transport.get_write_buffer_size() if transport is not None else 0

    def pause_reading(self) -> None:
        if self.conn.transport is not None:
            self.conn.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.conn.transport is not None:
            self.conn.transport.resume_reading()


class WebSocketConnection(asyncio.Protocol):
    """One connection to the WebSocket port: the HTTP upgrade, then framing for a core client."""

    def __init__(self, listener: WebSocketListener) -> None:
        self.listener = listener
        self.settings = listener.settings
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.ws: ServerProtocol | None = None
        self.client: Any = None  # the protocol inside: a core Client, or a leaf link (acceptors)
        self.browser = False
        self.peer = ""
        self._timer: asyncio.TimerHandle | None = None

    # -- asyncio.Protocol ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else "?"
        self.listener.connections.add(self)
        self._timer = self.listener.server.loop.call_later(
            self.settings.handshake_timeout or DEFAULT_HANDSHAKE_TIMEOUT, self._handshake_expired)

    def data_received(self, data: bytes) -> None:
        if self.ws is not None:
            self._frames(data)
            return
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(self.buffer) > MAX_REQUEST:
                self._plain_error(431, "Request Header Fields Too Large")
            return
        request, rest = self.buffer[:end + 4], self.buffer[end + 4:]
        self.buffer = b""
        self._request(request, rest)

    def eof_received(self) -> bool | None:
        if self.ws is not None:
            self.ws.receive_eof()
            self._write_pending()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.listener.connections.discard(self)
        if self._timer is not None:
            self._timer.cancel()
        transport, self.transport = self.transport, None
        del transport
        if self.client is not None:
            self.client.connection_lost(exc)

    def pause_writing(self) -> None:
        if self.client is not None:
            self.client.pause_writing()

    def resume_writing(self) -> None:
        if self.client is not None:
            self.client.resume_writing()

    # -- the HTTP upgrade ---------------------------------------------------------------------

    def _handshake_expired(self) -> None:
        self._timer = None
        if self.ws is None and self.transport is not None:
            log.error("%s - websocket handshake error: timeout", self.peer)
            self.transport.close()

    def _request(self, raw: bytes, rest: bytes) -> None:
        lines = raw.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/"):
            self._plain_error(400, "Bad Request")
            return
        method, target, version = parts
        headers: dict[str, list[str]] = {}
        for line in lines[1:]:
            if not line:
                continue
            name, sep, value = line.partition(":")
            if not sep or not name or name != name.strip():
                self._plain_error(400, "Bad Request")
                return
            headers.setdefault(name.lower(), []).append(value.strip())
        path = urlsplit(target).path
        keep_alive = version == "HTTP/1.1"
        if path.endswith("/mqtt") and self.listener.server.acceptors.get("mqtt") is None:
            self._refuse(404, "mqtt websocket endpoint not enabled", keep_alive)
            return
        if method != "GET":
            self._refuse(405, "request method must be GET", keep_alive)
            return
        if not headers.get("host"):
            if keep_alive:
                self._plain_error(400, "Bad Request: missing required Host header")
            else:
                self._refuse(400, "'Host' missing in request", keep_alive)
            return
        if not _contains(headers, "upgrade", "websocket"):
            self._refuse(400, "invalid value for header 'Upgrade'", keep_alive)
            return
        if not _contains(headers, "connection", "upgrade"):
            self._refuse(400, "invalid value for header 'Connection'", keep_alive)
            return
        key = (headers.get("sec-websocket-key") or [""])[0]
        if not key:
            self._refuse(400, "key missing", keep_alive)
            return
        try:
            valid_key = len(base64.b64decode(key, validate=True)) == 16
        except (binascii.Error, ValueError):
            valid_key = False
        if not valid_key:
            self._refuse(400, "invalid websocket key", keep_alive)
            return
        if not _contains(headers, "sec-websocket-version", "13"):
            self._refuse(400, "invalid version", keep_alive)
            return
        problem = self._origin_problem(headers)
        if problem:
            self._refuse(403, f"origin not allowed: {problem}", keep_alive)
            return
        if rest:
            log.error("%s - websocket handshake error: client sent data before handshake is complete",
                      self.peer)
            self._close_transport()
            return
        self._upgrade(key, headers, path)

    def _origin_problem(self, headers: dict[str, list[str]]) -> str:
        settings = self.settings
        if not settings.same_origin and not settings.allowed_origins:
            return ""
        origin = (headers.get("origin") or headers.get("sec-websocket-origin") or [""])[0]
        if not origin:
            return ""
        parts = urlsplit(origin)
        if not parts.scheme or not parts.hostname:
            return f'parse "{origin}": invalid URI for request'
        tls = settings.tls is not None
        try:
            port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
        except ValueError:
            return f'parse "{origin}": invalid port'
        host = parts.hostname.lower()
        if settings.same_origin:
            req = urlsplit("//" + (headers.get("host") or [""])[0])
            try:
                req_port = req.port or (443 if tls else 80)
            except ValueError:
                req_port = 0
            if (parts.scheme.lower() != ("https" if tls else "http") or host != (req.hostname or "")
                    or port != req_port):
                return "not same origin"
        if settings.allowed_origins and not any(
                o.host == host and o.scheme == parts.scheme and o.port == port for o in settings.allowed_origins):
            return "not in the allowed list"
        return ""

    def _refuse(self, status: int, reason: str, keep_alive: bool) -> None:
        """Go's ``http.Error`` with nats-server's extra header; HTTP/1.1 keeps the connection."""
        log.error("%s - websocket handshake error: %s", self.peer, reason)
        text = STATUS_TEXT[status]
        body = (text + "\n").encode()
        head = (f"HTTP/1.1 {status} {text}\r\nContent-Type: text/plain; charset=utf-8\r\n"
                f"Sec-Websocket-Version: 13\r\nX-Content-Type-Options: nosniff\r\n"
                f"Date: {email.utils.formatdate(time.time(), usegmt=True)}\r\n"
                f"Content-Length: {len(body)}\r\n")
        if not keep_alive:
            head += "Connection: close\r\n"
        if self.transport is not None:
            self.transport.write(head.encode() + b"\r\n" + body)
            if not keep_alive:
                self.transport.close()

    def _plain_error(self, status: int, text: str) -> None:
        """A request Go's HTTP server refuses before any handler: answer and close."""
        if self.transport is not None:
            body = f"{status} {text}".encode()
            self.transport.write(f"HTTP/1.1 {status} {text.split(':')[0]}\r\nContent-Type: text/plain; "
                                 f"charset=utf-8\r\nConnection: close\r\n\r\n".encode() + body)
            self.transport.close()

    def _upgrade(self, key: str, headers: dict[str, list[str]], path: str) -> None:
        settings = self.settings
        accept = base64.b64encode(hashlib.sha1(key.encode() + ACCEPT_GUID).digest()).decode()
        lines = ["HTTP/1.1 101 Switching Protocols", "Upgrade: websocket", "Connection: Upgrade",
                 f"Sec-WebSocket-Accept: {accept}"]
        compress = settings.compression and any(
            part.strip().lower() == "permessage-deflate"
            for value in headers.get("sec-websocket-extensions", []) for ext in value.split(",")
            for part in ext.split(";"))
        if compress:
            lines.append("Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; "
                         "client_no_context_takeover")
        mqtt = path.endswith("/mqtt")
        if mqtt:
            lines.append("Sec-Websocket-Protocol: mqtt")  # nats-server's casing, requested or not
        lines += [f"{name}: {value}" for name, value in settings.headers]
        assert self.transport is not None
        self.transport.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        leaf = path.endswith("/leafnode")
        kind = "leafnode" if leaf else "mqtt" if mqtt else None
        acceptor = self.listener.server.acceptors.get(kind) if kind else None
        if leaf and acceptor is None:
            log.error("%s - Not configured to accept leaf node connections", self.peer)
            self._close_transport()
            return
        config = self.listener.server.config
        self.ws = ws = ServerProtocol(state=State.OPEN, max_size=max(config.max_pending, MIN_MAX_FRAME))
        if compress:
            ws.extensions = [PerMessageDeflate(remote_no_context_takeover=True, local_no_context_takeover=True,
                                               remote_max_window_bits=15, local_max_window_bits=15)]
        if acceptor is not None:  # a leaf node or an MQTT device: its plugin speaks over the frames
            self.client = acceptor("websocket")
            self.client.connection_made(FramingTransport(self))
            return
        self.browser = any(ua.startswith("Mozilla/") for ua in headers.get("user-agent", []))
        self.listener.start_client(self, headers)

    # -- frames -------------------------------------------------------------------------------------

    def _frames(self, data: bytes) -> None:
        ws = self.ws
        assert ws is not None
        ws.receive_data(data)
        client = self.client
        for event in ws.events_received():
            if isinstance(event, Frame) and event.opcode in DATA and event.data:
                if client is not None and not client.closed:
                    client.data_received(bytes(event.data))
        if ws.parser_exc is not None:
            # nats-server closes on a WebSocket protocol error without a close frame
            log.error("%s - read error: %s", self.peer, ws.parser_exc)
            ws.data_to_send()
            self.ws = None
            self._close_transport()
            return
        self._write_pending()

    def _write_pending(self) -> None:
        ws, transport = self.ws, self.transport
        if ws is None or transport is None:
            return
        for chunk in ws.data_to_send():
            if chunk:
                transport.write(chunk)
            else:  # the library's end-of-stream: the closing handshake is over
                transport.close()
                return
        if ws.state is State.CLOSED and not transport.is_closing():
            transport.close()

    def send_data(self, data: bytes) -> None:
        """Bytes from the core client: one binary frame (frames of at most 4096 for a browser)."""
        ws = self.ws
        if ws is None or ws.state is not State.OPEN:
            return
        if self.browser and len(data) > BROWSER_FRAME:
            for i in range(0, len(data), BROWSER_FRAME):
                ws.send_binary(data[i:i + BROWSER_FRAME])
        else:
            ws.send_binary(data)
        self._write_pending()

    def close_from_client(self) -> None:
        """The core closes the client: a CLOSE frame with nats-server's status for the reason."""
        ws, client = self.ws, self.client
        if ws is not None and ws.state is State.OPEN:
            reason = client.close_reason if client is not None else ""
            ws.send_close(CLOSE_STATUS.get(reason, 1011), reason[:120])
            self._write_pending()
        self._close_transport()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def _close_transport(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()


class WebSocketListener:
    """The WebSocket port of one server (a ``Listener``)."""

    def __init__(self, server: ServerAPI, settings: WebSocketSettings) -> None:
        self.server = server
        self.settings = settings
        self.host = settings.host
        self.port = settings.port
        self.connections: set[WebSocketConnection] = set()
        self.authenticator = WebSocketAuthenticator(settings)
        self._server: asyncio.AbstractServer | None = None

    @property
    def scheme(self) -> str:
        return "wss" if self.settings.tls is not None else "ws"

    async def start(self) -> None:
        settings = self.settings
        port = settings.port if settings.port > 0 else 0
        ssl = settings.tls.context if settings.tls is not None else None
        try:
            self._server = await self.server.loop.create_server(
                lambda: WebSocketConnection(self), host=settings.host or None, port=port, ssl=ssl,
                reuse_address=True, ssl_handshake_timeout=settings.tls.timeout if settings.tls else None,
                start_serving=False, backlog=1024)  # as the client port: many browsers or devices at once
        except OSError as exc:
            raise OSError(exc.errno, f"cannot listen for websocket clients on {settings.host}:{port}: "
                          f"{exc.strerror}") from exc
        self.host, self.port = self._server.sockets[0].getsockname()[:2]
        self.server.ports["websocket"] = [f"{self.scheme}://{_url_host(self.host)}:{self.port}"]
        log.info("Listening for websocket clients on %s://%s:%d", self.scheme, self.host, self.port)
        if settings.no_tls and settings.tls is None:
            log.warning("Websocket not configured with TLS. DO NOT USE IN PRODUCTION!")

    async def serving(self) -> None:
        """Accept once the server has started, as the client port does (MQTT devices come here too)."""
        if self._server is not None:
            await self._server.start_serving()

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for conn in list(self.connections):
            if conn.client is None:
                conn._close_transport()
        if self._server is not None:
            await self._server.wait_closed()

    def start_client(self, conn: WebSocketConnection, headers: dict[str, list[str]]) -> None:
        """The upgrade is done: a core client speaks over the frames."""
        settings = self.settings
        client = cast("Client", self.server.client_protocol("websocket"))
        overrides: dict[str, Any] = {"host": self.host, "port": self.port}
        tls = settings.tls is not None
        overrides["tls_required"] = True if tls else None
        overrides["tls_available"] = True if tls else None
        if settings.auth_override:
            client.no_auth_user = settings.no_auth_user or ""
        if self.server.auth.required_for("websocket"):
            # nats-server: a WebSocket INFO asks for credentials whenever the server checks
            # them, even when a no_auth_user would let the client in without any.
            overrides["auth_required"] = True
        if settings.auth_timeout:
            client.auth_timeout = settings.auth_timeout
        client.info_overrides = overrides
        client.connect_defaults = _cookies(headers, settings) or None
        conn.client = client
        client.connection_made(FramingTransport(conn))  # type: ignore[arg-type]


def _contains(headers: dict[str, list[str]], name: str, token: str) -> bool:
    return any(part.strip().lower() == token for value in headers.get(name, []) for part in value.split(","))


def _cookies(headers: dict[str, list[str]], settings: WebSocketSettings) -> dict[str, str]:
    """The values of the configured cookies (``jwt_cookie`` ...) by CONNECT field."""
    wanted = {settings.jwt_cookie: "jwt", settings.user_cookie: "user", settings.pass_cookie: "pass",
              settings.token_cookie: "auth_token"}
    wanted.pop(None, None)
    found: dict[str, str] = {}
    if not wanted:
        return found
    for header in headers.get("cookie", []):
        for pair in header.split(";"):
            name, sep, value = pair.strip().partition("=")
            if sep and name in wanted and wanted[name] not in found:
                found[wanted[name]] = value
    return found


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
