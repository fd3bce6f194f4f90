"""Config validation: keys map to ServerConfig, errors name file, line and key."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest

from natsd import hookimpl
from natsd.config.conf import ConfError, parse
from natsd.config import ServerConfig, load
from natsd.plugin.manager import PluginManager
from natsd.server import Server, build_config
from natsd.testing import read_until


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
    with pytest.raises(ConfError, match="a nats-server option not supported by natsd"):
        load(parse("server_tags: [a]\n", "n.conf"))


def test_variables_are_not_unknown_keys() -> None:
    cfg = load(parse("LIMIT: 7\nmax_subscriptions: $LIMIT\n", "n.conf"))
    assert cfg.max_subscriptions == 7


class OwnsWidget:
    def __init__(self) -> None:
        self.block = None

    @hookimpl
    def natsd_config_blocks(self) -> list[str]:
        return ["widget"]

    @hookimpl
    def natsd_configure(self, block: object) -> None:
        self.block = block


async def test_owned_block_goes_to_its_plugin() -> None:
    plugin = OwnsWidget()
    conf = parse("host: 127.0.0.1\nport: -1\nwidget { port: 1883 }\n", "n.conf")
    pm = PluginManager()
    cfg = build_config(conf, pm, [plugin])
    async with Server(cfg, plugin_manager=pm):
        assert plugin.block == {"port": 1883}
        assert plugin.block.where("port").line == 3  # type: ignore[attr-defined]


async def test_plugin_without_its_block_is_not_enabled() -> None:
    plugin = OwnsWidget()
    async with Server({"host": "127.0.0.1", "port": 0}, plugins=[plugin]) as server:
        assert plugin.block is None
        assert "OwnsWidget" not in " ".join(server.plugins.names())


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


#: nats-server 2.15's top-level keys (opts.go, processConfigFileLine), aliases included.
NATS_SERVER_KEYS = (
    "listen", "client_advertise", "port", "server_name", "host", "net", "debug", "trace",
    "trace_verbose", "trace_headers", "logtime", "logtime_utc", "mappings", "maps",
    "disable_sublist_cache", "no_sublist_cache", "accounts", "default_sentinel", "authorization",
    "http", "https", "http_port", "monitor_port", "https_port", "http_base_path", "cluster",
    "gateway", "leaf", "leafnodes", "store_dir", "storedir", "jetstream", "logfile", "log_file",
    "logfile_size_limit", "log_size_limit", "logfile_max_num", "log_max_num", "syslog",
    "remote_syslog", "pidfile", "pid_file", "ports_file_dir", "prof_port", "prof_block_rate",
    "max_control_line", "max_payload", "max_pending", "proxy_protocol", "max_connections",
    "max_conn", "max_traced_msg_len", "max_subscriptions", "max_subs", "max_sub_tokens",
    "max_subscription_tokens", "ping_interval", "ping_max", "tls", "ocsp", "allow_non_tls",
    "write_deadline", "write_timeout", "lame_duck_duration", "lame_duck_grace_period", "operator",
    "operators", "roots", "root", "root_operators", "root_operator", "resolver", "account_resolver",
    "accounts_resolver", "resolver_tls", "resolver_preload", "resolver_pinned_accounts",
    "no_auth_user", "system_account", "system", "no_system_account", "no_system", "no_sys_acc",
    "no_header_support", "trusted", "trusted_keys", "connect_error_reports",
    "reconnect_error_reports", "websocket", "ws", "mqtt", "server_tags", "server_metadata",
    "feature_flags", "default_js_domain", "ocsp_cache", "no_fast_producer_stall",
    "max_closed_clients", "proxies",
)


@pytest.mark.parametrize("key", NATS_SERVER_KEYS)
def test_no_nats_server_key_is_unknown_or_silently_accepted(key: str) -> None:
    """A nats-server key is honoured, or refused as unsupported or as a plugin's, by name."""
    from natsd.config.options import CORE_KEYS

    value = "{}" if key in ("accounts", "authorization", "mappings", "maps", "tls") else "1"
    try:
        load(parse(f"{key}: {value}\n", "n.conf"))
    except ConfError as exc:
        assert exc.line == 1 and "unknown" not in exc.reason
        if key not in CORE_KEYS and key != "accounts":
            assert exc.key == key
            assert exc.reason == "a nats-server option not supported by natsd" or (
                "which needs a natsd plugin" in exc.reason)
    else:
        assert key in CORE_KEYS or key == "accounts", f"{key} accepted without effect"


def test_every_error_of_a_file_is_reported() -> None:
    """As nats-server's processConfigErr: all errors of one pass, in file order."""
    text = """port: 4333
disable_sublist_cache: true
max_paylod: 10
max_payload: "lots"
accounts {
  A { jetstream: enabled, msg_trace: { dest: x }, bogus: 1, users: [{user: a, password: b}] }
}
lame_duck_duration: "1s"
ping_interval: "soon"
"""
    with pytest.raises(ConfError) as info:
        load(parse(text, "n.conf"))
    found = [(e.line, e.key) for e in info.value.errors]
    assert found == [(2, "disable_sublist_cache"), (3, "max_paylod"), (4, "max_payload"),
                     (6, "jetstream"), (6, "bogus"), (9, "ping_interval"),
                     (8, "lame_duck_duration")]
    assert (info.value.line, info.value.key) == (2, "disable_sublist_cache")  # the first one
    assert str(info.value).splitlines()[1] == "n.conf:3: key 'max_paylod': unknown configuration key"
    reasons = {e.key: e.reason for e in info.value.errors}
    assert reasons["jetstream"].startswith("configures JetStream, which needs a natsd plugin")
    assert "msg_trace" not in reasons  # the msgtrace plugin's (core/config/options.py ACCOUNT_KEYS)


def test_nats_server_aliases_are_honoured() -> None:
    cfg = load(parse("pidfile: /tmp/x.pid\nsystem: SYS\nno_sys_acc: true\nmaps { a: b }\n"
                     "trace_verbose: true\nlogtime_utc: true\naccounts { SYS {} }\n", "n.conf"))
    assert (cfg.pid_file, cfg.system_account, cfg.no_system_account) == ("/tmp/x.pid", "SYS", True)
    assert cfg.mappings == {"a": "b"} and cfg.trace and cfg.logtime_utc


def test_account_maps_is_read_as_mappings(natsd_factory) -> None:
    running = natsd_factory(parse("accounts { A { users: [{user: a, password: a}], maps: { in: out } } }",
                                  "n.conf"))
    sock = socket.create_connection(("127.0.0.1", running.port), timeout=5)
    read_until(sock, b"\r\n")
    sock.sendall(b'CONNECT {"verbose":false,"user":"a","pass":"a"}\r\nSUB out 1\r\n'
                 b"PUB in 2\r\nhi\r\nPING\r\n")
    assert read_until(sock) == b"MSG out 1 2\r\nhi\r\nPONG\r\n"
    sock.close()


def test_plugin_errors_are_reported_together(tmp_path: Path) -> None:
    """Each plugin's configuration errors, not only the first plugin's."""
    conf = tmp_path / "n.conf"
    conf.write_text('port: -1\nhttps_port: 8443\noperator: "/nonexistent/op.jwt"\nresolver: MEMORY\n')
    server = Server(str(conf))
    with pytest.raises(ConfError) as info:
        server.configure()
    assert sorted(e.key for e in info.value.errors) == ["https_port", "operator"]
