"""Config validation: keys map to ServerConfig, errors name file, line and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from natsd import hookimpl
from natsd.config.conf import ConfError, parse
from natsd.config import load
from natsd.plugin.manager import PluginManager
from natsd.server import Server, build_config


def test_nats_server_keys_and_units() -> None:
    conf = parse("""
        listen: 127.0.0.1:5222
        server_name = edge
        max_payload: 2MB
        max_pending 64KB
        max_conn: 10
        max_subs: 5
        ping_interval: "30s"
        ping_max: 3
        write_deadline: "500ms"
        debug: on
        logtime: no
    """, "nats.conf")
    cfg = load(conf)
    assert (cfg.host, cfg.port, cfg.server_name) == ("127.0.0.1", 5222, "edge")
    assert cfg.max_payload == 2 * 1024 * 1024 and cfg.max_pending == 64 * 1024
    assert (cfg.max_connections, cfg.max_subscriptions, cfg.ping_max) == (10, 5, 3)
    assert cfg.ping_interval == 30.0 and cfg.write_deadline == 0.5
    assert cfg.debug is True and cfg.logtime is False


def test_unknown_key_names_file_line_and_key() -> None:
    conf = parse("port: 4222\n\nmax_paylod: 10\n", "nats.conf")
    with pytest.raises(ConfError) as info:
        load(conf)
    err = info.value
    assert (err.file, err.line, err.key) == ("nats.conf", 3, "max_paylod")
    assert str(err) == "nats.conf:3: key 'max_paylod': unknown configuration key"


def test_wrong_type_is_refused() -> None:
    with pytest.raises(ConfError) as info:
        load(parse('port: "abc"\n', "x.conf"))
    assert info.value.key == "port" and info.value.line == 1


@pytest.mark.parametrize("key", ["mqtt", "websocket", "jetstream", "leafnodes", "gateway", "cluster"])
def test_plugin_blocks_without_plugin_name_the_capability(key: str) -> None:
    with pytest.raises(ConfError) as info:
        load(parse(f"port: 1\n{key} {{ port: 2 }}\n", "n.conf"))
    assert info.value.line == 2 and "which needs a natsd plugin" in str(info.value)


def test_not_yet_supported_keys_say_so() -> None:
    with pytest.raises(ConfError, match="does not support yet"):
        load(parse("server_tags: [a]\n", "n.conf"))


def test_variables_are_not_unknown_keys() -> None:
    cfg = load(parse("LIMIT: 7\nmax_subscriptions: $LIMIT\n", "n.conf"))
    assert cfg.max_subscriptions == 7


class OwnsMqtt:
    def __init__(self) -> None:
        self.block = None

    @hookimpl
    def natsd_config_blocks(self) -> list[str]:
        return ["mqtt"]

    @hookimpl
    def natsd_configure(self, block: object) -> None:
        self.block = block


async def test_owned_block_goes_to_its_plugin() -> None:
    plugin = OwnsMqtt()
    conf = parse("host: 127.0.0.1\nport: 0\nmqtt { port: 1883 }\n", "n.conf")
    pm = PluginManager()
    cfg = build_config(conf, pm, [plugin])
    async with Server(cfg, plugin_manager=pm):
        assert plugin.block == {"port": 1883}
        assert plugin.block.where("port").line == 3  # type: ignore[attr-defined]


async def test_plugin_without_its_block_is_not_enabled() -> None:
    plugin = OwnsMqtt()
    async with Server({"host": "127.0.0.1", "port": 0}, plugins=[plugin]) as server:
        assert plugin.block is None
        assert "OwnsMqtt" not in " ".join(server.plugins.names())


def test_plugins_block(tmp_path: Path) -> None:
    path = tmp_path / "p.conf"
    path.write_text("plugins {\n  autoload: false\n  modules: [json]\n  thing { a: 1 }\n}\n")
    from natsd.config.conf import parse_file
    from natsd.config import plugin_settings
    settings = plugin_settings(parse_file(path))
    assert settings.autoload is False and settings.modules == ("json",)
    assert settings.blocks["thing"] == {"a": 1}


def test_settings_for_missing_plugin_are_an_error() -> None:
    conf = parse("plugins { ghost { a: 1 } }\n", "n.conf")
    server = Server(conf)
    with pytest.raises(ConfError, match="ghost"):
        server.configure()


def test_embedding_mapping_accepts_sizes_as_text() -> None:
    assert Server({"port": 0, "max_payload": "64KB"}).config.max_payload == 64 * 1024
