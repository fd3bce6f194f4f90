"""Plugin discovery through the ``natsd`` entry-point group, allow/deny, and the facade."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Iterator

import pytest

from natsd.config import PluginSettings
from natsd.plugin.manager import PluginError, PluginManager


@pytest.fixture
def installed(tmp_path: Path) -> Iterator[Path]:
    """Two distributions declaring natsd entry points, importable from tmp_path."""
    for name in ("alpha", "beta"):
        (tmp_path / f"natsd_test_{name}.py").write_text(
            "from natsd import hookimpl\n"
            "@hookimpl\n"
            f"def natsd_storage_backends():\n    return {{'{name}': object()}}\n")
        dist = tmp_path / f"natsd_test_{name}-1.0.dist-info"
        dist.mkdir()
        (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: natsd-test-{name}\nVersion: 1.0\n")
        (dist / "entry_points.txt").write_text(f"[natsd]\n{name} = natsd_test_{name}\n")
    sys.path.insert(0, str(tmp_path))
    yield tmp_path
    sys.path.remove(str(tmp_path))
    for name in ("alpha", "beta"):
        sys.modules.pop(f"natsd_test_{name}", None)


def loaded(settings: PluginSettings, extra: list[Any] | None = None) -> set[str]:
    pm = PluginManager()
    pm.load(settings, extra or [])
    return {n for n in pm.names() if n in ("alpha", "beta")}


def test_autoload_finds_entry_points(installed: Path) -> None:
    assert loaded(PluginSettings()) == {"alpha", "beta"}


def test_deny_and_allow(installed: Path) -> None:
    assert loaded(PluginSettings(deny=("beta",))) == {"alpha"}
    assert loaded(PluginSettings(allow=("beta",))) == {"beta"}
    assert loaded(PluginSettings(autoload=False)) == set()
    assert loaded(PluginSettings(autoload=False, allow=("alpha",))) == {"alpha"}


def test_duplicate_storage_backend_name_is_an_error(installed: Path) -> None:
    class Clash:
        from natsd import hookimpl

        @hookimpl
        def natsd_storage_backends(self) -> dict[str, object]:
            return {"alpha": object()}

    pm = PluginManager()
    pm.load(PluginSettings(), [Clash()])
    with pytest.raises(PluginError, match="'alpha' offered twice"):
        pm.storage_backends(server=None)  # type: ignore[arg-type]


def test_unimportable_module_is_a_clear_error() -> None:
    with pytest.raises(PluginError, match="no_such_module_xyz"):
        PluginManager().load(PluginSettings(modules=("no_such_module_xyz",)))


def test_fixture_factory_with_plugins(natsd_factory: Any) -> None:
    seen: list[str] = []

    class Startup:
        from natsd import hookimpl

        @hookimpl
        async def natsd_startup(self, server: Any) -> None:
            seen.append(server.name)

    running = natsd_factory({"server_name": "fixture"}, plugins=[Startup()])
    assert seen == ["fixture"] and running.url.startswith("nats://127.0.0.1:")
