"""Client connections: the NATS client protocol over a byte transport.

:class:`Client` is an :class:`asyncio.Protocol` and a
:class:`~natsd.routing.connection.Connection`. Each read goes through the
:class:`~natsd.wire.protocol.Parser` in one pass; every ``PUB`` is delivered
at once by its account (:func:`natsd.routing.deliver.deliver`), which appends
``MSG`` frames to the output lists of the receiving connections and marks
them dirty. At the end of the read the server flushes each dirty connection
with a single write.

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
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

from mypy_extensions import mypyc_attr

from natsd.config.log import TRACE, go_quote
from natsd.plugin.auth import NOBODY_ACCEPTED
from natsd.plugin.contracts import AuthRequest, AuthResult
from natsd.routing.account import GLOBAL_ACCOUNT
from natsd.routing.connection import (
    CLIENT_CLOSED,
    NO_LIMIT,
    SERVER_SHUTDOWN,
    SLOW_CONSUMER_DEADLINE,
    SLOW_CONSUMER_PENDING,
    Connection,
    Kind,
    min_limit,
    notify,
)
from natsd.routing.deliver import deliver_traced
from natsd.routing.subjects import valid_literal_subject, valid_subject
from natsd.routing.sublist import SublistResult, Subscription
from natsd.routing.trace import DROP
from natsd.wire import errors
from natsd.wire.errors import ProtocolError
from natsd.wire.protocol import CRLF, OK, PING, PONG, Parser, encode_err, encode_info, split_run

if TYPE_CHECKING:
    from natsd.plugin.contracts import ByteTransport, ServerAPI

log = logging.getLogger("natsd.client")
_now = time.time

# Close reasons, worded as nats-server's monitoring shows them.
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

__all__ = ["CLIENT_CLOSED", "SERVER_SHUTDOWN", "Client", "ObservedClient", "TracedClient", "TracingClient"]


@mypyc_attr(allow_interpreted_subclasses=True)
class Client(Connection):
    """One NATS client connection over a byte transport (TCP, TLS, a WebSocket adapter ...).

    The transport (``io``) is anything with the methods of
    :class:`natsd.plugin.contracts.ByteTransport`: an asyncio transport, or a
    plugin's adapter that frames what the client writes (WebSocket).
    """

    __slots__ = ("api", "io", "parser", "verbose", "pedantic", "no_responders", "pings_out", "nonce",
                 "info_overrides", "connect_defaults", "no_auth_user", "auth_timeout", "_ping_timer",
                 "_auth_timer", "_deadline_timer", "_auth_task", "_label", "_ponged", "_ping_sent")

    def __init__(self, server: ServerAPI, transport: str = "tcp") -> None:
        super().__init__(server, server.global_account, kind=Kind.CLIENT, transport=transport)
        self.api: ServerAPI = server
        """The server, as plugins see it (``server`` is the same object, typed as the router needs it)."""
        self.io: ByteTransport | None = None
        self.parser = Parser(self, server.config.max_payload, server.config.max_control_line)
        # nats-server's defaults until CONNECT says otherwise.
        self.verbose = True
        self.pedantic = True
        self.no_responders = False
        self.authorized = False
        self.nonce: str | None = None
        self.info_overrides: dict[str, Any] | None = None
        """INFO fields the listener that made this client sets for it (a WebSocket listener's
        host, port and TLS); ``None`` values remove a field."""
        self.connect_defaults: dict[str, Any] | None = None
        """CONNECT fields the listener supplies when the client leaves them empty (a WebSocket
        upgrade's cookies: ``jwt``, ``user``, ``pass``, ``auth_token``)."""
        self.no_auth_user: str | None = None
        """The listener's ``no_auth_user``, replacing the server's for this client
        (:attr:`natsd.plugin.contracts.AuthRequest.no_auth_user`)."""
        self.auth_timeout: float | None = None
        """Seconds this client has to authenticate, when its listener sets its own."""
        self.pings_out = 0
        self._ping_timer: asyncio.TimerHandle | None = None
        self._auth_timer: asyncio.TimerHandle | None = None
        self._deadline_timer: asyncio.TimerHandle | None = None
        self._auth_task: asyncio.Task[None] | None = None
        self._label: str | None = None
        self._ponged = False  # the first PONG after CONNECT was sent (and the INFO after it)
        self._ping_sent = 0.0  # when the server's last PING left (time.monotonic())

    def __repr__(self) -> str:
        return f"<Client cid={self.cid} {self.remote} account={self.account.name}>"

    def describe(self) -> str:
        """For logs: ``ip:port - cid:N``, after CONNECT with nats-server's
        ``"v<version>:<lang>:<name>"`` and ``"<account>/<user>"`` when known."""
        return self._label or super().describe()

    def _set_label(self) -> None:
        """The log prefix nats-server gives a client once its first CONNECT is accepted."""
        options = self.connect_options
        client = ":".join(part for part in (f"v{self.version}" if self.version else "", self.lang, self.name)
                          if part)
        if options.get("nkey"):
            user = f"nkey:{options['nkey']}"
        elif options.get("user"):
            user = f"user:{options['user']}"
        elif options.get("jwt"):
            user = f"jwt:{self.user or ''}"
        elif options.get("auth_token"):
            user = "token"
        else:
            user = ""
        label = super().describe()
        for part in (client, f"{self.account.name}/{user}" if user else ""):
            if part:
                label += " - " + go_quote(part.encode())
        self._label = label

    # -- asyncio.Protocol -------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self.accept(transport):  # type: ignore[arg-type]
            self.begin()

    def accept(self, transport: ByteTransport, *, send_info: bool = True) -> bool:
        """Take a new connection: its id, INFO, the connection limit; ``False`` if refused.

        The TLS gate (:mod:`natsd.conn.tlsgate`) calls this and, once the handshake
        is done, :meth:`begin`; ``send_info=False`` defers INFO (handshake first).
        """
        self.io = transport
        server = self.api
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple):
            self.remote = (peer[0], peer[1])
        self.cid = server.next_cid()
        self.start = self.last = _now()
        if server.auth.nonce:
            self.nonce = base64.urlsafe_b64encode(os.urandom(11)).rstrip(b"=").decode()
        if send_info:
            self.send_info()
        if not server.register(self):
            self.close(MAX_CONNECTIONS, errors.MAX_CONNECTIONS)
            return False
        log.debug("%s - Client connection created", self.describe())
        return True

    def send_info(self) -> None:
        """Write this connection's INFO now."""
        assert self.io is not None
        self.io.write(encode_info(self.api.client_info(self)))

    def begin(self) -> None:
        """Start the protocol: the authentication and ping timers (after TLS, if any)."""
        server = self.api
        loop = server.loop
        if server.auth.required_for(self.transport):
            self.parser.handler = _PreAuth(self)
            self._auth_timer = loop.call_later(self.auth_timeout or server.config.auth_timeout,
                                               self._auth_expired)
        else:
            self.authorized = True
        if server.config.ping_interval > 0:
            self._ping_timer = loop.call_later(server.config.ping_interval, self._ping_tick)

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        self.last = _now()  # once per read, for monitoring's last_activity
        published = self.in_msgs
        try:
            self.parser.feed(data)
        except ProtocolError as exc:
            self._protocol_error(exc)
        if self.in_msgs != published:
            self.account.traffic_cache = None  # its traffic totals moved (natsd.routing.stats)
        if self.api.dirty:
            self.api.flush()

    def eof_received(self) -> bool | None:
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed:
            self._teardown(CLIENT_CLOSED)

    def pause_writing(self) -> None:
        if self._deadline_timer is None and self.api.config.write_deadline > 0:
            self._deadline_timer = self.api.loop.call_later(
                self.api.config.write_deadline, self._deadline_expired)

    def resume_writing(self) -> None:
        if self._deadline_timer is not None:
            self._deadline_timer.cancel()
            self._deadline_timer = None

    # -- output -------------------------------------------------------------

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
        io = self.io
        assert io is not None
        io.write(data)
        if io.get_write_buffer_size() > self.max_pending:
            self.slow_consumer(SLOW_CONSUMER_PENDING)

    # -- closing ------------------------------------------------------------

    def close(self, reason: str, err: str | None = None, *, abort: bool = False) -> None:
        """Close the connection, optionally after ``-ERR '<err>'``."""
        if self.closed:
            return
        io = self.io
        if io is not None and not abort:
            if self.out:
                io.write(b"".join(self.out))
            if err is not None:
                io.write(encode_err(err))
        self._teardown(reason)
        if io is not None:
            if abort:
                io.abort()
            else:
                io.close()

    def _teardown(self, reason: str) -> None:
        self.closed = True
        self.close_reason = reason
        assert self.out is not None
        self.out.clear()
        self.out_bytes = 0
        for timer in (self._ping_timer, self._auth_timer, self._deadline_timer):
            if timer is not None:
                timer.cancel()
        self.cancel_timers()
        if self._auth_task is not None:
            self._auth_task.cancel()
        self.api.connection_closed(self, reason)

    def _protocol_error(self, exc: ProtocolError) -> None:
        log.error("%s - %s", self.describe(), exc.detail)
        reason = PROTOCOL_VIOLATION
        if exc.text == errors.MAX_PAYLOAD:
            reason = MAX_PAYLOAD
        elif exc.text == errors.MAX_CONTROL_LINE:
            reason = MAX_CONTROL_LINE
        elif exc.text == errors.AUTH_VIOLATION:
            reason = AUTH_VIOLATION
            notify(self.api.observers.auth_failed, self, exc.detail)
        self.close(reason, exc.text)

    def send_err(self, text: str) -> None:
        """``-ERR`` that does not close the connection."""
        log.debug("%s - sending -ERR '%s'", self.describe(), text)
        self.queue(encode_err(text))

    # -- timers -------------------------------------------------------------

    def _ping_tick(self) -> None:
        self._ping_timer = None
        if self.closed:
            return
        if self.pings_out + 1 > self.api.config.ping_max:
            self.api.stale_connections += 1
            self.close(STALE_CONNECTION, errors.STALE_CONNECTION)
            return
        self.pings_out += 1
        self._ping_sent = time.monotonic()
        self.send(PING)
        self._ping_timer = self.api.loop.call_later(
            self.api.config.ping_interval, self._ping_tick)

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
        if self.connect_defaults:
            options = {**options, **{k: v for k, v in self.connect_defaults.items() if not options.get(k)}}
        for key, value in options.items():
            kind = _CONNECT_TYPES.get(key)
            if kind is not None and value is not None and not isinstance(value, kind):
                raise ProtocolError(None, f"CONNECT field {key!r} has the wrong type")
        protocol = options.get("protocol") or 0
        if not -(1 << 63) <= protocol < (1 << 63):  # Go's decoder refuses it: no -ERR
            raise ProtocolError(None, f"CONNECT protocol {protocol} out of range")
        if isinstance(protocol, bool) or protocol < 0 or protocol > 1:
            raise ProtocolError(errors.INVALID_CLIENT_PROTOCOL)
        # Absent (or null) fields keep their current values, as in nats-server (a later
        # CONNECT is read into the options of the first): "protocol" too.
        self.connect_options = {**self.connect_options,
                                **{k: v for k, v in options.items() if v is not None}}
        self.verbose = _opt(options, "verbose", self.verbose)
        self.pedantic = _opt(options, "pedantic", self.pedantic)
        self.echo = _opt(options, "echo", self.echo)
        headers = _opt(options, "headers", self.headers)
        self.headers = headers and not self.api.config.no_header_support
        self.no_responders = _opt(options, "no_responders", self.no_responders)
        if not self.connected:  # as nats-server: the time since accept estimates the round trip
            self.rtt = max(_now() - self.start, 1e-9)
        self.name = options.get("name") or self.name
        self.lang = options.get("lang") or self.lang
        self.version = options.get("version") or self.version
        if self.no_responders and not headers:
            raise ProtocolError(errors.NO_RESPONDERS_NEEDS_HEADERS)
        if not self.authorized:
            request = self.auth_request()
            index, result = self.api.auth.first(request)
            if inspect.isawaitable(result):
                self._pause_for_verdict(request, index, result)
                return
            self._authorize(result)
        self._connect_done()

    def _connect_done(self) -> None:
        first = not self.connected
        if first:
            self._set_label()
        if self.verbose:
            self.queue(OK)
        if first:
            self.api.connection_ready(self)

    def _pause_for_verdict(self, request: AuthRequest, index: int,
                           pending: Awaitable[AuthResult | None]) -> None:
        """Stop reading this connection until an authenticator's awaitable answers."""
        self.parser.paused = True
        assert self.io is not None
        self.io.pause_reading()
        self._auth_task = self.api.loop.create_task(self._finish_auth(request, index, pending))

    async def _finish_auth(self, request: AuthRequest, index: int,
                           pending: Awaitable[AuthResult | None]) -> None:
        result = await self.api.auth.settle(request, index, pending)
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
            assert self.io is not None
            self.io.resume_reading()
        self.api.flush()

    def _authorize(self, result: AuthResult | None) -> None:
        """Apply an authenticator's verdict: join the account, take the limits."""
        server = self.api
        if result is None or not result.ok:
            why = result.reason if result is not None else NOBODY_ACCEPTED
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
                           remote=self.remote, transport=self.transport, nonce=self.nonce,
                           tls_peer=self.tls.peer if self.tls is not None else None,
                           no_auth_user=self.no_auth_user)

    def apply_limits(self) -> None:
        """The tightest of the user's, the account's and the server's limits."""
        super().apply_limits()
        result, account, cfg = self.auth_result, self.account, self.api.config
        max_payload = min_limit(result.max_payload if result else NO_LIMIT,
                                account.max_payload, cfg.max_payload)
        parser = self.parser
        if (max_payload, cfg.max_control_line) != (parser.max_payload, parser.max_control_line):
            parser.set_limits(max_payload, cfg.max_control_line)

    def reauthenticate(self) -> None:
        """Check this connection's credentials again, with the current authenticators (reload).

        A refused client gets ``-ERR 'Authorization Violation'`` and is
        closed; a client whose user moved to another account is closed so
        that it reconnects into it; otherwise the new permissions and limits
        apply at once, and subscriptions they forbid are removed (see
        :meth:`prune_subs`). A verdict that takes time (a bcrypt hash) is
        applied when it arrives; authenticators with ``recheck_on_reload =
        False`` (auth callout: a request per client) are not asked again.
        """
        if self.closed or not self.authorized:
            return
        auth = self.api.auth
        if not auth.required_for(self.transport):
            if self.account is not self.api.global_account:
                self.close(CLIENT_CLOSED)
            else:
                self.forget_identity()
            return
        request = self.auth_request()
        index, verdict = auth.first(request)
        if inspect.isawaitable(verdict):
            if getattr(auth.authenticators[index], "recheck_on_reload", True):
                self._auth_task = self.api.loop.create_task(self._recheck(request, index, verdict))
            elif inspect.iscoroutine(verdict):
                verdict.close()
            return
        self._take_recheck(verdict)

    async def _recheck(self, request: AuthRequest, index: int,
                       pending: Awaitable[AuthResult | None]) -> None:
        verdict = await self.api.auth.settle(request, index, pending)
        self._auth_task = None
        if not self.closed:
            self._take_recheck(verdict)
            self.api.flush()

    def _take_recheck(self, verdict: AuthResult | None) -> None:
        if verdict is None or not verdict.ok:
            why = verdict.reason if verdict is not None else NOBODY_ACCEPTED
            log.error("%s - authentication error after reload - %s", self.describe(), why)
            notify(self.api.observers.auth_failed, self, "credentials no longer accepted")
            self.close(AUTH_VIOLATION, errors.AUTH_VIOLATION)
            return
        if (verdict.account or GLOBAL_ACCOUNT) != self.account.name:
            log.info("%s - user moved to account %s; closing so that it reconnects",
                     self.describe(), verdict.account or GLOBAL_ACCOUNT)
            self.close(CLIENT_CLOSED)
            return
        self.take_auth_result(verdict)
        self.prune_subs()

    def prune_subs(self) -> None:
        """Remove the subscriptions this connection's permissions no longer allow (``-ERR`` each)."""
        perms = self.perms
        if perms is None:
            return
        for sid, sub in list(self.subs.items()):
            if perms.can_subscribe(sub.subject, sub.queue):
                continue
            self.remove_sub(sub)
            subject, sid_text = sub.subject.decode(errors="replace"), sid.decode(errors="replace")
            queue = f' using queue "{sub.queue.decode(errors="replace")}"' if sub.queue else ""
            self.send_err(f'Permissions Violation for Subscription to "{subject}"{queue} (sid "{sid_text}")')
            who = f'User "{self.user}"' if self.user else self.describe()
            log.info('Removed sub "%s"%s (sid "%s") for %s - not authorized', subject, queue, sid_text, who)

    def auth_expired(self) -> None:
        super().auth_expired()
        if not self.closed:
            log.info("%s - User Authentication Expired", self.describe())
            self.close(AUTH_EXPIRED, errors.AUTH_EXPIRED)

    def on_info(self, info: dict[str, Any]) -> None:
        pass  # clients may send INFO; nats-server ignores it from clients

    def on_ping(self) -> None:
        self.queue(PONG)
        if self.connected and not self._ponged:
            self._ponged = True
            if self.connect_options.get("protocol", 0) >= 1:
                self._send_connect_info()

    def _send_connect_info(self) -> None:
        """The INFO nats-server (2.12 and later) sends after the first PONG to a client that
        takes asynchronous INFO: the account it is bound to, and whether it is the system one."""
        account = self.account
        extra: dict[str, Any] = {"connect_info": True, "remote_account": account.name}
        if account is self.api.system_account:
            extra["acc_is_sys"] = True
        self.queue(encode_info(self.api.async_info(self, **extra)))

    def on_pong(self) -> None:
        self.pings_out = 0
        if self._ping_sent:
            self.rtt = max(time.monotonic() - self._ping_sent, 1e-9)
            self._ping_sent = 0.0

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
            from natsd.wire.errors import sub_violation

            text = sub_violation(subject, queue)
            log.error("%s - Subscription Violation - %s", self.describe(), text)
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
        self.add_sub(Subscription(self, subject, queue, sid))
        if self.verbose:
            self.queue(OK)

    def on_unsub(self, sid: bytes, max_msgs: int | None) -> None:
        sub = self.subs.get(sid)
        if sub is not None:
            if max_msgs and sub.delivered < max_msgs:
                sub.max_msgs = max_msgs  # counted from the start, as nats-server does
            else:
                self.remove_sub(sub)
        if self.verbose:
            self.queue(OK)

    def on_pub(self, subject: bytes, reply: bytes | None, size: bytes, payload: bytes) -> None:
        if self.pedantic and not valid_literal_subject(subject):
            self.send_err(errors.INVALID_PUBLISH_SUBJECT)  # and deliver anyway, as nats-server
        account = self.account
        if account.mappings is not None:
            subject = account.mappings.map(subject)
            if not subject:
                return
        if self.perms is not None and not self.perms.can_publish(subject):
            self._pub_violation(subject)
            return
        self.in_msgs += 1
        self.in_bytes += len(payload) - 2
        if self.verbose:
            self.queue(OK)
        if not account.deliver(self, subject, reply, size, payload, 0) and (
                reply is not None and self.no_responders):
            self._no_responders(reply, subject)

    def on_hpub(self, subject: bytes, reply: bytes | None, hdr_size: int, size: bytes,
                payload: bytes) -> None:
        if not self.headers:
            # nats-server accepts HPUB only from clients that announced headers.
            raise ProtocolError(None, "HPUB without headers support")
        if self.pedantic and not valid_literal_subject(subject):
            self.send_err(errors.INVALID_PUBLISH_SUBJECT)
        account = self.account
        if account.mappings is not None:
            subject = account.mappings.map(subject)
            if not subject:
                return
        if self.perms is not None and not self.perms.can_publish(subject):
            self._pub_violation(subject)
            return
        self.in_msgs += 1
        self.in_bytes += len(payload) - 2
        if self.verbose:
            self.queue(OK)
        if not account.deliver(self, subject, reply, size, payload, hdr_size) and (
                reply is not None and self.no_responders):
            self._no_responders(reply, subject)

    def on_pub_run(self, subject: bytes, size: bytes, line: bytes, frames: bytes,
                   count: int) -> None:
        """Deliver a run of same-subject, same-size messages in one go.

        For each plain subscriber on a distinct connection, the ``MSG`` stream
        is the input with every control line replaced; a length check proves
        that only the frame lines were replaced (a payload that contains the
        control line falls back to message-by-message delivery).
        """
        account = self.account
        if self.verbose or self.pedantic or self.perms is not None or account.mappings is not None:
            for payload in split_run(line, frames, count):
                self.on_pub(subject, None, size, payload)
            return
        self.in_msgs += count
        self.in_bytes += count * int(size)
        result = account.sublist.match(subject)
        if not result.interest:
            return
        batch = (result.qsubs == () and result.remote is None and not account.egress
                 and _distinct_clients(result))
        for sub in result.psubs if batch else ():
            if sub.max_msgs or sub.closed or sub.client.perms is not None:
                batch = False
                break
        if not batch:
            for payload in split_run(line, frames, count):
                account.deliver(self, subject, None, size, payload, 0)
            return
        total = count * int(size)
        for sub in result.psubs:
            client = sub.client
            if client is self and not self.echo:
                continue
            msg_line = b"MSG " + subject + b" " + sub.sid + b" " + size + CRLF
            stream = frames.replace(line, msg_line)
            if len(stream) != len(frames) + count * (len(msg_line) - len(line)):
                stream = b"".join([msg_line + p for p in split_run(line, frames, count)])
            sub.delivered += count
            client.add_msg(stream, b"", b"", total, count)

    def _pub_violation(self, subject: bytes) -> None:
        from natsd.wire.errors import pub_violation

        text = pub_violation(subject)
        log.error("%s - Publish Violation - %s", self.describe(), text)
        self.send_err(text)

    def _no_responders(self, reply: bytes, subject: bytes) -> None:
        """The 503 status a requester gets when nobody listens on ``subject`` (after mapping)."""
        hdr = b"NATS/1.0 503\r\nNats-Subject: %s\r\n\r\n" % subject
        for sub in self.account.sublist.match(reply).psubs:
            if sub.client is self:
                self.queue(b"HMSG %s %s %d %d\r\n%s\r\n" % (reply, sub.sid, len(hdr), len(hdr), hdr))
                return


class TracingClient(Client):
    """A client whose published messages plugins may trace (``natsd_message_tracers``).

    Chosen only when some tracer is enabled, so that :class:`Client` carries
    no tracing cost; with tracers triggered by headers only, messages without
    headers take :class:`Client`'s path untouched.
    """

    __slots__ = ()

    def on_hpub(self, subject: bytes, reply: bytes | None, hdr_size: int, size: bytes,
                payload: bytes) -> None:
        # the untraced case is one search of the header block per trigger: with the msgtrace
        # plugin's one trigger, 9 % of a 1→1 HPUB's cost (a call through super() and a helper
        # cost 18 %; benchmarks/otel_cost.py)
        tracing = self.api.tracing
        for name in tracing.triggers:
            if payload.find(name, 0, hdr_size) >= 0:
                break
        else:
            if not tracing.every:
                Client.on_hpub(self, subject, reply, hdr_size, size, payload)
                return
        if self.headers:
            trace = tracing.begin(self, self.account, subject, reply, payload[:hdr_size], len(payload) - 2)
            if trace is not None:
                if trace is not DROP:
                    self._publish_traced(trace, subject, reply, size, payload, hdr_size)
                return
        Client.on_hpub(self, subject, reply, hdr_size, size, payload)

    def _publish_traced(self, trace: Any, subject: bytes, reply: bytes | None, size: bytes,
                        payload: bytes, hdr: int) -> None:
        """:meth:`on_pub`/:meth:`on_hpub` for a traced message: each step is reported to ``trace``."""
        if self.pedantic and not valid_literal_subject(subject):
            self.send_err(errors.INVALID_PUBLISH_SUBJECT)
        account = self.account
        self.trace = trace
        try:
            if account.mappings is not None:
                mapped = account.mappings.map(subject)
                if mapped and mapped != subject:
                    trace.mapped(mapped)
                subject = mapped
                if not subject:
                    return
            if self.perms is not None and not self.perms.can_publish(subject):
                from natsd.wire.errors import pub_violation

                trace.refused(pub_violation(subject))
                self._pub_violation(subject)
                return
            self.in_msgs += 1
            self.in_bytes += len(payload) - 2
            if self.verbose:
                self.queue(OK)
            if not deliver_traced(account, self, subject, reply, size, payload, hdr) and (
                    reply is not None and self.no_responders):
                self._no_responders(reply, subject)
        finally:
            self.trace = None
            trace.end()


class ObservedClient(TracingClient):
    """A client whose publishes are reported to ``message_published`` observers, or to
    tracers that follow every message.

    Used only when some plugin observes or traces every message, so that
    :class:`Client`'s hot path carries no observation cost at all.
    """

    __slots__ = ()

    def on_pub_run(self, subject: bytes, size: bytes, line: bytes, frames: bytes,
                   count: int) -> None:
        for payload in split_run(line, frames, count):
            self.on_pub(subject, None, size, payload)

    def on_pub(self, subject: bytes, reply: bytes | None, size: bytes, payload: bytes) -> None:
        server = self.api
        trace = server.tracing.begin(self, self.account, subject, reply, None, len(payload) - 2) if (
            server.tracing.every) else None
        if trace is None:
            super().on_pub(subject, reply, size, payload)
        elif trace is not DROP:
            self._publish_traced(trace, subject, reply, size, payload, 0)
        if server.observers.published:
            notify(server.observers.published, self, self.account, subject, reply, None, payload[:-2])

    def on_hpub(self, subject: bytes, reply: bytes | None, hdr_size: int, size: bytes,
                payload: bytes) -> None:
        super().on_hpub(subject, reply, hdr_size, size, payload)
        if self.api.observers.published:
            hdr, body = payload[:hdr_size], payload[hdr_size:-2]
            notify(self.api.observers.published, self, self.account, subject, reply, hdr, body)


def _distinct_clients(result: SublistResult) -> bool:
    """True if no connection holds two of the result's plain subscriptions."""
    psubs = result.psubs
    if len(psubs) == 1:
        return psubs[0].client.out is not None
    clients = {id(s.client) for s in psubs if s.client.out is not None}
    return len(clients) == len(psubs)


class TracedClient(ObservedClient):
    """A client that traces its protocol as nats-server's ``-V`` does (``trace: true``).

    The server picks this class only when tracing, so :class:`Client` pays
    nothing for it. What the client sends is traced as it is parsed; what it is
    sent, as frames are queued (:meth:`queue`, :meth:`add_msg`: the router leaves them to it), the
    router's deliveries included.
    """

    __slots__ = ("_err_traced", "_partial")

    router_appends = False

    def __init__(self, server: ServerAPI, transport: str = "tcp") -> None:
        super().__init__(server, transport)
        self._err_traced = False
        self._partial = b""
        """The start of a frame queued in pieces, not traced yet."""

    def queue(self, data: bytes) -> None:
        if not self.closed and self.out is not None and data:
            self._partial = self.trace_sent(self._partial + data)
        super().queue(data)

    def add_msg(self, head: bytes, tail: bytes, payload: bytes, size: int, count: int = 1) -> None:
        if not self.closed and self.out is not None:
            self._partial = self.trace_sent(self._partial + head + tail + payload)
        super().add_msg(head, tail, payload, size, count)

    def _trace(self, direction: str, text: str) -> None:
        log.log(TRACE, "%s - %s [%s]", self.describe(), direction, text)

    def _trace_payload(self, direction: str, msg: bytes, hdr: int) -> None:
        """``MSG_PAYLOAD: ["..."]`` (Go-quoted), clipped at ``max_traced_msg_len``;
        ``trace_headers`` shows the headers only."""
        cfg = self.api.config
        if cfg.trace_headers:
            if not hdr:
                return
            msg = msg[:hdr - 4]  # without the blank line that ends them
        if not msg:
            return
        limit = cfg.max_traced_msg_len
        if 0 < limit < len(msg):
            self._trace(f"{direction} MSG_PAYLOAD:", f'"{go_quote(msg[:limit])[1:-1]}..."')
        else:
            self._trace(f"{direction} MSG_PAYLOAD:", go_quote(msg))

    def on_connect(self, options: dict[str, Any]) -> None:
        shown = {k: ("[REDACTED]" if _secret(k) else v) for k, v in options.items()}
        self._trace("<<-", f"CONNECT {json.dumps(shown, separators=(',', ':'), ensure_ascii=False)}")
        super().on_connect(options)

    def on_pub(self, subject: bytes, reply: bytes | None, size: bytes, payload: bytes) -> None:
        rep = b" " + reply if reply else b""
        self._trace("<<-", f"PUB {(subject + rep).decode(errors='replace')} {size.decode()}")
        self._trace_payload("<<-", payload[:-2], 0)
        super().on_pub(subject, reply, size, payload)

    def on_hpub(self, subject: bytes, reply: bytes | None, hdr_size: int, size: bytes,
                payload: bytes) -> None:
        rep = b" " + reply if reply else b""
        self._trace("<<-", f"HPUB {(subject + rep).decode(errors='replace')} {hdr_size} {size.decode()}")
        self._trace_payload("<<-", payload[:-2], hdr_size)
        super().on_hpub(subject, reply, hdr_size, size, payload)

    def on_sub(self, subject: bytes, queue: bytes | None, sid: bytes) -> None:
        q = b" " + queue if queue else b""
        self._trace("<<-", f"SUB {(subject + q).decode(errors='replace')} {sid.decode(errors='replace')}")
        super().on_sub(subject, queue, sid)

    def on_unsub(self, sid: bytes, max_msgs: int | None) -> None:
        self._trace("<<-", f"UNSUB {sid.decode(errors='replace')}{f' {max_msgs}' if max_msgs else ''}")
        super().on_unsub(sid, max_msgs)

    def on_ping(self) -> None:
        self._trace("<<-", "PING")
        super().on_ping()

    def on_pong(self) -> None:
        self._trace("<<-", "PONG")
        super().on_pong()

    def remove_sub(self, sub: Subscription) -> None:
        if sub.sid in self.subs:
            self._trace("<->", f"DELSUB {sub.sid.decode(errors='replace')}")
        super().remove_sub(sub)

    def drop_subs(self) -> None:
        for sid in self.subs:
            self._trace("<->", f"DELSUB {sid.decode(errors='replace')}")
        super().drop_subs()

    def _protocol_error(self, exc: ProtocolError) -> None:
        if exc.text is not None and not self.closed:  # traced before the error is logged
            self._trace("->>", f"-ERR {exc.text}")
            self._err_traced = True
        super()._protocol_error(exc)

    def close(self, reason: str, err: str | None = None, *, abort: bool = False) -> None:
        if err is not None and not self.closed and not abort and not self._err_traced:
            self._trace("->>", f"-ERR {err}")
        super().close(reason, err, abort=abort)

    def trace_sent(self, data: bytes) -> bytes:
        """Trace the whole frames at the start of ``data`` (server to client); return the rest.

        As nats-server: ``MSG``/``HMSG`` lines with their payload, ``PING``,
        ``PONG``, ``OK`` and ``-ERR <text>``; INFO is not traced.
        """
        pos, n = 0, len(data)
        while pos < n:
            eol = data.find(b"\r\n", pos)
            if eol < 0:
                break
            line = data[pos:eol]
            if line[:4] == b"MSG " or line[:5] == b"HMSG ":
                args = line.split()
                try:
                    size = int(args[-1])
                    hdr = int(args[-2]) if line[:1] == b"H" else 0
                except (ValueError, IndexError):
                    size = hdr = 0
                end = eol + 2 + size
                if end + 2 > n:
                    break
                self._trace("->>", line.decode(errors="replace"))
                self._trace_payload("->>", data[eol + 2:end], hdr)
                pos = end + 2
                continue
            if line == b"+OK":
                self._trace("->>", "OK")
            elif line[:5] == b"-ERR ":
                self._trace("->>", "-ERR " + line[5:].decode(errors="replace").strip("'"))
            elif line[:5] != b"INFO ":
                self._trace("->>", line.decode(errors="replace"))
            pos = eol + 2
        return data[pos:]


def _secret(key: str) -> bool:
    """CONNECT fields a trace redacts: nats-server's (``pass*``, ``auth_token*``,
    ``sig``, ``proxy_sig``, ``nkey``) and bearer ``jwt``s."""
    return key.startswith(("pass", "auth_token")) or key in ("sig", "proxy_sig", "nkey", "jwt")


class _PreAuth:
    """The parser's handler until CONNECT authenticates the client."""

    __slots__ = ("client",)

    def __init__(self, client: Client) -> None:
        self.client = client

    def on_connect(self, options: dict[str, Any]) -> None:
        self.client.on_connect(options)

    def admit(self) -> None:
        """An operation other than CONNECT comes first (the parser asks before parsing it).

        As nats-server: with ``no_auth_user`` the client is authenticated as
        if it had sent an empty CONNECT (telnet demos); otherwise, or when the
        authenticators refuse (or would need time), it is an authorization
        violation.
        """
        client = self.client
        if not client.server.config.no_auth_user:
            raise ProtocolError(errors.AUTH_VIOLATION, "operation before CONNECT")
        _, verdict = client.api.auth.first(client.auth_request())
        if inspect.isawaitable(verdict):
            if inspect.iscoroutine(verdict):
                verdict.close()
            raise ProtocolError(errors.AUTH_VIOLATION, "operation before CONNECT")
        client._authorize(verdict)
        client.api.connection_ready(client)

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


def _opt(options: dict[str, Any], key: str, current: bool) -> bool:
    value = options.get(key)
    return current if value is None else bool(value)
