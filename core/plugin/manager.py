"""A typed facade over pluggy: how the core finds, validates and calls plugins.

The core never calls ``pm.hook.<name>(...)`` directly; it calls one method
per hook here, which also normalises what plugins return. Every hook goes
through pluggy's hook callers, so ``tryfirst``/``trylast``, hook wrappers
and historic hooks behave as pluggy documents. Hooks that hand each plugin
its own config block (``natsd_configure``, ``natsd_reload``) call one plugin
at a time through :meth:`pluggy.PluginManager.subset_hook_caller`, in
pluggy's call order.

Plugins come from the ``natsd`` entry-point group (first-party ones too),
from module names (``plugins { modules: [...] }``, ``--plugin``) and from
objects passed to :class:`natsd.Server`. A hook implementation whose name
matches no hook spec is a start-up error, so a misspelt hook never silently
does nothing.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import logging
from collections.abc import Callable, Iterable, Mapping, MutableMapping
from dataclasses import dataclass
from importlib.metadata import entry_points
from types import ModuleType
from typing import TYPE_CHECKING, Any

import pluggy

from natsd.config import ConfigError, PluginSettings, ServerConfig
from natsd.config.conf import ConfError, ConfMap, ErrorCollector
from natsd.routing.connection import Observers

from . import hookspecs

if TYPE_CHECKING:
    from .contracts import (
        Authenticator,
        Bridge,
        InterestListener,
        Listener,
        MessageTracer,
        ServerAPI,
        StorageBackend,
    )

log = logging.getLogger("natsd.plugins")

ENTRY_POINT_GROUP = "natsd"
hookimpl = hookspecs.hookimpl

OBSERVER_EVENTS = {
    "client_connected": "connected", "client_closed": "closed", "client_dropped": "dropped",
    "auth_failed": "auth_failed",
    "subscribed": "subscribed", "unsubscribed": "unsubscribed", "message_published": "published",
    "link_connected": "link_connected", "link_closed": "link_closed",
}
"""Observer method name -> :class:`~natsd.routing.connection.Observers` list."""


class PluginError(Exception):
    """A plugin could not be loaded or broke the contract."""


class PluginManager:
    """Loads plugins and calls their hooks with typed, normalised results."""

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.owners: dict[str, str] = {}  # config block -> plugin name
        self._loaded = False
        self.pm.hook.natsd_addhooks.call_historic(kwargs={"pluginmanager": self})

    @property
    def hook(self) -> Any:
        """pluggy's hook relay, for plugins calling the hooks they declared."""
        return self.pm.hook

    def add_hookspecs(self, module: ModuleType | type) -> None:
        """Declare a plugin's own hooks (from ``natsd_addhooks``); declaring twice is harmless."""
        names = [n for n in dir(module) if n.startswith("natsd_")]
        if names and all(getattr(self.pm.hook, n, None) is not None and
                         getattr(self.pm.hook, n).spec is not None for n in names):
            return
        self.pm.add_hookspecs(module)

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
        return sorted(n for n in dir(self.pm.hook) if n.startswith("natsd_")
                      and getattr(self.pm.hook, n).spec is not None)

    def names(self) -> list[str]:
        return [self.pm.get_name(p) or repr(p) for p in self.pm.get_plugins()]

    def _in_call_order(self, hook_name: str) -> list[tuple[str, object]]:
        """``(name, plugin)`` of a hook's implementations, in the order pluggy calls them."""
        impls = getattr(self.pm.hook, hook_name).get_hookimpls()
        return [(i.plugin_name, i.plugin) for i in reversed(impls) if not (i.wrapper or i.hookwrapper)]

    def _call_one(self, hook_name: str, plugin: object, **kwargs: Any) -> Any:
        """Call one plugin's implementation of a hook, inside every plugin's wrappers of it."""
        impls = getattr(self.pm.hook, hook_name).get_hookimpls()
        wrapping = {id(i.plugin) for i in impls if i.wrapper or i.hookwrapper}
        others = [p for p in self.pm.get_plugins() if p is not plugin and id(p) not in wrapping]
        return self.pm.subset_hook_caller(hook_name, remove_plugins=others)(**kwargs)

    # -- the command line --------------------------------------------------

    def addoption(self, parser: OptionParser) -> None:
        self.pm.hook.natsd_addoption(parser=parser)

    def cmdline_main(self, config: ServerConfig, argv: list[str]) -> int | None:
        result: int | None = self.pm.hook.natsd_cmdline_main(config=config, argv=argv)
        return result

    # -- configuration -----------------------------------------------------

    def config_blocks(self) -> dict[str, str]:
        """Top-level config keys owned by plugins, mapped to the owning plugin."""
        owners: dict[str, str] = {}
        for name, plugin in self._in_call_order("natsd_config_blocks"):
            for keys in self._call_one("natsd_config_blocks", plugin):
                for key in keys or ():
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

    def configure(self, server: ServerAPI, config: ServerConfig) -> None:
        """Hand each plugin its block; drop plugins that own blocks none of which are present.

        The configuration errors of every plugin are raised together (:class:`ConfigError`
        with ``errors``), as nats-server reports all of a file's errors.
        """
        owned_by = self._owned_by()
        for name, keys in owned_by.items():
            if not any(k in config.blocks for k in keys) and name not in config.plugins.blocks:
                log.debug("plugin %s has no config block; not enabled", name)
                self.pm.unregister(name=name)
        errors = ErrorCollector()
        for name, plugin in self._in_call_order("natsd_configure"):
            with errors.collect():
                self._call_one("natsd_configure", plugin, server=server, config=config,
                               block=self._block_for(name, config, owned_by))
        for name in config.plugins.blocks:
            if not self.pm.has_plugin(name):
                blk = config.plugins.blocks[name]
                with errors.collect():
                    raise ConfigError(f"settings for plugin {name!r}, which is not loaded "
                                      f"(loaded: {', '.join(self.names()) or 'none'})",
                                      file=getattr(blk, "file", None) or config.source,
                                      line=None, key=name)
        errors.check()

    @staticmethod
    def changed_blocks(old: ServerConfig, new: ServerConfig) -> list[str]:
        """Plugin-owned keys whose value differs (``plugins.<name>`` for ``plugins {}`` blocks)."""
        keys = sorted(k for k in {*old.blocks, *new.blocks} if old.blocks.get(k) != new.blocks.get(k))
        names = {*old.plugins.blocks, *new.plugins.blocks}
        keys += sorted(f"plugins.{n}" for n in names
                       if old.plugins.blocks.get(n) != new.plugins.blocks.get(n))
        return keys

    def reload(self, server: ServerAPI, old: ServerConfig, new: ServerConfig) -> list[Any]:
        """Let plugins check a reloaded config; return their apply callables.

        A changed block whose plugin is not running or cannot reload refuses
        the reload with :class:`ConfigError` naming the key.
        """
        order = self._in_call_order("natsd_reload")
        reloadable = {name for name, _ in order}
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
        for name, plugin in order:
            for commit in self._call_one("natsd_reload", plugin, server=server, old=old, new=new,
                                         block=self._block_for(name, new, owned_by)):
                if commit is not None:
                    commits.append(commit)
        return commits

    # -- start-up hooks ------------------------------------------------------

    def listeners(self, server: ServerAPI) -> list[Listener]:
        return _flatten(self.pm.hook.natsd_listeners(server=server))

    def authenticators(self, server: ServerAPI) -> list[Authenticator]:
        return _flatten(self.pm.hook.natsd_authenticators(server=server))

    def bridges(self, server: ServerAPI) -> list[Bridge]:
        return _flatten(self.pm.hook.natsd_bridges(server=server))

    def storage_backends(self, server: ServerAPI) -> dict[str, StorageBackend]:
        return merge_by_name(self.pm.hook.natsd_storage_backends(server=server), "storage backend")

    def interest_listeners(self, server: ServerAPI) -> list[InterestListener]:
        return _flatten(self.pm.hook.natsd_interest_listeners(server=server))

    def message_tracers(self, server: ServerAPI) -> list[MessageTracer]:
        return _flatten(self.pm.hook.natsd_message_tracers(server=server))

    def observers(self, server: ServerAPI) -> Observers:
        """The bound methods of every observer, by event (empty lists when unobserved)."""
        events = Observers()
        for observer in _flatten(self.pm.hook.natsd_observers(server=server)):
            for method_name, slot in OBSERVER_EVENTS.items():
                method = getattr(observer, method_name, None)
                if callable(method):
                    getattr(events, slot).append(method)
        return events

    async def startup(self, server: ServerAPI) -> None:
        for result in self.pm.hook.natsd_startup(server=server):
            if inspect.isawaitable(result):
                await result

    def system_views(self, server: ServerAPI) -> dict[str, Any]:
        return merge_by_name(self.pm.hook.natsd_system_views(server=server), "system view")

    def stopping(self, server: ServerAPI) -> None:
        self._each_logged("natsd_stopping", server, "before shutdown")

    async def lame_duck(self, server: ServerAPI) -> None:
        await self._each_logged_async("natsd_lame_duck", server, "entering lame-duck mode")

    async def shutdown(self, server: ServerAPI) -> None:
        await self._each_logged_async("natsd_shutdown", server, "during shutdown")

    def _each_logged(self, hook_name: str, server: ServerAPI, when: str) -> list[Any]:
        """Call each plugin's implementation; a failure is logged and the others still run."""
        results = []
        for name, plugin in self._in_call_order(hook_name):
            try:
                results.extend(self._call_one(hook_name, plugin, server=server))
            except Exception:
                log.exception("plugin %s failed %s", name, when)
        return results

    async def _each_logged_async(self, hook_name: str, server: ServerAPI, when: str) -> None:
        for name, plugin in self._in_call_order(hook_name):
            try:
                for result in self._call_one(hook_name, plugin, server=server):
                    if inspect.isawaitable(result):
                        await result
            except Exception:
                log.exception("plugin %s failed %s", name, when)


def merge_by_name(results: Iterable[Mapping[str, Any] | None], what: str,
                  normalise: Callable[[str], str] = lambda name: name) -> dict[str, Any]:
    """Merge the mappings a hook's implementations return; a name offered twice is an error."""
    out: dict[str, Any] = {}
    for mapping in results:
        for name, value in (mapping or {}).items():
            name = normalise(name)
            if name in out:
                raise PluginError(f"{what} {name!r} offered twice by plugins")
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


# -- the command line -----------------------------------------------------------


@dataclass(frozen=True)
class _Option:
    dest: str
    flag: str
    config: str | None
    apply: Callable[[Any, MutableMapping[str, Any]], None] | None


class OptionGroup:
    """A titled group of command-line options (see ``natsd_addoption``)."""

    def __init__(self, parser: OptionParser, group: argparse._ArgumentGroup) -> None:
        self._parser = parser
        self._group = group

    def add_option(self, *flags: str, config: str | None = None,
                   apply: Callable[[Any, MutableMapping[str, Any]], None] | None = None,
                   **kwargs: Any) -> None:
        """Add an option (argparse's ``add_argument`` keywords) that sets ``config`` or calls ``apply``.

        ``config`` is a dotted key under a plugin-owned top-level key
        (``"cluster.routes"``, or ``"http_port"``); ``apply(value, blocks)``
        edits the plugin-owned blocks itself. Either runs only when the
        option was given.
        """
        if (config is None) == (apply is None):
            raise PluginError(f"option {flags[0]} needs exactly one of config= or apply=")
        kwargs.setdefault("default", None)
        action = self._group.add_argument(*flags, **kwargs)
        self._parser.options.append(_Option(action.dest, "/".join(flags), config, apply))


class OptionParser:
    """The ``natsd`` command line as plugins see it: groups of options that map to config."""

    def __init__(self, parser: argparse.ArgumentParser) -> None:
        self.parser = parser
        self.options: list[_Option] = []
        self._groups: dict[str, OptionGroup] = {}

    def group(self, title: str, description: str | None = None) -> OptionGroup:
        """The option group ``title`` (created on first use; shown in ``--help``)."""
        group = self._groups.get(title)
        if group is None:
            group = self._groups[title] = OptionGroup(
                self, self.parser.add_argument_group(title, description))
        return group

    def flags(self) -> set[str]:
        """Every option string the parser knows."""
        return set(self.parser._option_string_actions)

    def apply(self, args: argparse.Namespace, blocks: MutableMapping[str, Any],
              owners: Mapping[str, str]) -> None:
        """Apply the plugin options given in ``args`` to the plugin-owned ``blocks``."""
        for option in self.options:
            value = getattr(args, option.dest, None)
            if value is None:
                continue
            if option.apply is not None:
                option.apply(value, blocks)
                continue
            assert option.config is not None
            path = option.config.split(".")
            if path[0].lower() not in owners:
                raise ConfError(f"{option.flag} sets {option.config!r}, which no plugin owns")
            set_path(blocks, path, value, option.flag)


def set_path(blocks: MutableMapping[str, Any], path: list[str], value: Any, flag: str) -> None:
    """Set ``blocks[path[0]][path[1]]...`` to ``value``, creating blocks on the way."""
    node = blocks
    for part in path[:-1]:
        child = node.get(part)
        if child is None:
            child = node[part] = ConfMap()
        elif not isinstance(child, MutableMapping):
            raise ConfError(f"{flag} sets {'.'.join(path)!r}, but {part!r} is not a block")
        node = child
    node[path[-1]] = value
