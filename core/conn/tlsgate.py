"""The TLS handshake of a client connection, as nats-server's ``createClient`` performs it.

When the client port has ``tls {}``, each accepted connection's protocol is
a :class:`TLSGate` in front of its :class:`~natsd.conn.client.Client`. The gate
sends INFO in plaintext (``tls_required``), reads the first bytes and, when
they open a TLS record (0x16), upgrades the connection with
``loop.start_tls`` and replays them into the TLS layer; anything else is a
``TLS Handshake Failure``: the client gets ``-ERR 'Secure Connection - TLS
Required'`` and is closed (nats-server, 2.9.10 and 2.15.1 alike, writes the
same error but closes with the client's bytes unread, so the client sees a
reset), unless
``allow_non_tls`` lets a plaintext client through. With ``handshake_first``
INFO waits until the handshake is done, or until the fallback delay passes
without a byte. A handshake that does not finish within
``timeout`` is cut; it never holds up the accept loop or other clients.

Once the handshake is done the gate hands the TLS transport to the client
(plaintext the client sent early is replayed), records what was negotiated
in ``client.tls`` and steps out of the way: the per-message path never sees it.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any, cast

from natsd.security.peercert import TLSConnection
from natsd.wire.errors import SECURE_CONNECTION_REQUIRED

from .client import TLS_HANDSHAKE_FAILURE

if TYPE_CHECKING:
    from natsd.config.tls import TLSSettings

    from .client import Client

log = logging.getLogger("natsd.client")

TLS_HANDSHAKE_RECORD = 0x16
"""The first byte of a TLS ClientHello (a handshake record)."""


class TLSGate(asyncio.Protocol):
    """Holds one new connection until its TLS handshake is done (or refused)."""

    def __init__(self, client: Client, settings: TLSSettings, allow_plain: bool = False) -> None:
        self.client = client
        self.settings = settings
        self.allow_plain = allow_plain
        self.info_first = not settings.handshake_first
        self.transport: asyncio.Transport | None = None
        self.head = bytearray()  # raw bytes read before deciding TLS or plaintext
        self.early = bytearray()  # plaintext decrypted before the client takes over
        self.state = "sniff"  # -> "handshake" -> "done"
        self._timer: asyncio.TimerHandle | None = None
        self._fallback: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[Any] | None = None

    # -- asyncio.Protocol (of the raw connection, then of the TLS layer) -----------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        client = self.client
        if not client.accept(transport, send_info=self.info_first):  # type: ignore[arg-type]
            return
        loop = client.server.loop
        log.debug("%s - Starting TLS client connection handshake", client.describe())
        self._timer = loop.call_later(self.settings.timeout, self._expired)
        if not self.info_first and self.settings.fallback_delay > 0:
            self._fallback = loop.call_later(self.settings.fallback_delay, self._fall_back)

    def data_received(self, data: bytes) -> None:
        if self.state == "handshake":  # decrypted: the client's first commands
            self.early += data
            return
        if self.state != "sniff" or self.client.closed or not data:
            return
        self.head += data
        self._cancel(fallback_only=True)
        if self.head[0] == TLS_HANDSHAKE_RECORD:
            self._start_tls()
        elif self.allow_plain and self.info_first:
            self._plain()
        else:
            self._fail("first record does not look like a TLS handshake", err=SECURE_CONNECTION_REQUIRED)

    def eof_received(self) -> bool | None:
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel()
        self.client.connection_lost(exc)

    # -- the paths -------------------------------------------------------------------

    def _start_tls(self) -> None:
        transport = self.transport
        assert transport is not None
        transport.pause_reading()  # the rest is for the TLS layer
        self.state = "handshake"
        loop = self.client.server.loop
        self._task = loop.create_task(loop.start_tls(
            transport, self, self.settings.context, server_side=True,
            ssl_handshake_timeout=self.settings.timeout + 1.0))  # our own timer fires first
        self._task.add_done_callback(self._handshake_done)
        loop.call_soon(self._replay, bytes(self.head))

    def _replay(self, data: bytes) -> None:
        """Give the TLS layer the bytes the gate already read (the ClientHello's start)."""
        assert self.transport is not None
        layer = self.transport.get_protocol()
        if self.client.closed or self._task is None or self._task.done():
            return
        if layer is self:  # start_tls has not swapped protocols yet
            self.client.server.loop.call_soon(self._replay, data)
            return
        feed(layer, data)

    def _handshake_done(self, task: asyncio.Task[Any]) -> None:
        client = self.client
        exc = task.exception() if not task.cancelled() else asyncio.CancelledError()
        if client.closed:
            if exc is None:
                task.result().abort()
            return
        if exc is not None:
            self._fail(str(exc) or type(exc).__name__)
            return
        tls_transport = task.result()
        info = TLSConnection.from_ssl(tls_transport.get_extra_info("ssl_object"), first=not self.info_first)
        pinned = self.settings.pinned_certs
        if pinned and (info.peer is None or info.peer.spki_sha256() not in pinned):
            self._fail("peer certificate not in pinned certs")
            tls_transport.abort()
            return
        self._cancel()
        self.state = "done"
        client.tls = info
        client.io = tls_transport
        tls_transport.set_protocol(client)
        log.debug("%s - TLS handshake complete", client.describe())
        log.debug("%s - TLS version %s, cipher suite %s", client.describe(),
                  info.version, info.cipher)
        if not self.info_first:
            client.send_info()
        self._hand_over()

    def _plain(self) -> None:
        """``allow_non_tls``: the client speaks plaintext; the bytes read so far are its."""
        assert self.transport is not None
        self._cancel()
        self.state = "done"
        self.transport.set_protocol(cast(asyncio.Protocol, self.client))  # see ClientProtocol
        self.early, self.head = self.head, bytearray()
        self._hand_over()

    def _hand_over(self) -> None:
        client = self.client
        client.begin()
        if self.early:
            data, self.early = bytes(self.early), bytearray()
            client.data_received(data)

    def _fall_back(self) -> None:
        """``handshake_first`` with a delay: nothing came, so send INFO first after all."""
        self._fallback = None
        if self.state != "sniff" or self.head or self.client.closed:
            return
        self.info_first = True
        self.client.send_info()
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self.client.server.loop.call_later(self.settings.timeout, self._expired)

    def _expired(self) -> None:
        self._timer = None
        if self.state == "done" or self.client.closed:
            return
        if self.state == "sniff" and not self.head and self.allow_plain and self.info_first:
            self._plain()  # nats-server treats a silent client as plaintext
            return
        client = self.client
        log.error("%s - TLS handshake timeout", client.describe())
        self._fail("timeout", logged=True)

    def _fail(self, reason: str, *, logged: bool = False, err: str | None = None) -> None:
        client = self.client
        if not logged:
            log.error("%s - TLS handshake error: %s", client.describe(), reason)
        self._cancel()
        self.state = "done"
        client.close(TLS_HANDSHAKE_FAILURE, err)

    def _cancel(self, *, fallback_only: bool = False) -> None:
        if self._fallback is not None:
            self._fallback.cancel()
            self._fallback = None
        if not fallback_only and self._timer is not None:
            self._timer.cancel()
            self._timer = None


def feed(protocol: Any, data: bytes) -> None:
    """Deliver ``data`` to ``protocol`` as its transport would (buffered protocols included)."""
    if not hasattr(protocol, "buffer_updated"):
        protocol.data_received(data)
        return
    view = memoryview(data)
    while view:
        buf = protocol.get_buffer(len(view))
        n = min(len(buf), len(view))
        buf[:n] = view[:n]
        protocol.buffer_updated(n)
        view = view[n:]
