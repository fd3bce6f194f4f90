"""MQTT sessions and retained messages, per account, and the MQTT side of the server.

A :class:`Session` outlives its connection unless it was a clean one: its
subscriptions keep collecting messages for QoS 1 and 2 while the client is
away, and what was sent but not acknowledged is sent again, marked DUP,
when it comes back. Retained messages are kept per account by topic.

Where the account has JetStream, all of it is also kept there
(:mod:`.store`) and survives a restart: session records, retained messages,
and the QoS 1/2 messages devices publish for persistent sessions, whose QoS
1/2 subscriptions receive them through durable consumers. A clean session's
messages go to it in memory: it ends with its connection anyway. Without
JetStream everything lives in memory only, and the server says so once per
account.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from natsd.plugin.contracts import ServerAPI
from natsd.routing.connection import Kind
from natsd.routing.sublist import Subscription

from . import sparkplug
from .settings import MQTTSettings
from .store import MESSAGE_PREFIX, MESSAGES, JetStreamStore, NoJetStream, StoreError
from .topics import topic_to_subject

if TYPE_CHECKING:
    from natsd.routing.internal import InternalClient

    from .connection import MQTTConnection

log = logging.getLogger("natsd.mqtt")

MAX_QUEUED = 65536
"""QoS 1/2 messages a session keeps for its client beyond those in flight, at most: the oldest go first.
A persistent session's are stored messages, which its consumers deliver again."""


class Outbound:
    """A message for the client: waiting, or sent and not acknowledged yet (QoS 1/2).

    One is made for every message a device receives: a plain class (compiled, a C struct), not a
    dataclass, whose generated ``__init__`` would run interpreted."""

    __slots__ = ("topic", "payload", "qos", "retain", "properties", "sent", "released", "ack", "expires")

    def __init__(self, topic: str, payload: bytes, qos: int, retain: bool = False,
                 properties: dict[str, Any] | None = None, released: bool = False, ack: bytes | None = None,
                 expires: float = 0.0) -> None:
        self.topic = topic
        self.payload = payload
        self.qos = qos
        self.retain = retain
        self.properties: dict[str, Any] = {} if properties is None else properties
        self.sent = False
        self.released = released
        """QoS 2: PUBREC came, PUBREL sent."""
        self.ack = ack
        """The JetStream ack subject of a message a consumer delivered."""
        self.expires = expires
        """MQTT 5 message expiry: when (Unix seconds; 0: never)."""

    def __repr__(self) -> str:
        return f"Outbound({self.topic!r}, {self.payload!r}, qos={self.qos}, retain={self.retain})"


@dataclass(slots=True)
class SubscriptionState:
    filter: str
    qos: int
    no_local: bool = False
    retain_as_published: bool = False
    subscription_id: int = 0
    share: str | None = None
    subjects: list[str] = field(default_factory=list)
    subs: list[Subscription] = field(default_factory=list)
    consumer: str = ""
    """The durable JetStream consumer behind a QoS 1/2 subscription ("" without JetStream)."""
    deliver: str = ""
    deliver_sub: Subscription | None = None

    def record(self) -> dict[str, Any]:
        return {"filter": self.filter, "qos": self.qos, "nl": self.no_local, "rap": self.retain_as_published,
                "sid": self.subscription_id, "share": self.share, "subjects": self.subjects,
                "consumer": self.consumer}


class Session:
    """One client id's session in one account."""

    def __init__(self, account: str, client_id: str) -> None:
        self.account = account
        self.client_id = client_id
        self.subscriptions: dict[str, SubscriptionState] = {}
        self.outbound: OrderedDict[int, Outbound] = OrderedDict()
        """Packet id -> message, in the order they were taken."""
        self.queued: deque[Outbound] | None = None
        """QoS 1/2 messages that arrived while the client was away or its window was full
        (:meth:`keep`; made on first use: an empty deque is 0.7 KiB, an idle device's whole
        session about as much)."""
        self.dropped = 0
        """Messages :meth:`keep` let go because the queue was full."""
        self.incoming_qos2: set[int] = set()
        """Packet ids of QoS 2 publishes received and not released yet (exactly once)."""
        self.next_id = 0
        self.connection: MQTTConnection | None = None
        self.expiry = 0.0
        """MQTT 5 session expiry (seconds after the connection ends; 0: with it)."""
        self.ended_at = 0.0
        self.ended_wall = 0.0
        """When the last connection ended (Unix time), for the expiry after a restart."""
        self.keeper: InternalClient | None = None
        """The service client of the account that holds the session's subscriptions."""
        self.store: JetStreamStore | None = None
        self.persistent = False
        self.pending_will: asyncio.TimerHandle | None = None
        """An MQTT 5 will waiting for its delay, cancelled if a connection takes the session up."""
        self.publish_will: Callable[[], None] | None = None
        """What ``pending_will`` will call: called at once if the session ends before."""

    def packet_id(self) -> int:
        """A packet identifier not in use by an unacknowledged message."""
        for _ in range(0xFFFF):
            self.next_id = self.next_id % 0xFFFF + 1
            if self.next_id not in self.outbound:
                return self.next_id
        raise RuntimeError("no packet identifier left")

    def keep(self, message: Outbound) -> None:
        """Queue a QoS 1/2 message until the client can take it: at most :data:`MAX_QUEUED`, the
        oldest go first (as a clean session's would with a client that cannot keep up)."""
        queued = self.queued
        if queued is None:
            queued = self.queued = deque()
        queued.append(message)
        if len(queued) > MAX_QUEUED:
            queued.popleft()
            self.dropped += 1
            if self.dropped in (1, 1000) or not self.dropped % 100_000:
                log.warning("MQTT: session %r: %d messages the client did not take in time were dropped (at most %d "
                            "are kept for it)", self.client_id, self.dropped, MAX_QUEUED)

    def acknowledge(self, reply: bytes) -> None:
        """Tell the consumer that delivered a stored message (its ack subject ``reply``) that it may
        let the message go."""
        if self.store is not None and self.store.ack(reply):
            return
        if self.keeper is not None:
            self.keeper.publish(reply, b"+ACK")

    def record(self) -> dict[str, Any]:
        """What JetStream keeps of a persistent session: its subscriptions, and where its QoS 2
        exchanges stand (publishes received and not released; deliveries released, PUBCOMP due)."""
        out: dict[str, Any] = {"subs": {key: state.record() for key, state in self.subscriptions.items()}}
        if self.incoming_qos2:
            out["qos2_in"] = sorted(self.incoming_qos2)
        released = [pid for pid, message in self.outbound.items() if message.released]
        if released:
            out["pubrel"] = released
        if self.connection is None and self.ended_wall:
            out["expiry"], out["ended"] = self.expiry, self.ended_wall  # when it stops being kept
        return out


class MQTT:
    """The ``mqtt {}`` side of one server: sessions and retained messages of every account."""

    def __init__(self, server: ServerAPI, settings: MQTTSettings) -> None:
        self.server = server
        self.settings = settings
        self.sessions: dict[tuple[str, str], Session] = {}
        self.retained: dict[str, dict[str, Outbound]] = {}
        """Account -> topic -> the retained message."""
        self.connections: set[MQTTConnection] = set()
        self.stores: dict[str, JetStreamStore | None] = {}
        self.stopping = False
        """The server is stopping: sessions end with their connections, but stay in JetStream."""
        self._store_setups: dict[str, asyncio.Task[JetStreamStore | None]] = {}
        self._publishers: dict[str, InternalClient] = {}
        self.auth_methods: dict[str, Any] = {}
        """MQTT 5 enhanced authentication methods, by name (the ``natsd_mqtt_authenticators`` hook)."""

    # -- JetStream ---------------------------------------------------------------------------------

    async def store_for(self, account: str) -> JetStreamStore | None:
        """The account's JetStream store, made on first use; ``None`` if the account has no JetStream."""
        if account in self.stores:
            return self.stores[account]
        task = self._store_setups.get(account)
        if task is None:
            task = self._store_setups[account] = self.server.loop.create_task(self._setup(account))
        return await task

    async def _setup(self, account: str) -> JetStreamStore | None:
        """The account's store; ``None`` (kept in memory) when the account has no JetStream. Any other
        failure (a timeout, an error from JetStream) is raised and not remembered: the device is refused,
        and the next one tries again, rather than have its QoS 1 messages acknowledged without JetStream."""
        store = JetStreamStore(self, account)
        try:
            await store.setup()
        except NoJetStream as exc:
            store.close()
            if self.settings.js_domain:
                self._store_setups.pop(account, None)
                raise StoreError(f"JetStream domain {self.settings.js_domain!r} does not answer: {exc}") from None
            log.warning("MQTT: account %r keeps sessions and retained messages in memory only (lost at a "
                        "restart): %s", account, exc)
            self.stores[account] = None
            return None
        except (StoreError, ValueError) as exc:
            store.close()
            self._store_setups.pop(account, None)
            raise StoreError(f"MQTT state of account {account!r} cannot be kept in JetStream: {exc}") from None
        self.stores[account] = store
        return store

    def publisher(self, account: str) -> InternalClient:
        """A service client of ``account`` that publishes for the server rather than for a connection
        (delayed wills, whose connection is gone; Sparkplug B birth certificates)."""
        client = self._publishers.get(account)
        if client is None or client.closed:
            client = self._publishers[account] = self.server.connect_internal("mqtt-publisher", account,
                                                                              kind=Kind.SYSTEM)
        return client

    def close(self) -> None:
        for client in self._publishers.values():
            client.close()
        for store in self.stores.values():
            if store is not None:
                store.close()
        for session in list(self.sessions.values()):
            if session.keeper is not None:
                session.keeper.close()

    # -- sessions ------------------------------------------------------------------------------------

    async def session(self, account: str, client_id: str, clean: bool) -> tuple[Session, bool]:
        """``(session, present)``: the client's session (from memory, or JetStream after a restart),
        made anew when ``clean`` or absent."""
        key = (account, client_id)
        store = await self.store_for(account)
        old = self.sessions.get(key)
        if old is not None and old.expiry and old.ended_at and time.monotonic() - old.ended_at > old.expiry:
            await self.drop(old)
            old = None
        if old is None and store is not None:
            record = await store.load_session(client_id)
            if record is not None:
                old = await self.restore(account, client_id, record, store)
                ended, expiry = float(record.get("ended") or 0), float(record.get("expiry") or 0)
                if ended and time.time() - ended > expiry:  # it expired while the server was down
                    await self.drop(old)
                    old = None
        if old is not None and not clean:
            return old, True
        if old is not None:
            await self.drop(old)
        session = self.sessions[key] = Session(account, client_id)
        session.store = store
        return session, False

    async def restore(self, account: str, client_id: str, record: dict[str, Any],
                      store: JetStreamStore) -> Session:
        """A persistent session as JetStream kept it (after a restart): its subscriptions again."""
        session = self.sessions[(account, client_id)] = Session(account, client_id)
        session.store, session.persistent = store, True
        session.incoming_qos2 = {int(pid) for pid in record.get("qos2_in") or ()}
        for pid in record.get("pubrel") or ():  # PUBREL goes again when the device is back
            session.outbound[int(pid)] = Outbound("", b"", 2, released=True)
        for key, sub in (record.get("subs") or {}).items():
            state = SubscriptionState(sub["filter"], int(sub["qos"]), bool(sub.get("nl")), bool(sub.get("rap")),
                                      int(sub.get("sid") or 0), sub.get("share"), list(sub.get("subjects") or []))
            try:
                await self.subscribe(session, key, state, state.subjects, consumer=sub.get("consumer") or None)
            except StoreError as exc:
                log.warning("MQTT: session %r: subscription %r not restored: %s", client_id, key, exc)
        return session

    def save_now(self, session: Session) -> asyncio.Future[int] | None:
        """Publish a persistent session's record now; the future says when JetStream has it
        (``None``: nothing to keep)."""
        if session.store is None or not session.persistent:
            return None
        future = session.store.save_session_now(session.client_id, session.record())
        future.add_done_callback(_log_failure)
        return future

    async def save(self, session: Session) -> None:
        """Keep a persistent session's record in JetStream (subscriptions changed)."""
        if session.store is not None and session.persistent:
            try:
                await session.store.save_session(session.client_id, session.record())
            except StoreError as exc:
                log.warning("MQTT: session %r could not be saved: %s", session.client_id, exc)

    async def drop(self, session: Session) -> None:
        """End a session: its subscriptions, consumers and record go (and a delayed will, now)."""
        if session.pending_will is not None and session.publish_will is not None:
            session.pending_will.cancel()
            session.publish_will()
        consumers = [s.consumer for s in session.subscriptions.values() if s.consumer]
        if session.keeper is not None:
            session.keeper.close()
            session.keeper = None
        session.subscriptions.clear()
        if self.sessions.get((session.account, session.client_id)) is session:
            del self.sessions[(session.account, session.client_id)]
        if session.store is not None and (session.persistent or consumers) and not self.stopping:
            try:
                await session.store.delete_session(session.client_id, consumers)
            except StoreError as exc:
                log.warning("MQTT: session %r not removed from JetStream: %s", session.client_id, exc)

    # -- subscriptions -----------------------------------------------------------------------------------

    def keeper(self, session: Session) -> InternalClient:
        if session.keeper is None:
            session.keeper = self.server.connect_internal(f"mqtt:{session.client_id}", session.account,
                                                          kind=Kind.SYSTEM, echo=True)
        return session.keeper

    async def subscribe(self, session: Session, key: str, state: SubscriptionState, subjects: list[str],
                        consumer: str | None = None) -> None:
        """Subscribe the session to ``subjects`` for the filter ``key`` (replacing an older one); a QoS 1/2
        subscription of a session with JetStream gets its durable consumer (``consumer``: the one to take up)."""
        from .connection import delivered, delivered_stored

        old = session.subscriptions.get(key)
        if old is not None and old.consumer and (state.qos == 0 or subjects != old.subjects):
            await self.unsubscribe(session, key)
        elif old is not None:
            self._unsubscribe_now(session, key)
            consumer = consumer or old.consumer
        keeper = self.keeper(session)
        state.subjects = subjects

        def callback(subject: bytes, reply: bytes | None, headers: bytes | None, payload: bytes) -> None:
            delivered(session, state, keeper.sender, subject, reply, headers, payload)

        state.subs = [keeper.subscribe(subject, callback, queue=state.share) for subject in subjects]
        session.subscriptions[key] = state
        if state.qos and session.store is not None and session.persistent:
            state.consumer, state.deliver = await session.store.consumer(session.client_id, subjects, consumer)

            def stored(subject: bytes, reply: bytes | None, headers: bytes | None, payload: bytes) -> None:
                delivered_stored(session, state, subject, reply, headers, payload)

            state.deliver_sub = keeper.subscribe(state.deliver, stored)
            if session.connection is None:
                self.pause(session)

    async def make_durable(self, session: Session) -> None:
        """A clean session taken over by a connection that keeps it (MQTT 5, a session expiry): its
        QoS 1/2 subscriptions get their consumers, and the session its record."""
        for key, state in list(session.subscriptions.items()):
            if state.qos and not state.consumer and session.store is not None:
                try:
                    await self.subscribe(session, key, state, state.subjects)
                except StoreError as exc:
                    log.warning("MQTT: session %r: subscription %r kept in memory only: %s",
                                session.client_id, key, exc)
        await self.save(session)

    def _unsubscribe_now(self, session: Session, key: str) -> SubscriptionState | None:
        """Take the subscription away from the account (its consumer, if any, stays)."""
        state = session.subscriptions.pop(key, None)
        if state is None:
            return None
        if session.keeper is not None:
            for sub in state.subs:
                session.keeper.unsubscribe(sub)
            if state.deliver_sub is not None:
                session.keeper.unsubscribe(state.deliver_sub)
                state.deliver_sub = None
        return state

    async def unsubscribe(self, session: Session, key: str) -> bool:
        state = self._unsubscribe_now(session, key)
        if state is None:
            return False
        if state.consumer and session.store is not None:
            try:
                await session.store.delete_consumer(state.consumer)
            except StoreError as exc:
                log.warning("MQTT: consumer %s not deleted: %s", state.consumer, exc)
        return True

    def pause(self, session: Session) -> None:
        """The client went away: its consumers hold their messages (no interest in their deliver subjects)."""
        if session.keeper is None:
            return
        for state in session.subscriptions.values():
            if state.deliver_sub is not None:
                session.keeper.unsubscribe(state.deliver_sub)
                state.deliver_sub = None

    def resume(self, session: Session) -> None:
        """The client is back: its consumers deliver again."""
        from .connection import delivered_stored

        keeper = self.keeper(session)
        for state in session.subscriptions.values():
            if state.deliver and state.deliver_sub is None:
                def stored(subject: bytes, reply: bytes | None, headers: bytes | None, payload: bytes,
                           state: SubscriptionState = state) -> None:
                    delivered_stored(session, state, subject, reply, headers, payload)

                state.deliver_sub = keeper.subscribe(state.deliver, stored)

    def store_message(self, account: str, subject: str, payload: bytes, headers: bytes) -> None:
        """Keep a QoS 1/2 message no device awaits an acknowledgement of (a will) in ``$MQTT_msgs``,
        where the consumers of QoS 1/2 subscriptions take it from (no-op without JetStream)."""
        store = self.stores.get(account)
        if store is not None and store.keeps(MESSAGES, MESSAGE_PREFIX + subject):
            store.stored(MESSAGES, MESSAGE_PREFIX + subject, payload, headers).add_done_callback(_log_failure)

    # -- retained messages ---------------------------------------------------------------------------------

    def published(self, account: str, topic: str, subject: str, message: Outbound, retain: bool
                  ) -> asyncio.Future[None] | None:
        """A device's PUBLISH (or will) on ``topic`` went out: keep what it retains (nats-server's
        ``mqttHandlePubRetain``). ``message`` is the retained form, ``retain`` the PUBLISH's flag.
        The future says when JetStream has kept it (``None``: nothing to wait for).

        Sparkplug B (:mod:`.sparkplug`): a birth with retain false is kept as the retained message
        of ``$sparkplug/certificates/<topic>`` and, unless empty, sent on now as a NATS message on
        that topic's subject; a birth with retain true is not kept at all.
        """
        if topic.startswith(sparkplug.NAMESPACE) and sparkplug.parse_topic(topic).birth:
            if retain:
                return None  # invalid in Sparkplug: nats-server keeps it nowhere, nor does natsd
            topic = sparkplug.CERTIFICATES + topic
            subject = topic_to_subject(topic)
            if message.payload:
                self.publisher(account).publish(subject, message.payload)
            message = Outbound(topic, message.payload, message.qos, True, message.properties,
                               expires=message.expires)
        elif not retain:
            return None
        return self.retain(account, topic, subject, message)

    def retain(self, account: str, topic: str, subject: str, message: Outbound) -> asyncio.Future[None] | None:
        """Keep ``message`` as ``topic``'s retained message (an empty payload removes it), in JetStream
        too: the future says when JetStream has it (``None``: no JetStream)."""
        kept = self.retained.setdefault(account, {})
        if message.payload:
            kept[topic] = message
        else:
            kept.pop(topic, None)
        store = self.stores.get(account)
        if store is None:
            return None
        task = self.server.loop.create_task(store.retain(subject, topic, message.qos, message.payload))
        task.add_done_callback(_log_failure)
        return task


def _log_failure(future: asyncio.Future[Any]) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.warning("MQTT: JetStream refused to keep MQTT state: %s", future.exception())


__all__ = ["MESSAGE_PREFIX", "MQTT", "Outbound", "Session", "SubscriptionState"]
