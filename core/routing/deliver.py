"""Delivery: how one published message reaches every receiver of its account.

:func:`deliver` is the router (``Account.deliver``). It looks the subject up
in the account's sublist (a cached :class:`~.sublist.SublistResult` is one
dict lookup) and then:

1. **Local plain subscriptions.** For each, three references are appended to
   the receiver's output list (``MSG <subject> <sid> ``, ``[reply ]size``,
   the payload; ``HMSG``, ``[reply ]hdr size`` with headers) and the receiver
   goes on the dirty list once; no bytes are copied. Receivers with
   permissions, auto-unsubscribe, no output list (in-process clients), an
   output they watch (``router_appends`` false: traced clients) or, for a
   message with headers, no headers support take the careful path,
   :func:`deliver_one`.
2. **Queue groups.** One member per group. A group with only local members
   is served by a uniformly random member. A group with members on other
   servers follows nats-server's rules (:data:`QUEUE_PICK`): a message from
   a client picks among local members and routes (weighted by the routes'
   queue weights), leaf nodes only when nothing else can take it; a message
   that came over a route is served by a local member first.
3. **Remote connections** (routes, leaf nodes) with interest get the message
   once each, through :meth:`Connection.forward`, with the names of the
   queue groups they were chosen for; :data:`FORWARD` says which kinds may
   receive from which (a message from a route never goes to another route:
   the one-hop rule). Leaf nodes come in two kinds: ``LEAF`` (a leaf
   connected to this server) and ``HUB`` (this server's own link to its
   hub), and hub traffic stays off routes.
4. **Egress** (``Account.egress``, gateways): called once after local
   delivery with the match result and the queue groups already served.

The single-server path (no remote interest, no egress) pays one check for
both. ``deliver`` returns whether anything could receive the message (for
no-responders).
"""

from __future__ import annotations

from collections.abc import Sequence
from random import random
from typing import TYPE_CHECKING, Any

from natsd.wire.protocol import CRLF

from .connection import LOCAL_KINDS, SLOW_CONSUMER_PENDING, Kind
from .sublist import SublistResult, Subscription

if TYPE_CHECKING:
    from .account import Account
    from .connection import Connection

_LEAF = Kind.LEAF
_ROUTER = Kind.ROUTER
_LEAF_KINDS = frozenset({Kind.LEAF, Kind.HUB})
_NONE: frozenset[Kind] = frozenset()

FORWARD: dict[int, frozenset[Kind]] = {
    **{k: frozenset({Kind.ROUTER, Kind.LEAF, Kind.HUB}) for k in LOCAL_KINDS},
    Kind.ROUTER: frozenset({Kind.LEAF}),
    Kind.LEAF: frozenset({Kind.ROUTER, Kind.LEAF, Kind.HUB}),
    Kind.HUB: frozenset({Kind.LEAF, Kind.HUB}),
    Kind.GATEWAY: frozenset({Kind.ROUTER, Kind.LEAF, Kind.HUB}),
}
"""Sender kind -> kinds of remote connections that may receive its messages (plain interest).

As nats-server's ``processMsgResults``: a message from a route never goes to
another route (the one-hop rule) nor up to a hub; one from a hub (``HUB``,
the link this server solicited) goes to leaf nodes, never to routes.
Gateways never appear: they receive through egress. A connection never
receives its own message back.
"""

QUEUE_PICK: dict[int, frozenset[Kind]] = {
    **{k: frozenset({Kind.ROUTER}) for k in LOCAL_KINDS},
    Kind.ROUTER: frozenset(),
    Kind.LEAF: frozenset({Kind.ROUTER}),
    Kind.HUB: frozenset(),
    Kind.GATEWAY: frozenset({Kind.ROUTER}),
}
"""Sender kind -> remote kinds that take part in a queue group's random pick beside local
members. Leaf nodes (either way) are a fallback: chosen only when no other member is, and a
message from a route falls back to this server's own leaf nodes only."""

EGRESS_FROM = LOCAL_KINDS | {Kind.LEAF}
"""Sender kinds whose messages are offered to the account's egress (gateways)."""

Egress = Any
"""``egress(sender, account, subject, reply, size, payload, hdr, result, served) -> bool``:
``served`` names the queue groups already served; returns True if the message went out."""


def deliver(account: Account, sender: Any, subject: bytes, reply: bytes | None, size: bytes,
            payload: bytes, hdr: int, queues: Sequence[bytes] | None = None) -> bool:
    """Deliver one message published in ``account``; True if anybody could receive it.

    ``payload`` ends with CRLF; ``hdr`` is the header length (0: no
    headers); ``size`` is the total size as the publisher wrote it.
    ``queues`` is ``None`` for a message published on this server; for one
    that arrived from another server it names the queue groups this server
    should serve (empty: none).
    """
    sublist = account.sublist
    result = sublist.cache.get(subject)
    if result is None:
        result = sublist.match(subject)
    if result.psubs:
        if hdr:
            targets = result.htargets
            if targets is None:
                targets = result.htargets = tuple(
                    (s, s.client, s.client.out if s.client.headers and s.client.router_appends else None,
                     b"HMSG " + subject + b" " + s.sid + b" ")
                    for s in result.psubs)
            tail = b"%s %d %s\r\n" % (reply, hdr, size) if reply is not None else b"%d %s\r\n" % (hdr, size)
        else:
            targets = result.targets
            if targets is None:
                targets = result.targets = tuple(
                    (s, s.client, s.client.out if s.client.router_appends else None,
                     b"MSG " + subject + b" " + s.sid + b" ")
                    for s in result.psubs)
            tail = reply + b" " + size + CRLF if reply is not None else size + CRLF
        nbytes = len(tail) + len(payload)
        psize = len(payload) - 2
        dirty = sender.server.dirty
        echo = sender.echo
        # The hot loop, for MSG and HMSG frames alike: Connection.add_msg's bookkeeping,
        # inlined. Calling add_msg here cost about 80 ns per delivery (9% of a message to two
        # subscribers, measured in-process), so this is its one copy.
        for sub, client, out, prefix in targets:
            if client is sender and not echo:
                continue
            if out is None or sub.max_msgs or client.perms is not None:
                deliver_one(sender, sub, subject, reply, size, payload, hdr)
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
                dirty.append(client)
            if client.out_bytes > client.max_pending:
                client.slow_consumer(SLOW_CONSUMER_PENDING)
    if queues is None and result.remote is None and not account.egress:
        for group in result.qsubs:
            sub = group[int(random() * len(group))]
            client = sub.client
            if sub.closed or sub.max_msgs or client.out is None or client.perms is not None or (
                    hdr and not client.headers) or (client is sender and not sender.echo):
                _serve_group(sender, group, sub, subject, reply, size, payload, hdr)
                continue
            sub.delivered += 1
            if hdr:
                client.add_msg(b"HMSG " + subject + b" " + sub.sid + b" ",
                               b"%s %d %s\r\n" % (reply, hdr, size) if reply is not None else
                               b"%d %s\r\n" % (hdr, size), payload, len(payload) - 2)
            else:
                client.add_msg(b"MSG " + subject + b" " + sub.sid + b" ",
                               reply + b" " + size + CRLF if reply is not None else size + CRLF,
                               payload, len(payload) - 2)
        return result.interest
    return _beyond(account, sender, result, subject, reply, size, payload, hdr, queues)


def deliver_as(account: Account, sender: Any, subject: bytes, shown: bytes, reply: bytes | None,
               size: bytes, payload: bytes, hdr: int) -> bool:
    """Deliver to the subscribers of ``subject``, framed with ``shown`` as the message's subject.

    JetStream sends a stored message to a pull request's inbox this way: the
    inbox routes it, the client sees the subject it was published on (as
    nats-server's ``pa.deliver``). Local subscriptions see ``shown``; queue
    groups, other servers and egress get the message as routed, ``subject``,
    and so do the forwarders of imports, which pass it on into their account
    by that subject. The ones that travel learn ``shown`` from the reply:
    ``<ack reply>@<subject>``, nats-server's form (see :func:`split_shown`).
    """
    result = account.sublist.match(subject)
    carried = reply + b"@" + shown if reply and reply.startswith(JS_ACK) and shown != subject else reply
    for sub in result.psubs:
        if sub.client is not sender or sender.echo:
            if sub.client.kind is Kind.ACCOUNT:
                deliver_one(sender, sub, subject, carried, size, payload, hdr)
            else:
                deliver_one(sender, sub, shown, reply, size, payload, hdr)
    if result.qsubs or result.remote is not None or account.egress:
        bare = SublistResult((), result.qsubs, remote=result.remote)
        return _beyond(account, sender, bare, subject, reply, size, payload, hdr, None,
                       carried) or result.interest
    return result.interest


def deliver_traced(account: Account, sender: Any, subject: bytes, reply: bytes | None, size: bytes,
                   payload: bytes, hdr: int, queues: Sequence[bytes] | None = None) -> bool:
    """:func:`deliver` for a message that ``sender.trace`` follows: every receiver takes the
    path that reports to the trace (:func:`deliver_one`, links through :func:`_beyond`)."""
    result = account.sublist.match(subject)
    trace = sender.trace
    for sub in result.psubs:
        if sub.client is not sender or sender.echo:
            deliver_one(sender, sub, subject, reply, size, payload, hdr)
        elif trace is not None:
            trace.delivered(sub, subject, NO_ECHO)
    if result.qsubs or result.remote is not None or account.egress:
        bare = SublistResult((), result.qsubs, remote=result.remote)
        return _beyond(account, sender, bare, subject, reply, size, payload, hdr, queues) or result.interest
    return result.interest


NO_ECHO = "Not delivered because of no echo"
"""Why a traced message did not reach its publisher's own subscription (nats-server's words)."""

JS_ACK = b"$JS.ACK."


def split_shown(reply: bytes | None) -> tuple[bytes | None, bytes | None]:
    """``(reply, shown subject)`` of a message another server sent with ``<ack reply>@<subject>``
    (see :func:`deliver_as`); ``(reply, None)`` for any other reply."""
    if reply is None or not reply.startswith(JS_ACK):
        return reply, None
    at = reply.find(b"@")
    if at < 0 or reply.count(b".", 0, at) < 8:
        return reply, None
    return reply[:at], reply[at + 1:] or None


def _beyond(account: Account, sender: Any, result: SublistResult, subject: bytes,
            reply: bytes | None, size: bytes, payload: bytes, hdr: int,
            queues: Sequence[bytes] | None, remote_reply: bytes | None = None) -> bool:
    """Queue groups with remote members or a queue filter, remote connections, egress
    (``remote_reply``: the reply other servers get, when it differs)."""
    kind = sender.kind
    remote = result.remote
    trace = sender.trace
    sent_reply = remote_reply if remote_reply is not None else reply
    served: Sequence[bytes] = ()
    if (queues is None or queues) and (result.qsubs or (remote is not None and remote.groups)):
        served = []
        targets: dict[Any, list[bytes]] = {}
        if remote is not None:
            allowed = FORWARD.get(kind, _NONE)
            for conn in remote.plain:
                if conn is not sender and conn.kind in allowed:
                    targets[conn] = []
        pick = QUEUE_PICK.get(kind, _NONE)
        groups = [(g[0].queue, g) for g in result.qsubs]
        if remote is not None:
            groups.extend(remote.groups)
        for name, members in groups:
            if queues is not None and name not in queues:
                continue
            sub = _choose(sender, members, pick)
            if sub is None:
                continue
            client = sub.client
            if client.kind in LOCAL_KINDS:
                deliver_one(sender, sub, subject, reply, size, payload, hdr)
            else:
                targets.setdefault(client, []).append(name)  # type: ignore[arg-type]
            served.append(name)  # type: ignore[arg-type]
        for conn, names in targets.items():
            _forward(conn, trace, sender, account, subject, sent_reply, size, payload, hdr, names)
    elif remote is not None:  # no queue group to serve: nothing to allocate per message
        allowed = FORWARD.get(kind, _NONE)
        for conn in remote.plain:
            if conn is not sender and conn.kind in allowed:
                _forward(conn, trace, sender, account, subject, sent_reply, size, payload, hdr, ())
    delivered = result.interest
    if account.egress and kind in EGRESS_FROM:
        for egress in account.egress:
            if egress(sender, account, subject, reply, size, payload, hdr, result, served):
                delivered = True
    return delivered


def _forward(conn: Any, trace: Any, sender: Any, account: Account, subject: bytes, reply: bytes | None,
             size: bytes, payload: bytes, hdr: int, names: Sequence[bytes]) -> None:
    """Send one remote connection the message, with the queue groups it serves (and, for a
    traced message, the header block the trace chose for it)."""
    if trace is None:
        conn.forward(sender, account, subject, reply, size, payload, hdr, names)
        return
    frame = traced_frame(trace, conn, subject, names, size, payload, hdr)
    if frame is not None:
        conn.forward(sender, account, subject, reply, *frame, names)


def traced_frame(trace: Any, link: Any, subject: bytes, queues: Sequence[bytes], size: bytes,
                 payload: bytes, hdr: int) -> tuple[bytes, bytes, int] | None:
    """``(size, payload, hdr)`` to send ``link`` for a message ``trace`` follows, with the header
    block the trace chose (a hop header), or ``None`` if the trace keeps it from the link.

    A plugin that sends messages to other servers itself (gateways, through egress) calls this
    for each link when the sender has a ``trace``.
    """
    headers = payload[:hdr] if hdr else b""
    sent = trace.forwarded(link, subject, queues, headers)
    if sent is None:
        return None
    if sent is headers:
        return size, payload, hdr
    body = sent + payload[hdr:]
    return str(len(body) - 2).encode(), body, len(sent)


def _choose(sender: Any, members: tuple[Subscription, ...], pick: frozenset[Kind]
            ) -> Subscription | None:
    """One member of a queue group, from a random start (see :data:`QUEUE_PICK`)."""
    n = len(members)
    start = int(random() * n)
    fallback = None
    for k in range(n):
        sub = members[(start + k) % n]
        if sub.closed:
            continue
        client = sub.client
        kind = client.kind
        if kind in LOCAL_KINDS:
            if client is sender and not sender.echo:
                continue
            return sub
        if client is sender:
            continue
        if kind in pick:
            return sub
        if fallback is None and kind in _LEAF_KINDS and (kind == _LEAF or sender.kind != _ROUTER):
            fallback = sub
    return fallback


def _serve_group(sender: Any, group: tuple[Subscription, ...], first: Subscription,
                 subject: bytes, reply: bytes | None, size: bytes, payload: bytes,
                 hdr: int) -> None:
    """Deliver to one member of a local queue group, starting at ``first``."""
    n = len(group)
    start = group.index(first)
    for k in range(n):
        sub = group[(start + k) % n]
        if sub.closed or (sub.client is sender and not sender.echo):
            continue
        deliver_one(sender, sub, subject, reply, size, payload, hdr)
        return


SUB_DENIED = "Not delivered because subscription denies this subject"
"""Why a traced message did not reach a wildcard subscription whose connection may not receive
this subject (nats-server's words)."""


def deliver_one(sender: Any, sub: Subscription, subject: bytes, reply: bytes | None,
                size: bytes, payload: bytes, hdr: int) -> None:
    """Deliver to one local subscription, checking its connection's permissions.

    Frames are ``MSG``, ``HMSG``, or ``MSG`` with the headers stripped for a
    client that did not ask for headers; in-process clients get a call.
    Auto-unsubscribe (``UNSUB <sid> <max>``) is counted here.
    """
    client: Connection = sub.client
    perms = client.perms
    trace = sender.trace
    if perms is not None:
        if perms.deny_delivery(subject, sub.queue):
            if trace is not None:
                trace.delivered(sub, subject, SUB_DENIED)
            return
        if reply is not None:
            perms.note_request(reply)
    if trace is not None and not trace.delivered(sub, subject, None):
        return
    if client.out is None:
        headers = payload[:hdr] if hdr else None
        client.deliver(sub, subject, reply, headers, payload[hdr:-2], sender)
    else:
        rep = reply + b" " if reply is not None else b""
        head = b"MSG " + subject + b" " + sub.sid + b" "
        if not hdr:
            client.add_msg(head, rep + size + CRLF, payload, len(payload) - 2)
        elif client.headers:
            client.add_msg(b"H" + head, b"%s%d %s\r\n" % (rep, hdr, size), payload, len(payload) - 2)
        else:  # strip headers for clients that did not ask for them
            body = payload[hdr:]
            client.add_msg(head, b"%s%d\r\n" % (rep, len(body) - 2), body, len(payload) - 2)
    sub.delivered += 1
    if sub.max_msgs and sub.delivered >= sub.max_msgs:
        client.remove_sub(sub)
