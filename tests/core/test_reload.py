"""Config reload in process: what applies, what is refused, and what clients see."""

from __future__ import annotations

import json
import logging
import socket

import pytest

from natsd import hookimpl
from natsd.config import ConfigError
from natsd.testing import read_first_pong, read_until

HEAD = "host: 127.0.0.1\nport: -1\n"


def _conf(tmp_path, text: str):
    path = tmp_path / "natsd.conf"
    path.write_text(HEAD + text)
    return path


def _client(server, user: str | None = None, password: str | None = None) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=3)
    read_until(sock, b"\r\n")
    connect = {"verbose": False, "protocol": 1}
    if user is not None:
        connect.update(user=user, **{"pass": password or user})
    sock.sendall(f"CONNECT {json.dumps(connect)}\r\nPING\r\n".encode())
    assert b'"connect_info":true' in read_first_pong(sock)
    return sock


def _ping(sock: socket.socket) -> bytes:
    sock.sendall(b"PING\r\n")
    return read_until(sock)


def test_permissions_change_applies_to_connected_clients(natsd_factory, tmp_path):
    path = _conf(tmp_path, 'authorization { users: [ {user: a, password: a} ] }\n')
    running = natsd_factory(str(path))
    sock = _client(running, "a")
    sock.sendall(b"SUB foo 1\r\nSUB bar 2\r\n")
    assert _ping(sock) == b"PONG\r\n"
    path.write_text(HEAD + 'authorization { users: [ {user: a, password: a, '
                    'permissions: {subscribe: foo, publish: foo}} ] }\n')
    assert running.reload() == ["authorization"]
    got = _ping(sock)
    assert got == (b"-ERR 'Permissions Violation for Subscription to \"bar\" (sid \"2\")'\r\nPONG\r\n")
    sock.sendall(b"PUB foo 1\r\nx\r\nPUB bar 1\r\ny\r\n")
    assert _ping(sock) == (b"MSG foo 1 1\r\nx\r\n"
                           b"-ERR 'Permissions Violation for Publish to \"bar\"'\r\nPONG\r\n")


def test_enabling_auth_refuses_anonymous_clients(natsd_factory, tmp_path):
    path = _conf(tmp_path, "")
    running = natsd_factory(str(path))
    anonymous = _client(running)
    path.write_text(HEAD + "authorization { token: s3cret }\n")
    running.reload()
    assert read_until(anonymous, b"\r\n") == b"-ERR 'Authorization Violation'\r\n"
    assert anonymous.recv(100) == b""
    assert running.call(lambda: running.server.auth_required)
    sock = socket.create_connection(("127.0.0.1", running.port), timeout=3)
    assert b'"auth_required":true' in read_until(sock, b"\r\n")


def test_user_moved_to_another_account_is_closed_to_reconnect(natsd_factory, tmp_path):
    path = _conf(tmp_path, "accounts { A { users: [{user: a, password: a}] }, B {} }\n")
    running = natsd_factory(str(path))
    sock = _client(running, "a")
    path.write_text(HEAD + "accounts { A {}, B { users: [{user: a, password: a}] } }\n")
    running.reload()
    assert sock.recv(100) == b""  # closed without -ERR, as nats-server does
    again = _client(running, "a")
    assert again is not None
    assert running.call(lambda: sorted(c.account.name for c in running.server.clients.values())) == ["B"]


def test_mappings_and_imports_reload(natsd_factory, tmp_path):
    before = ("accounts { A { users: [{user: a, password: a}], exports: [{stream: news}] },\n"
              "           B { users: [{user: b, password: b}] } }\nno_auth_user: ''\n")
    path = _conf(tmp_path, before.replace("no_auth_user: ''\n", ""))
    running = natsd_factory(str(path))
    a, b = _client(running, "a"), _client(running, "b")
    b.sendall(b"SUB news 1\r\nSUB new.> 2\r\n")
    _ping(b)
    path.write_text(HEAD + "accounts {\n"
                    " A { users: [{user: a, password: a}], exports: [{stream: news}],"
                    " mappings: { old: new.old } }\n"
                    " B { users: [{user: b, password: b}], imports: [{stream: {account: A, subject: news}}],"
                    " mappings: { old: new.old } } }\n")
    assert running.reload() == ["accounts"]
    a.sendall(b"PUB news 2\r\nhi\r\n")
    _ping(a)
    b.sendall(b"PUB old 3\r\nyes\r\n")
    assert _ping(b) == b"MSG news 1 2\r\nhi\r\nMSG new.old 2 3\r\nyes\r\nPONG\r\n"
    path.write_text(HEAD + "accounts { A { users: [{user: a, password: a}] }, B { users: [{user: b, password: b}] } }\n")
    running.reload()
    a.sendall(b"PUB news 2\r\nhi\r\n")
    _ping(a)
    b.sendall(b"PUB old 3\r\nyes\r\n")
    assert _ping(b) == b"PONG\r\n"  # import and mapping gone


def test_fixed_settings_are_refused_with_file_line_and_key(natsd_factory, tmp_path):
    path = _conf(tmp_path, "max_payload: 1000\n")
    running = natsd_factory(str(path))
    config = running.server.config
    path.write_text(HEAD + "max_payload: 2000\nserver_name: other\n")
    with pytest.raises(ConfigError) as info:
        running.reload()
    assert info.value.key == "server_name" and info.value.line == 4
    assert str(info.value).startswith(f"{path}:4: key 'server_name': config reload not supported "
                                      "for server_name")
    assert running.server.config is config  # max_payload not applied either


def test_broken_file_keeps_running_config(natsd_factory, tmp_path):
    path = _conf(tmp_path, "authorization { users: [ {user: a, password: a} ] }\n")
    running = natsd_factory(str(path))
    sock = _client(running, "a")
    path.write_text(HEAD + "authorization { users: [ {user: a, password: a ] }\n")
    with pytest.raises(ConfigError) as info:
        running.reload()
    assert info.value.file == str(path) and info.value.line == 3
    path.write_text(HEAD + "authorization { users: [ {user: a, password: a, bogus: 1} ] }\n")
    with pytest.raises(ConfigError):
        running.reload()
    path.write_text(HEAD + "accounts { A { users: [{user: a, password: b}],"
                    " mappings: { 'foo.*': 'bar.{{wildcard(5)}}' } } }\n")
    with pytest.raises(ConfigError):  # a bad mapping refuses the user change with it
        running.reload()
    assert _ping(sock) == b"PONG\r\n"
    assert _client(running, "a") is not None


def test_reload_needs_a_file(natsd_factory):
    running = natsd_factory()
    with pytest.raises(ConfigError, match="only reload config when a file is provided"):
        running.reload()
    assert running.reload({"host": "127.0.0.1", "port": 0, "max_payload": 512}) == ["max_payload"]


def test_limits_apply_to_connected_and_new_clients(natsd_factory, tmp_path):
    path = _conf(tmp_path, "")
    running = natsd_factory(str(path))
    first, second, third = (_client(running) for _ in range(3))
    path.write_text(HEAD + "max_payload: 8\nmax_connections: 2\n")
    assert sorted(running.reload()) == ["max_connections", "max_payload"]
    third.settimeout(3)
    assert read_until(third, b"\r\n") == b"-ERR 'maximum connections exceeded'\r\n"
    first.sendall(b"PUB x 9\r\n123456789\r\n")
    assert read_until(first, b"\r\n") == b"-ERR 'Maximum Payload Violation'\r\n"
    second.sendall(b"PUB x 8\r\n12345678\r\n")
    assert _ping(second) == b"PONG\r\n"


def test_logging_is_reconfigured_when_natsd_installed_it(natsd_factory, tmp_path):
    from natsd.config import log as natsd_log

    logger = logging.getLogger("natsd")
    saved = (list(logger.handlers), logger.level, logger.propagate)
    try:
        natsd_log.configure()
        path = _conf(tmp_path, "")
        running = natsd_factory(str(path))
        assert logger.level == logging.INFO
        path.write_text(HEAD + f"debug: true\nlog_file: '{tmp_path / 'natsd.log'}'\n")
        running.reload()
        assert logger.level == logging.DEBUG
        logger.debug("after reload")
        assert "[DBG] after reload" in (tmp_path / "natsd.log").read_text()
    finally:
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
            handler.close()
        for handler in saved[0]:
            logger.addHandler(handler)
        logger.setLevel(saved[1])
        logger.propagate = saved[2]


class ReloadingPlugin:
    """Owns ``widget {}``; refuses ``size: 0``, applies others after everyone accepted."""

    def __init__(self) -> None:
        self.size = None
        self.applied: list[int] = []

    @hookimpl
    def natsd_config_blocks(self):
        return ["widget"]

    @hookimpl
    def natsd_configure(self, block):
        self.size = block["size"]

    @hookimpl
    def natsd_reload(self, block):
        if block["size"] == 0:
            raise ConfigError("size must be positive", key="size")
        return lambda: self.applied.append(block["size"])


class StaticPlugin:
    @hookimpl
    def natsd_config_blocks(self):
        return ["gadget"]

    @hookimpl
    def natsd_configure(self, block):
        pass


def test_plugins_check_then_apply(natsd_factory, tmp_path):
    widget, gadget = ReloadingPlugin(), StaticPlugin()
    path = _conf(tmp_path, "widget { size: 1 }\ngadget { x: 1 }\n")
    running = natsd_factory(str(path), plugins=[widget, gadget])
    path.write_text(HEAD + "widget { size: 0 }\ngadget { x: 1 }\n")
    with pytest.raises(ConfigError, match="size must be positive"):
        running.reload()
    path.write_text(HEAD + "widget { size: 2 }\ngadget { x: 2 }\n")
    with pytest.raises(ConfigError, match="reload not supported for gadget: plugin .* cannot reload"):
        running.reload()
    assert widget.applied == []  # refused by another plugin: nothing applied
    path.write_text(HEAD + "widget { size: 3 }\ngadget { x: 1 }\n")
    running.reload()
    assert widget.applied == [3]


def test_renewed_certificates_apply_to_new_connections(natsd_factory, tmp_path, tls_certs):
    import shutil
    import ssl

    cert, key = tmp_path / "server.pem", tmp_path / "server.key"
    shutil.copy(tls_certs.server_cert, cert)
    shutil.copy(tls_certs.server_key, key)
    path = _conf(tmp_path, f'tls {{ cert_file: "{cert}", key_file: "{key}" }}\n')
    running = natsd_factory(str(path))

    def tls_client(ca: str) -> ssl.SSLSocket:
        raw = socket.create_connection(("127.0.0.1", running.port), timeout=3)
        assert b'"tls_required":true' in read_until(raw, b"\r\n")
        sock = tls_certs.client(ca=ca).wrap_socket(raw, server_hostname="127.0.0.1")
        sock.sendall(b'CONNECT {"verbose":false}\r\nPING\r\n')
        assert read_until(sock) == b"PONG\r\n"
        return sock

    old = tls_client(tls_certs.ca)
    shutil.copy(tls_certs.other_server_cert, cert)  # renewed in place, same paths
    shutil.copy(tls_certs.other_server_key, key)
    assert running.reload() == ["tls"]
    with pytest.raises(ssl.SSLError):
        tls_client(tls_certs.ca)
    new = tls_client(tls_certs.other_ca)
    new.sendall(b"SUB x 1\r\nPING\r\n")
    read_until(new)
    old.sendall(b"PUB x 2\r\nhi\r\nPING\r\n")  # the old session still works
    assert read_until(old) == b"PONG\r\n"
    assert _ping(new) == b"MSG x 1 2\r\nhi\r\nPONG\r\n"
