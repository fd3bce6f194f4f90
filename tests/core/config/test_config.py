"""Config validation: keys map to ServerConfig, errors name file, line and key."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from natsd import hookimpl
from natsd.config.conf import ConfError, parse
from natsd.config import ServerConfig, load
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
    conf = parse("host: 127.0.0.1\nport: -1\nmqtt { port: 1883 }\n", "n.conf")
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


@pytest.mark.parametrize("text, port", [
    ("port: 0", 4222), ("port: -1", 0), ("port: 5222", 5222), ("listen: 127.0.0.1:0", 4222),
    ("listen: 127.0.0.1:-1", 0), ("", 4222)])
def test_file_ports_follow_nats_server(text: str, port: int) -> None:
    """In a file 0 is the default port and -1 a random one (nats-server's RANDOM_PORT);
    ServerConfig.port is what is listened on, 0 being a free port."""
    assert load(parse(text, "n.conf")).port == port


@pytest.mark.parametrize("given, port", [(0, 0), (-1, 0), (4333, 4333)])
def test_embedding_port_zero_is_a_free_port(given: int, port: int) -> None:
    assert Server({"port": given}).config.port == port
    assert ServerConfig(port=given).port == port


@pytest.mark.parametrize("text", ["port: -2", "port: 65536", "listen: 127.0.0.1:-5"])
def test_out_of_range_port_is_refused(text: str) -> None:
    with pytest.raises(ConfError, match="out of range") as info:
        load(parse(text, "n.conf"))
    assert info.value.line == 1


async def test_random_port_from_a_file(tmp_path: Path) -> None:
    conf = tmp_path / "n.conf"
    conf.write_text("host: 127.0.0.1\nport: -1\n")
    async with Server(str(conf)) as server:
        assert server.port not in (0, 4222)
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        assert (await reader.readline()).startswith(b"INFO ")
        writer.close()
