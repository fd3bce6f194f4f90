"""A leaf link to a hub's WebSocket port (``ws://`` / ``wss://`` remotes), as nats-server dials one.

The dialer opens TCP (and TLS for ``wss://``), sends the HTTP upgrade for
``<path>/leafnode`` with the ``websockets`` library's sans-I/O client
protocol, checks the ``101`` answer, then hands the :class:`LeafLink` an
adapter: what the link writes leaves as masked binary frames, what arrives
in data frames is fed to it. permessage-deflate is asked for with
``ws_compression`` (both sides without context takeover, as nats-server
wants); the hub may decline it.

The ``websockets`` library is imported only for WebSocket remotes.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlsplit, urlunsplit

from websockets.client import ClientProtocol
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory
from websockets.frames import Frame, Opcode
from websockets.http11 import Response
from websockets.protocol import State
from websockets.uri import parse_uri

if TYPE_CHECKING:
    from .link import LeafLink

log = logging.getLogger("natsd.leafnode")

LEAFNODE_PATH = "leafnode"
DATA = (Opcode.BINARY, Opcode.TEXT, Opcode.CONT)


def upgrade_uri(url: str) -> str:
    """The URI the upgrade asks for: the remote's path joined with ``/leafnode``, no credentials."""
    parts = urlsplit(url)
    path = parts.path.strip("/")
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, host, "/" + (f"{path}/{LEAFNODE_PATH}" if path else LEAFNODE_PATH),
                       "", ""))


class WebSocketDial(asyncio.Protocol):
    """The TCP side of a leaf link carried over WebSocket (the protocol ``create_connection`` gets)."""

    def __init__(self, link: LeafLink, url: str, compression: bool) -> None:
        self.link = link
        extensions = [ClientPerMessageDeflateFactory(server_no_context_takeover=True,
                                                     client_no_context_takeover=True)] if compression else None
        self.ws = ClientProtocol(parse_uri(upgrade_uri(url)), extensions=extensions, max_size=None)
        self.transport: asyncio.Transport | None = None
        self.open = False
        self.ready: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        """``True`` once the hub answered ``101`` (the link has started), ``False`` if it did not."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        request = self.ws.connect()
        self.ws.send_request(request)
        self._flush()

    def data_received(self, data: bytes) -> None:
        ws = self.ws
        ws.receive_data(data)
        for event in ws.events_received():
            if isinstance(event, Response):
                if ws.handshake_exc is not None or event.status_code != 101:
                    log.error("Error soliciting websocket connection to %s: %s", upgrade_uri(self.link.url or ""),
                              ws.handshake_exc or f"status {event.status_code}")
                    self._abort()
                    return
                self.open = True
                self.ready.set_result(True)
                self.link.connection_made(Carrier(self))  # type: ignore[arg-type]
            elif isinstance(event, Frame) and event.opcode in DATA and event.data and not self.link.closed:
                self.link.data_received(bytes(event.data))
        if ws.parser_exc is not None:
            log.error("%s - websocket read error: %s", self.link.describe(), ws.parser_exc)
            self._abort()
            return
        self._flush()

    def eof_received(self) -> bool | None:
        self.ws.receive_eof()
        self._flush()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self.open:
            self.link.connection_lost(exc)
        elif not self.ready.done():
            self.ready.set_result(False)

    def pause_writing(self) -> None:
        if self.open:
            self.link.pause_writing()

    def resume_writing(self) -> None:
        if self.open:
            self.link.resume_writing()

    def send(self, data: bytes) -> None:
        if self.ws.state is State.OPEN:
            self.ws.send_binary(data)
            self._flush()

    def close(self) -> None:
        if self.ws.state is State.OPEN:
            self.ws.send_close(1000)
            self._flush()
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def _flush(self) -> None:
        transport = self.transport
        if transport is None:
            return
        for chunk in self.ws.data_to_send():
            if chunk:
                transport.write(chunk)
            else:
                transport.close()
                return

    def _abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()


class Carrier:
    """What the :class:`LeafLink` sees as its transport: bytes out as frames."""

    __slots__ = ("dial",)

    def __init__(self, dial: WebSocketDial) -> None:
        self.dial = dial

    def write(self, data: bytes) -> None:
        self.dial.send(data)

    def close(self) -> None:
        self.dial.close()

    def abort(self) -> None:
        self.dial._abort()

    def is_closing(self) -> bool:
        transport = self.dial.transport
        return transport is None or transport.is_closing()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        transport = self.dial.transport
        return transport.get_extra_info(name, default) if transport is not None else default

    def get_write_buffer_size(self) -> int:
        transport = self.dial.transport
        return transport.get_write_buffer_size() if transport is not None else 0

    def pause_reading(self) -> None:
        if self.dial.transport is not None:
            self.dial.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.dial.transport is not None:
            self.dial.transport.resume_reading()
