"""Server configuration: a validated dataclass built from a nats-server ``.conf`` file.

:class:`ServerConfig` holds what the core uses, with nats-server's defaults.
:func:`load` turns a parsed config file (see :mod:`natsd.config.conf`) into one,
checking every key: values of the wrong type, unknown keys and keys of
capabilities whose plugin is missing are refused with the file, line and key.
Top-level blocks owned by plugins (``mqtt {}``, ``jetstream {}`` ...) are kept
as they are and handed to their plugin.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .conf import ConfError, ConfMap, ErrorCollector, parse_duration, parse_size

if TYPE_CHECKING:
    from .tls import TLSSettings

ConfigError = ConfError
"""Raised for any invalid configuration; names the file, line and key."""

DEFAULT_PORT = 4222
EMBEDDED_HOST = "127.0.0.1"
"""Where ``Server({...})`` listens when the mapping names no host (config files and the
command line listen on 0.0.0.0, as nats-server)."""

RANDOM_PORT = -1
"""``port: -1`` (``-p -1``): a random free port, as nats-server's ``RANDOM_PORT``."""

# nats-server's top-level keys that natsd leaves to plugins: key -> what it configures.
# (The core names capabilities, never the plugins that provide them.)
_OPERATOR = "operator mode (JWT)"
PLUGIN_CAPABILITIES: dict[str, str] = {
    "cluster": "clustering", "gateway": "superclusters (gateways)",
    "leafnodes": "leaf nodes", "leaf": "leaf nodes", "mqtt": "MQTT",
    "websocket": "WebSocket", "ws": "WebSocket", "tracing": "tracing",
    "jetstream": "JetStream", "store_dir": "JetStream", "storedir": "JetStream",
    "default_js_domain": "JetStream",
    **dict.fromkeys(("operator", "operators", "root", "roots", "root_operator", "root_operators",
                     "trusted", "trusted_keys", "resolver", "account_resolver", "accounts_resolver",
                     "resolver_preload", "resolver_tls", "resolver_pinned_accounts",
                     "default_sentinel"), _OPERATOR),
    "http": "HTTP monitoring", "http_port": "HTTP monitoring", "monitor_port": "HTTP monitoring",
    "https": "HTTP monitoring", "https_port": "HTTP monitoring",
    "http_base_path": "HTTP monitoring",
}


def missing_plugin(key: str, capability: str) -> str:
    """The error for a nats-server option whose natsd plugin is not there."""
    return f"configures {capability}, which needs a natsd plugin: none installed and enabled provides it"


NOT_SUPPORTED = "a nats-server option not supported by natsd"
"""How a nats-server key that natsd does not implement is refused (never "unknown")."""

#: nats-server's top-level keys (opts.go, processConfigFileLine) that natsd does not implement.
NOT_SUPPORTED_KEYS = frozenset({
    "server_tags", "server_metadata", "client_advertise", "syslog", "remote_syslog",
    "connect_error_reports", "reconnect_error_reports", "disable_sublist_cache",
    "no_sublist_cache", "prof_port", "prof_block_rate", "proxy_protocol", "proxies",
    "max_sub_tokens", "max_subscription_tokens", "ocsp", "ocsp_cache", "write_timeout",
    "feature_flags", "no_fast_producer_stall",
})


def _where(block: Mapping[str, Any] | None, key: str) -> tuple[str | None, int | None]:
    if isinstance(block, ConfMap) and key in block.positions:
        pos = block.positions[key]
        return pos.file, pos.line
    return None, None


def config_error(block: Mapping[str, Any] | None, key: str, reason: str) -> ConfigError:
    """A :data:`ConfigError` pointing at ``key`` of ``block`` (file and line if known)."""
    file, line = _where(block, key)
    return ConfError(reason, file=file, line=line, key=key)


@dataclass
class PluginSettings:
    """The ``plugins {}`` block: which plugins load and their own settings.

    ``autoload`` loads every installed distribution that declares a ``natsd``
    entry point; ``allow`` restricts that to the names listed and ``deny``
    removes names. ``modules`` are import paths registered as plugins (like
    ``--plugin``). Any other key is a block for the plugin of that name.
    """

    autoload: bool = True
    allow: tuple[str, ...] = ()
    deny: tuple[str, ...] = ()
    modules: tuple[str, ...] = ()
    blocks: dict[str, Any] = field(default_factory=dict)


@dataclass
class ServerConfig:
    """Everything the routing core needs; field names follow nats-server's keys."""

    host: str = "0.0.0.0"
    port: int = DEFAULT_PORT
    server_name: str = ""
    max_payload: int = 1024 * 1024
    max_pending: int = 64 * 1024 * 1024
    max_connections: int = 64 * 1024
    max_subscriptions: int = 0
    max_control_line: int = 4096
    max_closed_clients: int = 10000
    """Closed connections kept for monitoring (a natsd key; nats-server's fixed default)."""
    ping_interval: float = 120.0
    ping_max: int = 2
    write_deadline: float = 10.0
    auth_timeout: float = 2.0
    no_header_support: bool = False
    debug: bool = False
    trace: bool = False
    trace_headers: bool = False
    """Trace messages' headers instead of their payloads (``trace_headers``, with ``trace``)."""
    logtime: bool = True
    logtime_utc: bool = False
    log_file: str | None = None
    logfile_size_limit: int = 0
    """Rotate ``log_file`` when it reaches this many bytes (0: never)."""
    logfile_max_num: int = 0
    """Rotated log files to keep (0: all)."""
    max_traced_msg_len: int = 0
    """Payload bytes a protocol trace shows (0: all, as nats-server)."""
    pid_file: str | None = None
    reuse_port: bool = False
    """Listen on the client port with ``SO_REUSEPORT`` (a natsd key: several processes of
    one machine share the port, and the kernel spreads connections over them)."""
    ports_file_dir: str | None = None
    """Directory for ``natsd_<pid>.ports``: the URLs of every port the server listens on."""
    lame_duck_duration: float = 120.0
    lame_duck_grace_period: float = 10.0
    authorization: Mapping[str, Any] | None = None
    """The ``authorization {}`` block, for the auth plugin (natsd_plugins.auth)."""
    accounts: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    """``accounts {}``: account name -> its block (users, exports, imports ...)."""
    no_auth_user: str | None = None
    mappings: Mapping[str, Any] | None = None
    """Top-level ``mappings {}``: subject mappings of the global account ``$G``."""
    system_account: str = ""
    """The system account's name; empty: ``$SYS`` (operator mode: the operator JWT's)."""
    no_system_account: bool = False
    tls: TLSSettings | None = None
    """The client port's ``tls {}`` (see :mod:`natsd.config.tls`); ``None``: plaintext."""
    allow_non_tls: bool = False
    """With ``tls``: accept plaintext clients too (INFO announces ``tls_available``)."""
    plugins: PluginSettings = field(default_factory=PluginSettings)
    blocks: dict[str, Any] = field(default_factory=dict)
    """Top-level keys owned by plugins (lower case) -> value; a :class:`ConfMap`
    when loaded from a file, so ``config_error(config.blocks, key, ...)`` names
    the file and line."""
    source: str | None = None
    """The config file this came from, if any."""
    positions: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)
    """Top-level key (lower case) -> where the file set it (for errors after loading)."""

    def __post_init__(self) -> None:
        if self.port == RANDOM_PORT:
            self.port = 0

    def replace(self, **changes: Any) -> ServerConfig:
        return dataclasses.replace(self, **changes)


def nats_server_port(port: int) -> int:
    """The port to listen on for a client port given as nats-server reads it
    (a config file, ``-p``): ``0`` is the default port, ``-1`` a random one (``0`` here)."""
    if port == 0:
        return DEFAULT_PORT
    return 0 if port == RANDOM_PORT else port


def _str(block: Any, key: str, v: Any) -> str:
    if isinstance(v, (str, int)) and not isinstance(v, bool):
        return str(v)
    raise config_error(block, key, f"expected a string, got {v!r}")


def _int(block: Any, key: str, v: Any) -> int:
    if isinstance(v, int) and not isinstance(v, bool):
        return v
    raise config_error(block, key, f"expected an integer, got {v!r}")


def _count(block: Any, key: str, v: Any) -> int:
    n = _int(block, key, v)
    if n < 0:
        raise config_error(block, key, "must not be negative")
    return n


def size_setting(block: Any, key: str, v: Any) -> int:
    """A size (``1MB``, ``64KB`` or bytes) at ``block[key]``; errors name the file and line."""
    file, line = _where(block, key)
    n = parse_size(v, file=file, line=line, key=key)
    if n < 0:
        raise config_error(block, key, "must not be negative")
    return n


def _bool(block: Any, key: str, v: Any) -> bool:
    if isinstance(v, bool):
        return v
    raise config_error(block, key, f"expected a boolean, got {v!r}")


def _duration(block: Any, key: str, v: Any) -> float:
    file, line = _where(block, key)
    return parse_duration(v, file=file, line=line, key=key)


def _positive_duration(block: Any, key: str, v: Any) -> float:
    seconds = _duration(block, key, v)
    if seconds <= 0:
        raise config_error(block, key, "must be a positive duration")
    return seconds


def _listen(block: Any, key: str, v: Any) -> tuple[str, int]:
    text = _str(block, key, v)
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = "", text
    try:
        return host.strip("[]") or "0.0.0.0", int(port)
    except ValueError:
        raise config_error(block, key, f"expected host:port, got {v!r}") from None


_Setter = Callable[[Any, str, Any, dict[str, Any]], None]


def _field(name: str, conv: Callable[[Any, str, Any], Any]) -> _Setter:
    def setter(block: Any, key: str, value: Any, out: dict[str, Any]) -> None:
        out[name] = conv(block, key, value)
    return setter


def _set_trace_headers(block: Any, key: str, value: Any, out: dict[str, Any]) -> None:
    out["trace_headers"] = out["trace"] = _bool(block, key, value)


def _set_listen(block: Any, key: str, value: Any, out: dict[str, Any]) -> None:
    out["host"], out["port"] = _listen(block, key, value)


def _block(block: Any, key: str, v: Any) -> Mapping[str, Any]:
    if not isinstance(v, Mapping):
        raise config_error(block, key, f"expected a block {{ ... }}, got {v!r}")
    return v


def _set_authorization(block: Any, key: str, value: Any, out: dict[str, Any]) -> None:
    auth = _block(block, key, value)
    out["authorization"] = auth
    for k, v in auth.items():
        if k.lower() == "timeout":
            out["auth_timeout"] = _duration(auth, k, v)


def _set_tls(block: Any, key: str, value: Any, out: dict[str, Any]) -> None:
    from .tls import load_tls

    out["tls"] = load_tls(block, key, value)


#: Keys of an account block in ``accounts {}`` that the core reads (nats-server refuses any
#: other than these and ACCOUNT_NOT_SUPPORTED; ``maps`` is read as ``mappings``, and
#: ``nkey`` only names the account, as in nats-server).
ACCOUNT_KEYS = frozenset({"users", "exports", "imports", "mappings", "maps", "limits",
                          "default_permissions", "nkey", "msg_trace", "trace_dest"})
#: Account keys of nats-server that natsd does not implement (``jetstream`` is a plugin's;
#: ``msg_trace`` is read by the msgtrace plugin).
ACCOUNT_NOT_SUPPORTED: frozenset[str] = frozenset()


def _accounts(block: Any, key: str, value: Any, owned: Mapping[str, str],
              errors: ErrorCollector) -> Mapping[str, Any]:
    """``accounts {}``, every account's keys checked (all errors collected)."""
    accounts = _block(block, key, value)
    out = ConfMap() if isinstance(accounts, ConfMap) else {}
    if isinstance(accounts, ConfMap) and isinstance(out, ConfMap):
        out.positions = dict(accounts.positions)
    for name, acc in accounts.items():
        with errors.collect():
            _block(accounts, name, acc)
            if name == "$G":
                raise config_error(accounts, name, "the global account $G cannot be configured")
            out[name] = _account(name, acc, owned, errors)
    return out


def _account(name: str, acc: Mapping[str, Any], owned: Mapping[str, str],
             errors: ErrorCollector) -> Mapping[str, Any]:
    for k in acc:
        with errors.collect():
            low = k.lower()
            if low == "jetstream":
                if "jetstream" not in owned:
                    raise config_error(acc, k, missing_plugin(k, "JetStream"))
            elif low in ACCOUNT_NOT_SUPPORTED:
                raise config_error(acc, k, f"{NOT_SUPPORTED} (in account {name!r})")
            elif low not in ACCOUNT_KEYS:
                raise config_error(acc, k, f"unknown key in account {name!r} (known: "
                                   + ", ".join(sorted(ACCOUNT_KEYS | {"jetstream"})) + ")")
    maps = next((k for k in acc if k.lower() == "maps"), None)
    if maps is None or any(k.lower() == "mappings" for k in acc):
        return acc
    renamed = ConfMap((("mappings" if k == maps else k), v) for k, v in acc.items())
    if isinstance(acc, ConfMap):  # nats-server's alias, read where `mappings` is
        renamed.positions = {("mappings" if k == maps else k): p for k, p in acc.positions.items()}
        renamed.variables_used = set(acc.variables_used)
    return renamed


CORE_KEYS: dict[str, _Setter] = {
    "listen": _set_listen,
    "host": _field("host", _str),
    "net": _field("host", _str),
    "port": _field("port", _int),
    "server_name": _field("server_name", _str),
    "max_payload": _field("max_payload", size_setting),
    "max_pending": _field("max_pending", size_setting),
    "max_connections": _field("max_connections", _int),
    "max_conn": _field("max_connections", _int),
    "max_subscriptions": _field("max_subscriptions", _int),
    "max_subs": _field("max_subscriptions", _int),
    "max_control_line": _field("max_control_line", size_setting),
    "max_closed_clients": _field("max_closed_clients", _count),
    "ping_interval": _field("ping_interval", _duration),
    "ping_max": _field("ping_max", _int),
    "write_deadline": _field("write_deadline", _duration),
    "no_header_support": _field("no_header_support", _bool),
    "debug": _field("debug", _bool),
    "trace": _field("trace", _bool),
    "trace_verbose": _field("trace", _bool),
    "trace_headers": _set_trace_headers,
    "logtime": _field("logtime", _bool),
    "logtime_utc": _field("logtime_utc", _bool),
    "log_file": _field("log_file", _str),
    "logfile": _field("log_file", _str),
    "logfile_size_limit": _field("logfile_size_limit", size_setting),
    "log_size_limit": _field("logfile_size_limit", size_setting),
    "logfile_max_num": _field("logfile_max_num", _int),
    "log_max_num": _field("logfile_max_num", _int),
    "max_traced_msg_len": _field("max_traced_msg_len", _int),
    "pid_file": _field("pid_file", _str),
    "reuse_port": _field("reuse_port", _bool),
    "pidfile": _field("pid_file", _str),
    "ports_file_dir": _field("ports_file_dir", _str),
    "lame_duck_duration": _field("lame_duck_duration", _positive_duration),
    "lame_duck_grace_period": _field("lame_duck_grace_period", _duration),
    "authorization": _set_authorization,
    "no_auth_user": _field("no_auth_user", _str),
    "mappings": _field("mappings", _block),
    "maps": _field("mappings", _block),
    "system_account": _field("system_account", _str),
    "system": _field("system_account", _str),
    "no_system_account": _field("no_system_account", _bool),
    "no_system": _field("no_system_account", _bool),
    "no_sys_acc": _field("no_system_account", _bool),
    "tls": _set_tls,
    "allow_non_tls": _field("allow_non_tls", _bool),
}


def with_tls(config: ServerConfig, tls: TLSSettings | None) -> ServerConfig:
    """``config`` with the client port's ``tls``; unless ``authorization { timeout }``
    is set, the authorization timeout becomes the TLS timeout + 1 s (nats-server's default)."""
    changes: dict[str, Any] = {"tls": tls}
    if tls is not None and not any(k.lower() == "timeout" for k in (config.authorization or {})):
        changes["auth_timeout"] = tls.timeout + 1.0
    return config.replace(**changes)


def plugin_settings(conf: Mapping[str, Any]) -> PluginSettings:
    """Read the ``plugins`` block (needed before the plugins that own blocks load)."""
    block = conf.get("plugins")
    if block is None:
        return PluginSettings()
    if not isinstance(block, Mapping):
        raise config_error(conf, "plugins", "expected a block { ... }")
    settings = PluginSettings()
    for key, value in block.items():
        k = key.lower()
        if k == "autoload":
            settings.autoload = _bool(block, key, value)
        elif k in ("allow", "deny", "modules"):
            if isinstance(value, str):
                value = [value]
            if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
                raise config_error(block, key, "expected a list of names")
            setattr(settings, k, tuple(value))
        elif isinstance(value, Mapping):
            settings.blocks[key] = value
        else:
            raise config_error(block, key, "expected a plugin's block { ... } or one of "
                               "autoload, allow, deny, modules")
    return settings


def load(conf: Mapping[str, Any], owned: Mapping[str, str] | None = None,
         source: str | None = None) -> ServerConfig:
    """Build a :class:`ServerConfig` from a parsed config file.

    The client port follows the source: in config text (a :class:`ConfMap`,
    from :func:`~natsd.config.conf.parse_file` or ``parse``), ``port: 0`` is
    the default port 4222 and ``-1`` a random port, as in nats-server; in a
    plain mapping (``Server({"port": 0})``) ``0`` and ``-1`` are a free port.
    ``ServerConfig.port`` is what is listened on (``0``: a free port). A plain
    mapping without ``host`` listens on loopback (:data:`EMBEDDED_HOST`): an
    embedded broker is reachable from elsewhere only when asked.

    ``owned`` maps top-level keys to the plugin that owns them; those blocks
    are kept in ``ServerConfig.blocks`` for the plugin to validate.
    """
    owned = owned or {}
    values: dict[str, Any] = {}
    blocks = ConfMap()  # with the positions of the keys, for plugins' errors
    used = conf.variables_used if isinstance(conf, ConfMap) else set()
    errors = ErrorCollector()  # every error of the file, as nats-server reports them
    provided = {PLUGIN_CAPABILITIES.get(k) for k in owned}
    for key, value in conf.items():
        k = key.lower()
        if k == "plugins":
            continue
        with errors.collect():
            if k in owned:
                blocks[k] = value
                if isinstance(conf, ConfMap) and key in conf.positions:
                    blocks.positions[k] = conf.positions[key]
            elif k == "accounts":
                values["accounts"] = _accounts(conf, key, value, owned, errors)
            elif k in CORE_KEYS:
                CORE_KEYS[k](conf, key, value, values)
            elif key in used:
                continue  # a variable definition
            elif k in PLUGIN_CAPABILITIES and PLUGIN_CAPABILITIES[k] in provided:
                raise config_error(conf, key, f"{NOT_SUPPORTED} ({PLUGIN_CAPABILITIES[k]})")
            elif k in PLUGIN_CAPABILITIES:
                raise config_error(conf, key, missing_plugin(key, PLUGIN_CAPABILITIES[k]))
            elif k in NOT_SUPPORTED_KEYS:
                raise config_error(conf, key, NOT_SUPPORTED)
            else:
                raise config_error(conf, key, "unknown configuration key")
    with errors.collect():
        if "port" in values:
            values["port"] = _client_port(conf, values["port"])
    if not isinstance(conf, ConfMap) and "host" not in values:
        values["host"] = EMBEDDED_HOST
    settings = PluginSettings()
    with errors.collect():
        settings = plugin_settings(conf)
    with errors.collect():
        _check_lame_duck(conf, values)
    errors.check()
    positions = {k.lower(): p for k, p in conf.positions.items()} if isinstance(conf, ConfMap) else {}
    config = ServerConfig(**values, plugins=settings, blocks=blocks, source=source,
                          positions=positions)
    if config.tls is not None:
        config = with_tls(config, config.tls)
    return config


def _check_lame_duck(conf: Mapping[str, Any], values: Mapping[str, Any]) -> None:
    grace = values.get("lame_duck_grace_period", ServerConfig.lame_duck_grace_period)
    duration = values.get("lame_duck_duration", ServerConfig.lame_duck_duration)
    if grace >= duration:
        key = next((k for k in conf if k.lower() == "lame_duck_grace_period"),
                   next((k for k in conf if k.lower() == "lame_duck_duration"), "lame_duck_grace_period"))
        raise config_error(conf, key, (
            f"the lame-duck grace period ({grace:g}s) must be shorter "
            f"than lame_duck_duration ({duration:g}s)"))


def _client_port(conf: Mapping[str, Any], port: int) -> int:
    """Config text (a :class:`ConfMap`) means what it means to nats-server; a Python
    mapping keeps ``0`` as a free port (see :func:`load`)."""
    if not RANDOM_PORT <= port <= 65535:
        key = next((k for k in conf if k.lower() in ("port", "listen")), "port")
        raise config_error(conf, key, f"port {port} is out of range (-1 to 65535; -1: a random port)")
    return nats_server_port(port) if isinstance(conf, ConfMap) else max(port, 0)


def from_mapping(mapping: Mapping[str, Any], owned: Mapping[str, str] | None = None) -> ServerConfig:
    """A config from a plain dict with the same keys as a config file (for embedding)."""
    return load(mapping, owned)


__all__ = ["ConfigError", "DEFAULT_PORT", "ErrorCollector", "NOT_SUPPORTED", "RANDOM_PORT",
           "PluginSettings", "ServerConfig", "config_error", "from_mapping", "load",
           "nats_server_port", "plugin_settings"]
