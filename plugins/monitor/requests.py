"""The monitoring views answered over the system account, as a plugin of their own.

Registered through the entry point ``monitor_views`` and always on (it owns
no config key), so ``$SYS.REQ.SERVER.PING.VARZ``, ``.CONNZ``, ``.SUBSZ``,
``.ACCOUNTZ``, ``.HEALTHZ``, ``.ROUTEZ``, ``.LEAFZ``, ``.GATEWAYZ``, ``.JSZ``
and ``$SYS.REQ.ACCOUNT.<acc>.CONNZ``, ``.SUBSZ``, ``.STATZ``, ``.INFO``,
``.LEAFZ`` (and ``.JSZ`` once a plugin provides ``/jsz``) are answered whether or not the HTTP port
(``natsd_plugins.monitor``) is enabled. It does nothing without a system
account; ``plugins { deny: [monitor_views] }`` turns it off.
"""

from __future__ import annotations

from natsd import hookimpl
from natsd.plugin.contracts import ServerAPI
from natsd.plugin.manager import PluginManager

from . import hookspecs
from .views import View, forget, monitor_of


@hookimpl
def natsd_addhooks(pluginmanager: PluginManager) -> None:
    pluginmanager.add_hookspecs(hookspecs)


@hookimpl
def natsd_system_views(server: ServerAPI) -> dict[str, View]:
    return monitor_of(server).system_views()


@hookimpl
def natsd_shutdown(server: ServerAPI) -> None:
    forget(server)
