"""Clients that are not sockets: sessions of in-process clients, framed byte transports,
and authentication for connections that plugins accept themselves."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from natsd import Server
from natsd.plugin.contracts import AuthRequest, AuthResult

USERS = """
host: 127.0.0.1
port: -1
max_connections: 3
accounts {
  A { users: [{user: dev, password: pw, permissions: {publish: "up.>", subscribe: "down.>"}}] }
  SYS { users: [{user: sys, password: sys}] }
}
system_account: SYS
"""


async def test_authenticate_for_a_plugins_own_connections(tmp_path: Any) -> None:
    conf = tmp_path / "natsd.conf"
    conf.write_text(USERS)
    async with Server(str(conf)) as server:
        ok = await server.authenticate(AuthRequest(options={"user": "dev", "pass": "pw"}, client_id=0,
                                                   remote=("10.0.0.9", 5000), transport="mqtt"))
        assert ok.ok and ok.account == "A" and ok.user == "dev" and ok.permissions is not None
        bad = await server.authenticate(AuthRequest(options={"user": "dev", "pass": "no"}, client_id=0,
                                                    remote=None, transport="mqtt"))
        assert not bad.ok
    async with Server({"host": "127.0.0.1", "port": 0}) as open_server:  # no auth configured
        assert (await open_server.authenticate(AuthRequest(options={}, client_id=0, remote=None))).ok


async def test_a_session_is_a_real_client(tmp_path: Any) -> None:
    conf = tmp_path / "natsd.conf"
    conf.write_text(USERS)
    async with Server(str(conf)) as server:
        events: list[dict[str, Any]] = []
        sys_watch = server.connect_internal("watch", "SYS")
        sys_watch.subscribe("$SYS.ACCOUNT.A.*", lambda s, r, h, p: events.append(json.loads(p)))

        identity = await server.authenticate(AuthRequest(options={"user": "dev", "pass": "pw"},
                                                         client_id=0, remote=None, transport="mqtt"))
        session = server.connect_internal("device-1", identity=identity, transport="mqtt",
                                          remote=("10.0.0.9", 5000))
        assert session.cid in server.clients and session.account.name == "A"
        assert session in server.lookup_account("A").clients
        got: list[bytes] = []
        session.subscribe("down.>", lambda s, r, h, p: got.append(p))
        with pytest.raises(PermissionError, match="Permissions Violation for Subscription"):
            session.subscribe("elsewhere", lambda *a: None)
        with pytest.raises(PermissionError, match="Permissions Violation for Publish"):
            session.publish("down.x", b"no")
        assert session.publish("up.temp", b"21") is False  # allowed, nobody listening

        other = server.connect_internal("ops", "A")
        other.publish("down.cmd", b"reboot")
        assert got == [b"reboot"]
        assert events[-1]["type"].endswith("client_connect")
        assert events[-1]["client"]["client_type"] == "mqtt" and events[-1]["client"]["user"] == "dev"

        session.close()
        assert session.cid not in server.clients and session not in server._internal
        assert events[-1]["type"].endswith("client_disconnect")
        assert server.closed_clients[-1].cid == session.cid
        other.publish("down.cmd", b"again")
        assert got == [b"reboot"]


async def test_sessions_count_in_max_connections(tmp_path: Any) -> None:
    conf = tmp_path / "natsd.conf"
    conf.write_text(USERS)
    async with Server(str(conf)) as server:
        identity = AuthResult(ok=True, account="A", user="dev")
        sessions = [server.connect_internal(f"s{i}", identity=identity, transport="mqtt") for i in range(3)]
        with pytest.raises(ConnectionRefusedError):
            server.connect_internal("s3", identity=identity, transport="mqtt")
        sessions[0].close()
        server.connect_internal("s3", identity=identity, transport="mqtt").close()
        with pytest.raises(PermissionError):
            server.connect_internal("refused", identity=AuthResult(ok=False, reason="no"))


class Framed:
    """A framing adapter, as a WebSocket plugin writes one: each write becomes a frame."""

    def __init__(self) -> None:
        self.frames: list[bytes] = []
        self.closed = False
        self.paused = False

    def write(self, data: bytes) -> None:
        self.frames.append(b"[%d]" % len(data) + data)

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("192.0.2.1", 443) if name == "peername" else default

    def get_write_buffer_size(self) -> int:
        return 0

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False


async def test_a_framed_transport_reuses_the_client_protocol() -> None:
    async with Server({"host": "127.0.0.1", "port": 0}) as server:
        adapter = Framed()
        client = server.client_protocol("websocket")
        client.connection_made(adapter)  # type: ignore[arg-type]
        assert adapter.frames[0].startswith(b"[") and b"INFO {" in adapter.frames[0]
        stream = b'CONNECT {"verbose":false}\r\nSUB a 1\r\nPUB a 5\r\nhello\r\nPING\r\n'
        for i in range(0, len(stream), 7):  # de-framed bytes arrive in any split
            client.data_received(stream[i:i + 7])
        await asyncio.sleep(0)
        tail = b"".join(f.split(b"]", 1)[1] for f in adapter.frames[1:])
        assert tail == b"MSG a 1 5\r\nhello\r\nPONG\r\n"
        conn = next(iter(server.clients.values()))
        assert conn.transport == "websocket" and conn.remote == ("192.0.2.1", 443)
        client.connection_lost(None)
        assert not server.clients


def test_a_session_without_identity_is_a_service() -> None:
    async def run() -> None:
        async with Server({"host": "127.0.0.1", "port": 0}) as server:
            svc = server.connect_internal("svc")
            assert svc.cid == 0 and svc.cid not in server.clients
            svc.close()
            assert svc not in server._internal
    asyncio.run(run())
