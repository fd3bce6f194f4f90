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

from .events import SystemEvents

_events: dict[int, SystemEvents] = {}


@hookimpl
def natsd_observers(server: Any) -> SystemEvents | None:
    if server.system_account is None:
        return None
    events = SystemEvents(server, server.plugins.system_views(server))
    _events[id(server)] = events
    return events


@hookimpl
def natsd_stopping(server: Any) -> None:
    events = _events.get(id(server))
    if events is not None:
        events.shutdown()


@hookimpl
def natsd_lame_duck(server: Any) -> None:
    events = _events.get(id(server))
    if events is not None:
        events.lame_duck()


@hookimpl
def natsd_shutdown(server: Any) -> None:
    events = _events.pop(id(server), None)
    if events is not None:
        events.close()
