"""Gateways: clusters joined into a supercluster, with interest-only routing between them.

Enabled by ``gateway {}``. Each server listens for the other clusters'
servers and dials one server of every remote cluster; a message crosses to
a cluster only where that cluster has interest, each queue group is served
in this cluster first and otherwise by the nearest cluster with a member.
nats-server 2.15's gateway protocol, so natsd clusters and nats-server
clusters join one supercluster; see :mod:`.gateways` and docs/superclusters.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from natsd import hookimpl
from natsd.config import ServerConfig
from natsd.plugin.contracts import ServerAPI
from natsd.plugin.stash import StashKey

if TYPE_CHECKING:
    from .gateways import Gateways

GATEWAYS: StashKey[Gateways] = StashKey()
"""The running plugin; its modules are imported only when its block is present."""


@hookimpl
def natsd_config_blocks() -> tuple[str, ...]:
    return ("gateway",)


@hookimpl
def natsd_configure(server: ServerAPI, config: ServerConfig) -> None:
    block = config.blocks.get("gateway")
    if block is not None:
        from . import settings as settings_mod
        from .gateways import Gateways

        server.stash[GATEWAYS] = Gateways(server, settings_mod.load(block))


@hookimpl
def natsd_interest_listeners(server: ServerAPI) -> Gateways | None:
    return server.stash.get(GATEWAYS, None)


@hookimpl
def natsd_listeners(server: ServerAPI) -> Gateways | None:
    return server.stash.get(GATEWAYS, None)


@hookimpl(optionalhook=True)
def natsd_monitor_endpoints(server: ServerAPI) -> dict[str, Any] | None:
    gateways = server.stash.get(GATEWAYS, None)
    return {"/gatewayz": gateways.gatewayz} if gateways is not None else None


@hookimpl(optionalhook=True)
def natsd_monitor_varz(server: ServerAPI, varz: dict[str, Any]) -> None:
    gateways = server.stash.get(GATEWAYS, None)
    if gateways is not None:
        gateways.varz(varz)


@hookimpl
def natsd_shutdown(server: ServerAPI) -> None:
    server.stash.pop(GATEWAYS, None)
