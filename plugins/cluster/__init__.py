"""Clustering: natsd servers form a full mesh of routes with each other and with nats-server.

Enabled by ``cluster {}`` (or ``--cluster``, ``--cluster_listen``,
``--routes`` ...). Each server listens for routes, dials the configured ones,
learns the others by gossip, and sends every other server the interest of
its clients, so that a message published anywhere reaches every subscriber
in one hop and each queue group once. See :mod:`.cluster` and
docs/clustering.md. ``--workers N`` (``workers: N``) runs N clustered natsd
processes on one client port (:mod:`.workers`).
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from natsd import hookimpl
from natsd.config import ServerConfig, config_error
from natsd.plugin.contracts import ServerAPI
from natsd.plugin.manager import OptionParser
from natsd.plugin.stash import StashKey

from . import workers as workers_mod

if TYPE_CHECKING:
    from .cluster import Cluster

CLUSTER: StashKey[Cluster] = StashKey()
"""The running cluster; its module (routes and all) is imported only when one is configured."""


@hookimpl
def natsd_config_blocks() -> tuple[str, ...]:
    return ("cluster", "workers")


def _bool(text: str) -> bool:
    low = text.lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise ValueError(text)


@hookimpl
def natsd_addoption(parser: OptionParser) -> None:
    group = parser.group("Cluster Options")
    group.add_option("--cluster", "--cluster_listen", dest="cluster_listen", metavar="URL",
                     config="cluster.listen", help="cluster URL to listen on for routes")
    group.add_option("--routes", metavar="URLS", config="cluster.routes",
                     help="routes to solicit and connect, comma separated")
    group.add_option("--cluster_name", metavar="NAME", config="cluster.name",
                     help="cluster name (generated when not set)")
    group.add_option("--cluster_advertise", metavar="HOST:PORT", config="cluster.advertise",
                     help="cluster URL to advertise to other servers")
    group.add_option("--no_advertise", type=_bool, nargs="?", const=True, metavar="BOOL",
                     config="cluster.no_advertise",
                     help="do not advertise known cluster information to clients")
    group.add_option("--connect_retries", type=int, metavar="N", config="cluster.connect_retries",
                     help="connect retries for routes learned by gossip")
    group.add_option("--workers", type=int, metavar="N", config="workers",
                     help="run N clustered natsd processes on the client port (every core)")
    group.add_option("--worker", metavar="SPEC", apply=workers_mod.apply_worker,
                     help=argparse.SUPPRESS)


def _worker_count(config: ServerConfig) -> int:
    """``workers`` from the config (1 when absent); errors name the file, line and key."""
    workers = config.blocks.get("workers")
    if workers is None:
        return 1
    try:
        count = workers_mod.worker_count(workers)
    except ValueError as exc:
        raise config_error(config.blocks, "workers", str(exc)) from None
    if count > 1 and config.blocks.get("cluster") is not None:
        raise config_error(config.blocks, "cluster", "--workers runs its own cluster over "
                           "loopback; a cluster {} block with workers is not supported yet")
    return count


@hookimpl
def natsd_cmdline_main(config: ServerConfig, argv: list[str]) -> int | None:
    if isinstance(config.blocks.get("workers"), str):
        return None  # this process is one of the workers
    count = _worker_count(config)
    return workers_mod.supervise(config, argv, count) if count > 1 else None


@hookimpl
def natsd_configure(server: ServerAPI, config: ServerConfig) -> None:
    block = config.blocks.get("cluster")
    workers = config.blocks.get("workers")
    if isinstance(workers, str):  # this process is one of --workers
        if block is not None:
            raise config_error(config.blocks, "cluster", "--workers runs its own cluster over "
                               "loopback; a cluster {} block with workers is not supported yet")
        from . import settings as settings_mod
        from .cluster import Cluster

        spec = workers_mod.WorkerSpec.parse(workers)
        server.name = f"{server.name}-w{spec.index}"
        server.stash[CLUSTER] = Cluster(server, settings_mod.load(spec.cluster_block()))
        return
    _worker_count(config)
    if block is not None:
        from . import settings as settings_mod
        from .cluster import Cluster

        server.stash[CLUSTER] = Cluster(server, settings_mod.load(block))


@hookimpl
def natsd_interest_listeners(server: ServerAPI) -> Cluster | None:
    return server.stash.get(CLUSTER, None)


@hookimpl
def natsd_listeners(server: ServerAPI) -> Cluster | None:
    return server.stash.get(CLUSTER, None)


@hookimpl
def natsd_lame_duck(server: ServerAPI) -> None:
    cluster = server.stash.get(CLUSTER, None)
    if cluster is not None:
        cluster.lame_duck()


@hookimpl(optionalhook=True)
def natsd_monitor_endpoints(server: ServerAPI) -> dict[str, Any] | None:
    cluster = server.stash.get(CLUSTER, None)
    return {"/routez": cluster.routez} if cluster is not None else None


@hookimpl(optionalhook=True)
def natsd_monitor_varz(server: ServerAPI, varz: dict[str, Any]) -> None:
    cluster = server.stash.get(CLUSTER, None)
    if cluster is not None:
        cluster.varz(varz)


@hookimpl(optionalhook=True)
def natsd_system_statsz(server: ServerAPI, statsz: dict[str, Any]) -> None:
    cluster = server.stash.get(CLUSTER, None)
    if cluster is not None:
        cluster.statsz(statsz)


@hookimpl(optionalhook=True)
def natsd_metrics(server: ServerAPI, registry: Any) -> None:
    cluster = server.stash.get(CLUSTER, None)
    if cluster is not None:
        from .metrics import RouteCollector

        registry.register(RouteCollector(cluster))


@hookimpl
def natsd_shutdown(server: ServerAPI) -> None:
    server.stash.pop(CLUSTER, None)
