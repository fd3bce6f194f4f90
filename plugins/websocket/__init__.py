"""WebSocket ingress: browsers and web apps speak the NATS client protocol over WebSocket.

Enabled by ``websocket {}``. The plugin answers the HTTP upgrade as
nats-server 2.15 does and hands the de-framed bytes to an unchanged core
client, so a WebSocket connection is a client like any other (``/connz``
shows ``"type": "websocket"``, authentication sees the ``WEBSOCKET``
connection type). See :mod:`.listener` and docs/websocket.md.
"""

from __future__ import annotations

from typing import Any

from natsd import hookimpl
from natsd.config import ServerConfig
from natsd.plugin.contracts import ServerAPI
from natsd.plugin.stash import StashKey

from . import settings as settings_mod

WEBSOCKET = StashKey[Any]()


@hookimpl
def natsd_config_blocks() -> tuple[str, ...]:
    return ("websocket", "ws")


@hookimpl
def natsd_configure(server: ServerAPI, config: ServerConfig) -> None:
    block = config.blocks.get("websocket", config.blocks.get("ws"))
    if block is None:
        return
    settings = settings_mod.load(block)
    settings_mod.check_users(settings, block, config)
    if settings.port:
        from .listener import WebSocketListener  # imports the websockets library

        server.stash[WEBSOCKET] = WebSocketListener(server, settings)


@hookimpl(tryfirst=True)
def natsd_authenticators(server: ServerAPI) -> list[Any] | None:
    """The block's own ``user``/``password`` or ``token``, asked first about WebSocket clients."""
    listener = server.stash.get(WEBSOCKET, None)
    if listener is None or not (listener.settings.user or listener.settings.token):
        return None
    return [listener.authenticator]


@hookimpl
def natsd_listeners(server: ServerAPI) -> Any:
    return server.stash.get(WEBSOCKET, None)


@hookimpl(optionalhook=True)
def natsd_monitor_varz(server: ServerAPI, varz: dict[str, Any]) -> None:
    listener = server.stash.get(WEBSOCKET, None)
    if listener is None:
        return
    s = listener.settings
    section: dict[str, Any] = {"host": listener.host, "port": listener.port}
    if s.advertise:
        section["advertise"] = s.advertise
    if s.jwt_cookie:
        section["jwt_cookie"] = s.jwt_cookie
    if s.handshake_timeout:
        section["handshake_timeout"] = int(s.handshake_timeout * 1e9)
    if s.auth_timeout:
        section["auth_timeout"] = s.auth_timeout
    if s.no_tls:
        section["no_tls"] = True
    if s.same_origin:
        section["same_origin"] = True
    if s.allowed_origin_texts:
        section["allowed_origins"] = list(s.allowed_origin_texts)
    if s.compression:
        section["compression"] = True
    varz["websocket"] = section


@hookimpl
def natsd_shutdown(server: ServerAPI) -> None:
    listener = server.stash.pop(WEBSOCKET, None)
    if listener is not None:
        listener.authenticator.close()
