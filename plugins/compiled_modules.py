"""The first-party plugins' modules that ``pip install`` compiles with mypyc (see :mod:`natsd.compiled`).

Hot per-message code with no dependency on the rest of its plugin: the MQTT
packet codec and a stream's index. This module imports nothing: ``setup.py``
reads :data:`MODULES` from it.
"""

MODULES = (
    "natsd_plugins.mqtt.packets",
    "natsd_plugins.jetstream.store.index",
)
"""Run compiled all together or not at all, as the core's (:data:`natsd.compiled.MODULES`)."""
