"""natsd: a NATS-compatible message broker built as a pluggy plugin framework.

The routing core lives here; everything else (clustering, JetStream, MQTT,
WebSocket, tracing) plugs in through the hooks in :mod:`natsd.plugin.hookspecs`::

    from natsd import Server

    async with Server({"port": 0}) as server:
        ...  # connect any NATS client to server.client_url
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

from natsd import compiled
from natsd.plugin.compiled import declare as declare_compiled
from natsd.plugin.hookspecs import hookimpl

compiled.install()  # before any compiled module is imported (see natsd.compiled)

NATS_SERVER_VERSION = "2.15.1"
"""The nats-server release whose client-visible behaviour natsd implements.

Clients pick code paths by the ``version`` in INFO, so this is what natsd
announces there, in system events and in ``/varz``; natsd's own version
(:data:`__version__`) is ``natsd_version`` in ``/varz``, and ``natsd -v``
prints both.
"""

if TYPE_CHECKING:
    from natsd.config import ConfigError, ServerConfig
    from natsd.plugin.contracts import ServerAPI
    from natsd.plugin.stash import StashKey
    from natsd.server import Server

__all__ = [
    "NATS_SERVER_VERSION",
    "ConfigError",
    "Server",
    "ServerAPI",
    "ServerConfig",
    "StashKey",
    "__version__",
    "declare_compiled",
    "hookimpl",
]


def __getattr__(name: str) -> Any:
    # Lazy so that `import natsd` (e.g. by the pytest plugin) stays cheap.
    if name == "Server":
        from natsd.server import Server
        return Server
    if name in ("ServerConfig", "ConfigError"):
        from natsd import config
        return getattr(config, name)
    if name == "StashKey":
        from natsd.plugin.stash import StashKey
        return StashKey
    if name == "ServerAPI":
        from natsd.plugin.contracts import ServerAPI
        return ServerAPI
    raise AttributeError(name)
