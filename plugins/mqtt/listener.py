"""The MQTT port: accepts device connections (plain TCP, or TLS with ``tls {}``)."""

from __future__ import annotations

import asyncio
import logging
from typing import cast

from natsd.plugin.contracts import ServerAPI

from . import packets as P
from .connection import MQTTConnection
from .sessions import MQTT
from .settings import MQTTSettings

log = logging.getLogger("natsd.mqtt")


class MQTTListener:
    """A :class:`natsd.plugin.contracts.Listener` for ``mqtt {}``."""

    def __init__(self, server: ServerAPI, settings: MQTTSettings) -> None:
        self.server = server
        self.settings = settings
        self.mqtt = MQTT(server, settings)
        self.host = settings.host
        self.port = settings.port
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        s = self.settings
        for found in self.server.plugins.hook.natsd_mqtt_authenticators(server=self.server):
            for authenticator in found or ():
                self.mqtt.auth_methods.setdefault(authenticator.method, authenticator)
        port = s.port if s.port > 0 else 0
        try:
            self._server = await self.server.loop.create_server(
                lambda: cast(asyncio.Protocol, MQTTConnection(self.mqtt)), host=s.host or None, port=port,
                reuse_address=True, ssl=s.tls.context if s.tls is not None else None, start_serving=False,
                backlog=1024)  # a fleet reconnecting at once (asyncio's 100 made many wait for a SYN retry)
        except OSError as exc:
            raise OSError(exc.errno, f"cannot listen for MQTT clients on {s.host}:{port}: {exc.strerror}") from exc
        self.host, self.port = self._server.sockets[0].getsockname()[:2]
        scheme = "tls" if s.tls is not None else "mqtt"
        self.server.ports["mqtt"] = [f"{scheme}://{self.host}:{self.port}"]
        # devices on the WebSocket port's /mqtt path (the websocket plugin's listener hands them over)
        self.server.acceptors["mqtt"] = lambda carrier: cast(asyncio.Protocol, MQTTConnection(self.mqtt))
        log.info("Listening for MQTT clients on %s://%s:%d", scheme, self.host, self.port)

    async def serving(self) -> None:
        """Accept devices once the server has started: their sessions and QoS 1/2 messages go to a
        JetStream that must be up first (a device that came earlier was refused and retries)."""
        if self._server is not None:
            await self._server.start_serving()

    async def stop(self) -> None:
        self.server.acceptors.pop("mqtt", None)
        self.mqtt.stopping = True
        if self._server is not None:
            self._server.close()
        for conn in list(self.mqtt.connections):
            if conn.version == P.MQTT_5 and conn.client is not None:
                conn.send(P.Disconnect(0x8B))  # server shutting down
            conn.close(abnormal=False)
        self.mqtt.close()
        if self._server is not None:
            await self._server.wait_closed()
