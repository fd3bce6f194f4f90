"""The server: configuration, plugins, listeners, accounts and the flush loop.

:class:`Server` is what the command line runs and what applications embed::

    async with Server({"port": 0}) as server:
        print(server.client_url)     # nats://127.0.0.1:<free port>

It owns the accounts, the connected clients and the list of connections
written to during the current read (``dirty``), which :meth:`Server.flush`
writes out once per read.
"""

from __future__ import annotations

import asyncio
import datetime
import functools
import logging
import os
import platform
import socket
import subprocess
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import Any, cast

from natsd import NATS_SERVER_VERSION, __version__, compiled
from natsd import config as config_mod
from natsd.config import ConfigError, ServerConfig
from natsd.config.conf import ConfError, ConfMap, digest, parse_file
from natsd.config.tls import TLSSettings
from natsd.conn.client import Client, ObservedClient, TracedClient, TracingClient
from natsd.conn.tlsgate import TLSGate
from natsd.plugin.auth import AuthChain
from natsd.plugin.contracts import AuthRequest, AuthResult, Bridge, Listener, StorageBackend
from natsd.plugin.manager import PluginManager
from natsd.plugin.stash import Stash
from natsd.routing.account import GLOBAL_ACCOUNT, SYSTEM_ACCOUNT, Account, configure_accounts
from natsd.routing.connection import SERVER_SHUTDOWN, Connection, Kind, Observers, notify
from natsd.routing.interest import InterestRegistry
from natsd.routing.internal import InternalClient
from natsd.routing.stats import ClosedClient, Totals, record_close
from natsd.routing.trace import Tracing
from natsd.security.nkeys import CurveKeyPair, KeyPair, Prefix
from natsd.wire.protocol import encode_info

log = logging.getLogger("natsd.server")
conn_log = logging.getLogger("natsd.client")

JS_API_LEVEL = 5
"""The JetStream API level nats-server 2.15.1 announces in INFO (``api_lvl``), JetStream on or not."""

FEATURE_FLAGS = {"js_ack_fc_v2": False, "js_api_reply_v2": False, "js_raft_delete_range": True,
                 "js_snapshot_sources": False}
"""nats-server 2.15.1's feature flags as its release binary reports them (``/varz`` and the
``server`` object of system messages show them; they concern JetStream)."""

INFO_KEYS = (
    "server_id", "server_name", "version", "proto", "git_commit", "go", "host", "port", "headers",
    "auth_required", "tls_required", "tls_verify", "tls_available", "max_payload", "jetstream", "ip",
    "client_id", "client_ip", "nonce", "cluster", "cluster_dynamic", "domain", "connect_urls",
    "ws_connect_urls", "ldm", "compression", "connect_info", "remote_account", "acc_is_sys", "api_lvl",
    "import", "export", "lnoc", "lnocu", "info_on_connect", "route_pool_size", "route_pool_idx",
    "route_account", "route_acc_add_reqid", "gossip_mode", "gateway", "gateway_urls", "gateway_url",
    "gateway_cmd", "gateway_cmd_payload", "gateway_nrp", "gateway_iom", "leafnode_urls", "xkey",
)
"""INFO keys in nats-server's order (its ``Info`` struct); every INFO natsd sends follows it."""

_INFO_RANK = {key: i for i, key in enumerate(INFO_KEYS)}


def info_in_order(info: Mapping[str, Any]) -> dict[str, Any]:
    """``info`` with its keys in :data:`INFO_KEYS` order; other keys (a plugin's own) last."""
    last = len(_INFO_RANK)
    return dict(sorted(info.items(), key=lambda item: _INFO_RANK.get(item[0], last)))


@functools.cache
def git_commit() -> str:
    """The short commit of the natsd checkout this code runs from; "" for an installed release.

    INFO and ``/varz`` carry it as ``git_commit`` (nats-server leaves it out
    when its build has none, and so does natsd).
    """
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        tracked = subprocess.run(["git", "-C", here, "ls-files", "--error-unmatch", "server.py"],
                                 capture_output=True, timeout=5)
        if tracked.returncode != 0:  # not natsd's repository (e.g. a venv inside another one)
            return ""
        head = subprocess.run(["git", "-C", here, "rev-parse", "--short=7", "HEAD"],
                              capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return ""
    return head.stdout.strip() if head.returncode == 0 else ""


SHUTDOWN_FLUSH = 2.0
"""Seconds a shutdown waits at most for closed connections to take their pending data."""


def build_config(conf: Mapping[str, Any], plugins: PluginManager,
                 extra_plugins: Iterable[object | str] = (), source: str | None = None
                 ) -> ServerConfig:
    """Load plugins named by ``conf`` and validate ``conf`` with their blocks."""
    plugins.load(config_mod.plugin_settings(conf), extra_plugins)
    owned = plugins.config_blocks()
    return config_mod.load(conf, owned, source=source)


class Server:
    """A natsd server; use ``async with`` or :meth:`start` / :meth:`shutdown`.

    ``config`` is a :class:`ServerConfig`, a mapping with config-file keys
    (``{"port": 0, "max_payload": "1MB"}``) or a path to a config file.
    ``plugins`` are extra plugin objects or module names to register.
    """

    def __init__(self, config: ServerConfig | Mapping[str, Any] | str | os.PathLike[str] | None = None,
                 *, plugins: Iterable[object | str] = (),
                 plugin_manager: PluginManager | None = None) -> None:
        self.plugins = plugin_manager or PluginManager()
        extra = list(plugins)
        if config is None:
            config = {}
        if isinstance(config, (str, os.PathLike)):
            path = os.fspath(config)
            config = build_config(parse_file(path), self.plugins, extra, source=path)
        elif isinstance(config, Mapping):
            config = build_config(config if isinstance(config, ConfMap) else dict(config),
                                  self.plugins, extra)
        else:
            self.plugins.load(config.plugins, extra)
            self.plugins.config_blocks()
        self.config: ServerConfig = config
        self.server_key = KeyPair.create(Prefix.SERVER)
        self.server_id = self.server_key.public_key  # as nats-server: its NKey signs its requests
        self.curve_key = CurveKeyPair.create()
        """The server's x25519 key pair; INFO announces its public key as ``xkey``."""
        self.name = config.server_name or self.server_id
        self.loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]
        self.accounts: dict[str, Account] = {}
        self.interest = InterestRegistry(self.accounts)
        self._egress: tuple[Any, ...] = ()
        self.global_account = self.lookup_account(GLOBAL_ACCOUNT, create=True)
        for name in config.accounts:
            self.lookup_account(name, create=True)
        self.clients: dict[int, Connection] = {}
        self.dirty: list[Connection] = []
        self.slow_consumers = 0
        self.stale_connections = 0
        # For monitoring (natsd.routing.stats): counted per connection, never per message.
        self.start_time = time.time()
        self.total_connections = 0
        self.closed_totals = Totals()
        self.closed_clients: deque[ClosedClient] = deque(maxlen=config.max_closed_clients)
        self.auth = AuthChain()
        self.links: Any = None
        self.system_account: Account | None = None
        self.storage_backends: dict[str, StorageBackend] = {}
        self.observers = Observers()
        self.tracing = Tracing()
        self.stash = Stash()
        """Per-server plugin state under typed keys (see :mod:`natsd.plugin.stash`)."""
        self._services: dict[str, object] = {}
        self._client_class: type[Client] = Client
        self._cid = 0
        self._event_seq = 0
        self._flush_scheduled = False
        self._listener: asyncio.AbstractServer | None = None
        self._listeners: list[Listener] = []
        self._bridges: list[Bridge] = []
        self._internal: set[InternalClient] = set()
        self._info: dict[str, Any] = {}
        self._info_fields: dict[str, Any] = {}  # INFO fields plugins contribute (update_info)
        self._stopped: asyncio.Event | None = None
        self._state = "new"
        self._reload_lock: asyncio.Lock | None = None
        self._lame_duck: asyncio.Task[None] | None = None
        self.flag_overrides: Callable[[ServerConfig], ServerConfig] | None = None
        """Re-applies command-line flags to a reloaded config (set by the CLI)."""
        self.ports: dict[str, list[str]] = {}
        self.acceptors: dict[str, Callable[[str], asyncio.Protocol]] = {}
        """URLs per kind of port (``nats``, ``monitoring`` ...), for ``ports_file_dir``;
        plugins add theirs at start-up."""
        self.host = config.host
        self.port = config.port
        self.tls: TLSSettings | None = config.tls
        """The client port's TLS settings for new connections (see :meth:`reload_tls`)."""
        self.config_digest = ""
        """nats-server's digest of the config file (``/varz`` ``config_digest``); "" without one."""

    # -- lifecycle -------------------------------------------------------------

    async def start(self) -> None:
        """Configure plugins, listen on the client port, start listeners and bridges."""
        if self._state != "new":
            raise RuntimeError(f"server already {self._state}")
        self._state = "starting"
        self.loop = asyncio.get_running_loop()
        self._stopped = asyncio.Event()
        self.start_time = time.time()
        cfg = self.config
        try:
            self.configure()
        except BaseException:
            self._state = "stopped"
            raise
        self.auth = AuthChain(self.plugins.authenticators(self))
        if not self.auth.required and (cfg.authorization or _has_users(cfg.accounts)):
            self._state = "stopped"
            raise ConfigError(
                "users are configured but no plugin authenticates them (is the "
                "authentication plugin denied in plugins {} or not installed?)",
                file=cfg.source, key="authorization" if cfg.authorization else "accounts")
        self.storage_backends = self.plugins.storage_backends(self)
        for watcher in self.plugins.interest_listeners(self):
            self.interest.listen(watcher, watcher.kinds)
        self.observers = self.plugins.observers(self)
        self.tracing = Tracing(self.plugins.message_tracers(self))
        self._pick_client_class()
        log.info("Starting natsd (nats-server %s compatible)", NATS_SERVER_VERSION)
        log.info("  Version:  %s", __version__)
        log.info("  Name:     %s", self.name)
        log.info("  ID:       %s", self.server_id)
        self.config_digest = self._digest()
        if cfg.source:
            log.info("Using configuration file: %s (%s)", cfg.source, self.config_digest)
        log.info("Plugins: %s", ", ".join(self.plugins.names()) or "none")
        log.info("Compiled modules: %s", compiled.summary())
        try:
            # bound now, accepting once plugins have started (a JetStream recovering its streams):
            # a client that comes meanwhile is refused and retries, rather than find no responders
            self._listener = await self.loop.create_server(
                self._client_port_protocol, host=cfg.host or None, port=cfg.port,
                reuse_address=True, reuse_port=cfg.reuse_port or None, backlog=1024, start_serving=False)
        except OSError as exc:
            self._state = "stopped"
            raise OSError(exc.errno, f"cannot listen on {cfg.host}:{cfg.port}: {exc.strerror}") from exc
        sock = self._listener.sockets[0]
        self.host, self.port = sock.getsockname()[:2]
        self._info = self._base_info()
        self.ports["nats"] = [self.client_url]
        log.info("Listening for client connections on %s:%d", self.host, self.port)
        if self.tls is not None:
            log.info("TLS required for client connections")
            if self.tls.handshake_first and not self.tls.fallback_delay:
                log.warning('Clients that are not using "TLS Handshake First" option will fail to connect')
        try:
            self._listeners = self.plugins.listeners(self)
            for listener in self._listeners:
                await listener.start()
            self._bridges = self.plugins.bridges(self)
            for bridge in self._bridges:
                await bridge.start(self)
            await self.plugins.startup(self)
            for listener in self._listeners:
                serving = getattr(listener, "serving", None)
                if serving is not None:
                    await serving()
            await self._listener.start_serving()
        except BaseException:
            await self.shutdown()
            raise
        self._write_pid_file()
        self._write_ports_file()
        self._state = "running"
        log.info("Server is ready")

    def configure(self) -> None:
        """Set up accounts and their links, hand plugins their blocks (``start`` and ``natsd -t``)."""
        cfg = self.config
        name = cfg.system_account or SYSTEM_ACCOUNT
        if self.links is None:
            configure_accounts(self, cfg)
            if not cfg.no_system_account and (name == SYSTEM_ACCOUNT or name in cfg.accounts):
                self.system_account = self.lookup_account(name, create=True)
        self.plugins.configure(self, cfg)  # a plugin may name the system account (operator JWTs)
        if self.system_account is None and not cfg.no_system_account:
            raise ConfigError(f"system account {name!r} is not defined in accounts {{}}",
                              file=cfg.source, key="system_account")

    async def shutdown(self) -> None:
        """Stop accepting, close every client, stop plugins; idempotent."""
        if self._state in ("stopping", "stopped", "new"):
            if self._state == "new":
                self._state = "stopped"
            return
        self._state = "stopping"
        lame_duck = self._lame_duck
        if lame_duck is not None and lame_duck is not asyncio.current_task():
            lame_duck.cancel()
        log.info("Initiating Shutdown...")
        self.plugins.stopping(self)
        self.flush()
        if self._listener is not None:
            self._listener.close()
        draining = []
        for conn in list(self.clients.values()):
            conn.close(SERVER_SHUTDOWN)
            io = getattr(conn, "io", None)
            if io is not None:
                draining.append(io)
        await self._drain(draining)
        for listener in reversed(self._listeners):
            await _quietly(listener.stop(), f"listener {listener!r}")
        for bridge in reversed(self._bridges):
            await _quietly(bridge.stop(), f"bridge {bridge!r}")
        for internal in list(self._internal):
            internal.close(SERVER_SHUTDOWN)
        await self.plugins.shutdown(self)
        if self._listener is not None:
            await _quietly(self._listener.wait_closed(), "client listener")
        for path in (self.config.pid_file, self._ports_file()):
            if path:
                try:
                    os.unlink(path)
                except FileNotFoundError:
                    pass
        self._state = "stopped"
        assert self._stopped is not None
        self._stopped.set()
        log.info("Server Exiting..")

    async def _drain(self, transports: list[Any]) -> None:
        """Let closed connections' transports write what they still hold, within a bound.

        A client that reads keeps every message accepted before the shutdown;
        one that does not is cut when the bound (``write_deadline``, at most
        :data:`SHUTDOWN_FLUSH`) passes, so that a stuck client cannot hold the
        exit up.
        """
        loop = self.loop
        deadline = loop.time() + min(self.config.write_deadline, SHUTDOWN_FLUSH)
        pending = [t for t in transports if _unsent(t)]
        while pending and loop.time() < deadline:
            await asyncio.sleep(0.01)
            pending = [t for t in pending if _unsent(t)]
        for transport in pending:
            transport.abort()
        if pending:
            log.warning("Shutdown: %d connection(s) did not take their pending data in time",
                        len(pending))

    async def reload(self, config: ServerConfig | Mapping[str, Any] | None = None) -> list[str]:
        """Re-read the config file (or take ``config``) and apply what may change.

        Returns the changed settings. Raises :class:`ConfigError` (the running
        configuration kept) for a broken file, a setting that cannot change
        while running, or a plugin's refusal; see :mod:`natsd.reload`.
        """
        from natsd import reload as reload_mod

        if self._reload_lock is None:
            self._reload_lock = asyncio.Lock()
        async with self._reload_lock:
            if not self.running:
                raise RuntimeError(f"cannot reload a server that is {self._state}")
            if config is None:
                source = self.config.source
                if not source:
                    raise ConfigError("can only reload config when a file is provided "
                                      "using -c or --config")
                config = build_config(parse_file(source), self.plugins, source=source)
            elif isinstance(config, Mapping):
                config = build_config(config if isinstance(config, ConfMap) else dict(config),
                                      self.plugins)
            if self.flag_overrides is not None:
                config = self.flag_overrides(config)
            return await reload_mod.reload(self, config)

    def after_reload(self, changed: list[str]) -> None:
        """Refresh what the core derived from the config (called by :mod:`natsd.reload`)."""
        self.auth = AuthChain(self.plugins.authenticators(self))
        self.tracing.refresh()
        self._pick_client_class()
        self._info = self._base_info()
        self.config_digest = self._digest()
        if "pid_file" in changed:
            self._write_pid_file()

    def lame_duck(self) -> None:
        """Enter lame-duck mode: stop accepting, tell clients, close them gradually, exit.

        Clients get an INFO with ``"ldm": true``; after ``lame_duck_grace_period``
        they are closed spread over the rest of ``lame_duck_duration``, then the
        server shuts down. Idempotent; :meth:`shutdown` cuts it short.
        """
        if self._state != "running" or self._lame_duck is not None:
            return
        self._lame_duck = self.loop.create_task(self._lame_duck_mode())

    async def _lame_duck_mode(self) -> None:
        import random

        cfg = self.config
        log.info("Entering lame duck mode, stop accepting new clients")
        if self._listener is not None:
            self._listener.close()
        await self.plugins.lame_duck(self)
        clients = list(self.clients.values())
        if not clients:
            await self.shutdown()
            return
        self.broadcast_info(ldm=True)
        await asyncio.sleep(cfg.lame_duck_grace_period)
        log.info("Closing existing clients")
        spread = max(cfg.lame_duck_duration - cfg.lame_duck_grace_period, 1.0)
        interval = min(spread / len(clients), 1.0)  # as nats-server: at most a second apart
        for i, client in enumerate(clients):
            client.close(SERVER_SHUTDOWN)
            if i < len(clients) - 1:
                await asyncio.sleep(random.uniform(interval / 2, interval))
        await self.shutdown()

    @property
    def in_lame_duck(self) -> bool:
        return self._lame_duck is not None

    async def wait_stopped(self) -> None:
        """Wait until :meth:`shutdown` has finished."""
        assert self._stopped is not None, "server not started"
        await self._stopped.wait()

    async def __aenter__(self) -> Server:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.shutdown()

    @property
    def running(self) -> bool:
        return self._state == "running"

    @property
    def client_url(self) -> str:
        """``nats://host:port`` to connect to (loopback when listening on all interfaces)."""
        host = self.host
        if host in ("0.0.0.0", "", "::"):
            host = "127.0.0.1"
        elif ":" in host:
            host = f"[{host}]"
        return f"nats://{host}:{self.port}"

    # -- connections -------------------------------------------------------------

    def client_protocol(self, transport: str = "tcp") -> Client:
        """A protocol instance for one NATS client connection (for listeners too).

        ``transport`` names how it speaks (``"tcp"``, ``"websocket"`` ...).
        Give it an asyncio transport, or an adapter with the methods of
        :class:`natsd.plugin.contracts.ByteTransport`.
        """
        return self._client_class(self, transport)

    def _client_port_protocol(self) -> asyncio.Protocol:
        """The protocol of a connection accepted on the client port (behind TLS if configured)."""
        client = self._client_class(self, "tcp")
        if self.tls is None:
            return cast(asyncio.Protocol, client)  # a protocol by its methods (a compiled class)
        return TLSGate(client, self.tls, self.config.allow_non_tls)

    def reload_tls(self, settings: TLSSettings | None) -> None:
        """Use ``settings`` (e.g. renewed certificates) for connections accepted from now on.

        ``settings`` comes from :func:`natsd.config.tls.load_tls` (or a reloaded
        config's ``tls``); ``None`` turns TLS off. Open connections keep the
        TLS session they negotiated; INFO for new ones follows the new settings
        (and ``config.allow_non_tls``: replace ``config`` first when it changes).
        """
        self.tls = settings
        if self._info:
            self._info = self._base_info()
        log.info("TLS %s for new client connections",
                 "settings reloaded" if settings is not None else "disabled")

    def connect_internal(self, name: str, account: str = GLOBAL_ACCOUNT, *, echo: bool = False,
                         kind: Kind = Kind.SYSTEM, identity: AuthResult | None = None,
                         transport: str = "internal",
                         remote: tuple[str, int] | None = None) -> InternalClient:
        """An in-process client: a service of a plugin, or a session of another protocol.

        Without ``identity`` it is a service (kind ``SYSTEM`` unless told, in
        ``account``), not counted as a connection. With ``identity`` (an
        accepted :class:`AuthResult`, from :meth:`authenticate`) it is a client
        connection of kind ``CLIENT`` speaking ``transport`` from ``remote``:
        in the identity's account, bound by its permissions and limits,
        counted in ``max_connections`` (:class:`ConnectionRefusedError` when
        full), shown by monitoring and told to observers; ``close()`` ends it.
        """
        if identity is None:
            client = InternalClient(self, name, self.lookup_account(account, create=True),
                                    echo=echo, kind=kind, transport=transport)
            client.remote = remote
            self._internal.add(client)
            return client
        if not identity.ok:
            raise PermissionError(f"identity refused: {identity.reason}")
        acc = self.lookup_account(identity.account or GLOBAL_ACCOUNT, create=True)
        client = InternalClient(self, name, acc, echo=echo, kind=Kind.CLIENT, transport=transport)
        client.remote = remote
        client.cid = self.next_cid()
        client.start = client.last = time.time()
        if not acc.connection_allowed() or not self.register(client):
            raise ConnectionRefusedError("maximum connections exceeded")
        client.take_auth_result(identity)
        self._internal.add(client)
        self.connection_ready(client)
        return client

    async def authenticate(self, request: AuthRequest) -> AuthResult:
        """Run the authenticators on ``request`` (a connection a plugin accepted itself).

        Never ``None``: without authenticators everybody is accepted; when
        nobody accepts, the result is a refusal (``ok=False``).
        """
        return await self.auth.authenticate(request)

    def register(self, conn: Connection) -> bool:
        """Count a new client connection (``False``: ``max_connections`` reached)."""
        if len(self.clients) >= self.config.max_connections:
            return False
        self.clients[conn.cid] = conn
        self.total_connections += 1
        conn.account.clients.add(conn)
        return True

    def connection_ready(self, conn: Connection) -> None:
        """A client connection was accepted (its CONNECT, or its session): count it, tell observers."""
        conn.connected = True
        conn.account.connected += 1
        notify(self.observers.connected, conn)

    def connection_closed(self, conn: Connection, reason: str) -> None:
        """The server's part of closing a connection: its record, its subscriptions, observers."""
        registered = self.clients.get(conn.cid) is conn
        if registered:
            del self.clients[conn.cid]
            record_close(self, conn)
        conn.drop_subs()
        conn.account.clients.discard(conn)
        if registered and conn.connected:
            conn.account.connected -= 1
        self._internal.discard(conn)
        if registered:
            conn_log.debug("%s - Client connection closed: %s", conn.describe(), reason)
            if conn.connected:
                notify(self.observers.closed, conn, reason)
            else:  # refused, timed out or gone before its CONNECT was accepted
                notify(self.observers.dropped, conn, reason)

    def lookup_account(self, name: str, create: bool = False) -> Account:
        account = self.accounts.get(name)
        if account is None:
            if not create:
                raise KeyError(f"no account {name!r}")
            account = self.accounts[name] = Account(name)
            account.egress = self._egress
            self.interest.account_created(account)
        return account

    def add_egress(self, egress: Any) -> None:
        """Offer every account's messages to ``egress`` after local delivery (gateways).

        ``egress(sender, account, subject, reply, size, payload, hdr, result,
        served) -> bool`` (see :mod:`natsd.routing.deliver`); accounts created
        later get it too.
        """
        self._egress = (*self._egress, egress)
        for account in self.accounts.values():
            account.egress = (*account.egress, egress)

    def remove_egress(self, egress: Any) -> None:
        self._egress = tuple(e for e in self._egress if e is not egress)
        for account in self.accounts.values():
            account.egress = tuple(e for e in account.egress if e is not egress)

    # -- services of plugins --------------------------------------------------------

    def register_service(self, name: str, service: object) -> None:
        """Offer ``service`` to other plugins under ``name`` (``"jetstream"``, ``"system"``...)."""
        if name in self._services and self._services[name] is not service:
            raise ValueError(f"service {name!r} is already registered")
        self._services[name] = service

    def service(self, name: str) -> Any:
        """The service another plugin registered under ``name``, or ``None``."""
        return self._services.get(name)

    def _pick_client_class(self) -> None:
        if self.config.trace:
            self._client_class = TracedClient
        elif self.observers.published or self.tracing.every:
            self._client_class = ObservedClient
        elif self.tracing:
            self._client_class = TracingClient
        else:
            self._client_class = Client

    def _write_pid_file(self) -> None:
        if self.config.pid_file:
            with open(self.config.pid_file, "w") as fh:
                fh.write(str(os.getpid()))

    def _ports_file(self) -> str | None:
        directory = self.config.ports_file_dir
        return os.path.join(directory, f"natsd_{os.getpid()}.ports") if directory else None

    def _write_ports_file(self) -> None:
        """``<ports_file_dir>/natsd_<pid>.ports``: nats-server's JSON of listening URLs."""
        path = self._ports_file()
        if path:
            import json

            tmp = f"{path}.tmp"
            with open(tmp, "w") as fh:
                json.dump(self.ports, fh)
            os.replace(tmp, path)

    def _digest(self) -> str:
        source = self.config.source
        if not source:
            return ""
        try:
            return digest(parse_file(source))
        except (ConfError, OSError):  # changed since it was loaded; nats-server keeps the old one
            return self.config_digest

    def next_cid(self) -> int:
        self._cid += 1
        return self._cid

    @property
    def auth_required(self) -> bool:
        return self.auth.required

    def _base_info(self) -> dict[str, Any]:
        cfg = self.config
        info: dict[str, Any] = {
            "server_id": self.server_id,
            "server_name": self.name,
            "version": NATS_SERVER_VERSION,
            "proto": 1,
        }
        commit = git_commit()
        if commit:
            info["git_commit"] = commit
        info.update({
            "go": f"python{platform.python_version()}",
            "host": self.host,
            "port": self.port,
            "headers": not cfg.no_header_support,
        })
        if self.auth_required and not cfg.no_auth_user:
            # nats-server: a client without credentials is let in as no_auth_user, so INFO
            # does not ask for any (the server still authenticates every CONNECT).
            info["auth_required"] = True
        if self.tls is not None:
            if not cfg.allow_non_tls:
                info["tls_required"] = True
            if self.tls.verify:
                info["tls_verify"] = True
            if cfg.allow_non_tls:
                info["tls_available"] = True
        info["max_payload"] = cfg.max_payload
        info["api_lvl"] = JS_API_LEVEL
        info["xkey"] = self.curve_key.public_key
        info.update(self._info_fields)
        return info_in_order(info)

    def client_info(self, conn: Connection) -> dict[str, Any]:
        """The INFO object sent to ``conn`` when it connects."""
        info = dict(self._info)
        info["client_id"] = conn.cid
        if conn.remote is not None:
            info["client_ip"] = conn.remote[0]
        nonce = getattr(conn, "nonce", None)
        if nonce is not None:
            info["nonce"] = nonce
        return info_in_order(self._as_seen_by(conn, info))

    def async_info(self, conn: Connection, **extra: Any) -> dict[str, Any]:
        """An INFO object for ``conn`` once connected, with ``extra`` fields (``ldm=True`` ...).

        As nats-server's later INFOs: no nonce, and ``max_payload`` is the
        client's own limit (an account's or user's limit may be lower).
        """
        info = dict(self._info, client_id=conn.cid, **extra)
        parser = getattr(conn, "parser", None)
        if parser is not None:
            info["max_payload"] = parser.max_payload
        if conn.remote is not None:
            info["client_ip"] = conn.remote[0]
        return info_in_order(self._as_seen_by(conn, info))

    @staticmethod
    def _as_seen_by(conn: Connection, info: dict[str, Any]) -> dict[str, Any]:
        """``info`` for ``conn``'s transport, with its listener's overrides (see ``Client.info_overrides``)."""
        ws_urls = info.pop("ws_connect_urls", None)
        if conn.transport == "websocket":
            # nats-server: a WebSocket client's connect_urls are the cluster's WebSocket ports
            if ws_urls:
                info["connect_urls"] = ws_urls
            else:
                info.pop("connect_urls", None)
        overrides = getattr(conn, "info_overrides", None)
        if overrides:
            for key, value in overrides.items():
                if value is None:
                    info.pop(key, None)
                else:
                    info[key] = value
        return info

    def update_info(self, **fields: Any) -> None:
        """Set INFO fields a plugin contributes (``connect_urls``, ``cluster`` ...); ``None`` removes one.

        New connections see them at once; call :meth:`broadcast_info` to tell
        the connected ones.
        """
        for key, value in fields.items():
            if value is None:
                self._info_fields.pop(key, None)
            else:
                self._info_fields[key] = value
        if self._info:
            self._info = self._base_info()

    def info_field(self, name: str) -> Any:
        """An INFO field a plugin set with :meth:`update_info` (``None`` when unset), such as
        ``cluster``: how one plugin reads what another announced without depending on it."""
        return self._info_fields.get(name)

    def broadcast_info(self, **extra: Any) -> None:
        """Send an asynchronous INFO (with ``extra`` fields, e.g. ``ldm=True``) to every client
        that understands it (CONNECT ``protocol`` 1), as nats-server does when its cluster changes."""
        for conn in list(self.clients.values()):
            if not conn.connected or conn.out is None or conn.connect_options.get("protocol", 0) < 1:
                continue
            conn.queue(encode_info(self.async_info(conn, **extra)))
        self.flush()

    def event_server_info(self) -> dict[str, Any]:
        """The ``server`` object of system-account messages (nats-server's ServerInfo)."""
        self._event_seq += 1
        now = datetime.datetime.now(datetime.UTC)
        info: dict[str, Any] = {"name": self.name, "host": self.host, "id": self.server_id}
        fields = self._info_fields
        for key in ("cluster", "domain"):
            if fields.get(key):
                info[key] = fields[key]
        jetstream = bool(fields.get("jetstream"))
        info.update({"ver": NATS_SERVER_VERSION, "feature_flags": dict(FEATURE_FLAGS), "jetstream": jetstream,
                     # JetStreamEnabled | BinaryStreamSnapshot | AccountNRG, as nats-server sets them
                     "flags": 7 if jetstream else 0, "seq": self._event_seq,
                     "time": now.isoformat().replace("+00:00", "Z")})
        return info

    # -- output -------------------------------------------------------------------

    def flush(self) -> None:
        """Write out every connection that received data during this read."""
        dirty = self.dirty
        while dirty:
            batch = dirty[:]
            dirty.clear()
            for conn in batch:
                conn.flush()

    def schedule_flush(self) -> None:
        """Flush soon, for output produced outside a read (timers, internal clients)."""
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self._scheduled_flush)

    def _scheduled_flush(self) -> None:
        self._flush_scheduled = False
        self.flush()


def _unsent(transport: Any) -> int:
    """Bytes a closing transport still holds (0 once it is gone: a closed TLS transport
    has no protocol left to ask)."""
    try:
        return int(transport.get_write_buffer_size())
    except (AttributeError, RuntimeError):
        return 0


def _has_users(accounts: Mapping[str, Mapping[str, Any]]) -> bool:
    return any(acc.get("users") for acc in accounts.values())


async def _quietly(awaitable: Any, what: str) -> None:
    try:
        await awaitable
    except Exception:
        log.exception("error while stopping %s", what)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (for tests of external processes)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]
