"""Which messages nats-server's message tracing follows, and the trace of one of them.

A message is traced when its headers name a ``Nats-Trace-Dest`` (the name
exactly so) or, in an account with ``msg_trace { dest, sampling }``, carry a
sampled W3C ``traceparent``. The checks run in nats-server's order: a
destination of ``trace disabled`` turns tracing off, an invalid one is
logged (a trace-only message is then dropped), one the publisher may not
publish to drops the message with a permissions error. The event goes to
the destination in the account the message entered, once routing (and a
stream's write) is done.
"""

from __future__ import annotations

import gzip
import logging
import random
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from natsd.routing.connection import Kind
from natsd.routing.internal import SERVER_SENT
from natsd.routing.subjects import valid_literal_subject
from natsd.routing.trace import DROP
from natsd.wire.errors import pub_violation

from .events import (
    DISABLED,
    KIND_CLIENT,
    KIND_GATEWAY,
    KIND_LEAF,
    KIND_ROUTER,
    TRACE_DEST,
    TRACE_HOP,
    TRACE_ORIGIN_ACCOUNT,
    TraceEvent,
    parse_headers,
    sampled,
    set_header,
    trace_only,
    traceparent,
)

if TYPE_CHECKING:
    from natsd.plugin.contracts import ServerAPI
    from natsd.routing.account import Account
    from natsd.routing.connection import Connection
    from natsd.routing.internal import InternalClient
    from natsd.routing.sublist import Subscription

log = logging.getLogger("natsd.msgtrace")

TRIGGERS = (TRACE_DEST.encode(), b"traceparent", b"Traceparent")
"""``Nats-Trace-Dest`` (exactly so, as nats-server matches it); ``traceparent`` in the spellings
W3C propagators and Go write, looked for only when an account has ``msg_trace``."""
_WIRE_KINDS = {Kind.CLIENT: KIND_CLIENT, Kind.ROUTER: KIND_ROUTER, Kind.GATEWAY: KIND_GATEWAY,
               Kind.LEAF: KIND_LEAF, Kind.HUB: KIND_LEAF}
_LINKS = (Kind.ROUTER, Kind.GATEWAY, Kind.LEAF, Kind.HUB)
_IMPORTS = (Kind.ACCOUNT, Kind.SERVICE_IMPORT)
TRACING_PROTO = 3
"""The ``proto`` from which a peer server traces what it receives (nats-server's MsgTraceProto)."""
ONLY_NOT_SUPPORTED = "Not delivered because remote does not support message tracing"
NOT_SUPPORTED = ("Message delivered but remote does not support message tracing so no trace event "
                 "generated from there")


def conn_name(conn: Connection) -> str:
    """nats-server's name of a connection in events: a client's CONNECT name, the remote
    server's name for a route, a gateway or a leaf node."""
    kind = conn.kind
    if kind in _LINKS:
        return str(getattr(conn, "remote_name", "") or conn.name)
    return conn.name


class MsgTracer:
    """The :class:`natsd.plugin.contracts.MessageTracer` of nats-server's message tracing."""

    def __init__(self, server: ServerAPI, account_dests: Mapping[str, tuple[str, int]]) -> None:
        self.server = server
        self.account_dests: dict[str, tuple[str, int]] = {}
        """Account name -> (destination, sampling percent) of ``msg_trace`` (traceparent)."""
        self.triggers: tuple[bytes, ...] = TRIGGERS
        self.set_account_dests(account_dests)
        self._client: InternalClient | None = None
        self.sent = 0

    def set_account_dests(self, dests: Mapping[str, tuple[str, int]]) -> None:
        """Accounts' ``msg_trace`` (at start-up and on reload); ``traceparent`` is looked for
        only when some account has one."""
        self.account_dests = dict(dests)
        self.triggers = TRIGGERS if self.account_dests else TRIGGERS[:1]

    @property
    def client(self) -> InternalClient:
        """The in-process client that publishes events (in the traced message's account)."""
        if self._client is None or self._client.closed:
            system = self.server.system_account
            assert system is not None
            self._client = self.server.connect_internal("msgtrace", system.name)
        return self._client

    def begin(self, client: Connection, account: Account, subject: bytes, reply: bytes | None,
              headers: bytes | None, size: int) -> MsgTrace | None:
        if not headers:
            return None
        fields = parse_headers(headers)
        if fields is None:
            return None
        dests = fields.get(TRACE_DEST)
        only = False
        event_account = account
        if dests:
            dest = dests[0]
            if dest == DISABLED:
                return None
            only = trace_only(fields)
        else:
            parent = traceparent(fields)
            configured = self.account_dests.get(account.name) if parent is not None else None
            if configured is None or not sampled(parent or ""):
                return None
            dest, sampling = configured
            if client.kind is Kind.CLIENT and 0 < sampling < 100 and random.randrange(100) > sampling:
                return None
        origin = fields.get(TRACE_ORIGIN_ACCOUNT)
        if origin:
            log.error('Message tracing disabled because of header "%s" with value="%s"',
                      TRACE_ORIGIN_ACCOUNT, origin[0])
            return DROP if only else None
        if not valid_literal_subject(dest.encode()):
            log.error('Destination "%s" is not valid, won\'t be able to trace events', dest)
            return DROP if only else None
        if not self._may_publish(client, account, dest):
            text = pub_violation(dest)
            if client.kind in (Kind.CLIENT, Kind.LEAF) and hasattr(client, "send_err"):
                log.error("%s - Publish Violation - %s", client.describe(), text)
                client.send_err(text)
            return DROP
        hop = fields.get(TRACE_HOP, [""])[0] if client.kind in _LINKS else ""
        record = TraceEvent(fields, size)
        kind = _WIRE_KINDS.get(client.kind, int(client.kind))
        record.ingress(kind, client.cid, conn_name(client), account.name, subject.decode("utf-8", "replace"))
        return MsgTrace(self, record, event_account, dest, only, hop, fields)

    def _may_publish(self, client: Connection, account: Account, dest: str) -> bool:
        if dest.startswith("_GR_.") or (dest.startswith("$NRG.") and account is not self.server.system_account):
            return False
        perms = client.perms
        return perms is None or perms.can_publish(dest.encode())

    def send(self, trace: MsgTrace) -> None:
        """Publish ``trace``'s event to its destination in its account."""
        server = self.server
        if not server.running:
            return
        body = trace.record.json(server.event_server_info())
        headers = None
        encoding = trace.fields.get("Accept-Encoding")
        if encoding:
            if "gzip" in encoding[0]:
                body, name = gzip.compress(body), "gzip"
            else:
                name = "identity"  # natsd does not write snappy (s2) frames: the JSON goes as it is
            headers = b"NATS/1.0\r\nContent-Encoding: " + name.encode() + b"\r\n\r\n"
        try:
            self.client.publish(trace.dest, body, reply=SERVER_SENT, headers=headers, account=trace.account)
            self.sent += 1
        except (RuntimeError, ValueError) as exc:
            log.debug("trace event to %s not sent: %s", trace.dest, exc)


class MsgTrace:
    """One traced message on this server (a :class:`natsd.plugin.contracts.MessageTrace`)."""

    __slots__ = ("owner", "record", "account", "dest", "only", "hop", "fields", "_holds", "_ended",
                 "_js", "_imported")

    def __init__(self, owner: MsgTracer, record: TraceEvent, account: Account, dest: str, only: bool,
                 hop: str, fields: dict[str, list[str]]) -> None:
        self.owner = owner
        self.record = record
        self.account = account
        self.dest = dest
        self.only = only
        self.hop = hop
        self.fields = fields
        self._holds = 0
        self._ended = False
        self._js: list[dict[str, Any]] = []
        self._imported = ""
        """The subject of the stream import the message last crossed: nats-server names it as
        the ``sub`` of the importer's deliveries."""

    def mapped(self, subject: bytes) -> None:
        self.record.add("sm", to=subject.decode("utf-8", "replace"))

    def refused(self, error: str) -> None:
        self.record.events[0]["error"] = error

    def stream_export(self, account: Account, subject: bytes) -> None:
        self.record.add("se", acc=account.name, to=subject.decode("utf-8", "replace"))

    def service_import(self, account: Account, subject: bytes, to: bytes) -> None:
        self.record.add("si", acc=account.name, **{"from": subject.decode("utf-8", "replace"),
                                                   "to": to.decode("utf-8", "replace")})

    def delivered(self, sub: Subscription, subject: bytes, error: str | None) -> bool:
        client = sub.client
        kind = client.kind
        if kind in _IMPORTS:
            if kind is Kind.ACCOUNT:
                self._imported = sub.subject.decode("utf-8", "replace")
            return True  # the crossing is its own event (se/si)
        if kind is Kind.JETSTREAM:
            # a stream takes the message: its event is filled in by ``stored``
            self._js.append(self.record.add("js"))
            return True
        if client.out is None and kind is not Kind.CLIENT:
            return not self.only  # nats-server records no egress to the server's own subscriptions
        account = client.account.name if client.account is not self.account else ""
        self.record.egress(_WIRE_KINDS.get(kind, int(kind)), client.cid, client.name, account=account,
                           sub=self._imported if account and self._imported else sub.subject.decode(
                               "utf-8", "replace"),
                           queue=sub.queue.decode("utf-8", "replace") if sub.queue else "",
                           error=error or "")
        return not self.only

    def forwarded(self, link: Connection, subject: bytes, queues: Sequence[bytes],
                  headers: bytes) -> bytes | None:
        record = self.record
        record.hops += 1
        hop = f"{self.hop}.{record.hops}" if self.hop else str(record.hops)
        info = getattr(link, "remote_info", None) or {}
        name = conn_name(link)
        kind = _WIRE_KINDS.get(link.kind, int(link.kind))
        # a peer names its level in its INFO; a leaf node we accepted, in its CONNECT only
        proto: Any = info.get("proto") if "proto" in info else (link.connect_options or {}).get("protocol", 0)
        try:
            supported = int(proto) >= TRACING_PROTO
        except (TypeError, ValueError):
            supported = False
        if not supported:
            if self.only:  # the peer would deliver it
                record.egress(kind, link.cid, name, hop=hop, error=ONLY_NOT_SUPPORTED)
                return None
            record.egress(kind, link.cid, name, hop=hop, error=NOT_SUPPORTED)
        else:
            record.egress(kind, link.cid, name, hop=hop)
        return set_header(headers or b"NATS/1.0\r\n\r\n", TRACE_HOP, hop)

    def stored(self, stream: str, subject: bytes, error: str | None = None, no_interest: bool = False) -> None:
        event = self._js.pop(0) if self._js else self.record.add("js")
        from .events import timestamp

        event["ts"] = timestamp()
        event["stream"] = stream
        if subject:
            event["subject"] = subject.decode("utf-8", "replace")
        if no_interest:
            event["nointerest"] = True
        if error:
            event["error"] = error

    def hold(self) -> Callable[[], None]:
        self._holds += 1
        released = False

        def release() -> None:
            nonlocal released
            if released:
                return
            released = True
            self._holds -= 1
            if self._ended and not self._holds:
                self.owner.send(self)
        return release

    def end(self) -> None:
        self._ended = True
        if not self._holds:
            self.owner.send(self)
