"""natsd: a NATS-compatible message broker built as a pluggy plugin framework.

The routing core lives here; everything else (clustering, JetStream, MQTT,
WebSocket, tracing) plugs in through the hooks in :mod:`natsd.hookspecs`.
"""

__version__ = "0.1.0"
