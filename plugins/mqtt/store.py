"""MQTT state in JetStream, as nats-server keeps it: sessions, retained messages, QoS 1/2 messages.

Per account, through the JetStream API (the public one, over an in-process
client, so that any JetStream natsd talks to works, ``js_domain`` included):

- ``$MQTT_sess`` (subjects ``$MQTT.sess.>``, one message per subject): each
  persistent session's record (its subscriptions and the durable consumers
  behind its QoS 1/2 ones), under ``$MQTT.sess.<hash of the client id>``;
- ``$MQTT_rmsgs`` (``$MQTT.rmsgs.>``, one per subject): retained messages,
  under ``$MQTT.rmsgs.<subject>``, the topic in an ``Nmqtt-RTopic`` header;
- ``$MQTT_msgs`` (``$MQTT.msgs.>``, interest retention: kept while a QoS 1/2
  subscription has not acknowledged it): what devices publish at QoS 1 and 2,
  under ``$MQTT.msgs.<subject>``. Each QoS 1/2 subscription of a persistent
  session is a durable push consumer of it (explicit acks, ``ack_wait``,
  ``max_ack_pending``) delivering to ``$MQTT.sub.<id>``; the device's PUBACK
  (PUBCOMP) acks it. A device's PUBACK (or PUBREC) is sent only once JetStream
  stored the message, when some consumer takes its subject.

So a server restart loses no session, no retained message and no QoS 1/2
message a device was told was received and a persistent session is to get.
A clean session (MQTT 5: one that expires with its connection) ends with its
connection, and so at a restart, with whatever it had not received yet, as
the specification has it: its QoS 1/2 messages go to it in memory, as its QoS
0 ones do, and are not written to ``$MQTT_msgs``.

When the streams are kept by this server's own JetStream, the two steps every
QoS 1/2 message takes, storing it and acknowledging its delivery, are made
in-process (:class:`natsd.plugin.contracts.LocalStreams`): the same checks and
the same durability, without routing an API request, its JSON answer and an
ack message for each. Anything else goes through the API.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from natsd.routing.connection import Kind
from natsd.routing.events import event_id

if TYPE_CHECKING:
    from natsd.plugin.contracts import LocalStreams, ServerAPI
    from natsd.routing.internal import InternalClient

    from .sessions import MQTT

log = logging.getLogger("natsd.mqtt")

SESSIONS, RETAINED, MESSAGES = "$MQTT_sess", "$MQTT_rmsgs", "$MQTT_msgs"
SESSION_PREFIX, RETAINED_PREFIX, MESSAGE_PREFIX = "$MQTT.sess.", "$MQTT.rmsgs.", "$MQTT.msgs."
DELIVER_PREFIX = "$MQTT.sub."
REPLY_PREFIX = "$MQTT.JSA."
STREAM_IN_USE = 10058


class StoreError(Exception):
    """JetStream refused or did not answer."""


class NoJetStream(StoreError):
    """Nothing answers the account's JetStream API: the account has no JetStream."""


def client_hash(client_id: str) -> str:
    """The token a client id becomes in a subject (any client id is a valid one this way)."""
    return hashlib.sha256(client_id.encode()).hexdigest()[:16]


class JetStreamStore:
    """One account's MQTT state in JetStream (see the module docstring)."""

    def __init__(self, mqtt: MQTT, account: str) -> None:
        self.mqtt = mqtt
        self.account = account
        settings = mqtt.settings
        self.api = f"$JS.{settings.js_domain}.API" if settings.js_domain else "$JS.API"
        self.timeout = settings.js_api_timeout
        self.client: InternalClient = mqtt.server.connect_internal("mqtt-store", account, kind=Kind.SYSTEM)
        # nats-server's reply prefix: a $ subject, which no '#' or '+' filter of a device matches
        self._inbox = f"{REPLY_PREFIX}{event_id()}."
        self._waiting: dict[str, asyncio.Future[tuple[bytes | None, bytes]]] = {}
        self._deadlines: deque[tuple[float, str]] = deque()
        """When each waiting request times out, in the order they were made (one timer sweeps them)."""
        self._sweeping = False
        self._next = 0
        self.client.subscribe(self._inbox + "*", self._answered)
        self.jetstream: LocalStreams | None = None
        """This server's JetStream, when it is the one the account's API requests reach (set up by
        :meth:`setup`): messages are then stored and acknowledged in-process."""

    def close(self) -> None:
        self.client.close()
        for future in self._waiting.values():
            if not future.done():
                future.cancel()

    # -- requests ---------------------------------------------------------------------------------

    def _answered(self, subject: bytes, reply: bytes | None, headers: bytes | None, payload: bytes) -> None:
        future = self._waiting.pop(subject.decode(), None)
        if future is not None and not future.done():
            future.set_result((headers, payload))

    def request(self, subject: str, payload: bytes = b"", headers: bytes | None = None
                ) -> asyncio.Future[tuple[bytes | None, bytes]]:
        """Publish with a reply subject; the future gets the answer's headers and payload."""
        self._next += 1
        inbox = f"{self._inbox}{self._next}"
        loop = self.mqtt.server.loop
        future: asyncio.Future[tuple[bytes | None, bytes]] = loop.create_future()
        self._waiting[inbox] = future
        if not self.client.publish(subject, payload, reply=inbox, headers=headers):
            # nobody listens (no JetStream here): answer as a client hears it, no responders
            self._waiting.pop(inbox, None)
            future.set_result((b"NATS/1.0 503\r\n\r\n", b""))
            return future
        self._deadlines.append((loop.time() + self.timeout, inbox))
        if not self._sweeping:
            self._sweeping = True
            loop.call_later(1.0, self._sweep)
        return future

    def _sweep(self) -> None:
        """Time out the requests JetStream has not answered within ``js_api_timeout``."""
        loop = self.mqtt.server.loop
        now = loop.time()
        while self._deadlines and self._deadlines[0][0] <= now:
            _, inbox = self._deadlines.popleft()
            future = self._waiting.pop(inbox, None)
            if future is not None and not future.done():
                future.set_exception(StoreError(f"JetStream did not answer in {self.timeout}s"))
        while self._deadlines and self._deadlines[0][1] not in self._waiting:
            self._deadlines.popleft()  # answered
        self._sweeping = bool(self._deadlines)
        if self._sweeping:
            loop.call_later(1.0, self._sweep)

    async def call(self, api: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        """A JetStream API request (``api`` after the prefix); raises :class:`StoreError`."""
        payload = json.dumps(body).encode() if body is not None else b""
        future = self.request(f"{self.api}.{api}", payload)
        headers, answer = await future  # StoreError once js_api_timeout passed
        if headers and headers.startswith(b"NATS/1.0 503"):
            raise NoJetStream("JetStream is not enabled for this account (no responders)")
        response: dict[str, Any] = json.loads(answer)
        return response

    def stored(self, stream: str, subject: str, payload: bytes, headers: bytes | None = None
               ) -> asyncio.Future[int]:
        """Publish into ``stream`` now; the future gets JetStream's acknowledgement (the sequence),
        or :class:`StoreError`."""
        result: asyncio.Future[int] = self.mqtt.server.loop.create_future()

        def done(seq: int, error: str | None) -> None:
            if result.done():
                return
            if error is None:
                result.set_result(seq)
            else:
                result.set_exception(StoreError(error))

        self.store(stream, subject, payload, headers, done)
        return result

    def store(self, stream: str, subject: str, payload: bytes, headers: bytes | None,
              done: Callable[[int, str | None], None]) -> None:
        """Publish into ``stream`` now; ``done(seq, None)`` once JetStream has it, ``done(0, error)``
        if not. A device's QoS 1 publish comes here: no future, no task, no loop callback per
        message (a local stream calls ``done`` as its commit completes)."""
        local = self.jetstream.local_stream(self.account, stream) if self.jetstream is not None else None
        if local is None:
            self.request(subject, payload, headers).add_done_callback(
                lambda answer: _acked(subject, answer, done))
        else:
            local.store_local(subject, payload, headers, done)

    def keeps(self, stream: str, subject: str) -> bool:
        """Whether a message published into ``stream`` on ``subject`` would be kept there: in
        ``$MQTT_msgs``, only while some consumer (a persistent session's QoS 1/2 subscription)
        takes ``subject``. A stream this server does not keep is always asked."""
        local = self.jetstream.local_stream(self.account, stream) if self.jetstream is not None else None
        return local is None or local.wants(subject)

    def ack(self, reply: bytes) -> bool:
        """Acknowledge a consumer's delivery (its ack subject ``reply``) in-process; ``False``: the
        consumer is not on this server, and the ack is to be published."""
        return self.jetstream is not None and self.jetstream.ack_local(self.account, reply)

    # -- set-up -----------------------------------------------------------------------------------------

    async def setup(self) -> None:
        """Make the three streams (or find them) and load the retained messages."""
        replicas = self.mqtt.settings.stream_replicas or 1
        for name, subject, per_subject, retention in (
                (SESSIONS, SESSION_PREFIX + ">", 1, "limits"), (RETAINED, RETAINED_PREFIX + ">", 1, "limits"),
                (MESSAGES, MESSAGE_PREFIX + ">", -1, "interest")):  # a message goes once every consumer acked it
            config = {"name": name, "subjects": [subject], "retention": retention, "storage": "file",
                      "num_replicas": replicas, "max_msgs_per_subject": per_subject}
            answer = await self.call(f"STREAM.CREATE.{name}", config)
            error = answer.get("error")
            if error and error.get("err_code") != STREAM_IN_USE:
                raise StoreError(f"stream {name}: {error.get('description')}")
        self.jetstream = local_jetstream(self.mqtt.server, self.mqtt.settings.js_domain)
        log.info("MQTT state of account %r kept in JetStream (streams %s, %s, %s%s)", self.account, SESSIONS,
                 RETAINED, MESSAGES, ", this server's" if self.jetstream is not None else "")
        info = await self.call(f"STREAM.INFO.{RETAINED}", {"subjects_filter": ">"})
        for subject in (info.get("state") or {}).get("subjects") or {}:
            message = await self.last(RETAINED, subject)
            if message is None:
                continue
            headers, payload = message
            topic = headers.get("Nmqtt-RTopic")
            if topic:
                from .sessions import Outbound

                qos = int(headers.get("Nmqtt-Pub", "0")[:1] or 0)
                self.mqtt.retained.setdefault(self.account, {})[topic] = Outbound(topic, payload, qos, True)

    async def last(self, stream: str, subject: str) -> tuple[dict[str, str], bytes] | None:
        answer = await self.call(f"STREAM.MSG.GET.{stream}", {"last_by_subj": subject})
        message = answer.get("message")
        if not message:
            return None
        headers: dict[str, str] = {}
        if message.get("hdrs"):
            for line in base64.b64decode(message["hdrs"]).decode("utf-8", "replace").split("\r\n")[1:]:
                key, sep, value = line.partition(":")
                if sep:
                    headers[key.strip()] = value.strip()
        return headers, base64.b64decode(message.get("data") or "")

    # -- sessions ---------------------------------------------------------------------------------------

    async def load_session(self, client_id: str) -> dict[str, Any] | None:
        found = await self.last(SESSIONS, SESSION_PREFIX + client_hash(client_id))
        if found is None or not found[1]:
            return None
        record: dict[str, Any] = json.loads(found[1])
        return record if record.get("id") == client_id else None

    async def save_session(self, client_id: str, record: dict[str, Any]) -> None:
        await self.save_session_now(client_id, record)

    def save_session_now(self, client_id: str, record: dict[str, Any]) -> asyncio.Future[int]:
        """Publish the session's record now (saves keep their order: the last one is the record)."""
        return self.stored(SESSIONS, SESSION_PREFIX + client_hash(client_id),
                           json.dumps({"id": client_id, **record}).encode())

    async def delete_session(self, client_id: str, consumers: list[str]) -> None:
        for name in consumers:
            await self.call(f"CONSUMER.DELETE.{MESSAGES}.{name}")
        await self.call(f"STREAM.PURGE.{SESSIONS}", {"filter": SESSION_PREFIX + client_hash(client_id)})

    # -- retained messages -------------------------------------------------------------------------------

    async def retain(self, subject: str, topic: str, qos: int, payload: bytes) -> None:
        if payload:
            headers = f"NATS/1.0\r\nNmqtt-Pub:{qos}\r\nNmqtt-RTopic:{topic}\r\n\r\n".encode()
            await self.stored(RETAINED, RETAINED_PREFIX + subject, payload, headers)
        else:
            await self.call(f"STREAM.PURGE.{RETAINED}", {"filter": RETAINED_PREFIX + subject})

    # -- QoS 1/2 ------------------------------------------------------------------------------------------

    async def consumer(self, client_id: str, subjects: list[str], name: str | None = None) -> tuple[str, str]:
        """A durable consumer of ``$MQTT.msgs.<subject>`` for one QoS 1/2 subscription of a persistent
        session: ``(name, deliver subject)`` (``name`` given: the one a session record names, made
        again if it is gone)."""
        settings = self.mqtt.settings
        name = name or f"{client_hash(client_id)}_{event_id()[-8:]}"
        deliver = DELIVER_PREFIX + name
        config: dict[str, Any] = {"durable_name": name, "deliver_subject": deliver, "deliver_policy": "new",
                                  "ack_policy": "explicit", "ack_wait": int(settings.ack_wait * 1e9),
                                  "max_ack_pending": settings.max_ack_pending}
        if len(subjects) == 1:
            config["filter_subject"] = MESSAGE_PREFIX + subjects[0]
        else:
            config["filter_subjects"] = [MESSAGE_PREFIX + s for s in subjects]
        if settings.consumer_memory_storage:
            config["mem_storage"] = True
        if settings.consumer_inactive_threshold > 0:
            config["inactive_threshold"] = int(settings.consumer_inactive_threshold * 1e9)
        answer = await self.call(f"CONSUMER.DURABLE.CREATE.{MESSAGES}.{name}",
                                 {"stream_name": MESSAGES, "config": config})
        error = answer.get("error")
        if error:
            raise StoreError(f"consumer for {subjects}: {error.get('description')}")
        return name, answer.get("config", {}).get("deliver_subject", deliver)

    async def delete_consumer(self, name: str) -> None:
        await self.call(f"CONSUMER.DELETE.{MESSAGES}.{name}")


def local_jetstream(server: ServerAPI, domain: str) -> LocalStreams | None:
    """This server's JetStream if it serves the JetStream domain ``domain`` ("": the account's own)."""
    jetstream: LocalStreams | None = server.service("jetstream")
    if jetstream is None or (domain and domain != jetstream.domain):
        return None
    return jetstream


def _acked(subject: str, answer: asyncio.Future[tuple[bytes | None, bytes]],
           done: Callable[[int, str | None], None]) -> None:
    """The answer to a publish through the JetStream API, told to ``done`` as :meth:`JetStreamStore.store` does."""
    if answer.cancelled():
        done(0, "the request was cancelled")
        return
    error = answer.exception()
    if error is not None:
        done(0, str(error))
        return
    ack_headers, payload = answer.result()
    if ack_headers and ack_headers.startswith(b"NATS/1.0 503"):
        done(0, "no stream for " + subject)
        return
    ack = json.loads(payload)
    if "error" in ack:
        done(0, ack["error"].get("description", "error"))
    else:
        done(int(ack.get("seq", 0)), None)
