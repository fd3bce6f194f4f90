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
The ``server`` they receive is a :class:`natsd.plugin.contracts.ServerAPI`.
Hooks are called through pluggy, so its markers work as documented:
``@hookimpl(tryfirst=True)`` / ``trylast=True`` order an implementation
among the others, ``wrapper=True`` wraps them, and ``optionalhook=True``
marks an implementation of a hook that another plugin declares (see
:func:`natsd_addhooks`) and that may be absent.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from natsd.config import ServerConfig

    from .contracts import (
        Authenticator,
        Bridge,
        InterestListener,
        Listener,
        MessageTracer,
        Observer,
        ServerAPI,
        StorageBackend,
    )
    from .manager import OptionParser, PluginManager

PROJECT = "natsd"
hookspec = pluggy.HookspecMarker(PROJECT)
"""Marks a hook specification (for plugins that declare hooks of their own)."""
hookimpl = pluggy.HookimplMarker(PROJECT)
"""Marks a plugin function as a hook implementation (``@natsd.hookimpl``)."""


# -------------------------------------------------------------------------
# Registration and the command line
# -------------------------------------------------------------------------


@hookspec(historic=True)
def natsd_addhooks(pluginmanager: PluginManager) -> None:
    """Declare the hooks this plugin offers to other plugins.

    Call ``pluginmanager.add_hookspecs(module)`` with a module of functions
    marked ``@natsd.plugin.hookspecs.hookspec``. The monitoring plugin
    declares ``natsd_monitor_endpoints`` and ``natsd_metrics`` this way. A
    plugin implementing a hook declared by a plugin that may be absent marks
    it ``@hookimpl(optionalhook=True)``.

    Historic: called for every plugin as it registers, so declarations are
    in place before hook implementations are checked.
    """


@hookspec
def natsd_addoption(parser: OptionParser) -> None:
    """Add command-line options to ``natsd`` (they show in ``natsd --help``).

    ``parser.group(title)`` returns a group whose ``add_option(*flags,
    config=..., apply=..., **argparse_kwargs)`` adds an option. An option
    given on the command line sets the dotted config key ``config`` to its
    value (``"cluster.routes"`` sets ``routes`` in the ``cluster {}`` block;
    the flag wins over the file, on reload too), or calls ``apply(value,
    blocks)`` to change the plugin-owned top-level ``blocks`` itself. Options
    set only keys of blocks a plugin owns (see :func:`natsd_config_blocks`).

    Called once by the command line, after plugins are loaded (the config
    file's ``plugins {}`` and ``--plugin`` are read first).
    """


@hookspec(firstresult=True)
def natsd_cmdline_main(config: ServerConfig, argv: list[str]) -> int | None:
    """Run this process instead of one server, and return its exit code.

    Called by the command line once the config file and flags are read
    (``config``, with ``argv`` as given), before a server is made. Return
    ``None`` to let natsd run its server, or an exit code after running
    something else: the cluster plugin runs a supervisor of several worker
    processes for ``--workers N``. ``firstresult``: the first non-``None``
    answer wins.
    """


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
    server: ServerAPI, config: ServerConfig, block: Mapping[str, Any] | None
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
def natsd_listeners(server: ServerAPI) -> Iterable[Listener] | None:
    """Return extra listeners to run beside the client port.

    A :class:`natsd.plugin.contracts.Listener` has ``async start()`` and ``async
    stop()``; it accepts connections of its own transport (a Unix socket,
    WebSocket, MQTT ...) and hands NATS client connections to the core with
    ``server.client_protocol()`` (a :class:`natsd.plugin.contracts.ClientProtocol`) or, for a
    non-NATS protocol, drives an in-process client from
    ``server.connect_internal(...)``. A listener whose clients need what
    other plugins start (an MQTT session kept in JetStream) also defines
    ``async serving()``: the server calls it once every plugin's start-up
    (:func:`natsd_startup`) is done, and the listener accepts from then on.

    Called once at start-up, after :func:`natsd_configure`.
    """


# -------------------------------------------------------------------------
# Authentication
# -------------------------------------------------------------------------


@hookspec
def natsd_authenticators(server: ServerAPI) -> Iterable[Authenticator] | None:
    """Return authenticators consulted for each CONNECT.

    When any authenticator is configured the server announces
    ``auth_required`` and starts the auth timeout. For every CONNECT the core
    calls ``authenticate(request)`` on each authenticator in turn: the first
    :class:`natsd.plugin.contracts.AuthResult` wins; ``None`` means "not mine". A
    refusal (an ``AuthResult`` with ``ok=False``) answers
    ``-ERR 'Authorization Violation'`` and its ``reason`` reaches the server
    log, never the client. An authenticator with a ``transports`` attribute
    applies only to those transports (a WebSocket block's own credentials).

    Called once at start-up. Per connection, not per message.
    """


# -------------------------------------------------------------------------
# Persistence and storage
# -------------------------------------------------------------------------


@hookspec
def natsd_storage_backends(server: ServerAPI) -> Mapping[str, StorageBackend] | None:
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
def natsd_bridges(server: ServerAPI) -> Iterable[Bridge] | None:
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
def natsd_startup(server: ServerAPI) -> Awaitable[None] | None:
    """The server is listening; run start-up work (may return an awaitable).

    Called after listeners and bridges have started, before ``Server.start``
    returns; the client port is bound but accepts connections only once every
    plugin's start-up has finished (a client that comes meanwhile is refused
    and retries).
    An exception stops the start-up.
    """


@hookspec
def natsd_stopping(server: ServerAPI) -> None:
    """The server is about to shut down: clients are still connected.

    The last moment to tell them something (a shutdown event, a final
    flush). Exceptions are logged.
    """


@hookspec
def natsd_reload(
    server: ServerAPI, old: ServerConfig, new: ServerConfig, block: Mapping[str, Any] | None
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
def natsd_lame_duck(server: ServerAPI) -> Awaitable[None] | None:
    """The server entered lame-duck mode (SIGUSR2, ``natsd --signal ldm``).

    The client port has stopped accepting; clients will be closed spread
    over ``lame_duck_duration`` and the server will then shut down. Stop
    accepting on the plugin's own ports and tell peers (may return an
    awaitable). Exceptions are logged.
    """


@hookspec
def natsd_shutdown(server: ServerAPI) -> Awaitable[None] | None:
    """The server is shutting down; release resources (may return an awaitable).

    Called after clients are closed and listeners stopped. Exceptions are
    logged and do not stop the other plugins' shutdown.
    """


# -------------------------------------------------------------------------
# Observation
# -------------------------------------------------------------------------


@hookspec
def natsd_system_views(server: ServerAPI) -> Mapping[str, Any] | None:
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
def natsd_interest_listeners(server: ServerAPI) -> InterestListener | Iterable[InterestListener] | None:
    """Return listeners of interest changes: which subjects each account has subscribers for.

    This is how a plugin that links servers learns what to announce (routes
    send ``RS+``/``RS-``, leaf nodes ``LS+``/``LS-``). A
    :class:`natsd.plugin.contracts.InterestListener` names the connection
    kinds whose subscriptions count and hears, per account, the first and
    last subscription of each subject and every change of a queue group's
    weight, whichever way it happened (SUB, UNSUB, auto-unsubscribe, a
    connection's close, in-process clients, imports, a reload).
    ``server.interest.weights(account, kinds)`` gives the current state (for
    a link that has just come up).

    Called once at start-up, after :func:`natsd_configure`. Without any
    listener, subscribing costs nothing more.
    """


@hookspec
def natsd_observers(server: ServerAPI) -> Observer | Iterable[Observer] | None:
    """Return observers of connections and messages.

    An observer defines any of ``client_connected(client)``,
    ``client_closed(client, reason)``, ``client_dropped(client, reason)`` (a
    client connection closed before its CONNECT was accepted: refused, timed
    out or gone), ``auth_failed(client, reason)`` (a refused CONNECT;
    ``reason`` is the log text), ``subscribed(client, sub)``,
    ``unsubscribed(client, sub)``,
    ``message_published(client, account, subject, reply, headers, payload)``,
    ``link_connected(link)`` and ``link_closed(link, reason)`` (a connection
    to another server, reported by the plugin that owns it)
    (see :class:`natsd.plugin.contracts.Observer`). The core collects the bound
    methods that exist once, at start-up: a method an observer does not
    define costs nothing per message, and one it defines is called
    synchronously on the event loop, so it must be quick and must not raise
    (errors are logged and the observer keeps its place).
    """


@hookspec
def natsd_message_tracers(server: ServerAPI) -> MessageTracer | Iterable[MessageTracer] | None:
    """Return tracers of published messages (:class:`natsd.plugin.contracts.MessageTracer`).

    A tracer picks the messages it follows (by header, or all) and gets a
    :class:`natsd.plugin.contracts.MessageTrace` told each step of their
    routing: subject mapping, account crossings, each delivery and link,
    a stream's store. nats-server's message tracing (``Nats-Trace-Dest``)
    and OpenTelemetry spans are built this way. Called once at start-up,
    after :func:`natsd_configure`. Without tracers, publishing costs
    nothing more; a tracer triggered by headers costs messages without
    headers nothing either.
    """
