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

from typing import Any

from natsd import hookimpl

from . import settings as _settings
from .listener import MonitorListener
from .views import forget, monitor_of

_configured: dict[int, _settings.MonitorSettings] = {}


@hookimpl
def natsd_config_blocks() -> tuple[str, ...]:
    return _settings.KEYS


@hookimpl
def natsd_configure(server: Any, config: Any) -> None:
    _configured[id(server)] = _settings.load(config.blocks, config.tls)


@hookimpl
def natsd_listeners(server: Any) -> MonitorListener | None:
    found = _configured.pop(id(server), None)
    if found is None or found.port is None:
        return None
    return MonitorListener(server, found)


@hookimpl
def natsd_shutdown(server: Any) -> None:
    _configured.pop(id(server), None)
    forget(server)


def http_listener(server: Any) -> MonitorListener | None:
    """The server's running HTTP monitoring listener (its ``port``, ``url`` ...), if any."""
    listener = monitor_of(server).http if server.running else None
    return listener if isinstance(listener, MonitorListener) else None
