"""In-process clients: how plugins publish and subscribe without a socket.

An :class:`InternalClient` is a :class:`~.connection.Connection` whose
subscriptions call Python callbacks instead of writing ``MSG`` frames.
Callbacks run synchronously on the event loop while the publisher's read is
being processed: they must be quick and must not block (schedule real work
with ``asyncio`` if needed).

Two uses, both through ``Server.connect_internal``:

- a *service* of the server or a plugin (the system account, a bridge): kind
  ``SYSTEM`` (or ``JETSTREAM`` ...), not counted as a client connection;
- a *session* of a protocol a plugin speaks (an MQTT client): created with the
  identity an authenticator returned, it is a client connection like any
  other: counted in ``max_connections``, shown by monitoring and system
  events, bound by the user's permissions and limits, removed when closed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from natsd.wire.protocol import CRLF

from .connection import CLIENT_CLOSED, NO_LIMIT, Connection, Kind
from .deliver import deliver_as, deliver_traced
from .subjects import valid_literal_subject, valid_subject
from .sublist import Subscription
from .trace import DROP

if TYPE_CHECKING:
    from .account import Account
    from .connection import Host

log = logging.getLogger("natsd.internal")

Callback = Callable[[bytes, "bytes | None", "bytes | None", bytes], None]
"""``callback(subject, reply, headers, payload)``; headers is the raw block or None."""

SERVER_SENT = b""
"""The reply of a message the server sends itself (an event, the answer to a
``$SYS.REQ`` request): nats-server gives those an empty reply rather than
none, so that clients get them framed ``MSG <subject> <sid>  <size>``, with
two spaces. Pass it as ``reply`` to :meth:`InternalClient.publish`."""


def _b(value: str | bytes) -> bytes:
    return value.encode() if isinstance(value, str) else value


_published: dict[bytes, None] = {}
"""Subjects in-process clients published to lately, all valid (a device's topic, a stream's
subject come again and again); cleared when it holds :data:`PUBLISHED_MAX`."""
PUBLISHED_MAX = 4096


def _publishable(subject: bytes) -> bool:
    """:func:`valid_literal_subject`, remembered for subjects that passed."""
    if subject in _published:
        return True
    if not valid_literal_subject(subject):
        return False
    if len(_published) >= PUBLISHED_MAX:
        _published.clear()
    _published[subject] = None
    return True


class InternalClient(Connection):
    """A client living inside the server process (see ``Server.connect_internal``)."""

    __slots__ = ("_callbacks", "_elsewhere", "_next_sid", "sender")

    def __init__(self, server: Host, name: str, account: Account, *, echo: bool = False,
                 kind: Kind = Kind.SYSTEM, transport: str = "internal") -> None:
        super().__init__(server, account, kind=kind, transport=transport)
        self.out = None  # tells the router to call deliver() instead of writing frames
        self.max_subs = NO_LIMIT  # until an identity's limits apply
        self.name = name
        self.echo = echo
        self.headers = True
        self._callbacks: dict[bytes, Callback] = {}
        self._elsewhere: dict[bytes, Account] = {}  # sid -> account of a subscription not in ours
        self._next_sid = 0
        self.sender: Any = None
        """During a callback: the connection (or internal client) that published the message."""

    def __repr__(self) -> str:
        return f"<InternalClient {self.name} account={self.account.name}>"

    def subscribe(self, subject: str | bytes, callback: Callback,
                  queue: str | bytes | None = None, max_msgs: int = 0,
                  account: Account | None = None) -> Subscription:
        """Subscribe ``callback`` to ``subject`` (wildcards allowed).

        ``account`` subscribes in another account than the client's own (a
        service the server offers in every account, such as
        ``$SYS.REQ.USER.INFO``); the client does not join that account.
        A client created with an identity is bound by its permissions and
        subscription limit: :class:`PermissionError` says what was refused,
        in nats-server's words.
        """
        subj = _b(subject)
        q = _b(queue) if queue is not None else None
        if not valid_subject(subj):
            raise ValueError(f"invalid subject {subject!r}")
        if self.closed:
            raise RuntimeError(f"{self!r} is closed")
        if self.perms is not None and not self.perms.can_subscribe(subj, q):
            from natsd.wire.errors import sub_violation

            raise PermissionError(sub_violation(subj, q))
        if 0 <= self.max_subs <= len(self.subs):
            raise PermissionError("maximum subscriptions exceeded")
        self._next_sid += 1
        sid = str(self._next_sid).encode()
        sub = Subscription(self, subj, q, sid)
        sub.max_msgs = max_msgs
        self._callbacks[sid] = callback
        if account is not None and account is not self.account:
            self._elsewhere[sid] = account
            self.subs[sid] = sub
            account.add_sub(sub)
        else:
            self.add_sub(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        self.remove_sub(sub)

    def remove_sub(self, sub: Subscription) -> None:
        if self.subs.get(sub.sid) is not sub:
            return
        self._callbacks.pop(sub.sid, None)
        elsewhere = self._elsewhere.pop(sub.sid, None)
        if elsewhere is None:
            super().remove_sub(sub)
            return
        del self.subs[sub.sid]
        sub.closed = True
        elsewhere.remove_sub(sub)

    def publish(self, subject: str | bytes, payload: bytes = b"",
                reply: str | bytes | None = None, headers: bytes | None = None,
                account: Account | None = None, shown: str | bytes | None = None) -> bool:
        """Publish a message (in ``account``, default the client's own); returns
        True if any subscription received it.

        ``reply=SERVER_SENT`` frames it as nats-server frames the messages it
        sends itself (see :data:`SERVER_SENT`); in-process receivers get no
        reply (``None``) either way. ``shown``: the subject local subscribers
        see in place of ``subject``, which still routes the message (a stored
        message sent to a pull request's inbox, see ``deliver_as``). A client
        created with an identity is bound by its publish permissions
        (:class:`PermissionError`).
        """
        subj = _b(subject)
        if not _publishable(subj):
            raise ValueError(f"invalid publish subject {subject!r}")
        if self.perms is not None and not self.perms.can_publish(subj):
            from natsd.wire.errors import pub_violation

            raise PermissionError(pub_violation(subj))
        hdr = headers or b""
        body = hdr + payload
        self.in_msgs += 1
        self.in_bytes += len(body)
        target = account or self.account
        rep = _b(reply) if reply is not None else None
        size = str(len(body)).encode()
        tracing = self.server.tracing
        trace = None
        if tracing and (hdr and tracing.wants(hdr, len(hdr)) or tracing.every and self.kind is Kind.CLIENT):
            # a device's message (an MQTT client is in-process) is a client's; a plugin's own
            # messages are traced only when their headers ask for it
            # a stored message sent to a pull request's inbox is traced as its own subject
            trace = tracing.begin(self, target, _b(shown) if shown is not None else subj, rep, headers,
                                  len(body), internal=self.kind is not Kind.CLIENT)
        if trace is DROP:
            return False
        if trace is not None:
            self.trace = trace
            try:
                if shown is not None:
                    delivered = deliver_as(target, self, subj, _b(shown), rep, size, body + CRLF, len(hdr))
                else:
                    delivered = deliver_traced(target, self, subj, rep, size, body + CRLF, len(hdr))
            finally:
                self.trace = None
                trace.end()
        elif shown is not None:
            delivered = deliver_as(target, self, subj, _b(shown), rep, size, body + CRLF, len(hdr))
        else:
            delivered = target.deliver(self, subj, rep, size, body + CRLF, len(hdr))
        self.server.schedule_flush()
        return delivered

    def deliver(self, sub: Subscription, subject: bytes, reply: bytes | None,
                headers: bytes | None, payload: bytes, sender: Connection) -> None:
        callback = self._callbacks.get(sub.sid)
        if callback is None:
            return
        self.out_msgs += 1
        self.out_bytes_total += len(payload) + (len(headers) if headers else 0)
        self.sender = sender
        try:
            callback(subject, reply or None, headers, payload)
        except Exception:
            log.exception("%r: callback for %r failed", self, subject)
        finally:
            self.sender = None

    def close(self, reason: str = CLIENT_CLOSED, err: str | None = None, *,
              abort: bool = False) -> None:
        """Remove every subscription and leave the server (idempotent)."""
        if self.closed:
            return
        self.closed = True
        self.close_reason = reason
        self.cancel_timers()
        for sub in list(self.subs.values()):
            self.remove_sub(sub)
        self.server.connection_closed(self, reason)
