"""Benchmark plugin: an observer of connection lifecycle only.

Loaded with ``python -m natsd --plugin observer_lifecycle`` (benchmarks/ on
PYTHONPATH).  The observer does not define ``message_published``, so the
per-message path should cost exactly what it costs with no plugin at all; the
1→1 16 B case with this plugin is compared against plain natsd.
"""

import sys

from natsd import hookimpl


class LifecycleObserver:
    def __init__(self) -> None:
        self.connected = 0
        self.closed = 0

    def client_connected(self, client) -> None:
        self.connected += 1

    def client_closed(self, client, reason) -> None:
        self.closed += 1


@hookimpl
def natsd_observers(server):
    # bench.py looks for this line in the server log to make sure the plugin ran
    print("bench plugin observer_lifecycle active", file=sys.stderr, flush=True)
    return LifecycleObserver()
