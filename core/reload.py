"""Configuration reload: what may change in a running server, and how it is applied.

``natsd --signal reload``, SIGHUP and :meth:`natsd.Server.reload` re-read the
config file (command-line flags still win) and hand the result to
:func:`reload`. Nothing is applied until everything has been checked: a
config that does not parse, a change to a key that cannot change while
running (the listen address, the server name ...) or a plugin that refuses
its new block leaves the running configuration as it was, and the error names
the key (with file and line when known), as nats-server's
``config reload not supported for ...`` does.

What applies, as in nats-server: users, permissions, accounts (mappings,
limits, exports and imports), TLS settings and certificates (for new
connections), logging, limits, timeouts and the pid file.
Connected clients are checked against the new users: a client whose
credentials no longer pass gets ``-ERR 'Authorization Violation'`` and is
closed, a client whose user moved to another account is closed so that it
reconnects into it, and subscriptions the new permissions forbid are removed
with ``-ERR 'Permissions Violation for Subscription to "subject" (sid "1")'``.
Plugins take part through the ``natsd_reload`` hook.
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
import types
from typing import TYPE_CHECKING, Any, Protocol

from natsd.config import ConfigError, ServerConfig
from natsd.config import log as natsd_log
from natsd.routing.account import GLOBAL_ACCOUNT, Account, configure_accounts

if TYPE_CHECKING:
    from natsd.plugin.contracts import ServerAPI

    class Server(ServerAPI, Protocol):
        """What a reload needs of the server (:class:`natsd.server.Server`)."""

        def after_reload(self, changed: list[str]) -> None: ...

log = logging.getLogger("natsd.server")

#: ServerConfig fields that cannot change while the server runs.
FIXED = ("host", "port", "server_name", "system_account", "no_system_account",
         "no_header_support", "ports_file_dir")
#: Fields whose change re-checks every connected client's credentials.
AUTH = ("authorization", "accounts", "no_auth_user", "mappings")
#: Fields whose change reconfigures logging.
LOGGING = ("debug", "trace", "trace_headers", "logtime", "logtime_utc", "log_file",
           "logfile_size_limit", "logfile_max_num", "max_traced_msg_len")
#: Fields not compared (bookkeeping).
_IGNORED = ("source", "blocks", "plugins", "positions")


def changed_fields(old: ServerConfig, new: ServerConfig) -> list[str]:
    """Names of the core settings that differ (plugin blocks are compared separately)."""
    out = []
    for f in dataclasses.fields(ServerConfig):
        if f.name in _IGNORED:
            continue
        before, after = getattr(old, f.name), getattr(new, f.name)
        if f.name == "port" and after == 0:
            continue  # a random port keeps the one already bound, as in nats-server
        if before != after:
            out.append(f.name)
    return out


def _refuse(config: ServerConfig, key: str, old: Any, new: Any) -> ConfigError:
    pos = config.positions.get(key)
    return ConfigError(f"config reload not supported for {key}: old={old}, new={new}",
                       file=pos.file if pos else config.source, line=pos.line if pos else None,
                       key=key)


def check_fixed(old: ServerConfig, new: ServerConfig, changed: list[str]) -> None:
    for key in changed:
        if key in FIXED:
            raise _refuse(new, key, getattr(old, key), getattr(new, key))
    if (old.plugins.autoload, old.plugins.allow, old.plugins.deny, old.plugins.modules) != (
            new.plugins.autoload, new.plugins.allow, new.plugins.deny, new.plugins.modules):
        raise _refuse(new, "plugins", "(plugin selection)", "(changed plugin selection)")


def _validate_accounts(server: Server, new: ServerConfig) -> None:
    """Configure scratch accounts with ``new`` so that bad mappings, limits or imports
    are refused before anything live changes."""
    scratch: dict[str, Account] = {}

    def lookup(name: str, create: bool = False) -> Account:
        return scratch.setdefault(name, Account(name))

    fake = types.SimpleNamespace(config=new, accounts=scratch, links=None, loop=server.loop,
                                 lookup_account=lookup, global_account=lookup(GLOBAL_ACCOUNT))
    configure_accounts(fake, new)  # forwarders land in the scratch accounts


async def reload(server: Server, new: ServerConfig) -> list[str]:
    """Check ``new`` against the running config and apply it; return what changed.

    Raises :class:`ConfigError` (the running config untouched) when a fixed
    key changed or a plugin refused.
    """
    old = server.config
    changed = changed_fields(old, new)
    check_fixed(old, new, changed)
    auth_changed = any(k in changed for k in AUTH)
    if "accounts" in changed or "mappings" in changed:
        _validate_accounts(server, new)
    commits = server.plugins.reload(server, old, new)
    if "tls" in changed:
        commits.append(lambda: server.reload_tls(new.tls))
    # Everything checked: from here on the new config is live.
    server.config = new
    if any(k in changed for k in LOGGING) and natsd_log.installed():
        natsd_log.configure_from(new)
    if "accounts" in changed or "mappings" in changed:
        configure_accounts(server, new, forget=old.accounts)
    for commit in commits:
        result = commit()
        if inspect.isawaitable(result):
            await result
    for key in changed:
        log.info("Reloaded: %s", key)
    for key in server.plugins.changed_blocks(old, new):
        log.info("Reloaded: %s", key)
    authenticators = server.auth.authenticators
    server.after_reload(changed)
    if auth_changed or server.auth.authenticators != authenticators:
        for client in list(server.clients.values()):
            client.reauthenticate()
    if any(k in changed for k in ("max_payload", "max_control_line", "max_subscriptions",
                                  "max_pending")):
        for client in list(server.clients.values()):
            if client.authorized and not client.closed:
                client.apply_limits()
    if "max_connections" in changed:
        _enforce_max_connections(server)
    log.info("Reloaded server configuration")
    server.flush()
    return changed


def _enforce_max_connections(server: Server) -> None:
    from natsd.conn.client import MAX_CONNECTIONS
    from natsd.wire import errors

    limit = server.config.max_connections
    excess = len(server.clients) - limit
    if limit <= 0 or excess <= 0:
        return
    for client in list(server.clients.values())[-excess:]:
        client.close(MAX_CONNECTIONS, errors.MAX_CONNECTIONS)
    log.info("Closed %d connections to fall within max_connections", excess)
