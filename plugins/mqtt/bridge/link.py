"""One bridge to an external MQTT broker (aiomqtt): messages in, messages out, reconnects.

In: the bridge subscribes to its ``in`` topic filters on the remote and
publishes what arrives into natsd (the remote's QoS in ``Nmqtt-Pub``, MQTT 5
user properties as headers). Out: an in-process client subscribes to the
``out`` subjects; each message goes into a bounded buffer and from there to
the remote, in order. While the remote is away the buffer keeps the newest
``buffer`` messages and drops the oldest (counted). A message sent at QoS 1
or 2 leaves the buffer only when the remote acknowledged it; a NATS
publisher that asked (a request) gets an empty reply at that moment, so
"acknowledged" means "the far side has it".

No loops: in natsd the bridge's own client never receives what it published
itself; on the remote, MQTT 5 subscriptions are ``no_local`` and an MQTT
3.1.1 remote's echo of what the bridge just sent is recognised and dropped.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from typing import Any

from natsd.plugin.contracts import ServerAPI
from natsd.routing.connection import Kind
from natsd.routing.mappings import SubjectTransform, transform_tokenize

from ..topics import TopicError, filter_to_subjects, subject_to_topic, topic_to_subject
from .settings import Remote, Route

log = logging.getLogger("natsd.mqtt_bridge")

ECHO_WINDOW = 4096
"""Messages sent to an MQTT 3.1.1 remote remembered to recognise its echo (no no_local there)."""


def _mapper(source: str, destination: str) -> Callable[[str], str | None]:
    """NATS-form subject -> NATS-form subject, the source's wildcards filling the destination's."""
    transform = SubjectTransform(source, transform_tokenize(destination), strict=True)

    def apply(subject: str) -> str | None:
        out = transform.apply(subject.encode())
        return out.decode() if out is not None else None
    return apply


class Counters:
    __slots__ = ("received", "sent", "dropped", "failed", "reconnects")

    def __init__(self) -> None:
        self.received = 0  # from the remote into natsd
        self.sent = 0  # from natsd to the remote (acknowledged, for QoS 1/2)
        self.dropped = 0  # out of a full buffer
        self.failed = 0  # refused by natsd (permissions) or not mappable
        self.reconnects = 0


class BridgeLink:
    """The bridge to one remote (see the module docstring)."""

    def __init__(self, server: ServerAPI, remote: Remote) -> None:
        self.server = server
        self.remote = remote
        self.counters = Counters()
        self.buffer: deque[tuple[str, bytes, int, dict[str, Any], bytes | None]] = deque()
        self.connected = False
        self.client = server.connect_internal(f"mqtt-bridge:{remote.name}", remote.account, kind=Kind.SYSTEM)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._echo: deque[tuple[str, bytes]] = deque(maxlen=ECHO_WINDOW)
        self._inbound = [_mapper(filter_to_subjects(r.topic)[0], r.subject) if r.subject else None
                         for r in remote.inbound]
        for route in remote.outbound:
            dest = filter_to_subjects(route.topic)[0] if route.topic else None
            mapper = _mapper(route.subject, dest) if dest else None
            self.client.subscribe(route.subject, self._outgoing(route, mapper))

    # -- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> None:
        self._task = self.server.loop.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
        self.client.close()

    async def _run(self) -> None:
        import aiomqtt

        remote = self.remote
        delay = remote.reconnect_min
        outage_logged = False
        while True:
            try:
                async with aiomqtt.Client(
                        remote.host, remote.port, username=remote.username, password=remote.password,
                        identifier=remote.client_id, keepalive=remote.keep_alive, tls_context=remote.tls,
                        protocol=aiomqtt.ProtocolVersion.V5 if remote.protocol == 5 else aiomqtt.ProtocolVersion.V311,
                        timeout=10) as mq:
                    self.connected = True
                    delay = remote.reconnect_min
                    outage_logged = False
                    log.info("MQTT bridge %r connected to %s:%d", remote.name, remote.host, remote.port)
                    for route in remote.inbound:
                        if remote.protocol == 5:
                            from paho.mqtt.subscribeoptions import SubscribeOptions

                            await mq.subscribe(route.topic, options=SubscribeOptions(qos=route.qos, noLocal=True))
                        else:
                            await mq.subscribe(route.topic, qos=route.qos)
                    sender = asyncio.create_task(self._send(mq))
                    try:
                        async for message in mq.messages:
                            self._incoming(message)
                    finally:
                        sender.cancel()
            except asyncio.CancelledError:
                self.connected = False
                raise
            except Exception as exc:  # aiomqtt.MqttError, OSError: the remote is away
                if not outage_logged:
                    log.warning("MQTT bridge %r: %s:%d unreachable or lost (%s); retrying, buffering up to %d "
                                "messages", remote.name, remote.host, remote.port, exc, remote.buffer)
                    outage_logged = True
            if self.connected:
                self.counters.reconnects += 1
            self.connected = False
            await asyncio.sleep(delay)
            delay = min(delay * 2, remote.reconnect_max)

    # -- natsd -> remote ---------------------------------------------------------------------------

    def _outgoing(self, route: Route, mapper: Callable[[str], str | None] | None) -> Any:
        def callback(subject: bytes, reply: bytes | None, headers: bytes | None, payload: bytes) -> None:
            text = subject.decode()
            if mapper is not None:
                mapped = mapper(text)
                if mapped is None:
                    self.counters.failed += 1
                    return
                text = mapped
            topic = subject_to_topic(text)
            props: dict[str, Any] = {}
            if headers and self.remote.protocol == 5:
                for line in headers.split(b"\r\n")[1:]:
                    key, sep, value = line.partition(b":")
                    if sep and not key.startswith(b"Nmqtt-"):
                        props.setdefault("user_properties", []).append(
                            (key.decode("utf-8", "replace"), value.strip().decode("utf-8", "replace")))
            if self.remote.buffer <= 0 and not self.connected:
                self.counters.dropped += 1
                return
            if len(self.buffer) >= max(self.remote.buffer, 1):
                self.buffer.popleft()
                self.counters.dropped += 1
            self.buffer.append((topic, payload, route.qos, props, reply))
            self._wake.set()
        return callback

    async def _send(self, mq: Any) -> None:
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        while True:
            if not self.buffer:
                self._wake.clear()
                await self._wake.wait()
                continue
            topic, payload, qos, props, reply = self.buffer[0]
            properties = None
            if props.get("user_properties"):
                properties = Properties(PacketTypes.PUBLISH)
                properties.UserProperty = props["user_properties"]
            if self.remote.protocol != 5:
                self._echo.append((topic, payload))
            await mq.publish(topic, payload, qos=qos, properties=properties)  # QoS 1/2: once acknowledged
            self.buffer.popleft()
            self.counters.sent += 1
            if reply:
                self.client.publish(reply, b"")

    # -- remote -> natsd ---------------------------------------------------------------------------

    def _incoming(self, message: Any) -> None:
        topic = str(message.topic)
        payload = bytes(message.payload) if message.payload is not None else b""
        if self.remote.protocol != 5 and (topic, payload) in self._echo:
            self._echo.remove((topic, payload))
            return  # our own message, back from a 3.1.1 remote
        try:
            subject = topic_to_subject(topic)
        except TopicError:
            self.counters.failed += 1
            return
        for mapper in self._inbound:
            if mapper is not None:
                mapped = mapper(subject)
                if mapped is None:
                    continue
                subject = mapped
            break
        lines = [f"NATS/1.0\r\nNmqtt-Pub:{int(message.qos)}\r\nNmqtt-Bridge:{self.remote.name}\r\n"]
        props = getattr(message, "properties", None)
        for key, value in getattr(props, "UserProperty", None) or ():
            if ":" not in key and "\r" not in key + value and "\n" not in key + value:
                lines.append(f"{key}: {value}\r\n")
        lines.append("\r\n")
        try:
            self.client.publish(subject, payload, headers="".join(lines).encode())
            self.counters.received += 1
        except (PermissionError, ValueError) as exc:
            self.counters.failed += 1
            log.warning("MQTT bridge %r: %r could not be published: %s", self.remote.name, topic, exc)

    def stats(self) -> dict[str, Any]:
        c = self.counters
        return {"name": self.remote.name, "connected": self.connected, "buffered": len(self.buffer),
                "received": c.received, "sent": c.sent, "dropped": c.dropped, "failed": c.failed,
                "reconnects": c.reconnects}
