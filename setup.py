"""natsd's compiled accelerators: mypyc compiles the hot modules at install.

Everything else about the package is in pyproject.toml. The modules compiled
are listed in ``core/compiled.py`` (``MODULES``, the core's) and
``plugins/compiled_modules.py`` (the first-party plugins'); the first also
explains how the compiled and the pure-Python modules are chosen at run time.

The build copies ``core/`` to ``build/mypyc-src/natsd`` and ``plugins/`` to
``build/mypyc-src/natsd_plugins`` (mypyc names modules after their folders),
appends to each compiled module the SHA-256 of its source, and compiles. It installs pure
Python only, with a warning, when ``NATSD_PURE_PYTHON`` is set, when mypyc is
missing, or when compiling fails (no C compiler, say).
"""

from __future__ import annotations

import hashlib
import os
import runpy
import shutil
import sys

from setuptools import Extension, setup

STAGE = os.path.join("build", "mypyc-src")


def _warn(text: str) -> None:
    print(f"natsd: {text}; installing the pure-Python modules only", file=sys.stderr)


FOLDERS = {"natsd": "core", "natsd_plugins": "plugins"}
"""Each package's folder in the checkout (pyproject.toml's package-dir)."""


def _stage(modules: tuple[str, ...], digest_name: str) -> list[str]:
    """Copy the packages to STAGE, with each compiled module's source digest appended; the paths to compile."""
    shutil.rmtree(STAGE, ignore_errors=True)
    for package, folder in FOLDERS.items():
        shutil.copytree(folder, os.path.join(STAGE, package), ignore=shutil.ignore_patterns("__pycache__", "*.so"))
    paths = []
    for name in modules:
        package, *parts = name.split(".")
        relative = os.path.join(*parts) + ".py"
        with open(os.path.join(FOLDERS[package], relative), "rb") as f:
            source = f.read()
        path = os.path.join(STAGE, package, relative)
        with open(path, "ab") as f:
            f.write(b"\n%s = %r\n" % (digest_name.encode(), hashlib.sha256(source).hexdigest()))
        paths.append(path)
    return paths


def ext_modules() -> list[Extension]:
    compiled = runpy.run_path(os.path.join("core", "compiled.py"))
    if os.environ.get(compiled["PURE_ENV"], "") not in ("", "0"):
        _warn(f"{compiled['PURE_ENV']} is set")
        return []
    try:
        from mypyc.build import mypycify
    except ImportError:
        _warn("mypyc (the mypy package) is not installed")
        return []
    plugins = runpy.run_path(os.path.join("plugins", "compiled_modules.py"))
    paths = _stage(compiled["MODULES"] + plugins["MODULES"], compiled["DIGEST_NAME"])
    try:
        extensions = mypycify(paths, opt_level="3", separate=True)
    except BaseException as e:  # mypyc exits on a type error
        _warn(f"mypyc failed ({e!r})")
        return []
    for extension in extensions:
        extension.optional = True  # a failed C build warns and installs the pure modules
    return extensions


setup(ext_modules=ext_modules())
