"""Client connections: the asyncio adapter around the sans-I/O parser, and routing.

:class:`Client` is an :class:`asyncio.Protocol`. Each read goes through the
:class:`~natsd.wire.protocol.Parser` in one pass; every ``PUB`` is routed at once
by :func:`route`, which appends ``MSG`` frames to the output lists of the
receiving connections and marks them dirty. At the end of the read the
server flushes each dirty connection with a single ``transport.write``.

A connection whose unsent output exceeds ``max_pending``, or whose socket
stays blocked longer than ``write_deadline``, is a slow consumer and is
closed; nobody else waits for it.
"""

from __future__ import annotations

import asyncio
import base64
import inspect
import json
import logging
import os
import time
from collections.abc import Awaitable, Sequence
from random import random
from typing import TYPE_CHECKING, Any

from natsd.wire import errors
from natsd.routing.account import NO_LIMIT, Account, min_limit
from natsd.plugin.contracts import AuthRequest, AuthResult, Authenticator
from natsd.wire.errors import ProtocolError
from natsd.config.log import TRACE
from natsd.wire.protocol import CRLF, OK, PING, PONG, Parser, encode_err, encode_info, split_run
from natsd.routing.stats import record_close
from natsd.routing.subjects import valid_literal_subject, valid_subject
from natsd.routing.sublist import Subscription, SublistResult

if TYPE_CHECKING:
    from natsd.server import Server
    from natsd.security.peercert import TLSConnection

log = logging.getLogger("natsd.client")
_now = time.time

NO_RESPONDERS_HDR = b"NATS/1.0 503\r\n\r\n"

# Close reasons, worded as nats-server's monitoring shows them.
CLIENT_CLOSED = "Client Closed"
SERVER_SHUTDOWN = "Server Shutdown"
SLOW_CONSUMER_PENDING = "Slow Consumer (Pending Bytes)"
SLOW_CONSUMER_DEADLINE = "Slow Consumer (Write Deadline)"
STALE_CONNECTION = "Stale Connection"
PROTOCOL_VIOLATION = "Protocol Violation"
AUTH_TIMEOUT = "Authentication Timeout"
AUTH_VIOLATION = "Authentication Failure"
MAX_CONNECTIONS = "Maximum Connections Exceeded"
MAX_ACCOUNT_CONNECTIONS = "Maximum Account Connections Exceeded"
AUTH_EXPIRED = "Authentication Expired"
MAX_PAYLOAD = "Maximum Message Payload Exceeded"
MAX_CONTROL_LINE = "Maximum Control Line Exceeded"
TLS_HANDSHAKE_FAILURE = "TLS Handshake Failure"


class Client(asyncio.Protocol):
    """One NATS client connection (TCP or any stream transport)."""

    __slots__ = (
        "server", "cid", "transport", "parser", "account", "subs", "out", "out_bytes",
        "dirty", "closed", "verbose", "pedantic", "echo", "headers", "no_responders",
        "name", "lang", "version", "user", "remote", "kind", "authorized", "pings_out",
        "_ping_timer", "_auth_timer", "_deadline_timer", "in_msgs", "in_bytes",
        "out_msgs", "out_bytes_total", "close_reason", "connect_options", "connected",
        "nonce", "perms", "max_subs", "_expiry_timer", "_auth_task", "start", "last", "tls",
        "auth_result",
    )

    def __init__(self, server: Server, kind: str = "tcp") -> None:
        self.server = server
        self.kind = kind
        self.cid = 0
        self.transport: asyncio.Transport | None = None
        self.parser = Parser(self, server.config.max_payload, server.config.max_control_line)
        self.account: Account = server.global_account
        self.subs: dict[bytes, Subscription] = {}
        self.out: list[bytes] = []
        self.out_bytes = 0
        self.dirty = False
        self.closed = False
        # nats-server's defaults until CONNECT says otherwise.
        self.verbose = True
        self.pedantic = True
        self.echo = True
        self.headers = False
        self.no_responders = False
        self.name = self.lang = self.version = ""
        self.user: str | None = None
        self.remote: tuple[str, int] | None = None
        self.authorized = False
        self.connected = False  # a CONNECT was accepted (observers were told)
        self.nonce: str | None = None
        self.perms: Any = None  # a PermissionChecker when the user has permissions
        self.max_subs = server.config.max_subscriptions or NO_LIMIT
        self._expiry_timer: asyncio.TimerHandle | None = None
        self._auth_task: asyncio.Task[None] | None = None
        self.pings_out = 0
        self._ping_timer: asyncio.TimerHandle | None = None
        self.auth_result: AuthResult | None = None
        self._auth_timer: asyncio.TimerHandle | None = None
        self._deadline_timer: asyncio.TimerHandle | None = None
        self.in_msgs = self.in_bytes = self.out_msgs = self.out_bytes_total = 0
        self.start = self.last = 0.0  # connected at, last read at (Unix time)
        self.close_reason = ""
        self.connect_options: dict[str, Any] = {}
        self.tls: TLSConnection | None = None  # what the TLS handshake negotiated

    def __repr__(self) -> str:
        return f"<Client cid={self.cid} {self.remote} account={self.account.name}>"

    # -- asyncio.Protocol -------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self.accept(transport):
            self.begin()

    def accept(self, transport: asyncio.BaseTransport, *, send_info: bool = True) -> bool:
        """Take a new connection: its id, INFO, the connection limit; ``False`` if refused.

        The TLS gate (:mod:`natsd.conn.tlsgate`) calls this and, once the handshake
        is done, :meth:`begin`; ``send_info=False`` defers INFO (handshake first).
        """
        self.transport = transport  # type: ignore[assignment]  (uvloop's is not a subclass)
        server = self.server
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple):
            self.remote = (peer[0], peer[1])
        self.cid = server.next_cid()
        self.start = self.last = _now()
        if server.nonce_required:
            self.nonce = base64.urlsafe_b64encode(os.urandom(11)).rstrip(b"=").decode()
        if send_info:
            self.send_info()
        if len(server.clients) >= server.config.max_connections:
            self.close(MAX_CONNECTIONS, errors.MAX_CONNECTIONS)
            return False
        server.clients[self.cid] = self
        server.total_connections += 1
        self.account.clients.add(self)
        log.debug("%s - cid:%d - Client connection created", self._addr(), self.cid)
        return True

    def send_info(self) -> None:
        """Write this connection's INFO now."""
        assert self.transport is not None
        self.transport.write(encode_info(self.server.client_info(self)))

    def begin(self) -> None:
        """Start the protocol: the authentication and ping timers (after TLS, if any)."""
        server = self.server
        loop = server.loop
        if server.auth_required:
            self.parser.handler = _PreAuth(self)
            self._auth_timer = loop.call_later(server.config.auth_timeout, self._auth_expired)
        else:
            self.authorized = True
        if server.config.ping_interval > 0:
            self._ping_timer = loop.call_later(server.config.ping_interval, self._ping_tick)

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        self.last = _now()  # once per read, for monitoring's last_activity
        try:
            self.parser.feed(data)
        except ProtocolError as exc:
            self._protocol_error(exc)
        if self.server.dirty:
            self.server.flush()

    def eof_received(self) -> bool | None:
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed:
            self._teardown(CLIENT_CLOSED)

    def pause_writing(self) -> None:
        if self._deadline_timer is None and self.server.config.write_deadline > 0:
            self._deadline_timer = self.server.loop.call_later(
                self.server.config.write_deadline, self._deadline_expired)

    def resume_writing(self) -> None:
        if self._deadline_timer is not None:
            self._deadline_timer.cancel()
            self._deadline_timer = None

    # -- output -------------------------------------------------------------

    def queue(self, data: bytes) -> None:
        """Append ``data`` to the output flushed at the end of the current read."""
        if self.closed:
            return
        self.out.append(data)
        self.out_bytes += len(data)
        if not self.dirty:
            self.dirty = True
            self.server.dirty.append(self)

    def send(self, data: bytes) -> None:
        """Queue ``data`` from outside a read (timers, internal clients) and flush soon."""
        self.queue(data)
        self.server.schedule_flush()

    def flush(self) -> None:
        self.dirty = False
        out = self.out
        if not out:
            return
        if self.closed:
            out.clear()
            return
        data = b"".join(out) if len(out) > 1 else out[0]
        out.clear()
        self.out_bytes = 0
        transport = self.transport
        assert transport is not None
        transport.write(data)
        if transport.get_write_buffer_size() > self.server.config.max_pending:
            self.slow_consumer(SLOW_CONSUMER_PENDING)

    def slow_consumer(self, reason: str) -> None:
        log.warning("%s - cid:%d - Slow Consumer Detected: %s", self._addr(), self.cid, reason)
        self.server.slow_consumers += 1
        self.close(reason, abort=True)

    # -- closing ------------------------------------------------------------

    def close(self, reason: str, err: str | None = None, *, abort: bool = False) -> None:
        """Close the connection, optionally after ``-ERR '<err>'``."""
        if self.closed:
            return
        transport = self.transport
        if transport is not None and not abort:
            if self.out:
                transport.write(b"".join(self.out))
            if err is not None:
                transport.write(encode_err(err))
        self._teardown(reason)
        if transport is not None:
            if abort:
                transport.abort()
            else:
                transport.close()

    def _teardown(self, reason: str) -> None:
        self.closed = True
        self.close_reason = reason
        self.out.clear()
        self.out_bytes = 0
        for timer in (self._ping_timer, self._auth_timer, self._deadline_timer, self._expiry_timer):
            if timer is not None:
                timer.cancel()
        if self._auth_task is not None:
            self._auth_task.cancel()
        server = self.server
        registered = server.clients.pop(self.cid, None) is not None
        if registered:
            record_close(server, self)
        sublist = self.account.sublist
        for sub in self.subs.values():
            sub.closed = True
            sublist.remove(sub)
        self.subs.clear()
        self.account.clients.discard(self)
        if registered:
            log.debug("%s - cid:%d - Client connection closed: %s", self._addr(), self.cid, reason)
            if self.connected:
                for observe in server.observe_closed:
                    _safe(observe, self, reason)

    def _protocol_error(self, exc: ProtocolError) -> None:
        log.error("%s - cid:%d - %s", self._addr(), self.cid, exc.detail)
        reason = PROTOCOL_VIOLATION
        if exc.text == errors.MAX_PAYLOAD:
            reason = MAX_PAYLOAD
        elif exc.text == errors.MAX_CONTROL_LINE:
            reason = MAX_CONTROL_LINE
        elif exc.text == errors.AUTH_VIOLATION:
            reason = AUTH_VIOLATION
            for observe in self.server.observe_auth_failed:
                _safe(observe, self, exc.detail)
        self.close(reason, exc.text)

    def send_err(self, text: str) -> None:
        """``-ERR`` that does not close the connection."""
        log.debug("%s - cid:%d - sending -ERR '%s'", self._addr(), self.cid, text)
        self.queue(encode_err(text))

    def _addr(self) -> str:
        return f"{self.remote[0]}:{self.remote[1]}" if self.remote else self.kind

    # -- timers -------------------------------------------------------------

    def _ping_tick(self) -> None:
        self._ping_timer = None
        if self.closed:
            return
        if self.pings_out + 1 > self.server.config.ping_max:
            self.close(STALE_CONNECTION, errors.STALE_CONNECTION)
            return
        self.pings_out += 1
        self.send(PING)
        self._ping_timer = self.server.loop.call_later(
            self.server.config.ping_interval, self._ping_tick)

    def _auth_expired(self) -> None:
        self._auth_timer = None
        if not self.closed and not self.authorized:
            self.close(AUTH_TIMEOUT, errors.AUTH_TIMEOUT)

    def _deadline_expired(self) -> None:
        self._deadline_timer = None
        if not self.closed:
            self.slow_consumer(SLOW_CONSUMER_DEADLINE)

    # -- protocol handler -----------------------------------------------------

    def on_connect(self, options: dict[str, Any]) -> None:
        for key, value in options.items():
            kind = _CONNECT_TYPES.get(key)
            if kind is not None and value is not None and not isinstance(value, kind):
                raise ProtocolError(None, f"CONNECT field {key!r} has the wrong type")
        protocol = options.get("protocol") or 0
        if isinstance(protocol, bool) or protocol < 0 or protocol > 1:
            raise ProtocolError(errors.INVALID_CLIENT_PROTOCOL)
        self.connect_options = options
        # Absent (or null) fields keep their current values, as in nats-server.
        self.verbose = _opt(options, "verbose", self.verbose)
        self.pedantic = _opt(options, "pedantic", self.pedantic)
        self.echo = _opt(options, "echo", self.echo)
        headers = _opt(options, "headers", self.headers)
        self.headers = headers and not self.server.config.no_header_support
        self.no_responders = _opt(options, "no_responders", self.no_responders)
        self.name = options.get("name") or self.name
        self.lang = options.get("lang") or self.lang
        self.version = options.get("version") or self.version
        if self.no_responders and not headers:
            raise ProtocolError(errors.NO_RESPONDERS_NEEDS_HEADERS)
        if not self.authorized:
            request = self.auth_request()
            index, result = _first_verdict(self.server.authenticators, request)
            if inspect.isawaitable(result):
                self._pause_for_verdict(request, index, result)
                return
            self._authorize(result)
        self._connect_done()

    def _connect_done(self) -> None:
        if self.verbose:
            self.queue(OK)
        if not self.connected:
            self.connected = True
            for observe in self.server.observe_connected:
                _safe(observe, self)

    def _pause_for_verdict(self, request: AuthRequest, index: int,
                           pending: Awaitable[AuthResult | None]) -> None:
        """Stop reading this connection until an authenticator's awaitable answers."""
        self.parser.paused = True
        assert self.transport is not None
        self.transport.pause_reading()
        self._auth_task = self.server.loop.create_task(self._finish_auth(request, index, pending))

    async def _finish_auth(self, request: AuthRequest, index: int,
                           pending: Awaitable[AuthResult | None]) -> None:
        result = await _await_verdict(self.server.authenticators, request, index, pending)
        self._auth_task = None
        if self.closed:
            return
        try:
            self._authorize(result)
            self._connect_done()
            self.parser.resume()
        except ProtocolError as exc:
            self._protocol_error(exc)
        if not self.closed:
            assert self.transport is not None
            self.transport.resume_reading()
        self.server.flush()

    def _authorize(self, result: AuthResult | None) -> None:
        """Apply an authenticator's verdict: join the account, take the limits."""
        server = self.server
        if result is None or not result.ok:
            why = result.reason if result is not None else "no authenticator accepted the client"
            raise ProtocolError(errors.AUTH_VIOLATION, f"authentication error: {why}")
        if result.account and result.account != self.account.name:
            account = server.lookup_account(result.account, create=True)
            if not account.connection_allowed():
                self.close(MAX_ACCOUNT_CONNECTIONS, errors.MAX_ACCOUNT_CONNECTIONS)
                raise ProtocolError(None, f"account {account.name} is at its connection limit")
            self.account.clients.discard(self)
            self.account = account
            account.clients.add(self)
        self.take_auth_result(result)
        self.authorized = True
        self.parser.handler = self
        if self._auth_timer is not None:
            self._auth_timer.cancel()
            self._auth_timer = None

    def auth_request(self) -> AuthRequest:
        """What authenticators see of this client (CONNECT options, address, nonce, certificate)."""
        return AuthRequest(options=self.connect_options or {}, client_id=self.cid,
                           remote=self.remote, transport=self.kind, nonce=self.nonce,
                           tls_peer=self.tls.peer if self.tls is not None else None)

    def take_auth_result(self, result: AuthResult) -> None:
        """Apply an accepted verdict's identity, permissions, limits and expiry (also on reload)."""
        self.auth_result = result
        self.user = result.user
        if result.permissions is not None:
            from natsd.security.permissions import PermissionChecker

            self.perms = PermissionChecker(result.permissions)
        else:
            self.perms = None
        self.apply_limits()
        if self._expiry_timer is not None:
            self._expiry_timer.cancel()
            self._expiry_timer = None
        if result.expires is not None:
            self._expiry_timer = self.server.loop.call_later(
                max(0.0, result.expires - time.time()), self._auth_expiry)

    def apply_limits(self) -> None:
        """The tightest of the user's, the account's and the server's limits."""
        result, account, cfg = self.auth_result, self.account, self.server.config
        self.max_subs = min_limit(result.max_subscriptions if result else NO_LIMIT,
                                  account.max_subscriptions, cfg.max_subscriptions or NO_LIMIT)
        max_payload = min_limit(result.max_payload if result else NO_LIMIT,
                                account.max_payload, cfg.max_payload)
        parser = self.parser
        if (max_payload, cfg.max_control_line) != (parser.max_payload, parser.max_control_line):
            parser.set_limits(max_payload, cfg.max_control_line)

    def auth_violation(self) -> None:
        """Refuse an authenticated client (credentials no longer valid after a reload)."""
        for observe in self.server.observe_auth_failed:
            _safe(observe, self, "credentials no longer accepted")
        self.close(AUTH_VIOLATION, errors.AUTH_VIOLATION)

    def _auth_expiry(self) -> None:
        self._expiry_timer = None
        if not self.closed:
            log.info("%s - cid:%d - User Authentication Expired", self._addr(), self.cid)
            self.close(AUTH_EXPIRED, errors.AUTH_EXPIRED)

    def on_info(self, info: dict[str, Any]) -> None:
        pass  # clients may send INFO; nats-server ignores it from clients

    def on_ping(self) -> None:
        self.queue(PONG)

    def on_pong(self) -> None:
        self.pings_out = 0

    def on_ok(self) -> None:
        pass

    def on_err(self, text: bytes) -> None:
        raise ProtocolError(None, f"client sent -ERR {text!r}")

    def on_sub(self, subject: bytes, queue: bytes | None, sid: bytes) -> None:
        if not valid_subject(subject):  # queue names are not checked (nats-server neither)
            self.send_err(errors.INVALID_SUBJECT)
            return
        perms = self.perms
        if (perms is not None and not perms.can_subscribe(subject, queue)) or queue == b"_sys_":
            from natsd.security.permissions import sub_violation

            text = sub_violation(subject, queue)
            log.error("%s - cid:%d - Subscription Violation - %s", self._addr(), self.cid, text)
            self.send_err(text)
            return
        if sid in self.subs:
            # nats-server ignores a SUB that reuses a live sid.
            if self.verbose:
                self.queue(OK)
            return
        if self.max_subs >= 0 and len(self.subs) >= self.max_subs:
            self.send_err(errors.MAX_SUBSCRIPTIONS)
            return
        sub = Subscription(self, subject, queue, sid)
        sub.careful = perms is not None
        self.subs[sid] = sub
        self.account.sublist.insert(sub)
        if self.verbose:
            self.queue(OK)
        for observe in self.server.observe_subscribed:
            _safe(observe, self, sub)

    def on_unsub(self, sid: bytes, max_msgs: int | None) -> None:
        sub = self.subs.get(sid)
        if sub is not None:
            if max_msgs and sub.delivered < max_msgs:
                sub.max_msgs = max_msgs  # counted from the start, as nats-server does
            else:
                self.remove_sub(sub)
        if self.verbose:
            self.queue(OK)

    def remove_sub(self, sub: Subscription) -> None:
        if self.subs.pop(sub.sid, None) is None:
            return
        sub.closed = True
        self.account.sublist.remove(sub)
        for observe in self.server.observe_unsubscribed:
            _safe(observe, self, sub)

    def on_pub(self, subject: bytes, reply: bytes | None, size: bytes, payload: bytes) -> None:
        if self.pedantic and not valid_literal_subject(subject):
            self.send_err(errors.INVALID_PUBLISH_SUBJECT)  # and deliver anyway, as nats-server
        if self.account.mappings is not None:
            subject = self.account.mappings.map(subject)
            if not subject:
                return
        if self.perms is not None and not self.perms.can_publish(subject):
            self._pub_violation(subject)
            return
        self.in_msgs += 1
        self.in_bytes += len(payload) - 2
        if self.verbose:
            self.queue(OK)
        result = route(self, self.account, subject, reply, size, payload, 0)
        if reply is not None and self.no_responders and not result.psubs and not result.qsubs:
            self._no_responders(reply)

    def on_hpub(self, subject: bytes, reply: bytes | None, hdr_size: int, size: bytes,
                payload: bytes) -> None:
        if not self.headers:
            # nats-server accepts HPUB only from clients that announced headers.
            raise ProtocolError(None, "HPUB without headers support")
        if self.pedantic and not valid_literal_subject(subject):
            self.send_err(errors.INVALID_PUBLISH_SUBJECT)
        if self.account.mappings is not None:
            subject = self.account.mappings.map(subject)
            if not subject:
                return
        if self.perms is not None and not self.perms.can_publish(subject):
            self._pub_violation(subject)
            return
        self.in_msgs += 1
        self.in_bytes += len(payload) - 2
        if self.verbose:
            self.queue(OK)
        result = route(self, self.account, subject, reply, size, payload, hdr_size)
        if not result and reply is not None and self.no_responders:
            self._no_responders(reply)

    def on_pub_run(self, subject: bytes, size: bytes, line: bytes, frames: bytes,
                   count: int) -> None:
        """Deliver a run of same-subject, same-size messages in one go.

        For each plain subscriber on a distinct connection, the ``MSG`` stream
        is the input with every control line replaced; a length check proves
        that only the frame lines were replaced (a payload that contains the
        control line falls back to message-by-message delivery).
        """
        if self.verbose or self.pedantic or self.perms is not None or self.account.mappings is not None:
            for payload in split_run(line, frames, count):
                self.on_pub(subject, None, size, payload)
            return
        self.in_msgs += count
        self.in_bytes += count * int(size)
        result = self.account.sublist.match(subject)
        if not result:
            return
        batch = result.qsubs == () and _distinct_clients(result)
        for sub in result.psubs if batch else ():
            if sub.max_msgs or sub.closed or sub.careful:
                batch = False
                break
        if not batch:
            for payload in split_run(line, frames, count):
                route(self, self.account, subject, None, size, payload, 0)
            return
        server = self.server
        max_pending = server.config.max_pending
        for sub in result.psubs:
            client = sub.client
            if client is self and not self.echo:
                continue
            msg_line = b"MSG " + subject + b" " + sub.sid + b" " + size + CRLF
            stream = frames.replace(line, msg_line)
            if len(stream) != len(frames) + count * (len(msg_line) - len(line)):
                stream = b"".join([msg_line + p for p in split_run(line, frames, count)])
            client.out.append(stream)
            sub.delivered += count
            client.out_msgs += count
            client.out_bytes_total += count * int(size)
            client.out_bytes += len(stream)
            if not client.dirty:
                client.dirty = True
                server.dirty.append(client)
            if client.out_bytes > max_pending:
                client.slow_consumer(SLOW_CONSUMER_PENDING)

    def _pub_violation(self, subject: bytes) -> None:
        from natsd.security.permissions import pub_violation

        text = pub_violation(subject)
        log.error("%s - cid:%d - Publish Violation - %s", self._addr(), self.cid, text)
        self.send_err(text)

    def _no_responders(self, reply: bytes) -> None:
        for sub in self.account.sublist.match(reply).psubs:
            if sub.client is self:
                self.queue(b"HMSG %s %s 16 16\r\n%s\r\n" % (reply, sub.sid, NO_RESPONDERS_HDR))
                return


class ObservedClient(Client):
    """A client whose publishes are reported to ``message_published`` observers.

    Used only when some plugin observes messages, so that :class:`Client`'s
    hot path carries no observation cost at all.
    """

    __slots__ = ()

    def on_pub_run(self, subject: bytes, size: bytes, line: bytes, frames: bytes,
                   count: int) -> None:
        for payload in split_run(line, frames, count):
            self.on_pub(subject, None, size, payload)

    def on_pub(self, subject: bytes, reply: bytes | None, size: bytes, payload: bytes) -> None:
        super().on_pub(subject, reply, size, payload)
        body = payload[:-2]
        for observe in self.server.observe_published:
            _safe(observe, self, self.account, subject, reply, None, body)

    def on_hpub(self, subject: bytes, reply: bytes | None, hdr_size: int, size: bytes,
                payload: bytes) -> None:
        super().on_hpub(subject, reply, hdr_size, size, payload)
        hdr, body = payload[:hdr_size], payload[hdr_size:-2]
        for observe in self.server.observe_published:
            _safe(observe, self, self.account, subject, reply, hdr, body)


def _distinct_clients(result: SublistResult) -> bool:
    """True if no connection holds two of the result's plain subscriptions."""
    psubs = result.psubs
    if len(psubs) == 1:
        return psubs[0].client.out is not None
    clients = {id(s.client) for s in psubs if s.client.out is not None}
    return len(clients) == len(psubs)


class TracedClient(ObservedClient):
    """A client that logs every protocol operation (``-V``/``trace``)."""

    __slots__ = ()

    def _trace(self, direction: str, text: str) -> None:
        log.log(TRACE, "%s - cid:%d - %s [%s]", self._addr(), self.cid, direction, text)

    def on_connect(self, options: dict[str, Any]) -> None:
        shown = {k: ("[REDACTED]" if k in _SECRETS else v) for k, v in options.items()}
        self._trace("<<-", f"CONNECT {json.dumps(shown, separators=(',', ':'))}")
        super().on_connect(options)

    def on_pub(self, subject: bytes, reply: bytes | None, size: bytes, payload: bytes) -> None:
        rep = b" " + reply if reply else b""
        self._trace("<<-", f"PUB {(subject + rep).decode(errors='replace')} {size.decode()}")
        self._trace("<<- MSG_PAYLOAD:", repr(self._clip(payload[:-2])))
        super().on_pub(subject, reply, size, payload)

    def on_hpub(self, subject: bytes, reply: bytes | None, hdr_size: int, size: bytes,
                payload: bytes) -> None:
        rep = b" " + reply if reply else b""
        self._trace("<<-", f"HPUB {(subject + rep).decode(errors='replace')} {hdr_size} {size.decode()}")
        self._trace("<<- MSG_PAYLOAD:", repr(self._clip(payload[:-2])))
        super().on_hpub(subject, reply, hdr_size, size, payload)

    def on_sub(self, subject: bytes, queue: bytes | None, sid: bytes) -> None:
        q = b" " + queue if queue else b""
        self._trace("<<-", f"SUB {(subject + q).decode(errors='replace')} {sid.decode(errors='replace')}")
        super().on_sub(subject, queue, sid)

    def on_unsub(self, sid: bytes, max_msgs: int | None) -> None:
        self._trace("<<-", f"UNSUB {sid.decode(errors='replace')}{' %d' % max_msgs if max_msgs else ''}")
        super().on_unsub(sid, max_msgs)

    def on_ping(self) -> None:
        self._trace("<<-", "PING")
        super().on_ping()

    def on_pong(self) -> None:
        self._trace("<<-", "PONG")
        super().on_pong()

    def queue(self, data: bytes) -> None:
        if data[:1] != b"M" and data[:2] != b"HM":  # message frames are traced by the sender
            self._trace("->>", data.rstrip(b"\r\n").decode(errors="replace"))
        super().queue(data)


    def _clip(self, data: bytes) -> bytes:
        limit = self.server.config.max_traced_msg_len or TRACED_PAYLOAD
        return data if len(data) <= limit else data[:limit] + b"..."


_SECRETS = frozenset({"pass", "auth_token", "sig", "jwt"})
TRACED_PAYLOAD = 256
"""Payload bytes a protocol trace shows when ``max_traced_msg_len`` is not set."""


class _PreAuth:
    """The parser's handler until CONNECT authenticates the client."""

    __slots__ = ("client",)

    def __init__(self, client: Client) -> None:
        self.client = client

    def on_connect(self, options: dict[str, Any]) -> None:
        self.client.on_connect(options)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("on_"):
            return self._refuse
        raise AttributeError(name)

    def _refuse(self, *args: Any) -> None:
        raise ProtocolError(errors.AUTH_VIOLATION, "operation before CONNECT")


_CONNECT_TYPES: dict[str, type | tuple[type, ...]] = {
    "verbose": bool, "pedantic": bool, "echo": bool, "headers": bool, "no_responders": bool,
    "tls_required": bool, "name": str, "lang": str, "version": str, "user": str, "pass": str,
    "auth_token": str, "nkey": str, "sig": str, "jwt": str, "protocol": int,
}


def _verdict(authenticator: Authenticator, request: AuthRequest) -> Any:
    try:
        return authenticator.authenticate(request)
    except Exception:
        log.exception("authenticator %r failed", authenticator)
        return AuthResult(ok=False, reason=f"authenticator {authenticator!r} raised")


def _first_verdict(authenticators: Sequence[Authenticator], request: AuthRequest,
                   start: int = 0) -> tuple[int, Any]:
    """``(index, answer)`` of the first authenticator from ``start`` not answering ``None``.

    The answer may be an awaitable (see :func:`_await_verdict`).
    """
    for i in range(start, len(authenticators)):
        result = _verdict(authenticators[i], request)
        if result is not None:
            return i, result
    return len(authenticators), None


async def _await_verdict(authenticators: Sequence[Authenticator], request: AuthRequest,
                         index: int, pending: Awaitable[AuthResult | None]) -> AuthResult | None:
    """Await authenticator ``index``'s answer; on ``None`` ask the ones after it."""
    result: Any = pending
    while inspect.isawaitable(result):
        try:
            result = await result
        except Exception:
            log.exception("authenticator %r failed", authenticators[index])
            return AuthResult(ok=False, reason=f"authenticator {authenticators[index]!r} raised")
        if result is None:
            index, result = _first_verdict(authenticators, request, index + 1)
    return result  # type: ignore[no-any-return]


def _opt(options: dict[str, Any], key: str, current: bool) -> bool:
    value = options.get(key)
    return current if value is None else bool(value)


def _safe(fn: Any, *args: Any) -> None:
    try:
        fn(*args)
    except Exception:
        log.exception("observer %r failed", fn)


def route(sender: Any, account: Account, subject: bytes, reply: bytes | None, size: bytes,
          payload: bytes, hdr: int) -> SublistResult:
    """Deliver one message to every matching subscription of ``account``.

    ``payload`` ends with CRLF; ``hdr`` is the header length (0: no headers);
    ``size`` is the total size as the publisher wrote it. Returns the match
    result so the caller can tell whether anybody was interested.
    """
    sublist = account.sublist
    result = sublist.cache.get(subject)
    if result is None:
        result = sublist.match(subject)
    if result.psubs:
        if hdr:
            _deliver_h(sender, result.psubs, subject, reply, size, payload, hdr)
        else:
            targets = result.targets
            if targets is None:
                targets = result.targets = tuple(
                    (s, s.client, s.client.out, b"MSG " + subject + b" " + s.sid + b" ")
                    for s in result.psubs)
            tail = reply + b" " + size + CRLF if reply is not None else size + CRLF
            nbytes = len(tail) + len(payload)
            psize = len(payload) - 2
            server = sender.server
            max_pending = server.config.max_pending
            echo = sender.echo
            for sub, client, out, prefix in targets:
                if client is sender and not echo:
                    continue
                if out is None or sub.max_msgs or sub.careful:  # in-process, auto-unsub, perms
                    _deliver_one(sender, sub, subject, reply, size, payload, 0)
                    continue
                out.append(prefix)
                out.append(tail)
                out.append(payload)
                sub.delivered += 1
                client.out_msgs += 1
                client.out_bytes_total += psize
                client.out_bytes += len(prefix) + nbytes
                if not client.dirty:
                    client.dirty = True
                    server.dirty.append(client)
                if client.out_bytes > max_pending:
                    client.slow_consumer(SLOW_CONSUMER_PENDING)
    if result.qsubs:
        for group in result.qsubs:
            n = len(group)
            sub = group[int(random() * n)]
            if sub.closed or sub.max_msgs or sub.careful or hdr or sub.client.out is None or (
                    sub.client is sender and not sender.echo):
                _deliver_queue(sender, group, sub, subject, reply, size, payload, hdr)
                continue
            client = sub.client
            head = b"MSG " + subject + b" " + sub.sid + b" "
            tail = reply + b" " + size + CRLF if reply is not None else size + CRLF
            out = client.out
            out.append(head)
            out.append(tail)
            out.append(payload)
            sub.delivered += 1
            client.out_msgs += 1
            client.out_bytes_total += len(payload) - 2
            client.out_bytes += len(head) + len(tail) + len(payload)
            if not client.dirty:
                client.dirty = True
                client.server.dirty.append(client)
            if client.out_bytes > client.server.config.max_pending:
                client.slow_consumer(SLOW_CONSUMER_PENDING)
    return result


def _deliver_queue(sender: Any, group: tuple[Subscription, ...], first: Subscription,
                   subject: bytes, reply: bytes | None, size: bytes, payload: bytes,
                   hdr: int) -> None:
    """Deliver to one member of a queue group, starting at ``first``."""
    n = len(group)
    start = group.index(first)
    for k in range(n):
        sub = group[(start + k) % n]
        if sub.closed or (sub.client is sender and not sender.echo):
            continue
        _deliver_one(sender, sub, subject, reply, size, payload, hdr)
        return


def _deliver_h(sender: Any, psubs: tuple[Subscription, ...], subject: bytes,
               reply: bytes | None, size: bytes, payload: bytes, hdr: int) -> None:
    for sub in psubs:
        if sub.client is sender and not sender.echo:
            continue
        _deliver_one(sender, sub, subject, reply, size, payload, hdr)


def _deliver_one(sender: Any, sub: Subscription, subject: bytes, reply: bytes | None,
                 size: bytes, payload: bytes, hdr: int) -> None:
    """Deliver to one subscription (queue members, headers, internal clients)."""
    client = sub.client
    perms = client.perms
    if perms is not None:
        if perms.deny_delivery(subject):
            return
        if reply is not None:
            perms.note_request(reply)
    if client.out is None:
        headers = payload[:hdr] if hdr else None
        client.deliver(sub, subject, reply, headers, payload[hdr:-2], sender)
    else:
        rep = reply + b" " if reply is not None else b""
        if not hdr:
            client.queue(b"MSG %s %s %s%s\r\n" % (subject, sub.sid, rep, size))
            client.queue(payload)
        elif client.headers:
            client.queue(b"HMSG %s %s %s%d %s\r\n" % (subject, sub.sid, rep, hdr, size))
            client.queue(payload)
        else:  # strip headers for clients that did not ask for them
            body = payload[hdr:]
            client.queue(b"MSG %s %s %s%d\r\n" % (subject, sub.sid, rep, len(body) - 2))
            client.queue(body)
        client.out_msgs += 1
        client.out_bytes_total += len(payload) - 2
        if client.out_bytes > client.server.config.max_pending:
            client.slow_consumer(SLOW_CONSUMER_PENDING)
    sub.delivered += 1
    if sub.max_msgs and sub.delivered >= sub.max_msgs:
        client.remove_sub(sub)
