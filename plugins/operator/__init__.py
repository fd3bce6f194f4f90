"""Operator mode: the decentralized JWT trust chain, as a first-party plugin.

Enabled by the nats-server keys it owns: ``operator`` (or ``trusted_keys``),
``resolver`` and ``resolver_preload``; ``system_account`` names the system
account (by default the one in the operator JWT). Users connect with a user
JWT and a signature of the INFO nonce (``.creds`` files); their account JWTs
come from the resolver and are verified against the operator's keys
(:mod:`.trust`). Account JWT updates arrive on the system account
(:mod:`.updates`), and imports between accounts follow their JWTs
(:mod:`.links`).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from natsd import hookimpl
from natsd.config import ServerConfig
from natsd.plugin.contracts import ServerAPI
from natsd.plugin.stash import StashKey

if TYPE_CHECKING:
    from natsd.plugin.manager import PluginManager

from . import hookspecs
from . import settings as settings_mod

if TYPE_CHECKING:  # the modules themselves (x509, JWT claims) only when operator mode is on
    from .trust import OperatorMode
    from .updates import ClaimUpdates

log = logging.getLogger("natsd.operator")

MODE: StashKey[OperatorMode] = StashKey()
UPDATES: StashKey[ClaimUpdates] = StashKey()


@hookimpl
def natsd_addhooks(pluginmanager: PluginManager) -> None:
    pluginmanager.add_hookspecs(hookspecs)


@hookimpl
def natsd_config_blocks() -> tuple[str, ...]:
    return settings_mod.KEYS


@hookimpl
def natsd_configure(server: ServerAPI, config: ServerConfig) -> None:
    settings = settings_mod.load(config.blocks, config.source)
    from .resolver import DirectoryResolver, MemoryResolver
    from .trust import OperatorMode

    if config.no_system_account:
        server.system_account = None
    elif config.system_account:  # an account of the operator's, by public key
        server.system_account = server.lookup_account(config.system_account, create=True)
    else:
        named = next((op.system_account for op in settings.operators if op.system_account), None)
        if named:
            server.system_account = server.lookup_account(named, create=True)
    resolver = (DirectoryResolver(settings.directory, settings.preload)
                if settings.directory is not None else MemoryResolver(settings.preload))
    server.stash[MODE] = mode = OperatorMode(server, settings, resolver)
    server.register_service("operator", mode)


@hookimpl
def natsd_authenticators(server: ServerAPI) -> list[OperatorMode] | None:
    mode = server.stash.get(MODE, None)
    return [mode] if mode is not None else None


@hookimpl
def natsd_startup(server: ServerAPI) -> None:
    mode = server.stash.get(MODE, None)
    if mode is None:
        return
    system = server.system_account
    if system is not None:
        try:
            mode.account(system.name)
        except Exception as e:
            log.warning("system account %s not loaded: %s", system.name, e)
        from .updates import ClaimUpdates

        server.stash[UPDATES] = ClaimUpdates(mode)
    log.info("Operator mode: trusting %s", ", ".join(sorted(mode.trusted)))


@hookimpl
def natsd_shutdown(server: ServerAPI) -> None:
    server.stash.pop(MODE, None)
    updates = server.stash.pop(UPDATES, None)
    if updates is not None:
        updates.close()
