"""MQTT ingress: devices speak MQTT 3.1.1 and MQTT 5 to natsd.

Enabled by ``mqtt {}``. Each MQTT connection becomes a client of the core
with the identity its CONNECT authenticated to (see :mod:`.connection`);
topics map to NATS subjects as nats-server maps them (:mod:`.topics`), so
MQTT devices and NATS clients exchange messages both ways; like nats-server it
is Sparkplug B aware (:mod:`.sparkplug`). See docs/mqtt.md.
"""

from __future__ import annotations

from typing import Any

from natsd import hookimpl
from natsd.config import ServerConfig
from natsd.plugin.contracts import ServerAPI
from natsd.plugin.stash import StashKey

MQTT_LISTENER = StashKey[Any]()


@hookimpl
def natsd_addhooks(pluginmanager: Any) -> None:
    from . import hookspecs

    pluginmanager.add_hookspecs(hookspecs)


@hookimpl
def natsd_config_blocks() -> tuple[str, ...]:
    return ("mqtt",)


@hookimpl
def natsd_configure(server: ServerAPI, config: ServerConfig) -> None:
    block = config.blocks.get("mqtt")
    if block is None:
        return
    from natsd.config import fields

    from . import settings as settings_mod
    from .listener import MQTTListener

    settings = settings_mod.load(block)
    fields.check_listener_auth(block, config, "mqtt", user=settings.user, token=settings.token,
                               no_auth_user=settings.no_auth_user)
    server.stash[MQTT_LISTENER] = MQTTListener(server, settings)


@hookimpl
def natsd_listeners(server: ServerAPI) -> Any:
    return server.stash.get(MQTT_LISTENER, None)


@hookimpl(optionalhook=True)
def natsd_monitor_varz(server: ServerAPI, varz: dict[str, Any]) -> None:
    listener = server.stash.get(MQTT_LISTENER, None)
    if listener is None:
        return
    s = listener.settings
    section: dict[str, Any] = {"host": s.host, "port": listener.port}
    if s.no_auth_user:
        section["no_auth_user"] = s.no_auth_user
    if s.auth_timeout:
        section["auth_timeout"] = s.auth_timeout
    section["tls_timeout"] = s.tls.timeout if s.tls is not None else 2
    if s.js_domain:
        section["js_domain"] = s.js_domain
    if "ack_wait" in s.given:
        section["ack_wait"] = int(s.ack_wait * 1e9)
    if "max_ack_pending" in s.given:
        section["max_ack_pending"] = s.max_ack_pending
    varz["mqtt"] = section
