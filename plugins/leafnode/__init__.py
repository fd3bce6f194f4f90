"""Leaf nodes: servers at the edge extend a deployment, bound to one account on each side.

Enabled by ``leafnodes {}``. With ``listen`` (or ``port``) this server is a
hub: leaf servers (natsd or nats-server) connect to it and each link is
bound to one of its accounts by the leaf's credentials. With ``remotes``
this server is a leaf: it dials a hub for each entry and binds the link to
one local account. Either way the link carries the bound account's interest
and messages, as nats-server's leaf-node protocol does; see :mod:`.leafnodes`
and docs/leafnodes.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from natsd import hookimpl
from natsd.config import ServerConfig
from natsd.plugin.contracts import ServerAPI
from natsd.plugin.stash import StashKey

if TYPE_CHECKING:
    from .leafnodes import LeafNodes

LEAFNODES: StashKey[LeafNodes] = StashKey()
"""The running plugin; its modules are imported only when its block is present."""


@hookimpl
def natsd_config_blocks() -> tuple[str, ...]:
    return ("leafnodes", "leaf")


@hookimpl
def natsd_configure(server: ServerAPI, config: ServerConfig) -> None:
    block = config.blocks.get("leafnodes", config.blocks.get("leaf"))
    if block is not None:
        from . import settings as settings_mod
        from .leafnodes import LeafNodes

        server.stash[LEAFNODES] = LeafNodes(server, settings_mod.load(block))


@hookimpl
def natsd_interest_listeners(server: ServerAPI) -> list[Any] | None:
    leafnodes = server.stash.get(LEAFNODES, None)
    return list(leafnodes.taps) if leafnodes is not None else None


@hookimpl
def natsd_listeners(server: ServerAPI) -> LeafNodes | None:
    return server.stash.get(LEAFNODES, None)


@hookimpl(optionalhook=True)
def natsd_monitor_endpoints(server: ServerAPI) -> dict[str, Any] | None:
    leafnodes = server.stash.get(LEAFNODES, None)
    return {"/leafz": leafnodes.leafz} if leafnodes is not None else None


@hookimpl(optionalhook=True)
def natsd_monitor_varz(server: ServerAPI, varz: dict[str, Any]) -> None:
    leafnodes = server.stash.get(LEAFNODES, None)
    if leafnodes is not None:
        leafnodes.varz(varz)


@hookimpl
def natsd_shutdown(server: ServerAPI) -> None:
    server.stash.pop(LEAFNODES, None)
