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
from typing import Any

from natsd import hookimpl

from . import settings as settings_mod
from .resolver import DirectoryResolver, MemoryResolver
from .trust import OperatorMode
from .updates import ClaimUpdates

log = logging.getLogger("natsd.operator")

_modes: dict[int, OperatorMode] = {}
_updates: dict[int, ClaimUpdates] = {}


@hookimpl
def natsd_config_blocks() -> tuple[str, ...]:
    return settings_mod.KEYS


@hookimpl
def natsd_configure(server: Any, config: Any) -> None:
    settings = settings_mod.load(config.blocks, config.source)
    if config.no_system_account:
        server.system_account = None
    elif not config.system_account:
        named = next((op.system_account for op in settings.operators if op.system_account), None)
        if named:
            server.system_account = server.lookup_account(named, create=True)
    resolver = (DirectoryResolver(settings.directory, settings.preload)
                if settings.directory is not None else MemoryResolver(settings.preload))
    _modes[id(server)] = OperatorMode(server, settings, resolver)


@hookimpl
def natsd_authenticators(server: Any) -> list[OperatorMode] | None:
    mode = _modes.get(id(server))
    return [mode] if mode is not None else None


@hookimpl
def natsd_startup(server: Any) -> None:
    mode = _modes.get(id(server))
    if mode is None:
        return
    system = server.system_account
    if system is not None:
        try:
            mode.account(system.name)
        except Exception as e:  # noqa: BLE001 - a missing system account JWT is not fatal
            log.warning("system account %s not loaded: %s", system.name, e)
        _updates[id(server)] = ClaimUpdates(mode)
    log.info("Operator mode: trusting %s", ", ".join(sorted(mode.trusted)))


@hookimpl
def natsd_shutdown(server: Any) -> None:
    _modes.pop(id(server), None)
    updates = _updates.pop(id(server), None)
    if updates is not None:
        updates.close()
