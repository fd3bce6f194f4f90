"""nats-server's HTTP monitoring port and Prometheus metrics, as a first-party plugin.

Enabled by any of nats-server's keys ``http``, ``http_port``,
``monitor_port``, ``https``, ``https_port`` or ``http_base_path`` (``-m
PORT`` or ``-ms PORT`` on the command line): it then serves ``/varz``, ``/connz``, ``/subsz``, ``/accountz``,
``/accstatz``, ``/healthz``, ``/routez``, ``/leafz``, ``/gatewayz``, ``/jsz``
(see :mod:`.views`) and ``/metrics`` (see :mod:`.metrics`) over HTTP, or
HTTPS with the server's ``tls {}`` certificate.

The same views answer the system account's ``$SYS.REQ.SERVER.PING.VARZ``
... whether or not the HTTP port is enabled: that is a separate plugin,
:mod:`natsd_plugins.monitor.requests` (entry point ``monitor_views``), so
that denying one leaves the other.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

from natsd import hookimpl
from natsd.config import ServerConfig
from natsd.plugin.contracts import ServerAPI
from natsd.plugin.manager import OptionParser, PluginManager
from natsd.plugin.stash import StashKey

from . import hookspecs
from . import settings as _settings
from .listener import MonitorListener
from .views import forget, monitor_of

SETTINGS = StashKey[_settings.MonitorSettings]()


@hookimpl
def natsd_addhooks(pluginmanager: PluginManager) -> None:
    pluginmanager.add_hookspecs(hookspecs)


@hookimpl
def natsd_addoption(parser: OptionParser) -> None:
    group = parser.group("Monitoring Options")
    group.add_option("-m", "--http_port", type=int, metavar="PORT", apply=_flag_port("http_port"),
                     help="use port for HTTP monitoring (0 picks a free port)")
    group.add_option("-ms", "--https_port", type=int, metavar="PORT", apply=_flag_port("https_port"),
                     help="use port for HTTPS monitoring (with the tls {} certificate)")


def _flag_port(key: str) -> Any:
    """``-m``/``-ms``: the flag's port and scheme replace the file's monitoring port."""
    others = ("https", "https_port") if key == "http_port" else ("http", "http_port", "monitor_port")

    def apply(value: int, blocks: MutableMapping[str, Any]) -> None:
        for other in others:
            blocks.pop(other, None)
        blocks[key] = value
    return apply


@hookimpl
def natsd_config_blocks() -> tuple[str, ...]:
    return _settings.KEYS


@hookimpl
def natsd_configure(server: ServerAPI, config: ServerConfig) -> None:
    server.stash[SETTINGS] = _settings.load(config.blocks, config.tls)


@hookimpl
def natsd_listeners(server: ServerAPI) -> MonitorListener | None:
    found = server.stash.pop(SETTINGS, None)
    if found is None or found.port is None:
        return None
    return MonitorListener(server, found)


@hookimpl
def natsd_shutdown(server: ServerAPI) -> None:
    server.stash.pop(SETTINGS, None)
    forget(server)


def http_listener(server: ServerAPI) -> MonitorListener | None:
    """The server's running HTTP monitoring listener (its ``port``, ``url`` ...), if any."""
    listener = monitor_of(server).http if server.running else None
    return listener if isinstance(listener, MonitorListener) else None
