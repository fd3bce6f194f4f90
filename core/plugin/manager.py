"""A typed facade over pluggy: how the core finds, validates and calls plugins.

The core never calls ``pm.hook.<name>(...)`` directly; it calls one method
per hook here, which also normalises what plugins return. Plugins come from
the ``natsd`` entry-point group (first-party ones too), from module names
(``plugins { modules: [...] }``, ``--plugin``) and from objects passed to
:class:`natsd.Server`. A hook implementation whose name matches no hook spec
is a start-up error, so a misspelt hook never silently does nothing.
"""

from __future__ import annotations

import importlib
import inspect
import logging
from collections.abc import Iterable, Mapping
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

import pluggy

from natsd.plugin import hookspecs
from natsd.config import ConfigError, PluginSettings, ServerConfig
from .contracts import OBSERVER_EVENTS

if TYPE_CHECKING:
    from .contracts import Authenticator, Bridge, Listener, StorageBackend
    from natsd.server import Server

log = logging.getLogger("natsd.plugins")

ENTRY_POINT_GROUP = "natsd"
hookimpl = hookspecs.hookimpl


class PluginError(Exception):
    """A plugin could not be loaded or broke the contract."""


class PluginManager:
    """Loads plugins and calls their hooks with typed, normalised results."""

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.owners: dict[str, str] = {}  # config block -> plugin name
        self._loaded = False

    # -- loading ---------------------------------------------------------

    def load(self, settings: PluginSettings, extra: Iterable[object | str] = ()) -> None:
        """Register entry-point plugins (per ``settings``), modules and objects."""
        if self._loaded:
            return
        self._loaded = True
        allow, deny = set(settings.allow), set(settings.deny)
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            if ep.name in deny or (allow and ep.name not in allow):
                continue
            if not settings.autoload and ep.name not in allow:
                continue
            if self.pm.has_plugin(ep.name):
                continue
            try:
                plugin = ep.load()
            except Exception as exc:
                raise PluginError(f"plugin {ep.name!r} ({ep.value}) failed to import: {exc}") from exc
            self.register(plugin, ep.name)
        for item in (*settings.modules, *extra):
            if isinstance(item, str):
                try:
                    plugin = importlib.import_module(item)
                except ImportError as exc:
                    raise PluginError(f"plugin module {item!r} cannot be imported: {exc}") from exc
                self.register(plugin, item)
            else:
                self.register(item, None)
        self.check()

    def register(self, plugin: object, name: str | None) -> None:
        try:
            self.pm.register(plugin, name=name)
        except ValueError as exc:  # already registered
            log.debug("plugin %s not registered twice: %s", name, exc)
        except pluggy.PluginValidationError as exc:
            raise PluginError(f"plugin {name or plugin!r}: {exc}") from exc
        else:
            log.debug("registered plugin %s", name or plugin)

    def check(self) -> None:
        """Refuse hook implementations that match no hook spec (misspellings)."""
        try:
            self.pm.check_pending()
        except pluggy.PluginValidationError as exc:
            raise PluginError(f"{exc} (known hooks: {', '.join(sorted(self.hook_names()))})") from exc

    def hook_names(self) -> list[str]:
        return [n for n in dir(hookspecs) if n.startswith("natsd_")]

    def names(self) -> list[str]:
        return [self.pm.get_name(p) or repr(p) for p in self.pm.get_plugins()]

    # -- configuration -----------------------------------------------------

    def config_blocks(self) -> dict[str, str]:
        """Top-level config keys owned by plugins, mapped to the owning plugin."""
        owners: dict[str, str] = {}
        for impl in self.pm.hook.natsd_config_blocks.get_hookimpls():
            name = impl.plugin_name
            for key in impl.function() or ():
                key = key.lower()
                if key in owners and owners[key] != name:
                    raise PluginError(
                        f"config block {key!r} is claimed by both {owners[key]!r} and {name!r}")
                owners[key] = name
        self.owners = owners
        return owners

    def _owned_by(self) -> dict[str, list[str]]:
        owned_by: dict[str, list[str]] = {}
        for key, name in self.owners.items():
            owned_by.setdefault(name, []).append(key)
        return owned_by

    def _block_for(self, name: str, config: ServerConfig, owned_by: dict[str, list[str]]) -> Any:
        block = config.plugins.blocks.get(name)
        for key in owned_by.get(name, ()):
            if key in config.blocks:
                block = config.blocks[key]
        return block

    def configure(self, server: Server, config: ServerConfig) -> None:
        """Hand each plugin its block; drop plugins that own blocks none of which are present."""
        owned_by = self._owned_by()
        for name, keys in owned_by.items():
            if not any(k in config.blocks for k in keys) and name not in config.plugins.blocks:
                log.debug("plugin %s has no config block; not enabled", name)
                self.pm.unregister(name=name)
        for impl in self.pm.hook.natsd_configure.get_hookimpls():
            block = self._block_for(impl.plugin_name, config, owned_by)
            kwargs = {"server": server, "config": config, "block": block}
            impl.function(**{a: kwargs[a] for a in impl.argnames})
        for name in config.plugins.blocks:
            if not self.pm.has_plugin(name):
                blk = config.plugins.blocks[name]
                raise ConfigError(f"settings for plugin {name!r}, which is not loaded "
                                  f"(loaded: {', '.join(self.names()) or 'none'})",
                                  file=getattr(blk, "file", None) or config.source,
                                  line=None, key=name)

    @staticmethod
    def changed_blocks(old: ServerConfig, new: ServerConfig) -> list[str]:
        """Plugin-owned keys whose value differs (``plugins.<name>`` for ``plugins {}`` blocks)."""
        keys = sorted(k for k in {*old.blocks, *new.blocks} if old.blocks.get(k) != new.blocks.get(k))
        names = {*old.plugins.blocks, *new.plugins.blocks}
        keys += sorted(f"plugins.{n}" for n in names
                       if old.plugins.blocks.get(n) != new.plugins.blocks.get(n))
        return keys

    def reload(self, server: Server, old: ServerConfig, new: ServerConfig) -> list[Any]:
        """Let plugins check a reloaded config; return their apply callables.

        A changed block whose plugin is not running or cannot reload refuses
        the reload with :class:`ConfigError` naming the key.
        """
        impls = self.pm.hook.natsd_reload.get_hookimpls()
        reloadable = {impl.plugin_name for impl in impls}
        for key in self.changed_blocks(old, new):
            name = key.removeprefix("plugins.") if key.startswith("plugins.") else self.owners.get(key, key)
            if not self.pm.has_plugin(name):
                why = f"plugin {name!r} is not running; enabling it needs a restart"
            elif name not in reloadable:
                why = f"plugin {name!r} cannot reload its settings; a restart applies them"
            else:
                continue
            where = new.blocks if key in new.blocks else old.blocks
            pos = getattr(where, "positions", {}).get(key)
            raise ConfigError(f"config reload not supported for {key}: {why}",
                              file=pos.file if pos else new.source,
                              line=pos.line if pos else None, key=key)
        owned_by = self._owned_by()
        commits = []
        for impl in impls:
            kwargs = {"server": server, "old": old, "new": new,
                      "block": self._block_for(impl.plugin_name, new, owned_by)}
            commit = impl.function(**{a: kwargs[a] for a in impl.argnames})
            if commit is not None:
                commits.append(commit)
        return commits

    async def lame_duck(self, server: Server) -> None:
        await _each_logged(self.pm.hook.natsd_lame_duck, server, "entering lame-duck mode")

    # -- start-up hooks ------------------------------------------------------

    def listeners(self, server: Server) -> list[Listener]:
        return _flatten(self.pm.hook.natsd_listeners(server=server))

    def authenticators(self, server: Server) -> list[Authenticator]:
        return _flatten(self.pm.hook.natsd_authenticators(server=server))

    def bridges(self, server: Server) -> list[Bridge]:
        return _flatten(self.pm.hook.natsd_bridges(server=server))

    def storage_backends(self, server: Server) -> dict[str, StorageBackend]:
        out: dict[str, StorageBackend] = {}
        for impl in self.pm.hook.natsd_storage_backends.get_hookimpls():
            backends: Mapping[str, StorageBackend] | None = impl.function(
                **{a: server for a in impl.argnames})
            for key, backend in (backends or {}).items():
                if key in out:
                    raise PluginError(f"storage backend {key!r} offered twice "
                                      f"(again by {impl.plugin_name!r})")
                out[key] = backend
        return out

    def observers(self, server: Server) -> dict[str, list[Any]]:
        """Bound observer methods per event name (empty lists when unobserved)."""
        events: dict[str, list[Any]] = {e: [] for e in OBSERVER_EVENTS}
        for observer in _flatten(self.pm.hook.natsd_observers(server=server)):
            for event in OBSERVER_EVENTS:
                method = getattr(observer, event, None)
                if callable(method):
                    events[event].append(method)
        return events

    async def startup(self, server: Server) -> None:
        for result in self.pm.hook.natsd_startup(server=server):
            if inspect.isawaitable(result):
                await result

    def system_views(self, server: Server) -> dict[str, Any]:
        return _by_name(self.pm.hook.natsd_system_views, server, "system view")

    def monitor_endpoints(self, server: Server) -> dict[str, Any]:
        return _by_name(self.pm.hook.natsd_monitor_endpoints, server, "monitoring endpoint",
                        lambda path: "/" + path.lstrip("/"))

    def metrics(self, server: Server, registry: Any) -> None:
        self.pm.hook.natsd_metrics(server=server, registry=registry)

    def stopping(self, server: Server) -> None:
        for impl in self.pm.hook.natsd_stopping.get_hookimpls():
            try:
                impl.function(**{a: server for a in impl.argnames})
            except Exception:
                log.exception("plugin %s failed before shutdown", impl.plugin_name)

    async def shutdown(self, server: Server) -> None:
        await _each_logged(self.pm.hook.natsd_shutdown, server, "during shutdown")


async def _each_logged(hook: Any, server: Server, when: str) -> None:
    """Call every implementation (awaiting awaitables); a failure is logged, the rest still run."""
    for impl in hook.get_hookimpls():
        try:
            result = impl.function(**{a: server for a in impl.argnames})
            if inspect.isawaitable(result):
                await result
        except Exception:
            log.exception("plugin %s failed %s", impl.plugin_name, when)


def _by_name(hook: Any, server: Server, what: str,
             normalise: Any = lambda name: name) -> dict[str, Any]:
    """Merge the mappings a hook's implementations return; a name offered twice is an error."""
    out: dict[str, Any] = {}
    for impl in hook.get_hookimpls():
        for name, value in (impl.function(**{a: server for a in impl.argnames}) or {}).items():
            name = normalise(name)
            if name in out:
                raise PluginError(f"{what} {name!r} offered twice (again by {impl.plugin_name!r})")
            out[name] = value
    return out


def _flatten(results: Iterable[Any]) -> list[Any]:
    out: list[Any] = []
    for item in results:
        if item is None:
            continue
        if isinstance(item, (list, tuple, set, frozenset)):
            out.extend(x for x in item if x is not None)
        else:
            out.append(item)
    return out
