"""The system account's events and requests, as a first-party plugin.

Always on unless ``no_system_account`` is set: it observes connections (never
messages) and publishes nats-server's advisories in the system account, and
answers ``$SYS.REQ.SERVER.*`` and ``$SYS.REQ.ACCOUNT.*`` requests with its own
views (STATSZ, HEALTHZ, CONNS) and those other plugins register through
``natsd_system_views``. See :mod:`.events`.
"""

from __future__ import annotations

from typing import Any

from natsd import hookimpl
from natsd.plugin.contracts import ServerAPI
from natsd.plugin.stash import StashKey

from . import hookspecs
from .events import SystemEvents

EVENTS = StashKey[SystemEvents]()


@hookimpl
def natsd_addhooks(pluginmanager: Any) -> None:
    pluginmanager.add_hookspecs(hookspecs)


@hookimpl
def natsd_observers(server: ServerAPI) -> SystemEvents | None:
    if server.system_account is None:
        return None
    events = SystemEvents(server, server.plugins.system_views(server))
    server.stash[EVENTS] = events
    server.register_service("system", events)
    return events


@hookimpl
def natsd_stopping(server: ServerAPI) -> None:
    events = server.stash.get(EVENTS, None)
    if events is not None:
        events.shutdown()


@hookimpl
def natsd_lame_duck(server: ServerAPI) -> None:
    events = server.stash.get(EVENTS, None)
    if events is not None:
        events.lame_duck()


@hookimpl
def natsd_shutdown(server: ServerAPI) -> None:
    events = server.stash.pop(EVENTS, None)
    if events is not None:
        events.close()
