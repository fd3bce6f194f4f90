"""Compiled modules of a plugin package (:func:`declare`, also ``natsd.declare_compiled``):
declared once, chosen as the core's are.

A plugin distribution may ship C extension modules (mypyc's, say) beside the
sources they were built from, as natsd ships its own hot modules. Declared
here, from the package's ``__init__`` and before any of them is imported::

    # myplugin/__init__.py
    import natsd

    natsd.declare_compiled(__name__, __path__[0], ("myplugin.codec", "myplugin.index"))

they get what the core's compiled modules get (:mod:`natsd.compiled`):

- all of them run compiled, or all from source: a compiled class may derive
  from another module's, and cannot sit on a pure-Python base;
- a build older than its source (an edited checkout) is never used: natsd
  warns and runs the sources. For that, each compiled module must carry the
  SHA-256 (hex) of its source as the string constant :data:`DIGEST_NAME`,
  appended to the source before compiling (natsd's ``setup.py`` does it);
  a module built without it counts as stale;
- ``NATSD_PURE_PYTHON=1`` runs the sources;
- the start-up log and :func:`natsd.compiled.active` list them.
"""

from __future__ import annotations

from collections.abc import Sequence

from natsd.compiled import DIGEST_NAME, add_group


def declare(package: str, directory: str, modules: Sequence[str]) -> None:
    """Declare ``modules`` (import names, each under ``package``) as ``package``'s compiled group;
    ``directory`` is the package's folder (its ``__path__[0]``)."""
    for name in modules:
        if name.partition(".")[0] != package:
            raise ValueError(f"{name!r} is not a module of the package {package!r}")
    add_group(package, directory, modules)


__all__ = ["DIGEST_NAME", "declare"]
