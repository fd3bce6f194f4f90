"""natsd-audit: an example natsd plugin that uses every hook family.

Installed, it is found through its ``natsd`` entry point; it stays inactive
until the config file has an ``audit { ... }`` block (see
:mod:`natsd_audit.settings`). Then it adds:

=================  ==========================  =====================================
hook family        hook                        what this plugin does with it
=================  ==========================  =====================================
configuration      natsd_config_blocks         owns the top-level ``audit`` block
                   natsd_configure             validates it (file/line/key errors)
observation        natsd_observers             counts connections and messages
authentication     natsd_authenticators        ``auth_token`` -> account
transport          natsd_listeners             NATS on a Unix socket
storage            natsd_storage_backends      ``audit-memory`` message stores
bridges            natsd_bridges               ``audit.>`` -> JSON lines, ``audit.stats``
lifecycle          natsd_startup/_shutdown     opens and closes the audit file
=================  ==========================  =====================================

Every hook runs at start-up (or shutdown); none runs per message. The hooks
return the objects whose methods natsd calls per connection or per message.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from natsd import hookimpl
from natsd.plugin.contracts import ServerAPI
from natsd.plugin.stash import StashKey

from .auth import TokenAuthenticator
from .bridge import AuditBridge, JsonLog, StatsService
from .observer import AuditObserver, Stats, log
from .settings import Settings, parse
from .storage import MemoryBackend, MemoryStore
from .unix import UnixSocketListener

__all__ = ["AuditBridge", "AuditObserver", "MemoryBackend", "MemoryStore", "StatsService",
           "TokenAuthenticator", "UnixSocketListener"]


@dataclass
class Audit:
    """Everything one server's audit plugin holds."""

    settings: Settings
    stats: Stats = field(default_factory=Stats)
    journal: JsonLog | None = None


# One process may run several servers (tests do) and a module plugin is shared
# by all of them, so per-server state lives in the server's stash, under a key
# of this plugin's.
AUDIT = StashKey[Audit]()


def _audit(server: ServerAPI) -> Audit:
    return server.stash[AUDIT]


# -- configuration -------------------------------------------------------------


@hookimpl
def natsd_config_blocks() -> list[str]:
    # Owning "audit" means: natsd accepts the key, hands its block to us, and
    # enables this plugin only when the block is present.
    return ["audit"]


@hookimpl
def natsd_configure(server: ServerAPI, block: Mapping[str, Any] | None) -> None:
    if block is None:
        return
    settings = parse(block)  # raises natsd.config.ConfigError on a bad value
    journal = JsonLog(settings.log_file) if settings.log_file else None
    server.stash[AUDIT] = Audit(settings, journal=journal)


# -- per-connection and per-message objects --------------------------------------


@hookimpl
def natsd_observers(server: ServerAPI) -> AuditObserver:
    return AuditObserver(_audit(server).stats)


@hookimpl
def natsd_authenticators(server: ServerAPI) -> list[TokenAuthenticator] | None:
    audit = _audit(server)
    if not audit.settings.tokens:
        return None  # returning an authenticator turns on auth_required for everyone
    return [TokenAuthenticator(audit.settings.tokens, audit.stats)]


@hookimpl
def natsd_listeners(server: ServerAPI) -> list[UnixSocketListener] | None:
    path = _audit(server).settings.unix_socket
    return [UnixSocketListener(server, path)] if path else None


@hookimpl
def natsd_storage_backends(server: ServerAPI) -> dict[str, MemoryBackend]:
    return {"audit-memory": MemoryBackend()}


@hookimpl
def natsd_bridges(server: ServerAPI) -> list[Any]:
    audit = _audit(server)
    bridge = AuditBridge(audit.settings, audit.journal)
    return [bridge, StatsService(audit.settings, audit.stats, bridge)]


# -- lifecycle -----------------------------------------------------------------------
# pluggy does not await anything; natsd awaits what lifecycle hooks return,
# so an ``async def`` hook implementation works as it reads.


@hookimpl
async def natsd_startup(server: ServerAPI) -> None:
    audit = _audit(server)
    if audit.journal is not None:
        await audit.journal.open()
    s = audit.settings
    log.info("audit: enabled; %d tokens, unix socket %s, journal %s (%s), stats on %s in account %s",
             len(s.tokens), s.unix_socket or "off", s.log_file or "off", s.bridge_subject,
             s.stats_subject, s.account)


@hookimpl
async def natsd_shutdown(server: ServerAPI) -> None:
    # Called after clients, listeners and bridges have stopped, even when
    # start-up failed half-way, so it must cope with what was never opened.
    audit = server.stash.pop(AUDIT, None)
    if audit is not None and audit.journal is not None:
        await audit.journal.close()
