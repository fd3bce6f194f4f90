"""JetStream: streams that keep messages, on RocksDB (``storage: file``) or in memory.

Enabled by ``jetstream {}`` (or ``jetstream: enabled``), ``-js`` and
``-sd DIR``. The plugin answers nats-server's JetStream API (``$JS.API.>``)
in every account that has JetStream, stores what streams capture, and
acknowledges a publish only once it is durable. See :mod:`.jetstream` for
the accounts and the API, :mod:`.streams` for a stream's rules,
:mod:`.store` for the storage contract, and docs/jetstream.md.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import TYPE_CHECKING, Any

from natsd import hookimpl
from natsd.config import ServerConfig
from natsd.plugin.contracts import LocalStreams, ServerAPI
from natsd.plugin.stash import StashKey

from . import hookspecs
from . import settings as settings_mod

if TYPE_CHECKING:
    from natsd.plugin.manager import OptionParser, PluginManager

    from .jetstream import JetStream

JETSTREAM: StashKey[JetStream] = StashKey()


@hookimpl
def natsd_addhooks(pluginmanager: PluginManager) -> None:
    pluginmanager.add_hookspecs(hookspecs)


@hookimpl
def natsd_config_blocks() -> tuple[str, ...]:
    return ("jetstream", "store_dir", "storedir")


def _enable(value: Any, blocks: MutableMapping[str, Any]) -> None:
    if value:
        current = blocks.get("jetstream")
        if not isinstance(current, MutableMapping):
            blocks["jetstream"] = {"enabled": True}


def _store_dir(value: Any, blocks: MutableMapping[str, Any]) -> None:
    current = blocks.get("jetstream")
    if not isinstance(current, MutableMapping):
        current = blocks["jetstream"] = {"enabled": current is not False}
    current["store_dir"] = value


@hookimpl
def natsd_addoption(parser: OptionParser) -> None:
    group = parser.group("JetStream Options")
    group.add_option("-js", "--jetstream", action="store_true", apply=_enable, help="enable JetStream")
    group.add_option("-sd", "--store_dir", metavar="DIR", apply=_store_dir,
                     help="directory for JetStream storage (RocksDB)")


@hookimpl
def natsd_configure(server: ServerAPI, config: ServerConfig) -> None:
    value = config.blocks.get("jetstream")
    store_dir = config.blocks.get("store_dir", config.blocks.get("storedir"))
    if value is None and store_dir is None:
        return
    settings = settings_mod.load(value if value is not None else True, store_dir)
    if settings.enabled:
        from .jetstream import JetStream

        server.stash[JETSTREAM] = JetStream(server, settings, config)


@hookimpl
def natsd_interest_listeners(server: ServerAPI) -> Any:
    """Push consumers start delivering when their deliver subject gets a subscriber."""
    return server.stash.get(JETSTREAM, None)


@hookimpl
async def natsd_startup(server: ServerAPI) -> None:
    js = server.stash.get(JETSTREAM, None)
    if js is not None:
        await js.start()
        service: LocalStreams = js  # in-process access for other plugins (checked against the contract)
        server.register_service("jetstream", service)


@hookimpl
async def natsd_shutdown(server: ServerAPI) -> None:
    js = server.stash.pop(JETSTREAM, None)
    if js is not None:
        await js.stop()


@hookimpl(trylast=True)
def natsd_jetstream_backends(server: ServerAPI, settings: settings_mod.JetStreamSettings) -> dict[str, Any]:
    from .store.memory import MemoryBackend
    from .store.rocks import RocksBackend

    return {"file": RocksBackend(settings.storage_path, settings.sync_interval), "memory": MemoryBackend()}


@hookimpl(optionalhook=True)
def natsd_account_claims(server: ServerAPI, account: str, claims: Any) -> None:
    """Operator mode: an account's JetStream limits come from its JWT."""
    js = server.stash.get(JETSTREAM, None)
    if js is not None:
        js.account_claims(account, claims)


@hookimpl(optionalhook=True)
def natsd_metrics(server: ServerAPI, registry: Any) -> None:
    js = server.stash.get(JETSTREAM, None)
    if js is not None:
        from .metrics import JetStreamCollector

        registry.register(JetStreamCollector(js))


@hookimpl(optionalhook=True)
def natsd_monitor_endpoints(server: ServerAPI) -> dict[str, Any] | None:
    js = server.stash.get(JETSTREAM, None)
    return {"/jsz": js.jsz} if js is not None else None


@hookimpl(optionalhook=True)
def natsd_monitor_varz(server: ServerAPI, varz: dict[str, Any]) -> None:
    js = server.stash.get(JETSTREAM, None)
    if js is not None:
        js.varz(varz)
