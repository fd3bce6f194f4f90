"""Hooks the system-account plugin offers to other plugins.

Declared through ``natsd_addhooks`` when ``natsd_plugins.system`` is
registered; implement them with ``@natsd.hookimpl(optionalhook=True)`` so
that a plugin still loads when the system account is off.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from natsd.plugin.hookspecs import hookspec

if TYPE_CHECKING:
    from natsd.plugin.contracts import ServerAPI


@hookspec
def natsd_system_statsz(server: ServerAPI, statsz: dict[str, Any]) -> None:
    """Add the plugin's part to ``statsz``, the body of a STATSZ event or reply being built.

    ``statsz`` already has nats-server's keys with a plain server's values.
    Add the plugin's list (``routes``, ``gateways``: one entry per link with
    its ``sent``/``received`` ``{"msgs", "bytes"}`` and ``pending``), its
    links' traffic to ``sent`` and ``received`` (``*_to_clients`` and
    ``*_from_clients`` are clients' alone), its entry in
    ``slow_consumer_stats``, and the servers it knows of to
    ``active_servers``. Called for every STATSZ: read counters, compute
    nothing per message.
    """
