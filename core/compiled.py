"""Compiled accelerators: the core modules mypyc compiles, and which implementation runs.

``pip install`` compiles the modules in :data:`MODULES` with mypyc when it can
(``setup.py``; a build without a C compiler or without mypyc installs pure
Python only). A compiled module is an extension module beside its source,
built from that very source: the same code, typed, run as C. Each carries the
SHA-256 of the source it was built from (:data:`DIGEST_NAME`).

Python prefers an extension module to a source file of the same name, so
:func:`install`, run when ``natsd`` is imported, puts a finder first on
``sys.meta_path`` that runs the source instead:

- when ``NATSD_PURE_PYTHON`` is set (to anything but ``""`` or ``0``): the
  pure-Python modules are the reference, and the test suite runs against both;
- when the compiled module was built from another version of the source (a
  checkout edited or updated since ``pip install -e .``): natsd logs a warning
  and runs the source, so an edit is never shadowed by a stale build.

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

MODULES = ("natsd.wire.protocol", "natsd.wire.routed")
"""The modules ``setup.py`` compiles, by import name (all live under ``core/``)."""

DIGEST_NAME = "__natsd_source_sha256__"
"""The compiled module's attribute holding the SHA-256 (hex) of the source it was built from."""

PURE_ENV = "NATSD_PURE_PYTHON"

log = logging.getLogger("natsd.compiled")


def pure_requested() -> bool:
    """Whether ``NATSD_PURE_PYTHON`` asks for the pure-Python modules."""
    return os.environ.get(PURE_ENV, "") not in ("", "0")


def source_digest(path: str) -> str:
    """SHA-256 (hex) of a source file's bytes, as ``setup.py`` records it."""
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def active() -> dict[str, bool]:
    """``{module: compiled?}`` for the modules of :data:`MODULES` imported so far."""
    found = {}
    for name in MODULES:
        module = sys.modules.get(name)
        if module is not None:
            found[name] = isinstance(getattr(module.__spec__, "loader", None), _Loaded)
    return found


def summary() -> str:
    """Which of :data:`MODULES` run compiled, in a few words (for the start-up log; imports them)."""
    for name in MODULES:
        importlib.import_module(name)
    compiled = [name for name, is_compiled in active().items() if is_compiled]
    if compiled:
        return ", ".join(compiled)
    return f"none ({PURE_ENV} is set)" if pure_requested() else "none (installed without them)"


class _Loaded(importlib.abc.Loader):
    """Hands the import system a compiled module :class:`_Finder` already loaded and checked."""

    def __init__(self, module: ModuleType) -> None:
        self.module = module

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        return self.module

    def exec_module(self, module: ModuleType) -> None:
        pass


class _Finder(importlib.abc.MetaPathFinder):
    """Finds :data:`MODULES`: the compiled module if it matches its source, else the source."""

    def find_spec(self, name: str, path: Sequence[str] | None,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        if name not in MODULES:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or not isinstance(spec.loader, importlib.machinery.ExtensionFileLoader):
            return spec  # not compiled: the source, as usual
        assert spec.origin is not None
        source = os.path.join(os.path.dirname(spec.origin), name.rpartition(".")[2] + ".py")
        if not os.path.exists(source):
            return spec
        if pure_requested():
            return importlib.util.spec_from_file_location(name, source)
        # Load the extension as the import system would (it runs the module's code), then
        # keep it only if it was built from this source.
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        finally:
            del sys.modules[name]
        if getattr(module, DIGEST_NAME, None) != source_digest(source):
            log.warning("%s: the compiled module was built from another version of %s; running the "
                        "source (rebuild with `pip install -e .` to compile it again)", name, source)
            return importlib.util.spec_from_file_location(name, source)
        compiled = importlib.machinery.ModuleSpec(name, _Loaded(module), origin=spec.origin)
        compiled.has_location = True
        return compiled


def install() -> None:
    """Put the finder first on ``sys.meta_path`` (once)."""
    if not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.insert(0, _Finder())
