"""The first-party plugins' modules that ``pip install`` compiles with mypyc (see :mod:`natsd.compiled`).

Hot per-message code: the MQTT packet codec, the MQTT connection and its
sessions (every packet a device sends or receives), and JetStream's streams,
consumers and stores (every message stored, delivered and acknowledged). This
module imports nothing: ``setup.py`` reads :data:`MODULES` from it.
"""

MODULES = (
    "natsd_plugins.mqtt.packets",
    "natsd_plugins.mqtt.connection",
    "natsd_plugins.mqtt.sessions",
    "natsd_plugins.jetstream.store.index",
    "natsd_plugins.jetstream.store.base",
    "natsd_plugins.jetstream.store.rocks",
    "natsd_plugins.jetstream.streams",
    "natsd_plugins.jetstream.consumers",
)
"""Run compiled all together or not at all, as the core's (:data:`natsd.compiled.MODULES`)."""
