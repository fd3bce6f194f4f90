"""Hooks the monitoring plugin offers to other plugins.

Declared through ``natsd_addhooks`` when ``natsd_plugins.monitor`` (or its
system-account views, ``monitor_views``) is registered. A plugin that
implements them should mark its implementations
``@natsd.hookimpl(optionalhook=True)``, so that it still loads when
monitoring is denied.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from natsd.plugin.hookspecs import hookspec

if TYPE_CHECKING:
    from natsd.plugin.contracts import ServerAPI


@hookspec
def natsd_monitor_endpoints(server: ServerAPI) -> Mapping[str, Any] | None:
    """Return monitoring endpoints by path, such as ``{"/routez": view}``.

    The monitoring plugin serves them on its HTTP port, under
    ``http_base_path``, and over the system account as
    ``$SYS.REQ.SERVER.PING.<NAME>`` and ``$SYS.REQ.SERVER.<id>.<NAME>``
    (``/routez`` answers ``ROUTEZ``). A view is ``view(params) -> object``:
    ``params`` maps option names to values, the query string's parameters
    (strings, the first of repeated ones) over HTTP and the request's JSON
    object over the system account; the result is sent as JSON. Raise
    ``ValueError(text)`` for bad parameters: HTTP 400 with ``text`` as body.

    A plugin's path replaces the monitoring plugin's own answer: natsd serves
    nats-server's empty shapes for ``/routez``, ``/leafz``, ``/gatewayz`` and
    ``/jsz`` until cluster, leafnode, gateway or JetStream plugins provide
    them. A path offered by two plugins is a start-up error.

    Called once per server, when its monitoring views are first built.
    """


@hookspec
def natsd_monitor_varz(server: ServerAPI, varz: dict[str, Any]) -> None:
    """Add the plugin's part to ``varz``, the ``/varz`` answer being built.

    ``varz`` already has nats-server's keys with a plain server's values.
    Fill the section nats-server has for the feature (``cluster``,
    ``gateway``, ``leaf``, ``mqtt``, ``websocket``, ``jetstream``), set the
    counts it owns (``routes``, ``remotes``, ``leafnodes``, its entry in
    ``slow_consumer_stats`` and ``stale_connection_stats``), and add its
    connections' traffic to ``in_msgs``, ``in_bytes``, ``out_msgs`` and
    ``out_bytes`` (the ``*_client_*`` counts are clients' alone).

    Called for every ``/varz`` (and ``VARZ`` over the system account): read
    counters kept as traffic flows, compute nothing per message.
    """


@hookspec
def natsd_metrics(server: ServerAPI, registry: Any) -> None:
    """Register Prometheus metrics on ``registry`` for ``/metrics``.

    ``registry`` is the server's own ``prometheus_client.CollectorRegistry``.
    Register a collector whose ``collect()`` reads the plugin's counters at
    scrape time (``registry.register(collector)``), so that nothing is
    updated once per message. Name metrics ``nats_<plugin>_...``.

    Called once, when the monitoring plugin builds the registry (only when
    the HTTP port is enabled).
    """
