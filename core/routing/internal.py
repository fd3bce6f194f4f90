"""In-process clients: how plugins and bridges publish and subscribe without a socket.

An :class:`InternalClient` joins an account like any connection, but its
subscriptions call Python callbacks instead of writing ``MSG`` frames.
Callbacks run synchronously on the event loop while the publisher's read is
being processed: they must be quick and must not block (schedule real work
with ``asyncio`` if needed).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .account import Account
from natsd.conn.client import route
from natsd.wire.protocol import CRLF
from .subjects import valid_literal_subject, valid_subject
from .sublist import Subscription

if TYPE_CHECKING:
    from natsd.server import Server

log = logging.getLogger("natsd.internal")

Callback = Callable[[bytes, "bytes | None", "bytes | None", bytes], None]
"""``callback(subject, reply, headers, payload)``; headers is the raw block or None."""


def _b(value: str | bytes) -> bytes:
    return value.encode() if isinstance(value, str) else value


class InternalClient:
    """A client living inside the server process (see ``Server.connect_internal``)."""

    out = None  # tells the router to call deliver() instead of writing frames
    headers = True
    perms = None

    def __init__(self, server: Server, name: str, account: Account, *, echo: bool = False) -> None:
        self.server = server
        self.name = name
        self.account = account
        self.echo = echo
        self.closed = False
        self.subs: dict[bytes, Subscription] = {}
        self._callbacks: dict[bytes, Callback] = {}
        self._elsewhere: dict[bytes, Account] = {}  # sid -> account of a subscription not in ours
        self._next_sid = 0
        self.sender: Any = None
        """During a callback: the connection (or internal client) that published the message."""
        account.clients.add(self)

    def __repr__(self) -> str:
        return f"<InternalClient {self.name} account={self.account.name}>"

    def subscribe(self, subject: str | bytes, callback: Callback,
                  queue: str | bytes | None = None, max_msgs: int = 0,
                  account: Account | None = None) -> Subscription:
        """Subscribe ``callback`` to ``subject`` (wildcards allowed).

        ``account`` subscribes in another account than the client's own (a
        service the server offers in every account, such as
        ``$SYS.REQ.USER.INFO``); the client does not join that account.
        """
        subj = _b(subject)
        if not valid_subject(subj):
            raise ValueError(f"invalid subject {subject!r}")
        self._next_sid += 1
        sid = str(self._next_sid).encode()
        sub = Subscription(self, subj, _b(queue) if queue is not None else None, sid)
        sub.max_msgs = max_msgs
        self.subs[sid] = sub
        self._callbacks[sid] = callback
        if account is not None and account is not self.account:
            self._elsewhere[sid] = account
        else:
            account = self.account
        account.sublist.insert(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        self.remove_sub(sub)

    def remove_sub(self, sub: Subscription) -> None:
        if self.subs.pop(sub.sid, None) is not None:
            self._callbacks.pop(sub.sid, None)
            sub.closed = True
            self._elsewhere.pop(sub.sid, self.account).sublist.remove(sub)

    def publish(self, subject: str | bytes, payload: bytes = b"",
                reply: str | bytes | None = None, headers: bytes | None = None,
                account: Account | None = None) -> bool:
        """Publish a message (in ``account``, default the client's own); returns
        True if any subscription received it."""
        subj = _b(subject)
        if not valid_literal_subject(subj):
            raise ValueError(f"invalid publish subject {subject!r}")
        hdr = headers or b""
        body = hdr + payload
        result = route(self, account or self.account, subj, _b(reply) if reply is not None else None,
                       str(len(body)).encode(), body + CRLF, len(hdr))
        self.server.schedule_flush()
        return bool(result)

    def deliver(self, sub: Subscription, subject: bytes, reply: bytes | None,
                headers: bytes | None, payload: bytes, sender: Any = None) -> None:
        callback = self._callbacks.get(sub.sid)
        if callback is None:
            return
        self.sender = sender
        try:
            callback(subject, reply, headers, payload)
        except Exception:
            log.exception("%r: callback for %r failed", self, subject)
        finally:
            self.sender = None

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for sub in list(self.subs.values()):
            self.remove_sub(sub)
        self.account.clients.discard(self)
