"""verify_and_map: the auth plugin maps a client certificate to a configured user."""

from __future__ import annotations

import asyncio
import json
import socket
from typing import Any

import nats

from natsd.config.conf import parse
from natsd.testing import read_until

VIOLATION = b"-ERR 'Authorization Violation'\r\n"


def mapped_conf(tls_certs: Any, users: str) -> Any:
    return parse(tls_certs.conf(f'ca_file: "{tls_certs.ca}"\n  verify_and_map: true') + users)


def tls_connect(port: int, ctx: Any, connect: dict[str, Any]) -> tuple[dict[str, Any], bytes]:
    """INFO, then CONNECT + PING over TLS; what the server answered."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=5)
    info = json.loads(read_until(raw, b"\r\n")[5:])
    with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as sock:
        sock.sendall(b"CONNECT " + json.dumps({"verbose": False, **connect}).encode() + b"\r\nPING\r\n")
        return info, read_until(sock)


ACCOUNTS = """
accounts {
  A: { users: [ {user: "CN=alice,OU=Unit,O=Org", permissions: {publish: "alice.>", subscribe: "alice.>"}} ] }
  B: { users: [ {user: "bob@example.com"} ] }
}
"""


async def test_certificate_subject_and_email_map_to_users(natsd_factory: Any, tls_certs: Any) -> None:
    srv = natsd_factory(mapped_conf(tls_certs, ACCOUNTS))
    errors: list[Exception] = []

    async def on_error(exc: Exception) -> None:
        errors.append(exc)

    alice = await nats.connect(srv.url, tls=tls_certs.alice(), error_cb=on_error,
                               allow_reconnect=False)
    bob = await nats.connect(srv.url, tls=tls_certs.client(tls_certs.bob_cert, tls_certs.bob_key),
                             allow_reconnect=False)
    users = srv.call(lambda: sorted((c.user, c.account.name) for c in srv.server.clients.values()))
    assert users == [("CN=alice,OU=Unit,O=Org", "A"), ("bob@example.com", "B")]
    sub = await alice.subscribe("alice.inbox")
    await alice.publish("alice.inbox", b"mine")
    assert (await sub.next_msg(timeout=2)).data == b"mine"
    await alice.publish("elsewhere", b"denied")  # alice's permissions apply
    await alice.flush()
    for _ in range(50):
        if errors:
            break
        await asyncio.sleep(0.02)
    assert "permissions violation for publish to \"elsewhere\"" in str(errors[0]).lower()
    await alice.close()
    await bob.close()


def test_mapping_refusals(natsd_factory: Any, tls_certs: Any) -> None:
    srv = natsd_factory(mapped_conf(tls_certs, """
        authorization { users: [ {user: "CN=alice,OU=Unit,O=Org"} ] }
    """))
    info, out = tls_connect(srv.port, tls_certs.alice(), {"user": "someone-else"})
    assert info["tls_verify"] is True and info["auth_required"] is True
    assert out == b"PONG\r\n"  # the certificate decides; the CONNECT user is ignored
    bob = tls_certs.client(tls_certs.bob_cert, tls_certs.bob_key)
    assert tls_connect(srv.port, bob, {})[1] == VIOLATION  # no user for bob's certificate
    # The mapped user has no password, so a client that sends one is refused (as nats-server).
    assert tls_connect(srv.port, tls_certs.alice(), {"pass": "x"})[1] == VIOLATION


def test_certificate_from_another_ca_never_gets_to_auth(natsd_factory: Any, tls_certs: Any) -> None:
    srv = natsd_factory(mapped_conf(tls_certs, ACCOUNTS))
    ctx = tls_certs.client(tls_certs.other_client_cert, tls_certs.other_client_key)
    try:  # same subject as alice's certificate, but the handshake itself fails
        out = tls_connect(srv.port, ctx, {})[1]
    except OSError as exc:  # ssl.SSLError: the server's alert (TLS 1.3 reports it on read)
        out = str(exc).encode()
    assert b"PONG" not in out and b"Authorization" not in out
