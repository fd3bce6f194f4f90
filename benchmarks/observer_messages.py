"""Benchmark plugin: an observer of every published message (a no-op).

Loaded with ``python -m natsd --plugin observer_messages`` (benchmarks/ on
PYTHONPATH).  ``message_published`` does nothing, so the difference from plain
natsd in the 1→1 16 B case is the price of the per-message observation hook
itself (the call and whatever the server builds to make it).
"""

import sys

from natsd import hookimpl


class MessageObserver:
    def message_published(self, client, account, subject, reply, headers, payload) -> None:
        pass


@hookimpl
def natsd_observers(server):
    # bench.py looks for this line in the server log to make sure the plugin ran
    print("bench plugin observer_messages active", file=sys.stderr, flush=True)
    return MessageObserver()
