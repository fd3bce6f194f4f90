"""The project's own checks, part of the test run: layering, types, lint.

- import-linter: the core's layers (``[tool.importlinter]`` in pyproject.toml),
  the core importing no plugin, plugins not reaching into each other;
- mypy on ``natsd``, ``natsd_plugins`` and ``natsd_jwt`` (the directories are
  linked under their package names, since they are installed with
  ``package-dir``);
- ruff on the same code.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = {"natsd": "core", "natsd_plugins": "plugins", "natsd_jwt": "jwtlib"}
BIN = Path(sys.executable).parent


def _run(*cmd: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=600)


def test_layers() -> None:
    out = _run(str(BIN / "lint-imports"), "--config", str(ROOT / "pyproject.toml"))
    assert out.returncode == 0, out.stdout + out.stderr


def test_types(tmp_path: Path) -> None:
    for package, directory in PACKAGES.items():
        os.symlink(ROOT / directory, tmp_path / package)
    out = _run(sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml"),
               "--cache-dir", str(tmp_path / ".mypy_cache"),
               *[arg for p in PACKAGES for arg in ("-p", p)], cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.parametrize("directory", sorted(PACKAGES.values()))
def test_lint(directory: str) -> None:
    out = _run(sys.executable, "-m", "ruff", "check", "--no-cache", directory)
    assert out.returncode == 0, out.stdout + out.stderr
