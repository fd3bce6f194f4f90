"""The in-process auth plugin example from docs/security.md, end to end."""

from __future__ import annotations

import json
import logging
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bcrypt
import pytest

from natsd.config.conf import ConfError, parse

EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples"


@pytest.fixture(autouse=True)
def on_path() -> Iterator[None]:
    sys.path.insert(0, str(EXAMPLES))
    yield
    sys.path.remove(str(EXAMPLES))


def exchange(port: int, connect: dict[str, Any]) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        f = sock.makefile("rb")
        f.readline()
        sock.sendall(b"CONNECT " + json.dumps({"verbose": False, **connect}).encode() + b"\r\nPING\r\n")
        return f.readline()


def test_users_file(natsd_factory: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    users = tmp_path / "users.json"
    users.write_text(json.dumps({"ann": {"password": bcrypt.hashpw(b"pw", bcrypt.gensalt(4)).decode(),
                                         "account": "APP"}}))
    conf = parse(f'plugins {{ users_file_auth {{ path: "{users}" }} }}\naccounts {{ APP: {{}} }}\n')
    srv = natsd_factory(conf, plugins=["users_file_auth"])
    assert exchange(srv.port, {"user": "ann", "pass": "pw"}) == b"PONG\r\n"
    with caplog.at_level(logging.ERROR, logger="natsd"):
        assert exchange(srv.port, {"user": "ann", "pass": "no"}) == b"-ERR 'Authorization Violation'\r\n"
        assert exchange(srv.port, {"user": "bob", "pass": "pw"}) == b"-ERR 'Authorization Violation'\r\n"
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert "wrong password for 'ann'" in logged and "'bob' is not in" in logged
    clients = srv.call(lambda: [(c.user, c.account.name) for c in srv.server.clients.values()])
    assert clients == []  # both test connections are closed by now


def test_missing_file_is_a_config_error(natsd_factory: Any, tmp_path: Path) -> None:
    conf = parse(f'plugins {{ users_file_auth {{ path: "{tmp_path / "nope.json"}" }} }}\n', "u.conf")
    with pytest.raises(ConfError) as info:
        natsd_factory(conf, plugins=["users_file_auth"])
    assert info.value.key == "path" and info.value.line == 1
