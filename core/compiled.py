"""Compiled accelerators: the modules mypyc compiles, and which implementation runs.

``pip install`` compiles the modules in :data:`MODULES` with mypyc when it can
(``setup.py``; a build without a C compiler or without mypyc installs pure
Python only), and those the first-party plugins name (``natsd_plugins``
declares them through the plugin contract, ``natsd.declare_compiled``
(:mod:`natsd.plugin.compiled`), from
``plugins/compiled_modules.py``; any plugin package can).
A compiled module is an extension module beside its source, built from that
very source: the same code, typed, run as C. Each carries the SHA-256 of the
source it was built from (:data:`DIGEST_NAME`).

Python prefers an extension module to a source file of the same name, so
:func:`install`, run when ``natsd`` is imported, puts a finder first on
``sys.meta_path`` that runs the source instead:

- when ``NATSD_PURE_PYTHON`` is set (to anything but ``""`` or ``0``): the
  pure-Python modules are the reference, and the test suite runs against both;
- when a compiled module was built from another version of its source (a
  checkout edited or updated since ``pip install -e .``): natsd logs a warning
  and runs the sources of all of them, so an edit is never shadowed by a stale
  build (and no compiled class sits on a pure-Python base).

The finder decides once per group (the core's modules, the plugins'), for all
its modules, before loading any: it looks for each source's digest in the
compiled files' bytes.

This module imports nothing of natsd: ``setup.py`` reads :data:`MODULES` from it.
"""

from __future__ import annotations

import hashlib
import importlib.abc
import importlib.machinery
import importlib.util
import logging
import os
import sys
from collections.abc import Sequence
from types import ModuleType

MODULES = (
    "natsd.wire.protocol",
    "natsd.wire.routed",
    "natsd.routing.sublist",
    "natsd.routing.connection",
    "natsd.routing.deliver",
    "natsd.routing.account",
    "natsd.routing.internal",
    "natsd.conn.client",
)
"""The modules ``setup.py`` compiles, by import name (all live under ``core/``).

They run compiled all together or not at all: compiled classes derive from one
another across modules (``Client`` from ``Connection``), so a compiled module
cannot sit on a pure-Python one."""

DIGEST_NAME = "__natsd_source_sha256__"
"""The compiled module's attribute holding the SHA-256 (hex) of the source it was built from."""

PURE_ENV = "NATSD_PURE_PYTHON"

PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))

log = logging.getLogger("natsd.compiled")


def pure_requested() -> bool:
    """Whether ``NATSD_PURE_PYTHON`` asks for the pure-Python modules."""
    return os.environ.get(PURE_ENV, "") not in ("", "0")


def source_digest(path: str) -> str:
    """SHA-256 (hex) of a source file's bytes, as ``setup.py`` records it."""
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


_GROUPS: dict[str, tuple[str, tuple[str, ...]]] = {"natsd": (PACKAGE_DIR, MODULES)}
"""Compiled modules by package: ``{package: (its directory, its modules)}``."""


def add_group(package: str, directory: str, modules: Sequence[str]) -> None:
    """Compiled modules of another package (``natsd_plugins``, or a third-party plugin's, through
    ``natsd.declare_compiled``, called before any of them is imported), chosen as the
    core's are: all compiled or all sources. ``directory`` is the package's own."""
    _GROUPS[package] = (directory, tuple(modules))


def all_modules() -> list[str]:
    """Every compiled module known: :data:`MODULES` and those of :func:`add_group`."""
    return [name for _, modules in _GROUPS.values() for name in modules]


def active() -> dict[str, bool]:
    """``{module: compiled?}`` for the compiled modules imported so far (every group)."""
    found = {}
    for name in all_modules():
        module = sys.modules.get(name)
        if module is not None:
            found[name] = isinstance(getattr(module.__spec__, "loader", None),
                                     importlib.machinery.ExtensionFileLoader)
    return found


def summary() -> str:
    """Which modules run compiled, in a few words (for the start-up log): :data:`MODULES`, which it
    imports, and the other groups' modules imported so far."""
    for name in MODULES:
        importlib.import_module(name)
    compiled = [name for name, is_compiled in active().items() if is_compiled]
    if compiled:
        return ", ".join(compiled)
    return f"none ({PURE_ENV} is set)" if pure_requested() else "none (installed without them, or stale)"


def _group(name: str) -> str | None:
    package = name.partition(".")[0]
    return package if name in _GROUPS.get(package, ("", ()))[1] else None


def _files(name: str) -> tuple[str, str | None, list[str]]:
    """A module's source path, its extension module (None: not compiled) and the files its
    compiled code is in: the extension, and the library mypyc builds beside it when each
    module is compiled separately (``<name>__mypyc<suffix>``)."""
    directory = _GROUPS[name.partition(".")[0]][0]
    stem = os.path.join(directory, *name.split(".")[1:])
    found = [stem + suffix for suffix in importlib.machinery.EXTENSION_SUFFIXES if os.path.exists(stem + suffix)]
    if not found:
        return stem + ".py", None, []
    libs = [stem + "__mypyc" + suffix for suffix in importlib.machinery.EXTENSION_SUFFIXES
            if os.path.exists(stem + "__mypyc" + suffix)]
    return stem + ".py", found[0], [found[0], *libs]


def _built_from(source: str, built: list[str]) -> bool:
    """Whether the compiled files carry the digest of ``source``. ``setup.py`` appends the
    digest to the module as a string constant (:data:`DIGEST_NAME`), which the compiled code
    keeps verbatim among its literals: the bytes say it without running the module."""
    digest = source_digest(source).encode()
    for path in built:
        with open(path, "rb") as f:
            if digest in f.read():
                return True
    return False


def _choose(modules: tuple[str, ...]) -> dict[str, str | None]:
    """``{module: extension path}`` if every module of a group runs compiled, else
    ``{module: None}`` (the sources); warns about a build older than its source."""
    sources: dict[str, str | None] = {name: None for name in modules}
    if pure_requested():
        return sources
    chosen: dict[str, str | None] = {}
    stale = []
    for name in modules:
        source, extension, built = _files(name)
        if extension is None:
            return sources  # installed without them
        if os.path.exists(source) and not _built_from(source, built):
            stale.append((name, source))
        chosen[name] = extension
    for name, source in stale:
        log.warning("%s: the compiled module was built from another version of %s; running the "
                    "source of every compiled module of %s (rebuild with `pip install -e .` to compile "
                    "them again)", name, source, name.partition(".")[0])
    return sources if stale else chosen


class _Finder(importlib.abc.MetaPathFinder):
    """Finds the compiled modules: a group's all compiled if every one matches its source, else
    all sources."""

    def __init__(self) -> None:
        self.chosen: dict[str, dict[str, str | None]] = {}
        """Per group, once it is decided: ``{module: extension path or None}``."""

    def find_spec(self, name: str, path: Sequence[str] | None,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        group = _group(name)
        if group is None:
            return None
        chosen = self.chosen.get(group)
        if chosen is None:
            chosen = self.chosen[group] = _choose(_GROUPS[group][1])
        extension = chosen[name]
        if extension is not None:
            return importlib.util.spec_from_file_location(name, extension)
        source = _files(name)[0]
        return importlib.util.spec_from_file_location(name, source) if os.path.exists(source) else None


def install() -> None:
    """Put the finder first on ``sys.meta_path`` (once)."""
    if not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.insert(0, _Finder())
