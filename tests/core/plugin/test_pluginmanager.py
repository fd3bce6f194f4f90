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


# -- hook mechanics: every hook goes through pluggy --------------------------------


class _Auth:
    def __init__(self, name: str) -> None:
        self.name = name

    def authenticate(self, request: Any) -> None:
        return None


def test_tryfirst_and_trylast_order_implementations() -> None:
    """pluggy calls later registrations first; tryfirst/trylast move an implementation."""
    from natsd import Server, hookimpl

    def plugin(name: str, **marks: bool) -> object:
        class P:
            @hookimpl(**marks)
            def natsd_authenticators(self) -> list[_Auth]:
                return [_Auth(name)]
        return P()

    async def order(*plugins: object) -> list[str]:
        async with Server({"host": "127.0.0.1", "port": 0}, plugins=plugins) as server:
            return [a.name for a in server.auth.authenticators if isinstance(a, _Auth)]

    import asyncio

    assert asyncio.run(order(plugin("a"), plugin("b"))) == ["b", "a"]
    assert asyncio.run(order(plugin("a", tryfirst=True), plugin("b"))) == ["a", "b"]
    assert asyncio.run(order(plugin("a"), plugin("b", trylast=True))) == ["a", "b"]


def test_a_hook_wrapper_wraps_every_plugin(tmp_path: Path) -> None:
    """A wrapper sees (and may change) the results of start-up hooks, and wraps each
    plugin's natsd_configure call with that plugin's block."""
    from natsd import Server, hookimpl

    seen: list[Any] = []

    class Owner:
        @hookimpl
        def natsd_config_blocks(self) -> list[str]:
            return ["thing"]

        @hookimpl
        def natsd_configure(self, block: Any) -> None:
            seen.append(("configure", dict(block)))

        @hookimpl
        def natsd_authenticators(self) -> list[_Auth]:
            return [_Auth("owner")]

    class Wrapper:
        @hookimpl(wrapper=True)
        def natsd_configure(self, block: Any) -> Any:
            seen.append(("before", dict(block or {})))
            result = yield
            seen.append(("after", dict(block or {})))
            return result

        @hookimpl(wrapper=True)
        def natsd_authenticators(self) -> Any:
            results = yield
            return [[_Auth("wrapped")], *results]

    async def run() -> list[str]:
        async with Server({"host": "127.0.0.1", "port": 0, "thing": {"x": 1}},
                          plugins=[Owner(), Wrapper()]) as server:
            return [a.name for a in server.auth.authenticators if isinstance(a, _Auth)]

    import asyncio

    assert asyncio.run(run()) == ["wrapped", "owner"]
    assert [s for s in seen if s[1] == {"x": 1}] == [
        ("before", {"x": 1}), ("configure", {"x": 1}), ("after", {"x": 1})]


def test_a_plugin_declares_hooks_for_other_plugins() -> None:
    """natsd_addhooks: one plugin offers a hook, another implements it, the first calls it."""
    import types

    from natsd.plugin.hookspecs import hookimpl, hookspec

    specs = types.ModuleType("greeting_specs")

    @hookspec
    def natsd_greeting(name: str) -> str:  # type: ignore[empty-body]
        """A greeting for ``name``."""

    specs.natsd_greeting = natsd_greeting  # type: ignore[attr-defined]

    class Offers:
        @hookimpl
        def natsd_addhooks(self, pluginmanager: PluginManager) -> None:
            pluginmanager.add_hookspecs(specs)

    class Implements:
        @hookimpl
        def natsd_greeting(self, name: str) -> str:
            return f"hello {name}"

    class Optional:
        @hookimpl(optionalhook=True)
        def natsd_not_declared_by_anyone(self) -> None:
            pass

    pm = PluginManager()
    pm.load(PluginSettings(autoload=False), [Offers(), Implements(), Optional()])
    assert pm.hook.natsd_greeting(name="you") == ["hello you"]
    pm2 = PluginManager()
    with pytest.raises(PluginError, match="natsd_greeting"):
        pm2.load(PluginSettings(autoload=False), [Implements()])  # nobody declares it


def test_a_plugin_adds_command_line_options(tmp_path: Path) -> None:
    """natsd_addoption: options map to config keys of the plugin's block, and show in --help."""
    import argparse
    import subprocess

    from natsd.cli import make_parser
    from natsd.config.conf import ConfMap
    from natsd.plugin.manager import OptionParser

    (tmp_path / "natsd_test_opts.py").write_text(
        "from natsd import hookimpl\n"
        "@hookimpl\n"
        "def natsd_config_blocks():\n    return ['widget']\n"
        "@hookimpl\n"
        "def natsd_addoption(parser):\n"
        "    g = parser.group('Widget Options')\n"
        "    g.add_option('--widget_port', type=int, config='widget.port', help='widget port')\n"
        "    g.add_option('-wz', '--widget_off', action='store_true', apply=lambda v, blocks: blocks.pop('widget', None))\n"
        "@hookimpl\n"
        "def natsd_configure(block):\n"
        "    if block is not None: print('widget block', dict(block), flush=True)\n")
    sys.path.insert(0, str(tmp_path))
    try:
        pm = PluginManager()
        pm.load(PluginSettings(autoload=False), ["natsd_test_opts"])
        owners = pm.config_blocks()
        options = OptionParser(make_parser())
        pm.addoption(options)
        blocks = ConfMap({"widget": ConfMap({"name": "w"})})
        options.apply(options.parser.parse_args(["--widget_port", "7"]), blocks, owners)
        assert blocks == {"widget": {"name": "w", "port": 7}}
        options.apply(options.parser.parse_args(["-wz"]), blocks, owners)
        assert blocks == {}
        with pytest.raises(SystemExit):
            options.parser.parse_args(["--widget_port", "seven"])
        assert isinstance(options.parser, argparse.ArgumentParser)
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("natsd_test_opts", None)
    env = {**__import__("os").environ, "PYTHONPATH": str(tmp_path)}
    helptext = subprocess.run([sys.executable, "-m", "natsd", "--plugin", "natsd_test_opts", "--help"],
                              capture_output=True, text=True, env=env, timeout=30).stdout
    assert "Widget Options" in helptext and "--widget_port" in helptext
    (tmp_path / "empty.conf").write_text("# flags only\n")
    checked = subprocess.run([sys.executable, "-m", "natsd", "--plugin", "natsd_test_opts", "-t",
                              "-c", str(tmp_path / "empty.conf"), "--widget_port", "9"],
                             capture_output=True, text=True, env=env, timeout=30)
    assert "widget block {'port': 9}" in checked.stdout, checked.stderr


def test_stash_keeps_typed_state_per_server() -> None:
    from natsd.plugin.stash import Stash, StashKey

    key = StashKey[list[int]]()
    other = StashKey[str]()
    one, two = Stash(), Stash()
    one[key] = [1]
    assert one[key] == [1] and two.get(key, None) is None and key in one and other not in one
    assert one.setdefault(other, "x") == "x" and len(one) == 2
    assert one.pop(key, None) == [1] and one.pop(key, "gone") == "gone"
    with pytest.raises(KeyError):
        two[key]


def test_services_between_plugins(natsd_factory: Any) -> None:
    srv = natsd_factory()
    events = srv.call(srv.server.service, "system")
    assert events is not None and hasattr(events, "statsz")  # the system plugin's service
    assert srv.call(srv.server.service, "nothing") is None
    with pytest.raises(ValueError, match="already registered"):
        srv.call(srv.server.register_service, "system", object())


def test_every_hook_has_documentation() -> None:
    """Each hook spec (the core's and those plugins declare) has a docstring and a place in
    docs/plugins.md."""
    from natsd.plugin import hookspecs
    from natsd_plugins.monitor import hookspecs as monitor_hookspecs

    text = (Path(__file__).resolve().parents[3] / "docs" / "plugins.md").read_text()
    for module in (hookspecs, monitor_hookspecs):
        for name in (n for n in dir(module) if n.startswith("natsd_")):
            assert (getattr(module, name).__doc__ or "").strip(), f"{name} has no docstring"
            assert f"`{name}" in text, f"{name} is not in docs/plugins.md"
