"""One MQTT connection: the packets of MQTT 3.1.1 or 5 turned into a client of the core.

The connection authenticates its CONNECT through the server's
authenticators (``transport="mqtt"``) and becomes an in-process client with
that identity (``server.connect_internal``): counted, shown by monitoring,
bound by its permissions. What it publishes goes to the NATS subject its
topic maps to (:mod:`.topics`) with the ``Nmqtt-Pub: <qos>`` header
nats-server adds. Its subscriptions belong to its :class:`~.sessions.Session`
(a service client of the account that outlives the connection), so that a
persistent session keeps collecting QoS 1 and 2 messages while the device
is away.

Protocol errors answer as the specification says (a CONNACK or, in MQTT 5,
a DISCONNECT with the reason code) and close this connection only.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

from natsd.plugin.contracts import AuthRequest

from . import packets as P
from . import sparkplug
from .packets import MQTT_5, MQTTError, Parser, encode, encode_ack, encode_connack_v3, encode_properties, encode_publish
from .sessions import Outbound, Session, SubscriptionState
from .store import MESSAGE_PREFIX, MESSAGES, StoreError
from .topics import TopicError, check_topic_filter, filter_to_subjects, subject_to_topic, topic_to_subject

if TYPE_CHECKING:
    from natsd.routing.internal import InternalClient

    from .sessions import MQTT

log = logging.getLogger("natsd.mqtt")

PUB_HEADER = "Nmqtt-Pub"
PLAIN_HEADERS = [f"NATS/1.0\r\n{PUB_HEADER}:{qos}\r\n\r\n".encode() for qos in range(3)]
"""The header block of a message with nothing but its QoS (nats-server's, byte for byte)."""
PLAIN_QOS = {block: qos for qos, block in enumerate(PLAIN_HEADERS)}
EXPIRES_HEADER = "Nmqtt-Expires"
"""When an MQTT 5 message expires (Unix seconds): its message expiry carried across NATS."""
CONNECT_TIMEOUT = 2.0
"""Seconds a new connection has to send CONNECT (nats-server's default auth timeout)."""
TOPIC_ALIAS_MAXIMUM = 1024
RECEIVE_MAXIMUM = 65535
#: MQTT 3.1.1 CONNACK return code -> MQTT 5 reason code.
V5_REASON = {P.V3_BAD_VERSION: P.UNSUPPORTED_PROTOCOL_VERSION, P.V3_ID_REJECTED: P.CLIENT_IDENTIFIER_NOT_VALID,
             P.V3_UNAVAILABLE: P.SERVER_UNAVAILABLE, P.V3_BAD_CREDENTIALS: P.BAD_USER_NAME_OR_PASSWORD,
             P.V3_NOT_AUTHORIZED: P.NOT_AUTHORIZED}


def topic_matches(filter_: str, topic: str) -> bool:
    """MQTT's matching of a topic name against a filter (``$`` topics only by a literal first level)."""
    if topic.startswith("$") and filter_[:1] in ("+", "#"):
        return False
    f_levels, t_levels = filter_.split("/"), topic.split("/")
    for i, level in enumerate(f_levels):
        if level == "#":
            return True
        if i >= len(t_levels) or (level != "+" and level != t_levels[i]):
            return False
    return len(f_levels) == len(t_levels)


class MQTTConnection:
    """See the module docstring.

    An asyncio streaming protocol (a TCP or TLS transport, or the WebSocket
    plugin's carrier, calls its methods) compiled with mypyc, and so not an
    :class:`asyncio.Protocol` subclass: a native class cannot have one as its base."""

    def __init__(self, mqtt: MQTT) -> None:
        self.mqtt = mqtt
        self.server = mqtt.server
        self.transport: asyncio.Transport | None = None
        self.parser = Parser()
        self.version = 0
        self.client: InternalClient | None = None
        self.session: Session | None = None
        self.will: P.Will | None = None
        self.keep_alive = 0
        self.last_heard = time.monotonic()
        self.receive_maximum = RECEIVE_MAXIMUM
        self.max_packet = 0
        self.session_expiry = 0
        self.clean = True
        self.aliases_in: dict[int, str] = {}
        self.aliases_out: dict[str, int] = {}
        """Topic aliases this server gave the client, by topic (MQTT 5; this connection only)."""
        self.alias_max = 0
        """How many topic aliases the client takes from the server (its CONNECT's maximum)."""
        self.backlog: list[P.Packet] | None = None  # packets waiting for an earlier one's outcome
        self.acks: deque[HeldAck] | None = None
        """PUBACKs/PUBRECs/PUBCOMPs in the order of their packets, each until JetStream has stored
        what it stands for (made on first use: an empty deque is 0.7 KiB of an idle device)."""
        self._out: list[bytes] = []
        self._flushing = False
        self._exchange: tuple[Any, P.Connect, str, str, str] | None = None
        """An enhanced authentication under way: its steps, the CONNECT, the client id (assigned)."""
        self.closed = False
        self.close_reason = ""  # what a WebSocket carrier reads when this side closes
        self.remote: tuple[str, int] | None = None
        self._timer: asyncio.TimerHandle | None = None

    # -- transport ------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no asyncio.Transport subclass
        peer = transport.get_extra_info("peername")
        self.remote = (peer[0], peer[1]) if peer else None
        self.mqtt.connections.add(self)
        timeout = self.mqtt.settings.auth_timeout or CONNECT_TIMEOUT
        self._timer = self.server.loop.call_later(timeout, self._no_connect)

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        self.last_heard = time.monotonic()
        try:
            packets = self.parser.feed(data)
        except MQTTError as exc:
            self._refuse(exc)
            return
        self._process(packets)

    def _process(self, packets: list[P.Packet]) -> None:
        """Handle packets in order; one whose handling waits (JetStream, authentication) holds the rest."""
        for i, packet in enumerate(packets):
            if self.closed:
                return
            if self.backlog is not None:
                self.backlog.append(packet)
                continue
            try:
                waiting = self._handle(packet)
            except MQTTError as exc:
                self._refuse(exc)
                return
            if waiting is not None:
                self.backlog = list(packets[i + 1:])
                self.server.loop.create_task(self._after(waiting))
                return

    async def _after(self, waiting: Awaitable[None]) -> None:
        try:
            await waiting
        except MQTTError as exc:
            self._refuse(exc)
            return
        except Exception:
            log.exception("%s - MQTT packet handling failed", self.describe())
            self.close()
            return
        backlog, self.backlog = self.backlog or [], None
        if not self.closed:
            self._process(backlog)

    def connection_lost(self, exc: Exception | None) -> None:
        self._end(abnormal=True)

    def eof_received(self) -> bool | None:
        return None  # the transport closes

    def pause_writing(self) -> None:
        pass

    def resume_writing(self) -> None:
        pass

    def write(self, data: bytes) -> None:
        """Send ``data`` at the end of this loop pass, with everything else written in it (one
        system call however many packets a read produced)."""
        if self.transport is not None and not self.closed:
            self._out.append(data)
            if not self._flushing:
                self._flushing = True
                self.server.loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flushing = False
        if self._out and self.transport is not None and not self.closed:
            data = b"".join(self._out)
            self._out.clear()
            self.transport.write(data)

    def send(self, packet: P.Packet) -> None:
        self.write(encode(packet, self.version))

    def close(self, abnormal: bool = True) -> None:
        """End the connection (its will is published when ``abnormal``)."""
        if self.transport is not None:
            self._flush()  # what was written (a refusal's CONNACK) leaves first
            self.transport.close()
        self._end(abnormal)

    def _end(self, abnormal: bool) -> None:
        if self.closed:
            return
        self.closed = True
        self.mqtt.connections.discard(self)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if abnormal and self.will is not None:
            delay = min(int(self.will.properties.get("will_delay", 0)), self.session_expiry)
            if delay > 0 and self.version == MQTT_5 and self.session is not None:
                self._delay_will(delay)  # MQTT 5: unless the session is taken up again meanwhile
            else:
                self._publish_will()
        session = self.session
        if session is not None and session.connection is self:
            session.connection = None
            session.ended_at, session.ended_wall = time.monotonic(), time.time()
            session.expiry = float(self.session_expiry)
            if session.persistent:
                self.mqtt.pause(session)
                self.mqtt.save_now(session)  # with when it ended, for its expiry after a restart
            elif not self.mqtt.stopping:
                self.server.loop.create_task(self.mqtt.drop(session))
        if self.client is not None:
            self.client.close()

    def _refuse(self, exc: MQTTError) -> None:
        """A protocol error: the reason goes back (CONNACK before CONNECT was accepted, then an
        MQTT 5 DISCONNECT) and the connection closes."""
        log.error("%s - MQTT protocol error: %s", self.describe(), exc.text)
        if self.client is None:
            if exc.reason == P.UNSUPPORTED_PROTOCOL_VERSION:
                self.write(encode_connack_v3(P.V3_BAD_VERSION))
            elif self.parser.version == MQTT_5:
                self.version = MQTT_5
                self.send(P.ConnAck(exc.reason))
        elif self.version == MQTT_5:
            self.send(P.Disconnect(exc.reason, {"reason_string": exc.text}))
        self.close()

    def describe(self) -> str:
        host, port = self.remote or ("?", 0)
        cid = self.client.cid if self.client is not None else 0
        return f"{host}:{port} - mid:{cid}"

    # -- dispatch -------------------------------------------------------------------------------

    def _handle(self, packet: P.Packet) -> Awaitable[None] | None:
        """Handle one packet; an awaitable if the next ones must wait for it."""
        if isinstance(packet, P.Connect):
            return self._connect(packet)
        if isinstance(packet, P.Auth) and self.client is None:
            return self._auth(packet)
        if self.client is None:
            raise MQTTError(P.PROTOCOL_ERROR, "the first packet must be CONNECT")
        if isinstance(packet, P.Publish):
            self._publish(packet)
        elif isinstance(packet, P.Ack):
            self._ack(packet)
        elif isinstance(packet, P.Subscribe):
            return self._subscribe(packet)
        elif isinstance(packet, P.Unsubscribe):
            return self._unsubscribe(packet)
        elif isinstance(packet, P.PingReq):
            self.send(P.PingResp())
        elif isinstance(packet, P.Disconnect):
            if self.version == MQTT_5 and "session_expiry" in packet.properties:
                if not self.session_expiry and packet.properties["session_expiry"]:
                    raise MQTTError(P.PROTOCOL_ERROR, "session expiry set at DISCONNECT after 0 at CONNECT")
                self.session_expiry = packet.properties["session_expiry"]
            if packet.reason != P.DISCONNECT_WITH_WILL:
                self.will = None
            self.close(abnormal=True)
        elif isinstance(packet, P.Auth):
            raise MQTTError(P.PROTOCOL_ERROR, "AUTH after the authentication")
        else:
            raise MQTTError(P.PROTOCOL_ERROR, f"unexpected {type(packet).__name__}")
        return None

    # -- CONNECT ----------------------------------------------------------------------------------

    def _connect(self, packet: P.Connect) -> Awaitable[None] | None:
        self.version = packet.version
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        v5 = self.version == MQTT_5
        method = packet.properties.get("auth_method")
        if method and method not in self.mqtt.auth_methods:
            self._connack_refused(P.V3_NOT_AUTHORIZED, P.BAD_AUTHENTICATION_METHOD)
            return None
        client_id = packet.client_id
        assigned = ""
        if not client_id:
            if not packet.clean_start and not v5:
                self._connack_refused(P.V3_ID_REJECTED)
                return None
            from natsd.routing.events import event_id

            client_id = assigned = event_id()
        self.clean = packet.clean_start
        self.keep_alive = packet.keep_alive
        self.will = packet.will
        if v5:
            props = packet.properties
            self.session_expiry = int(props.get("session_expiry", 0))
            self.receive_maximum = int(props.get("receive_maximum", RECEIVE_MAXIMUM)) or RECEIVE_MAXIMUM
            self.max_packet = int(props.get("maximum_packet_size", 0))
            self.alias_max = int(props.get("topic_alias_maximum", 0))
        elif not packet.clean_start:
            self.session_expiry = 0xFFFFFFFF  # a 3.1.1 persistent session never expires
        if method:
            return self._begin_exchange(packet, client_id, assigned, method)
        return self._authenticate(packet, client_id, assigned)

    # MQTT 5 enhanced authentication: CONNECT, then AUTH packets both ways (hookspecs.EnhancedAuthenticator)

    def _begin_exchange(self, packet: P.Connect, client_id: str, assigned: str, method: str) -> Awaitable[None] | None:
        connect = {"client_id": client_id, "username": packet.username, "password": packet.password}
        steps = self.mqtt.auth_methods[method].exchange(connect, packet.properties.get("auth_data"))
        self._exchange = (steps, packet, client_id, assigned, method)
        return self._step(None)

    def _auth(self, packet: P.Auth) -> Awaitable[None] | None:
        if self._exchange is None:
            raise MQTTError(P.PROTOCOL_ERROR, "AUTH without an authentication exchange under way")
        if packet.reason != 0x18 or packet.properties.get("auth_method") != self._exchange[4]:
            raise MQTTError(P.PROTOCOL_ERROR, "AUTH with another method or reason")
        return self._step(packet.properties.get("auth_data") or b"")

    def _step(self, answer: bytes | None) -> Awaitable[None] | None:
        assert self._exchange is not None
        steps, packet, client_id, assigned, method = self._exchange
        try:
            challenge = next(steps) if answer is None else steps.send(answer)
        except StopIteration as done:
            self._exchange = None
            result = done.value
            if result is None or not result.ok:
                log.error("%s - MQTT authentication error (method %s)", self.describe(), method)
                self._connack_refused(P.V3_NOT_AUTHORIZED)
                return None
            return self._accept(packet, client_id, assigned, {"user": result.user} if result.user else {}, result,
                                {"auth_method": method})
        except Exception:
            log.exception("%s - the %s authenticator failed", self.describe(), method)
            self._exchange = None
            self._connack_refused(P.V3_NOT_AUTHORIZED)
            return None
        self.send(P.Auth(0x18, {"auth_method": method, "auth_data": challenge}))  # continue authentication
        return None

    async def _authenticate(self, packet: P.Connect, client_id: str, assigned: str) -> None:
        settings = self.mqtt.settings
        options: dict[str, Any] = {}
        if packet.username is not None:
            options["user"] = packet.username
        if packet.password is not None:
            password = packet.password.decode("utf-8", "replace")
            options["pass"] = password
            if password.startswith("eyJ") and password.count(".") == 2:
                options["jwt"] = password  # nats-server takes a user JWT in the password field
            options["auth_token"] = password
        if settings.user is not None or settings.token is not None:
            ok = (packet.password is not None and
                  (settings.token is not None and options.get("pass") == settings.token
                   or settings.user is not None and packet.username == settings.user
                   and options.get("pass") == (settings.password or "")))
            from natsd.plugin.contracts import AuthResult

            result = AuthResult(ok=ok, user=packet.username, reason="" if ok else "mqtt credentials")
        else:
            request = AuthRequest(options=options, client_id=self.server.next_cid(), remote=self.remote,
                                  transport="mqtt", no_auth_user=settings.no_auth_user)
            result = await self.server.authenticate(request)
        if self.closed:
            return
        if not result.ok:
            log.error("%s - MQTT authentication error%s", self.describe(),
                      f" - User {packet.username!r}" if packet.username else "")
            self._connack_refused(P.V3_NOT_AUTHORIZED)
            return
        await self._accept(packet, client_id, assigned, options, result)

    async def _accept(self, packet: P.Connect, client_id: str, assigned: str, options: dict[str, Any],
                      result: Any, extra: dict[str, Any] | None = None) -> None:
        """The device is who it says: its session, CONNACK (``extra``: more CONNACK properties)."""
        try:
            client = self.server.connect_internal(client_id, identity=result, transport="mqtt", remote=self.remote)
        except ConnectionRefusedError:
            self._connack_refused(P.V3_UNAVAILABLE)
            return
        # what monitoring and events show of the CONNECT (never the password)
        client.connect_options = {k: v for k, v in options.items() if k in ("user", "jwt")}
        self.client = client
        account = client.account.name
        try:
            session, present = await self.mqtt.session(account, client_id, self.clean)
        except StoreError as exc:
            log.error("%s - MQTT client %r refused: %s", self.describe(), client_id, exc)
            self._connack_refused(P.V3_UNAVAILABLE)
            return
        if self.closed:
            return
        durable = session.persistent
        session.persistent = bool(self.session_expiry)
        old = session.connection
        session.connection = self  # before the older one closes: the session is not ended with it
        if old is not None and old is not self:
            log.warning("%s - MQTT client %r connected again: the older connection is closed",
                        self.describe(), client_id)
            if old.version == MQTT_5:
                old.send(P.Disconnect(P.SESSION_TAKEN_OVER))
            old.close()
        self.session = session
        if session.pending_will is not None:  # taken up again in time: the delayed will is void
            session.pending_will.cancel()
            session.pending_will = session.publish_will = None
        props: dict[str, Any] = {}
        if self.version == MQTT_5:
            if assigned:
                props["assigned_client_id"] = assigned
            props["topic_alias_maximum"] = TOPIC_ALIAS_MAXIMUM
            props["receive_maximum"] = RECEIVE_MAXIMUM
            props["retain_available"] = 1
            props["wildcard_subscription_available"] = 1
            props["shared_subscription_available"] = 1
            props["subscription_id_available"] = 1
            props.update(extra or {})
        self.send(P.ConnAck(P.SUCCESS, present and not self.clean, props) if self.version == MQTT_5
                  else P.ConnAck(P.SUCCESS, present and not self.clean))
        if self.keep_alive:
            self._timer = self.server.loop.call_later(self._alive_limit(), self._check_alive)
        if present:
            self.mqtt.resume(session)
            self._resend()
            if session.persistent and not durable:  # a clean session taken over, to be kept now
                await self.mqtt.make_durable(session)
        elif session.persistent:
            await self.mqtt.save(session)

    def _connack_refused(self, code: int, reason: int | None = None) -> None:
        if self.version == MQTT_5:
            self.send(P.ConnAck(reason if reason is not None else V5_REASON[code]))
        else:
            self.write(encode_connack_v3(code))
        self.will = None
        self.close(abnormal=False)

    def _no_connect(self) -> None:
        self._timer = None
        if self.client is None and not self.closed:
            log.error("%s - MQTT client did not send CONNECT in time", self.describe())
            self.close(abnormal=False)

    def _alive_limit(self) -> int:
        """One and a half keep-alives, in whole seconds as nats-server counts them (1 gives 1)."""
        return int(self.keep_alive * 1.5)

    def _check_alive(self) -> None:
        self._timer = None
        if self.closed:
            return
        quiet = time.monotonic() - self.last_heard
        limit = self._alive_limit()
        if quiet >= limit:
            log.info("%s - MQTT keep-alive expired", self.describe())
            if self.version == MQTT_5:
                self.send(P.Disconnect(P.KEEP_ALIVE_TIMEOUT))
            self.close()
            return
        self._timer = self.server.loop.call_later(limit - quiet, self._check_alive)

    # -- messages in ------------------------------------------------------------------------------

    def _headers(self, qos: int, props: dict[str, Any]) -> bytes:
        if not props:
            return PLAIN_HEADERS[qos]
        lines = [f"NATS/1.0\r\n{PUB_HEADER}:{qos}\r\n"]
        for key, value in props.get("user_properties", ()):
            if key and ":" not in key and "\r" not in key + value and "\n" not in key + value:
                lines.append(f"{key}: {value}\r\n")
        if "content_type" in props:
            lines.append(f"Content-Type: {props['content_type']}\r\n")
        if props.get("message_expiry"):
            lines.append(f"{EXPIRES_HEADER}:{time.time() + props['message_expiry']:.3f}\r\n")
        lines.append("\r\n")
        return "".join(lines).encode()

    def _publish(self, packet: P.Publish) -> None:
        topic = packet.topic
        alias = packet.properties.get("topic_alias")
        if alias is not None:
            if not 0 < alias <= TOPIC_ALIAS_MAXIMUM:
                raise MQTTError(P.TOPIC_ALIAS_INVALID, f"topic alias {alias}")
            if topic:
                self.aliases_in[alias] = topic
            elif alias in self.aliases_in:
                topic = self.aliases_in[alias]
            else:
                raise MQTTError(P.PROTOCOL_ERROR, f"unknown topic alias {alias}")
        try:
            subject = topic_to_subject(topic)
        except TopicError as exc:
            raise MQTTError(P.TOPIC_NAME_INVALID, str(exc)) from None
        if packet.qos == 2 and self.mqtt.settings.reject_qos2_publish:
            raise MQTTError(P.QOS_NOT_SUPPORTED, "QoS 2 publishes are refused (reject_qos2_publish)")
        assert self.client is not None and self.session is not None
        reason = P.SUCCESS
        first = not (packet.qos == 2 and packet.packet_id in self.session.incoming_qos2)
        if first:
            reply = None
            response = packet.properties.get("response_topic")
            if response:
                try:
                    reply = topic_to_subject(response)
                except TopicError as exc:
                    raise MQTTError(P.TOPIC_NAME_INVALID, str(exc)) from None
            try:
                delivered = self.client.publish(subject, packet.payload, reply=reply,
                                                headers=self._headers(packet.qos, packet.properties))
                if not delivered:
                    reason = P.NO_MATCHING_SUBSCRIBERS
            except PermissionError as exc:
                log.error("%s - %s", self.describe(), exc)
                reason = P.NOT_AUTHORIZED
        retained = None
        if first and (packet.retain or topic.startswith(sparkplug.NAMESPACE)) and reason != P.NOT_AUTHORIZED:
            kept = packet.properties
            if alias is not None:  # the alias is this connection's, not the message's
                kept = {key: value for key, value in kept.items() if key != "topic_alias"}
            retained = self.mqtt.published(self.client.account.name, topic, subject,
                                           Outbound(topic, packet.payload, packet.qos, True, kept), packet.retain)
        if not packet.qos:
            return
        store = self.session.store
        stored = ""
        storing = False
        if first and store is not None and reason != P.NOT_AUTHORIZED:
            stored = MESSAGE_PREFIX + subject
            storing = store.keeps(MESSAGES, stored)
        if storing:
            reason = P.SUCCESS  # the device hears "received" only once JetStream has the message
        saved = None
        if packet.qos == 2 and first:
            self.session.incoming_qos2.add(packet.packet_id)
            saved = self.mqtt.save_now(self.session)  # a repeat after a restart is known as one
        kind = P.PUBACK if packet.qos == 1 else P.PUBREC
        held = self._ack_after(kind, packet.packet_id, reason if self.version == MQTT_5 else P.SUCCESS,
                               storing + (saved is not None) + (retained is not None))
        if held is not None:
            if storing:
                assert store is not None
                store.store(MESSAGES, stored, packet.payload, self._headers(packet.qos, packet.properties),
                            held.stored)
            if saved is not None:
                saved.add_done_callback(held.saved)
            if retained is not None:  # and the retained message is kept before the device hears so
                retained.add_done_callback(held.saved)

    def _ack_after(self, kind: int, pid: int, reason: int, stores: int) -> HeldAck | None:
        """Send an acknowledgement once its ``stores`` are done, after those queued before it
        (``None``: sent now)."""
        if not stores and not self.acks:
            self.write(encode_ack(kind, pid, reason, self.version == MQTT_5))
            return None
        held = HeldAck(self, kind, pid, reason, stores)
        if self.acks is None:
            self.acks = deque()
        self.acks.append(held)
        if not stores:
            self._acks_ready()
        return held

    def _acks_ready(self) -> None:
        """Acknowledge packets in their order, each once JetStream stored what it stands for."""
        acks = self.acks
        while acks and not self.closed:
            held = acks[0]
            if held.waiting:
                return
            acks.popleft()
            if held.error is None:
                self.write(encode_ack(held.kind, held.pid, held.reason, self.version == MQTT_5))
            else:
                log.error("%s - QoS %d message %d not stored: %s", self.describe(),
                          1 if held.kind == P.PUBACK else 2, held.pid, held.error)
                if self.version == MQTT_5:
                    self.send(P.Ack(held.kind, held.pid, P.IMPLEMENTATION_SPECIFIC_ERROR))
                # MQTT 3.1.1 cannot say "not stored": no PUBACK, and the device sends it again

    def _ack(self, packet: P.Ack) -> None:
        session = self.session
        assert session is not None
        if packet.kind == P.PUBREL:
            known = packet.packet_id in session.incoming_qos2
            session.incoming_qos2.discard(packet.packet_id)
            saved = self.mqtt.save_now(session) if known else None
            held = self._ack_after(P.PUBCOMP, packet.packet_id,
                                   P.SUCCESS if known or self.version != MQTT_5 else P.PACKET_IDENTIFIER_NOT_FOUND,
                                   saved is not None)
            if held is not None and saved is not None:
                saved.add_done_callback(held.saved)
            return
        message = session.outbound.get(packet.packet_id)
        if message is None:
            return
        if packet.kind == P.PUBREC and message.qos == 2:
            if message.released:
                self.send(P.Ack(P.PUBREL, packet.packet_id))  # a repeated PUBREC
                return
            message.released = True
            saved = self.mqtt.save_now(session)
            if saved is None:
                self.send(P.Ack(P.PUBREL, packet.packet_id))
                return

            def released(_: Any, pid: int = packet.packet_id, message: Outbound = message) -> None:
                # the PUBREL is owed in the session's record: the stored message may go now
                if message.ack is not None:
                    session.acknowledge(message.ack)
                    message.ack = None
                if not self.closed:
                    self.send(P.Ack(P.PUBREL, pid))

            saved.add_done_callback(released)
            return
        del session.outbound[packet.packet_id]
        if message.ack is not None:
            session.acknowledge(message.ack)  # the consumer may let it go now
        if message.released:
            self.mqtt.save_now(session)  # no PUBREL owed any more
        self._drain()

    # -- subscriptions ------------------------------------------------------------------------------

    async def _subscribe(self, packet: P.Subscribe) -> None:
        session, client = self.session, self.client
        assert session is not None and client is not None
        sub_id = 0
        if self.version == MQTT_5:
            ids = packet.properties.get("subscription_ids") or []
            if ids and ids[0] == 0:
                raise MQTTError(P.PROTOCOL_ERROR, "subscription identifier 0")
            sub_id = ids[0] if ids else 0
        reasons = []
        fresh: list[tuple[SubscriptionState, bool]] = []
        for request in packet.requests:
            filter_, share = request.filter, None
            if filter_.startswith("$share/"):
                _, share, filter_ = (filter_.split("/", 2) + ["", ""])[:3]
                if not share or "+" in share or "#" in share or not filter_:
                    reasons.append(P.TOPIC_FILTER_INVALID if self.version == MQTT_5 else 0x80)
                    continue
            try:
                check_topic_filter(filter_)
                subjects = filter_to_subjects(filter_)
            except TopicError:
                reasons.append(P.TOPIC_FILTER_INVALID if self.version == MQTT_5 else 0x80)
                continue
            if client.perms is not None:
                if not client.perms.can_subscribe(subjects[0].encode(), None):
                    log.error("%s - not allowed to subscribe to %r", self.describe(), request.filter)
                    reasons.append(P.NOT_AUTHORIZED if self.version == MQTT_5 else 0x80)
                    continue
                # the parent level a '#' filter also matches, where the permissions allow it
                subjects = [s for s in subjects if client.perms.can_subscribe(s.encode(), None)]
            qos = min(request.qos, 1 if self.mqtt.settings.downgrade_qos2_subscribe else 2)
            existed = request.filter in session.subscriptions
            state = SubscriptionState(filter_, qos, request.no_local, request.retain_as_published, sub_id, share)
            try:
                await self.mqtt.subscribe(session, request.filter, state, subjects)
            except StoreError as exc:
                log.error("%s - subscription to %r refused: %s", self.describe(), request.filter, exc)
                reasons.append(P.IMPLEMENTATION_SPECIFIC_ERROR if self.version == MQTT_5 else 0x80)
                continue
            reasons.append(qos)
            if share is None and (request.retain_handling == 0 or (request.retain_handling == 1 and not existed)):
                fresh.append((state, existed))
        await self.mqtt.save(session)
        if self.closed:
            return
        self.send(P.SubAck(packet.packet_id, reasons))
        for state, _ in fresh:
            self._send_retained(state)

    def _send_retained(self, state: SubscriptionState) -> None:
        assert self.client is not None
        for topic, message in list(self.mqtt.retained.get(self.client.account.name, {}).items()):
            if topic_matches(state.filter, topic):
                self.offer(Outbound(topic, message.payload, min(message.qos, state.qos), True,
                                    dict(message.properties)), state)

    async def _unsubscribe(self, packet: P.Unsubscribe) -> None:
        session = self.session
        assert session is not None
        reasons = [P.SUCCESS if await self.mqtt.unsubscribe(session, f) else P.NO_SUBSCRIPTION_EXISTED
                   for f in packet.filters]
        await self.mqtt.save(session)
        self.send(P.UnsubAck(packet.packet_id, reasons if self.version == MQTT_5 else []))

    # -- messages out -------------------------------------------------------------------------------

    def offer(self, message: Outbound, state: SubscriptionState) -> None:
        """Send ``message`` now (QoS 0, or QoS 1/2 within the client's receive maximum) or keep it."""
        if state.subscription_id and self.version == MQTT_5:
            message.properties = {**message.properties, "subscription_ids": [state.subscription_id]}
        if message.qos == 0:
            self._write_publish(message, 0)
            return
        session = self.session
        assert session is not None
        if len(session.outbound) >= min(self.receive_maximum, self.mqtt.settings.max_ack_pending):
            session.keep(message)
            return
        pid = session.packet_id()
        session.outbound[pid] = message
        message.sent = True
        self._write_publish(message, pid)

    def _write_publish(self, message: Outbound, pid: int, dup: bool = False) -> None:
        props = None
        payload, retain = message.payload, message.retain
        if message.topic.startswith(sparkplug.PREFIXES):  # a death's timestamp is when it is sent
            payload, retain = sparkplug.on_delivery(message.topic, payload, message.qos, retain,
                                                    time.time_ns() // 1_000_000)
        topic = message.topic.encode()
        if self.version == MQTT_5:
            properties = message.properties
            if self.alias_max:
                fresh = message.topic not in self.aliases_out
                properties, topic = self._alias(message.topic, topic, properties)
            props = encode_properties(properties) if properties else b"\x00"
        data = encode_publish(topic, payload, message.qos, retain, dup, pid, props)
        if self.max_packet and len(data) > self.max_packet:
            if self.alias_max and fresh:  # the client never learns an alias it was not sent
                self.aliases_out.pop(message.topic, None)
            return  # MQTT 5: what the client cannot take is dropped
        self.write(data)

    def _alias(self, name: str, topic: bytes, properties: dict[str, Any]) -> tuple[dict[str, Any], bytes]:
        """Topic aliases from server to client (MQTT 5): the first topics, up to the client's
        maximum, get an alias as they are first sent; later messages on them carry the alias and
        an empty topic. Aliases last as long as this connection."""
        alias = self.aliases_out.get(name)
        if alias is not None:
            return {**properties, "topic_alias": alias}, b""
        if len(self.aliases_out) < self.alias_max and len(topic) > 2:
            alias = self.aliases_out[name] = len(self.aliases_out) + 1
            return {**properties, "topic_alias": alias}, topic
        return properties, topic

    def _drain(self) -> None:
        session = self.session
        if session is None:
            return
        queued = session.queued
        while queued and len(session.outbound) < min(self.receive_maximum, self.mqtt.settings.max_ack_pending):
            message = queued.popleft()
            if message.expires and _expired(message.properties, message.expires):
                continue
            pid = session.packet_id()
            session.outbound[pid] = message
            message.sent = True
            self._write_publish(message, pid)

    def _resend(self) -> None:
        """A session taken up again: what was sent and not acknowledged goes again (DUP)."""
        session = self.session
        assert session is not None
        for pid, message in session.outbound.items():
            if message.released:
                self.send(P.Ack(P.PUBREL, pid))
            else:
                self._write_publish(message, pid, dup=True)
        self._drain()

    def _publish_will(self) -> None:
        will, self.will = self.will, None
        if will is None or self.client is None or self.client.closed:
            return
        try:
            subject = topic_to_subject(will.topic)
            headers = self._headers(will.qos, will.properties)
            self.client.publish(subject, will.payload, headers=headers)
        except (TopicError, PermissionError) as exc:
            log.warning("%s - the will on %r could not be published: %s", self.describe(), will.topic, exc)
            return
        if will.qos:
            self.mqtt.store_message(self.client.account.name, subject, will.payload, headers)
        self.mqtt.published(self.client.account.name, will.topic, subject,
                            Outbound(will.topic, will.payload, will.qos, True, dict(will.properties)), will.retain)

    def _delay_will(self, delay: int) -> None:
        """Publish the will ``delay`` seconds from now, as this client (its permissions checked
        now), unless a connection takes the session up before (:meth:`MQTT.take_up` cancels it)."""
        will, self.will = self.will, None
        session, client = self.session, self.client
        assert will is not None and session is not None and client is not None
        try:
            subject = topic_to_subject(will.topic)
        except TopicError:
            return
        if client.perms is not None and not client.perms.can_publish(subject.encode()):
            return
        headers = self._headers(will.qos, will.properties)
        account = client.account.name

        def publish() -> None:
            session.pending_will = session.publish_will = None
            self.mqtt.publisher(account).publish(subject, will.payload, headers=headers)
            if will.qos:
                self.mqtt.store_message(account, subject, will.payload, headers)
            self.mqtt.published(account, will.topic, subject,
                                Outbound(will.topic, will.payload, will.qos, True, dict(will.properties)), will.retain)

        session.publish_will = publish
        session.pending_will = self.server.loop.call_later(delay, publish)


def read_headers(headers: bytes | None) -> tuple[int, dict[str, Any], float]:
    """``(QoS, MQTT 5 properties, expiry)`` of a NATS message for an MQTT subscriber: the QoS its
    MQTT publisher gave it (``Nmqtt-Pub``, 0 for NATS publishers), its other headers as user
    properties, and when it expires (``Nmqtt-Expires``, Unix seconds; 0: never)."""
    plain = PLAIN_QOS.get(headers or b"")
    if plain is not None:  # what MQTT 3.1.1 devices send: nothing but their QoS
        return plain, {}, 0.0
    qos, props, expires = 0, dict[str, Any](), 0.0
    for line in (headers or b"").split(b"\r\n")[1:]:
        key, sep, value = line.partition(b":")
        if not sep:
            continue
        name, text = key.decode("utf-8", "replace"), value.strip().decode("utf-8", "replace")
        if name == PUB_HEADER:
            qos = int(text[:1]) if text[:1].isdigit() else 0
        elif name == EXPIRES_HEADER:
            try:
                expires = float(text)
            except ValueError:
                pass
        elif name.lower() == "content-type":
            props["content_type"] = text
        elif not name.startswith("Nmqtt-"):
            props.setdefault("user_properties", []).append((name, text))
    return qos, props, expires


def _expired(props: dict[str, Any], expires: float) -> bool:
    """Whether a message with an MQTT 5 message expiry has expired; if not, its remaining seconds
    become its ``message_expiry`` (the specification: what is left of it when it is sent on)."""
    if not expires:
        return False
    left = expires - time.time()
    if left <= 0:
        return True
    props["message_expiry"] = max(1, int(left + 0.999))
    return False


def delivered(session: Session, state: SubscriptionState, sender: Any, subject: bytes, reply: bytes | None,
              headers: bytes | None, payload: bytes) -> None:
    """A message for one of ``session``'s subscriptions (the session's service client received it)."""
    conn = session.connection
    if state.no_local and conn is not None and sender is conn.client:
        return
    if subject[:1] == b"$" and state.filter[:1] in ("+", "#"):
        return  # $ topics reach only filters that name their first level [MQTT-4.7.2-1]
    qos, props, expires = read_headers(headers)
    if qos and state.consumer:
        return  # a device's QoS 1/2 message: this subscription's consumer delivers it
    if _expired(props, expires):
        return
    topic = subject_to_topic(subject.decode())
    if reply:
        props["response_topic"] = subject_to_topic(reply.decode())
    if conn is None or conn.version != MQTT_5:
        props = {}
    message = Outbound(topic, payload, min(qos, state.qos), False, props, expires=expires)
    if conn is not None and not conn.closed and conn.client is not None:
        conn.offer(message, state)
    elif message.qos:
        session.keep(message)  # for when the client comes back


def delivered_stored(session: Session, state: SubscriptionState, subject: bytes, reply: bytes | None,
                     headers: bytes | None, payload: bytes) -> None:
    """A QoS 1/2 message from the subscription's JetStream consumer (``$MQTT.msgs.<subject>``)."""
    conn = session.connection
    if conn is None or conn.closed or conn.client is None or not reply:
        return  # not acknowledged: the consumer keeps it
    if not subject.startswith(MESSAGE_PREFIX.encode()):
        return
    if subject[len(MESSAGE_PREFIX):len(MESSAGE_PREFIX) + 1] == b"$" and state.filter[:1] in ("+", "#"):
        session.acknowledge(reply)  # not for this filter [MQTT-4.7.2-1]: it goes
        return
    qos, props, expires = read_headers(headers)
    if _expired(props, expires):
        session.acknowledge(reply)  # expired while stored: it goes
        return
    if conn.version != MQTT_5:
        props = {}
    topic = subject_to_topic(subject[len(MESSAGE_PREFIX):].decode())
    message = Outbound(topic, payload, max(1, min(qos, state.qos)), False, props, ack=reply, expires=expires)
    conn.offer(message, state)


class HeldAck:
    """An acknowledgement waiting for ``waiting`` stores (the message, a QoS 2 session record)."""

    __slots__ = ("conn", "kind", "pid", "reason", "waiting", "error")

    def __init__(self, conn: MQTTConnection, kind: int, pid: int, reason: int, waiting: int) -> None:
        self.conn, self.kind, self.pid, self.reason, self.waiting = conn, kind, pid, reason, waiting
        self.error: str | None = None

    def stored(self, seq: int, error: str | None) -> None:
        """One store is done (a :meth:`JetStreamStore.store` callback)."""
        if error is not None and self.error is None:
            self.error = error
        self.waiting -= 1
        if not self.waiting:
            self.conn._acks_ready()

    def saved(self, future: asyncio.Future[Any]) -> None:
        """One store is done (a future's callback)."""
        error = "cancelled" if future.cancelled() else future.exception()
        self.stored(0, None if error is None else str(error))
