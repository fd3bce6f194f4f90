"""MQTT sessions and retained messages, per account, and the MQTT side of the server.

A :class:`Session` outlives its connection unless it was a clean one: its
subscriptions keep collecting messages for QoS 1 and 2 while the client is
away (bounded by ``max_ack_pending`` per session), and what was sent but not
acknowledged is sent again, marked DUP, when it comes back. Retained
messages are kept per account by topic.

This step keeps both in memory: they survive a client's reconnect, not a
server restart (storing them in JetStream, as nats-server does, comes next).
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from natsd.plugin.contracts import ServerAPI
from natsd.routing.connection import Kind
from natsd.routing.sublist import Subscription

from .settings import MQTTSettings

if TYPE_CHECKING:
    from natsd.routing.internal import InternalClient

    from .connection import MQTTConnection

log = logging.getLogger("natsd.mqtt")


@dataclass(slots=True)
class Outbound:
    """A QoS 1/2 message for the client: waiting, or sent and not acknowledged yet."""

    topic: str
    payload: bytes
    qos: int
    retain: bool = False
    properties: dict[str, Any] = field(default_factory=dict)
    sent: bool = False
    released: bool = False  # QoS 2: PUBREC came, PUBREL sent


@dataclass(slots=True)
class SubscriptionState:
    filter: str
    qos: int
    no_local: bool = False
    retain_as_published: bool = False
    subscription_id: int = 0
    share: str | None = None
    subs: list[Subscription] = field(default_factory=list)


class Session:
    """One client id's session in one account."""

    def __init__(self, account: str, client_id: str) -> None:
        self.account = account
        self.client_id = client_id
        self.subscriptions: dict[str, SubscriptionState] = {}
        self.outbound: OrderedDict[int, Outbound] = OrderedDict()
        """Packet id -> message, in the order they were taken."""
        self.queued: list[Outbound] = []
        """QoS 1/2 messages that arrived while the client was away or its window was full."""
        self.incoming_qos2: set[int] = set()
        """Packet ids of QoS 2 publishes received and not released yet (exactly once)."""
        self.next_id = 0
        self.connection: MQTTConnection | None = None
        self.expiry = 0.0
        """MQTT 5 session expiry (seconds after the connection ends; 0: with it)."""
        self.ended_at = 0.0
        self.keeper: InternalClient | None = None
        """The service client of the account that holds the session's subscriptions."""

    def packet_id(self) -> int:
        """A packet identifier not in use by an unacknowledged message."""
        for _ in range(0xFFFF):
            self.next_id = self.next_id % 0xFFFF + 1
            if self.next_id not in self.outbound:
                return self.next_id
        raise RuntimeError("no packet identifier left")


class MQTT:
    """The ``mqtt {}`` side of one server: sessions and retained messages of every account."""

    def __init__(self, server: ServerAPI, settings: MQTTSettings) -> None:
        self.server = server
        self.settings = settings
        self.sessions: dict[tuple[str, str], Session] = {}
        self.retained: dict[str, dict[str, Outbound]] = {}
        """Account -> topic -> the retained message."""
        self.connections: set[MQTTConnection] = set()

    def session(self, account: str, client_id: str, clean: bool) -> tuple[Session, bool]:
        """``(session, present)``: the client's session, made anew when ``clean`` or absent."""
        key = (account, client_id)
        old = self.sessions.get(key)
        if old is not None and old.expiry and old.ended_at and time.monotonic() - old.ended_at > old.expiry:
            old = None
        if old is not None and not clean:
            return old, True
        if old is not None:
            self.drop(old)
        session = self.sessions[key] = Session(account, client_id)
        return session, False

    def drop(self, session: Session) -> None:
        if session.keeper is not None:
            session.keeper.close()
            session.keeper = None
        session.subscriptions.clear()
        self.sessions.pop((session.account, session.client_id), None)

    def subscribe(self, session: Session, key: str, state: SubscriptionState, subjects: list[str]) -> None:
        """Subscribe the session to ``subjects`` for the filter ``key`` (replacing an older one)."""
        from .connection import delivered

        self.unsubscribe(session, key)
        if session.keeper is None:
            session.keeper = self.server.connect_internal(f"mqtt:{session.client_id}", session.account,
                                                          kind=Kind.SYSTEM, echo=True)
        keeper = session.keeper

        def callback(subject: bytes, reply: bytes | None, headers: bytes | None, payload: bytes) -> None:
            delivered(session, state, keeper.sender, subject, reply, headers, payload)

        state.subs = [keeper.subscribe(subject, callback, queue=state.share) for subject in subjects]
        session.subscriptions[key] = state

    def unsubscribe(self, session: Session, key: str) -> bool:
        state = session.subscriptions.pop(key, None)
        if state is None:
            return False
        if session.keeper is not None:
            for sub in state.subs:
                session.keeper.unsubscribe(sub)
        return True

    def retain(self, account: str, topic: str, message: Outbound) -> None:
        """Keep ``message`` as ``topic``'s retained message (an empty payload removes it)."""
        kept = self.retained.setdefault(account, {})
        if message.payload:
            kept[topic] = message
        else:
            kept.pop(topic, None)
