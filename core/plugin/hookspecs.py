"""The natsd extension contract: every hook a plugin can implement.

A plugin is a module or object whose functions carry the ``@natsd.hookimpl``
marker and are named after the specs below. Plugins are found through the
``natsd`` entry-point group (first-party ones included), through
``plugins { modules: [...] }`` in the config file and ``--plugin MODULE`` on
the command line, or passed to :class:`natsd.Server` directly.

Hooks are called at start-up, configuration and connection time, never once
per message: a hook that handles traffic *returns* the object whose methods
the core calls per message. A plugin that does not implement a hook costs
nothing. pluggy has no async support, so hooks that need to do I/O return an
awaitable, which the core awaits.

Every hook receives keyword arguments; a plugin declares only those it uses.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from natsd.config import ServerConfig
    from .contracts import Authenticator, Bridge, Listener, Observer, StorageBackend
    from natsd.server import Server

PROJECT = "natsd"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)
"""Marks a plugin function as a hook implementation (``@natsd.hookimpl``)."""


# -------------------------------------------------------------------------
# Configuration
# -------------------------------------------------------------------------


@hookspec
def natsd_config_blocks() -> Iterable[str] | None:
    """Return the top-level config keys this plugin owns (for example ``["mqtt"]``).

    A block such as ``mqtt { port: 1883 }`` in the config file is handed to
    the plugin that owns it, and enables it: a plugin that owns blocks and is
    installed but whose blocks are all absent is not asked for listeners,
    bridges or observers. A key owned by two plugins is a start-up error.
    An owned key may hold a single value instead of a block (the monitoring
    plugin owns ``http_port: 8222``); a plugin owning several keys reads
    every one of them from ``config.blocks``.

    Called once, before the config file is validated.
    """


@hookspec
def natsd_configure(
    server: Server, config: ServerConfig, block: Mapping[str, Any] | None
) -> None:
    """Validate and take the plugin's configuration.

    :param server: the server being configured (not listening yet).
    :param config: the whole server configuration (read-only by convention).
    :param block: the plugin's own block: the contents of the top-level key
        it owns (see :func:`natsd_config_blocks`) or of
        ``plugins { <name> { ... } }``, as a :class:`natsd.config.conf.ConfMap` whose
        ``where(key)`` gives file and line. ``None`` when absent.

    Raise :class:`natsd.config.ConfigError` (build it with
    ``natsd.config.config_error(block, key, reason)``) to refuse a value; the
    server does not start and the operator sees the file, line and key.
    ``natsd -t`` runs this hook too, so a config check covers plugin blocks.
    """


# -------------------------------------------------------------------------
# Transports and listeners
# -------------------------------------------------------------------------


@hookspec
def natsd_listeners(server: Server) -> Iterable[Listener] | None:
    """Return extra listeners to run beside the client port.

    A :class:`natsd.plugin.contracts.Listener` has ``async start()`` and ``async
    stop()``; it accepts connections of its own transport (a Unix socket,
    WebSocket, MQTT ...) and hands NATS client connections to the core with
    ``server.client_protocol()`` (an :class:`asyncio.Protocol`) or, for a
    non-NATS protocol, drives an in-process client from
    ``server.connect_internal(...)``.

    Called once at start-up, after :func:`natsd_configure`.
    """


# -------------------------------------------------------------------------
# Authentication
# -------------------------------------------------------------------------


@hookspec
def natsd_authenticators(server: Server) -> Iterable[Authenticator] | None:
    """Return authenticators consulted for each CONNECT.

    When any authenticator is configured the server announces
    ``auth_required`` and starts the auth timeout. For every CONNECT the core
    calls ``authenticate(request)`` on each authenticator in turn: the first
    :class:`natsd.plugin.contracts.AuthResult` wins; ``None`` means "not mine". A
    refusal (an ``AuthResult`` with ``ok=False``) answers
    ``-ERR 'Authorization Violation'`` and its ``reason`` reaches the server
    log, never the client.

    Called once at start-up. Per connection, not per message.
    """


# -------------------------------------------------------------------------
# Persistence and storage
# -------------------------------------------------------------------------


@hookspec
def natsd_storage_backends(server: Server) -> Mapping[str, StorageBackend] | None:
    """Return storage backends by name, for the subsystems that persist messages.

    Backends appear in ``server.storage_backends``; persistence features pick
    one by the name given in their config (``store: memory``). Two plugins
    offering the same name is a start-up error.

    Called once at start-up.
    """


# -------------------------------------------------------------------------
# Bridges
# -------------------------------------------------------------------------


@hookspec
def natsd_bridges(server: Server) -> Iterable[Bridge] | None:
    """Return bridges that move messages between natsd and another system.

    A :class:`natsd.plugin.contracts.Bridge` gets ``async start(server)`` once the
    server listens and ``async stop()`` on shutdown. It talks to the broker
    through ``server.connect_internal(name, account)``, an in-process client
    with ``subscribe`` and ``publish``, and to the outside world however it
    likes (an MQTT broker through aiomqtt, an HTTP service ...).
    """


# -------------------------------------------------------------------------
# Lifecycle
# -------------------------------------------------------------------------


@hookspec
def natsd_startup(server: Server) -> Awaitable[None] | None:
    """The server is listening; run start-up work (may return an awaitable).

    Called after listeners and bridges have started, before ``Server.start``
    returns. An exception stops the start-up.
    """


@hookspec
def natsd_stopping(server: Server) -> None:
    """The server is about to shut down: clients are still connected.

    The last moment to tell them something (a shutdown event, a final
    flush). Exceptions are logged.
    """


@hookspec
def natsd_reload(
    server: Server, old: ServerConfig, new: ServerConfig, block: Mapping[str, Any] | None
) -> Callable[[], Awaitable[None] | None] | None:
    """The config is being reloaded (SIGHUP, ``natsd --signal reload``): check, then apply.

    :param old: the running configuration.
    :param new: the configuration read again (command-line flags applied).
    :param block: the plugin's new block (as for :func:`natsd_configure`).

    Check what concerns the plugin and raise :class:`natsd.config.ConfigError`
    (``config_error(block, key, "config reload not supported for ...")``) to
    refuse the whole reload: nothing changes and the operator sees the key.
    To accept, return a callable that applies the change (it may return an
    awaitable), or ``None`` when there is nothing to do. The callables run
    only after every plugin and the core have accepted, so a refusal by one
    plugin never leaves another half-reloaded. Authenticators are collected
    again afterwards (:func:`natsd_authenticators`) and connected clients are
    checked against them.

    A plugin that owns config blocks but does not implement this hook cannot
    reload them: a change to its block is refused, naming the key.
    Called once per reload, on the event loop, never per message.
    """


@hookspec
def natsd_lame_duck(server: Server) -> Awaitable[None] | None:
    """The server entered lame-duck mode (SIGUSR2, ``natsd --signal ldm``).

    The client port has stopped accepting; clients will be closed spread
    over ``lame_duck_duration`` and the server will then shut down. Stop
    accepting on the plugin's own ports and tell peers (may return an
    awaitable). Exceptions are logged.
    """


@hookspec
def natsd_shutdown(server: Server) -> Awaitable[None] | None:
    """The server is shutting down; release resources (may return an awaitable).

    Called after clients are closed and listeners stopped. Exceptions are
    logged and do not stop the other plugins' shutdown.
    """


# -------------------------------------------------------------------------
# Observation
# -------------------------------------------------------------------------


@hookspec
def natsd_system_views(server: Server) -> Mapping[str, Any] | None:
    """Return views answered over the system account, by name.

    A view is ``view(options) -> object``: ``options`` is the request's JSON
    object (``{}`` for an empty request) and the result is sent back as the
    ``data`` of nats-server's ``{"server": {...}, "data": ...}`` reply. A name
    such as ``"VARZ"`` answers ``$SYS.REQ.SERVER.PING.VARZ`` and
    ``$SYS.REQ.SERVER.<id>.VARZ``; ``"ACCOUNT.CONNZ"`` answers
    ``$SYS.REQ.ACCOUNT.<acc>.CONNZ`` with ``options["account"]`` set. Raise
    ``ValueError`` for bad options (a 400 error reply).
    """


@hookspec
def natsd_observers(server: Server) -> Observer | Iterable[Observer] | None:
    """Return observers of connections and messages.

    An observer defines any of ``client_connected(client)``,
    ``client_closed(client, reason)``, ``auth_failed(client, reason)`` (a
    refused CONNECT; ``reason`` is the log text), ``subscribed(client, sub)``,
    ``unsubscribed(client, sub)`` and
    ``message_published(client, account, subject, reply, headers, payload)``
    (see :class:`natsd.plugin.contracts.Observer`). The core collects the bound
    methods that exist once, at start-up: a method an observer does not
    define costs nothing per message, and one it defines is called
    synchronously on the event loop, so it must be quick and must not raise
    (errors are logged and the observer keeps its place).
    """


# -------------------------------------------------------------------------
# Monitoring
# -------------------------------------------------------------------------


@hookspec
def natsd_monitor_endpoints(server: Server) -> Mapping[str, Any] | None:
    """Return monitoring endpoints by path, such as ``{"/routez": view}``.

    The monitoring plugin (``natsd_plugins.monitor``) serves them on its HTTP
    port, under ``http_base_path``, and over the system account as
    ``$SYS.REQ.SERVER.PING.<NAME>`` and ``$SYS.REQ.SERVER.<id>.<NAME>``
    (``/routez`` answers ``ROUTEZ``). A view is ``view(params) -> object``:
    ``params`` maps option names to values, the query string's parameters
    (strings, the first of repeated ones) over HTTP and the request's JSON
    object over the system account; the result is sent as JSON. Raise
    ``ValueError(text)`` for bad parameters: HTTP 400 with ``text`` as body.

    A plugin's path replaces the monitoring plugin's own answer: natsd serves
    nats-server's empty shapes for ``/routez``, ``/leafz``, ``/gatewayz`` and
    ``/jsz`` until cluster, leafnode, gateway or JetStream plugins provide
    them. A path offered by two plugins is a start-up error.

    Called once per server, when its monitoring views are first built.
    Added with the monitoring plugin.
    """


@hookspec
def natsd_metrics(server: Server, registry: Any) -> None:
    """Register Prometheus metrics on ``registry`` for ``/metrics``.

    ``registry`` is the server's own ``prometheus_client.CollectorRegistry``.
    Register a collector whose ``collect()`` reads the plugin's counters at
    scrape time (``registry.register(collector)``), so that nothing is
    updated once per message. Name metrics ``nats_<plugin>_...``.

    Called once, when the monitoring plugin builds the registry (only when
    the HTTP port is enabled). Added with the monitoring plugin.
    """
