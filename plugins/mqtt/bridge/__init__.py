"""The MQTT bridge: natsd connects out to the MQTT brokers devices already use (``mqtt_bridge {}``).

Each remote is a :class:`.link.BridgeLink` on aiomqtt: topics in, subjects
out, reconnects with backoff, a bounded buffer while the remote is away.
Counters go to ``/metrics`` (``nats_mqtt_bridge_*``) and ``/varz``
(``mqtt_bridge``). See docs/mqtt.md.
"""

from __future__ import annotations

from typing import Any

from natsd import hookimpl
from natsd.config import ServerConfig
from natsd.plugin.contracts import ServerAPI
from natsd.plugin.stash import StashKey

BRIDGES = StashKey[list[Any]]()
REMOTES = StashKey[Any]()


@hookimpl
def natsd_config_blocks() -> tuple[str, ...]:
    return ("mqtt_bridge",)


@hookimpl
def natsd_configure(server: ServerAPI, config: ServerConfig) -> None:
    block = config.blocks.get("mqtt_bridge")
    if block is None:
        return
    from .settings import load

    server.stash[REMOTES] = load(block)


@hookimpl
async def natsd_startup(server: ServerAPI) -> None:
    remotes = server.stash.get(REMOTES, None)
    if not remotes:
        return
    from .link import BridgeLink

    links = server.stash[BRIDGES] = [BridgeLink(server, remote) for remote in remotes]
    for link in links:
        link.start()


@hookimpl
async def natsd_shutdown(server: ServerAPI) -> None:
    for link in server.stash.pop(BRIDGES, None) or []:
        await link.stop()


@hookimpl(optionalhook=True)
def natsd_monitor_varz(server: ServerAPI, varz: dict[str, Any]) -> None:
    links = server.stash.get(BRIDGES, None)
    if links:
        varz["mqtt_bridge"] = [link.stats() for link in links]


@hookimpl(optionalhook=True)
def natsd_metrics(server: ServerAPI, registry: Any) -> None:
    if server.stash.get(REMOTES, None):
        from .metrics import BridgeCollector

        registry.register(BridgeCollector(server, BRIDGES))
